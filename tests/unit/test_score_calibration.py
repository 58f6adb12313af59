"""Score calibration: a versioned, validated map from the composite to the score scale.

A recalibrated model puts the fixed At Risk bound (49 | 50) where its training periods met the
seed's targets; the engine applies the map, v1 (no section) scores exactly the composite.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
import yaml

from customer_health.scoring.engine import score_accounts
from customer_health.scoring.model_config import (
    ModelConfigError,
    ScoreCalibration,
    default_model_path,
    load_model_config,
)
from customer_health.scoring.score import composite_scores, zone_for
from customer_health.validation.recalibrate import (
    RecalibrationError,
    balanced_cut,
    build_config,
    calibration_yaml,
    fit_score_calibration,
    recalibrate_snapshots,
)

V1 = load_model_config()
KNOTS = [{"composite": 0.0, "score": 0.0}, {"composite": 60.0, "score": 49.5}, {"composite": 100.0, "score": 100.0}]


def with_calibration(section) -> str:
    raw = yaml.safe_load(default_model_path().read_text())
    raw["version"] = "v1-cal"
    raw["score_calibration"] = section
    return yaml.safe_dump(raw, sort_keys=False)


CALIBRATED = load_model_config(with_calibration({"knots": KNOTS, "fitted": {"method": "by hand"}}))
ESTABLISHED = [m.name for m in V1.models].index("established")


def compose(config, value: float | None):
    row = np.full((1, len(config.signals)), np.nan if value is None else value)
    return composite_scores(row, np.array([ESTABLISHED]), config)


# --------------------------------------------------------------------------- the config section
def test_v1_has_no_calibration_and_scores_the_composite_itself():
    assert V1.score_calibration is None
    result = compose(V1, 61.3)
    assert result.raw_score[0] == pytest.approx(61.3) and result.composite[0] == pytest.approx(61.3)
    assert result.score[0] == 61


def test_the_section_loads_as_knots_with_its_provenance():
    cal = CALIBRATED.score_calibration
    assert cal == ScoreCalibration((0.0, 60.0, 100.0), (0.0, 49.5, 100.0), {"method": "by hand"})
    assert cal.apply(np.array([0.0, 30.0, 60.0, 80.0, 100.0])).tolist() == pytest.approx([0.0, 24.75, 49.5, 74.75, 100.0])
    assert cal.composite_at(49.5) == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ([1, 2], "must be a mapping with 'knots'"),
        ({"knots": KNOTS, "extra": 1}, "unknown keys"),
        ({"knots": KNOTS[:1]}, "at least two"),
        ({"knots": [{"composite": 0, "score": 0}, {"composite": 100}]}, "exactly 'composite' and 'score'"),
        ({"knots": [{"composite": 0, "score": 0}, {"composite": 50, "score": "x"}, {"composite": 100, "score": 100}]}, "finite number"),
        ({"knots": [{"composite": 0, "score": 0}, {"composite": 120, "score": 50}, {"composite": 100, "score": 100}]}, "between 0.0 and 100.0"),
        ({"knots": [{"composite": 10, "score": 0}, {"composite": 100, "score": 100}]}, "start at composite 0 -> score 0"),
        ({"knots": [{"composite": 0, "score": 0}, {"composite": 100, "score": 90}]}, "end at composite 100 -> score 100"),
        ({"knots": [{"composite": 0, "score": 0}, {"composite": 60, "score": 70}, {"composite": 50, "score": 80}, {"composite": 100, "score": 100}]}, "rise strictly"),
        ({"knots": [{"composite": 0, "score": 0}, {"composite": 60, "score": 0}, {"composite": 100, "score": 100}]}, "rise strictly"),
        ({"knots": KNOTS, "fitted": [1]}, "fitted must be a mapping"),
    ],
)
def test_a_bad_section_fails_on_load_naming_the_problem(section, message):
    with pytest.raises(ModelConfigError, match=message) as err:
        load_model_config(with_calibration(section))
    assert "model v1-cal" in str(err.value)


# --------------------------------------------------------------------------- the score
@pytest.mark.parametrize(
    ("composite", "score", "zone"),
    [
        (60.0, 50, "Neutral"),  # the cut maps to 49.5: half up to 50
        (59.99, 49, "At Risk"),  # just below the cut: flagged
        (80.0, 75, "Healthy"),  # 49.5 + 20 * 50.5 / 40 = 74.75
        (30.0, 25, "At Risk"),  # 30 * 49.5 / 60 = 24.75
        (100.0, 100, "Healthy"),
        (0.0, 0, "Critical"),
    ],
)
def test_the_composite_goes_through_the_knots_before_rounding(composite, score, zone):
    result = compose(CALIBRATED, composite)
    assert result.composite[0] == pytest.approx(composite)
    assert result.score[0] == score
    assert zone_for(int(result.score[0]), CALIBRATED) == zone


def test_an_account_without_data_has_no_score_to_calibrate():
    result = compose(CALIBRATED, None)
    assert result.coverage[0] == 0 and np.isnan(result.score[0])


def test_the_engine_applies_the_calibration_and_the_ranking_is_kept():
    rng = np.random.default_rng(5)
    n = 200
    frame = pd.DataFrame(
        {
            "account_key": [f"001{i:015d}" for i in range(n)],
            "as_of_date": date(2026, 11, 1),
            "plan": np.where(np.arange(n) % 2, "pro", "starter"),
            "tenure_days": 400.0 + np.arange(n),
            "arr": 12000.0,
        }
    )
    for s in V1.signals:
        frame[s.key] = rng.uniform(0, 1, n)
    frame["login_frequency"] = rng.uniform(0, 10, n)
    frame["nps"] = rng.uniform(0, 10, n)
    plain = score_accounts(frame, V1)
    cal_config = load_model_config(build_config(V1, {}, "v1-cal2", "test", CALIBRATED.score_calibration).yaml_text)
    calibrated = score_accounts(frame, cal_config)
    composite = compose_all(frame, V1)
    assert plain["computed_score"].tolist() == np.floor(composite + 0.5).astype(int).tolist()
    expected = np.floor(np.interp(composite, [0, 60, 100], [0, 49.5, 100]) + 0.5).astype(int)
    assert calibrated["computed_score"].tolist() == expected.tolist()
    assert calibrated["zone"].tolist() == [zone_for(int(s), cal_config) for s in expected]
    # Monotone: an account with a higher composite never scores lower.
    order = np.argsort(composite, kind="stable")
    assert (np.diff(calibrated["computed_score"].to_numpy()[order]) >= 0).all()


def compose_all(frame: pd.DataFrame, config) -> np.ndarray:
    from customer_health.scoring.normalize import normalize_signals, segment_model_index

    values = normalize_signals(frame, config).values
    return composite_scores(values, segment_model_index(frame["tenure_days"].to_numpy(), config), config).composite


# --------------------------------------------------------------------------- fitting the cut
def test_the_balanced_cut_maximizes_the_smaller_margin_over_the_targets():
    composite = np.array([10, 20, 30, 40, 35, 50, 60, 70, 80, 90], dtype=float)
    churned = np.array([True] * 4 + [False] * 6)
    fit = balanced_cut(composite, churned, 0.75, 0.70)
    # Cut 45 (between 40 and 50): every churner flagged, 5 of 6 retained not: margins .25 and .133.
    assert fit.cut == 45.0
    assert fit.sensitivity == 1.0 and fit.specificity == pytest.approx(5 / 6)
    assert fit.margin == pytest.approx(5 / 6 - 0.70)


def test_among_equally_good_cuts_the_middle_one_is_taken():
    composite = np.array([10, 20, 30, 100, 40, 50, 60, 70, 80, 90, 95, 97, 98, 99], dtype=float)
    churned = np.array([True] * 4 + [False] * 10)
    # Cuts 35, 45, 55 and 65 all flag 3 of 4 churners (margin 0 on sensitivity): the middle is 55.
    assert balanced_cut(composite, churned, 0.75, 0.70).cut == 55.0


def test_when_the_targets_cannot_both_be_met_the_worse_one_misses_least():
    composite = np.array([50, 60, 40, 70], dtype=float)
    churned = np.array([True, True, False, False])
    fit = balanced_cut(composite, churned, 0.75, 0.70)
    # Cut 55: margins -.25 and -.20; cut 65: +.25 and -.20 (the better worst case); cut 75: -.70.
    assert fit.cut == 65.0 and fit.sensitivity == 1.0 and fit.specificity == 0.5
    assert fit.margin == pytest.approx(-0.20)


def test_a_cut_needs_both_classes():
    with pytest.raises(RecalibrationError, match="both churned and retained"):
        balanced_cut(np.array([1.0, 2.0]), np.array([False, False]))


def test_the_fitted_knots_put_the_at_risk_bound_on_the_cut():
    composite = np.array([10, 20, 30, 40, 35, 50, 60, 70, 80, 90], dtype=float)
    churned = np.array([True] * 4 + [False] * 6)
    cal = fit_score_calibration(composite, churned)
    assert cal.composite_knots == (0.0, 45.0, 100.0) and cal.score_knots == (0.0, 49.5, 100.0)
    assert cal.fitted["training_sensitivity"] == 1.0 and cal.fitted["training_rows"] == 10
    # Written into a config and loaded back, the section is the same calibration.
    config = load_model_config(build_config(V1, {}, "v1-cal3", "test", cal).yaml_text)
    assert config.score_calibration == cal
    assert calibration_yaml(None) is None


# --------------------------------------------------------------------------- in the recalibration
def test_every_fold_fits_its_calibration_on_its_own_training_rows_only():
    from tests.unit.test_recalibrate import AS_OF, synthetic_snapshots

    result = recalibrate_snapshots(synthetic_snapshots(), V1, horizon_days=90, as_of=AS_OF)
    assert result.config.score_calibration is not None
    assert result.config.score_calibration.fitted["training_rows"] == result.training["rows"]
    for fold in result.folds:
        fitted = fold["score_calibration"]["fitted"]
        assert fitted["training_rows"] == fold["train_rows"] and fitted["training_churners"] == fold["train_churners"]
    # The proposal reloads from its own YAML with the same calibration (what a promotion scores with).
    assert load_model_config(result.config.yaml_text).score_calibration == result.config.score_calibration
    plain = recalibrate_snapshots(synthetic_snapshots(), V1, horizon_days=90, as_of=AS_OF, calibrate=False)
    assert plain.config.score_calibration is None and "score_calibration" not in plain.config.yaml_text
