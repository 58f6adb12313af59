"""The dashboard's *Shadow* page: what the shadow-mode action types would have sent.

An action type in ``mode: shadow`` is decided and recorded (outbox status ``shadow``) with the
payload a live type would deliver, and never delivered. Before switching it to ``live`` a team
reads here, day by day, who would have received what (``actions.preview.would_send`` over the
stored payload), with the per-type counts a daily cap would have to absorb.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from customer_health.actions import outbox
from customer_health.actions.preview import would_send
from customer_health.warehouse.schema import account_crosswalk, action_outbox

DEFAULT_DAYS = 14
PAGE_SIZE = 200


def shadow_actions(
    conn: Connection, as_of: date, *, days: int = DEFAULT_DAYS, action_type: str | None = None,
    limit: int | None = PAGE_SIZE,
) -> dict[str, Any]:
    """Shadow rows triggered in the ``days`` up to ``as_of`` (newest first), each with what it
    would have sent, and the counts per action type and day."""
    since = as_of - timedelta(days=days - 1)
    ob, cw = action_outbox.c, account_crosswalk.c
    where = [ob.status == outbox.SHADOW, ob.trigger_date >= since, ob.trigger_date <= as_of]
    if action_type:
        where.append(ob.action_type == action_type)
    counts = Counter()
    per_day: dict[str, Counter] = {}
    for kind, day, n in conn.execute(
        select(ob.action_type, ob.trigger_date, func.count()).where(*where).group_by(ob.action_type, ob.trigger_date)
    ):
        counts[kind] += n
        per_day.setdefault(kind, Counter())[str(day)] += n
    stmt = (
        select(ob.idempotency_key, ob.account_key, cw.account_name, ob.action_type, ob.trigger_date, ob.target,
               ob.reason, ob.payload)
        .select_from(action_outbox.outerjoin(account_crosswalk, cw.account_key == ob.account_key))
        .where(*where)
        .order_by(ob.trigger_date.desc(), ob.action_type, ob.account_key)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    rows = []
    for r in conn.execute(stmt):
        preview = would_send(r.target, r.action_type, r.payload)
        rows.append({
            "key": r.idempotency_key, "account_key": r.account_key, "account_name": r.account_name,
            "action_type": r.action_type, "trigger_date": r.trigger_date, "target": r.target,
            "reason": r.reason, **preview.as_dict(),
        })
    return {
        "as_of": as_of, "since": since, "days": days, "action_type": action_type,
        "total": sum(counts.values()), "by_type": dict(sorted(counts.items())),
        "peak_day": {k: max(v.values()) for k, v in per_day.items()},
        "rows": rows, "truncated": limit is not None and sum(counts.values()) > len(rows),
    }


def columns() -> list[tuple[str, Any]]:
    """The CSV columns of the shadow list."""
    names = ("trigger_date", "action_type", "account_key", "account_name", "channel", "recipient", "subject", "body",
             "reason", "key")
    return [(n, (lambda row, n=n: row.get(n))) for n in names]
