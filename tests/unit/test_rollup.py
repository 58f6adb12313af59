"""Enterprise parents get an ARR-weighted rollup beside each child's own score."""

from __future__ import annotations

from datetime import date

import pandas as pd

from customer_health.scoring.model_config import load_model_config
from customer_health.scoring.rollup import compute_rollups

CONFIG = load_model_config()
AS_OF = date(2026, 11, 1)


def scores(rows: list[tuple[str, str | None, int, float | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["account_key", "parent_account_key", "score", "arr"]).assign(as_of_date=AS_OF)


def test_children_roll_up_weighted_by_arr():
    rollups = compute_rollups(scores([("C1", "P", 80, 300_000.0), ("C2", "P", 20, 100_000.0)]), CONFIG)
    row = rollups.iloc[0]
    assert (row.parent_account_key, row.score, row.zone, row.children, row.arr) == ("P", 65, "Neutral", 2, 400_000.0)
    assert (row.model_version, row.as_of_date) == ("v1", AS_OF)


def test_a_scored_parent_counts_with_its_own_arr():
    rollups = compute_rollups(scores([("P", None, 100, 100_000.0), ("C1", "P", 40, 100_000.0)]), CONFIG)
    assert (rollups.iloc[0].score, rollups.iloc[0].children) == (70, 1)


def test_without_arr_the_members_count_equally():
    rollups = compute_rollups(scores([("C1", "P", 81, None), ("C2", "P", 40, 0.0)]), CONFIG)
    assert rollups.iloc[0].score == 61  # 60.5 rounds half up


def test_accounts_without_parent_have_no_rollup_and_children_keep_their_own_scores():
    frame = scores([("A", None, 50, 1.0), ("C1", "P", 80, 1.0), ("C2", "Q", 30, 1.0)])
    rollups = compute_rollups(frame, CONFIG)
    assert sorted(rollups.parent_account_key) == ["P", "Q"]
    assert frame.set_index("account_key").loc["C1", "score"] == 80
