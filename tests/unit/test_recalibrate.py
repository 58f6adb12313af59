"""Recalibration: weights follow the churn regression, the config stays valid, validation is honest.

The synthetic book: 300 established accounts on 8 monthly snapshots, where only the active-user
ratio drives churn (the lower it is, the likelier the account leaves within 90 days); every other
signal is noise.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

import customer_health.validation.recalibrate as recalibrate_module
from customer_health.scoring.model_config import SEED_DIMENSION_WEIGHT_RANGES, load_model_config
from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.validation.recalibrate import (
    RecalibrationError,
    SignalFit,
    label_snapshots,
    project_onto_ranges,
    proposed_version_name,
    recalibrate_snapshots,
    review_markdown,
    round_weights,
    weights_from_fit,
)

V1 = load_model_config()
DATES = [date(2025, m, 1) for m in range(3, 11)]
AS_OF = date(2026, 1, 1)


def synthetic_snapshots(accounts: int = 300, driver: str = "active_user_ratio", seed: int = 3) -> pd.DataFrame:
    """Signals per (account, date) with churn driven by ``driver`` alone."""
    rng = np.random.default_rng(seed)
    frames = []
    for day in DATES:
        frame = pd.DataFrame(
            {
                "account_key": [f"001{i:015d}" for i in range(accounts)],
                "as_of_date": day,
                "plan": np.where(np.arange(accounts) % 2, "pro", "starter"),
                "tenure_days": 400 + (np.arange(accounts) * 7) % 900,
                "arr": 12000.0,
            }
        )
        for key in SIGNALS:
            frame[key] = rng.uniform(0, 1, accounts)
        frame["login_frequency"] = rng.uniform(0, 10, accounts)
        frame["open_tickets"] = rng.poisson(2, accounts).astype(float)
        frame["nps"] = rng.uniform(0, 10, accounts)
        frame["exec_sponsor_recency"] = rng.uniform(0, 365, accounts)
        frame["engagement_trend"] = rng.uniform(-0.5, 0.5, accounts)
        driving = frame[driver].to_numpy()
        p_churn = 1 / (1 + np.exp(-(-2.2 + 9 * (0.35 - driving))))
        frame["churned"] = rng.random(accounts) < p_churn
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def recalibration():
    return recalibrate_snapshots(synthetic_snapshots(), V1, horizon_days=90, as_of=AS_OF, min_train_churners=10)


def test_the_signal_that_drives_churn_gains_weight(recalibration):
    before = V1.default_model.signal_weight("active_user_ratio", "engagement")
    after = recalibration.config.default_model.signal_weight("active_user_ratio", "engagement")
    assert after > before
    assert after == max(recalibration.config.default_model.signal_weights["engagement"].values())
    fit = recalibration.weights["established"].fit["coefficients"]
    assert fit["active_user_ratio"] < 0  # more active users, less churn
    assert fit["active_user_ratio"] == min(fit.values())


def test_the_engagement_dimension_rises_to_the_top_of_its_seed_range(recalibration):
    weights = recalibration.fits["in_range"].config.default_model.dimension_weights
    assert weights["engagement"] == pytest.approx(SEED_DIMENSION_WEIGHT_RANGES["engagement"][1])
    for d, (lo, hi) in SEED_DIMENSION_WEIGHT_RANGES.items():
        assert lo - 1e-9 <= weights[d] <= hi + 1e-9


def test_the_proposed_config_loads_and_keeps_weights_non_negative_and_summing_to_one(recalibration):
    config = load_model_config(recalibration.config.yaml_text)
    assert config.version == "v1-r20260101"
    for model in config.models:
        assert sum(model.dimension_weights.values()) == pytest.approx(1.0, abs=1e-9)
        for d, signals in model.signal_weights.items():
            assert all(w >= 0 for w in signals.values())
            assert sum(signals.values()) == pytest.approx(1.0, abs=1e-9), (model.name, d)
    # Everything but the weights is the parent's model: same signals (candidates the fit did not
    # take up are left out), zones and baselines.
    assert config.signal_keys == V1.signal_keys and config.zones == V1.zones and config.baselines == V1.baselines
    in_range = recalibration.fits["in_range"].config
    assert not in_range.allow_out_of_range_weights and in_range.version == config.version


def test_held_out_metrics_come_from_later_snapshots_only_and_from_the_engines_score(recalibration):
    for fold in recalibration.folds:
        test_date = date.fromisoformat(fold["test_date"])
        assert all(date.fromisoformat(d) + timedelta(days=90) <= test_date for d in fold["train_dates"])
    held = recalibration.held_out
    assert set(held["as_of_date"]) == {date.fromisoformat(f["test_date"]) for f in recalibration.folds}
    assert held["new_score"].between(0, 100).all() and (held["new_score"] % 1 == 0).all()
    # The proposed weights rank churners better than v1 on the held-out quarters.
    assert recalibration.new_metrics["roc_auc"] > recalibration.old_metrics["roc_auc"]


def test_recalibration_is_deterministic(recalibration):
    again = recalibrate_snapshots(synthetic_snapshots(), V1, horizon_days=90, as_of=AS_OF, min_train_churners=10)
    assert again.config.sha256 == recalibration.config.sha256


def test_a_signal_that_raises_churn_risk_as_it_improves_gets_zero_weight():
    signals = tuple(V1.signal_keys)
    coefficients = np.array([-1.0 if k == "login_frequency" else (2.0 if k == "feature_breadth" else -0.1) for k in signals])
    w = weights_from_fit(SignalFit(signals, coefficients, 0.0, 100, 10), V1, "established", pooled=True)
    assert w.signal_weights["engagement"]["feature_breadth"] == 0.0
    free = weights_from_fit(SignalFit(signals, coefficients, 0.0, 100, 10), V1, "established", pooled=True, boxed=False)
    assert free.signal_weights["engagement"]["feature_breadth"] == 0.0 and sum(free.dimension_weights.values()) == pytest.approx(1.0)
    assert load_model_config(V1.yaml_text).version == "v1"  # the parent is untouched


def test_dimension_weights_stay_proportional_within_the_seed_ranges_and_sum_to_one():
    raw = {"engagement": 0.9, "support": 0.05, "financial": 0.05, "sentiment": 0.0}
    projected = project_onto_ranges(raw, dict(SEED_DIMENSION_WEIGHT_RANGES))
    assert sum(projected.values()) == pytest.approx(1.0)
    # Engagement is capped at 45 %, the evidence-free sentiment gets its floor of 10 %.
    assert projected == pytest.approx({"engagement": 0.45, "support": 0.20, "financial": 0.25, "sentiment": 0.10})
    inside = {"engagement": 0.40, "support": 0.18, "financial": 0.30, "sentiment": 0.12}
    assert project_onto_ranges(inside, dict(SEED_DIMENSION_WEIGHT_RANGES)) == pytest.approx(inside)
    rounded = round_weights({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert sum(rounded.values()) == pytest.approx(1.0, abs=1e-12)


def test_labels_count_churn_only_after_the_snapshot_and_within_the_horizon():
    signals = pd.DataFrame({"account_key": ["a", "b", "c", "d"], "as_of_date": [date(2026, 1, 1)] * 4})
    churn = pd.DataFrame(
        {"account_key": ["a", "b", "c"], "occurred_on": [date(2026, 1, 1), date(2026, 4, 1), date(2026, 4, 2)]}
    )
    labelled = label_snapshots(signals, churn, 90)
    assert labelled["churned"].tolist() == [False, True, False, False]


def test_too_few_churners_to_train_on_is_refused_with_what_to_do():
    few = synthetic_snapshots()
    few["churned"] = False
    few.loc[few.index[:3], "churned"] = True
    with pytest.raises(RecalibrationError, match="widen the training window"):
        recalibrate_snapshots(few, V1, as_of=AS_OF)


def test_version_names_carry_the_parent_base_and_the_date():
    assert proposed_version_name("v1", date(2026, 11, 23)) == "v1-r20261123"
    assert proposed_version_name("v1-r20260801", date(2026, 11, 23)) == "v1-r20261123"


def test_review_body_shows_old_and_new_metrics_side_by_side(recalibration):
    body = review_markdown(recalibration)
    assert "| Metric | v1 (current) | in-range fit" in body and "free fit" in body and "(**proposed**)" in body
    assert "ROC AUC" in body and "Sensitivity" in body


# --------------------------------------------------------------------------- #18 item 3: a recalibration that can learn
def test_the_fit_is_pulled_toward_the_prior_and_plain_ridge_without_one():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (400, 3))
    y = rng.random(400) < 1 / (1 + np.exp(-(1.5 - 4 * x[:, 0])))
    keys = ("a", "b", "c")
    free = recalibrate_module.fit_logistic(x, y, keys, c=1.0)
    from sklearn.linear_model import LogisticRegression

    ridge = LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(x, y)
    assert free.coefficients == pytest.approx(ridge.coef_[0], abs=1e-4)  # prior 0 = scikit-learn's ridge
    prior = np.array([0.0, -3.0, 0.0])
    pulled = recalibrate_module.fit_logistic(x, y, keys, c=0.01, prior=prior)
    assert pulled.coefficients[1] == pytest.approx(-3.0, abs=0.3)  # a strong prior wins over the data
    only_a = recalibrate_module.fit_logistic(x, y, keys, c=1.0, active=np.array([True, False, False]))
    assert only_a.coefficients[1] == 0.0 and only_a.coefficients[2] == 0.0


def test_of_two_signals_measuring_one_behaviour_one_is_kept():
    # Three columns: a driver, its near-copy (two engagement signals measuring one behaviour),
    # and a third, unrelated column. Dropping every signal that adds little *given the others* would drop both
    # copies (each is redundant while the other is there); elimination one at a time keeps one.
    rng = np.random.default_rng(11)
    days = np.repeat([date(2025, m, 1) for m in range(1, 9)], 300)
    driver = rng.uniform(0, 1, days.size)
    twin = np.clip(driver + rng.normal(0, 0.01, days.size), 0, 1)
    noise = rng.uniform(0, 1, days.size)
    churned = rng.random(days.size) < 1 / (1 + np.exp(-(-1.0 - 5 * (driver - 0.4))))
    features = np.column_stack([driver, twin, noise])

    keep, contrib = recalibrate_module.select_signals(
        features, churned, days, 90, None, c=1.0, min_contribution=0.001, min_train_churners=10
    )

    assert keep[:2].sum() == 1, contrib
    kept = int(np.flatnonzero(keep[:2])[0])
    assert contrib[kept] > 0.1  # the survivor carries the behaviour's whole information
    # Leave-one-out from the full set rates both copies as nearly worthless:
    alone = recalibrate_module.contributions(features, churned, days, 90, None, 1.0, 10)
    assert max(alone[0], alone[1]) < 0.01


@pytest.fixture(scope="module")
def depth_recalibration():
    """feature_depth (catalogued, not in v1) drives churn; every v1 signal is noise."""
    data = synthetic_snapshots(accounts=240, driver="feature_depth", seed=8)
    return recalibrate_snapshots(data, V1, horizon_days=90, as_of=AS_OF, min_train_churners=10)


def test_a_catalogued_signal_outside_the_model_is_a_candidate_and_noise_is_dropped(depth_recalibration):
    r = depth_recalibration
    assert "feature_depth" in r.selection["candidates"] and "feature_depth" in r.selection["kept"]
    assert r.selection["contributions"]["feature_depth"] > 0.1
    assert len(r.selection["dropped"]) >= 10  # the noise signals carry no held-out information
    free = r.fits["free"].config
    assert "feature_depth" in free.signal_keys
    assert free.default_model.signal_weight("feature_depth", "engagement") == max(free.default_model.signal_weights["engagement"].values())


def test_both_fits_are_scored_on_the_same_held_out_rows_and_the_free_one_is_proposed_by_its_margin(depth_recalibration):
    r = depth_recalibration
    assert {"in_range_score", "free_score", "old_score", "baseline_risk"} <= set(r.held_out.columns)
    free_auc, boxed_auc = r.fits["free"].metrics["roc_auc"], r.fits["in_range"].metrics["roc_auc"]
    settings = recalibrate_module.load_recalibration_settings()
    assert r.proposed_fit == ("free" if free_auc >= boxed_auc + settings.free_fit_auc_margin else "in_range")
    assert r.new_metrics is r.fits[r.proposed_fit].metrics
    # The free fit leaves the seeds' ranges (engagement carries everything) and says so.
    outside = recalibrate_module.out_of_range_weights(r.fits["free"].weights)
    assert any(o["dimension"] == "engagement" and o["weight"] > 0.45 for o in outside)
    assert r.fits["free"].config.allow_out_of_range_weights
    assert recalibrate_module.out_of_range_weights(r.fits["in_range"].weights) == []
    registry_metrics = r.metrics_for_registry()
    assert set(registry_metrics["fits"]) == {"in_range", "free"} and registry_metrics["baseline"]["baseline_auc"] > 0.5


def test_the_in_range_fit_is_proposed_unless_the_free_one_beats_it_by_the_configured_margin(tmp_path):
    settings = tmp_path / "recalibration.yaml"
    settings.write_text("free_fit_auc_margin: 1.0\n")
    data = synthetic_snapshots(accounts=160, driver="feature_depth", seed=9)
    r = recalibrate_snapshots(
        data, V1, horizon_days=90, as_of=AS_OF, min_train_churners=10,
        settings=recalibrate_module.load_recalibration_settings(settings),
    )  # fmt: skip
    assert r.proposed_fit == "in_range" and not r.config.allow_out_of_range_weights
    assert "in-range fit" in r.notes[-1] and "1.000" in r.notes[-1]


def test_the_approval_request_shows_both_fits_side_by_side_and_flags_every_weight_outside_the_ranges(depth_recalibration):
    r = depth_recalibration
    body = review_markdown(r)
    header = next(line for line in body.splitlines() if line.startswith("| Metric |"))
    assert "v1 (current)" in header and "in-range fit" in header and "free fit" in header
    auc_row = next(line for line in body.splitlines() if line.startswith("| ROC AUC |"))
    assert f"{r.fits['in_range'].metrics['roc_auc']:.3f}" in auc_row and f"{r.fits['free'].metrics['roc_auc']:.3f}" in auc_row
    assert "plain logistic regression on the raw signals" in body
    flagged = [line for line in body.splitlines() if line.startswith("| established | free fit |")]
    assert flagged and "⚠ outside 35%-45%" in flagged[0]
    assert body.count("⚠ outside") == len(recalibrate_module.out_of_range_weights(r.fits["free"].weights))
    in_range_rows = [line for line in body.splitlines() if "| in-range fit |" in line and line.startswith("| ")]
    assert in_range_rows and not any("⚠" in line for line in in_range_rows)
    assert "feature_depth" in body  # the candidate taken up is named


def test_bad_recalibration_settings_fail_naming_the_file_and_the_value(tmp_path):
    bad = tmp_path / "recalibration.yaml"
    bad.write_text("free_fit_auc_margin: -1\n")
    with pytest.raises(RecalibrationError, match="free_fit_auc_margin.*recalibration.yaml.*-1"):
        recalibrate_module.load_recalibration_settings(bad)
    bad.write_text("candidate_signals: [no_such_signal]\n")
    with pytest.raises(RecalibrationError, match="no_such_signal"):
        recalibrate_module.load_recalibration_settings(bad)
    bad.write_text("selection: some\n")
    with pytest.raises(RecalibrationError, match="selection in .*recalibration.yaml is 'some'; expected one of candidates, all, none"):
        recalibrate_module.load_recalibration_settings(bad)
    assert recalibrate_module.load_recalibration_settings().selection == "candidates"


def test_only_eligible_signals_are_eliminated_the_models_own_stay_open_to_the_fit():
    # Columns: the driver, a weak model signal, and a candidate that *raises* churn as it improves
    # (no protective effect: zero weight, zero contribution). With selection "candidates" only the
    # candidate may go; the weak model signal stays for the fit to weigh.
    rng = np.random.default_rng(5)
    days = np.repeat([date(2025, m, 1) for m in range(1, 9)], 300)
    driver, weak, wrong_way = (rng.uniform(0, 1, days.size) for _ in range(3))
    churned = rng.random(days.size) < 1 / (1 + np.exp(-(-1.0 - 5 * (driver - 0.4) - 0.3 * (weak - 0.5) + 1.5 * (wrong_way - 0.5))))
    features = np.column_stack([driver, weak, wrong_way])
    eligible = np.array([False, False, True])

    keep, contrib = recalibrate_module.select_signals(
        features, churned, days, 90, None, c=1.0, min_contribution=0.01, min_train_churners=10, eligible=eligible
    )

    assert keep.tolist() == [True, True, False], contrib
    assert contrib[2] == 0.0  # no protective weight, so removing it changes nothing
    everything, _ = recalibrate_module.select_signals(
        features, churned, days, 90, None, c=1.0, min_contribution=0.01, min_train_churners=10
    )
    assert not everything[1]  # with every signal eligible, the weak one would have gone too


def test_the_report_separates_signals_without_weight_from_signals_without_data():
    data = synthetic_snapshots(accounts=200, seed=4)
    data["csat"] = np.nan  # a company without a help desk
    r = recalibrate_snapshots(data, V1, horizon_days=90, as_of=AS_OF, min_train_churners=10)
    assert "csat" in r.selection["no_data"] and "csat" not in r.selection["dropped"] + r.selection["kept"]
    assert "active_user_ratio" in r.selection["kept"]
    assert set(r.selection["kept"]).isdisjoint(r.selection["dropped"])
    body = review_markdown(r)
    assert "No data in the training rows (the engine gives them no weight): csat" in body
    assert "no protective effect" in body
