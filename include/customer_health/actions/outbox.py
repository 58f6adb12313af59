"""The action outbox: every side effect is first a row with a deterministic idempotency key.

Statuses: ``pending`` (decided, not delivered) -> ``sending`` (claimed by a dispatcher) ->
``sent`` (delivered; ``external_id`` and ``result`` say what the target did) or ``failed``
(permanent error, in ``last_error``). ``suppressed`` rows were decided but must not be
delivered (decided by a backfill, or the account recovered before delivery). ``shadow`` rows
were decided while their action type was in shadow mode: the payload is what would have been
sent, and nothing ever sends it (switching the type to live later does not).

A pending row is delivered only once the daily cap has released it (``release_date``, set by
``actions.release``); until then it waits, deferred, with a note in ``last_error``.

Writing a decision never changes an existing row: re-deciding a date inserts nothing and never
puts a sent row back to pending.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite

from customer_health.warehouse.io import utcnow
from customer_health.warehouse.schema import action_outbox

PENDING, SENDING, SENT, FAILED, SUPPRESSED = "pending", "sending", "sent", "failed", "suppressed"
SHADOW = "shadow"
# Targets whose own idempotency makes a second delivery harmless (upsert by external id,
# membership changes recorded before they are made): a row left 'sending' by a crashed
# dispatcher is retried.
IDEMPOTENT_TARGETS = ("salesforce", "campaigns")
# Run types that must never deliver (Airflow's DagRunType values).
NON_DISPATCHING_RUN_TYPES = ("backfill",)
DEFAULT_BATCH_SIZE = 25
DEFAULT_MAX_AGE_DAYS = 7


def idempotency_key(account_key: str, action_type: str, trigger_date: date, model_version: str) -> str:
    """The outbox key: one action of a type per account, trigger date and model version."""
    return f"{account_key}:{action_type}:{trigger_date.isoformat()}:{model_version}"


def payload_of(raw: Any) -> dict[str, Any]:
    """An outbox row's payload as a dict: the stored JSON text (or an already decoded mapping);
    an empty dict for NULL or text that is not a JSON object."""
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        found = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def email_message_id(key: str, domain: str = "customer-health.local") -> str:
    """The Message-ID of the e-mail for outbox row ``key``: the same key, the same Message-ID."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def dispatch_allowed(run_type: str, dispatch_param: bool) -> bool:
    """Whether a DAG run may deliver actions: never for backfills, never with dispatch=false."""
    # Airflow 3's DagRunType is an enum whose str() is "DagRunType.BACKFILL": take its value.
    kind = str(getattr(run_type, "value", run_type)).lower().removeprefix("dagruntype.")
    return bool(dispatch_param) and kind not in NON_DISPATCHING_RUN_TYPES


def _insert_ignoring_existing(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert rows whose key is new; existing rows (any status) are left exactly as they are."""
    if not rows:
        return 0
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        ins = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(action_outbox)
        stmt = ins.on_conflict_do_nothing(index_elements=["idempotency_key"])
        return sum(conn.execute(stmt, [dict(r)]).rowcount for r in rows)
    inserted = 0  # pragma: no cover - other dialects
    for row in rows:
        exists = conn.execute(
            select(action_outbox.c.idempotency_key).where(action_outbox.c.idempotency_key == row["idempotency_key"])
        ).first()
        if exists is None:
            conn.execute(action_outbox.insert().values(**row))
            inserted += 1
    return inserted


def add_actions(conn: Connection, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write decided actions (status pending or suppressed); returns how many were new."""
    now = utcnow()
    prepared = []
    for row in rows:
        prepared.append(
            {
                "idempotency_key": row["idempotency_key"],
                "account_key": row["account_key"],
                "action_type": row["action_type"],
                "trigger_date": row["trigger_date"],
                "model_version": row["model_version"],
                "status": row.get("status", PENDING),
                "reason": row["reason"],
                "payload": json.dumps(row["payload"], sort_keys=True, default=str),
                "target": row["target"],
                "attempts": 0,
                "last_error": row.get("last_error"),
                "created_at": now,
                "updated_at": now,
            }
        )
    return _insert_ignoring_existing(conn, prepared)


def claim(engine: Engine, key: str, target: str) -> bool:
    """Take row ``key`` for delivery; False when it is not (or no longer) deliverable.

    The status is re-checked inside the UPDATE itself, so two dispatchers, or a re-run of a
    dispatcher whose first run delivered the row, cannot both send it; a row the daily cap has
    not released (``release_date`` NULL) is never claimed.
    """
    claimable = (PENDING, SENDING) if target in IDEMPOTENT_TARGETS else (PENDING,)
    with engine.begin() as conn:
        result = conn.execute(
            update(action_outbox)
            .where(
                action_outbox.c.idempotency_key == key,
                action_outbox.c.status.in_(claimable),
                action_outbox.c.release_date.is_not(None),
            )
            .values(status=SENDING, attempts=action_outbox.c.attempts + 1, updated_at=utcnow())
        )
        return result.rowcount == 1


def mark_sent(engine: Engine, key: str, external_id: str | None, result: Any) -> None:
    """Record a delivery: status sent, the target's id and what it did."""
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            update(action_outbox)
            .where(action_outbox.c.idempotency_key == key)
            .values(
                status=SENT,
                external_id=(external_id or "")[:120] or None,
                result=json.dumps(result, sort_keys=True, default=str),
                last_error=None,
                dispatched_at=now,
                updated_at=now,
            )
        )


def save_progress(engine: Engine, key: str, result: Any) -> None:
    """Keep a multi-call delivery's progress on the row, so a retry knows what it already did."""
    with engine.begin() as conn:
        conn.execute(
            update(action_outbox)
            .where(action_outbox.c.idempotency_key == key)
            .values(result=json.dumps(result, sort_keys=True, default=str), updated_at=utcnow())
        )


def mark_failed(engine: Engine, key: str, error: str) -> None:
    """A permanent failure: status failed, the error visible in ``last_error``."""
    with engine.begin() as conn:
        conn.execute(
            update(action_outbox)
            .where(action_outbox.c.idempotency_key == key)
            .values(status=FAILED, last_error=error[:4000], updated_at=utcnow())
        )


def mark_undeliverable(engine: Engine, key: str, why: str) -> None:
    """The target had nothing to deliver the row to: suppressed, with why (not a failure)."""
    with engine.begin() as conn:
        conn.execute(
            update(action_outbox)
            .where(action_outbox.c.idempotency_key == key)
            .values(status=SUPPRESSED, last_error=why[:4000], updated_at=utcnow())
        )


def release(engine: Engine, key: str, error: str) -> None:
    """A transient failure that outlived its retries: back to pending for the next dispatch."""
    with engine.begin() as conn:
        conn.execute(
            update(action_outbox)
            .where(action_outbox.c.idempotency_key == key, action_outbox.c.status == SENDING)
            .values(status=PENDING, last_error=error[:4000], updated_at=utcnow())
        )


def mark_resolved(engine: Engine, keys: Sequence[str], resolved_by: str) -> None:
    """Rows ``keys`` were undone by ``resolved_by`` (a pause resumed, a rescue task completed)."""
    if not keys:
        return
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            update(action_outbox)
            .where(action_outbox.c.idempotency_key.in_(list(keys)), action_outbox.c.resolved_at.is_(None))
            .values(resolved_at=now, resolved_by=resolved_by, updated_at=now)
        )


def suppress_pending(conn: Connection, keys: Sequence[str], why: str) -> int:
    """Pending rows that must no longer be delivered (e.g. the account recovered first)."""
    if not keys:
        return 0
    return conn.execute(
        update(action_outbox)
        .where(action_outbox.c.idempotency_key.in_(list(keys)), action_outbox.c.status == PENDING)
        .values(status=SUPPRESSED, last_error=why, updated_at=utcnow())
    ).rowcount


def pending_batches(
    engine: Engine,
    as_of: date,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_age_days: int = DEFAULT_MAX_AGE_DAYS,
) -> dict[str, list[list[str]]]:
    """Deliverable keys per action type, in batches, for dynamic task mapping.

    Pending rows the daily cap released (``actions.release``) on ``as_of`` or up to
    ``max_age_days`` before it (left pending by an outage) are included; rows released earlier
    are stale news and are not sent automatically, and rows not released yet wait their turn.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    oldest = as_of - timedelta(days=max_age_days)
    with engine.connect() as conn:
        rows = conn.execute(
            select(action_outbox.c.action_type, action_outbox.c.idempotency_key)
            .where(
                action_outbox.c.status == PENDING,
                action_outbox.c.release_date <= as_of,
                action_outbox.c.release_date >= oldest,
            )
            .order_by(action_outbox.c.action_type, action_outbox.c.idempotency_key)
        ).fetchall()
    keys: dict[str, list[str]] = defaultdict(list)
    for action_type, key in rows:
        keys[action_type].append(key)
    return {t: [ks[i : i + batch_size] for i in range(0, len(ks), batch_size)] for t, ks in sorted(keys.items())}
