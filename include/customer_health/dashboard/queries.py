"""What each dashboard page reads from the warehouse: a few indexed queries per page.

The portfolio is large (100,000 accounts x 365 days = 36.5 million score rows), so no page
scans the score history:

* Zone counts and ARR by segment of one (model version, date) - and the "over time" points,
  and each version's first and latest scored date - come from ``health_score_summary`` (~50
  rows a date); the biggest 30-day movers of a date from ``health_score_movers``. Both are
  derived from health_scores by the scoring step itself (``scoring.history.write_scores`` ->
  ``refresh_score_summary``, in the transaction that writes the scores), so health_scores
  needs no wide covering index that every daily write of a million rows would maintain.
* Intervention analysis reads At Risk episodes from ``health_score_episodes`` (also kept by the
  scoring step: entry date and recovery date, ~1 per account per quarter) in account order,
  and each episode's actions through ``ix_action_outbox_account_trigger`` - one statement.
* The account page reads one account through primary keys and ``account_key`` indexes.

Every function takes an open SQLAlchemy ``Connection`` and returns plain dicts and lists that
serialize to JSON as they are (the JSON endpoints return them unchanged).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, Date, bindparam, func, select, text

from customer_health.actions import outbox
from customer_health.dashboard import tables
from customer_health.scoring import history as history_store
from customer_health.scoring.drivers import read_drivers
from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.sources.roster import roster_column, roster_table
from customer_health.warehouse import schema
from customer_health.warehouse.io import as_date, utcnow
from customer_health.warehouse.schema import (
    account_crosswalk,
    action_outbox,
    health_score_episodes,
    health_score_movers,
    health_score_summary,
    health_scores,
    model_version_events,
    model_versions,
    score_overrides,
    signal_values,
)

HS = health_scores.c
SM = health_score_summary.c
MV = health_score_movers.c

# The zone names are fixed by the design (DESIGN.md, decision 8); their bounds come from the model.
RISK_ZONES = ("At Risk", "Critical")
SAFE_ZONES = ("Healthy", "Neutral")
DIMENSIONS = ("engagement", "support", "financial", "sentiment")


class UnknownModelVersion(LookupError):
    """The requested model version has no scores in the warehouse."""


@dataclass(frozen=True)
class Zone:
    """A health zone and its inclusive score bounds."""

    name: str
    low: int
    high: int


DEFAULT_ZONES: tuple[Zone, ...] = (
    Zone("Healthy", 75, 100),
    Zone("Neutral", 50, 74),
    Zone("At Risk", 25, 49),
    Zone("Critical", 0, 24),
)


@dataclass(frozen=True)
class ScoredVersion:
    """A model version that has scores: its registry entry (if any) and its scored dates."""

    version: str
    status: str | None
    created_at: datetime | None
    first_date: date
    latest_date: date


@dataclass(frozen=True)
class View:
    """What a page shows: one model version as of its latest scored date."""

    version: str
    as_of: date
    zones: tuple[Zone, ...]
    versions: tuple[ScoredVersion, ...]
    signal_dimensions: dict[str, str] = field(default_factory=dict)

    def zone_names(self) -> list[str]:
        """Zone names from best to worst."""
        return [z.name for z in self.zones]


# --------------------------------------------------------------------------- versions
def scored_versions(conn: Connection) -> list[ScoredVersion]:
    """Every model version with scores, with its first and latest scored date (from the summary)."""
    registry = {
        row.version: row
        for row in conn.execute(select(model_versions.c.version, model_versions.c.status, model_versions.c.created_at))
    }
    found: list[ScoredVersion] = []
    for version, first, latest in conn.execute(
        select(SM.model_version, func.min(SM.as_of_date), func.max(SM.as_of_date))
        .group_by(SM.model_version)
        .order_by(SM.model_version)
    ):
        entry = registry.get(version)
        found.append(
            ScoredVersion(
                version=version,
                status=entry.status if entry else None,
                created_at=entry.created_at if entry else None,
                first_date=as_date(first),
                latest_date=as_date(latest),
            )
        )
    return found


def default_version(versions: Sequence[ScoredVersion]) -> ScoredVersion:
    """The latest model version with scores: the one that scored the most recent date.

    When several did (a proposed model scored in the shadow of the active one), the active one
    wins, then the most recently registered.
    """
    return max(
        versions,
        key=lambda v: (v.latest_date, v.status == "active", v.created_at or datetime.min, v.version),
    )


def resolve_view(conn: Connection, requested: str | None = None) -> View | None:
    """The view for ``requested`` (or the default version); None when nothing is scored yet."""
    versions = scored_versions(conn)
    if not versions:
        if requested:
            raise UnknownModelVersion(f"model version {requested!r} has no scores: the warehouse has none yet")
        return None
    if requested:
        chosen = next((v for v in versions if v.version == requested), None)
        if chosen is None:
            known = ", ".join(v.version for v in versions)
            raise UnknownModelVersion(f"model version {requested!r} has no scores; versions with scores: {known}")
    else:
        chosen = default_version(versions)
    zones, dimensions = model_settings(conn, chosen.version)
    return View(chosen.version, chosen.latest_date, zones, tuple(versions), dimensions)


def model_settings(conn: Connection, version: str) -> tuple[tuple[Zone, ...], dict[str, str]]:
    """The zone bounds and each signal's dimension of ``version`` (defaults when unregistered)."""
    row = conn.execute(
        select(model_versions.c.config_sha256, model_versions.c.config_yaml).where(model_versions.c.version == version)
    ).first()
    if row is None:
        return DEFAULT_ZONES, {}
    return _parse_model_config(row.config_sha256, row.config_yaml)


@lru_cache(maxsize=32)
def _parse_model_config(_sha256: str, config_yaml: str) -> tuple[tuple[Zone, ...], dict[str, str]]:
    """Zones and signal dimensions from a model config (cached by the config's hash)."""
    try:
        config = yaml.safe_load(config_yaml) or {}
        zones = tuple(
            Zone(str(z["name"]), int(z["min"]), int(z["max"]))
            for z in sorted(config.get("zones") or [], key=lambda z: -int(z["max"]))
        )
        dimensions = {str(k): str(v.get("dimension", "")) for k, v in (config.get("signals") or {}).items()}
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError):
        return DEFAULT_ZONES, {}
    return zones or DEFAULT_ZONES, dimensions


# --------------------------------------------------------------------------- portfolio
def _plan_of(segment: str | None) -> str:
    """The plan tier inside a segment label ``model/plan/tenure band``."""
    parts = (segment or "").split("/")
    return parts[1] if len(parts) >= 3 else "unknown"


def _zone_counts(view: View) -> dict[str, int]:
    return {name: 0 for name in view.zone_names()}


def portfolio(
    conn: Connection,
    view: View,
    *,
    points: int = 14,
    step_days: int = 28,
    segment: str | None = None,
    plan: str | None = None,
) -> dict[str, Any]:
    """Zone distribution today (overall, by segment, by plan tier), ARR at risk, and history.

    The history has ``points`` dates, ``step_days`` apart, ending today (default: every four
    weeks over a year, each point one index range of a day's scores). ``segment`` (a full
    segment label) or ``plan`` narrows the history to that part of the portfolio; today's
    breakdowns always cover everything.
    """
    today = conn.execute(
        select(SM.zone, SM.segment, SM.accounts, SM.arr).where(SM.model_version == view.version, SM.as_of_date == view.as_of)
    ).all()
    zones = _zone_counts(view)
    zone_arr: dict[str, float] = defaultdict(float)
    by_segment: dict[str, dict[str, Any]] = {}
    by_plan: dict[str, dict[str, Any]] = {}
    for row in today:
        zones[row.zone] = zones.get(row.zone, 0) + row.accounts
        zone_arr[row.zone] += row.arr or 0.0
        for groups, key in ((by_segment, row.segment or "unknown"), (by_plan, _plan_of(row.segment))):
            group = groups.setdefault(key, {"accounts": 0, "arr": 0.0, "arr_at_risk": 0.0, "zones": _zone_counts(view)})
            group["accounts"] += row.accounts
            group["arr"] += row.arr or 0.0
            group["zones"][row.zone] = group["zones"].get(row.zone, 0) + row.accounts
            if row.zone in RISK_ZONES:
                group["arr_at_risk"] += row.arr or 0.0
    accounts = sum(zones.values())
    total_arr = sum(zone_arr.values())
    at_risk = sum(zones.get(z, 0) for z in RISK_ZONES)
    arr_at_risk = sum(zone_arr.get(z, 0.0) for z in RISK_ZONES)

    first = next(v.first_date for v in view.versions if v.version == view.version)
    dates = [d for d in (view.as_of - timedelta(days=step_days * k) for k in range(points - 1, -1, -1)) if d >= first]
    history_stmt = (
        select(SM.as_of_date, SM.zone, func.sum(SM.accounts).label("accounts"), func.sum(SM.arr).label("arr"))
        .where(SM.model_version == view.version, SM.as_of_date.in_(dates))
        .group_by(SM.as_of_date, SM.zone)
    )
    if segment:
        history_stmt = history_stmt.where(SM.segment == segment)
    if plan:
        history_stmt = history_stmt.where(SM.segment.like(f"%/{plan}/%"))
    history: dict[date, dict[str, Any]] = {}
    for row in conn.execute(history_stmt):
        day = as_date(row.as_of_date)
        point = history.setdefault(day, {"as_of_date": day, "accounts": 0, "arr_at_risk": 0.0, "zones": _zone_counts(view)})
        point["accounts"] += row.accounts
        point["zones"][row.zone] = point["zones"].get(row.zone, 0) + row.accounts
        if row.zone in RISK_ZONES:
            point["arr_at_risk"] += row.arr or 0.0

    def rows(groups: dict[str, dict[str, Any]], label: str) -> list[dict[str, Any]]:
        return [{label: key, **groups[key]} for key in sorted(groups)]

    return {
        "model_version": view.version,
        "as_of_date": view.as_of,
        "accounts": accounts,
        "arr": round(total_arr, 2),
        "accounts_at_risk": at_risk,
        "arr_at_risk": round(arr_at_risk, 2),
        "share_at_risk": at_risk / accounts if accounts else None,
        "zones": [
            {
                "zone": z.name,
                "low": z.low,
                "high": z.high,
                "accounts": zones.get(z.name, 0),
                "share": zones.get(z.name, 0) / accounts if accounts else None,
                "arr": round(zone_arr.get(z.name, 0.0), 2),
            }
            for z in view.zones
        ],
        "by_segment": rows(by_segment, "segment"),
        "by_plan": rows(by_plan, "plan"),
        "history": [history[d] for d in sorted(history)],
        "history_filter": {"segment": segment, "plan": plan, "points": points, "step_days": step_days},
    }


# --------------------------------------------------------------------------- trending
def parse_drivers(raw: str | None) -> dict[str, list[dict[str, Any]]]:
    """The drivers of a score for the pages and the API (``scoring.drivers.read_drivers``).

    ``{"down": [{"signal", "label", "points", "score"}, ...], "up": [...], "changes": [...]}``.
    """
    return read_drivers(raw).as_dict()


def _mover_rows(conn: Connection, view: View, keys: Sequence[str]) -> list[dict[str, Any]]:
    if not keys:
        return []
    stmt = (
        select(
            HS.account_key, account_crosswalk.c.account_name, HS.segment, HS.score, HS.computed_score, HS.zone,
            HS.previous_zone, HS.delta_30, HS.delta_90, HS.arr, HS.override_id, HS.explanation, HS.drivers,
        )
        .select_from(health_scores.outerjoin(account_crosswalk, account_crosswalk.c.account_key == HS.account_key))
        .where(HS.model_version == view.version, HS.as_of_date == view.as_of, HS.account_key.in_(list(keys)))
    )
    found = {row.account_key: row for row in conn.execute(stmt)}
    movers = []
    for key in keys:
        row = found.get(key)
        if row is None:
            continue
        data = row._asdict()
        data["drivers"] = parse_drivers(row.drivers)
        data["plan"] = _plan_of(row.segment)
        movers.append(data)
    return movers


def trending(conn: Connection, view: View, *, limit: int = 20) -> dict[str, Any]:
    """The biggest 30-day declines and recoveries, with their drivers and explanation.

    The ranking is ``health_score_movers`` (the top ``MOVERS_KEPT`` each way, ranked by
    ``delta_30`` then ``account_key`` when the date was scored); the ``limit`` winners are
    then fetched by primary key.
    """
    from customer_health.scoring.history import MOVERS_KEPT

    def ranked(direction: str) -> list[str]:
        return list(conn.execute(
            select(MV.account_key)
            .where(MV.model_version == view.version, MV.as_of_date == view.as_of, MV.direction == direction)
            .order_by(MV.rank)
            .limit(min(limit, MOVERS_KEPT))
        ).scalars())  # fmt: skip

    declines, recoveries = ranked("decline"), ranked("recovery")
    return {
        "model_version": view.version,
        "as_of_date": view.as_of,
        "window_days": 30,
        "declines": _mover_rows(conn, view, declines),
        "recoveries": _mover_rows(conn, view, recoveries),
    }


# --------------------------------------------------------------------------- account
def _override_state(row: Any, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at <= now:
        return "expired"
    return "active"


def _rule_and_driver(payload: Any) -> dict[str, Any]:
    """The rule (trigger or playbook) and the driver an outbox row records (``actions.decide``)."""
    value = _json_or_text(payload)
    if not isinstance(value, dict):
        return {"rule": None, "playbook": None, "driver": None}
    driver = value.get("driver") if isinstance(value.get("driver"), dict) else None
    return {"rule": value.get("rule") or value.get("trigger"), "playbook": value.get("playbook"), "driver": driver}


def _json_or_text(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


ROSTER_FIELDS = ("name", "plan", "seats", "arr", "industry", "owner_id", "customer_since", "parent_id", "is_deleted")
"""What the account page shows of the account's own record (``record``): the Salesforce Account,
or the anchored account of a company without a CRM (``sources.roster``; no industry there)."""


def account_detail(conn: Connection, view: View | None, account_key: str, *, days: int = 365) -> dict[str, Any] | None:
    """Everything about one account: identity, score history, signals, drivers, overrides, actions.

    ``view`` None (nothing scored yet) gives the identity, overrides and actions alone. None when
    the warehouse does not know the account at all.
    """
    crosswalk = conn.execute(select(account_crosswalk).where(account_crosswalk.c.account_key == account_key)).first()
    roster = roster_table()  # the Salesforce Account, or a CRM-less company's anchored account
    record = conn.execute(
        select(*(roster_column(roster, name) for name in ROSTER_FIELDS)).where(roster.c.id == account_key)
    ).first()
    # health_scores is keyed by (version, date, account): the account's rows are probed on the
    # version's scored dates (history.account_scores), one index descent each.
    latest = None
    if view is not None:
        latest = history_store.latest_account_scores(
            conn, view.version, [account_key], view.as_of, list(health_scores.c)
        ).get(account_key)
    if crosswalk is None and record is None and latest is None:
        return None
    history = []
    if view is not None and latest is not None:
        since = view.as_of - timedelta(days=days - 1)
        dates = history_store.scored_dates_desc(conn, view.version, view.as_of, since)
        columns = [HS.as_of_date, HS.score, HS.computed_score, HS.zone, HS.override_id]
        rows = history_store.account_scores(conn, view.version, [account_key], dates, columns)
        history = sorted((row._asdict() for row in rows), key=lambda r: as_date(r["as_of_date"]))
    score = None
    signals: list[dict[str, Any]] = []
    if view is not None and latest is not None:
        score = latest._asdict()
        score["drivers"] = parse_drivers(latest.drivers)
        score["dimensions"] = {d: score.pop(f"{d}_score", None) for d in DIMENSIONS}
        signals = _signal_breakdown(conn, view, account_key, latest.as_of_date, score["drivers"])
    now = utcnow()
    overrides = [
        {**row._asdict(), "state": _override_state(row, now)}
        for row in conn.execute(
            select(score_overrides)
            .where(score_overrides.c.account_key == account_key)
            .order_by(score_overrides.c.created_at.desc(), score_overrides.c.id.desc())
        )
    ]
    actions = [
        {**{k: v for k, v in row._asdict().items() if k != "payload"}, "result": _json_or_text(row.result),
         **_rule_and_driver(row.payload)}
        for row in conn.execute(
            select(
                action_outbox.c.idempotency_key, action_outbox.c.action_type, action_outbox.c.trigger_date,
                action_outbox.c.model_version, action_outbox.c.status, action_outbox.c.target,
                action_outbox.c.reason, action_outbox.c.external_id, action_outbox.c.attempts,
                action_outbox.c.last_error, action_outbox.c.dispatched_at, action_outbox.c.result,
                action_outbox.c.resolved_at, action_outbox.c.resolved_by, action_outbox.c.payload,
            )
            .where(action_outbox.c.account_key == account_key)
            .order_by(action_outbox.c.trigger_date.desc(), action_outbox.c.created_at.desc())
        )
    ]
    name = (crosswalk.account_name if crosswalk else None) or (record.name if record else None)
    return {
        "account_key": account_key,
        "account_name": name,
        "parent_account_key": (crosswalk.parent_account_key if crosswalk else None)
        or (record.parent_id if record else None),
        "record": record._asdict() if record else None,
        "model_version": view.version if view else None,
        "as_of_date": view.as_of if view else None,
        "score": score,
        "history": history,
        "signals": signals,
        "overrides": overrides,
        "active_override": next((o for o in overrides if o["state"] == "active"), None),
        "actions": actions,
    }


def _signal_breakdown(
    conn: Connection, view: View, account_key: str, as_of: date, drivers: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Each signal's raw value on ``as_of``, with its normalized score and points when a driver."""
    described: dict[str, dict[str, Any]] = {}
    for kind in ("down", "up", "changes"):
        for d in drivers.get(kind, []):
            entry = described.setdefault(str(d.get("signal")), {})
            if kind == "changes":
                entry.setdefault("change_points", d["points"])
            else:
                entry.setdefault("points", d["points"])
                entry.setdefault("normalized", d["score"])
                entry.setdefault("direction", kind)
    breakdown = []
    stored = conn.execute(
        select(*[signal_values.c[key] for key in SIGNALS]).where(
            signal_values.c.as_of_date == as_of, signal_values.c.account_key == account_key
        )
    ).first()
    values = dict(zip(SIGNALS, stored, strict=True)) if stored is not None else {}
    for key, spec in SIGNALS.items():
        if stored is None and key not in described:
            continue  # no stored reading that day: the drivers' signals are still listed
        value = values.get(key)
        entry = {
            "signal": key,
            "label": spec.label,
            "value": value,
            "dimension": view.signal_dimensions.get(key) or spec.dimension,
            "in_model": not view.signal_dimensions or key in view.signal_dimensions,
            "description": _describe(spec, value),
            **described.get(key, {}),
        }
        breakdown.append(entry)
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    breakdown.sort(key=lambda e: (not e["in_model"], order.get(e["dimension"] or "", 9), e["signal"]))
    return breakdown


def _describe(spec: Any, value: float | None) -> str | None:
    if spec is None:
        return None
    try:
        return spec.describe(value)
    except (TypeError, ValueError, KeyError):
        return None


def account_known(conn: Connection, account_key: str) -> bool:
    """True when the warehouse knows ``account_key`` (crosswalk, the account roster or scores)."""
    roster = roster_table()
    for stmt in (
        select(account_crosswalk.c.account_key).where(account_crosswalk.c.account_key == account_key),
        select(roster.c.id).where(roster.c.id == account_key),
    ):
        if conn.execute(stmt).first() is not None:
            return True
    for version in {v.version for v in scored_versions(conn)}:
        if history_store.latest_account_scores(conn, version, [account_key], date.max, [HS.account_key, HS.as_of_date]):
            return True
    return False


SEARCH_LIMIT = 20
"""Accounts a search shows by default; the answer says how many matched in all."""


def _search_statements(text: str) -> tuple[Any, Any, Any]:
    """Key matches (by key), name matches (by name) and the condition of either."""
    cw = account_crosswalk.c
    key_match = cw.account_key.startswith(text, autoescape=True)
    name_match = func.lower(cw.account_name).contains(text.lower(), autoescape=True)
    by_key = select(cw.account_key, cw.account_name).where(key_match).order_by(cw.account_key)
    by_name = select(cw.account_key, cw.account_name).where(name_match).order_by(cw.account_name, cw.account_key)
    return by_key, by_name, key_match | name_match


def _with_scores(conn: Connection, found: list[dict[str, Any]], view: View | None) -> list[dict[str, Any]]:
    """``found`` accounts with their latest ``score``, ``zone`` and ``score_date`` of ``view``."""
    scores = {}
    if view is not None and found:
        scores = history_store.latest_account_scores(
            conn, view.version, [a["account_key"] for a in found], view.as_of, [HS.account_key, HS.as_of_date, HS.score, HS.zone]
        )
    for account in found:
        row = scores.get(account["account_key"])
        account["score"] = row.score if row is not None else None
        account["zone"] = row.zone if row is not None else None
        account["score_date"] = as_date(row.as_of_date) if row is not None else None
    return found


def search_accounts(conn: Connection, text: str, view: View | None = None, *, limit: int = SEARCH_LIMIT) -> dict[str, Any]:
    """Accounts whose key starts with ``text`` or whose name contains it (case-insensitive).

    ``{"accounts": [...], "total": n, "limit": limit, "truncated": bool}``: key matches first,
    then name matches by name, at most ``limit``; ``total`` counts every match, so a page can
    say "showing 20 of 57". Each account carries its latest ``score``, ``zone`` and
    ``score_date`` of ``view`` (None when that version never scored it).
    """
    text = text.strip()
    if not text:
        return {"accounts": [], "total": 0, "limit": limit, "truncated": False}
    by_key, by_name, either = _search_statements(text)
    rows = list(conn.execute(by_key.limit(limit))) + list(conn.execute(by_name.limit(limit)))
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(row.account_key, row._asdict())
    found = list(seen.values())[:limit]
    total = conn.execute(select(func.count()).select_from(account_crosswalk).where(either)).scalar_one()
    _with_scores(conn, found, view)
    return {"accounts": found, "total": total, "limit": limit, "truncated": total > len(found)}


def iter_search_accounts(conn: Connection, text: str, view: View | None = None, *, chunk: int = 500) -> Iterator[dict[str, Any]]:
    """Every account ``search_accounts`` counts, in its order, with scores (the CSV export)."""
    text = text.strip()
    if not text:
        return
    by_key, by_name = _search_statements(text)[:2]
    seen: dict[str, dict[str, Any]] = {}
    for statement in (by_key, by_name):
        for row in conn.execute(statement).all():
            seen.setdefault(row.account_key, row._asdict())
    found = list(seen.values())
    for start in range(0, len(found), chunk):
        yield from _with_scores(conn, found[start : start + chunk], view)


# --------------------------------------------------------------------------- interventions
# Per-episode action counts are packed up to three statuses of one action type to a 64-bit
# column, 16 bits each: an account gets at most one action of a type a day (the outbox key),
# so a count passes 65,535 only for an episode of 179 years.
_PAIRS_PER_COLUMN = 3
_PAIR_BITS = 16


def _intervention_sql(dialect: str, pairs: Sequence[tuple[str, str]]) -> tuple[str, dict[str, Any]]:
    """The intervention analysis in one statement, and its parameters (but the view's).

    Per episode of the window: days to recover, mature or not, and how many actions of each
    (action type, status) pair of ``pairs`` it got (packed, see ``_PAIR_BITS``), its actions
    read through ``ix_action_outbox_account_trigger``; then the episodes of each combination
    are counted: a few thousand rows, whatever the size of the portfolio. SQLite walks the
    episodes in account order (``health_score_episodes``' primary key; ``LEFT JOIN`` keeps
    them the outer loop, so each action seek lands next to the previous one) and groups per
    episode as it goes (no sort); PostgreSQL aggregates each episode's actions in a LATERAL
    subquery.
    """
    recovered = "CASE WHEN e.recovered_on <= :as_of THEN e.recovered_on END"
    if dialect == "sqlite":
        days = f"CAST(julianday({recovered}) - julianday(e.started) AS INTEGER)"
    else:
        days = f"({recovered} - e.started)"  # PostgreSQL: date - date is a whole number of days
    params: dict[str, Any] = {}
    packed = []
    for column, chunk in enumerate(_pair_columns(pairs)):
        action_type = pairs[chunk[0]][0]
        params[f"a{column}"] = action_type
        whens = []
        for slot, index in enumerate(chunk):
            params[f"s{index}"] = pairs[index][1]
            whens.append(f"WHEN :s{index} THEN {1 << (_PAIR_BITS * slot)}")
        # One comparison of the type per action and column; the statuses only for its own type.
        packed.append(f"SUM(CASE WHEN o.action_type = :a{column} THEN CASE o.status {' '.join(whens)} ELSE 0 END "
                      f"ELSE 0 END) AS p{column}")
    names = "".join(f", p{i}" for i in range(len(packed)))
    mature = "CASE WHEN e.started <= :mature_by THEN 1 ELSE 0 END"
    window = "e.model_version = :version AND e.started > :start AND e.started <= :as_of"
    if dialect == "sqlite":
        # One slice of the episodes by account key (see _sqlite_slices): slices run side by side.
        window += " AND e.account_key >= :key_from AND e.account_key < :key_to"
    # An episode's actions: triggered from its first day up to the day before it recovered
    # (or today while it lasts). What the recovery itself triggers (resuming a paused
    # campaign, closing rescue tasks) is a consequence of the recovery, not an intervention.
    during = (
        "o.account_key = e.account_key AND o.trigger_date >= e.started "
        f"AND o.trigger_date < COALESCE({recovered}, :after_as_of)"
    )
    if dialect == "postgresql":
        # Each episode's actions aggregated by a LATERAL subquery (an index-only range scan):
        # no grouping by the episode's text key afterwards.
        lateral = ", ".join(packed) if packed else "0 AS none"
        keys = "".join(f", a.p{i}" for i in range(len(packed)))
        sql = f"""
            SELECT {days} AS days, {mature} AS mature{keys}, COUNT(*) AS n
            FROM health_score_episodes e
            CROSS JOIN LATERAL (SELECT {lateral} FROM action_outbox o WHERE {during}) a
            WHERE {window}
            GROUP BY 1, 2{keys}
        """
        return sql, params
    inner = "".join(f", {p}" for p in packed)
    sql = f"""
        SELECT days, mature{names}, COUNT(*) AS n
        FROM (
            SELECT {days} AS days, {mature} AS mature{inner}
            FROM health_score_episodes e
            LEFT JOIN action_outbox o ON {during}
            WHERE {window}
            GROUP BY e.model_version, e.account_key, e.started
        ) episodes
        GROUP BY days, mature{names}
    """
    return sql, params


def _pair_columns(pairs: Sequence[tuple[str, str]]) -> list[list[int]]:
    """``pairs`` (sorted by action type) grouped into packed columns: indexes of one action
    type, at most ``_PAIRS_PER_COLUMN`` to a column."""
    columns: list[list[int]] = []
    for index, (action_type, _) in enumerate(pairs):
        last = columns[-1] if columns else None
        if last and pairs[last[0]][0] == action_type and len(last) < _PAIRS_PER_COLUMN:
            last.append(index)
        else:
            columns.append([index])
    return columns


def _unpack(packed: Sequence[Any], pairs: Sequence[tuple[str, str]]) -> list[int]:
    """The per-pair counts of one result row (see ``_intervention_sql``)."""
    counts = [0] * len(pairs)
    field = (1 << _PAIR_BITS) - 1
    for value, chunk in zip(packed, _pair_columns(pairs), strict=True):
        value = int(value or 0)
        for slot, index in enumerate(chunk):
            counts[index] = (value >> (_PAIR_BITS * slot)) & field
    return counts


def _median_from_histogram(histogram: dict[int, int]) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    ordered = sorted(histogram.items())

    def nth(n: int) -> int:
        seen = 0
        for value, count in ordered:
            seen += count
            if seen > n:
                return value
        return ordered[-1][0]

    return (nth((total - 1) // 2) + nth(total // 2)) / 2


@dataclass
class _Outcome:
    """Counts of one group of episodes, filled from grouped SQL rows."""

    episodes: int = 0
    still_at_risk: int = 0
    mature: int = 0
    recovered_in_horizon: int = 0
    days_to_recover: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, days: int | None, mature: bool, horizon_days: int, count: int) -> None:
        self.episodes += count
        if days is None:
            self.still_at_risk += count
        else:
            self.days_to_recover[int(days)] += count
        if mature:
            self.mature += count
            if days is not None and days <= horizon_days:
                self.recovered_in_horizon += count

    def as_dict(self) -> dict[str, Any]:
        recovered = sum(self.days_to_recover.values())
        total_days = sum(d * n for d, n in self.days_to_recover.items())
        return {
            "episodes": self.episodes,
            "recovered": recovered,
            "still_at_risk": self.still_at_risk,
            "mature_episodes": self.mature,
            "recovery_rate": self.recovered_in_horizon / self.mature if self.mature else None,
            "median_days_to_recover": _median_from_histogram(self.days_to_recover),
            "mean_days_to_recover": round(total_days / recovered, 1) if recovered else None,
        }


# PostgreSQL, for the intervention statement only: every episode's key is distinct, so a
# Memoize cache in front of the LATERAL scan (which the planner's estimates suggest) would
# only miss; and compiling the per-row expressions (JIT) costs more than the 100k rows save.
_INTERVENTION_SETTINGS = {"enable_memoize": "off", "jit": "off"}


@contextmanager
def _planner_settings(conn: Connection, settings: dict[str, str]) -> Iterator[None]:
    """PostgreSQL: ``settings`` for the statements of the block, then the previous values."""
    if conn.dialect.name != "postgresql":
        yield
        return
    before = {name: conn.execute(select(func.current_setting(name))).scalar_one() for name in settings}
    for name, value in settings.items():
        conn.execute(select(func.set_config(name, value, True)))
    try:
        yield
    finally:
        for name, value in before.items():
            conn.execute(select(func.set_config(name, value, True)))


INTERVENTION_SLICES = 2
"""SQLite: slices of the episodes (by account key) whose intervention statements run at once,
on their own connections and threads (the driver releases the GIL while SQLite steps), so
the page uses the machine's cores; PostgreSQL plans parallel workers itself."""


def _sqlite_slices(conn: Connection, version: str, slices: int) -> list[tuple[str, str]]:
    """``slices`` account-key ranges [from, to) holding about as many of the version's episodes."""
    ep = health_score_episodes.c
    total = conn.execute(select(func.count()).where(ep.model_version == version)).scalar_one()
    bounds = [""]
    for k in range(1, slices):
        key = conn.execute(
            select(ep.account_key).where(ep.model_version == version).order_by(ep.account_key)
            .offset(total * k // slices).limit(1)
        ).scalar()  # fmt: skip
        if key is not None and key > bounds[-1]:
            bounds.append(key)
    bounds.append("\U0010ffff")  # above every key
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _sqlite_sliced(conn: Connection, statement: Any, version: str) -> list[tuple]:
    """Run the intervention statement over slices of the episodes side by side; the grouped
    rows of the slices added up (same groups, counts summed)."""
    from concurrent.futures import ThreadPoolExecutor

    ranges = _sqlite_slices(conn, version, INTERVENTION_SLICES)

    def one(bounds: tuple[str, str], own: bool) -> list[tuple]:
        bound = statement.bindparams(key_from=bounds[0], key_to=bounds[1])
        if not own:
            return [tuple(r) for r in conn.execute(bound)]
        with conn.engine.connect() as other:
            return [tuple(r) for r in other.execute(bound)]

    memory = conn.engine.url.database in (None, "", ":memory:")
    if len(ranges) == 1 or memory:  # an in-memory database is private to its connection
        parts = [one(r, False) for r in ranges]
    else:
        with ThreadPoolExecutor(len(ranges) - 1) as pool:
            others = [pool.submit(one, r, True) for r in ranges[1:]]
            parts = [one(ranges[0], False), *(f.result() for f in others)]
    totals: dict[tuple, int] = defaultdict(int)
    for part in parts:
        for *group, n in part:
            totals[tuple(group)] += n
    return [(*group, n) for group, n in totals.items()]


DELIVERED_STATUSES = (outbox.SENT,)
"""Outbox statuses that make an action an intervention: it reached the customer's CSM, the
executive or the marketing tool. ``suppressed`` (decided by a backfill, or withdrawn before
delivery), ``failed``, ``pending`` and ``sending`` rows never reached anyone."""


def interventions(conn: Connection, view: View, *, window_days: int = 180, horizon_days: int = 60) -> dict[str, Any]:
    """At Risk recovery: overall, per action type, and for episodes that got no action at all.

    An *episode* starts when an account enters At Risk or Critical from Healthy or Neutral in
    the last ``window_days`` and ends when it is back in Healthy or Neutral. An action is an
    *intervention* in an episode when it was delivered (``DELIVERED_STATUSES``) and triggered
    between the episode's first day and the day before its recovery (or today): an episode
    whose actions were all suppressed, failed or still pending counts under "no action", and
    what the recovery itself triggers counts for nothing. Recovery rates compare like with
    like: among episodes that began at least ``horizon_days`` ago, the share that recovered
    within ``horizon_days``. Everything is aggregated in SQL (one statement, see
    ``_intervention_sql``); Python receives a histogram of days-to-recover per group.

    ``by_action_type`` lists every action type decided during the window's episodes: its
    outcomes over the episodes it was delivered in, and ``statuses``, how many of its actions
    ended in each outbox status (the undelivered ones included, so the page can show them).
    """
    start = view.as_of - timedelta(days=window_days)
    pairs = [tuple(r) for r in conn.execute(
        select(action_outbox.c.action_type, action_outbox.c.status).distinct()
        .order_by(action_outbox.c.action_type, action_outbox.c.status)
    )]  # fmt: skip
    sql, params = _intervention_sql(conn.dialect.name, pairs)
    statement = text(sql).bindparams(
        bindparam("version", view.version),
        bindparam("start", start, type_=Date),
        bindparam("as_of", view.as_of, type_=Date),
        bindparam("after_as_of", view.as_of + timedelta(days=1), type_=Date),
        bindparam("mature_by", view.as_of - timedelta(days=horizon_days), type_=Date),
        *(bindparam(name, value) for name, value in params.items()),
    )
    if conn.dialect.name == "sqlite":
        rows = _sqlite_sliced(conn, statement, view.version)
    else:
        with _planner_settings(conn, _INTERVENTION_SETTINGS):
            rows = conn.execute(statement).all()
    outcomes: dict[str, _Outcome] = defaultdict(_Outcome)
    statuses: dict[str, dict[str, int]] = defaultdict(dict)
    for days, mature, *packed, n in rows:
        counts = _unpack(packed, pairs)
        decided = {pair for pair, count in zip(pairs, counts, strict=True) if count}
        delivered = sorted({action_type for action_type, status in decided if status in DELIVERED_STATUSES})
        groups = ["*all", "*any" if delivered else "*none", *delivered]
        if decided and not delivered:
            groups.append("*undelivered")
        for group in groups:
            outcomes[group].add(days, bool(mature), horizon_days, n)
        for (action_type, status), count in zip(pairs, counts, strict=True):
            if count:
                statuses[action_type][status] = statuses[action_type].get(status, 0) + count * n
    action_types = sorted({g for g in outcomes if not g.startswith("*")} | set(statuses))
    return {
        "model_version": view.version,
        "as_of_date": view.as_of,
        "window_days": window_days,
        "horizon_days": horizon_days,
        "delivered_statuses": list(DELIVERED_STATUSES),
        "overall": outcomes["*all"].as_dict(),
        "with_action": outcomes["*any"].as_dict(),
        "no_action": outcomes["*none"].as_dict(),
        "decided_not_delivered": outcomes["*undelivered"].as_dict(),
        "by_action_type": [
            {"action_type": action_type, **outcomes[action_type].as_dict(), "statuses": dict(sorted(statuses[action_type].items()))}
            for action_type in action_types
        ],
    }


# --------------------------------------------------------------------------- model
def _model_audits_table() -> Any:
    """The audit results table, when the schema has one (written by the model audit)."""
    return getattr(schema, "model_audits", None)


def _report_paths(value: Any) -> list[str]:
    """File paths of HTML reports mentioned anywhere in a metrics document."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and "report" in str(key).lower() and item.lower().endswith((".html", ".htm")):
                found.append(item)
            else:
                found.extend(_report_paths(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_report_paths(item))
    return found


def model_overview(conn: Connection, view: View | None) -> dict[str, Any]:
    """Every registered or scored model version with its audit metrics and latest report."""
    scored = {v.version: v for v in (view.versions if view else ())}
    registry = list(conn.execute(select(model_versions).order_by(model_versions.c.created_at.desc())))
    audits = _latest_audits(conn)
    events = _registry_events(conn)
    versions = []
    for row in registry:
        metrics = _json_or_text(row.metrics)
        versions.append(_version_entry(row.version, row._asdict(), metrics, scored.get(row.version), audits.get(row.version)))
    for version, info in scored.items():
        if all(v["version"] != version for v in versions):
            versions.append(_version_entry(version, {}, None, info, audits.get(version)))
    for entry in versions:
        entry["events"] = events.get(entry["version"], [])
    return {"default_version": view.version if view else None, "versions": versions}


def _registry_events(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    """Each version's registry trail (proposed, approved, retired, rejected), oldest first."""
    ev = model_version_events.c
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in conn.execute(
        select(ev.version, ev.event, ev.from_status, ev.to_status, ev.actor, ev.note, ev.occurred_at).order_by(ev.id)
    ):
        found[row.version].append({k: v for k, v in row._asdict().items() if k != "version"})
    return found


def _version_entry(
    version: str, registry: dict[str, Any], metrics: Any, scored: ScoredVersion | None, audit: dict[str, Any] | None
) -> dict[str, Any]:
    reports = _report_paths(metrics) if isinstance(metrics, (dict, list)) else []
    if audit and audit.get("report_path"):
        reports.insert(0, audit["report_path"])
    report = next((str(p) for p in map(_existing_file, reports) if p is not None), None)
    holdout = metrics.get("holdout") if isinstance(metrics, dict) else None
    comparison = None
    if isinstance(holdout, dict) and isinstance(holdout.get("old"), dict) and isinstance(holdout.get("new"), dict):
        comparison = tables.comparison(holdout["old"], holdout["new"])
    return {
        "version": version,
        "status": registry.get("status"),
        "created_at": registry.get("created_at"),
        "created_by": registry.get("created_by"),
        "parent_version": registry.get("parent_version"),
        "decided_at": registry.get("decided_at"),
        "decided_by": registry.get("decided_by"),
        "decision_note": registry.get("decision_note"),
        "metrics": metrics,
        "holdout_comparison": comparison,  # a proposal: its parent's and its own held-out metrics
        "audit": audit,
        "first_scored": scored.first_date if scored else None,
        "latest_scored": scored.latest_date if scored else None,
        "report_path": report or (reports[0] if reports else None),
        "report_available": report is not None,
    }


def _existing_file(path: str) -> Path | None:
    """``path`` as an existing file: absolute, or relative to the project folder."""
    from customer_health.settings import PROJECT_ROOT

    for candidate in (Path(path), PROJECT_ROOT / path):
        if candidate.is_file():
            return candidate.resolve()
    return None


def _latest_audits(conn: Connection) -> dict[str, dict[str, Any]]:
    """The most recent audit row per model version (empty when there is no audit table yet)."""
    table = _model_audits_table()
    if table is None or not conn.dialect.has_table(conn, table.name):
        return {}
    latest: dict[str, dict[str, Any]] = {}
    for row in conn.execute(select(table).order_by(table.c.audited_at)):
        data = row._asdict()
        data["metrics"] = _json_or_text(data.get("metrics"))
        latest[row.model_version] = data
    return latest


def report_file(conn: Connection, view: View | None, version: str) -> Path | None:
    """The latest HTML audit report of ``version`` when its file exists."""
    for entry in model_overview(conn, view)["versions"]:
        if entry["version"] == version and entry["report_available"]:
            return Path(entry["report_path"])
    return None

