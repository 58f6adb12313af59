"""Going live safely: which decided actions a day may deliver (shadow mode and the daily cap).

Deciding writes pending rows; nothing delivers a pending row until ``release_day`` has released
it for a day (``action_outbox.release_date``). For one day D (the run's as-of date) and each
action type of the rules:

* a type in **shadow** mode releases nothing: its pending rows (decided while it was live) turn
  ``shadow`` and are never sent - switching a type to shadow stops it at once;
* a type with a **daily cap** releases at most ``daily_cap`` rows on D, counting those already
  released on D (a re-run, the intraday refresh), in order: older trigger dates first (nothing
  waits behind newer news for ever), then the account's priority on its trigger date
  (``health_scores.priority``, highest first), then the key. The rest stay pending with
  ``deferred_since`` and a note in ``last_error`` saying where they stand; they are never dropped
  and never sent twice (a released row is claimed once, as before);
* a row from an earlier day (deferred, or left by an outage) is released only while still due: if the account left the zones its
  trigger fired for (``rules.still_due``: it recovered, it is no longer Healthy) it is
  ``suppressed`` with the reason instead of being sent late. The anti-fatigue rules hold for
  deferred rows as for any other: a pending row is open, so the same action is not decided
  again meanwhile, and a recovery withdraws the rescue rows still waiting.

Pending rows older than ``outbox.DEFAULT_MAX_AGE_DAYS`` that the cap never deferred (left by an
outage) stay stale news, as before. Backfills and runs with ``dispatch=false`` release nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, update

from customer_health.actions import outbox
from customer_health.actions.config import ActionRules
from customer_health.actions.rules import still_due
from customer_health.warehouse.io import utcnow
from customer_health.warehouse.schema import action_outbox, health_scores

SHADOW_NOTE = "its action type was switched to shadow mode before delivery: recorded, never sent"


@dataclass
class ReleaseReport:
    """What releasing one day did, per action type."""

    as_of: date
    released: dict[str, int] = field(default_factory=dict)
    deferred: dict[str, int] = field(default_factory=dict)
    withdrawn: dict[str, int] = field(default_factory=dict)  # deferred rows no longer due
    shadowed: dict[str, int] = field(default_factory=dict)  # pending rows of a type now in shadow

    def summary(self) -> dict[str, Any]:
        """A small JSON-able summary (fit for XCom)."""
        return {"released": dict(self.released), "deferred": dict(self.deferred),
                "withdrawn": dict(self.withdrawn), "shadowed": dict(self.shadowed)}


def deferral_note(cap: int, position: int, as_of: date) -> str:
    """The note a deferred row carries: why it waits and where it stands."""
    return (
        f"deferred by the daily cap ({cap} a day): number {position} in line after {as_of.isoformat()}'s "
        "deliveries; it goes out on a later day, older days first, then highest priority"
    )


def release_day(engine: Engine, as_of: date, rules: ActionRules, max_age_days: int = outbox.DEFAULT_MAX_AGE_DAYS) -> ReleaseReport:
    """Release the pending rows ``as_of`` may deliver, per action type (idempotent for a day)."""
    report = ReleaseReport(as_of)
    with engine.begin() as conn:
        types = sorted(set(conn.execute(
            select(action_outbox.c.action_type).distinct().where(
                action_outbox.c.status == outbox.PENDING, action_outbox.c.release_date.is_(None))
        ).scalars()))  # fmt: skip
        for action_type in types:
            spec = rules.actions.get(action_type)
            if spec is None:
                continue  # a type no longer in the rules: left as it is, visible on the dashboard
            if spec.shadow:
                n = _shadow_pending(conn, action_type)
                if n:
                    report.shadowed[action_type] = n
                continue
            _release_type(conn, action_type, spec.daily_cap, as_of, max_age_days, report, rules)
    return report


def _shadow_pending(conn: Connection, action_type: str) -> int:
    ob = action_outbox
    return conn.execute(
        update(ob)
        .where(ob.c.action_type == action_type, ob.c.status == outbox.PENDING, ob.c.release_date.is_(None))
        .values(status=outbox.SHADOW, last_error=SHADOW_NOTE, updated_at=utcnow())
    ).rowcount


def _release_type(
    conn: Connection, action_type: str, cap: int | None, as_of: date, max_age_days: int, report: ReleaseReport,
    rules: ActionRules | None = None,
) -> None:
    ob, hs = action_outbox, health_scores
    oldest = as_of - timedelta(days=max_age_days)
    priority = (
        select(hs.c.priority)
        .where(hs.c.model_version == ob.c.model_version, hs.c.as_of_date == ob.c.trigger_date,
               hs.c.account_key == ob.c.account_key)
        .scalar_subquery()
    )  # fmt: skip
    candidates = conn.execute(
        select(ob.c.idempotency_key, ob.c.account_key, ob.c.model_version, ob.c.trigger_date, ob.c.deferred_since,
               ob.c.payload)
        .where(
            ob.c.action_type == action_type,
            ob.c.status == outbox.PENDING,
            ob.c.release_date.is_(None),
            ob.c.trigger_date <= as_of,
            or_(ob.c.trigger_date >= oldest, ob.c.deferred_since.is_not(None)),
        )
        .order_by(ob.c.trigger_date, priority.desc().nulls_last(), ob.c.idempotency_key)
    ).fetchall()  # fmt: skip
    if not candidates:
        return
    waiting = [c for c in candidates if c.trigger_date < as_of]
    zones = _zones_now(conn, as_of, {(c.model_version, c.account_key) for c in waiting})
    due, gone = [], []
    for c in candidates:
        trigger = (json.loads(c.payload) or {}).get("trigger", "")
        zone = zones.get((c.model_version, c.account_key))
        if c.trigger_date < as_of and not still_due(trigger, zone, rules):
            gone.append((c.idempotency_key, trigger, zone))
        else:
            due.append(c.idempotency_key)
    now = utcnow()
    for key, trigger, zone in gone:
        conn.execute(
            update(ob).where(ob.c.idempotency_key == key, ob.c.status == outbox.PENDING).values(
                status=outbox.SUPPRESSED, updated_at=now,
                last_error=f"withdrawn while deferred by the daily cap: the account is {zone} on {as_of.isoformat()}, "
                           f"so what {trigger.replace('_', ' ')} called for is no longer due",
            )
        )  # fmt: skip
    if gone:
        report.withdrawn[action_type] = len(gone)
    already = conn.execute(
        select(func.count()).select_from(ob).where(ob.c.action_type == action_type, ob.c.release_date == as_of)
    ).scalar_one()
    room = len(due) if cap is None else max(0, cap - already)
    released, deferred = due[:room], due[room:]
    if released:
        conn.execute(
            update(ob).where(ob.c.idempotency_key.in_(released), ob.c.status == outbox.PENDING)
            .values(release_date=as_of, last_error=None, updated_at=now)
        )  # fmt: skip
        report.released[action_type] = len(released)
    for position, key in enumerate(deferred, 1):
        conn.execute(
            update(ob).where(ob.c.idempotency_key == key, ob.c.status == outbox.PENDING).values(
                deferred_since=func.coalesce(ob.c.deferred_since, as_of),
                last_error=deferral_note(cap or 0, position, as_of), updated_at=now,
            )
        )  # fmt: skip
    if deferred:
        report.deferred[action_type] = len(deferred)


def _zones_now(conn: Connection, as_of: date, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The latest zone on or before ``as_of`` of each (model version, account)."""
    hs = health_scores
    out: dict[tuple[str, str], str] = {}
    for version in sorted({v for v, _ in pairs}):
        keys = sorted(k for v, k in pairs if v == version)
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            latest = (
                select(hs.c.account_key, func.max(hs.c.as_of_date).label("day"))
                .where(hs.c.model_version == version, hs.c.as_of_date <= as_of, hs.c.account_key.in_(chunk))
                .group_by(hs.c.account_key)
                .subquery()
            )
            rows = conn.execute(
                select(hs.c.account_key, hs.c.zone).join(
                    latest, and_(hs.c.account_key == latest.c.account_key, hs.c.as_of_date == latest.c.day)
                ).where(hs.c.model_version == version)
            )
            out.update({(version, key): zone for key, zone in rows})
    return out
