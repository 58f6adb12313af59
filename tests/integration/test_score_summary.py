"""The score write path (SQLite and PostgreSQL) and the dashboard's derived tables.

``write_scores`` keeps ``health_score_summary`` and ``health_score_movers`` equal to a
recomputation from ``health_scores`` through every kind of write: a new date, a re-run, a
refresh of a few accounts (some of them movers), a frame with only some columns, a write that
meets rows a concurrent writer added. The recomputation here is independent of the code under
test (pandas over every stored score). PostgreSQL's binary COPY stores what SQLAlchemy would.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from customer_health.scoring import history
from customer_health.scoring.history import refresh_score_summary, write_scores
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.io import upsert_rows
from customer_health.warehouse.schema import health_scores
from tests.history_helpers import assert_derived_tables_match, stored_derived_tables

DAY = date(2026, 10, 1)
ZONES = ("Healthy", "Neutral", "At Risk", "Critical")
KEPT = 5  # movers kept per direction in these tests (MOVERS_KEPT), so lists fill up and shrink


def scores(keys: list[str], day: date, seed: int, version: str = "v1") -> pd.DataFrame:
    """Score rows with every column of health_scores but computed_at; some NULL segments,
    ARR and deltas, many tied deltas."""
    rng = np.random.default_rng(seed)
    n = len(keys)
    score = rng.integers(0, 101, n)
    delta = rng.integers(-6, 7, n).astype(float)
    delta[rng.random(n) < 0.15] = np.nan
    arr = np.round(rng.lognormal(10, 1, n), 2)
    arr[rng.random(n) < 0.1] = np.nan
    segment = rng.choice(np.array(["new/starter/first_90_days", "established/growth/mature", None], dtype=object), n)
    return pd.DataFrame({
        "account_key": keys,
        "as_of_date": day,
        "model_version": version,
        "segment": segment,
        "score": score,
        "computed_score": score,
        "zone": [ZONES[3 - min(3, int(s) // 25)] for s in score],
        "previous_zone": rng.choice(np.array([*ZONES, None], dtype=object), n),
        "coverage": rng.random(n),
        "engagement_score": rng.random(n) * 100,
        "support_score": np.nan,
        "financial_score": rng.random(n) * 100,
        "sentiment_score": rng.random(n) * 100,
        "delta_30": delta,
        "delta_60": np.nan,
        "delta_90": delta * 2,
        "slope_90": -0.0,
        "priority": rng.random(n),
        "arr": arr,
        "override_id": pd.array([None] * n, dtype="Int64"),
        "drivers": '{"down": [], "up": [], "changes": []}',
        "explanation": [f"Score {s}: é\ttab\nline \\ back" for s in score],
    })  # fmt: skip


def test_summary_and_movers_equal_a_recomputation_after_every_kind_of_write(warehouse_url, monkeypatch):
    monkeypatch.setattr(history, "MOVERS_KEPT", KEPT)
    engine = engine_for(warehouse_url)
    keys = [f"001A{i:011d}AAA" for i in range(60)]

    write_scores(engine, scores(keys, DAY, seed=1))  # a new date
    assert_derived_tables_match(engine, KEPT)
    write_scores(engine, scores(keys[:40], DAY + timedelta(days=1), seed=2))  # the next date
    write_scores(engine, scores(keys[:30], DAY, seed=3, version="v2"))  # a shadow model
    assert_derived_tables_match(engine, KEPT)

    write_scores(engine, scores(keys, DAY, seed=4))  # a re-run: every row replaced
    assert_derived_tables_match(engine, KEPT)

    # A refresh of a few accounts, among them today's biggest movers (their list must be re-read).
    _, movers, _ = stored_derived_tables(engine)
    movers_now = [key for key, _ in movers[("v1", DAY, "decline")][:2] + movers[("v1", DAY, "recovery")][:1]]
    refreshed = scores(movers_now + keys[50:53], DAY, seed=5)
    refreshed["delta_30"] = [0.0, np.nan, 1.0, -6.0, 6.0, -1.0]
    with engine.begin() as conn:
        write_scores(conn, refreshed)
    assert_derived_tables_match(engine, KEPT)

    # Every account of the latest date refreshed one at a time, then the whole date re-run,
    # then a new latest date whose recoveries end episodes opened earlier.
    for key in keys[:12]:
        write_scores(engine, scores([key], DAY + timedelta(days=1), seed=int(key[4:15])))
    assert_derived_tables_match(engine, KEPT)
    write_scores(engine, scores(keys[:40], DAY + timedelta(days=1), seed=11))
    assert_derived_tables_match(engine, KEPT)
    write_scores(engine, scores(keys, DAY + timedelta(days=2), seed=12))
    assert_derived_tables_match(engine, KEPT)
    # Several dates in one frame (a bulk load).
    write_scores(engine, pd.concat([scores(keys, DAY + timedelta(days=d), seed=d) for d in (4, 3)], ignore_index=True))
    assert_derived_tables_match(engine, KEPT)

    # Only some columns: the other columns keep their values (an upsert in place).
    partial = scores(keys[5:9], DAY, seed=6)[["account_key", "as_of_date", "model_version", "score",
                                               "computed_score", "zone", "coverage", "delta_30", "arr"]]
    write_scores(engine, partial)
    assert_derived_tables_match(engine, KEPT)
    with engine.connect() as conn:
        kept = conn.execute(select(health_scores.c.explanation).where(
            health_scores.c.account_key == keys[5], health_scores.c.as_of_date == DAY,
            health_scores.c.model_version == "v1",
        )).scalar_one()  # fmt: skip
    assert kept.startswith("Score ")

    # A write that finds the rows there after all (a concurrent writer): falls back, stays exact.
    monkeypatch.setattr(history, "_has_rows_for", lambda *_args: False)
    write_scores(engine, scores(keys[:20], DAY, seed=7))
    assert_derived_tables_match(engine, KEPT)


def test_a_repair_recomputes_everything_from_the_scores(warehouse_url, monkeypatch):
    monkeypatch.setattr(history, "MOVERS_KEPT", KEPT)
    engine = engine_for(warehouse_url)
    keys = [f"001B{i:011d}AAA" for i in range(25)]
    frame = scores(keys, DAY, seed=8)
    with engine.begin() as conn:  # around write_scores: the derived tables know nothing of it
        upsert_rows(conn, health_scores, history._records(frame.assign(computed_at=datetime(2026, 10, 2)),
                                                          [*frame.columns, "computed_at"]))  # fmt: skip
    assert stored_derived_tables(engine) == ({}, {}, set())
    refresh_score_summary(engine)
    assert_derived_tables_match(engine, KEPT)
    write_scores(engine, scores(keys[:3], DAY, seed=9))
    refresh_score_summary(engine, [("v1", DAY)])
    assert_derived_tables_match(engine, KEPT)


def test_postgres_binary_copy_stores_exactly_what_sqlalchemy_stores(postgres_url):
    """Every value kind through the binary COPY path and through a plain SQLAlchemy insert."""
    from customer_health.warehouse.migrate import upgrade_to_head

    engine = engine_for(postgres_url)
    upgrade_to_head(engine)
    keys = [f"001C{i:011d}AAA" for i in range(6)]
    frame = scores(keys, DAY, seed=10)
    frame.loc[0, "explanation"] = ""  # empty, not NULL
    frame.loc[1, "explanation"] = None
    frame.loc[2, "explanation"] = "x" * 100_000 + " ü 😀"
    frame.loc[3, "coverage"] = 5e-324
    frame.loc[4, "coverage"] = math.inf
    frame.loc[5, "coverage"] = 0.1 + 0.2
    frame["override_id"] = pd.array([None, 7, None, 2_147_483_647, None, 0], dtype="Int64")
    frame["as_of_date"] = [DAY, pd.Timestamp(DAY), DAY, DAY, datetime(2026, 10, 1, 0, 0), "2026-10-01"]
    write_scores(engine, frame)
    via_copy = _read(engine)
    with engine.begin() as conn:
        conn.execute(health_scores.delete())
        rows = history._records(frame.assign(as_of_date=DAY, computed_at=datetime(2026, 10, 2)),
                                [*frame.columns, "computed_at"])  # fmt: skip
        upsert_rows(conn, health_scores, rows)
    via_sqlalchemy = _read(engine)
    assert via_copy == via_sqlalchemy  # (floats by value: -0.0 == 0.0)
    # The COPY keeps a float's exact bits, even the sign of zero (a bound -0.0 arrives as 0.0).
    assert [math.copysign(1.0, row[16]) for row in via_copy] == [-1.0] * len(keys)


def test_postgres_binary_copy_encodes_each_chunk_on_its_own_and_stores_the_same(postgres_url, monkeypatch):
    """Chunks whose values differ in kind from the first rows' (the layout is fixed from those):
    a constant that varies later, short text that turns long, NULLs that turn into values."""
    from customer_health.warehouse import io
    from customer_health.warehouse.migrate import upgrade_to_head

    engine = engine_for(postgres_url)
    upgrade_to_head(engine)
    keys = [f"001E{i:011d}AAA" for i in range(23)]
    frame = scores(keys, DAY, seed=11)
    frame["segment"] = ["enterprise"] * 10 + [f"segment {i}" for i in range(13)]  # constant, then distinct
    frame["previous_zone"] = [None] * 12 + ["At Risk"] * 11  # NULL, then a value
    frame["explanation"] = ["short"] * 7 + ["long " * 40] * 8 + [None] * 8  # short, long, NULL
    frame["drivers"] = [None] * 7 + ['{"down": []}'] * 16
    frame["override_id"] = pd.array([None] * 7 + list(range(16)), dtype="Int64")
    monkeypatch.setattr(io, "CHUNK_ROWS", 7)
    write_scores(engine, frame)
    via_copy = _read(engine)
    with engine.begin() as conn:
        conn.execute(health_scores.delete())
        rows = history._records(frame.assign(computed_at=datetime(2026, 10, 2)), [*frame.columns, "computed_at"])
        upsert_rows(conn, health_scores, rows)
    assert via_copy == _read(engine)
    assert len(via_copy) == len(keys)


def _read(engine) -> list[tuple]:
    columns = [c for c in health_scores.columns if c.name != "computed_at"]
    assert columns[16].name == "slope_90"
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(*columns).order_by(health_scores.c.account_key))]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_0003_derives_the_tables_from_scores_already_stored(backend, request, tmp_path):
    """Scores written before 0003 (no derived tables yet) are summarized by the upgrade."""
    from alembic import command

    from customer_health.warehouse.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'w.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    engine = engine_for(url)
    command.upgrade(alembic_config(engine), "0002")
    keys = [f"001D{i:011d}AAA" for i in range(250)]
    frame = pd.concat([scores(keys, DAY + timedelta(days=d), seed=d) for d in range(3)], ignore_index=True)
    frame = frame.assign(computed_at=datetime(2026, 10, 5))
    with engine.begin() as conn:
        conn.execute(health_scores.insert(), history._records(frame, list(frame.columns)))
    command.upgrade(alembic_config(engine), "0003")
    assert_derived_tables_match(engine, kept=200)  # the migration keeps MOVERS_KEPT = 200 movers
    command.downgrade(alembic_config(engine), "0002")
    command.upgrade(alembic_config(engine), "head")
