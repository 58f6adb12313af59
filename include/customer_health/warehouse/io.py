"""Idempotent writes to the warehouse: upserts, watermarks and the quarantine.

Everything that lands in the warehouse goes through ``upsert_rows`` (keyed by the table's
primary key), so re-running an extraction or a scoring date overwrites instead of appending.
Watermarks are written in the same transaction as the rows they cover, so a watermark never
runs ahead of committed data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from customer_health.warehouse.schema import extraction_watermarks, quarantine

# SQLite allows 32766 bound parameters per statement; stay well below for wide tables.
_MAX_PARAMS = 30000


def utcnow() -> datetime:
    """Now, as naive UTC (the warehouse stores naive UTC everywhere)."""
    return datetime.now(UTC).replace(tzinfo=None)


def upsert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert ``rows`` into ``table``, overwriting rows with the same primary key.

    Works on SQLite and PostgreSQL (``INSERT ... ON CONFLICT DO UPDATE``). Returns the number
    of rows written. All rows must carry the same keys.
    """
    if not rows:
        return 0
    dialect = conn.dialect.name
    keys = list(rows[0].keys())
    pk = [c.name for c in table.primary_key.columns]
    update_cols = [k for k in keys if k not in pk]
    chunk = max(1, _MAX_PARAMS // max(1, len(keys)))
    if dialect == "postgresql":
        ins = postgresql.insert(table)
    elif dialect == "sqlite":
        ins = sqlite.insert(table)
    else:  # pragma: no cover - other dialects: delete + insert, still idempotent
        return _delete_insert(conn, table, rows, pk)
    stmt = (
        ins.on_conflict_do_update(index_elements=pk, set_={k: ins.excluded[k] for k in update_cols})
        if update_cols
        else ins.on_conflict_do_nothing(index_elements=pk)
    )
    if dialect == "postgresql":
        # SQLAlchemy batches an executemany of this upsert into multi-row ``VALUES`` pages
        # ("insertmanyvalues") only when it has a RETURNING clause; without one psycopg2 sends
        # a statement per row (measured: 50,000 rows 4.3 s row by row, 0.56 s batched).
        stmt = stmt.returning(table.c[pk[0]])
    for start in range(0, len(rows), chunk):
        conn.execute(stmt, list(rows[start : start + chunk])).close()
    return len(rows)


def _delete_insert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], pk: list[str]) -> int:
    from sqlalchemy import and_

    for row in rows:
        conn.execute(table.delete().where(and_(*[table.c[k] == row[k] for k in pk])))
    conn.execute(table.insert(), list(rows))
    return len(rows)


def get_watermark(conn: Connection, source: str, obj: str) -> str | None:
    """The extraction watermark for ``source``/``obj`` (None before the first extraction)."""
    return conn.execute(
        select(extraction_watermarks.c.watermark).where(
            extraction_watermarks.c.source == source, extraction_watermarks.c.object == obj
        )
    ).scalar_one_or_none()


def set_watermark(conn: Connection, source: str, obj: str, watermark: str, rows_added: int = 0) -> None:
    """Advance the watermark; call inside the transaction that committed the rows it covers."""
    previous = conn.execute(
        select(extraction_watermarks.c.rows_total).where(
            extraction_watermarks.c.source == source, extraction_watermarks.c.object == obj
        )
    ).scalar_one_or_none()
    upsert_rows(
        conn,
        extraction_watermarks,
        [
            {
                "source": source,
                "object": obj,
                "watermark": watermark,
                "rows_total": (previous or 0) + rows_added,
                "updated_at": utcnow(),
            }
        ],
    )


def _watermark_time(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def advance_time_watermark(
    conn: Connection, source: str, obj: str, watermark: str, moment: datetime, rows_added: int = 0
) -> str:
    """Move a time watermark forward to ``moment`` (written as ``watermark``); never backwards.

    Two runs can overlap (the daily run and the 15-minute refresh); the one that read less far
    must not pull the watermark back behind the other's. Returns the watermark now stored.
    Call inside the transaction that committed the rows it covers.
    """
    current = get_watermark(conn, source, obj)
    stored = _watermark_time(current) if current is not None else None
    if stored is not None and stored >= moment:
        set_watermark(conn, source, obj, current, rows_added)
        return current
    set_watermark(conn, source, obj, watermark, rows_added)
    return watermark


def quarantine_records(
    conn: Connection, source: str, obj: str, records: Iterable[tuple[str, str, Any]]
) -> int:
    """Keep malformed records aside with the reason, instead of dropping or failing on them.

    ``records`` are ``(record_id, reason, payload)``. A record seen again updates its reason and
    ``last_seen_at`` and counts ``times_seen``; it is never stored twice. Returns how many.
    """
    now = utcnow()
    n = 0
    for record_id, reason, payload in records:
        existing = conn.execute(
            select(quarantine.c.times_seen, quarantine.c.first_seen_at).where(
                quarantine.c.source == source,
                quarantine.c.object == obj,
                quarantine.c.record_id == str(record_id),
            )
        ).first()
        upsert_rows(
            conn,
            quarantine,
            [
                {
                    "source": source,
                    "object": obj,
                    "record_id": str(record_id),
                    "reason": reason,
                    "payload": json.dumps(payload, default=str),
                    "first_seen_at": existing.first_seen_at if existing else now,
                    "last_seen_at": now,
                    "times_seen": (existing.times_seen + 1) if existing else 1,
                }
            ],
        )
        n += 1
    return n
