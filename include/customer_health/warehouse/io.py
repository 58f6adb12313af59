"""Idempotent writes to the warehouse: the one bulk-write path, watermarks and the quarantine.

Everything that lands in the warehouse goes through ``upsert_rows`` (keyed by the table's
primary key), so re-running an extraction, a scoring date or a rebuild overwrites instead of
appending. It takes a list of rows (mappings) or a pandas frame and picks the mechanism:

* **PostgreSQL**, from ``COPY_MIN_ROWS`` rows on (psycopg2): the rows go by binary ``COPY``
  into an unindexed temporary table, then one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``
  into the table (``_copy_upsert``); fewer rows: one SQLAlchemy ``INSERT ... ON CONFLICT``
  executemany, batched into multi-row ``VALUES`` pages;
* **SQLite**: one ``executemany`` of ``INSERT ... ON CONFLICT DO UPDATE`` (a frame's values
  encoded column by column, as SQLAlchemy would store them: ``encoded_column``);
* any other dialect: delete the keys, insert the rows (still idempotent).

``copy_new_rows`` is the one exception, for a writer that knows none of its keys is stored
yet (health_scores of a date scored for the first time): the binary COPY straight into the
table, which refuses a duplicate key rather than overwrite it.

The binary COPY encoder (``BinaryCopy``, below) is built column by column with numpy:

Why binary, and why built this way: a million score rows are ~650 MB on the wire. In text
format the server parses every number, date and stamp back from its digits (about a third of
its COPY time) and the client formats them (seconds of Python); in binary format a float is
its 8 bytes, a date its day number, and both sides only copy memory. The payload is built
column by column with numpy, not value by value in Python:

* every column that fits - constants (the date, the model version, the stamp), numbers and
  dates (a NULL keeps only its length word), text of a few distinct values (encoded once per
  value) and short text - is a slice of one ``(rows, width)`` byte matrix, padded where a
  field is shorter; one boolean mask drops the padding and cuts the rows apart;
* long free text (drivers, explanation) is encoded in one C-level pass per column and
  becomes a length word and a piece per row;
* a row is then ``b"".join`` of about two pieces per long-text column.

The payload is produced in chunks by a background thread while the connection sends the
previous one (psycopg2 releases the GIL while it writes to the socket), so the client's
encoding overlaps the server's work instead of adding to it.

Each column is encoded for the PostgreSQL type the catalog reports for it (``column_types``),
so a value is stored exactly as the text path would have stored it: NaN/None/NA are NULL, a
float keeps its exact bits, a timezone-aware stamp keeps its wall-clock time (PostgreSQL
ignores the offset of text input into ``timestamp without time zone`` too).

Watermarks are written in the same transaction as the rows they cover, so a watermark never
runs ahead of committed data.
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import struct
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Boolean, Connection, Date, DateTime, Float, Integer, Table, and_, select
from sqlalchemy.dialects import postgresql, sqlite

from customer_health.warehouse.schema import extraction_watermarks, quarantine

# SQLite allows 32766 bound parameters per statement; stay well below for wide tables.
_MAX_PARAMS = 30000
# PostgreSQL: from this many rows on, an upsert goes by COPY into a temporary table.
COPY_MIN_ROWS = 1_000
# SQLite: rows per executemany batch of a frame (bounds the tuples held at once to tens of MB).
SQLITE_BATCH_ROWS = 100_000

Rows = Sequence[Mapping[str, Any]] | pd.DataFrame


def as_date(value: Any) -> date | None:
    """A date as the warehouse hands it back (a ``date``, a ``datetime`` or pandas ``Timestamp``, or
    ISO text on SQLite) as a ``date``; None for NULL, NaN and NaT."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, datetime | pd.Timestamp):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def utcnow() -> datetime:
    """Now, as naive UTC (the warehouse stores naive UTC everywhere)."""
    return datetime.now(UTC).replace(tzinfo=None)


def upsert_rows(conn: Connection, table: Table, rows: Rows, *, constants: Mapping[str, Any] | None = None) -> int:
    """Insert ``rows`` into ``table``, overwriting rows with the same primary key; returns how many.

    ``rows`` is a list of mappings (all with the same keys) or a frame whose columns are named
    as the table's (columns the table lacks are ignored). ``constants`` adds columns with one
    value for every row (e.g. a ``computed_at`` stamp). NaN, NA and None are stored as NULL.
    Columns not written keep their stored values on an update. Runs in the caller's
    transaction; the mechanism per dialect and size is in the module docstring.
    """
    constants = dict(constants or {})
    if len(rows) == 0:
        return 0
    dialect = conn.dialect.name
    if isinstance(rows, pd.DataFrame):
        names = [c.name for c in table.columns if c.name in rows.columns and c.name not in constants]
        frame = rows[names]
    else:
        keys = set(rows[0])
        names = [c.name for c in table.columns if c.name in keys and c.name not in constants]
        unknown = keys - {c.name for c in table.columns}
        if unknown:
            raise ValueError(f"upsert_rows into {table.name}: no column {sorted(unknown)} in the table; "
                             "name the values as the table's columns")  # fmt: skip
        frame = None
    if dialect == "postgresql" and conn.dialect.driver == "psycopg2" and len(rows) >= COPY_MIN_ROWS:
        return _copy_upsert(conn, table, frame if frame is not None else _frame_of(rows, names, table), constants)
    if dialect == "sqlite" and frame is not None:
        return _sqlite_upsert(conn, table, frame, constants)
    records = _records(frame) if frame is not None else [dict(r) for r in rows]
    if constants:
        records = [r | constants for r in records]
    if dialect in ("postgresql", "sqlite"):
        return _statement_upsert(conn, table, records)
    pk = [c.name for c in table.primary_key.columns]  # pragma: no cover - other dialects
    return _delete_insert(conn, table, records, pk)  # pragma: no cover


def copy_new_rows(conn: Connection, table: Table, frame: pd.DataFrame, *,
                  constants: Mapping[str, Any] | None = None) -> int:
    """PostgreSQL (psycopg2): append ``frame`` by binary COPY straight into ``table``.

    Only for rows none of whose keys is stored: a duplicate key makes the COPY fail
    (``psycopg2.errors.UniqueViolation``), so run it inside a savepoint and fall back to
    ``upsert_rows`` when that can happen. Returns the rows written.
    """
    constants = dict(constants or {})
    if frame.empty:
        return 0
    names = [c.name for c in table.columns if c.name in frame.columns and c.name not in constants]
    target = conn.dialect.identifier_preparer.format_table(table)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        copy = BinaryCopy(in_key_order(frame[names], table), names, column_types(cursor, target), constants)
        copy_binary(cursor, target, copy)
    finally:
        cursor.close()
    return len(frame)


def _frame_of(rows: Sequence[Mapping[str, Any]], names: list[str], table: Table) -> pd.DataFrame:
    """Rows as a frame of object columns (values as given), integer columns as pandas ``Int64``:
    an id beyond 2**53 beside a None must not pass through a float."""
    columns = {}
    for name in names:
        values = [row[name] for row in rows]
        column = pd.Series(values, dtype=object)
        if isinstance(table.c[name].type, Integer) and not isinstance(table.c[name].type, Boolean):
            with contextlib.suppress(TypeError, ValueError):  # not whole numbers: encoded as they are
                column = pd.Series(pd.array(values, dtype="Int64"))
        columns[name] = column
    return pd.DataFrame(columns)


def in_key_order(frame: pd.DataFrame, table: Table) -> pd.DataFrame:
    """The frame sorted by the table's primary key, so the key's index is filled in one sweep."""
    pk = [c.name for c in table.primary_key.columns]
    if not set(pk) <= set(frame.columns) or len(frame) < 2:
        return frame
    try:
        varying = list(pk)  # e.g. a day's frame: one model version and date, so only the last column varies
        while len(varying) > 1 and (frame[varying[0]] == frame[varying[0]].iloc[0]).all():
            varying.pop(0)
        if len(varying) == 1 and frame[varying[0]].is_monotonic_increasing:
            return frame
        return frame.sort_values(pk, kind="stable", ignore_index=True)
    except TypeError:  # a key column mixing incomparable types (Timestamp and date): the order is only a speed-up
        return frame


def _conflict_clause(conn: Connection, table: Table, columns: Sequence[str]) -> str:
    """``ON CONFLICT (primary key) DO UPDATE SET`` every written non-key column (or DO NOTHING)."""
    prep = conn.dialect.identifier_preparer
    pk = [c.name for c in table.primary_key.columns]
    updates = ", ".join(f"{prep.quote(c)} = excluded.{prep.quote(c)}" for c in columns if c not in pk)
    action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    return f"ON CONFLICT ({', '.join(prep.quote(c) for c in pk)}) {action}"


def _copy_upsert(conn: Connection, table: Table, frame: pd.DataFrame, constants: dict[str, Any]) -> int:
    """PostgreSQL: binary COPY into an unindexed temporary table, then one INSERT ... ON CONFLICT."""
    prep = conn.dialect.identifier_preparer
    target = prep.format_table(table)
    names = list(frame.columns)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        copy = BinaryCopy(in_key_order(frame, table), names, column_types(cursor, target), constants)
        staging = f"_stage_{table.name}_{uuid.uuid4().hex[:12]}"
        cursor.execute(f"CREATE TEMPORARY TABLE {staging} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DROP")
        copy_binary(cursor, staging, copy)
        cols = ", ".join(prep.quote(c) for c in copy.columns)
        cursor.execute(
            f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {staging} {_conflict_clause(conn, table, copy.columns)}"
        )
        cursor.execute(f"DROP TABLE {staging}")
    finally:
        cursor.close()
    return len(frame)


def _sqlite_upsert(conn: Connection, table: Table, frame: pd.DataFrame, constants: dict[str, Any]) -> int:
    """SQLite: one prepared INSERT ... ON CONFLICT over the frame's encoded columns, batch by batch."""
    prep = conn.dialect.identifier_preparer
    frame = in_key_order(frame, table)
    n = len(frame)
    names = [*frame.columns, *constants]
    encoded = [encoded_column(frame[c], table.c[c].type, "sqlite") for c in frame.columns]
    for name, value in constants.items():
        one = encoded_column(pd.Series([value], dtype=object), table.c[name].type, "sqlite")[0]
        encoded.append([one] * n)
    sql = (
        f"INSERT INTO {prep.format_table(table)} ({', '.join(prep.quote(c) for c in names)}) "
        f"VALUES ({', '.join('?' for _ in names)}) {_conflict_clause(conn, table, names)}"
    )
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        for start in range(0, n, SQLITE_BATCH_ROWS):
            cursor.executemany(sql, zip(*(values[start : start + SQLITE_BATCH_ROWS] for values in encoded), strict=True))
    finally:
        cursor.close()
    return n


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as dicts of plain Python values, None for every missing value."""
    values = frame.astype(object)
    return values.where(values.notna(), None).to_dict("records")


def _statement_upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """SQLAlchemy's ``INSERT ... ON CONFLICT DO UPDATE`` run over ``rows`` (SQLite, PostgreSQL)."""
    dialect = conn.dialect.name
    keys = list(rows[0].keys())
    pk = [c.name for c in table.primary_key.columns]
    update_cols = [k for k in keys if k not in pk]
    chunk = max(1, _MAX_PARAMS // max(1, len(keys)))
    ins = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
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


# --------------------------------------------------------------------------- SQLite: values as SQLAlchemy stores them
def encoded_column(values: pd.Series, sql_type: Any, dialect: str) -> list[Any]:
    """One column as the DB-API driver takes it (a list, None for NULL), converted per column.

    SQLite gets what SQLAlchemy would store: dates as ``YYYY-MM-DD``, stamps as
    ``YYYY-MM-DD HH:MM:SS.ffffff``, booleans as 0/1. PostgreSQL (COPY text) gets ISO dates and
    stamps; floats keep Python's shortest exact form (``repr``) either way.
    """
    if isinstance(sql_type, Float) and isinstance(values.dtype, np.dtype) and values.dtype.kind in "fi":
        # Fast path for a numeric column: SQLite stores a bound NaN as NULL.
        numbers = values.to_numpy(dtype=float)
        if dialect == "sqlite":
            return numbers.tolist()
        encoded = np.array(numbers.tolist(), dtype=object)
        encoded[np.isnan(numbers)] = None
        return encoded.tolist()
    if isinstance(sql_type, Integer) and isinstance(values.dtype, np.dtype) and values.dtype.kind in "iu":
        return values.to_numpy().tolist()  # a numpy integer dtype holds no NULL (pandas' Int64 can)
    if not isinstance(sql_type, Date | DateTime | Boolean | Integer | Float) and values.dtype == object:
        plain = values.to_numpy(dtype=object)
        if not pd.isna(plain).any():
            return plain.tolist()  # text without NULLs goes as it is
    if isinstance(sql_type, DateTime) and values.dtype.kind == "M":
        # A stamp column (one value for a whole write): format each distinct stamp once.
        fmt = "%Y-%m-%d %H:%M:%S.%f" if dialect == "sqlite" else "%Y-%m-%dT%H:%M:%S.%f"
        codes, uniques = pd.factorize(values)
        texts = np.array([*(pd.Timestamp(v).strftime(fmt) for v in uniques), None], dtype=object)
        return texts[np.where(codes < 0, len(uniques), codes)].tolist()
    column = values.astype(object)
    missing = column.isna().to_numpy()
    if isinstance(sql_type, DateTime):
        fmt = "%Y-%m-%d %H:%M:%S.%f" if dialect == "sqlite" else "%Y-%m-%dT%H:%M:%S.%f"
        distinct = {v: pd.Timestamp(v).strftime(fmt) for v in column[~missing].unique()}
        out = column.map(distinct)
    elif isinstance(sql_type, Date):
        distinct = {v: (v.date() if isinstance(v, datetime) else pd.Timestamp(v).date()).isoformat()
                    for v in column[~missing].unique()}  # fmt: skip
        out = column.map(distinct)
    elif isinstance(sql_type, Boolean):
        out = pd.Series([int(bool(v)) if v is not None else None for v in column.tolist()], dtype=object)
    elif isinstance(sql_type, Integer):
        numbers = pd.to_numeric(column.where(~missing, np.nan)).to_numpy()
        # A list, not Series.map: pandas would turn ints mixed with None back into floats.
        out = pd.Series([None if v != v else int(v) for v in numbers.tolist()], dtype=object)
    elif isinstance(sql_type, Float):
        floats = pd.to_numeric(column.where(~missing, np.nan)).to_numpy(dtype=float)
        missing = missing | np.isnan(floats)
        out = pd.Series(floats.tolist(), dtype=object)
    else:
        out = column
    result = np.array(out.to_numpy(dtype=object), dtype=object)
    result[missing] = None
    return result.tolist()



# --------------------------------------------------------------------------- PostgreSQL: binary COPY
# Rows per COPY chunk: ~35 MB of payload for score rows; two chunks are alive at once.
CHUNK_ROWS = 50_000

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_NULL = struct.pack(">i", -1)
_PG_EPOCH = date(2000, 1, 1)
_PG_EPOCH_DT = datetime(2000, 1, 1)
_MICROSECOND = timedelta(microseconds=1)

# PostgreSQL type (as ``regtype::text``) -> big-endian numpy type of its binary form.
_FIXED = {
    "smallint": ">i2",
    "integer": ">i4",
    "bigint": ">i8",
    "real": ">f4",
    "double precision": ">f8",
    "date": ">i4",
    "timestamp without time zone": ">i8",
    "boolean": "u1",
}
_TEXT = {"text", "character varying", "character"}
SUPPORTED_TYPES = frozenset(_FIXED) | _TEXT


def column_types(cursor: Any, table: str) -> dict[str, str]:
    """Each column of ``table`` (a quoted, possibly schema-qualified name) and its PostgreSQL type."""
    cursor.execute(
        "SELECT attname, atttypid::regtype::text FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (table,),
    )
    return {name: kind for name, kind in cursor.fetchall()}


def _text_of(value: Any) -> str:
    """A non-string value in a text column, as the text COPY path would have written it."""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return float.__repr__(value)
    return str(value)


def _days(value: Any) -> int:
    if isinstance(value, datetime):
        value = value.date()
    elif not isinstance(value, date):
        value = pd.Timestamp(value).date()
    return (date(value.year, value.month, value.day) - _PG_EPOCH).days


def _microseconds(value: Any) -> int:
    if not isinstance(value, datetime):
        value = pd.Timestamp(value).to_pydatetime()
    plain = datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)
    return (plain - _PG_EPOCH_DT) // _MICROSECOND


def _missing(values: np.ndarray) -> np.ndarray:
    return np.asarray(pd.isna(values), dtype=bool)


def _numbers(series: pd.Series, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """A numeric column as (values in the binary dtype, missing mask); NaN counts as missing."""
    if kind in ("date", "timestamp without time zone"):
        values = series.to_numpy(dtype=object, na_value=None)
        missing = _missing(values)
        labels, uniques = pd.factorize(values[~missing] if missing.any() else values)
        convert = _days if kind == "date" else _microseconds
        table = np.array([convert(u) for u in uniques], dtype=np.int64)
        out = np.zeros(len(values), dtype=np.int64)
        out[~missing] = table[labels]
        return out.astype(_FIXED[kind]), missing
    if kind == "boolean":
        values = series.to_numpy(dtype=object, na_value=None)
        missing = _missing(values)
        out = np.zeros(len(values), dtype=np.uint8)
        out[~missing] = [1 if bool(v) else 0 for v in values[~missing]]
        return out, missing
    if kind not in ("real", "double precision") and pd.api.types.is_integer_dtype(series.dtype):
        missing = series.isna().to_numpy(dtype=bool)  # (integers exactly, beyond 2**53 too)
        ints = series.to_numpy(dtype="int64", na_value=0)
        info = np.iinfo(_FIXED[kind])
        if len(ints) and (ints.min() < info.min or ints.max() > info.max):
            raise ValueError(f"column {series.name!r} ({kind}) holds values out of range")
        return ints.astype(_FIXED[kind]), missing
    floats = pd.to_numeric(series).to_numpy(dtype="float64", na_value=np.nan)
    missing = np.isnan(floats)
    if kind in ("real", "double precision"):
        return floats.astype(_FIXED[kind]), missing
    present = floats[~missing]
    if present.size and not np.array_equal(present, np.trunc(present)):
        raise ValueError(f"column {series.name!r} ({kind}) holds non-integral values")
    info = np.iinfo(_FIXED[kind])
    if present.size and (present.min() < info.min or present.max() > info.max):
        raise ValueError(f"column {series.name!r} ({kind}) holds values out of range")
    out = np.where(missing, 0, floats)
    return out.astype(_FIXED[kind]), missing


def _fields(values: np.ndarray) -> np.ndarray:
    """Binary values (a 1-d big-endian array) with their length words, as an (n, 4 + size) byte matrix."""
    size = values.dtype.itemsize
    out = np.empty((len(values), 4 + size), dtype=np.uint8)
    out[:, :4] = np.frombuffer(struct.pack(">i", size), dtype=np.uint8)
    out[:, 4:] = values.view(np.uint8).reshape(len(values), size)
    return out


def _words(lengths: np.ndarray) -> np.ndarray:
    """Length words (-1: NULL) as an (n, 4) byte matrix."""
    return lengths.astype(">i4").view(np.uint8).reshape(len(lengths), 4)


def _as_rows(matrix: np.ndarray) -> np.ndarray:
    """An (n, w) byte matrix as an object array of n ``bytes`` (NUL bytes kept)."""
    n, width = matrix.shape
    out = np.empty(n, dtype=object)
    if n and width:
        out[:] = np.ascontiguousarray(matrix).view(f"V{width}").ravel().tolist()
    elif n:
        out[:] = b""
    return out


def _split(buffer: bytes, lengths: np.ndarray) -> np.ndarray:
    """``buffer`` cut into consecutive pieces of ``lengths`` bytes (an object array of bytes)."""
    ends = np.cumsum(lengths).tolist()
    out = np.empty(len(ends), dtype=object)
    out[:] = [buffer[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    return out


def _encode_text(value: Any) -> bytes:
    return (value if value.__class__ is str else _text_of(value)).encode("utf-8")


def _encode_all(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Each value as UTF-8 (b"" where missing), in C loops when every value is a str."""
    out = np.empty(len(values), dtype=object)
    out[:] = b""
    present = values[~missing] if missing.any() else values
    if len(present) and pd.api.types.infer_dtype(present, skipna=False) == "string":
        pieces = "\x00".join(present).encode("utf-8").split(b"\x00")
        if len(pieces) != len(present):  # a NUL inside a value (PostgreSQL refuses it anyway)
            pieces = [v.encode("utf-8") for v in present]
    else:
        pieces = [_encode_text(v) for v in present]
    if missing.any():
        out[~missing] = pieces
    else:
        out[:] = pieces
    return out


# Text columns whose values are at most this many bytes go into the per-row byte matrix (padded).
_SHORT_TEXT = 64


class _Column:
    """How one column is encoded.

    Most columns become a slice of one per-row byte matrix (``segment``): constants, numbers
    (NULL rows keep only their length word), texts of a few distinct values and short texts
    (padded; ``keep`` says how many bytes of each row's slice are real). Long free text
    (``free``) is a length word and a ``bytes`` piece per row. The column-wide work is done
    here; ``segment``/``free`` encode a slice of rows, chunk by chunk, in the encoding thread.
    """

    def __init__(self, name: str, series: pd.Series, kind: str, *, constant: bool = False,
                 free: bool | None = None) -> None:
        """``constant``: ``series`` holds the one value of every row (a single element).
        ``free``: force the layout (True: long text, False: the byte matrix) - the COPY's column
        order is fixed before its chunks are encoded one by one; None: choose from the values."""
        self.name = name
        self._free = free
        self.constant: np.ndarray | None = None  # one row's bytes
        self.numbers: np.ndarray | None = None
        self.missing: np.ndarray | None = None
        self.table: np.ndarray | None = None  # (distinct + 1, width) padded fields, last = NULL
        self.table_keep: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self.texts: np.ndarray | None = None
        n = len(series)
        if kind in _FIXED:
            values, missing = _numbers(series, kind)
            if constant or (n and not missing.any() and _all_equal(values)) or (n and missing.all()):
                self._set_constant(_NULL if missing[0] else _fields(values[:1])[0].tobytes())
            else:
                self.numbers, self.missing = values, (missing if missing.any() else None)
            return
        missing = series.isna().to_numpy(dtype=bool)
        values = series.to_numpy(dtype=object)  # missing entries are whatever NA the dtype uses
        if constant:
            self._set_constant(_NULL if missing[0] else _word(_encode_text(values[0])))
            return
        if free:
            self.texts, self.missing = values, missing
            return
        sample = values[: min(n, 20_000)]
        distinct = pd.unique(sample[~missing[: len(sample)]]) if len(sample) else sample
        if len(distinct) <= max(1, len(sample) // 4):
            labels, uniques = pd.factorize(series, use_na_sentinel=True)
            labels = np.asarray(labels)
            encoded = [_encode_text(u) for u in uniques]
            if len(uniques) == 0 or (len(uniques) == 1 and not missing.any()):
                self._set_constant(_word(encoded[0]) if len(uniques) else _NULL)
                return
            width = max(len(b) for b in encoded)
            if width <= 4 * _SHORT_TEXT:
                labels[labels < 0] = len(uniques)
                fields = [_word(b).ljust(4 + width, b"\0") for b in encoded] + [_NULL.ljust(4 + width, b"\0")]
                self.table = np.frombuffer(b"".join(fields), dtype=np.uint8).reshape(len(fields), 4 + width)
                self.table_keep = np.array([4 + len(b) for b in encoded] + [4], dtype=np.int64)
                self.labels = labels
                return
        self.texts, self.missing = values, missing

    def _set_constant(self, data: bytes) -> None:
        self.constant = np.frombuffer(data, dtype=np.uint8)

    @property
    def free_text(self) -> bool:
        """Long text: a length word and a piece per row, outside the byte matrix."""
        if self._free is not None:
            return self._free
        return self.texts is not None and self.short_width is None

    @property
    def short_width(self) -> int | None:
        if self.texts is None:
            return None
        if not hasattr(self, "_short"):
            lengths = [len(v) for v in self.texts[:1000] if isinstance(v, str)]
            self._short = _SHORT_TEXT if lengths and max(lengths) * 4 <= _SHORT_TEXT else None
        return self._short

    def segment(self, start: int, stop: int, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """This column's slice of the rows' byte matrix, and each row's real length (None: all)."""
        if self.constant is not None:
            return np.broadcast_to(self.constant, (n, len(self.constant))), None
        if self.numbers is not None:
            matrix = _fields(self.numbers[start:stop])
            if self.missing is None:
                return matrix, None
            missing = self.missing[start:stop]
            matrix[missing, :4] = 255  # the length word -1; the value bytes are dropped
            return matrix, np.where(missing, 4, matrix.shape[1])
        if self.table is not None:
            labels = self.labels[start:stop]
            return self.table[labels], self.table_keep[labels]
        data = _encode_all(self.texts[start:stop], self.missing[start:stop])
        lengths = np.fromiter(map(len, data), dtype=np.int64, count=n)
        width = max(_SHORT_TEXT, int(lengths.max(initial=0)))  # longer than the sample promised: wider
        padded = np.frombuffer(b"".join(b.ljust(width, b"\0") for b in data), dtype=np.uint8).reshape(n, width)
        missing = self.missing[start:stop]
        words = _words(np.where(missing, -1, lengths))
        return np.concatenate([words, padded], axis=1), np.where(missing, 4, 4 + lengths)

    def free(self, start: int, stop: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Long text: (length words as an (n, 4) byte matrix, the data as ``bytes`` per row)."""
        missing = self.missing[start:stop]
        data = _encode_all(self.texts[start:stop], missing)
        lengths = np.fromiter(map(len, data), dtype=np.int64, count=n)
        if lengths.max(initial=0) >= 2**31:
            raise ValueError(f"column {self.name!r} holds a value too long for PostgreSQL")
        lengths[missing] = -1
        return _words(lengths), data


def _word(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


def _all_equal(values: np.ndarray) -> bool:
    """Every value has the same bits (-0.0 and 0.0 differ)."""
    raw = values.view(np.uint8).reshape(len(values), values.dtype.itemsize)
    return bool((raw[:1000] == raw[0]).all()) and bool((raw == raw[0]).all())


class BinaryCopy:
    """A frame encoded for ``COPY table (columns) FROM STDIN (FORMAT binary)``.

    ``types`` maps each column to its PostgreSQL type (``column_types``); ``extra`` adds
    columns with one value for every row (e.g. a ``computed_at`` stamp). ``columns`` is the
    COPY column order: the constant extras and every column that fits the per-row byte matrix
    first, then long text, so a row is about two pieces per long-text column plus one.

    Which columns are long text is decided here from the frame's first rows; everything else
    (factorizing, NULL masks, the numbers' binary form) is done per chunk in ``chunks`` - in
    the encoding thread, while the server stores the previous chunk - so the first chunk
    leaves after the work of one chunk, not of the whole frame.
    """

    def __init__(self, frame: pd.DataFrame, names: Sequence[str], types: dict[str, str],
                 extra: dict[str, Any] | None = None) -> None:
        unsupported = {c: types.get(c) for c in [*names, *(extra or {})] if types.get(c) not in SUPPORTED_TYPES}
        if unsupported:
            raise TypeError(f"no binary COPY encoding for {unsupported}")
        self.rows = len(frame)
        self._frame, self._types = frame, types
        self._constants = [_Column(name, pd.Series([value], dtype=object, name=name), types[name], constant=True)
                           for name, value in (extra or {}).items()]  # fmt: skip
        head = frame.iloc[:20_000]
        free = {name for name in names if types[name] in _TEXT and _Column(name, head[name], types[name]).free_text}
        self._matrix_names = [name for name in names if name not in free]
        self._free_names = [name for name in names if name in free]
        self.columns = [c.name for c in self._constants] + self._matrix_names + self._free_names
        self._count = np.frombuffer(struct.pack(">h", len(self.columns)), dtype=np.uint8)

    def chunks(self, rows: int | None = None) -> Iterator[bytes]:
        """The COPY payload: the header, ``rows`` (default ``CHUNK_ROWS``) rows a chunk, the trailer."""
        yield _HEADER
        yield from self._rows(rows or CHUNK_ROWS)
        yield _TRAILER

    def _columns(self, start: int, stop: int) -> tuple[list[_Column], list[_Column]]:
        """The matrix and the long-text columns of rows ``start:stop``, encoded for that chunk."""
        part = self._frame.iloc[start:stop]
        matrix = [_Column(name, part[name], self._types[name], free=False) for name in self._matrix_names]
        free = [_Column(name, part[name], self._types[name], free=True) for name in self._free_names]
        return self._constants + matrix, free

    def _rows(self, rows: int) -> Iterator[bytes]:
        for start in range(0, self.rows, rows):
            stop = min(self.rows, start + rows)
            n = stop - start
            matrix, free_columns = self._columns(start, stop)
            segments = [(np.broadcast_to(self._count, (n, 2)), None)]
            segments += [c.segment(0, n, n) for c in matrix]
            free = [c.free(0, n, n) for c in free_columns]
            if free:  # the first long text's length words end the matrix part
                segments.append((free[0][0], None))
            block = np.concatenate([m for m, _ in segments], axis=1)
            if all(keep is None for _, keep in segments):
                head = _as_rows(block)
            else:
                mask = np.concatenate(
                    [np.ones(m.shape, dtype=bool) if keep is None else np.arange(m.shape[1]) < keep[:, None]
                     for m, keep in segments],
                    axis=1,
                )  # fmt: skip
                head = _split(block[mask].tobytes(), mask.sum(axis=1))
            parts = [head]
            for i, (words, data) in enumerate(free):
                if i:
                    parts.append(_as_rows(words))
                parts.append(data)
            layout = np.empty((n, len(parts)), dtype=object)
            for i, part in enumerate(parts):
                layout[:, i] = part
            yield b"".join(layout.ravel().tolist())


class _Pipe:
    """Chunks made by a background thread, read like a file (at most two chunks alive).

    ``read`` returns one whole chunk per call: psycopg2's ``copy_expert`` sends whatever a read
    returns, so no chunk is copied into smaller pieces on the way.
    """

    _DONE = object()

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(chunks,), name="pgcopy-encode", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        """Hand ``item`` over; False when the reader stopped meanwhile."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, chunks: Iterator[bytes]) -> None:
        try:
            for chunk in chunks:
                if not self._put(chunk):
                    return
            self._put(self._DONE)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the reader
            self._put(exc)

    def read(self, _size: int = -1) -> bytes:
        if self._stop.is_set():
            return b""
        item = self._queue.get()
        if item is self._DONE:
            self.close()
            return b""
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item

    def close(self) -> None:
        """Stop the encoding thread (after the last chunk, or when the COPY failed)."""
        self._stop.set()
        self._thread.join()


class _Chunks:
    """Chunks read like a file, one whole chunk per read, in the calling thread."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def read(self, _size: int = -1) -> bytes:
        return next(self._chunks, b"")

    def close(self) -> None:
        pass


def copy_binary(cursor: Any, table: str, copy: BinaryCopy, *, threaded: bool = True) -> None:
    """Run one ``COPY table (columns) FROM STDIN (FORMAT binary)`` of every row of ``copy``.

    ``cursor`` is a psycopg2 cursor of the caller's connection (its transaction); ``table``
    a quoted table name. With ``threaded`` the next chunk is encoded while the current one
    is sent.
    """
    if not copy.rows:
        return
    columns = ", ".join('"' + c.replace('"', '""') + '"' for c in copy.columns)
    source = _Pipe(copy.chunks()) if threaded else _Chunks(copy.chunks())
    try:
        cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN (FORMAT binary)", source)
    finally:
        source.close()


def text_array(values: Iterable[Any]) -> str:
    """A PostgreSQL ``text[]`` literal of ``values``, to bind as ONE text parameter cast to text[].

    psycopg2 adapts a Python list to ``ARRAY['a', 'b', ...]``: one expression node per element
    that the server parses and folds - ~1.5 s for 400,000 account keys. The same keys as one
    array literal go through ``array_in`` in ~0.3 s. Every element is double-quoted (backslash
    and quote escaped), so any text round-trips, including commas, braces and the word NULL.
    """
    texts = [v if isinstance(v, str) else str(v) for v in values]
    if not texts:
        return "{}"
    joined = '","'.join(texts)
    if "\\" in joined or joined.count('"') != 2 * (len(texts) - 1):  # an element needs escaping
        joined = '","'.join(t.replace("\\", "\\\\").replace('"', '\\"') for t in texts)
    return '{"' + joined + '"}'
