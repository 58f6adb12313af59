"""The plain logistic-regression baseline beside every audit and recalibration (#18 item 4).

The synthetic book: 400 accounts on 6 monthly snapshots; churn follows the raw active-user ratio
(the lower, the likelier within 90 days), some login counts are missing, other signals are noise.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.validation.baseline import (
    WEAK_AUC,
    baseline_warnings,
    compare_on_rows,
    fit_baseline,
    format_comparison,
    predict_on_folds,
)

DATES = [date(2025, m, 1) for m in range(1, 7)]


def book(accounts: int = 400, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for day in DATES:
        frame = pd.DataFrame({"account_key": [f"a{i}" for i in range(accounts)], "as_of_date": day})
        for key in SIGNALS:
            frame[key] = rng.uniform(0, 1, accounts)
        frame["login_frequency"] = np.where(rng.random(accounts) < 0.3, np.nan, rng.uniform(0, 10, accounts))
        p = 1 / (1 + np.exp(-(-2.0 + 8 * (0.3 - frame["active_user_ratio"].to_numpy()))))
        frame["churned"] = rng.random(accounts) < p
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_each_snapshot_is_predicted_by_a_fit_on_snapshots_whose_horizon_ended_before_it(monkeypatch):
    data = book()
    seen: list[set[date]] = []
    import customer_health.validation.baseline as baseline

    real = baseline.fit_baseline

    def spy(frame, churned, c=1.0):
        seen.append(set(frame["as_of_date"]))
        return real(frame, churned, c)

    monkeypatch.setattr(baseline, "fit_baseline", spy)
    risk = predict_on_folds(data, data["churned"].to_numpy(), DATES, 90)
    # 2025-01..03 have no snapshot 90 days earlier: no prediction (NaN), never a look-ahead.
    early = data["as_of_date"].isin(DATES[:3]).to_numpy()
    assert np.isnan(risk[early]).all() and np.isfinite(risk[~early]).all()
    for train_dates, test in zip(seen, DATES[3:], strict=True):
        assert all(d + timedelta(days=90) <= test for d in train_dates)


def test_the_baseline_learns_the_raw_signal_with_missing_values_imputed_and_flagged():
    data = book()
    fit = fit_baseline(data, data["churned"].to_numpy())
    assert "active_user_ratio" in fit.columns and "login_frequency" in fit.columns
    # login_frequency is missing in some rows: it got a missing-indicator column.
    assert fit.columns.index("login_frequency") in fit.indicators
    risk = fit.risk(data)
    assert np.isfinite(risk).all()
    low, high = data["active_user_ratio"] < 0.2, data["active_user_ratio"] > 0.8
    assert risk[low.to_numpy()].mean() > 3 * risk[high.to_numpy()].mean()


def test_a_training_set_with_one_class_gives_no_baseline():
    data = book().head(50)
    assert fit_baseline(data, np.zeros(50, dtype=bool)) is None


def test_model_and_baseline_compared_on_the_same_rows_at_the_same_workload():
    y = np.array([True, True, False, False, False, False, False, False])
    scores = np.array([80, 20, 30, 90, 90, 90, 90, 90], dtype=float)  # flags 2 rows, one churner
    risk = np.array([0.9, 0.8, 0.1, 0.2, 0.1, 0.1, 0.1, np.nan])  # last row: no prediction
    c = compare_on_rows(scores, risk, y, 49)
    assert c.rows == 7 and c.flagged == 2
    assert c.baseline_auc == pytest.approx(1.0) and c.model_auc < c.baseline_auc
    assert c.baseline_sensitivity == 1.0 and c.model_sensitivity == 0.5


def test_the_warning_says_plainly_when_the_model_is_worse_than_the_baseline_or_weak():
    worse = {"model_auc": 0.46, "baseline_auc": 0.73, "rows": 900}
    lines = baseline_warnings(worse, label="the model")
    assert lines[0].startswith("WARNING: the model ranks worse than a plain logistic regression on the raw signals (AUC 0.460 vs 0.730")
    assert any(f"under {WEAK_AUC}" in w for w in lines)
    assert baseline_warnings({"model_auc": 0.85, "baseline_auc": 0.80, "rows": 900}) == []
    # Without a baseline, the model's own AUC under 0.6 still warns.
    assert len(baseline_warnings(None, overall_auc=0.55)) == 1


def test_a_skipped_baseline_says_why_instead_of_printing_nan():
    c = compare_on_rows(np.array([50.0]), np.array([np.nan]), np.array([True]), 49).as_dict()
    assert c["baseline_auc"] is None and "no held-out row" in c["skipped"]
    assert "not computed" in format_comparison(c)[0]
