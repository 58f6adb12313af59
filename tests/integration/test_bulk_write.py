"""The warehouse's one bulk-write path (#17): ``warehouse.io.upsert_rows`` on SQLite and PostgreSQL.

Every writer - extraction, the daily signals and scores, the refresh, the rebuild - upserts
through it: a list of rows or a frame, by the table's primary key, so a re-run overwrites and
never duplicates. On PostgreSQL it switches from a batched executemany to binary COPY into a
temporary table plus one INSERT ... ON CONFLICT at ``COPY_MIN_ROWS``; both sides of that switch
must store the same rows.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.warehouse import io
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import raw_product_usage_daily, signal_values

PACKAGE = Path(io.__file__).resolve().parents[1]
STAMP = datetime(2026, 10, 2, 6, 30, 0, 123456)


def usage(n: int, events: int = 5) -> pd.DataFrame:
    """``n`` product-usage rows (an account's two days each)."""
    return pd.DataFrame(
        {
            "account_id": [f"P{i // 2:05d}" for i in range(n)],
            "day": [date(2026, 9, 1 + i % 2) for i in range(n)],
            "active_users": np.arange(n, dtype=np.int64) % 50,
            "logins": np.arange(n, dtype=np.int64) % 11,
            "events": np.full(n, events, dtype=np.int64),
        }
    )


def inputs(n: int, seed: int = 7) -> pd.DataFrame:
    """``n`` accounts' scoring input of one date: text, integer and float columns with NULLs."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "as_of_date": date(2026, 10, 1),
            "account_key": [f"001A{i:011d}" for i in range(n)],
            "plan": [None if i % 5 == 0 else "enterprise" for i in range(n)],
            "tenure_days": pd.array([None if i % 7 == 0 else 30 + i for i in range(n)], dtype="Int64"),
            "customer_since": [None if i % 9 == 0 else date(2024, 1, 1 + i % 28) for i in range(n)],
        }
    )
    for key in SIGNALS:
        values = rng.normal(size=n)
        values[rng.random(n) < 0.3] = np.nan
        frame[key] = values
    return frame


def stored(engine, table) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


@pytest.mark.parametrize("rows", [10, io.COPY_MIN_ROWS + 500])
def test_a_rerun_overwrites_and_never_duplicates(warehouse_url, rows):
    """Both sides of the PostgreSQL switch (executemany / COPY), and SQLite: an upsert of the
    same keys updates in place; the stamp given as a constant lands in every row."""
    engine = engine_for(warehouse_url)
    with engine.begin() as conn:
        assert io.upsert_rows(conn, raw_product_usage_daily, usage(rows).assign(extracted_at=STAMP)) == rows
    with engine.begin() as conn:
        again = usage(rows, events=9)
        assert io.upsert_rows(conn, raw_product_usage_daily, again, constants={"extracted_at": STAMP}) == rows
    assert count(engine, raw_product_usage_daily) == rows
    got = pd.DataFrame(stored(engine, raw_product_usage_daily), columns=[c.name for c in raw_product_usage_daily.columns])
    assert set(got["events"]) == {9}
    assert set(pd.to_datetime(got["extracted_at"])) == {pd.Timestamp(STAMP)}


def test_a_list_and_a_frame_small_and_large_store_the_same(warehouse_url):
    """The same rows as dicts or as a frame, under and over ``COPY_MIN_ROWS``: identical tables,
    NULL where a value is missing (None, NaN, <NA>)."""
    engine = engine_for(warehouse_url)
    n = io.COPY_MIN_ROWS + 10
    frame = inputs(n)
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    results = []
    for how in ("frame", "records", "small records"):
        with engine.begin() as conn:
            conn.execute(signal_values.delete())
            if how == "frame":
                io.upsert_rows(conn, signal_values, frame)
            elif how == "records":
                io.upsert_rows(conn, signal_values, records)
            else:
                for start in range(0, n, 100):  # batches below COPY_MIN_ROWS: the executemany path
                    io.upsert_rows(conn, signal_values, records[start : start + 100])
        results.append(stored(engine, signal_values))
    assert results[0] == results[1] == results[2]
    assert len(results[0]) == n
    names = [c.name for c in signal_values.columns]
    got = pd.DataFrame(results[0], columns=names)
    assert got["plan"].isna().sum() == frame["plan"].isna().sum()
    assert got["tenure_days"].isna().sum() == frame["tenure_days"].isna().sum()
    assert got["customer_since"].isna().sum() == frame["customer_since"].isna().sum()


def test_signal_values_keep_floats_exactly_and_missing_as_null(warehouse_url):
    """Signal values through the COPY path keep a float's exact value; NaN is NULL, never 0."""
    engine = engine_for(warehouse_url)
    frame = inputs(io.COPY_MIN_ROWS + 1, seed=3)
    with engine.begin() as conn:
        io.upsert_rows(conn, signal_values, frame)
    keys = list(SIGNALS)
    with engine.connect() as conn:
        stmt = select(*[signal_values.c[k] for k in keys]).order_by(signal_values.c.account_key)
        got = pd.DataFrame([tuple(r) for r in conn.execute(stmt)], columns=keys)
    for key in keys:
        back = pd.to_numeric(got[key]).to_numpy(dtype=float)
        want = frame[key].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(back), np.isnan(want)), key
        assert all(math.isnan(a) or a == b for a, b in zip(want.tolist(), back.tolist(), strict=True)), key


def test_no_other_bulk_write_path_exists_in_the_package():
    """COPY and raw executemany appear only in ``warehouse/io.py``: the daily run, the refresh
    and the rebuild cannot grow a second bulk-write path beside it unnoticed."""
    assert not (PACKAGE / "warehouse" / "bulk.py").exists()
    assert not (PACKAGE / "warehouse" / "pgcopy.py").exists()
    pattern = re.compile(r"\bCOPY\b.*FROM STDIN|copy_expert|\.executemany\(|copy_from\(")
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path != Path(io.__file__).resolve() and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], f"bulk writes outside warehouse/io.py: {offenders}; use io.upsert_rows"
