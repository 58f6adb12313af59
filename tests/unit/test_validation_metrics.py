"""The churn-prediction metrics: hand-built cases with known answers, and agreement with sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from customer_health.validation.metrics import (
    DEFAULT_THRESHOLD,
    MetricInputError,
    calibration_by_band,
    churn_by_zone,
    confusion_at_threshold,
    evaluate_scores,
    json_safe,
    monotone_calibration,
    roc_auc,
    roc_curve,
    top_decile_lift,
)

# Ten accounts: four churners. Scores chosen so every count is easy to check by eye.
SCORES = np.array([10, 20, 45, 49, 50, 60, 70, 80, 90, 30])
CHURNED = np.array([1, 1, 0, 1, 1, 0, 0, 0, 0, 0], dtype=bool)


def test_flagged_means_score_at_or_below_the_at_risk_upper_bound_49():
    assert DEFAULT_THRESHOLD == 49
    cm = confusion_at_threshold(SCORES, CHURNED)
    # Flagged: 10, 20, 45, 49, 30 -> churners 10, 20, 49 (TP 3), retained 45, 30 (FP 2).
    # Not flagged: 50 (churned: FN 1), 60, 70, 80, 90 (TN 4).
    assert (cm.tp, cm.fp, cm.tn, cm.fn) == (3, 2, 4, 1)
    assert cm.sensitivity == pytest.approx(3 / 4)
    assert cm.specificity == pytest.approx(4 / 6)
    assert cm.precision == pytest.approx(3 / 5)


def test_a_score_of_exactly_50_is_not_flagged_and_a_churner_there_is_a_false_negative():
    cm = confusion_at_threshold([50, 49], [True, True])
    assert (cm.tp, cm.fn) == (1, 1)


def test_auc_is_one_when_every_churner_scores_below_every_retained_account():
    assert roc_auc([10, 20, 80, 90], [1, 1, 0, 0]) == 1.0
    assert roc_auc([80, 90, 10, 20], [1, 1, 0, 0]) == 0.0


def test_auc_counts_a_tie_between_a_churner_and_a_retained_account_as_one_half():
    # Pairs: (30 vs 30) tie -> 0.5, (30 vs 60) win -> 1, (50 vs 30) loss, (50 vs 60) win.
    assert roc_auc([30, 50, 30, 60], [1, 1, 0, 0]) == pytest.approx((0.5 + 1 + 0 + 1) / 4)


def test_auc_is_undefined_with_a_single_class():
    assert math.isnan(roc_auc([10, 20], [1, 1]))
    assert math.isnan(roc_auc([10, 20], [0, 0]))


def test_top_decile_lift_compares_the_lowest_tenth_with_the_whole_book():
    scores = np.arange(100)
    churned = np.zeros(100, dtype=bool)
    churned[:5] = True  # the five lowest churn
    churned[50:55] = True  # and five in the middle: base rate 10 %
    # Lowest decile (10 accounts) holds 5 churners: 50 % / 10 % = 5.
    assert top_decile_lift(scores, churned) == pytest.approx(5.0)


def test_top_decile_lift_splits_a_tie_at_the_cut_pro_rata_so_row_order_does_not_matter():
    scores = np.array([10] * 4 + [90] * 16)  # decile = 2 of the 4 tied lowest
    churned = np.array([1, 1, 0, 0] + [0] * 16, dtype=bool)
    expected = (2 * 0.5 / 2) / (2 / 20)  # half the tied accounts churned
    assert top_decile_lift(scores, churned) == pytest.approx(expected)
    order = np.random.default_rng(1).permutation(20)
    assert top_decile_lift(scores[order], churned[order]) == pytest.approx(expected)


def test_churn_by_zone_uses_inclusive_zone_bounds():
    by_zone = {z["zone"]: z for z in churn_by_zone([0, 24, 25, 49, 50, 74, 75, 100], [1, 1, 1, 0, 0, 0, 0, 0])}
    assert by_zone["Critical"]["accounts"] == 2 and by_zone["Critical"]["churn_rate"] == 1.0
    assert by_zone["At Risk"]["accounts"] == 2 and by_zone["At Risk"]["churn_rate"] == 0.5
    assert by_zone["Neutral"]["churners"] == 0 and by_zone["Healthy"]["accounts"] == 2


def test_calibration_bands_are_ten_points_wide_and_the_last_holds_100():
    bands = calibration_by_band([0, 9, 10, 95, 100], [1, 0, 1, 0, 0])
    assert [b["band"] for b in bands][:2] == ["0-9", "10-19"] and bands[-1]["band"] == "90-100"
    assert bands[0]["accounts"] == 2 and bands[0]["churn_rate"] == 0.5
    assert bands[-1]["accounts"] == 2 and bands[-1]["mean_score"] == 97.5
    assert math.isnan(bands[5]["churn_rate"])


def test_calibration_is_monotone_when_churn_falls_as_the_score_rises():
    good = calibration_by_band([5, 5, 15, 15, 95, 95], [1, 1, 1, 0, 0, 0])
    bad = calibration_by_band([5, 5, 95, 95], [0, 0, 1, 1])
    assert monotone_calibration(good) and not monotone_calibration(bad)


def test_roc_curve_runs_from_nothing_flagged_to_everything_flagged():
    fpr, tpr, thresholds = roc_curve(SCORES, CHURNED)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    i = list(thresholds).index(49)
    assert tpr[i] == pytest.approx(3 / 4) and fpr[i] == pytest.approx(2 / 6)
    # The trapezoid area under the curve is the rank AUC.
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(SCORES, CHURNED))


def test_evaluate_scores_reports_every_metric_and_the_seed_targets():
    result = evaluate_scores(SCORES, CHURNED)
    assert result["observations"] == 10 and result["churners"] == 4
    assert result["sensitivity"] == pytest.approx(0.75) and result["meets_targets"] is False  # spec 0.67 < 0.70
    assert set(result) >= {"roc_auc", "top_decile_lift", "by_zone", "calibration", "confusion"}


def test_bad_inputs_are_refused_with_a_message_naming_them():
    with pytest.raises(MetricInputError, match="scores has 2 values but churned has 1"):
        confusion_at_threshold([1, 2], [True])
    with pytest.raises(MetricInputError, match=r"scores\[1\] is nan"):
        roc_auc([1, float("nan")], [1, 0])
    with pytest.raises(MetricInputError, match="churned must hold booleans or 0/1"):
        roc_auc([1, 2], [0, 2])


def test_json_safe_turns_nan_into_null():
    assert json_safe({"a": float("nan"), "b": [np.float64(1.5), np.int64(2)]}) == {"a": None, "b": [1.5, 2]}


# --------------------------------------------------------------------------- against sklearn
labelled_scores = st.integers(min_value=2, max_value=80).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(min_value=0, max_value=100), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.integers(min_value=0, max_value=100),
    )
)


@settings(max_examples=150, deadline=None)
@given(labelled_scores)
def test_metrics_equal_sklearn_on_random_scores(case):
    scores, churned, threshold = (np.array(case[0], dtype=float), np.array(case[1], dtype=bool), case[2])
    flagged = scores <= threshold
    cm = confusion_at_threshold(scores, churned, threshold)
    tn, fp, fn, tp = skm.confusion_matrix(churned, flagged, labels=[False, True]).ravel()
    assert (cm.tp, cm.fp, cm.tn, cm.fn) == (tp, fp, tn, fn)
    if churned.any():
        assert cm.sensitivity == pytest.approx(skm.recall_score(churned, flagged, zero_division=np.nan))
    if flagged.any():
        assert cm.precision == pytest.approx(skm.precision_score(churned, flagged, zero_division=np.nan))
    if churned.any() and not churned.all():
        # Lower score = more risk, so sklearn gets the negated score.
        assert roc_auc(scores, churned) == pytest.approx(skm.roc_auc_score(churned, -scores))


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_auc_equals_sklearn_on_continuous_scores_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(60, 20, 300)).clip(0, 100)
    churned = rng.random(300) < 1 / (1 + np.exp((scores - 45) / 8))
    if churned.all() or not churned.any():
        return
    assert roc_auc(scores, churned) == pytest.approx(skm.roc_auc_score(churned, -scores))
