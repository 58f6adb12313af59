"""The baseline every audit and recalibration is compared with: a plain logistic regression on
the raw signal values, fitted and graded on the same time-ordered folds as the model.

Why a baseline
--------------
An AUC means little on its own: 0.70 is good when nothing simple does better, and poor when a
regression on the raw counts reaches 0.80. So each audit and each recalibration fits, on the
same held-out rows as the model is graded on, the simplest honest learner there is and prints
it beside the model. When the model ranks worse than that baseline, or its AUC is under
``WEAK_AUC`` (0.6), the audit's first lines say so (``baseline_warnings``).

The learner (stated once)
-------------------------
* **Features**: every catalogued signal (``signal_catalog.SIGNALS``) present in the snapshot
  frame, *raw* (not normalized, not segment-relative, no direction applied): the regression
  learns the sign itself. Signals missing in every training row, or constant there, are left out.
* **Missing values**: imputed with the training rows' median, plus one missing-indicator
  column per signal that is missing in some training row (so "no data" can carry its own
  weight instead of looking like a typical value).
* **Scaling**: standardized with the training rows' mean and standard deviation.
* **Model**: L2 logistic regression (scikit-learn ``LogisticRegression``, C = 1, lbfgs),
  deterministic.
* **Folds**: expanding window in time. Each test date ``T`` is predicted by a fit on every
  training date ``s`` with ``s + H <= T`` (their labels were known at ``T``: no look-ahead).
  A test date without such a training date, or whose training rows hold a single class, gets
  no baseline prediction; the comparison uses only rows that have one.
* **Matching cut**: the model flags ``score <= threshold``; the baseline flags the same number
  of held-out rows (its highest predicted risks), so sensitivity and specificity compare the
  two rankings at the same workload.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from customer_health.validation.metrics import confusion_at_threshold, json_safe, roc_auc

WEAK_AUC = 0.6
"""Under this held-out AUC the audit says the model barely ranks churners before retained accounts."""

BASELINE_C = 1.0
BASELINE_NAME = "plain logistic regression on the raw signals"


def raw_signal_columns(frame: pd.DataFrame) -> list[str]:
    """The catalogued signals present in ``frame``, in catalogue order."""
    from customer_health.scoring.signal_catalog import SIGNALS

    return [k for k in SIGNALS if k in frame.columns]


def _raw_matrix(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    if not len(columns):
        return np.empty((len(frame), 0))
    return np.column_stack([pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float) for c in columns])


@dataclass(frozen=True)
class BaselineFit:
    """A fitted baseline: which raw columns, how they were imputed/scaled, and the regression."""

    columns: tuple[str, ...]
    medians: np.ndarray
    indicators: tuple[int, ...]  # positions (in ``columns``) that got a missing-indicator
    means: np.ndarray
    scales: np.ndarray
    model: Any

    def design(self, raw: np.ndarray) -> np.ndarray:
        """The standardized design matrix of raw values (columns as in ``columns``)."""
        missing = np.isnan(raw)
        filled = np.where(missing, self.medians, raw)
        parts = [filled, missing[:, list(self.indicators)].astype(float)] if self.indicators else [filled]
        x = np.column_stack(parts)
        return (x - self.means) / self.scales

    def risk(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted churn probability of each row of a signals frame."""
        return self.model.predict_proba(self.design(_raw_matrix(frame, self.columns)))[:, 1]


def fit_baseline(frame: pd.DataFrame, churned: np.ndarray, c: float = BASELINE_C) -> BaselineFit | None:
    """Fit the baseline on training rows; None when they hold one class or no usable signal."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(churned, dtype=bool)
    if y.size == 0 or y.all() or not y.any():
        return None
    candidates = raw_signal_columns(frame)
    raw = _raw_matrix(frame, candidates)
    keep = []
    for j, _ in enumerate(candidates):
        present = raw[~np.isnan(raw[:, j]), j]
        if present.size and np.ptp(present) > 0:
            keep.append(j)
    if not keep:
        return None
    columns = tuple(candidates[j] for j in keep)
    raw = raw[:, keep]
    missing = np.isnan(raw)
    medians = np.array([np.median(raw[~missing[:, j], j]) for j in range(raw.shape[1])])
    indicators = tuple(j for j in range(raw.shape[1]) if missing[:, j].any() and not missing[:, j].all())
    filled = np.where(missing, medians, raw)
    x = np.column_stack([filled, missing[:, list(indicators)].astype(float)]) if indicators else filled
    means = x.mean(axis=0)
    scales = x.std(axis=0)
    scales = np.where(scales > 0, scales, 1.0)
    model = LogisticRegression(C=c, max_iter=5000)
    model.fit((x - means) / scales, y)
    return BaselineFit(columns, medians, indicators, means, scales, model)


def predict_on_folds(
    frame: pd.DataFrame,
    churned: np.ndarray,
    test_dates: Sequence[date],
    horizon_days: int,
    *,
    c: float = BASELINE_C,
) -> np.ndarray:
    """Held-out baseline risk for every row of ``frame`` whose date is a test date (NaN elsewhere).

    ``frame``: stacked signal frames with ``as_of_date``; ``churned``: one label per row. Each
    test date is predicted by a fit on the rows dated ``s`` with ``s + H <= T`` (module docstring).
    """
    from customer_health.validation.snapshots import as_date

    days = frame["as_of_date"].map(as_date).to_numpy()
    y = np.asarray(churned, dtype=bool)
    risk = np.full(len(frame), np.nan)
    for t in sorted(set(test_dates)):
        test = days == t
        if not test.any():
            continue
        train = np.array([d + timedelta(days=horizon_days) <= t for d in days], dtype=bool)
        fit = fit_baseline(frame.loc[train], y[train], c) if train.any() else None
        if fit is not None:
            risk[test] = fit.risk(frame.loc[test])
    return risk


@dataclass
class BaselineComparison:
    """Model and baseline graded on the same held-out rows."""

    rows: int
    churners: int
    test_dates: list[str]
    model_label: str
    model_auc: float
    baseline_auc: float
    model_sensitivity: float
    model_specificity: float
    baseline_sensitivity: float
    baseline_specificity: float
    flagged: int
    threshold: int
    features: list[str] = field(default_factory=list)
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN -> None)."""
        return json_safe(dict(self.__dict__))


def compare_on_rows(
    scores: np.ndarray,
    risk: np.ndarray,
    churned: np.ndarray,
    threshold: int,
    *,
    test_dates: Sequence[str] = (),
    model_label: str = "model",
    features: Sequence[str] = (),
) -> BaselineComparison:
    """Grade the model's scores (low = risk) and the baseline's risk (high = risk) on the rows
    where the baseline has a prediction, the baseline flagging as many rows as the model."""
    s = np.asarray(scores, dtype=float)
    r = np.asarray(risk, dtype=float)
    y = np.asarray(churned, dtype=bool)
    ok = ~np.isnan(r) & ~np.isnan(s)
    s, r, y = s[ok], r[ok], y[ok]
    nan = math.nan
    if s.size == 0 or y.all() or not y.any():
        reason = (
            "no held-out row has a baseline prediction (no earlier snapshot whose horizon ended before a test date)"
            if s.size == 0
            else f"the held-out rows hold {int(y.sum())} churners of {y.size}; AUC needs both churned and retained accounts"
        )
        return BaselineComparison(int(s.size), int(y.sum()), list(test_dates), model_label, nan, nan, nan, nan, nan, nan, 0, threshold, list(features), reason)
    model_cm = confusion_at_threshold(s, y, threshold)
    flagged = model_cm.flagged
    # The baseline flags the same number of rows: its `flagged` highest risks (stable order).
    order = np.argsort(-r, kind="mergesort")
    pseudo = np.ones(s.size)
    pseudo[order[:flagged]] = 0.0
    base_cm = confusion_at_threshold(pseudo, y, 0.5)
    return BaselineComparison(
        rows=int(s.size),
        churners=int(y.sum()),
        test_dates=list(test_dates),
        model_label=model_label,
        model_auc=roc_auc(s, y),
        baseline_auc=roc_auc(-r, y),
        model_sensitivity=model_cm.sensitivity,
        model_specificity=model_cm.specificity,
        baseline_sensitivity=base_cm.sensitivity,
        baseline_specificity=base_cm.specificity,
        flagged=int(flagged),
        threshold=threshold,
        features=list(features),
    )


def _finite(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def baseline_warnings(comparison: dict[str, Any] | BaselineComparison | None, overall_auc: float | None = None, label: str = "the model") -> list[str]:
    """The plain-words warnings the audit puts in its first lines (empty when none applies).

    * the model's AUC is below the baseline's on the same held-out rows;
    * the model's AUC (held-out rows, else ``overall_auc``) is under ``WEAK_AUC``.
    """
    c = comparison.as_dict() if isinstance(comparison, BaselineComparison) else (comparison or {})
    model_auc = c.get("model_auc") if _finite(c.get("model_auc")) else overall_auc
    base_auc = c.get("baseline_auc")
    out = []
    if _finite(model_auc) and _finite(base_auc) and model_auc < base_auc:
        out.append(
            f"WARNING: {label} ranks worse than a plain logistic regression on the raw signals "
            f"(AUC {model_auc:.3f} vs {base_auc:.3f} on the same {c.get('rows')} held-out rows): "
            "its weighting or normalization throws information away - recalibrate or review the model before acting on it."
        )
    if _finite(model_auc) and model_auc < WEAK_AUC:
        out.append(
            f"WARNING: {label}'s ROC AUC is {model_auc:.3f}, under {WEAK_AUC}: it barely ranks churners before retained "
            "accounts (0.5 is chance); do not rely on its zones."
        )
    return out


def format_comparison(c: dict[str, Any] | None, indent: str = "  ") -> list[str]:
    """Lines 'model vs baseline' for a terminal (AUC, sensitivity/specificity at the matching cut)."""
    if not c:
        return []
    if c.get("skipped"):
        return [f"{indent}baseline ({BASELINE_NAME}): not computed - {c['skipped']}"]

    def pct(v: Any) -> str:
        return f"{v:.0%}" if _finite(v) else "n/a"

    def num(v: Any) -> str:
        return f"{v:.3f}" if _finite(v) else "n/a"

    return [
        f"{indent}beside a baseline ({BASELINE_NAME}), same {c['rows']} held-out rows ({c['churners']} churners, "
        f"snapshots {', '.join(c.get('test_dates') or [])}), each fitted only on earlier snapshots:",
        f"{indent}  {'':<12} {'ROC AUC':>8} {'sensitivity':>12} {'specificity':>12}   (both flag {c['flagged']} rows)",
        f"{indent}  {str(c.get('model_label') or 'model')[:12]:<12} {num(c['model_auc']):>8} {pct(c['model_sensitivity']):>12} {pct(c['model_specificity']):>12}",
        f"{indent}  {'baseline':<12} {num(c['baseline_auc']):>8} {pct(c['baseline_sensitivity']):>12} {pct(c['baseline_specificity']):>12}",
    ]
