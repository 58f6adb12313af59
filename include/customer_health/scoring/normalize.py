"""Normalize raw signals to 0-100 against the baseline of each account's segment.

Raw metrics mean nothing on their own: 12 logins a week is healthy for a starter account and
alarming for an enterprise one, and a two-month-old account is not expected to use what a
five-year customer uses. Signals with absolute meaning (fractional trends, shares, survey
scores: ``fixed_range``) are scored linearly between a *worst* bound (0 points) and a *best*
bound (100 points) fixed in the model config, clipped. Population-based signals
(``segment_target`` / ``segment_range``) are placed against the accounts of the same baseline
segment (plan x tenure band) on the same date, by the model's ``baselines.method``:

* ``segment_relative`` - linear between segment percentiles (``segment_range``) or between a
  fixed worst and a segment percentile (``segment_target``), clipped: the first method. It
  saturates: every account above the target percentile scores 100, so a product where most
  accounts are similar gets engagement sub-scores near 100 with no resolution left at the top,
  and the clip at 0 flattens the bottom the same way.
* ``segment_percentile`` - the account's mid-rank percentile ``p`` among the segment's accounts
  holding the signal (ties share their mean rank; lower-is-better signals use ``1 - p``),
  turned into a normal score ``z = Phi^-1(p)``.
* ``robust_z`` - ``z = (value - median) / (1.4826 x MAD)`` over the segment, signed by the
  signal's direction; the scale is at least the signal's ``min_span`` (a segment where nearly
  everyone has the same value does not turn a small difference into an extreme).

Both position methods put ``z`` on the 0-100 scale with one logistic curve,
``100 / (1 + exp(-(ln 3 + z)))``: the segment's median account scores 75 (the Healthy bound:
a typical customer is healthy), one robust standard deviation below it 52, two 29, three 13,
and above it 89, 96: monotone, never clipped, with resolution at both ends.

A segment with fewer than ``baselines.min_segment_size`` accounts holding a signal borrows
the plan-level population, then the global one. Everything is deterministic: the same frame
gives the same baselines and the same normalized values, so a history rebuild for date D
equals the daily run for D.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtri

from customer_health.scoring.model_config import ModelConfig

UNKNOWN_PLAN = "unknown"
ANY = "*"
# Rows per block of the row-wise passes (keeps each block's temporaries in the CPU cache).
BLOCK_ROWS = 1 << 16
# The position methods' map: z = 0 (the segment's median account) -> 75, the Healthy bound.
MEDIAN_SCORE = 75.0
_MEDIAN_LOGIT = float(np.log(MEDIAN_SCORE / (100.0 - MEDIAN_SCORE)))
MAD_TO_SD = 1.4826  # MAD x 1.4826 estimates the standard deviation of a normal population


@dataclass(frozen=True)
class Baselines:
    """The bounds each signal was normalized against, per baseline segment.

    Row ``i`` of ``worst``/``best`` (shape segments x signals) belongs to segment
    ``segments[i]`` = (plan, tenure band); the last row is the global fallback ``("*", "*")``.
    ``basis`` says where a population bound came from: ``segment``, ``plan``, ``global`` or
    ``config`` (fixed bounds); ``population`` how many accounts with data it was taken from.

    Under a position method (``method`` other than ``segment_relative``) a population-based
    signal has no worst/best (NaN) but, per segment row, ``center`` and ``scale`` (robust_z: the
    median and the floored 1.4826 x MAD) or the sorted values it is ranked among
    (segment_percentile: ``ranked[signal][row]``).
    """

    signals: tuple[str, ...]
    segments: tuple[tuple[str, str], ...]
    worst: np.ndarray
    best: np.ndarray
    basis: np.ndarray
    population: np.ndarray
    method: str = "segment_relative"
    position: np.ndarray | None = None  # signals: True where the position method applies
    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    higher_is_better: np.ndarray | None = None
    ranked: tuple[tuple[np.ndarray, ...], ...] | None = None

    def to_frame(self) -> pd.DataFrame:
        """The baselines as a long table: plan, tenure_band, signal, worst, best, basis, population."""
        n_seg, n_sig = self.worst.shape
        return pd.DataFrame(
            {
                "plan": np.repeat([s[0] for s in self.segments], n_sig),
                "tenure_band": np.repeat([s[1] for s in self.segments], n_sig),
                "signal": np.tile(np.array(self.signals, dtype=object), n_seg),
                "worst": self.worst.ravel(),
                "best": self.best.ravel(),
                "basis": self.basis.ravel(),
                "population": self.population.ravel(),
                "center": self.center.ravel() if self.center is not None else np.nan,
                "scale": self.scale.ravel() if self.scale is not None else np.nan,
            }
        )


@dataclass(frozen=True)
class Normalized:
    """Normalized signals of one frame and their context.

    ``values`` and ``raw`` are accounts x signals (column-major, NaN = no data);
    ``baseline_rows`` points each account at its row of ``baselines``; ``segment_code`` /
    ``segment_labels`` name each account's baseline segment ("growth/first_year").
    """

    values: np.ndarray
    raw: np.ndarray
    baseline_rows: np.ndarray
    baselines: Baselines
    segment_code: np.ndarray
    segment_labels: list[str]
    plans: np.ndarray

    def take(self, rows: np.ndarray) -> Normalized:
        """The same normalization restricted to ``rows`` (the baselines stay the population's)."""
        return Normalized(
            np.asfortranarray(self.values[rows]), np.asfortranarray(self.raw[rows]), self.baseline_rows[rows],
            self.baselines, self.segment_code[rows], self.segment_labels, self.plans[rows],
        )  # fmt: skip


def tenure_band_index(tenure_days: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Index into ``config.baselines.tenure_bands`` for each tenure (unknown tenure: last band)."""
    bounds = np.array([b.below_days for b in config.baselines.tenure_bands[:-1]], dtype=float)
    return np.searchsorted(bounds, np.asarray(tenure_days, dtype=float), side="right")


def segment_model_index(tenure_days: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Index into ``config.models`` of the segment model each account is scored with.

    The models are sorted shortest tenure rule first with the default last, so the count of
    tenure bounds at or below an account's tenure is its model's index; unknown tenure gets
    the default model.
    """
    bounds = np.array([m.tenure_below_days for m in config.models if m.tenure_below_days is not None], dtype=float)
    return np.searchsorted(bounds, np.asarray(tenure_days, dtype=float), side="right")


def raw_signal_matrix(frame: pd.DataFrame, config: ModelConfig) -> np.ndarray:
    """The model's signals as a column-major float matrix (accounts x signals).

    A signal column absent from the frame, and any non-finite value, is NaN (no data).
    """
    n = len(frame)
    raw = np.empty((n, len(config.signals)), dtype=float, order="F")
    for j, key in enumerate(config.signal_keys):
        if key in frame.columns:
            col = frame[key]
            if col.dtype.kind != "f":
                col = pd.to_numeric(col, errors="coerce")
            raw[:, j] = col.to_numpy(dtype=float, na_value=np.nan)
            bad = ~np.isfinite(raw[:, j])
            if bad.any():
                raw[bad, j] = np.nan
        else:
            raw[:, j] = np.nan
    return raw


def _narrow(codes: np.ndarray) -> np.ndarray:
    """Non-negative integer codes as uint16 when they fit (same order, faster stable sort)."""
    if len(codes) and codes.min() >= 0 and codes.max() < 1 << 16:
        return codes.astype(np.uint16)
    return codes


def distinct_codes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(codes, return_inverse=True)`` for small non-negative codes, without a sort."""
    if len(codes) and codes.min() >= 0 and codes.max() < 1 << 16:
        seen = np.bincount(codes) > 0
        distinct = np.flatnonzero(seen)
        lookup = np.cumsum(seen) - 1
        return distinct.astype(codes.dtype), lookup.take(codes)
    return np.unique(codes, return_inverse=True)


def _plans(frame: pd.DataFrame) -> np.ndarray:
    if "plan" not in frame.columns:
        return np.full(len(frame), UNKNOWN_PLAN, dtype=object)
    return frame["plan"].astype(object).where(frame["plan"].notna(), UNKNOWN_PLAN).to_numpy(dtype=object)


def _percentiles(norm) -> list[float]:
    if norm.method == "segment_target":
        return [norm.target_percentile]
    return [norm.worst_percentile, norm.best_percentile]


def _group_quantiles(
    values: np.ndarray, bounds: np.ndarray, qs: list[float], only: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles (linear interpolation, NaN ignored) and counts of consecutive groups.

    ``values`` are sorted by group; group g is ``values[bounds[g]:bounds[g + 1]]``. With
    ``only``, just those groups are computed (the others stay NaN with count 0).
    """
    n_groups = len(bounds) - 1
    result = np.full((n_groups, len(qs)), np.nan)
    counts = np.zeros(n_groups, dtype=np.int64)
    for g in range(n_groups) if only is None else only:
        chunk = values[bounds[g] : bounds[g + 1]]
        chunk = chunk[~np.isnan(chunk)]
        counts[g] = len(chunk)
        if len(chunk):
            result[g] = np.quantile(chunk, qs)
    return result, counts


def compute_baselines(
    raw: np.ndarray, plan_codes: np.ndarray, plan_names: list[str], band_idx: np.ndarray, config: ModelConfig
) -> tuple[Baselines, np.ndarray]:
    """Worst/best bounds per (plan, tenure band) segment for every model signal.

    Population bounds are quantiles (linear interpolation) of the accounts holding the signal,
    taken at the segment level when it has at least ``min_segment_size`` such accounts, else
    at the plan level, else globally. Returns the baselines and each account's row in them.
    """
    band_names = [b.name for b in config.baselines.tenure_bands]
    n_bands = len(band_names)
    seg_codes = plan_codes.astype(np.int64) * n_bands + band_idx
    # One stable sort by segment: segments, and plans (segment = plan x band), become slices.
    # Codes are small, and a stable sort of 16-bit keys is a linear-time radix sort.
    order = np.argsort(_narrow(seg_codes), kind="stable")
    sorted_codes = seg_codes[order]
    # The codes are sorted: each segment starts where the code changes (no second sort).
    seg_starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]) if len(order) else order
    present = sorted_codes[seg_starts]
    seg_bounds = np.r_[seg_starts, len(order)]
    seg_plan = present // n_bands
    plans_present, plan_first = np.unique(seg_plan, return_index=True)
    plan_bounds = np.r_[seg_bounds[plan_first], len(order)]
    plan_row = np.searchsorted(plans_present, seg_plan)
    segments = [(plan_names[c // n_bands], band_names[c % n_bands]) for c in present]
    segments.append((ANY, ANY))
    n_seg, n_sig = len(segments), len(config.signals)
    seg_row = np.arange(len(present))

    worst = np.full((n_seg, n_sig), np.nan)
    best = np.full((n_seg, n_sig), np.nan)
    basis = np.full((n_seg, n_sig), "config", dtype=object)
    population = np.zeros((n_seg, n_sig), dtype=np.int64)
    min_size = config.baselines.min_segment_size
    method = config.baselines.method
    positional = method != "segment_relative"
    position = np.zeros(n_sig, dtype=bool)
    center = np.full((n_seg, n_sig), np.nan)
    scale = np.full((n_seg, n_sig), np.nan)
    ranked: list[tuple[np.ndarray, ...]] = []

    for j, s in enumerate(config.signals):
        norm = s.normalization
        if norm.method == "fixed_range":
            worst[:, j], best[:, j] = norm.worst, norm.best
            ranked.append(())
            continue
        if positional:
            position[j] = True
            values = raw[order, j]
            groups = _place_groups(values, seg_bounds, plan_bounds, plan_row, min_size)
            ranked_j = []
            for row, (population_values, basis_name) in enumerate(groups):
                basis[row, j] = basis_name
                population[row, j] = len(population_values)
                if method == "robust_z" and len(population_values):
                    median = float(np.median(population_values))
                    mad = float(np.median(np.abs(population_values - median)))
                    center[row, j], scale[row, j] = median, max(MAD_TO_SD * mad, norm.min_span, 1e-12)
                ranked_j.append(population_values)
            ranked.append(tuple(ranked_j))
            continue
        ranked.append(())
        qs = _percentiles(norm)
        values = raw[order, j]
        q_seg, n_seg_data = _group_quantiles(values, seg_bounds, qs)
        # Plan-level bounds only for plans with a segment too small for its own (at scale:
        # none), so big populations skip a third of the quantile work.
        small_plans = np.unique(plan_row[n_seg_data < min_size])
        q_plan, n_plan_data = _group_quantiles(values, plan_bounds, qs, only=small_plans)
        q_glob, n_glob = _group_quantiles(values, np.array([0, len(values)]), qs)
        use_seg = n_seg_data >= min_size
        use_plan = ~use_seg & (n_plan_data[plan_row] >= min_size)
        chosen = np.where(use_seg[:, None], q_seg, np.where(use_plan[:, None], q_plan[plan_row], q_glob[0]))
        if norm.method == "segment_target":
            worst[seg_row, j], best[seg_row, j] = norm.worst, chosen[:, 0]
            worst[-1, j], best[-1, j] = norm.worst, q_glob[0, 0]
        else:
            worst[seg_row, j], best[seg_row, j] = chosen[:, 0], chosen[:, 1]
            worst[-1, j], best[-1, j] = q_glob[0, 0], q_glob[0, 1]
        basis[seg_row, j] = np.where(use_seg, "segment", np.where(use_plan, "plan", "global"))
        basis[-1, j] = "global"
        population[seg_row, j] = np.where(use_seg, n_seg_data, np.where(use_plan, n_plan_data[plan_row], n_glob[0]))
        population[-1, j] = n_glob[0]
        # Keep data-driven bounds at least min_span apart, moving the bound at the open end:
        # for a higher-is-better signal the best bound rises (when a whole segment sits at
        # zero usage, zero must not count as healthy); for a lower-is-better one the worst
        # bound rises (when most accounts have no open ticket, none is still the best).
        sign = 1.0 if s.higher_is_better else -1.0
        span = np.fmax(sign * (best[:, j] - worst[:, j]), norm.min_span)
        if s.higher_is_better:
            best[:, j] = worst[:, j] + span
        else:
            worst[:, j] = best[:, j] + span
    baselines = Baselines(
        tuple(config.signal_keys), tuple(segments), worst, best, basis, population, method=method,
        position=position, center=center, scale=scale,
        higher_is_better=np.array([s.higher_is_better for s in config.signals], dtype=bool),
        ranked=tuple(ranked) if method == "segment_percentile" else None,
    )  # fmt: skip
    return baselines, np.searchsorted(present, seg_codes)


def _place_groups(
    values: np.ndarray, seg_bounds: np.ndarray, plan_bounds: np.ndarray, plan_row: np.ndarray, min_size: int
) -> list[tuple[np.ndarray, str]]:
    """For every segment (then the global row), the sorted population it is placed against and
    where it came from: the segment's own accounts holding the signal when there are at least
    ``min_size``, else its plan's, else everyone's."""

    def sorted_present(chunk: np.ndarray) -> np.ndarray:
        return np.sort(chunk[~np.isnan(chunk)])

    everyone = sorted_present(values)
    plans: dict[int, np.ndarray] = {}
    out = []
    for g in range(len(seg_bounds) - 1):
        own = sorted_present(values[seg_bounds[g] : seg_bounds[g + 1]])
        if len(own) >= min_size:
            out.append((own, "segment"))
            continue
        p = int(plan_row[g])
        if p not in plans:
            plans[p] = sorted_present(values[plan_bounds[p] : plan_bounds[p + 1]])
        if len(plans[p]) >= min_size:
            out.append((plans[p], "plan"))
        else:
            out.append((everyone, "global"))
    out.append((everyone, "global"))
    return out


def position_score(z: np.ndarray) -> np.ndarray:
    """The position methods' 0-100 map: ``100 / (1 + exp(-(ln 3 + z)))`` (median -> 75)."""
    with np.errstate(over="ignore"):
        return 100.0 / (1.0 + np.exp(-(_MEDIAN_LOGIT + np.asarray(z, dtype=float))))


def midrank_percentile(population: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Share of ``population`` (sorted) below each value plus half of those equal to it, kept
    within half an account of 0 and 1 (so the normal score stays finite)."""
    m = len(population)
    out = np.full(len(values), np.nan)
    if m == 0:
        return out
    below = np.searchsorted(population, values, side="left")
    upto = np.searchsorted(population, values, side="right")
    p = (below + 0.5 * (upto - below)) / m
    return np.clip(p, 0.5 / m, 1.0 - 0.5 / m)


def _position_column(raw: np.ndarray, baselines: Baselines, j: int, rows: np.ndarray) -> np.ndarray:
    """Normalized values of signal ``j`` under the baselines' position method."""
    sign = 1.0 if baselines.higher_is_better[j] else -1.0
    if baselines.method == "robust_z":
        with np.errstate(invalid="ignore"):
            z = sign * (raw - baselines.center[rows, j]) / baselines.scale[rows, j]
        return position_score(z)
    out = np.full(len(raw), np.nan)
    distinct, inverse = distinct_codes(np.asarray(rows, dtype=np.int64))
    present = ~np.isnan(raw)
    for code, row in enumerate(distinct):
        at = np.flatnonzero((inverse == code) & present)
        if len(at):
            p = midrank_percentile(baselines.ranked[j][row], raw[at])
            out[at] = position_score(ndtri(p if sign > 0 else 1.0 - p))
    return out


def normalize_matrix(raw: np.ndarray, worst: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Linear 0-100 between worst and best, clipped; NaN (no data) stays NaN.

    Because best and worst are ordered by the signal's direction, this one formula serves
    higher- and lower-is-better signals alike, and it is monotone in the good direction.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = (raw - worst) * (100.0 / (best - worst))
    return np.clip(scaled, 0.0, 100.0)


def normalize_against(raw: np.ndarray, baselines: Baselines, rows: np.ndarray) -> np.ndarray:
    """``normalize_matrix`` with each account's bounds taken from its baseline row.

    A block of accounts at a time, column by column, gathering from the small per-segment
    tables: no accounts x signals bound matrices are materialized, and each block's
    temporaries stay in the CPU cache.
    """
    n, n_sig = raw.shape
    out = np.empty(raw.shape, dtype=float, order="F")
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = 100.0 / (baselines.best - baselines.worst)
    worst = np.ascontiguousarray(baselines.worst.T)  # signals x segments: one gather table per column
    scale = np.ascontiguousarray(scale.T)
    rows = np.asarray(rows)
    position = baselines.position if baselines.position is not None else np.zeros(n_sig, dtype=bool)
    linear = [j for j in range(n_sig) if not position[j]]
    for start in range(0, n, BLOCK_ROWS):
        block = slice(start, min(n, start + BLOCK_ROWS))
        at = rows[block]
        for j in linear:
            col = out[block, j]
            np.subtract(raw[block, j], worst[j].take(at), out=col)
            np.multiply(col, scale[j].take(at), out=col)
            np.clip(col, 0.0, 100.0, out=col)
    for j in np.flatnonzero(position):
        out[:, j] = _position_column(raw[:, j], baselines, int(j), rows)
    return out


def normalize_signals(
    frame: pd.DataFrame, config: ModelConfig, baselines: Baselines | None = None
) -> Normalized:
    """Normalize the model's signals of ``frame`` (one row per account) to 0-100.

    ``frame`` needs ``plan`` and ``tenure_days`` besides the signal columns. When
    ``baselines`` is None they are computed from ``frame`` itself (the date's population);
    pass the baselines of another frame to hold the yardstick fixed (e.g. to compare an
    account with its own past values, or to state monotonicity).
    """
    raw = raw_signal_matrix(frame, config)
    plans = _plans(frame)
    plan_codes, plan_index = pd.factorize(plans)
    plan_names = [str(p) for p in plan_index]
    tenure = (
        frame["tenure_days"].to_numpy(dtype=float, na_value=np.nan)
        if "tenure_days" in frame
        else np.full(len(frame), np.nan)
    )
    band_idx = tenure_band_index(tenure, config)
    band_names = [b.name for b in config.baselines.tenure_bands]
    n_bands = len(band_names)
    seg_codes = plan_codes.astype(np.int64) * n_bands + band_idx
    if baselines is None:
        baselines, rows = compute_baselines(raw, plan_codes, plan_names, band_idx, config)
    else:
        lookup = {seg: i for i, seg in enumerate(baselines.segments)}
        distinct, inverse = distinct_codes(seg_codes)
        resolved = np.array(
            [lookup.get((plan_names[c // n_bands], band_names[c % n_bands]), len(baselines.segments) - 1) for c in distinct],
            dtype=np.intp,
        )
        rows = resolved[inverse] if len(seg_codes) else np.zeros(0, dtype=np.intp)
    distinct, segment_code = distinct_codes(seg_codes)
    labels = [f"{plan_names[c // n_bands]}/{band_names[c % n_bands]}" for c in distinct]
    values = normalize_against(raw, baselines, rows)
    return Normalized(values, raw, rows, baselines, segment_code, labels, plans)
