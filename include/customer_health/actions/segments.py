"""Health segments pushed to marketing automation, kept in sync daily and idempotently.

The segments are configuration (``segments:`` in ``config/actions_v1.yaml``), read from the
method: "A customer scoring 90+ is a prime referral and case study candidate; one scoring
40-60 needs engagement nurturing before any upsell attempt", and At Risk / Critical accounts
belong on a suppression list. An account is in a segment on date D when its effective score
(override applied) and zone on D satisfy the segment (``SegmentSpec.holds``); the segment's
audience is the account's Salesforce contacts with an e-mail address.

``sync_segments(engine, D, ...)`` brings each segment's programme (a Salesforce Campaign or a
HubSpot list, through the campaign target) to that audience:

* contacts of accounts in the segment that are not members are added (``campaigns.add_members``,
  recorded as ``segment:<name>``); a contact someone else already made a member is left as it
  is and never removed by the product;
* members the segment added whose account left the segment (or who are no longer a contact of
  it) are removed - only those;
* ``pause`` groups (the nurture segment's upsell and expansion offers) are paused for the
  audience and held by the segment, released for those who left (``campaigns.pause_members`` /
  ``release_holds``): a membership an At Risk pause also holds stays paused until both let go.

Once per date: ``segment_syncs`` records each (segment, D); a date already done, or older than
the latest done, syncs nothing (time only moves forward), so a re-run or a backfill of an old
date changes nothing. An interrupted sync of D (status ``running``) is finished by its re-run:
every change is recorded before it is made. A segment in ``shadow`` mode counts its audience
and changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from customer_health.actions import campaigns
from customer_health.actions.campaign_targets import CampaignTarget
from customer_health.actions.config import ActionRules, SegmentSpec
from customer_health.warehouse.io import utcnow
from customer_health.warehouse.schema import (
    campaign_memberships,
    health_scores,
    raw_sf_contact,
    segment_syncs,
)

RUNNING, DONE, SHADOW = "running", "done", "shadow"


@dataclass
class SegmentReport:
    """What syncing one date did, per segment."""

    as_of: date
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A small JSON-able summary (fit for XCom)."""
        return {"as_of": self.as_of.isoformat(), "segments": self.segments}


def holder(segment: str) -> str:
    """Who the segment's memberships and holds are recorded as."""
    return f"segment:{segment}"


def segment_accounts(engine: Engine, as_of: date, model_version: str, spec: SegmentSpec) -> list[str]:
    """The accounts in ``spec`` on ``as_of`` (their scores of that date, of ``model_version``)."""
    hs = health_scores
    with engine.connect() as conn:
        rows = conn.execute(
            select(hs.c.account_key, hs.c.score, hs.c.zone)
            .where(hs.c.model_version == model_version, hs.c.as_of_date == as_of)
            .order_by(hs.c.account_key)
        ).fetchall()
    return [r.account_key for r in rows if spec.holds(r.score, r.zone)]


def audience(engine: Engine, accounts: list[str]) -> list[campaigns.CampaignContact]:
    """The accounts' Salesforce contacts with an e-mail address, one per address."""
    c = raw_sf_contact
    out: dict[str, campaigns.CampaignContact] = {}
    with engine.connect() as conn:
        for i in range(0, len(accounts), 500):
            chunk = accounts[i : i + 500]
            for r in conn.execute(
                select(c.c.id, c.c.account_id, c.c.email)
                .where(c.c.account_id.in_(chunk), c.c.is_deleted.is_(False), c.c.email.is_not(None))
                .order_by(c.c.id)
            ):
                email = r.email.strip().lower()
                if email and email not in out:
                    out[email] = campaigns.CampaignContact(r.account_id, email, r.id)
    return sorted(out.values(), key=lambda x: (x.account_key, x.email))


def _latest_done(engine: Engine, segment: str) -> date | None:
    with engine.connect() as conn:
        day = conn.execute(
            select(func.max(segment_syncs.c.as_of_date)).where(
                segment_syncs.c.segment == segment, segment_syncs.c.status.in_([DONE, SHADOW])
            )
        ).scalar_one_or_none()
    return day if day is None or isinstance(day, date) else date.fromisoformat(str(day)[:10])


def _start(engine: Engine, segment: str, as_of: date, target: str) -> None:
    ins = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(segment_syncs)
    with engine.begin() as conn:
        conn.execute(ins.on_conflict_do_nothing(index_elements=["segment", "as_of_date"]), [{
            "segment": segment, "as_of_date": as_of, "target": target, "status": RUNNING, "accounts": 0, "added": 0,
            "removed": 0, "paused": 0, "resumed": 0, "started_at": utcnow(),
        }])  # fmt: skip


def _finish(engine: Engine, segment: str, as_of: date, status: str, counts: dict[str, int]) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(segment_syncs)
            .where(segment_syncs.c.segment == segment, segment_syncs.c.as_of_date == as_of)
            .values(status=status, finished_at=utcnow(), **counts)
        )


def sync_segments(
    engine: Engine, as_of: date, model_version: str, rules: ActionRules, target: CampaignTarget
) -> SegmentReport:
    """Sync every configured segment's programme to its audience on ``as_of`` (once per date)."""
    report = SegmentReport(as_of)
    for name, spec in sorted(rules.segments.items()):
        latest = _latest_done(engine, name)
        if latest is not None and latest >= as_of:
            report.segments[name] = {"skipped": f"already synced for {latest.isoformat()}"}
            continue
        accounts = segment_accounts(engine, as_of, model_version, spec)
        if spec.mode == "shadow":
            _start(engine, name, as_of, target.name)
            _finish(engine, name, as_of, SHADOW, {"accounts": len(accounts)})
            report.segments[name] = {"accounts": len(accounts), "shadow": True}
            continue
        _start(engine, name, as_of, target.name)
        counts = _sync_one(engine, as_of, spec, accounts, rules, target)
        _finish(engine, name, as_of, DONE, counts)
        report.segments[name] = counts
    return report


def _sync_one(
    engine: Engine, as_of: date, spec: SegmentSpec, accounts: list[str], rules: ActionRules, target: CampaignTarget
) -> dict[str, int]:
    who = holder(spec.name)
    contacts = audience(engine, accounts)
    programmes = campaigns.programmes_of(target, rules, [spec.programme])
    added = campaigns.add_members(engine, target, programmes, contacts, who, as_of)
    wanted = {(c.account_key, c.email) for c in contacts}
    cm = campaign_memberships
    with engine.connect() as conn:
        ours = conn.execute(
            select(cm).where(
                cm.c.target == target.name, cm.c.kind == campaigns.MEMBER, cm.c.started_by == who,
                cm.c.state.in_([campaigns.PENDING, campaigns.ACTIVE]),
                cm.c.programme_id.in_([p.id for p in programmes]),
            )
        ).fetchall()  # fmt: skip
    leavers = [r for r in ours if (r.account_key, r.email) not in wanted]
    removed = campaigns.remove_members(engine, target, leavers, as_of, f"{who}:{as_of.isoformat()}")
    paused = resumed = 0
    if spec.pause:
        pause_programmes = campaigns.programmes_of(target, rules, spec.pause)
        p = campaigns.pause_members(engine, target, pause_programmes, contacts, who, as_of, rules.pause_status)
        keep = set(target.contact_refs([c.as_payload() for c in contacts]).values())
        r = campaigns.release_holds(engine, target, who, as_of, f"{who}:{as_of.isoformat()}", rules.pause_status,
                                    keep_refs=keep)  # fmt: skip
        paused, resumed = p.paused, r.resumed
    return {"accounts": len(accounts), "added": added.added, "removed": removed, "paused": paused, "resumed": resumed}


def managed_members(engine: Engine) -> dict[str, int]:
    """How many active members each segment keeps (for reports)."""
    cm = campaign_memberships
    counts: dict[str, int] = defaultdict(int)
    with engine.connect() as conn:
        for started_by, n in conn.execute(
            select(cm.c.started_by, func.count()).where(
                cm.c.kind == campaigns.MEMBER, cm.c.state == campaigns.ACTIVE, cm.c.started_by.like("segment:%")
            ).group_by(cm.c.started_by)
        ):
            counts[started_by.removeprefix("segment:")] = n
    return dict(counts)
