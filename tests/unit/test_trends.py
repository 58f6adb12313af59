"""Trends from score history, and CSM priority by trajectory and value - not level alone."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from customer_health.scoring.model_config import load_model_config
from customer_health.scoring.trends import compute_trends, priority_scores, trajectory_points

CONFIG = load_model_config()
AS_OF = date(2026, 11, 1)


def history(rows: list[tuple[str, int, int, str]]) -> pd.DataFrame:
    """(account, days before AS_OF, computed score, zone) rows."""
    return pd.DataFrame(
        [(a, AS_OF - timedelta(days=d), s, z) for a, d, s, z in rows],
        columns=["account_key", "as_of_date", "computed_score", "zone"],
    )


def test_deltas_compare_with_the_score_exactly_30_60_and_90_days_earlier():
    past = history([("A", 30, 70, "Neutral"), ("A", 60, 80, "Healthy"), ("A", 90, 85, "Healthy"), ("A", 29, 10, "Critical")])
    trends = compute_trends(["A"], np.array([65]), past, AS_OF, CONFIG)
    assert (trends.deltas[30][0], trends.deltas[60][0], trends.deltas[90][0]) == (-5, -15, -20)


def test_a_missing_day_gives_no_delta_rather_than_a_guess():
    trends = compute_trends(["A"], np.array([65]), history([("A", 31, 70, "Neutral")]), AS_OF, CONFIG)
    assert np.isnan(trends.deltas[30][0])


def test_slope_is_least_squares_points_per_30_days_over_90_days():
    past = history([("A", 90, 85, "Healthy"), ("A", 60, 78, "Healthy"), ("A", 30, 72, "Neutral")])
    trends = compute_trends(["A"], np.array([65]), past, AS_OF, CONFIG)
    x, y = np.array([-90, -60, -30, 0]), np.array([85, 78, 72, 65])
    assert trends.slope[0] == pytest.approx(np.polyfit(x, y, 1)[0] * 30)


def test_slope_needs_enough_points():
    trends = compute_trends(["A"], np.array([65]), history([("A", 30, 70, "Neutral")]), AS_OF, CONFIG)
    assert np.isnan(trends.slope[0])


def test_previous_zone_is_the_zone_of_the_most_recent_earlier_score():
    past = history([("A", 1, 60, "Neutral"), ("A", 30, 80, "Healthy"), ("B", 3, 40, "At Risk")])
    trends = compute_trends(["A", "B", "C"], np.array([45, 45, 45]), past, AS_OF, CONFIG)
    assert trends.previous_zone.tolist() == ["Neutral", "At Risk", None]


def test_future_history_does_not_change_todays_trends():
    past = history([("A", 1, 60, "Neutral"), ("A", 30, 80, "Healthy"), ("A", 60, 82, "Healthy"), ("A", 90, 85, "Healthy")])
    future = history([("A", -1, 10, "Critical"), ("A", 0, 12, "Critical"), ("A", -30, 99, "Healthy")])
    before = compute_trends(["A"], np.array([65]), past, AS_OF, CONFIG)
    after = compute_trends(["A"], np.array([65]), pd.concat([past, future]), AS_OF, CONFIG)
    assert before.previous_zone.tolist() == after.previous_zone.tolist()
    assert before.slope.tolist() == after.slope.tolist()
    assert all(before.deltas[w].tolist() == after.deltas[w].tolist() for w in before.deltas)


def test_full_daily_history_and_the_sampled_dates_give_the_same_trends():
    daily = history([("A", d, 85 - d // 5, "Healthy") for d in range(1, 120)])
    sampled_days = {1, *CONFIG.trends.history_offsets()}
    sampled = daily[daily["as_of_date"].map(lambda x: (AS_OF - x).days in sampled_days)]
    a = compute_trends(["A"], np.array([60]), daily, AS_OF, CONFIG)
    b = compute_trends(["A"], np.array([60]), sampled, AS_OF, CONFIG)
    assert a.slope.tolist() == b.slope.tolist() and a.previous_zone.tolist() == b.previous_zone.tolist()


def _priority(score_now: int, past: list[tuple[int, int]], arr: float = 50_000.0) -> float:
    frame = history([("A", d, s, "Neutral") for d, s in past])
    trends = compute_trends(["A"], np.array([score_now]), frame, AS_OF, CONFIG)
    return float(priority_scores(np.array([score_now]), trajectory_points(trends, CONFIG), np.array([arr]), CONFIG)[0])


def test_an_account_falling_from_85_to_65_outranks_one_stable_at_50():
    falling = _priority(65, [(90, 85), (60, 78), (30, 72)])
    stable = _priority(50, [(90, 50), (60, 50), (30, 50)])
    assert falling > stable


def test_a_recovering_account_ranks_below_a_stable_one_at_the_same_score():
    recovering = _priority(50, [(90, 30), (60, 37), (30, 44)])
    stable = _priority(50, [(90, 50), (60, 50), (30, 50)])
    assert recovering < stable


def test_higher_arr_raises_priority_on_a_log_scale():
    small, large, huge = (_priority(40, [], arr) for arr in (1e6, 1e8, 1e10))
    assert small < large < huge
    assert (huge - large) == pytest.approx(large - small, rel=0.01)  # each factor 100 adds about the same


def test_without_history_priority_falls_back_to_level_and_value():
    assert _priority(30, []) > _priority(60, [])


def test_an_index_of_todays_keys_gives_the_same_trends_as_a_list():
    past = history([("A", 1, 60, "Neutral"), ("B", 30, 80, "Healthy"), ("B", 60, 82, "Healthy"), ("B", 90, 85, "Healthy")])
    keys = ["A", "B", "C"]
    a = compute_trends(keys, np.array([50, 70, 40]), past, AS_OF, CONFIG)
    b = compute_trends(pd.Index(keys, dtype=object), np.array([50, 70, 40]), past, AS_OF, CONFIG)
    assert a.previous_zone.tolist() == b.previous_zone.tolist() == ["Neutral", "Healthy", None]
    assert np.array_equal(a.slope, b.slope, equal_nan=True)
