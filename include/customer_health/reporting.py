"""Plain-text summaries of the warehouse for people: the demo's closing report."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date

from sqlalchemy import Engine, func, select

from customer_health.scoring.drivers import describe_drivers, read_drivers
from customer_health.warehouse import schema as s

RAW_TABLES = [
    s.raw_sf_account,
    s.raw_sf_contact,
    s.raw_sf_user,
    s.raw_sf_task,
    s.raw_sf_opportunity,
    s.raw_sf_nps_response,
    s.raw_zd_organization,
    s.raw_zd_ticket,
    s.raw_zd_satisfaction_rating,
    s.raw_stripe_customer,
    s.raw_stripe_subscription,
    s.raw_stripe_invoice,
    s.raw_stripe_dispute,
    s.raw_product_account,
    s.raw_product_usage_daily,
    s.raw_product_feature_daily,
]

ZONE_ORDER = ["Healthy", "Neutral", "At Risk", "Critical"]


def _count(conn, table, *where) -> int:
    return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def extraction_summary(engine: Engine) -> list[str]:
    """Row counts of every raw table, the quarantine and the crosswalk gaps."""
    lines = ["Extracted (warehouse raw tables):"]
    with engine.connect() as conn:
        counts = [(t.name, _count(conn, t)) for t in RAW_TABLES]
        width = max(len(n) for n, _ in counts)
        lines += [f"  {name:<{width}}  {n:>10,}" for name, n in counts]
        q = conn.execute(
            select(s.quarantine.c.source, s.quarantine.c.object, func.count())
            .group_by(s.quarantine.c.source, s.quarantine.c.object)
            .order_by(s.quarantine.c.source, s.quarantine.c.object)
        ).fetchall()
        lines.append(
            "Quarantined malformed records: "
            + (", ".join(f"{src}.{obj} {n}" for src, obj, n in q) if q else "none")
            + "  (table quarantine)"
        )
        accounts = _count(conn, s.account_crosswalk)
        unmapped = conn.execute(
            select(s.crosswalk_unmapped.c.source, func.count()).group_by(s.crosswalk_unmapped.c.source)
        ).fetchall()
        lines.append(
            f"Crosswalk: {accounts:,} accounts; unmapped records: "
            + (", ".join(f"{src} {n}" for src, n in unmapped) if unmapped else "none")
            + "  (table crosswalk_unmapped)"
        )
    return lines


def score_summary(engine: Engine, as_of: date) -> list[str]:
    """Zone distribution, coverage and the ten highest-priority accounts for ``as_of``.

    Under each of the ten: its explanation, then its drivers (``scoring.drivers``, the one
    reader of ``health_scores.drivers``): the signals pulling it down and those holding it up.
    """
    hs = s.health_scores
    with engine.connect() as conn:
        version = conn.execute(
            select(hs.c.model_version).where(hs.c.as_of_date == as_of).order_by(hs.c.computed_at.desc()).limit(1)
        ).scalar_one_or_none()
        if version is None:
            return [f"No scores for {as_of} yet."]
        where = (hs.c.as_of_date == as_of, hs.c.model_version == version)
        zones = dict(conn.execute(select(hs.c.zone, func.count()).where(*where).group_by(hs.c.zone)).fetchall())
        total = sum(zones.values())
        cov_avg, cov_min = conn.execute(select(func.avg(hs.c.coverage), func.min(hs.c.coverage)).where(*where)).one()
        arr = dict(conn.execute(select(hs.c.zone, func.sum(hs.c.arr)).where(*where).group_by(hs.c.zone)).fetchall())
        top = conn.execute(
            select(
                hs.c.account_key,
                s.account_crosswalk.c.account_name,
                hs.c.score,
                hs.c.zone,
                hs.c.priority,
                hs.c.explanation,
                hs.c.drivers,
            )
            .select_from(hs.outerjoin(s.account_crosswalk, s.account_crosswalk.c.account_key == hs.c.account_key))
            .where(*where)
            .order_by(hs.c.priority.desc(), hs.c.account_key)
            .limit(10)
        ).fetchall()
    lines = [f"Health on {as_of} (model {version}): {total:,} customers scored"]
    for zone in ZONE_ORDER:
        n = zones.get(zone, 0)
        bar = "#" * round(40 * n / total) if total else ""
        lines.append(f"  {zone:<9} {n:>6,}  {100 * n / max(total, 1):5.1f} %  ARR {arr.get(zone) or 0:>14,.0f}  {bar}")
    lines.append(f"  coverage: mean {100 * (cov_avg or 0):.1f} % of model weight backed by data, lowest {100 * (cov_min or 0):.1f} %")
    lines.append("Top 10 accounts by priority (trajectory x value):")
    for i, r in enumerate(top, 1):
        lines.append(f" {i:>2}. {r.account_name or r.account_key} [{r.account_key}] {r.score} {r.zone}, priority {r.priority:.1f}")
        if r.explanation:
            lines.append(f"     {r.explanation}")
        drivers = read_drivers(r.drivers)
        for kind, heading in (("down", "pulling down"), ("up", "holding up")):
            phrase = describe_drivers(drivers, kind=kind)
            if phrase:
                lines.append(f"     {heading}: {phrase}")
    return lines


def action_summary(engine: Engine, as_of: date) -> list[str]:
    """Actions decided for ``as_of`` per type and status, and where to see them."""
    ob = s.action_outbox
    with engine.connect() as conn:
        rows = conn.execute(
            select(ob.c.action_type, ob.c.target, ob.c.status, func.count())
            .where(ob.c.trigger_date == as_of)
            .group_by(ob.c.action_type, ob.c.target, ob.c.status)
            .order_by(ob.c.action_type, ob.c.status)
        ).fetchall()
    if not rows:
        return [f"Actions on {as_of}: none decided."]
    where = {
        "salesforce": "Salesforce Tasks (sandbox: sf_task where Health_Action_Key__c is set)",
        "slack": "Slack channel (sandbox: sandbox_writes system='slack')",
        "email": "e-mail (sandbox: sandbox_writes system='smtp')",
        "campaigns": "Salesforce Campaigns, or HubSpot lists (sandbox: sf_campaign_member; campaign_memberships)",
    }
    lines = [f"Actions on {as_of} (table action_outbox; shadow: recorded, never sent; pending: deferred by a daily cap):"]
    for action_type, target, status, n in rows:
        lines.append(f"  {action_type:<28} {status:<10} {n:>5}  -> {where.get(target, target)}")
    return lines


def playbook_summary(engine: Engine, as_of: date, examples: int = 3) -> list[str]:
    """The playbooks that fired for ``as_of``: per playbook its accounts and actions, and the
    first ``examples`` accounts with the driver that keyed it (as the outbox rows record them)."""
    ob = s.action_outbox
    with engine.connect() as conn:
        rows = conn.execute(
            select(ob.c.account_key, ob.c.action_type, ob.c.status, ob.c.payload, s.account_crosswalk.c.account_name)
            .select_from(ob.outerjoin(s.account_crosswalk, s.account_crosswalk.c.account_key == ob.c.account_key))
            .where(ob.c.trigger_date == as_of)
            .order_by(ob.c.account_key, ob.c.action_type)
        ).fetchall()
    plays: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    types: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        payload = json.loads(r.payload) if r.payload else {}
        if not payload.get("playbook"):
            continue
        play = (payload["playbook"], payload.get("rule") or "")
        types[play][r.action_type] += 1
        plays[play].setdefault(r.account_key, {"name": r.account_name or r.account_key, "driver": payload.get("driver")})
    if not plays:
        return [f"Playbooks on {as_of}: none fired (no account entered a playbook's zone with its driver that day)."]
    lines = [f"Playbooks that fired on {as_of} (every action row records its rule and driver: "
             "action_outbox.payload rule/driver; the account page shows them):"]
    for (title, rule), accounts in sorted(plays.items()):
        acts = ", ".join(f"{t.replace('_', ' ')} {n}" for t, n in sorted(types[(title, rule)].items()))
        lines.append(f"  {title} ({rule}): {len(accounts)} account{'s' * (len(accounts) != 1)} - {acts}")
        for key, info in list(accounts.items())[:examples]:
            d = info["driver"]
            driven = f"driven by {d['dimension']} ({d['reading']})" if d else "no driver on record"
            lines.append(f"     {info['name']} [{key}]: {driven}")
    return lines


def demo_summary(engine: Engine, as_of: date) -> str:
    """Everything above, as one block of text."""
    parts = [extraction_summary(engine), score_summary(engine, as_of), action_summary(engine, as_of),
             playbook_summary(engine, as_of)]
    return "\n\n".join("\n".join(p) for p in parts)
