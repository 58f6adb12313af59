"""Score history in the warehouse: read what the trends need, write a date's scores.

Reads are narrow on purpose. For scoring date D the trends need only the scores of a few
dates - D-30, D-60, D-90, the slope samples (every ``trends.slope_sample_every_days`` days
over the last ``trends.slope_window_days``) and the most recent earlier date for
``previous_zone`` - of the same model version; ``read_score_history`` fetches exactly those
(one indexed ``IN`` on (as_of_date, model_version)), never the whole table.

Writes are upserts keyed (account_key, as_of_date, model_version) for scores and
(parent_account_key, as_of_date, model_version) for rollups: re-running a date overwrites
its rows and never adds a second one. (Accounts are upserted rather than the date's partition
replaced, so shards of one date scored by separate mapped tasks do not erase each other.)
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, func, or_, select

from customer_health.scoring.model_config import ModelConfig
from customer_health.warehouse.io import upsert_rows, utcnow
from customer_health.warehouse.schema import health_score_rollups, health_scores, signal_values

HISTORY_COLUMNS = ["account_key", "as_of_date", "computed_score", "score", "zone"]


def history_dates(engine: Engine, as_of: date, config: ModelConfig) -> list[date]:
    """The earlier dates whose scores the trends for ``as_of`` need."""
    tc = config.trends
    dates = {as_of - timedelta(days=k) for k in tc.history_offsets()}
    with engine.connect() as conn:
        latest = conn.execute(
            select(func.max(health_scores.c.as_of_date)).where(
                health_scores.c.model_version == config.version,
                health_scores.c.as_of_date < as_of,
                health_scores.c.as_of_date >= as_of - timedelta(days=tc.previous_zone_lookback_days),
            )
        ).scalar_one_or_none()
    if latest is not None:
        dates.add(latest if isinstance(latest, date) else date.fromisoformat(str(latest)))
    return sorted(dates)


def read_score_history(engine: Engine, as_of: date, config: ModelConfig) -> pd.DataFrame:
    """Earlier scores of this model version on the dates the trends need (see module doc)."""
    dates = history_dates(engine, as_of, config)
    t = health_scores.c
    stmt = select(t.account_key, t.as_of_date, t.computed_score, t.score, t.zone).where(
        t.model_version == config.version, t.as_of_date.in_(dates)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=HISTORY_COLUMNS)


def read_signal_snapshot(engine: Engine, day: date, signal_keys: list[str]) -> pd.DataFrame | None:
    """Raw signal values stored for ``day`` as a wide frame (account_key + one column per
    signal), or None when nothing was stored for that day."""
    t = signal_values.c
    stmt = select(t.account_key, *[t[key] for key in signal_keys]).where(t.as_of_date == day).order_by(t.account_key)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    if not rows:
        return None
    frame = pd.DataFrame([tuple(r) for r in rows], columns=["account_key", *signal_keys])
    for key in signal_keys:
        frame[key] = pd.to_numeric(frame[key], errors="coerce").astype(float)
    return frame


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    """Rows as dicts with SQL NULL (None) for every missing value (NaN would be stored as NaN)."""
    subset = frame[columns].astype(object)
    subset = subset.where(subset.notna(), None)
    return subset.to_dict("records")


def _upsert(target: Engine | Connection, table, rows: list[dict]) -> int:
    if isinstance(target, Connection):
        return upsert_rows(target, table, rows)
    with target.begin() as conn:
        return upsert_rows(conn, table, rows)


# Rows per COPY / executemany batch: bounds the text or tuples held at once to tens of MB.
WRITE_BATCH_ROWS = 100_000


def _python_values(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A column as an object array of plain Python values, None for every missing value."""
    return frame[name].to_numpy(dtype=object, na_value=None)


def _plain_temporal(value: Any) -> Any:
    """A date or datetime subclass instance as the plain ``datetime`` type (others unchanged)."""
    if isinstance(value, datetime) and type(value) is not datetime:
        return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)
    if isinstance(value, date) and not isinstance(value, datetime) and type(value) is not date:
        return date(value.year, value.month, value.day)
    return value


def _bound(values: np.ndarray, processor) -> np.ndarray:
    """``processor`` (a SQLAlchemy bind processor) applied once per distinct non-null value."""
    labels, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.array([processor(u) for u in uniques] + [None], dtype=object)
    return table[labels]


def _copy_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _copy_literal(value: Any) -> str:
    """One value as PostgreSQL COPY text (NULL is handled by the caller)."""
    if isinstance(value, str):
        return _copy_escape(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return float.__repr__(value)  # shortest text that reads back as the same double
    return _copy_escape(str(value))


_NULL = "\\N"


def _copy_field(series: pd.Series, end: str) -> tuple[np.ndarray, np.ndarray | None]:
    """One column as COPY text: a (table, labels) pair, each field followed by ``end``.

    Each distinct value is rendered once. Floats are told apart by their bits (so -0.0
    stays -0.0) and printed with ``float.__repr__``, the shortest text that reads back as
    the same double. Long, mostly distinct text (explanations, drivers JSON) is passed
    through as it is - labels None - unless a character COPY reserves occurs in it, which
    one C-speed scan of the joined column decides; ``end`` is then a separate piece.
    """
    if series.dtype.kind == "f" and isinstance(series.dtype, np.dtype):
        values = series.to_numpy()
        missing = np.isnan(values)
        bits = values.view(np.int64).copy()
        bits[missing] = 0
        labels, uniques = pd.factorize(bits)
        labels[missing] = len(uniques)
        texts = list(map(float.__repr__, uniques.view(float).tolist()))
        return np.array([t + end for t in [*texts, _NULL]], dtype=object), labels
    values = series.to_numpy(dtype=object, na_value=None)
    missing = pd.isna(values)
    present = values[~missing] if missing.any() else values
    if len(present) > 1000 and pd.api.types.infer_dtype(present, skipna=False) == "string":
        joined = "\x00".join(present)
        if not any(ch in joined for ch in "\\\t\n\r"):
            out = values.copy()
            out[missing] = _NULL
            return out, None
    labels, uniques = pd.factorize(values, use_na_sentinel=True)
    labels[labels < 0] = len(uniques)
    return np.array([_copy_literal(u) + end for u in uniques] + [_NULL + end], dtype=object), labels


def _is_constant(series: pd.Series) -> bool:
    """Whether every value of the column is the same (a sample refutes most columns cheaply)."""
    head = series.iloc[:1000]
    if head.nunique(dropna=False) != 1:
        return False
    return series.nunique(dropna=False) == 1


def _copy_chunks(frame: pd.DataFrame, names: list[str], stamp: datetime) -> tuple[list[str], Callable[[], Iterator[bytes]]]:
    """COPY column order, and a factory of the text payload (WRITE_BATCH_ROWS rows a chunk).

    Columns holding one value (the date, the model version, the stamp) go to the front as
    one constant piece, so a row is joined from about one piece per varying column (each
    factorized column's pieces carry their own tab).
    """
    n = len(frame)
    constant = [c for c in names if _is_constant(frame[c])]
    varying = [c for c in names if c not in constant]
    order = [*constant, "computed_at", *varying]
    firsts = [frame[c].iloc[0] for c in constant]
    head = "\t".join([*(_NULL if pd.isna(v) else _copy_literal(v) for v in firsts), _copy_literal(stamp)])
    # Pieces: (table, labels) - labels None: the table is the column itself, one text per row.
    pieces: list[tuple[np.ndarray, np.ndarray | None]] = []
    single = np.zeros(n, dtype=np.intp)
    pieces.append((np.array([head + ("\t" if varying else "\n")], dtype=object), single))
    for i, name in enumerate(varying):
        end = "\n" if i == len(varying) - 1 else "\t"
        table, labels = _copy_field(frame[name], end)
        pieces.append((table, labels))
        if labels is None:
            pieces.append((np.array([end], dtype=object), single))

    def chunks() -> Iterator[bytes]:
        for start in range(0, n, WRITE_BATCH_ROWS):
            stop = min(n, start + WRITE_BATCH_ROWS)
            layout = np.empty((stop - start, len(pieces)), dtype=object)
            for i, (table, labels) in enumerate(pieces):
                layout[:, i] = table[start:stop] if labels is None else table[labels[start:stop]]
            yield "".join(layout.ravel().tolist()).encode("utf-8")

    return order, chunks


def _copy_upsert(conn: Connection, table, frame: pd.DataFrame, names: list[str], stamp: datetime) -> None:
    """PostgreSQL: bulk upsert through COPY.

    When none of the frame's (date, model version) pairs has rows yet - a date scored for
    the first time, the daily case - the rows are COPYed straight into the table inside a
    savepoint; should a concurrent writer have added one of the keys meanwhile, the unique
    index refuses the COPY, the savepoint is rolled back and the general path runs. The
    general path COPYs into an unindexed temporary table and upserts from it with one
    INSERT ... SELECT ... ON CONFLICT DO UPDATE. Either way: the caller's transaction, and
    the same rows as a row-by-row upsert, in seconds instead of minutes.
    """
    import psycopg2.errors

    prep = conn.dialect.identifier_preparer
    target = prep.format_table(table)
    order, chunks = _copy_chunks(frame, names, stamp)
    cols = ", ".join(prep.quote(c) for c in order)
    pk = [c.name for c in table.primary_key.columns]
    conflict = ", ".join(prep.quote(c) for c in pk)
    updates = ", ".join(f"{prep.quote(c)} = EXCLUDED.{prep.quote(c)}" for c in order if c not in pk)
    action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        if _indexed_by_date(table) and not _has_rows_for(conn, table, frame):
            cursor.execute("SAVEPOINT bulk_copy")
            try:
                for payload in chunks():
                    cursor.copy_expert(f"COPY {target} ({cols}) FROM STDIN", io.BytesIO(payload))
                cursor.execute("RELEASE SAVEPOINT bulk_copy")
                return
            except psycopg2.errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT bulk_copy")
        staging = f"_stage_{table.name}_{uuid.uuid4().hex[:12]}"
        # No indexes or constraints on the staging copy: COPY only appends.
        cursor.execute(f"CREATE TEMPORARY TABLE {staging} (LIKE {target}) ON COMMIT DROP")
        for payload in chunks():
            cursor.copy_expert(f"COPY {staging} ({cols}) FROM STDIN", io.BytesIO(payload))
        cursor.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {staging} ON CONFLICT ({conflict}) {action}")
        cursor.execute(f"DROP TABLE {staging}")
    finally:
        cursor.close()


def _indexed_by_date(table) -> bool:
    """Whether an index of ``table`` leads with as_of_date/model_version (a cheap existence check)."""
    for index in table.indexes:
        lead = [c.name for c in index.columns][:2]
        if set(lead) == {"as_of_date", "model_version"} and index.dialect_options["postgresql"].get("where") is None:
            return True
    return False


def _has_rows_for(conn: Connection, table, frame: pd.DataFrame) -> bool:
    """Whether ``table`` holds any row of the frame's (as_of_date, model_version) pairs."""
    pairs = frame[["as_of_date", "model_version"]].drop_duplicates()
    clauses = [
        (table.c.as_of_date == _as_date(d)) & (table.c.model_version == v)
        for d, v in pairs.itertuples(index=False)
    ]
    return conn.execute(select(table.c.as_of_date).where(or_(*clauses)).limit(1)).first() is not None


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else pd.Timestamp(value).date()


def _executemany_upsert(conn: Connection, table, names: list[str], columns: list[np.ndarray], n: int) -> None:
    """SQLite: one prepared INSERT ... ON CONFLICT run over plain tuples, batch by batch."""
    prep = conn.dialect.identifier_preparer
    pk = [c.name for c in table.primary_key.columns]
    cols = ", ".join(prep.quote(c) for c in names)
    updates = ", ".join(f"{prep.quote(c)} = excluded.{prep.quote(c)}" for c in names if c not in pk)
    action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    sql = (
        f"INSERT INTO {prep.format_table(table)} ({cols}) VALUES ({', '.join('?' for _ in names)}) "
        f"ON CONFLICT ({', '.join(prep.quote(c) for c in pk)}) {action}"
    )
    # Values as SQLAlchemy would bind them (dates and datetimes as its ISO text).
    bound = []
    for name, values in zip(names, columns, strict=True):
        processor = table.c[name].type.bind_processor(conn.dialect)
        if processor is None and values.dtype == object:
            # sqlite3 adapts exactly datetime.date/datetime; subclasses such as pendulum's
            # Date (what Airflow hands a task) must become the plain types first.
            processor = _plain_temporal
        bound.append(_bound(values, processor) if processor is not None else values)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        for start in range(0, n, WRITE_BATCH_ROWS):
            stop = min(n, start + WRITE_BATCH_ROWS)
            cursor.executemany(sql, list(zip(*(values[start:stop].tolist() for values in bound), strict=True)))
    finally:
        cursor.close()


def _write_frame(target: Engine | Connection, table, frame: pd.DataFrame) -> int:
    """Upsert the frame's columns of ``table`` (plus a fresh ``computed_at``) by primary key.

    Bulk paths for PostgreSQL (COPY + INSERT ... ON CONFLICT) and SQLite (executemany of
    tuples); any other dialect goes through the generic ``upsert_rows``. All of them store
    the same values: missing values as NULL, ``computed_at`` stamped once for the batch.
    """
    names = [c.name for c in table.columns if c.name in frame.columns and c.name != "computed_at"]
    if frame.empty:
        return 0
    if not isinstance(target, Connection):
        with target.begin() as conn:
            return _write_frame(conn, table, frame)
    n = len(frame)
    stamp = utcnow()
    dialect = target.dialect.name
    if dialect not in ("postgresql", "sqlite") or (dialect == "postgresql" and target.dialect.driver != "psycopg2"):
        rows = _records(frame, names)
        for row in rows:
            row["computed_at"] = stamp
        return _upsert(target, table, rows)
    if dialect == "postgresql":
        _copy_upsert(target, table, frame, names, stamp)
        return n
    columns = [_python_values(frame, name) for name in names]
    names = [*names, "computed_at"]
    columns.append(np.full(n, stamp, dtype=object))
    _executemany_upsert(target, table, names, columns, n)
    return n


def write_scores(target: Engine | Connection, frame: pd.DataFrame) -> int:
    """Upsert a scored frame into ``health_scores``; returns the number of rows written.

    ``target`` is an engine (own transaction) or a connection (the caller's transaction).
    The frame carries (at least) every non-nullable column of the table except
    ``computed_at``, which is stamped here. A million rows go in one bulk write (see
    ``_write_frame``), not row by row.
    """
    return _write_frame(target, health_scores, frame)


def write_rollups(target: Engine | Connection, rollups: pd.DataFrame) -> int:
    """Upsert parent rollups into ``health_score_rollups``; returns the number of rows."""
    return _write_frame(target, health_score_rollups, rollups)


def read_scores(engine: Engine, as_of: date, model_version: str) -> pd.DataFrame:
    """All stored scores of one date and model version (for reports and tests)."""
    stmt = select(health_scores).where(
        health_scores.c.as_of_date == as_of, health_scores.c.model_version == model_version
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=[c.name for c in health_scores.columns])
