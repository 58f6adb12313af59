"""Recalibrate the model's weights from churn outcomes, and prove it on held-out quarters.

The seed method: "run logistic regression with churn as the dependent variable to determine which
signals are most predictive, then assign proportional weights"; "recalibrate component weights
semi-annually using updated regression analysis against actual outcomes".

Features: the normalized signals, as the engine scores them
----------------------------------------------------------
Each snapshot's raw signals are normalized exactly as the scoring engine does (0-100 against the
plan x tenure segment baseline of that date's population; ``normalize_signals``), then divided
by 100. Why not raw values with standardization: the score is ``sum(weight x normalized)``, so a
coefficient fitted on the normalized value *is* a weight on the scale the score uses - it maps to
a config weight with no translation - and the segment baselines already remove the plan/tenure
differences that raw values would make the regression learn again. All features share one 0-1
scale, so the L2 penalty treats them alike without standardizing. A missing signal is set to the
neutral 0.5: it then contributes nothing either way, which is what the engine's reweighting
does. Signals the config does not list cannot be added here (they need a normalization spec).

From coefficients to weights
----------------------------
``health_i = max(0, -beta_i)``: a signal whose higher normalized value lowers churn odds earns a
proportional health weight; one that does not (beta >= 0) gets 0. Within a dimension the signal
weights are ``health_i / sum(health in dimension)``; the dimension weights start from those sums
(so the effective weight of each signal is proportional to its coefficient) and are then moved
into the seeds' ranges (engagement 35-45 %, financial 20-30 %, support 15-20 %, sentiment
10-15 %) by bounded proportional allocation (``project_onto_ranges``), unless the config sets
``allow_out_of_range_weights``. A dimension with no protective signal keeps its parent's
signal weights at its lowest allowed dimension weight. Weights are rounded to 4 decimals and
still sum to exactly 1. Each segment model (``new``, ``established``, ...) gets its own fit
when its training rows hold at least ``min_segment_churners`` churners, else the pooled fit.

Score calibration: the fixed At Risk bound where the training data meets the targets
-------------------------------------------------------------------------------------
The zone bounds are fixed by the method (flagged = score <= 49), but a weighted composite of
segment-relative signals has no reason to put the seed's balance (sensitivity >= 75 %,
specificity >= 70 %) exactly at 50: v1 flags too few churners there. So the proposal also carries
a ``score_calibration`` (``model_config.ScoreCalibration``): knots (0, 0) -> (cut, 49.5) ->
(100, 100), linear in between, applied by the engine to the composite before half-up rounding
(49.5 is where rounding moves 49 to 50, so "flagged" is exactly "composite < cut"). ``cut`` is
fitted on the training rows only - the composites the engine computes with the fitted weights
on those rows - as the cut that maximizes ``min(sensitivity - 0.75, specificity - 0.70)``
(``balanced_cut``): both targets met with the largest common margin, or the worse one missed
least. The map is strictly increasing, so the ranking (AUC) is the composite's; it moves the
Critical and Healthy bounds in proportion. ``calibrate=False`` leaves it out.

Validation over time
--------------------
Snapshots are ordered by date. Expanding-window folds: each snapshot date ``t`` is a test fold,
trained on every snapshot ``s`` with ``s + H <= t`` (its labels were known by ``t``: no
look-ahead; the gap purges overlapping horizons); the fold's weights *and* its score calibration
are fitted on those training snapshots alone. The fold's config scores the held-out snapshot
**through the scoring engine** (``score_accounts``), and so does the parent config, so the
reported metrics are of the real integer score, side by side on the same observations. The
proposed version is then fitted on all snapshots and registered as *proposed* with those
held-out metrics; a human approves or rejects it (``registry``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sqlalchemy import Engine

from customer_health.scoring.model_config import (
    DIMENSIONS,
    SEED_DIMENSION_WEIGHT_RANGES,
    ModelConfig,
    ScoreCalibration,
    load_model_config,
)
from customer_health.validation.metrics import (
    DEFAULT_THRESHOLD,
    SENSITIVITY_TARGET,
    SPECIFICITY_TARGET,
    evaluate_scores,
    json_safe,
)
from customer_health.validation.outcomes import read_outcomes
from customer_health.validation.snapshots import (
    DEFAULT_HORIZON_DAYS,
    SignalSource,
    as_date,
    resolve_config,
    signals_at,
    snapshot_dates,
)

DEFAULT_C = 1.0
DEFAULT_MIN_TRAIN_CHURNERS = 10
DEFAULT_MIN_SEGMENT_CHURNERS = 40
WEIGHT_DECIMALS = 4


class RecalibrationError(ValueError):
    """The recalibration cannot run on this data; the message says what is missing."""


# --------------------------------------------------------------------------- training data
def label_snapshots(signals: pd.DataFrame, churn: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """Add ``churned`` (a churn outcome in ``(as_of_date, as_of_date + H]``) to stacked signals."""
    out = signals.copy()
    if out.empty:
        out["churned"] = pd.Series(dtype=bool)
        return out
    as_of = out["as_of_date"].map(as_date)
    churned = np.zeros(len(out), dtype=bool)
    if len(churn):
        events = churn[["account_key", "occurred_on"]].copy()
        events["occurred_on"] = events["occurred_on"].map(as_date)
        by_account: dict[str, list[date]] = {}
        for key, day in zip(events["account_key"], events["occurred_on"], strict=True):
            by_account.setdefault(key, []).append(day)
        horizon = timedelta(days=horizon_days)
        for i, (key, t) in enumerate(zip(out["account_key"], as_of, strict=True)):
            churned[i] = any(t < d <= t + horizon for d in by_account.get(key, ()))
    out["churned"] = churned
    return out


def training_snapshots(
    engine: Engine,
    dates: Sequence[date],
    horizon_days: int,
    signal_source: SignalSource = signals_at,
) -> pd.DataFrame:
    """Point-in-time signals of every snapshot date, stacked, labelled churned within H."""
    frames = [signal_source(engine, d) for d in dates]
    frames = [f for f in frames if len(f)]
    if not frames:
        raise RecalibrationError(
            f"no signals at any snapshot date {[d.isoformat() for d in dates]}; run compute_signals for them "
            "(backfill customer_health_daily) before recalibrating"
        )
    stacked = pd.concat(frames, ignore_index=True)
    return label_snapshots(stacked, read_outcomes(engine, outcomes=["churn"]), horizon_days)


def normalized_matrix(snapshots: pd.DataFrame, config: ModelConfig) -> np.ndarray:
    """Normalized signals (0-100, NaN = no data) per row, each date against its own baselines:
    exactly what the scoring engine composes when it scores that date."""
    from customer_health.scoring.normalize import normalize_signals

    values = np.full((len(snapshots), len(config.signals)), np.nan)
    dates = snapshots["as_of_date"].map(as_date).to_numpy()
    for day in pd.unique(dates):
        rows = np.flatnonzero(dates == day)
        values[rows] = normalize_signals(snapshots.iloc[rows], config).values
    return values


def normalized_features(snapshots: pd.DataFrame, config: ModelConfig) -> np.ndarray:
    """Normalized signals (0-1, missing = 0.5) per row, each date against its own baselines."""
    return features_from_normalized(normalized_matrix(snapshots, config))


def features_from_normalized(values: np.ndarray) -> np.ndarray:
    """The regression's features from ``normalized_matrix``: 0-1, a missing signal at 0.5."""
    return np.where(np.isnan(values), 0.5, values / 100.0)


def segment_model_names(snapshots: pd.DataFrame, config: ModelConfig) -> np.ndarray:
    """The segment model (``config.models`` name) that scores each row, by its tenure."""
    from customer_health.scoring.normalize import segment_model_index

    tenure = pd.to_numeric(snapshots.get("tenure_days"), errors="coerce").to_numpy(dtype=float) if "tenure_days" in snapshots else np.full(len(snapshots), np.nan)
    names = np.array([m.name for m in config.models], dtype=object)
    return names[segment_model_index(tenure, config)]


# --------------------------------------------------------------------------- the regression
@dataclass(frozen=True)
class SignalFit:
    """One logistic regression: coefficients per signal (config order) on normalized 0-1 values."""

    signals: tuple[str, ...]
    coefficients: np.ndarray
    intercept: float
    rows: int
    churners: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly: coefficients by signal key."""
        return {
            "rows": self.rows,
            "churners": self.churners,
            "intercept": round(self.intercept, 6),
            "coefficients": {k: round(float(c), 6) for k, c in zip(self.signals, self.coefficients, strict=True)},
        }


def fit_logistic(features: np.ndarray, churned: np.ndarray, signals: Sequence[str], c: float = DEFAULT_C) -> SignalFit:
    """L2 logistic regression of churn on the normalized signals (sklearn, lbfgs, deterministic)."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(churned, dtype=bool)
    if y.all() or not y.any():
        raise RecalibrationError(
            f"the training rows hold {int(y.sum())} churners of {y.size}; a regression needs both churned and "
            "retained accounts - widen the window or build the outcomes (validation.outcomes.build_outcomes)"
        )
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit(features, y)
    return SignalFit(tuple(signals), model.coef_[0].copy(), float(model.intercept_[0]), int(y.size), int(y.sum()))


# --------------------------------------------------------------------------- coefficients -> weights
def _bisect(total_at: Callable[[float], float], low: float, high: float) -> float:
    """The x in [low, high] where the nondecreasing ``total_at(x)`` reaches 1."""
    for _ in range(200):
        mid = (low + high) / 2
        if total_at(mid) > 1.0:
            high = mid
        else:
            low = mid
    return (low + high) / 2


def project_onto_ranges(raw: dict[str, float], ranges: dict[str, tuple[float, float]] | None) -> dict[str, float]:
    """Weights proportional to ``raw`` that sum to 1, each kept inside its ``ranges``.

    Bounded proportional allocation: ``w_k = clip(s * raw_k, lo_k, hi_k)`` with the one scale
    ``s`` that makes them sum to 1 (bisection; the sum grows with ``s``). Unclipped dimensions keep
    the ratios the regression gave them, a dimension without evidence sits at its lower bound.
    When even every evidenced dimension at its upper bound leaves weight over, the evidence-free
    dimensions share it equally. ``ranges=None`` only normalizes.
    """
    keys = list(raw)
    values = np.array([max(0.0, raw[k]) for k in keys], dtype=float)
    if values.sum() <= 0:
        raise RecalibrationError("every dimension's weight is 0: no signal lowers churn risk in this data")
    if ranges is None:
        return {k: float(v / values.sum()) for k, v in zip(keys, values, strict=True)}
    lo = np.array([ranges[k][0] for k in keys])
    hi = np.array([ranges[k][1] for k in keys])
    if lo.sum() > 1 + 1e-9 or hi.sum() < 1 - 1e-9:
        raise RecalibrationError(f"the dimension weight ranges {ranges} cannot sum to 1; fix SEED_DIMENSION_WEIGHT_RANGES")
    values = values / values.sum()
    ceiling = np.where(values > 0, hi, lo).sum()
    if ceiling >= 1.0:
        scale = _bisect(lambda s: float(np.clip(s * values, lo, hi).sum()), 0.0, 1e6)
        weights = np.clip(scale * values, lo, hi)
    else:
        evidence = values > 0
        shift = _bisect(lambda x: float(np.where(evidence, hi, np.clip(lo + x, lo, hi)).sum()), 0.0, 1.0)
        weights = np.where(evidence, hi, np.clip(lo + shift, lo, hi))
    return {k: float(w) for k, w in zip(keys, weights, strict=True)}


def round_weights(weights: dict[str, float], ranges: dict[str, tuple[float, float]] | None = None, decimals: int = WEIGHT_DECIMALS) -> dict[str, float]:
    """Round to ``decimals`` and put the rounding residue on the weight with room for it, so the
    weights still sum to exactly 1 (within float noise) and stay inside ``ranges``."""
    step = 10.0**-decimals
    rounded = {k: round(v, decimals) for k, v in weights.items()}
    residue = round(1.0 - sum(rounded.values()), decimals)
    order = sorted(rounded, key=lambda k: -rounded[k])
    while abs(residue) >= step / 2:
        moved = False
        for k in order:
            lo, hi = ranges[k] if ranges else (0.0, 1.0)
            candidate = round(rounded[k] + math.copysign(step, residue), decimals)
            if lo - 1e-12 <= candidate <= hi + 1e-12:
                rounded[k] = candidate
                residue = round(residue - math.copysign(step, residue), decimals)
                moved = True
                break
        if not moved:  # pragma: no cover - ranges that cannot absorb one step
            break
    return rounded


@dataclass(frozen=True)
class SegmentWeights:
    """Proposed weights of one segment model."""

    dimension_weights: dict[str, float]
    signal_weights: dict[str, dict[str, float]]
    fit: dict[str, Any]
    pooled: bool


def weights_from_fit(fit: SignalFit, config: ModelConfig, segment: str, pooled: bool) -> SegmentWeights:
    """Signal and dimension weights of segment model ``segment`` from a fit (module docstring)."""
    parent = next(m for m in config.models if m.name == segment)
    health = {k: max(0.0, -float(c)) for k, c in zip(fit.signals, fit.coefficients, strict=True)}
    signal_dim = {s.key: s.dimension for s in config.signals}
    raw_dims: dict[str, float] = {}
    signal_weights: dict[str, dict[str, float]] = {}
    for d in DIMENSIONS:
        members = [k for k in config.signal_keys if signal_dim[k] == d]
        if not members:
            continue
        total = sum(health[k] for k in members)
        raw_dims[d] = total
        if total > 0:
            signal_weights[d] = round_weights({k: health[k] / total for k in members})
        else:
            kept = {k: parent.signal_weight(k, d) for k in members}
            signal_weights[d] = round_weights(kept if sum(kept.values()) > 0 else {k: 1.0 / len(members) for k in members})
    if sum(raw_dims.values()) <= 0:
        raise RecalibrationError(
            f"segment '{segment}': no signal lowers churn risk in the fitted coefficients {fit.as_dict()['coefficients']}; "
            "the outcomes do not support any weighting - check account_outcomes and the snapshot signals"
        )
    ranges = None if config.allow_out_of_range_weights else {d: SEED_DIMENSION_WEIGHT_RANGES[d] for d in raw_dims}
    dims = round_weights(project_onto_ranges(raw_dims, ranges), ranges)
    for d in DIMENSIONS:
        dims.setdefault(d, 0.0)
    return SegmentWeights({d: dims[d] for d in DIMENSIONS}, signal_weights, fit.as_dict(), pooled)


def fit_segment_weights(
    features: np.ndarray,
    churned: np.ndarray,
    segments: np.ndarray,
    config: ModelConfig,
    *,
    c: float = DEFAULT_C,
    min_segment_churners: int = DEFAULT_MIN_SEGMENT_CHURNERS,
) -> dict[str, SegmentWeights]:
    """Weights for every segment model: its own fit with enough churners, else the pooled fit."""
    pooled = fit_logistic(features, churned, config.signal_keys, c)
    out = {}
    for model in config.models:
        rows = segments == model.name
        own = int(np.asarray(churned)[rows].sum())
        if own >= min_segment_churners and own < rows.sum():
            out[model.name] = weights_from_fit(fit_logistic(features[rows], churned[rows], config.signal_keys, c), config, model.name, False)
        else:
            out[model.name] = weights_from_fit(pooled, config, model.name, True)
    return out


# --------------------------------------------------------------------------- score calibration
CALIBRATION_DECIMALS = 4


def segment_model_indices(snapshots: pd.DataFrame, config: ModelConfig) -> np.ndarray:
    """Row of ``config.models`` that scores each snapshot row (the engine's rule, by tenure)."""
    from customer_health.scoring.normalize import segment_model_index

    tenure = (
        pd.to_numeric(snapshots["tenure_days"], errors="coerce").to_numpy(dtype=float)
        if "tenure_days" in snapshots
        else np.full(len(snapshots), np.nan)
    )
    return segment_model_index(tenure, config)


def composites_of(normalized: np.ndarray, model_index: np.ndarray, config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """The engine's weighted composite (before calibration and rounding) of normalized rows,
    and whether each row had any data (rows without keep ``no_data_score``, uncalibrated)."""
    from customer_health.scoring.score import composite_scores

    composite = composite_scores(normalized, model_index, config)
    return np.asarray(composite.composite, dtype=float), composite.coverage > 0


@dataclass(frozen=True)
class CutFit:
    """Where "flagged = composite < cut" meets the seed's targets best on the training rows."""

    cut: float
    sensitivity: float
    specificity: float
    margin: float
    rows: int
    churners: int


def balanced_cut(
    composite: np.ndarray,
    churned: np.ndarray,
    sensitivity_target: float = SENSITIVITY_TARGET,
    specificity_target: float = SPECIFICITY_TARGET,
) -> CutFit:
    """The composite cut that maximizes ``min(sensitivity - target, specificity - target)``.

    Flagged = ``composite < cut``. Candidate cuts lie halfway between consecutive distinct
    composites (and just outside both ends), so a cut never sits on a training value. The
    maximin puts the cut where both seed targets hold with the largest common margin (or, when
    the data cannot meet both, where the worse one misses least); among equally good cuts the
    middle one is taken. Pure and deterministic: the known answers are in the unit tests.
    """
    s = np.asarray(composite, dtype=float)
    y = np.asarray(churned, dtype=bool)
    if s.shape != y.shape or s.size == 0:
        raise RecalibrationError(f"balanced_cut needs one label per composite, got {s.size} composites and {y.size} labels")
    if y.all() or not y.any():
        raise RecalibrationError(
            f"the training rows hold {int(y.sum())} churners of {y.size}; a cut needs both churned and retained accounts"
        )
    values = np.unique(s)
    cuts = np.r_[values[0] - 0.5, (values[1:] + values[:-1]) / 2.0, values[-1] + 0.5]
    churner_scores = np.sort(s[y])
    retained_scores = np.sort(s[~y])
    sens = np.searchsorted(churner_scores, cuts, side="left") / churner_scores.size
    spec = 1.0 - np.searchsorted(retained_scores, cuts, side="left") / retained_scores.size
    margin = np.minimum(sens - sensitivity_target, spec - specificity_target)
    best = np.flatnonzero(np.isclose(margin, margin.max(), rtol=0.0, atol=1e-12))
    i = int(best[len(best) // 2])
    return CutFit(float(cuts[i]), float(sens[i]), float(spec[i]), float(margin[i]), int(y.size), int(y.sum()))


def fit_score_calibration(
    composite: np.ndarray,
    churned: np.ndarray,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    sensitivity_target: float = SENSITIVITY_TARGET,
    specificity_target: float = SPECIFICITY_TARGET,
    decimals: int = CALIBRATION_DECIMALS,
) -> ScoreCalibration:
    """Knots (0, 0) -> (cut, threshold + 0.5) -> (100, 100) from the training composites.

    ``cut`` is ``balanced_cut``'s. ``threshold + 0.5`` (49.5 for the At Risk bound 49/50) is
    where half-up rounding moves a score from 49 to 50, so a composite below the cut scores
    at most 49 (flagged) and one at or above it at least 50. Linear on each side, so the
    ranking of accounts is kept and the Critical and Healthy bounds move in proportion.
    """
    fit = balanced_cut(composite, churned, sensitivity_target, specificity_target)
    step = 10.0**-decimals
    edge = threshold + 0.5
    if not 0 < edge < 100:
        raise RecalibrationError(f"threshold {threshold} leaves no room for a calibration knot; use a bound inside 0-99")
    cut = float(np.clip(round(fit.cut, decimals), step, 100.0 - step))
    fitted = {
        "method": "balanced_targets",
        "flagged": f"score <= {threshold}",
        "sensitivity_target": sensitivity_target,
        "specificity_target": specificity_target,
        "training_sensitivity": round(fit.sensitivity, 4),
        "training_specificity": round(fit.specificity, 4),
        "training_rows": fit.rows,
        "training_churners": fit.churners,
    }
    return ScoreCalibration((0.0, cut, 100.0), (0.0, edge, 100.0), fitted)


def calibration_yaml(calibration: ScoreCalibration | None) -> dict[str, Any] | None:
    """The ``score_calibration`` section of a config for ``calibration`` (None: no section)."""
    if calibration is None:
        return None
    return {
        "knots": [{"composite": float(x), "score": float(y)} for x, y in zip(calibration.composite_knots, calibration.score_knots, strict=True)],
        "fitted": dict(calibration.fitted),
    }


# --------------------------------------------------------------------------- the proposed config
def proposed_version_name(parent_version: str, as_of: date) -> str:
    """``<parent base>-r<YYYYMMDD>``: ``v1`` recalibrated on 2026-11-23 is ``v1-r20261123``."""
    base = parent_version.split("-r", 1)[0] if "-r" in parent_version else parent_version
    name = f"{base}-r{as_of:%Y%m%d}"
    if len(name) > 40:
        raise RecalibrationError(f"version name {name!r} is longer than the registry's 40 characters; shorten {parent_version!r}")
    return name


def build_config(
    parent: ModelConfig,
    weights: dict[str, SegmentWeights],
    version: str,
    note: str,
    calibration: ScoreCalibration | None = None,
) -> ModelConfig:
    """The parent's YAML with new weights, version and ``score_calibration`` (replacing the
    parent's; None: no calibration, the score is the composite), validated by ``load_model_config``."""
    raw = yaml.safe_load(parent.yaml_text)
    raw["version"] = version
    raw["description"] = f"{note} Parent: {parent.version}. " + str(raw.get("description") or "")
    for name, w in weights.items():
        raw["models"][name]["dimension_weights"] = {d: w.dimension_weights[d] for d in DIMENSIONS}
        raw["models"][name]["signal_weights"] = {d: dict(sw) for d, sw in w.signal_weights.items()}
    raw.pop("score_calibration", None)
    if calibration is not None:
        raw["score_calibration"] = calibration_yaml(calibration)
    header = (
        f"# Customer health model {version}: recalibrated from {parent.version} by customer_health.validation.recalibrate.\n"
        "# Weights follow a logistic regression of churn on the normalized signals; see the module docstring.\n"
        + (
            "# score_calibration: the weighted composite (0-100) is mapped to the score, linearly between the knots,\n"
            "# before half-up rounding. The middle knot puts the At Risk bound (score 49 | 50) at the composite cut\n"
            "# where the training periods met the seed's targets (sensitivity >= 75 %, specificity >= 70 %) with\n"
            "# the largest common margin; `fitted` records those training figures. Accounts without data keep\n"
            "# coverage.no_data_score. Drivers stay in composite points (weight x (normalized - 50)).\n"
            if calibration is not None
            else ""
        )
        + "# Generated: edit only by proposing a new version.\n"
    )
    text = header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=110)
    return load_model_config(text)


# --------------------------------------------------------------------------- held-out evaluation
def score_with(snapshot: pd.DataFrame, config: ModelConfig) -> np.ndarray:
    """The engine's integer scores of one snapshot date's signals under ``config``."""
    from customer_health.scoring.engine import score_accounts

    signal_columns = [c for c in snapshot.columns if c != "churned"]
    scored = score_accounts(snapshot[signal_columns].reset_index(drop=True), config)
    return scored["score"].to_numpy(dtype=float)


@dataclass
class Recalibration:
    """The outcome of a recalibration: the proposed config and the evidence for it."""

    parent_version: str
    config: ModelConfig
    weights: dict[str, SegmentWeights]
    folds: list[dict[str, Any]]
    held_out: pd.DataFrame  # account_key, as_of_date, churned, old_score, new_score
    old_metrics: dict[str, Any]
    new_metrics: dict[str, Any]
    training: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def version(self) -> str:
        """The proposed version string."""
        return self.config.version

    def metrics_for_registry(self) -> dict[str, Any]:
        """What goes into ``model_versions.metrics`` of the proposal (JSON-safe)."""
        return json_safe(
            {
                "holdout": {"old": _headline(self.old_metrics), "new": _headline(self.new_metrics)},
                "holdout_full": {"old": self.old_metrics, "new": self.new_metrics},
                "folds": self.folds,
                "training": self.training,
                "weights": {name: {"dimension_weights": w.dimension_weights, "signal_weights": w.signal_weights, "pooled_fit": w.pooled, "fit": w.fit} for name, w in self.weights.items()},
                "notes": self.notes,
            }
        )

    def summary(self) -> dict[str, Any]:
        """XCom-sized summary: versions and the headline held-out metrics, old and new."""
        return json_safe(
            {
                "proposed_version": self.version,
                "parent_version": self.parent_version,
                "old": _headline(self.old_metrics),
                "new": _headline(self.new_metrics),
                "folds": len(self.folds),
                "training_rows": self.training.get("rows"),
                "training_churners": self.training.get("churners"),
                "score_calibration": calibration_yaml(self.config.score_calibration),
            }
        )


def calibrated_config(
    parent: ModelConfig,
    weights: dict[str, SegmentWeights],
    version: str,
    note: str,
    normalized: np.ndarray,
    model_index: np.ndarray,
    churned: np.ndarray,
    *,
    calibrate: bool = True,
    threshold: int = DEFAULT_THRESHOLD,
    sensitivity_target: float = SENSITIVITY_TARGET,
    specificity_target: float = SPECIFICITY_TARGET,
) -> ModelConfig:
    """``build_config`` plus the ``score_calibration`` fitted on the given (training) rows.

    The rows' composites are the engine's under the new weights (``composites_of``); rows
    without any data are left out of the fit (they keep ``no_data_score``).
    """
    plain = build_config(parent, weights, version, note)
    if not calibrate:
        return plain
    composite, has_data = composites_of(normalized, model_index, plain)
    calibration = fit_score_calibration(
        composite[has_data],
        np.asarray(churned, dtype=bool)[has_data],
        threshold=threshold,
        sensitivity_target=sensitivity_target,
        specificity_target=specificity_target,
    )
    return build_config(parent, weights, version, note, calibration)


def _headline(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("observations", "churners", "roc_auc", "sensitivity", "specificity", "precision", "top_decile_lift", "meets_targets")
    return {k: m.get(k) for k in keys}


def recalibrate_snapshots(
    snapshots: pd.DataFrame,
    parent: ModelConfig,
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    as_of: date,
    c: float = DEFAULT_C,
    threshold: int = DEFAULT_THRESHOLD,
    min_train_churners: int = DEFAULT_MIN_TRAIN_CHURNERS,
    min_segment_churners: int = DEFAULT_MIN_SEGMENT_CHURNERS,
    version: str | None = None,
    calibrate: bool = True,
    sensitivity_target: float = SENSITIVITY_TARGET,
    specificity_target: float = SPECIFICITY_TARGET,
) -> Recalibration:
    """Fit, validate over time and build the proposed config from labelled snapshots (pure).

    ``snapshots``: stacked signal frames (``compute_signals`` columns) of several dates with a
    boolean ``churned`` column (``label_snapshots``). ``calibrate``: also fit the
    ``score_calibration`` (on the same training rows as the weights; module docstring).
    """
    if snapshots.empty or "churned" not in snapshots:
        raise RecalibrationError("no labelled snapshots; build them with training_snapshots(engine, dates, horizon)")
    data = snapshots.sort_values(["as_of_date", "account_key"], kind="stable").reset_index(drop=True)
    data["as_of_date"] = data["as_of_date"].map(as_date)
    churned = data["churned"].to_numpy(dtype=bool)
    normalized = normalized_matrix(data, parent)
    features = features_from_normalized(normalized)
    segments = segment_model_names(data, parent)
    model_index = segment_model_indices(data, parent)
    calibration_options = {
        "calibrate": calibrate,
        "threshold": threshold,
        "sensitivity_target": sensitivity_target,
        "specificity_target": specificity_target,
    }
    dates = sorted(data["as_of_date"].unique())
    version = version or proposed_version_name(parent.version, as_of)

    folds, held = [], []
    notes: list[str] = []
    for k, test_date in enumerate(dates):
        train = (data["as_of_date"] + timedelta(days=horizon_days) <= test_date).to_numpy()
        test = (data["as_of_date"] == test_date).to_numpy()
        train_churners = int(churned[train].sum())
        if train_churners < min_train_churners or train_churners == int(train.sum()):
            continue
        fold_weights = fit_segment_weights(
            features[train], churned[train], segments[train], parent, c=c, min_segment_churners=min_segment_churners
        )
        fold_config = calibrated_config(
            parent, fold_weights, f"{version}-fold{k}", "Cross-validation fold.",
            normalized[train], model_index[train], churned[train], **calibration_options,
        )  # fmt: skip
        test_frame = data.loc[test]
        new_scores = score_with(test_frame, fold_config)
        old_scores = score_with(test_frame, parent)
        held.append(
            pd.DataFrame(
                {
                    "account_key": test_frame["account_key"].to_numpy(),
                    "as_of_date": test_date,
                    "churned": churned[test],
                    "old_score": old_scores,
                    "new_score": new_scores,
                }
            )
        )
        folds.append(
            {
                "test_date": test_date.isoformat(),
                "train_dates": [d.isoformat() for d in dates if d + timedelta(days=horizon_days) <= test_date],
                "train_rows": int(train.sum()),
                "train_churners": train_churners,
                "test_rows": int(test.sum()),
                "test_churners": int(churned[test].sum()),
                "score_calibration": calibration_yaml(fold_config.score_calibration),
            }
        )
    if not held:
        raise RecalibrationError(
            f"no time fold has {min_train_churners} churners to train on before a later snapshot "
            f"(snapshot dates {[d.isoformat() for d in dates]}, horizon {horizon_days} days, "
            f"{int(churned.sum())} churners in all); widen the training window, use monthly snapshots, "
            "or lower min_train_churners"
        )
    held_out = pd.concat(held, ignore_index=True)
    zones = [(z.name, z.min, z.max) for z in sorted(parent.zones, key=lambda z: -z.max)]
    old_metrics = evaluate_scores(held_out["old_score"], held_out["churned"], threshold, zones)
    new_metrics = evaluate_scores(held_out["new_score"], held_out["churned"], threshold, zones)
    if not held_out["churned"].any():
        notes.append("The held-out snapshots hold no churner: sensitivity and AUC are undefined there.")

    final_weights = fit_segment_weights(features, churned, segments, parent, c=c, min_segment_churners=min_segment_churners)
    config = calibrated_config(
        parent,
        final_weights,
        version,
        f"Recalibrated on {len(dates)} snapshots {dates[0]}..{dates[-1]} against churn within {horizon_days} days.",
        normalized,
        model_index,
        churned,
        **calibration_options,
    )
    return Recalibration(
        parent_version=parent.version,
        config=config,
        weights=final_weights,
        folds=folds,
        held_out=held_out,
        old_metrics=old_metrics,
        new_metrics=new_metrics,
        training={
            "rows": int(len(data)),
            "churners": int(churned.sum()),
            "snapshot_dates": [d.isoformat() for d in dates],
            "horizon_days": horizon_days,
            "threshold": threshold,
            "C": c,
            "score_calibration": calibration_yaml(config.score_calibration),
        },
        notes=notes,
    )


def recalibrate(
    engine: Engine,
    window_start: date,
    window_end: date,
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    parent: ModelConfig | None = None,
    parent_version: str | None = None,
    cadence: str = "monthly",
    as_of: date | None = None,
    register: bool = True,
    created_by: str = "customer_health.validation.recalibrate",
    signal_source: SignalSource = signals_at,
    **options: Any,
) -> Recalibration:
    """Recalibrate from the warehouse: snapshots of ``[window_start, window_end]`` (see
    ``snapshots.snapshot_dates``), labels from ``account_outcomes``, then ``recalibrate_snapshots``;
    registers the result as a *proposed* version (``register``).

    ``as_of`` (default ``window_end + 1``) names the version (``v1-r<as_of>``), so a re-run for the
    same logical date proposes the same version again (refreshing it while still proposed).
    """
    from customer_health.validation import registry

    parent = parent or resolve_config(engine, parent_version)
    dates = snapshot_dates(window_start, window_end, horizon_days, cadence)
    snapshots = training_snapshots(engine, dates, horizon_days, signal_source)
    result = recalibrate_snapshots(
        snapshots, parent, horizon_days=horizon_days, as_of=as_of or (window_end + timedelta(days=1)), **options
    )
    if register:
        registry.propose(
            engine, result.config, parent_version=parent.version, created_by=created_by, metrics=result.metrics_for_registry()
        )
    return result


def review_markdown(result: Recalibration, audit_summary: dict[str, Any] | None = None) -> str:
    """The approval request's body: old vs new held-out metrics side by side, and the weights."""

    def fmt(value: Any, kind: str) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return f"{value:.1%}" if kind == "pct" else (f"{value:.3f}" if kind == "num" else str(value))

    old, new = _headline(result.old_metrics), _headline(result.new_metrics)
    rows = [
        ("ROC AUC", "roc_auc", "num"),
        ("Sensitivity (target 75 %)", "sensitivity", "pct"),
        ("Specificity (target 70 %)", "specificity", "pct"),
        ("Precision", "precision", "pct"),
        ("Top-decile lift", "top_decile_lift", "num"),
        ("Observations", "observations", "int"),
        ("Churners", "churners", "int"),
    ]
    lines = [
        f"### Model recalibration: `{result.parent_version}` → `{result.version}`",
        "",
        f"Both models scored by the engine on the same **held-out** snapshots ({len(result.folds)} time folds, "
        f"trained only on earlier snapshots). Flagged = score ≤ {result.training.get('threshold', DEFAULT_THRESHOLD)}.",
        "",
        f"| Metric | {result.parent_version} (current) | {result.version} (proposed) |",
        "|---|---|---|",
        *[f"| {label} | {fmt(old.get(key), kind)} | {fmt(new.get(key), kind)} |" for label, key, kind in rows],
        "",
        "**Proposed dimension weights**",
        "",
        "| Segment | " + " | ".join(DIMENSIONS) + " | fit |",
        "|---|" + "---|" * (len(DIMENSIONS) + 1),
    ]
    for name, w in result.weights.items():
        cells = " | ".join(f"{w.dimension_weights[d]:.0%}" for d in DIMENSIONS)
        lines.append(f"| {name} | {cells} | {'pooled' if w.pooled else 'own'} |")
    calibration = calibration_sentence(result.config)
    if calibration:
        lines += ["", f"**Score calibration**: {calibration}"]
    if audit_summary:
        lines += [
            "",
            f"Current model audit ({audit_summary.get('window_start')}..{audit_summary.get('window_end')}): "
            f"AUC {fmt(audit_summary.get('roc_auc'), 'num')}, sensitivity {fmt(audit_summary.get('sensitivity'), 'pct')}, "
            f"specificity {fmt(audit_summary.get('specificity'), 'pct')}. Report: `{audit_summary.get('report_path')}`",
        ]
    lines += ["", "Approve to make the proposed version active (the current one is retired); reject with a reason."]
    for n in result.notes:
        lines.append(f"> {n}")
    return "\n".join(lines)


def calibration_sentence(config: ModelConfig) -> str | None:
    """One line saying where the proposal's ``score_calibration`` puts the At Risk bound."""
    cal = config.score_calibration
    if cal is None:
        return None
    f = cal.fitted
    knots = ", ".join(f"{x:g} → {y:g}" for x, y in zip(cal.composite_knots, cal.score_knots, strict=True))
    text = f"composite → score linear between {knots}"
    if "training_sensitivity" in f:
        text += (
            f"; on the training periods this bound flagged {f['training_sensitivity']:.1%} of churners and left "
            f"{f['training_specificity']:.1%} of retained accounts unflagged ({f.get('training_rows')} rows)"
        )
    return text


def propose_recalibration(
    engine: Engine,
    window_end: date,
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    training_days: int = 730,
    parent_version: str | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    audit_summary: dict[str, Any] | None = None,
    as_of: date | None = None,
    created_by: str = "customer_health_model_audit",
) -> dict[str, Any]:
    """Recalibrate on the ``training_days`` before ``window_end`` (monthly snapshots), propose the
    result, and return what the approval step needs (XCom-sized, JSON-safe).

    ``has_proposal`` is False, with ``skipped`` saying why, when the data cannot support a
    recalibration (too few churners) or the version was already decided by an earlier run: the
    audit still stands, and nothing is put in front of a reviewer.
    """
    from customer_health.validation import registry

    window_start = window_end - timedelta(days=training_days)
    try:
        result = recalibrate(
            engine,
            window_start,
            window_end,
            horizon_days=horizon_days,
            parent_version=parent_version,
            as_of=as_of,
            threshold=threshold,
            register=False,
        )
    except (RecalibrationError, ValueError) as exc:
        return {"has_proposal": False, "skipped": str(exc), "proposed_version": None}
    existing = {v.version: v for v in registry.list_versions(engine)}.get(result.version)
    if existing is not None and existing.status != registry.PROPOSED:
        return {
            "has_proposal": False,
            "skipped": f"{result.version} was already {existing.status} by {existing.decided_by} on {existing.decided_at}",
            "proposed_version": result.version,
        }
    registry.propose(
        engine, result.config, parent_version=result.parent_version, created_by=created_by, metrics=result.metrics_for_registry()
    )
    return json_safe(
        {
            "has_proposal": True,
            "proposed_version": result.version,
            "parent_version": result.parent_version,
            "summary": result.summary(),
            "review_markdown": review_markdown(result, audit_summary),
        }
    )
