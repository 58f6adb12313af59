"""Trends and CSM priority: where each account's score is heading, and who to call first.

Given today's scores and the stored history of the same model version, this computes, per
account and without a Python loop over accounts:

* ``previous_zone`` - the zone of the most recent earlier score (within
  ``trends.previous_zone_lookback_days``);
* ``delta_30/60/90`` - today's computed score minus the computed score exactly that many days
  earlier (missing when that day has no score);
* ``slope_90`` - the least-squares slope, in points per 30 days, through the scores sampled
  every ``trends.slope_sample_every_days`` days back from today over the last
  ``trends.slope_window_days`` days (today included);
* ``priority`` - urgency from level *and* trajectory, scaled by log ARR.

Trends use the *computed* score, so a CSM override does not fake a recovery or a collapse;
``previous_zone`` uses the stored (effective) zone, the one the business last acted on.
History rows dated on or after today are ignored: adding future history never changes
today's result. Only sampled offsets are used, so passing the full daily history or just the
sampled dates (what ``history.read_score_history`` reads) gives the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from customer_health.scoring.model_config import ModelConfig


@dataclass(frozen=True)
class Trends:
    """Trend columns aligned with today's accounts."""

    previous_zone: np.ndarray  # object: zone name or None
    deltas: dict[int, np.ndarray]  # window days -> delta (float, NaN when unknown)
    slope: np.ndarray  # points per 30 days (NaN with too few points)


def _ages(history: pd.DataFrame, as_of: date) -> np.ndarray:
    """Days between each history row's date and ``as_of`` (converting each distinct date once)."""
    column = history["as_of_date"]
    if column.dtype == object:
        codes, uniques = pd.factorize(column)
        ages = (np.datetime64(as_of, "D") - pd.to_datetime(uniques).to_numpy(dtype="datetime64[D]")).astype(np.int64)
        return ages[codes]
    return (np.datetime64(as_of, "D") - pd.to_datetime(column).to_numpy(dtype="datetime64[D]")).astype(np.int64)


def _rows(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``values[mask]``, or ``values`` itself when there is no mask."""
    return values if mask is None else values[mask]


def compute_trends(
    account_keys: pd.Series | np.ndarray,
    computed_score: np.ndarray,
    history: pd.DataFrame | None,
    as_of: date,
    config: ModelConfig,
) -> Trends:
    """Previous zone, deltas and slope for today's accounts from their score history.

    ``history`` has columns ``account_key``, ``as_of_date``, ``computed_score`` (or
    ``score``) and ``zone``; rows of other accounts and dates outside the windows are ignored.
    """
    tc = config.trends
    n = len(computed_score)
    today = np.asarray(computed_score, dtype=float)
    previous_zone = np.full(n, None, dtype=object)
    deltas = {w: np.full(n, np.nan) for w in tc.delta_windows_days}
    # Today's point always counts towards the slope.
    sum_n = np.ones(n)
    sum_x = np.zeros(n)
    sum_y = today.copy()
    sum_xx = np.zeros(n)
    sum_xy = np.zeros(n)
    if history is not None and len(history) and n:
        horizon = max(tc.slope_window_days, max(tc.delta_windows_days), tc.previous_zone_lookback_days)
        ages = _ages(history, as_of)
        keep = (ages >= 1) & (ages <= horizon)
        # Filters copy millions of rows: skip the ones that keep everything (the usual case).
        keep = None if keep.all() else keep
        # One hash lookup per history row, both sides as object indexes (no str inference);
        # the caller may pass the Index it already hashed (score_accounts does).
        index = account_keys
        if not isinstance(index, pd.Index):
            index = pd.Index(np.asarray(account_keys, dtype=object), dtype=object)
        past_keys = pd.Index(_rows(history["account_key"].to_numpy(dtype=object), keep), dtype=object)
        pos = index.get_indexer(past_keys)
        ages = _rows(ages, keep)
        score_col = "computed_score" if "computed_score" in history.columns else "score"
        past = _rows(pd.to_numeric(history[score_col], errors="coerce").to_numpy(dtype=float, na_value=np.nan), keep)
        zone_col = _rows(history["zone"].to_numpy(dtype=object), keep) if "zone" in history.columns else None
        known = pos >= 0
        known = None if known.all() else known
        pos, ages, past = _rows(pos, known), _rows(ages, known), _rows(past, known)
        if zone_col is not None:
            zone_col = _rows(zone_col, known)
            recent = np.flatnonzero(ages <= tc.previous_zone_lookback_days)
            r_pos, r_age, r_zone = pos[recent], ages[recent], zone_col[recent]
            # The latest earlier score wins: write the dates oldest first, so the most recent
            # one is written last - a few vector passes (one per distinct date) instead of a
            # sort of every recent row. Within a date the rows go in reverse, so a duplicated
            # (account, date) keeps its first row.
            for age in np.flatnonzero(np.bincount(r_age))[::-1]:  # ages are 1..lookback
                at = np.flatnonzero(r_age == age)[::-1]
                previous_zone[r_pos[at]] = r_zone[at]
        valid = ~np.isnan(past)
        for w in tc.delta_windows_days:
            at = valid & (ages == w)
            deltas[w][pos[at]] = today[pos[at]] - past[at]
        sampled = valid & (ages <= tc.slope_window_days) & (ages % tc.slope_sample_every_days == 0)
        x = -ages[sampled].astype(float)
        y = past[sampled]
        p = pos[sampled]
        sum_n += np.bincount(p, minlength=n)
        sum_x += np.bincount(p, weights=x, minlength=n)
        sum_y += np.bincount(p, weights=y, minlength=n)
        sum_xx += np.bincount(p, weights=x * x, minlength=n)
        sum_xy += np.bincount(p, weights=x * y, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        denominator = sum_n * sum_xx - sum_x * sum_x
        slope_per_day = (sum_n * sum_xy - sum_x * sum_y) / denominator
    slope = np.where((sum_n >= tc.slope_min_points) & (denominator > 0), slope_per_day * 30.0, np.nan)
    return Trends(previous_zone, deltas, slope)


def trajectory_points(trends: Trends, config: ModelConfig) -> np.ndarray:
    """Points gained (+) or lost (-) over the slope window, from the slope or else the deltas.

    The slope is preferred (robust to one noisy day); accounts without enough points fall back
    to the longest delta available, scaled to the slope window.
    """
    window = config.trends.slope_window_days
    result = trends.slope * (window / 30.0)
    for w in sorted(trends.deltas, reverse=True):
        result = np.where(np.isnan(result), trends.deltas[w] * (window / w), result)
    return result


def priority_scores(
    score: np.ndarray, trajectory: np.ndarray, arr: np.ndarray, config: ModelConfig
) -> np.ndarray:
    """CSM priority: higher means call first.

    ``urgency = level_weight * (100 - score) + decline_weight * points lost
    - recovery_credit * points gained`` (never below 0), times the value weight
    ``1 + arr_log_weight * log10(1 + arr / arr_reference)``. With the shipped weights an
    account falling 85 -> 65 over the window outranks one stable at 50 of the same ARR:
    trajectory matters, not level alone.
    """
    pc = config.priority
    traj = np.nan_to_num(np.asarray(trajectory, dtype=float), nan=0.0)
    urgency = (
        pc.level_weight * (100.0 - np.asarray(score, dtype=float))
        + pc.decline_weight * np.maximum(0.0, -traj)
        - pc.recovery_credit * np.maximum(0.0, traj)
    )
    value = np.nan_to_num(np.asarray(arr, dtype=float), nan=0.0).clip(min=0.0)
    weight = 1.0 + pc.arr_log_weight * np.log10(1.0 + value / pc.arr_reference)
    return np.round(np.maximum(urgency, 0.0) * weight, 4)
