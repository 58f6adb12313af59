"""The weighted composite: reweighting of missing data, coverage, rounding and zones."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from customer_health.scoring.engine import score_accounts
from customer_health.scoring.model_config import load_model_config
from customer_health.scoring.score import composite_scores, round_half_up, zone_for, zones

CONFIG = load_model_config()
AS_OF = date(2026, 11, 1)
ESTABLISHED = [m.name for m in CONFIG.models].index("established")
NEW = [m.name for m in CONFIG.models].index("new")


def normalized(**values) -> np.ndarray:
    """One account's normalized signals (0-100), missing unless given."""
    row = np.full((1, len(CONFIG.signals)), np.nan)
    for key, value in values.items():
        row[0, CONFIG.signal_keys.index(key)] = value
    return row


def compose(model: int = ESTABLISHED, **values):
    return composite_scores(normalized(**values), np.array([model]), CONFIG)


def full(value: float) -> dict[str, float]:
    return dict.fromkeys(CONFIG.signal_keys, value)


def test_all_signals_at_a_value_score_that_value():
    assert compose(**full(80.0)).score[0] == 80
    assert compose(**full(0.0)).score[0] == 0
    assert compose(**full(100.0)).score[0] == 100


def test_the_score_is_the_weighted_mean_of_the_dimension_scores():
    values = full(100.0)
    for key in ("login_frequency", "active_user_ratio", "feature_breadth", "engagement_trend"):
        values[key] = 0.0
    result = compose(**values)
    assert result.dimension_scores[0].tolist() == [0.0, 100.0, 100.0, 100.0]
    assert result.raw_score[0] == pytest.approx(60.0)  # engagement weighs 40 % for established accounts


def test_a_missing_signals_weight_goes_to_the_present_signals_of_its_dimension():
    values = full(100.0)
    del values["login_frequency"]
    values["active_user_ratio"] = 0.0  # 0.30 of engagement; with login_frequency gone, 0.30/0.75
    result = compose(**values)
    assert result.dimension_scores[0, 0] == pytest.approx(100 * (1 - 0.30 / 0.75))
    assert result.coverage[0] == pytest.approx(1 - 0.40 * 0.25)


def test_a_dimension_without_data_gives_its_weight_to_the_others():
    values = {k: 100.0 for k in CONFIG.signal_keys if CONFIG.signal(k).dimension != "sentiment"}
    values["payment_timeliness"] = values["contract_value_change"] = values["usage_billing_trend"] = 0.0
    result = compose(**values)
    assert np.isnan(result.dimension_scores[0, 3])
    assert result.raw_score[0] == pytest.approx(100 * (0.40 + 0.20) / 0.85)
    assert result.coverage[0] == pytest.approx(0.85)


def test_effective_weights_sum_to_one_and_contributions_add_up_to_the_score():
    values = {"login_frequency": 20.0, "nps": 90.0, "open_tickets": 40.0}
    result = compose(**values)
    weights = result.weights[0]
    assert weights.sum() == pytest.approx(1.0)
    contributions = np.nansum(weights * (normalized(**values)[0] - 50.0))
    assert 50 + contributions == pytest.approx(result.raw_score[0])


def test_low_coverage_accounts_are_scored_but_flagged():
    result = compose(engagement_trend=50.0, nps=100.0)
    assert result.score[0] == 64  # (0.40 * 50 + 0.15 * 100) / 0.55 = 63.6
    assert result.coverage[0] == pytest.approx(0.40 * 0.25 + 0.15 * 0.45)
    assert bool(result.low_coverage[0]) is True


def test_an_account_without_any_data_has_no_score_and_zero_coverage():
    result = compose()
    assert np.isnan(result.score[0]) and not result.scored[0]
    assert (result.coverage[0], bool(result.low_coverage[0])) == (0.0, True)
    assert np.isnan(result.dimension_scores[0]).all()


def test_new_and_established_accounts_are_weighted_by_their_own_models():
    values = full(100.0)
    for key in ("login_frequency", "active_user_ratio", "feature_breadth", "engagement_trend"):
        values[key] = 0.0
    assert compose(NEW, **values).raw_score[0] == pytest.approx(55.0)
    assert compose(ESTABLISHED, **values).raw_score[0] == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(74.5, 75), (74.49, 74), (24.5, 25), (49.5, 50), (0.4, 0), (99.5, 100), (0.5, 1), (74.49999999999999, 75)],
)
def test_scores_round_half_up(raw, expected):
    assert round_half_up(np.array([raw]))[0] == expected


@pytest.mark.parametrize(
    ("score", "zone"),
    [(0, "Critical"), (24, "Critical"), (25, "At Risk"), (49, "At Risk"), (50, "Neutral"), (74, "Neutral"),
     (75, "Healthy"), (100, "Healthy")],
)  # fmt: skip
def test_zone_bounds_are_inclusive(score, zone):
    assert zone_for(score, CONFIG) == zone
    assert list(zones(np.array([score]), CONFIG)) == [zone]


def test_vectorized_zones_agree_with_zone_for_on_every_score():
    scores = np.arange(101)
    assert list(zones(scores, CONFIG)) == [zone_for(int(s), CONFIG) for s in scores]


def test_zone_for_rejects_a_score_that_was_not_rounded():
    with pytest.raises(ValueError, match="round_half_up"):
        zone_for(74.5, CONFIG)


def test_a_composite_of_exactly_74_5_rounds_up_into_healthy():
    # engagement_trend alone: -0.5 -> 0, +0.5 -> 100, so +0.245 normalizes to 74.5.
    frame = pd.DataFrame(
        {"account_key": ["A1"], "as_of_date": [AS_OF], "plan": ["growth"], "tenure_days": [400], "arr": [1.0],
         "engagement_trend": [0.245]}
    )  # fmt: skip
    scored = score_accounts(frame, CONFIG)
    assert (scored.loc[0, "score"], scored.loc[0, "zone"]) == (75, "Healthy")
