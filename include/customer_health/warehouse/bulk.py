"""Bulk upserts of whole frames: the history tables' write path (rebuilds, daily signals).

``bulk_upsert`` writes a pandas frame whose columns are named as a table's, keyed by the
table's primary key, so a re-run or a retried task overwrites instead of appending:

* PostgreSQL: ``COPY`` into a temporary table, then one ``INSERT ... ON CONFLICT DO UPDATE``;
* SQLite: one ``executemany`` of the same upsert (inside the caller's transaction).

Values are encoded column by column (not per row) as SQLAlchemy would store them, so rows
written here read back exactly like rows written through SQLAlchemy.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Boolean, Connection, Date, DateTime, Float, Integer, Table


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


def bulk_upsert(conn: Connection, table: Table, frame: pd.DataFrame) -> int:
    """Upsert ``frame`` (columns named as ``table``'s) by primary key, in bulk; returns rows.

    PostgreSQL: COPY into a temporary table, then one INSERT ... ON CONFLICT DO UPDATE.
    SQLite: one executemany of INSERT ... ON CONFLICT DO UPDATE. NaN and None become NULL.
    Rows are written in primary-key order (index inserts stay local).
    """
    if frame.empty:
        return 0
    columns = [c.name for c in table.columns if c.name in frame.columns]
    pk = [c.name for c in table.primary_key.columns]
    updates = [c for c in columns if c not in pk]
    quoted = ", ".join(f'"{c}"' for c in columns)
    conflict = (
        f"ON CONFLICT ({', '.join(pk)}) DO UPDATE SET " + ", ".join(f'"{c}" = excluded."{c}"' for c in updates)
        if updates
        else f"ON CONFLICT ({', '.join(pk)}) DO NOTHING"
    )
    frame = frame.sort_values(pk, kind="stable").reset_index(drop=True)
    dialect = conn.dialect.name
    encoded = [encoded_column(frame[c], table.c[c].type, dialect) for c in columns]
    dbapi = conn.connection.driver_connection
    if dialect == "postgresql":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(
            zip(*[["\\N" if v is None else (repr(v) if isinstance(v, float) else v) for v in col] for col in encoded],
                strict=True)
        )  # fmt: skip
        buffer.seek(0)
        stage = f"stage_{table.name}"
        with dbapi.cursor() as cursor:
            cursor.execute(f'CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE "{table.name}" INCLUDING DEFAULTS)')
            cursor.execute(f"TRUNCATE {stage}")
            cursor.copy_expert(f"COPY {stage} ({quoted}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)
            cursor.execute(f'INSERT INTO "{table.name}" ({quoted}) SELECT {quoted} FROM {stage} {conflict}')
        return len(frame)
    if dialect == "sqlite":
        marks = ", ".join("?" for _ in columns)
        cursor = dbapi.cursor()
        try:
            cursor.executemany(
                f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks}) {conflict}', zip(*encoded, strict=True)
            )
        finally:
            cursor.close()
        return len(frame)
    from customer_health.warehouse.io import upsert_rows  # pragma: no cover - other dialects

    records = frame[columns].astype(object).where(frame[columns].notna(), None).to_dict("records")
    return upsert_rows(conn, table, records)  # pragma: no cover
