"""The weighted composite: normalized signals -> dimension scores -> one 0-100 health score.

Weights come from the account's segment model (``models`` in the config): each signal's
effective weight is its dimension's weight times its weight within the dimension. Missing
data is reweighted, never scored as zero:

* a missing signal's weight is spread over the present signals of its dimension (the
  dimension score is the weighted mean of the signals it has);
* a dimension with no data at all gives its weight to the other dimensions, in proportion
  to their weights (the composite is the weighted mean of the dimensions it has);
* a signal that is *constant over the scored population* on the date - at least
  ``baselines.min_segment_size`` accounts hold it and every one has the same normalized value
  (``constant_signals``) - says nothing about any account that day: it carries no weight, its
  weight is redistributed exactly like a missing signal's, and ``Composite.constant`` says so
  (a company without support tickets has ``open_tickets`` 0 for everyone, which would
  otherwise add the same 100 to every score and squeeze the rest of the scale);
* an account with no informative signal at all has **no score** (NaN here; the engine does
  not write a row for it): not a neutral 50 that would look like data.

``coverage`` is the share of the model's configured weight backed by informative data (present
and not constant that day). An account below ``coverage.minimum`` is still scored but flagged
``low_coverage``. ``absent_dimensions`` marks, per account, the dimensions the model weights
that had no informative signal (their weight went to the others). The composite is rounded
half up to an integer and zoned with the config's inclusive bounds. A model with a ``score_calibration`` section (a
recalibrated version; v1 has none) first maps the composite of every account with data onto
the score scale through its monotone knots (``ScoreCalibration.apply``), then rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from customer_health.scoring.model_config import DIMENSIONS, ModelConfig


@dataclass(frozen=True)
class Composite:
    """Scores of a batch of accounts (arrays aligned with the input rows).

    ``weights`` holds each signal's effective weight after reweighting (accounts x signals,
    0 for missing and constant signals, each row summing to 1 when the account has any
    informative data), so that ``weights * (normalized - 50)`` summed over a row is exactly
    ``composite - 50``: the contributions the explanations rank. ``raw_score`` is the unrounded
    score: the composite itself, or its calibrated value when the model has a
    ``score_calibration``. ``score`` is the rounded score as floats, NaN for an account without
    informative data (``scored`` False). ``constant`` flags the signals constant over the
    population (config order); ``absent_dimensions`` (accounts x dimensions) the weighted
    dimensions an account had no informative signal in.
    """

    raw_score: np.ndarray
    score: np.ndarray
    coverage: np.ndarray
    low_coverage: np.ndarray
    dimension_scores: np.ndarray
    weights: np.ndarray
    composite: np.ndarray | None = None  # the weighted composite before any score calibration
    constant: np.ndarray | None = None
    absent_dimensions: np.ndarray | None = None

    @property
    def scored(self) -> np.ndarray:
        """True for the accounts that have a score (some informative data)."""
        return ~np.isnan(self.score)

    def take(self, rows: np.ndarray) -> Composite:
        """The same composite restricted to ``rows`` (population facts such as ``constant`` kept)."""
        return Composite(
            raw_score=self.raw_score[rows], score=self.score[rows], coverage=self.coverage[rows],
            low_coverage=self.low_coverage[rows], dimension_scores=self.dimension_scores[rows],
            weights=np.asfortranarray(self.weights[rows]),
            composite=None if self.composite is None else self.composite[rows], constant=self.constant,
            absent_dimensions=None if self.absent_dimensions is None else self.absent_dimensions[rows],
        )  # fmt: skip


def round_half_up(values: np.ndarray | float) -> np.ndarray:
    """Round to integers, halves up (74.5 -> 75, 74.49 -> 74), as the model config states.

    Values are first rounded to 9 decimals so that float noise such as 74.49999999999999
    from a weighted sum of exact halves does not flip a score across a zone bound.
    """
    return np.floor(np.round(np.asarray(values, dtype=float), 9) + 0.5).astype(np.int64)


# Rows per block: the per-block account vectors (a few dozen of them) stay in the CPU cache
# instead of streaming a million-row temporary through memory for every arithmetic step.
BLOCK_ROWS = 1 << 16
# Normalized values (0-100) closer than this are the same value.
CONSTANT_TOLERANCE = 1e-9


def constant_signals(normalized: np.ndarray, min_population: int) -> np.ndarray:
    """For each signal (column), True when at least ``min_population`` accounts hold it and all
    of them have the same normalized value: it ranks no account against another that day.

    Below ``min_population`` holders (a handful of accounts, a refresh of one) sameness is not
    evidence of a constant, and the signal keeps its weight.
    """
    n, n_sig = normalized.shape
    out = np.zeros(n_sig, dtype=bool)
    for j in range(n_sig):
        col = normalized[:, j]
        present = col[~np.isnan(col)]
        if len(present) >= max(min_population, 2):
            out[j] = float(present.max() - present.min()) <= CONSTANT_TOLERANCE
    return out


def composite_scores(
    normalized: np.ndarray, model_index: np.ndarray, config: ModelConfig, *, constant: np.ndarray | None = None
) -> Composite:
    """Weighted composite of normalized signals (accounts x signals, NaN = no data).

    ``model_index`` picks each account's segment model (row of ``config.models``). The rows are
    the date's scored population: signals constant over them carry no weight
    (``constant_signals``), unless ``constant`` gives that mask (a subset of a population). Works a
    block of rows at a time, column by column with per-dimension accumulators; every row's
    arithmetic is independent of the others, so blocking changes no result.
    """
    n, n_sig = normalized.shape
    if constant is None:
        constant = constant_signals(normalized, config.baselines.min_segment_size)
    weight_table = config.weight_matrix()  # models x signals
    dim_of = config.dimension_index()
    n_dim = len(DIMENSIONS)
    dim_table = np.zeros((weight_table.shape[0], n_dim))
    for j in range(n_sig):
        dim_table[:, dim_of[j]] += weight_table[:, j]
    model_index = np.asarray(model_index)
    raw_score = np.empty(n)
    coverage = np.empty(n)
    dimension_scores = np.empty((n, n_dim))
    weights = np.empty((n, n_sig), dtype=float, order="F")
    for start in range(0, n, BLOCK_ROWS):
        block = slice(start, min(n, start + BLOCK_ROWS))
        _composite_block(
            normalized[block], model_index[block], weight_table, dim_table, dim_of, constant,
            raw_score[block], coverage[block], dimension_scores[block], weights[block],
        )  # fmt: skip
    raw_score = np.clip(raw_score, 0.0, 100.0)  # NaN (no informative data) stays NaN
    composite = raw_score
    # --- score calibration (begin): accounts with data go through the model's knots; an
    # account without data has no score to map. Without the section (v1) the score is the
    # composite itself.
    if config.score_calibration is not None:
        raw_score = np.where(coverage > 0, np.clip(config.score_calibration.apply(composite), 0.0, 100.0), composite)
    # --- score calibration (end)
    has = ~np.isnan(raw_score)
    score = np.full(n, np.nan)
    score[has] = np.clip(round_half_up(raw_score[has]), 0, 100)
    configured = dim_table.take(model_index, axis=0) > 0
    return Composite(
        raw_score=raw_score,
        score=score,
        coverage=coverage,
        low_coverage=coverage < config.coverage.minimum,
        dimension_scores=dimension_scores,
        weights=weights,
        composite=composite,
        constant=constant,
        absent_dimensions=configured & np.isnan(dimension_scores),
    )


def _composite_block(
    normalized: np.ndarray, model_index: np.ndarray, weight_table: np.ndarray, dim_table: np.ndarray,
    dim_of: np.ndarray, constant: np.ndarray,
    raw_score: np.ndarray, coverage: np.ndarray, dimension_scores: np.ndarray, weights: np.ndarray,
) -> None:
    """``composite_scores`` for one block of rows, written into the given output views."""
    n, n_sig = normalized.shape
    n_dim = dim_table.shape[1]
    dim_configured = [dim_table[:, d].take(model_index) for d in range(n_dim)]
    dim_held = [np.zeros(n) for _ in range(n_dim)]
    dim_sum = [np.zeros(n) for _ in range(n_dim)]
    for j in range(n_sig):
        value = normalized[:, j]
        present = ~np.isnan(value) & ~constant[j]  # a constant signal holds no weight
        held = weights[:, j]
        np.multiply(weight_table[:, j].take(model_index), present, out=held)
        d = dim_of[j]
        dim_held[d] += held
        dim_sum[d] += held * np.where(present, value, 0.0)
    dimension_scores.fill(np.nan)
    dim_weight = np.zeros((n, n_dim))
    for d in range(n_dim):
        has = dim_held[d] > 0
        dimension_scores[has, d] = dim_sum[d][has] / dim_held[d][has]
        dim_weight[has, d] = dim_configured[d][has]
    total = dim_weight.sum(axis=1)
    has_any = total > 0
    safe_total = np.where(has_any, total, 1.0)
    raw_score[:] = np.where(
        has_any,
        np.nansum(dim_weight * np.nan_to_num(dimension_scores), axis=1) / safe_total,
        np.nan,
    )
    # Effective weight of a present signal: its share of its dimension's held weight, times
    # its dimension's share of the weight of the dimensions with data.
    factor = np.zeros((n, n_dim))
    for d in range(n_dim):
        has = dim_held[d] > 0
        factor[has, d] = dim_weight[has, d] / dim_held[d][has] / safe_total[has]
    held_total = np.zeros(n)
    for j in range(n_sig):
        held_total += weights[:, j]
        weights[:, j] *= factor[:, dim_of[j]]
    configured_total = sum(dim_configured)
    np.divide(held_total, configured_total, out=coverage, where=configured_total > 0)
    coverage[~(configured_total > 0)] = 0.0


def _zone_lookup(config: ModelConfig) -> tuple[list[str], np.ndarray]:
    names = [z.name for z in config.zones]
    table = np.empty(101, dtype=np.int64)
    for i, z in enumerate(config.zones):
        table[z.min : z.max + 1] = i
    return names, table


def zone_for(score: int, config: ModelConfig) -> str:
    """The zone of one integer score (bounds inclusive, from the config)."""
    if not 0 <= int(score) <= 100 or int(score) != score:
        raise ValueError(f"score {score!r} is not an integer in 0-100; round it with round_half_up first")
    for z in config.zones:
        if z.min <= score <= z.max:
            return z.name
    raise AssertionError("validated zones cover 0-100")  # pragma: no cover


def zones(scores: np.ndarray | pd.Series, config: ModelConfig) -> pd.Categorical:
    """Zones of many integer scores at once (a table lookup, no Python loop per account).

    Missing scores give a missing zone.
    """
    names, table = _zone_lookup(config)
    values = np.asarray(scores, dtype=float)
    valid = ~np.isnan(values)
    codes = np.full(len(values), -1, dtype=np.int64)
    codes[valid] = table[np.clip(values[valid], 0, 100).astype(np.int64)]
    return pd.Categorical.from_codes(codes, categories=names)
