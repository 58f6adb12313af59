"""Date blocks of a rebuild scored in parallel equal the dates scored in order, one by one.

A later block derives the scores of the rebuild's earlier dates its trends read (previous zone,
30/60/90-day deltas, slope samples) from their stored input; the history it writes must be the
one the sequential scoring writes, with overrides and accounts that come and go.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from customer_health.scoring.engine import score_date
from customer_health.scoring.model_config import load_model_config
from customer_health.scoring.overrides import create_override
from customer_health.scoring.rebuild import plan_score_work, score_range
from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.scoring.signal_store import read_signal_frame, write_signal_frame
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import health_score_rollups, health_scores
from tests.history_helpers import assert_derived_tables_match

CONFIG = load_model_config()
START = date(2026, 3, 1)
DAYS = 130
ACCOUNTS = [f"001A{i:014d}" for i in range(60)]


def _store_input(engine) -> None:
    """Random-walk signals, so scores, zones and trends move; accounts join and leave."""
    rng = np.random.default_rng(7)
    level = rng.uniform(0.2, 0.9, len(ACCOUNTS))
    for k in range(DAYS):
        day = START + timedelta(days=k)
        level = np.clip(level + rng.normal(0, 0.05, len(ACCOUNTS)), 0, 1)
        alive = [i for i in range(len(ACCOUNTS)) if not (i % 7 == 0 and 40 <= k < 70) and not (i == 3 and k > 100)]
        frame = pd.DataFrame(
            {
                "account_key": [ACCOUNTS[i] for i in alive],
                "as_of_date": day,
                "plan": [("starter", "pro", "enterprise")[i % 3] for i in alive],
                "seats": 20.0,
                "arr": [1000.0 * (1 + i) for i in alive],
                "customer_since": date(2025, 1, 1),
                "tenure_days": [(day - date(2025, 1, 1)).days - 300 * (i % 2) for i in alive],
                "parent_account_key": [ACCOUNTS[0] if i in (5, 6) else None for i in alive],
                "owner_id": "005A00000000001AAA",
            }
        )
        for j, key in enumerate(SIGNALS):
            noise = rng.normal(0, 0.1, len(alive))
            frame[key] = np.clip(level[alive] + noise, 0, 1) * (10 if key in ("login_frequency", "nps") else 1)
            frame.loc[(np.arange(len(alive)) + j + k) % 13 == 0, key] = np.nan
        write_signal_frame(engine, frame)


def _history(engine, version: str) -> list[tuple]:
    rows = []
    for table in (health_scores, health_score_rollups):
        columns = [c for c in table.columns if c.name != "computed_at"]
        with engine.connect() as conn:
            rows += [
                (table.name, *r)
                for r in conn.execute(select(*columns).where(table.c.model_version == version).order_by(*table.primary_key))
            ]
    return rows


@pytest.fixture()
def stored(sqlite_warehouse_url):
    engine = engine_for(sqlite_warehouse_url)
    _store_input(engine)
    create_override(
        engine, ACCOUNTS[9], 20, "exec sponsor left", "csm@example.com", datetime(2026, 5, 20),
        now=datetime(2026, 4, 1),
    )  # fmt: skip
    return engine


@pytest.mark.parametrize("blocks", [2, 3, 5])
def test_blocks_scored_out_of_order_equal_the_daily_scoring_in_order(stored, blocks):
    engine = stored
    warm_up = 10  # dates scored by the daily path before the rebuild: read from health_scores
    for k in range(warm_up):
        day = START + timedelta(days=k)
        score_date(engine, day, CONFIG, read_signal_frame(engine, day))
    first, last = START + timedelta(days=warm_up), START + timedelta(days=DAYS - 1)

    day = first
    while day <= last:  # the daily DAG: one date after the other
        score_date(engine, day, CONFIG, read_signal_frame(engine, day))
        day += timedelta(days=1)
    daily = _history(engine, CONFIG.version)

    with engine.begin() as conn:  # a stale history of the range, as before a rebuild
        conn.execute(
            health_scores.update()
            .where(health_scores.c.as_of_date >= first)
            .values(computed_score=0, score=0, zone="Critical", previous_zone=None)
        )
    work = plan_score_work(first, last, blocks)
    assert len(work) == blocks and work[0]["first"] == first.isoformat() and work[-1]["last"] == last.isoformat()
    for item in reversed(work):  # the last block first: it must not read the earlier blocks' rows
        score_range(
            engine, date.fromisoformat(item["first"]), date.fromisoformat(item["last"]), CONFIG,
            range_start=date.fromisoformat(item["range_start"]), block_days=17,
        )  # fmt: skip
    rebuilt = _history(engine, CONFIG.version)
    assert len(rebuilt) == len(daily)
    assert rebuilt == daily
    assert_derived_tables_match(engine)  # the blocks' bulk writes kept the dashboard's tables
    names = ["table", *[c.name for c in health_scores.columns if c.name != "computed_at"]]
    later = [dict(zip(names, r, strict=True)) for r in rebuilt if r[0] == "health_scores" and r[2] > first + timedelta(days=40)]
    assert any(r["delta_30"] not in (None, 0) for r in later)  # trends were exercised
    assert {r["previous_zone"] for r in later} >= {"Healthy", "Neutral"}
