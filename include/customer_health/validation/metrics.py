"""How well a health score predicts churn: pure functions over two aligned arrays.

Every function takes ``scores`` (the health score of each observation, 0-100, lower is worse)
and ``churned`` (True when that observation's account churned within the horizon) and returns
plain numbers, so the same code grades stored scores, re-scored snapshots and held-out folds.

Conventions (stated once, used everywhere)
------------------------------------------
* **Positive class = churned.** A churner is a "positive".
* **Flagged = ``score <= threshold``.** The default threshold is ``49``, the upper bound of the
  *At Risk* zone: an account in At Risk or Critical is "flagged as at risk", exactly what the
  action rules escalate. ``TP`` = flagged churner, ``FN`` = churner scored 50 or more,
  ``FP`` = flagged account that was retained, ``TN`` = retained account scored 50 or more.
* **Risk order = the score reversed.** A lower score means more risk, so ROC AUC is computed
  on ``-score``; an AUC of 1.0 means every churner scored below every retained account.
* **Undefined is NaN, never a silent 0.** A precision with nothing flagged, a sensitivity
  without churners or an AUC with a single class is ``nan``.

The seed method's targets: sensitivity above 75 % and specificity above 70 %
(``SENSITIVITY_TARGET``, ``SPECIFICITY_TARGET``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_THRESHOLD = 49
"""Flagged = score <= 49: the At Risk zone's upper bound (At Risk 25-49, Critical 0-24)."""

SENSITIVITY_TARGET = 0.75
SPECIFICITY_TARGET = 0.70

SEED_ZONES: tuple[tuple[str, int, int], ...] = (
    ("Healthy", 75, 100),
    ("Neutral", 50, 74),
    ("At Risk", 25, 49),
    ("Critical", 0, 24),
)
"""The seed method's zones (name, min, max; inclusive). Pass a model's own zones to override."""


class MetricInputError(ValueError):
    """The scores or labels handed to a metric cannot be graded as they are."""


def _inputs(scores: Sequence[float] | np.ndarray, churned: Sequence[bool] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert: finite float scores, boolean labels, same length."""
    s = np.asarray(scores, dtype=float).ravel()
    raw = np.asarray(churned).ravel()
    if s.shape != raw.shape:
        raise MetricInputError(
            f"scores has {s.size} values but churned has {raw.size}; pass one label per score"
        )
    if not np.all(np.isfinite(s)):
        bad = int(np.flatnonzero(~np.isfinite(s))[0])
        raise MetricInputError(
            f"scores[{bad}] is {float(s[bad])}; drop unscored observations before grading the model"
        )
    if raw.dtype != bool:
        values = np.unique(raw.astype(float)) if raw.size else np.array([])
        if not set(values.tolist()) <= {0.0, 1.0}:
            raise MetricInputError(
                f"churned must hold booleans or 0/1, got values {values[:5].tolist()}; "
                "label each observation churned (1) or retained (0)"
            )
    return s, raw.astype(bool)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else math.nan


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of a score threshold against churn (see the module conventions).

    ``sensitivity`` (recall, true-positive rate) = TP / (TP + FN): share of churners flagged.
    ``specificity`` (true-negative rate) = TN / (TN + FP): share of retained accounts not flagged.
    ``precision`` (positive predictive value) = TP / (TP + FP): share of flagged that churned.
    """

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def positives(self) -> int:
        """Churners."""
        return self.tp + self.fn

    @property
    def negatives(self) -> int:
        """Retained accounts."""
        return self.tn + self.fp

    @property
    def flagged(self) -> int:
        """Observations at or below the threshold."""
        return self.tp + self.fp

    @property
    def sensitivity(self) -> float:
        """TP / (TP + FN); NaN without churners."""
        return _ratio(self.tp, self.positives)

    @property
    def specificity(self) -> float:
        """TN / (TN + FP); NaN without retained accounts."""
        return _ratio(self.tn, self.negatives)

    @property
    def precision(self) -> float:
        """TP / (TP + FP); NaN when nothing is flagged."""
        return _ratio(self.tp, self.flagged)

    @property
    def accuracy(self) -> float:
        """(TP + TN) / all; NaN when empty."""
        return _ratio(self.tp + self.tn, self.positives + self.negatives)

    def as_dict(self) -> dict[str, Any]:
        """Counts and rates as a JSON-friendly dict."""
        return {
            **asdict(self),
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "precision": self.precision,
            "accuracy": self.accuracy,
        }


def flagged_at(scores: Sequence[float] | np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Boolean array: True where ``score <= threshold`` (flagged as at risk)."""
    return np.asarray(scores, dtype=float) <= threshold


def confusion_at_threshold(
    scores: Sequence[float] | np.ndarray,
    churned: Sequence[bool] | np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
) -> ConfusionMatrix:
    """The confusion matrix of "flagged = score <= threshold" against churn."""
    s, y = _inputs(scores, churned)
    flagged = s <= threshold
    return ConfusionMatrix(
        threshold=threshold,
        tp=int(np.sum(flagged & y)),
        fp=int(np.sum(flagged & ~y)),
        tn=int(np.sum(~flagged & ~y)),
        fn=int(np.sum(~flagged & y)),
    )


def sensitivity(scores, churned, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Share of churners flagged (score <= threshold): TP / (TP + FN)."""
    return confusion_at_threshold(scores, churned, threshold).sensitivity


def specificity(scores, churned, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Share of retained accounts not flagged: TN / (TN + FP)."""
    return confusion_at_threshold(scores, churned, threshold).specificity


def precision(scores, churned, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Share of flagged accounts that churned: TP / (TP + FP)."""
    return confusion_at_threshold(scores, churned, threshold).precision


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span (the Mann-Whitney ranks)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start of each run of equal values, and the mean rank of the run.
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    run_id = np.cumsum(starts) - 1
    run_start = np.flatnonzero(starts)
    run_end = np.r_[run_start[1:], values.size]
    mean_rank = (run_start + 1 + run_end) / 2.0
    ranks = np.empty(values.size, dtype=float)
    ranks[order] = mean_rank[run_id]
    return ranks


def roc_auc(scores: Sequence[float] | np.ndarray, churned: Sequence[bool] | np.ndarray) -> float:
    """Area under the ROC curve of the score as a churn predictor (lower score = more risk).

    Rank-based (Mann-Whitney U): the probability that a randomly chosen churner scored *lower*
    than a randomly chosen retained account, a tie counting one half. 0.5 is a coin flip, 1.0 a
    perfect ranking. NaN when only one class is present.
    """
    s, y = _inputs(scores, churned)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(-s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(
    scores: Sequence[float] | np.ndarray, churned: Sequence[bool] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr, thresholds)`` for "flagged = score <= t" over every distinct score.

    Starts at (0, 0) with threshold ``-inf`` (nothing flagged) and ends at (1, 1). Empty
    classes give NaN rates.
    """
    s, y = _inputs(scores, churned)
    thresholds = np.unique(s)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    order = np.argsort(s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # Counts of observations with score <= t, for each distinct t.
    upto = np.searchsorted(s_sorted, thresholds, side="right")
    cum_pos = np.r_[0, np.cumsum(y_sorted)]
    tp = cum_pos[upto]
    fp = upto - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.r_[0.0, tp / n_pos] if n_pos else np.full(thresholds.size + 1, np.nan)
        fpr = np.r_[0.0, fp / n_neg] if n_neg else np.full(thresholds.size + 1, np.nan)
    return fpr, tpr, np.r_[-np.inf, thresholds]


def top_decile_lift(
    scores: Sequence[float] | np.ndarray, churned: Sequence[bool] | np.ndarray, fraction: float = 0.10
) -> float:
    """Churn rate among the lowest-scored ``fraction`` of observations over the overall rate.

    The top decile holds ``ceil(fraction * n)`` observations. When the cut falls inside a group
    of tied scores, that group fills the remaining places pro rata (the expected churn rate
    under a random tie-break), so the result does not depend on row order. A lift of 3 means
    the riskiest decile churns three times as often as the book. NaN without churners.
    """
    s, y = _inputs(scores, churned)
    if not 0 < fraction <= 1:
        raise MetricInputError(f"fraction is {fraction!r}; pass a share between 0 (exclusive) and 1")
    n = s.size
    if n == 0 or not y.any():
        return math.nan
    k = math.ceil(fraction * n)
    cut = np.sort(s)[k - 1]
    below = s < cut
    tied = s == cut
    places = k - int(below.sum())
    expected_churners = float(y[below].sum()) + places * float(y[tied].mean())
    return (expected_churners / k) / float(y.mean())


def churn_by_zone(
    scores: Sequence[float] | np.ndarray,
    churned: Sequence[bool] | np.ndarray,
    zones: Sequence[tuple[str, int, int]] = SEED_ZONES,
) -> list[dict[str, Any]]:
    """Per zone (name, inclusive min-max): observations, churners and observed churn rate.

    A score model that works shows the churn rate falling from Critical to Healthy. Zones are
    returned in the order given; a zone without observations has a NaN rate.
    """
    s, y = _inputs(scores, churned)
    out = []
    for name, lo, hi in zones:
        inside = (s >= lo) & (s <= hi)
        count = int(inside.sum())
        churners = int(y[inside].sum())
        out.append(
            {"zone": name, "min": lo, "max": hi, "accounts": count, "churners": churners, "churn_rate": _ratio(churners, count)}
        )
    return out


def calibration_by_band(
    scores: Sequence[float] | np.ndarray, churned: Sequence[bool] | np.ndarray, width: int = 10
) -> list[dict[str, Any]]:
    """Observed churn rate per score band of ``width`` points: 0-9, 10-19, ..., 90-100.

    The health score is not a probability, so "calibration" here means the observed churn rate
    of each band, which should fall monotonically as the score rises; ``mean_score`` is the
    band's average score. The last band includes 100. Empty bands are listed with NaN rates.
    """
    s, y = _inputs(scores, churned)
    if width <= 0 or 100 % width:
        raise MetricInputError(f"band width {width!r} must divide 100 (e.g. 5, 10, 20)")
    band = np.minimum(np.floor(np.clip(s, 0, 100) / width), 100 // width - 1).astype(int)
    out = []
    for b in range(100 // width):
        inside = band == b
        count = int(inside.sum())
        churners = int(y[inside].sum())
        lo = b * width
        hi = 100 if b == 100 // width - 1 else lo + width - 1
        out.append(
            {
                "band": f"{lo}-{hi}",
                "min": lo,
                "max": hi,
                "accounts": count,
                "churners": churners,
                "churn_rate": _ratio(churners, count),
                "mean_score": float(s[inside].mean()) if count else math.nan,
            }
        )
    return out


def monotone_calibration(bands: Sequence[dict[str, Any]]) -> bool:
    """True when the observed churn rate never rises from one non-empty band to the next."""
    rates = [b["churn_rate"] for b in bands if b["accounts"]]
    return all(later <= earlier + 1e-12 for earlier, later in zip(rates, rates[1:], strict=False))


def evaluate_scores(
    scores: Sequence[float] | np.ndarray,
    churned: Sequence[bool] | np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    zones: Sequence[tuple[str, int, int]] = SEED_ZONES,
) -> dict[str, Any]:
    """Every metric of this module at once, as a JSON-friendly dict (NaN kept as ``nan``).

    Keys: observations, churners, churn_rate, threshold, confusion (counts and rates),
    sensitivity, specificity, precision, roc_auc, top_decile_lift, by_zone, calibration,
    calibration_monotone, meets_targets (both seed targets met).
    """
    s, y = _inputs(scores, churned)
    cm = confusion_at_threshold(s, y, threshold)
    bands = calibration_by_band(s, y)
    return {
        "observations": int(s.size),
        "churners": int(y.sum()),
        "churn_rate": _ratio(int(y.sum()), s.size),
        "threshold": threshold,
        "confusion": cm.as_dict(),
        "sensitivity": cm.sensitivity,
        "specificity": cm.specificity,
        "precision": cm.precision,
        "roc_auc": roc_auc(s, y),
        "top_decile_lift": top_decile_lift(s, y),
        "by_zone": churn_by_zone(s, y, zones),
        "calibration": bands,
        "calibration_monotone": monotone_calibration(bands),
        "meets_targets": bool(cm.sensitivity >= SENSITIVITY_TARGET and cm.specificity >= SPECIFICITY_TARGET),
    }


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf turned into None and numpy scalars into Python ones (for JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
