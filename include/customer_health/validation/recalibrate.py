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
from pathlib import Path
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


def fit_logistic(
    features: np.ndarray,
    churned: np.ndarray,
    signals: Sequence[str],
    c: float = DEFAULT_C,
    *,
    prior: np.ndarray | None = None,
    active: np.ndarray | None = None,
) -> SignalFit:
    """L2 logistic regression of churn on the normalized signals, pulled toward ``prior``.

    Minimizes ``sum(log loss) + ||beta - prior||^2 / (2 C)`` (intercept unpenalized) by Newton's
    method: with ``prior`` = 0 it is scikit-learn's ``LogisticRegression(C=C)``. ``active``
    (boolean per signal) keeps the other coefficients at exactly 0. Deterministic.
    """
    y = np.asarray(churned, dtype=bool)
    if y.all() or not y.any():
        raise RecalibrationError(
            f"the training rows hold {int(y.sum())} churners of {y.size}; a regression needs both churned and "
            "retained accounts - widen the window or build the outcomes (validation.outcomes.build_outcomes)"
        )
    x_all = np.asarray(features, dtype=float)
    p = x_all.shape[1]
    keep = np.ones(p, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    beta0 = np.zeros(p) if prior is None else np.asarray(prior, dtype=float)
    x = np.column_stack([np.ones(len(y)), x_all[:, keep]])
    target = y.astype(float)
    center = np.r_[0.0, beta0[keep]]
    penalty = np.r_[0.0, np.full(int(keep.sum()), 1.0 / c)]
    rate = target.mean()
    theta = np.r_[math.log(rate / (1 - rate)), beta0[keep]]

    def objective(t: np.ndarray) -> float:
        eta = x @ t
        return float(np.sum(np.logaddexp(0.0, eta) - target * eta) + 0.5 * np.sum(penalty * (t - center) ** 2))

    current = objective(theta)
    for _ in range(100):
        prob = 1.0 / (1.0 + np.exp(-(x @ theta)))
        grad = x.T @ (prob - target) + penalty * (theta - center)
        hess = (x * (prob * (1 - prob))[:, None]).T @ x + np.diag(penalty) + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6:
            candidate = theta - scale * step
            value = objective(candidate)
            if value <= current + 1e-12:
                break
            scale /= 2
        theta, moved = candidate, float(np.max(np.abs(scale * step)))
        current = value
        if moved < 1e-9:
            break
    coefficients = np.zeros(p)
    coefficients[keep] = theta[1:]
    return SignalFit(tuple(signals), coefficients, float(theta[0]), int(y.size), int(y.sum()))


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


def weights_from_fit(fit: SignalFit, config: ModelConfig, segment: str, pooled: bool, *, boxed: bool = True) -> SegmentWeights:
    """Signal and dimension weights of segment model ``segment`` from a fit (module docstring).

    ``boxed``: dimension weights moved into the seeds' ranges (the in-range proposal); else the
    fitted proportions as they are (the free proposal)."""
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
    ranges = {d: SEED_DIMENSION_WEIGHT_RANGES[d] for d in raw_dims} if boxed else None
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
    priors: dict[str, np.ndarray] | None = None,
    active: np.ndarray | None = None,
    boxed: bool = True,
) -> dict[str, SegmentWeights]:
    """Weights for every segment model: its own fit with enough churners, else the pooled fit.

    ``priors``: per segment model, the coefficients the fit is pulled toward (``prior_coefficients``;
    the pooled fit uses the default model's); ``active``: the signals allowed a weight.
    """
    priors = priors or {}
    default = config.default_model.name
    pooled = fit_logistic(features, churned, config.signal_keys, c, prior=priors.get(default), active=active)
    out = {}
    for model in config.models:
        rows = segments == model.name
        own = int(np.asarray(churned)[rows].sum())
        if own >= min_segment_churners and own < rows.sum():
            fit = fit_logistic(features[rows], churned[rows], config.signal_keys, c, prior=priors.get(model.name), active=active)
            out[model.name] = weights_from_fit(fit, config, model.name, False, boxed=boxed)
        else:
            out[model.name] = weights_from_fit(pooled, config, model.name, True, boxed=boxed)
    return out


# --------------------------------------------------------------------------- the prior, candidates, selection
@dataclass(frozen=True)
class RecalibrationSettings:
    """How the fit is regularised and which proposal is put forward (``config/recalibration.yaml``)."""

    prior_c: float = DEFAULT_C
    free_fit_auc_margin: float = 0.01
    min_contribution: float = 0.001
    selection: str = "candidates"  # which signals held-out selection may drop: candidates | all | none
    candidate_signals: tuple[str, ...] | None = None  # None: every catalogued signal
    candidate_worst_percentile: float = 0.10
    candidate_best_percentile: float = 0.90
    candidate_min_span_share: float = 0.05
    source: str = "<defaults>"


SELECTION_MODES = ("candidates", "all", "none")
"""``selection`` in the settings: which signals the held-out selection may drop."""


def _choice(raw: dict[str, Any], key: str, allowed: Sequence[str], default: str, where: Path) -> str:
    value = raw.get(key, default)
    if value not in allowed:
        raise RecalibrationError(f"{key} in {where} is {value!r}; expected one of {', '.join(allowed)}")
    return str(value)


def recalibration_settings_path() -> Path:
    """The shipped settings file (``include/customer_health/config/recalibration.yaml``)."""
    return Path(__file__).resolve().parents[1] / "config" / "recalibration.yaml"


def load_recalibration_settings(path: str | Path | None = None) -> RecalibrationSettings:
    """Read and validate the recalibration settings; errors name the file and the value."""
    where = Path(path) if path else recalibration_settings_path()
    try:
        raw = yaml.safe_load(where.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RecalibrationError(f"cannot read the recalibration settings {where}: {exc}") from exc

    def number(key: str, default: float, lo: float, hi: float) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise RecalibrationError(f"{key} in {where} is {value!r}; expected a number between {lo} and {hi}")
        return float(value)

    candidates = raw.get("candidate_signals", "all")
    if candidates == "all":
        chosen = None
    elif isinstance(candidates, list) and all(isinstance(k, str) for k in candidates):
        from customer_health.scoring.signal_catalog import SIGNALS

        unknown = sorted(set(candidates) - set(SIGNALS))
        if unknown:
            raise RecalibrationError(f"candidate_signals in {where} names unknown signals {unknown}; known: {', '.join(SIGNALS)}")
        chosen = tuple(candidates)
    else:
        raise RecalibrationError(f"candidate_signals in {where} is {candidates!r}; expected 'all' or a list of signal keys")
    norm = raw.get("candidate_normalization") or {}
    if not isinstance(norm, dict):
        raise RecalibrationError(f"candidate_normalization in {where} must be a mapping")
    worst = norm.get("worst_percentile", 0.10)
    best = norm.get("best_percentile", 0.90)
    share = norm.get("min_span_share", 0.05)
    for key, value in (("worst_percentile", worst), ("best_percentile", best), ("min_span_share", share)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise RecalibrationError(f"candidate_normalization.{key} in {where} is {value!r}; expected a number in 0-1")
    if best <= worst:
        raise RecalibrationError(f"candidate_normalization in {where}: best_percentile {best} must be above worst_percentile {worst}")
    return RecalibrationSettings(
        prior_c=number("prior_c", DEFAULT_C, 1e-6, 1e6),
        free_fit_auc_margin=number("free_fit_auc_margin", 0.01, 0.0, 1.0),
        min_contribution=number("min_contribution", 0.001, 0.0, 1.0),
        selection=_choice(raw, "selection", SELECTION_MODES, "candidates", where),
        candidate_signals=chosen,
        candidate_worst_percentile=float(worst),
        candidate_best_percentile=float(best),
        candidate_min_span_share=float(share),
        source=str(where),
    )


def with_candidates(parent: ModelConfig, data: pd.DataFrame, settings: RecalibrationSettings) -> tuple[ModelConfig, list[str]]:
    """The parent config plus the catalogued signals it does not weight (weight 0 everywhere),
    each normalized against segment percentiles; only signals with data that varies are added."""
    from customer_health.scoring.signal_catalog import SIGNALS

    wanted = [k for k in SIGNALS if k not in parent.signal_keys and (settings.candidate_signals is None or k in settings.candidate_signals)]
    raw = yaml.safe_load(parent.yaml_text)
    added = []
    for key in wanted:
        if key not in data.columns:
            continue
        values = pd.to_numeric(data[key], errors="coerce").dropna()
        if values.empty:
            continue
        spread = float(values.quantile(0.9) - values.quantile(0.1))
        if spread <= 0 and float(values.max() - values.min()) <= 0:
            continue
        higher = SIGNALS[key].direction == "higher_is_better"
        lo, hi = settings.candidate_worst_percentile, settings.candidate_best_percentile
        raw["signals"][key] = {
            "dimension": SIGNALS[key].dimension,
            "direction": SIGNALS[key].direction,
            "normalization": {
                "method": "segment_range",
                "worst_percentile": lo if higher else hi,
                "best_percentile": hi if higher else lo,
                "min_span": round(max(settings.candidate_min_span_share * max(spread, 0.0), 1e-6), 6),
            },
        }
        added.append(key)
    if not added:
        return parent, []
    return load_model_config(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=110)), added


def prior_coefficients(features: np.ndarray, churned: np.ndarray, model_index: np.ndarray, config: ModelConfig) -> dict[str, np.ndarray]:
    """The coefficients the fit is pulled toward: the current weights, on the log-odds scale.

    The current model's composite (its effective weights x the 0-1 features) is regressed on
    churn alone; its slope ``b`` turns weights into coefficients, ``prior = b x weight``. A
    current model that does not rank churners lower (``b >= 0``) gives no pull (prior 0).
    """
    weights = config.weight_matrix()
    composite = np.sum(np.asarray(features) * weights[model_index], axis=1)
    y = np.asarray(churned, dtype=bool)
    slope = 0.0
    if y.any() and not y.all() and np.ptp(composite) > 0:
        fit = fit_logistic(composite[:, None], y, ("composite",), c=1e6)
        slope = min(0.0, float(fit.coefficients[0]))
    return {m.name: slope * weights[i] for i, m in enumerate(config.models)}


def contributions(
    features: np.ndarray,
    churned: np.ndarray,
    days: np.ndarray,
    horizon_days: int,
    prior: np.ndarray | None,
    c: float,
    min_train_churners: int,
    active: np.ndarray | None = None,
) -> dict[int, float] | None:
    """Held-out contribution of each ``active`` signal (index -> AUC points) on expanding time
    folds of the given rows: the AUC of the free composite (``max(0, -beta) x feature``, fitted on
    the active signals only) minus its AUC without that signal. None when no fold has enough
    churners to train on."""
    from customer_health.validation.metrics import roc_auc

    y = np.asarray(churned, dtype=bool)
    keep = np.ones(features.shape[1], dtype=bool) if active is None else np.asarray(active, dtype=bool)
    names = [str(i) for i in range(features.shape[1])]
    parts, labels = [], []
    for t in sorted(set(days)):
        train = np.array([d + timedelta(days=horizon_days) <= t for d in days], dtype=bool)
        test = days == t
        if int(y[train].sum()) < min_train_churners or y[train].all():
            continue
        fit = fit_logistic(features[train], y[train], names, c, prior=prior, active=keep)
        parts.append(features[test] * np.maximum(0.0, -fit.coefficients))
        labels.append(y[test])
    if not parts:
        return None
    held, labels_all = np.vstack(parts), np.concatenate(labels)
    if labels_all.all() or not labels_all.any():
        return None
    total = held.sum(axis=1)
    full = roc_auc(total, labels_all)
    return {j: float(full - roc_auc(total - held[:, j], labels_all)) for j in np.flatnonzero(keep)}


def select_signals(
    features: np.ndarray,
    churned: np.ndarray,
    days: np.ndarray,
    horizon_days: int,
    prior: np.ndarray | None,
    *,
    c: float,
    min_contribution: float,
    min_train_churners: int,
    eligible: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[int, float] | None]:
    """The signals that carry information, by backward elimination on time folds of these rows.

    Each round refits the free composite on the signals still kept and measures every one's
    held-out contribution given the others; the least contributing *eligible* signal (default:
    all) is dropped while it is under ``min_contribution``. One round that dropped every signal
    under the bar at once would drop correlated signals together: each adds little *while its
    twins are there* (three engagement signals measuring one behaviour), yet the composite needs
    one of them - removed one by one, the last of them stays. Signals not eligible are never
    dropped here (the fit still gives no weight to one without a protective effect). Returns the
    kept mask and each signal's contribution (kept: in the final set; dropped: when it was
    dropped). All signals are kept when no fold can be formed."""
    keep = np.ones(features.shape[1], dtype=bool)
    may_drop = keep.copy() if eligible is None else np.asarray(eligible, dtype=bool)
    recorded: dict[int, float] = {}
    while True:
        contrib = contributions(features, churned, days, horizon_days, prior, c, min_train_churners, active=keep)
        if contrib is None:
            return keep, (recorded or None)
        recorded.update(contrib)
        droppable = [j for j in contrib if may_drop[j]]
        if not droppable or int(keep.sum()) <= 1:
            return keep, recorded
        worst = min(droppable, key=lambda j: (contrib[j], j))
        if contrib[worst] >= min_contribution:
            return keep, recorded
        keep[worst] = False


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
def out_of_range_weights(weights: dict[str, SegmentWeights]) -> list[dict[str, Any]]:
    """Every dimension weight outside the seeds' ranges: segment, dimension, weight, range."""
    out = []
    for name, w in weights.items():
        for d, (lo, hi) in SEED_DIMENSION_WEIGHT_RANGES.items():
            value = w.dimension_weights.get(d, 0.0)
            if not lo - 1e-9 <= value <= hi + 1e-9:
                out.append({"segment": name, "dimension": d, "weight": value, "range": [lo, hi]})
    return out


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
    base_yaml: str | None = None,
) -> ModelConfig:
    """The parent's YAML with new weights, version and ``score_calibration`` (replacing the
    parent's; None: no calibration, the score is the composite), validated by ``load_model_config``.

    ``parent`` may carry candidate signals (``with_candidates``); those no segment weights are
    left out. ``base_yaml``: the original parent's YAML, which says which signals are candidates.
    ``allow_out_of_range_weights`` is set when a dimension weight leaves the seeds' ranges."""
    raw = yaml.safe_load(parent.yaml_text)
    raw["version"] = version
    raw["description"] = f"{note} Parent: {parent.version}. " + str(raw.get("description") or "")
    for name, w in weights.items():
        raw["models"][name]["dimension_weights"] = {d: w.dimension_weights[d] for d in DIMENSIONS}
        raw["models"][name]["signal_weights"] = {d: dict(sw) for d, sw in w.signal_weights.items()}
    # Candidate signals (added by with_candidates) stay only where some segment weights them.
    original = set(yaml.safe_load(base_yaml or parent.yaml_text)["signals"])
    used = {k for w in weights.values() for sw in w.signal_weights.values() for k, v in sw.items() if v > 0}
    unused = [k for k in raw["signals"] if k not in original and k not in used]
    for key in unused:
        raw["signals"].pop(key)
        for model in raw["models"].values():
            for sw in model["signal_weights"].values():
                sw.pop(key, None)
    outside = out_of_range_weights(weights)
    raw["allow_out_of_range_weights"] = bool(outside) or bool(raw.get("allow_out_of_range_weights", False))
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
    """The engine's integer scores of one snapshot date's signals under ``config``, one per row
    of ``snapshot`` (NaN where the engine gives no score: an account without informative data)."""
    from customer_health.scoring.engine import score_accounts

    signal_columns = [c for c in snapshot.columns if c != "churned"]
    scored = score_accounts(snapshot[signal_columns].reset_index(drop=True), config)
    by_key = dict(zip(scored["account_key"], scored["score"].astype(float), strict=True))
    return np.array([by_key.get(k, np.nan) for k in snapshot["account_key"]], dtype=float)


FIT_KINDS = ("in_range", "free")
FIT_LABELS = {"in_range": "in-range fit", "free": "free fit"}


@dataclass
class CandidateFit:
    """One of the two proposals (in-range or free): its config, weights and held-out metrics."""

    kind: str
    config: ModelConfig
    weights: dict[str, SegmentWeights]
    metrics: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: weights, held-out headline and the weights outside the seeds' ranges."""
        return json_safe(
            {
                "kind": self.kind,
                "holdout": _headline(self.metrics),
                "out_of_range": out_of_range_weights(self.weights),
                "weights": {
                    name: {"dimension_weights": w.dimension_weights, "signal_weights": w.signal_weights, "pooled_fit": w.pooled}
                    for name, w in self.weights.items()
                },
                "score_calibration": calibration_yaml(self.config.score_calibration),
            }
        )


@dataclass
class Recalibration:
    """The outcome of a recalibration: the proposed config and the evidence for it."""

    parent_version: str
    config: ModelConfig
    weights: dict[str, SegmentWeights]
    folds: list[dict[str, Any]]
    held_out: pd.DataFrame  # account_key, as_of_date, churned, old_score, new_score, <kind>_score, baseline_risk
    old_metrics: dict[str, Any]
    new_metrics: dict[str, Any]
    training: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    fits: dict[str, CandidateFit] = field(default_factory=dict)
    proposed_fit: str = "in_range"
    baseline: dict[str, Any] | None = None  # baseline.BaselineComparison of the proposal
    selection: dict[str, Any] = field(default_factory=dict)  # candidates, contributions, dropped

    @property
    def version(self) -> str:
        """The proposed version string."""
        return self.config.version

    @property
    def warnings(self) -> list[str]:
        """Plain-words warnings about the proposal (worse than the baseline, AUC under 0.6)."""
        from customer_health.validation.baseline import baseline_warnings

        return baseline_warnings(self.baseline, self.new_metrics.get("roc_auc"), f"the proposed model {self.version}")

    def metrics_for_registry(self) -> dict[str, Any]:
        """What goes into ``model_versions.metrics`` of the proposal (JSON-safe)."""
        return json_safe(
            {
                "holdout": {"old": _headline(self.old_metrics), "new": _headline(self.new_metrics)},
                "holdout_full": {"old": self.old_metrics, "new": self.new_metrics},
                "folds": self.folds,
                "training": self.training,
                "weights": {name: {"dimension_weights": w.dimension_weights, "signal_weights": w.signal_weights, "pooled_fit": w.pooled, "fit": w.fit} for name, w in self.weights.items()},
                "fits": {k: f.as_dict() for k, f in self.fits.items()},
                "proposed_fit": self.proposed_fit,
                "baseline": self.baseline,
                "selection": self.selection,
                "warnings": self.warnings,
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
                "fits": {k: {"holdout": _headline(f.metrics), "out_of_range": out_of_range_weights(f.weights)} for k, f in self.fits.items()},
                "proposed_fit": self.proposed_fit,
                "baseline": self.baseline,
                "warnings": self.warnings,
                "selection": self.selection,
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
    base_yaml: str | None = None,
) -> ModelConfig:
    """``build_config`` plus the ``score_calibration`` fitted on the given (training) rows.

    The rows' composites are the engine's under the new weights (``composites_of``); rows
    without any data are left out of the fit (they keep ``no_data_score``).
    """
    plain = build_config(parent, weights, version, note, base_yaml=base_yaml)
    if not calibrate:
        return plain
    composite, has_data = composites_of(normalized, model_index, build_config(parent, weights, version, note, base_yaml=parent.yaml_text))
    calibration = fit_score_calibration(
        composite[has_data],
        np.asarray(churned, dtype=bool)[has_data],
        threshold=threshold,
        sensitivity_target=sensitivity_target,
        specificity_target=specificity_target,
    )
    return build_config(parent, weights, version, note, calibration, base_yaml=base_yaml)


def _headline(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("observations", "churners", "roc_auc", "sensitivity", "specificity", "precision", "top_decile_lift", "meets_targets")
    return {k: m.get(k) for k in keys}


def recalibrate_snapshots(
    snapshots: pd.DataFrame,
    parent: ModelConfig,
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    as_of: date,
    c: float | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    min_train_churners: int = DEFAULT_MIN_TRAIN_CHURNERS,
    min_segment_churners: int = DEFAULT_MIN_SEGMENT_CHURNERS,
    version: str | None = None,
    calibrate: bool = True,
    sensitivity_target: float = SENSITIVITY_TARGET,
    specificity_target: float = SPECIFICITY_TARGET,
    settings: RecalibrationSettings | None = None,
) -> Recalibration:
    """Fit, validate over time and build the proposed config from labelled snapshots (pure).

    ``snapshots``: stacked signal frames (``compute_signals`` columns) of several dates with a
    boolean ``churned`` column (``label_snapshots``). ``calibrate``: also fit the
    ``score_calibration`` (on the same training rows as the weights; module docstring).
    ``settings`` (default ``config/recalibration.yaml``): the prior's strength, the candidate
    signals, the contribution under which a signal is dropped, and the margin the free fit must
    beat the in-range fit by to be proposed. ``c`` overrides ``settings.prior_c``.
    """
    from customer_health.validation.baseline import compare_on_rows, fit_baseline, raw_signal_columns

    if snapshots.empty or "churned" not in snapshots:
        raise RecalibrationError("no labelled snapshots; build them with training_snapshots(engine, dates, horizon)")
    settings = settings or load_recalibration_settings()
    c = settings.prior_c if c is None else c
    data = snapshots.sort_values(["as_of_date", "account_key"], kind="stable").reset_index(drop=True)
    data["as_of_date"] = data["as_of_date"].map(as_date)
    churned = data["churned"].to_numpy(dtype=bool)
    extended, candidates = with_candidates(parent, data, settings)
    normalized = normalized_matrix(data, extended)
    features = features_from_normalized(normalized)
    segments = segment_model_names(data, extended)
    model_index = segment_model_indices(data, extended)
    days = data["as_of_date"].to_numpy()
    parent_columns = [extended.signal_keys.index(k) for k in parent.signal_keys]
    has_data = ~np.isnan(normalized[:, parent_columns]).all(axis=1)
    options = {
        "calibrate": calibrate,
        "threshold": threshold,
        "sensitivity_target": sensitivity_target,
        "specificity_target": specificity_target,
        "base_yaml": parent.yaml_text,
    }
    dates = sorted(data["as_of_date"].unique())
    version = version or proposed_version_name(parent.version, as_of)
    # Which signals the held-out selection may drop (settings.selection): "candidates" - only the
    # catalogued signals outside the model must earn their place; the model's own stay open to
    # the fit, which gives no weight to one without a protective effect.
    eligible = np.array(
        [settings.selection == "all" or (settings.selection == "candidates" and k in candidates) for k in extended.signal_keys]
    )
    default = extended.default_model.name

    def fit_both(rows: np.ndarray, name: str, note: str) -> tuple[dict[str, dict[str, SegmentWeights]], dict[str, ModelConfig], np.ndarray, dict[int, float] | None]:
        """Both proposals fitted on ``rows`` alone: the prior, the signal selection, the weights."""
        priors = prior_coefficients(features[rows], churned[rows], model_index[rows], extended)
        active, contrib = select_signals(
            features[rows], churned[rows], days[rows], horizon_days, priors[default],
            c=c, min_contribution=settings.min_contribution, min_train_churners=min_train_churners,
            eligible=eligible,
        )  # fmt: skip
        weights, configs = {}, {}
        for kind in FIT_KINDS:
            weights[kind] = fit_segment_weights(
                features[rows], churned[rows], segments[rows], extended, c=c, min_segment_churners=min_segment_churners,
                priors=priors, active=active, boxed=kind == "in_range",
            )  # fmt: skip
            configs[kind] = calibrated_config(
                extended, weights[kind], name, note, normalized[rows], model_index[rows], churned[rows], **options
            )
        return weights, configs, active, contrib

    folds, held = [], []
    notes: list[str] = []
    for k, test_date in enumerate(dates):
        train = (data["as_of_date"] + timedelta(days=horizon_days) <= test_date).to_numpy()
        test = (data["as_of_date"] == test_date).to_numpy()
        train_churners = int(churned[train].sum())
        if train_churners < min_train_churners or train_churners == int(train.sum()):
            continue
        if int(churned[train & has_data].sum()) < min_train_churners:
            continue  # the earlier snapshots hold too few churners with any signal of the model
        _, fold_configs, fold_active, _ = fit_both(train, f"{version}-fold{k}", "Cross-validation fold.")
        test_frame = data.loc[test]
        base = fit_baseline(data.loc[train], churned[train])
        held.append(
            pd.DataFrame(
                {
                    "account_key": test_frame["account_key"].to_numpy(),
                    "as_of_date": test_date,
                    "churned": churned[test],
                    "old_score": score_with(test_frame, parent),
                    **{f"{kind}_score": score_with(test_frame, fold_configs[kind]) for kind in FIT_KINDS},
                    "baseline_risk": base.risk(test_frame) if base is not None else np.nan,
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
                "signals": [key for key, on in zip(extended.signal_keys, fold_active, strict=True) if on],
                "score_calibration_by_fit": {kind: calibration_yaml(fold_configs[kind].score_calibration) for kind in FIT_KINDS},
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
    scored = held_out[["old_score", *[f"{kind}_score" for kind in FIT_KINDS]]].notna().all(axis=1)
    if not scored.all():
        notes.append(
            f"{int((~scored).sum())} held-out rows left out: at least one of the models gave them no score "
            "(no informative signal); every model is graded on the same rows."
        )
        held_out = held_out[scored].reset_index(drop=True)
    zones = [(z.name, z.min, z.max) for z in sorted(parent.zones, key=lambda z: -z.max)]
    old_metrics = evaluate_scores(held_out["old_score"], held_out["churned"], threshold, zones)
    fit_metrics = {kind: evaluate_scores(held_out[f"{kind}_score"], held_out["churned"], threshold, zones) for kind in FIT_KINDS}
    if not held_out["churned"].any():
        notes.append("The held-out snapshots hold no churner: sensitivity and AUC are undefined there.")
    free_auc, boxed_auc = fit_metrics["free"]["roc_auc"], fit_metrics["in_range"]["roc_auc"]
    proposed = (
        "free"
        if not math.isnan(free_auc) and not math.isnan(boxed_auc) and free_auc >= boxed_auc + settings.free_fit_auc_margin
        else "in_range"
    )
    notes.append(
        f"Proposed: the {FIT_LABELS[proposed]} (held-out AUC free {free_auc:.3f} vs in-range {boxed_auc:.3f}; "
        f"the free fit is proposed only when it is at least {settings.free_fit_auc_margin:.3f} better, {settings.source})."
    )
    held_out["new_score"] = held_out[f"{proposed}_score"]
    for fold in folds:
        fold["score_calibration"] = fold["score_calibration_by_fit"][proposed]
    test_dates = sorted({d.isoformat() for d in held_out["as_of_date"]})
    comparison = compare_on_rows(
        held_out["new_score"].to_numpy(dtype=float), held_out["baseline_risk"].to_numpy(dtype=float),
        held_out["churned"].to_numpy(dtype=bool), threshold, test_dates=test_dates, model_label=version,
        features=raw_signal_columns(data),
    ).as_dict()  # fmt: skip
    comparison["current_auc"] = compare_on_rows(
        held_out["old_score"].to_numpy(dtype=float), held_out["baseline_risk"].to_numpy(dtype=float),
        held_out["churned"].to_numpy(dtype=bool), threshold,
    ).as_dict()["model_auc"]  # fmt: skip

    note = f"Recalibrated on {len(dates)} snapshots {dates[0]}..{dates[-1]} against churn within {horizon_days} days."
    everything = np.ones(len(data), dtype=bool)
    final_weights, final_configs, final_active, contrib = fit_both(everything, version, note)
    keys = extended.signal_keys
    weighted = {
        k
        for w in final_weights[proposed].values()
        for d, signals in w.signal_weights.items()
        for k, share in signals.items()
        if share > 0 and w.dimension_weights.get(d, 0) > 0
    }
    with_data = {k for j, k in enumerate(keys) if not np.isnan(normalized[:, j]).all()}
    selection = {
        "candidates": candidates,
        "kept": [k for k, on in zip(keys, final_active, strict=True) if on and k in weighted and k in with_data],
        "dropped": [k for k, on in zip(keys, final_active, strict=True) if (not on or k not in weighted) and k in with_data],
        "no_data": [k for k in keys if k not in with_data],
        "contributions": {keys[j]: round(v, 4) for j, v in contrib.items()} if contrib else None,
        "min_contribution": settings.min_contribution,
        "mode": settings.selection,
    }
    fits = {
        kind: CandidateFit(kind, final_configs[kind], final_weights[kind], fit_metrics[kind]) for kind in FIT_KINDS
    }
    config = final_configs[proposed]
    return Recalibration(
        parent_version=parent.version,
        config=config,
        weights=final_weights[proposed],
        folds=folds,
        held_out=held_out,
        old_metrics=old_metrics,
        new_metrics=fit_metrics[proposed],
        training={
            "rows": int(len(data)),
            "churners": int(churned.sum()),
            "snapshot_dates": [d.isoformat() for d in dates],
            "horizon_days": horizon_days,
            "threshold": threshold,
            "C": c,
            "free_fit_auc_margin": settings.free_fit_auc_margin,
            "score_calibration": calibration_yaml(config.score_calibration),
        },
        notes=notes,
        fits=fits,
        proposed_fit=proposed,
        baseline=comparison,
        selection=selection,
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


def dropped_rule(selection: dict[str, Any]) -> str:
    """Why a signal is listed as dropped, in words (the ``selection`` of a recalibration)."""
    rule = "no weight in the proposed fit: the regression found no protective effect"
    mode, bar = selection.get("mode", "all"), selection.get("min_contribution")
    if mode == "none" or bar is None:
        return rule
    who = "a candidate" if mode == "candidates" else "a signal"
    return f"{rule}; or {who} adding under {bar} held-out AUC"


def _range_flag(dimension: str, weight: float) -> str:
    lo, hi = SEED_DIMENSION_WEIGHT_RANGES[dimension]
    cell = f"{weight:.0%}"
    return cell if lo - 1e-9 <= weight <= hi + 1e-9 else f"**{cell} ⚠ outside {lo:.0%}-{hi:.0%}**"


def review_markdown(result: Recalibration, audit_summary: dict[str, Any] | None = None) -> str:
    """The approval request's body: the current model, the in-range fit and the free fit side by
    side on the same held-out snapshots (with the plain-LR baseline), then both fits' weights with
    every dimension weight outside the seeds' ranges flagged."""

    def fmt(value: Any, kind: str) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return f"{value:.1%}" if kind == "pct" else (f"{value:.3f}" if kind == "num" else str(value))

    old = _headline(result.old_metrics)
    fits = {kind: _headline(f.metrics) for kind, f in result.fits.items()} or {result.proposed_fit: _headline(result.new_metrics)}
    rows = [
        ("ROC AUC", "roc_auc", "num"),
        ("Sensitivity (target 75 %)", "sensitivity", "pct"),
        ("Specificity (target 70 %)", "specificity", "pct"),
        ("Precision", "precision", "pct"),
        ("Top-decile lift", "top_decile_lift", "num"),
        ("Observations", "observations", "int"),
        ("Churners", "churners", "int"),
    ]

    def head(kind: str) -> str:
        label = FIT_LABELS.get(kind, kind)
        return f"{label} → `{result.version}` (**proposed**)" if kind == result.proposed_fit else f"{label} (not proposed)"

    kinds = list(fits)
    lines = [*[f"**{w}**" for w in result.warnings], *([""] if result.warnings else [])]
    lines += [
        f"### Model recalibration: `{result.parent_version}` → `{result.version}` ({FIT_LABELS.get(result.proposed_fit, result.proposed_fit)})",
        "",
        f"All models scored by the engine on the same **held-out** snapshots ({len(result.folds)} time folds, "
        f"each trained only on earlier snapshots). Flagged = score ≤ {result.training.get('threshold', DEFAULT_THRESHOLD)}. "
        "The in-range fit keeps every dimension weight inside the seeds' ranges; the free fit is the same "
        "regularised regression (pulled toward the current weights) without that box.",
        "",
        f"| Metric | {result.parent_version} (current) | " + " | ".join(head(k) for k in kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
        *[f"| {label} | {fmt(old.get(key), kind)} | " + " | ".join(fmt(fits[k].get(key), kind) for k in kinds) + " |" for label, key, kind in rows],
    ]
    b = result.baseline or {}
    if b and not b.get("skipped"):
        lines += [
            "",
            f"Baseline on the same held-out rows, a plain logistic regression on the raw signals: ROC AUC "
            f"**{fmt(b.get('baseline_auc'), 'num')}** (sensitivity {fmt(b.get('baseline_sensitivity'), 'pct')}, "
            f"specificity {fmt(b.get('baseline_specificity'), 'pct')} when it flags as many rows as the proposal).",
        ]
    lines += [
        "",
        "**Dimension weights** (⚠ = outside the seeds' ranges: engagement 35-45 %, financial 20-30 %, support 15-20 %, sentiment 10-15 %)",
        "",
        "| Segment | Fit | " + " | ".join(DIMENSIONS) + " | regression |",
        "|---|---|" + "---|" * (len(DIMENSIONS) + 1),
    ]
    for kind, fit in (result.fits or {result.proposed_fit: CandidateFit(result.proposed_fit, result.config, result.weights, result.new_metrics)}).items():
        for name, w in fit.weights.items():
            cells = " | ".join(_range_flag(d, w.dimension_weights[d]) for d in DIMENSIONS)
            lines.append(f"| {name} | {FIT_LABELS.get(kind, kind)} | {cells} | {'pooled' if w.pooled else 'own'} |")
        outside = out_of_range_weights(fit.weights)
        if outside:
            lines.append(
                f"| | {FIT_LABELS.get(kind, kind)}: {len(outside)} weight(s) outside the seeds' ranges | "
                + " | ".join("" for _ in DIMENSIONS) + " | |"
            )
    sel = result.selection or {}
    if sel:
        added = [k for k in sel.get("candidates") or [] if k in (sel.get("kept") or [])]
        lines += [
            "",
            f"**Signals**: candidates not in `{result.parent_version}`: {', '.join(sel.get('candidates') or []) or 'none'}"
            f" (taken up: {', '.join(added) or 'none'}). Dropped as uninformative ({dropped_rule(sel)}): "
            f"{', '.join(sel.get('dropped') or []) or 'none'}. No data in the training rows (the engine gives "
            f"them no weight): {', '.join(sel.get('no_data') or []) or 'none'}.",
        ]
    calibration = calibration_sentence(result.config)
    if calibration:
        lines += ["", f"**Score calibration** (proposed): {calibration}"]
    if audit_summary:
        lines += [
            "",
            f"Current model audit ({audit_summary.get('window_start')}..{audit_summary.get('window_end')}): "
            f"AUC {fmt(audit_summary.get('roc_auc'), 'num')}, sensitivity {fmt(audit_summary.get('sensitivity'), 'pct')}, "
            f"specificity {fmt(audit_summary.get('specificity'), 'pct')}. Report: `{audit_summary.get('report_path')}`",
        ]
        for w in audit_summary.get("warnings") or []:
            lines.append(f"> {w}")
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
