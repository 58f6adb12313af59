"""Signals become 0-100 against the baseline of the account's own segment (plan x tenure band)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from customer_health.scoring.model_config import load_model_config
from customer_health.scoring.normalize import normalize_signals

CONFIG = load_model_config()
AS_OF = date(2026, 11, 1)


def accounts(n: int, plan: str = "growth", tenure_days: int = 400, **signals) -> pd.DataFrame:
    """n accounts of one segment; signal values given as scalars or sequences, others missing."""
    frame = pd.DataFrame(
        {
            "account_key": [f"{plan[:3]}{tenure_days}{i:06d}" for i in range(n)],
            "as_of_date": AS_OF,
            "plan": plan,
            "tenure_days": tenure_days,
            "arr": 10_000.0,
        }
    )
    for key in CONFIG.signal_keys:
        frame[key] = signals.get(key, np.nan)
    return frame


def column(result, key: str) -> np.ndarray:
    return result.values[:, CONFIG.signal_keys.index(key)]


def test_fractional_trends_use_fixed_bounds_minus_half_is_0_flat_is_50_plus_half_is_100():
    frame = accounts(5, engagement_trend=[-0.5, 0.0, 0.5, -2.0, 3.0])
    assert column(normalize_signals(frame, CONFIG), "engagement_trend").tolist() == [0, 50, 100, 0, 100]


def test_lower_is_better_signals_score_high_when_the_value_is_low():
    # resolution_time_trend: +50 % slower is 0, 50 % faster is 100.
    frame = accounts(3, resolution_time_trend=[0.5, 0.0, -0.5])
    assert column(normalize_signals(frame, CONFIG), "resolution_time_trend").tolist() == [0, 50, 100]


def test_segment_target_is_the_segments_75th_percentile():
    ratios = np.linspace(0.0, 0.8, 41)  # 41 accounts: p75 is 0.6
    result = normalize_signals(accounts(41, active_user_ratio=ratios), CONFIG)
    values = dict(zip(np.round(ratios, 2), column(result, "active_user_ratio"), strict=True))
    assert values[0.6] == pytest.approx(100)
    assert values[0.3] == pytest.approx(50)
    assert values[0.0] == 0
    assert values[0.8] == 100  # above the target is clipped, not extra credit


def test_each_plan_is_measured_against_its_own_peers():
    starter = accounts(40, plan="starter", active_user_ratio=np.linspace(0, 0.4, 40))
    enterprise = accounts(40, plan="enterprise", active_user_ratio=np.linspace(0, 0.8, 40))
    frame = pd.concat([starter, enterprise], ignore_index=True)
    frame.loc[[10, 50], "active_user_ratio"] = 0.2
    result = normalize_signals(frame, CONFIG)
    ratio = column(result, "active_user_ratio")
    # 20 % of seats active is two thirds of a starter's target but a third of an enterprise's.
    assert ratio[10] == pytest.approx(100 * 0.2 / 0.3, rel=1e-3)
    assert ratio[50] == pytest.approx(100 * 0.2 / 0.6, rel=1e-3)


def test_a_segment_too_small_for_a_percentile_borrows_the_plan_level_then_the_global_one():
    mature = accounts(40, plan="growth", tenure_days=800, login_frequency=np.linspace(0, 4, 40))
    young = accounts(3, plan="growth", tenure_days=30, login_frequency=[9.0, 9.0, 9.0])
    lone = accounts(2, plan="starter", tenure_days=30, login_frequency=[1.0, 2.0])
    result = normalize_signals(pd.concat([mature, young, lone], ignore_index=True), CONFIG)
    table = result.baselines.to_frame().query("signal == 'login_frequency'").set_index(["plan", "tenure_band"])
    assert table.loc[("growth", "mature"), "basis"] == "segment"
    assert table.loc[("growth", "first_90_days"), "basis"] == "plan"
    assert table.loc[("starter", "first_90_days"), "basis"] == "global"
    assert table.loc[("growth", "first_90_days"), "population"] == 43


def test_when_a_whole_segment_sits_at_zero_zero_is_not_healthy():
    result = normalize_signals(accounts(40, login_frequency=0.0), CONFIG)
    assert (column(result, "login_frequency") == 0).all()


def test_missing_and_non_finite_values_stay_missing():
    frame = accounts(3, csat=[np.nan, np.inf, 0.95])
    assert np.isnan(column(normalize_signals(frame, CONFIG), "csat")[:2]).all()


def test_normalization_is_deterministic_and_independent_of_row_order():
    rng = np.random.default_rng(3)
    frame = accounts(200, login_frequency=rng.random(200) * 5, open_tickets=rng.integers(0, 9, 200).astype(float))
    first = normalize_signals(frame, CONFIG).values
    shuffled = frame.sample(frac=1.0, random_state=1)
    second = normalize_signals(shuffled, CONFIG).values
    np.testing.assert_array_equal(first[shuffled.index.to_numpy()], second)


def test_baselines_can_be_held_fixed_for_another_frame():
    population = accounts(41, active_user_ratio=np.linspace(0.0, 0.8, 41))
    baselines = normalize_signals(population, CONFIG).baselines
    single = accounts(1, active_user_ratio=[0.3])
    held = normalize_signals(single, CONFIG, baselines=baselines)
    assert column(held, "active_user_ratio")[0] == pytest.approx(50)


def test_baselines_say_what_healthy_peers_reach():
    result = normalize_signals(accounts(41, active_user_ratio=np.linspace(0.0, 0.8, 41)), CONFIG)
    row = result.baselines.to_frame().query("signal == 'active_user_ratio' and plan == 'growth'").iloc[0]
    assert (row.worst, round(row.best, 6), row.basis, row.population) == (0.0, 0.6, "segment", 41)
