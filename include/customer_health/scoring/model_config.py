"""The health model's configuration: a versioned YAML file, validated on load.

``load_model_config`` turns ``config/model_v1.yaml`` (or any path or YAML text) into a frozen
:class:`ModelConfig`. Everything that makes a score - signals, normalization baselines,
weights per segment model, zone bounds, trend windows, priority and explanation settings -
comes from there; the code holds no thresholds of its own. A bad file fails at load with a
:class:`ModelConfigError` that names the file, the version and the problem, e.g.::

    ModelConfigError: weights for segment 'new' sum to 0.93, expected 1.0
    (model v1, include/customer_health/config/model_v1.yaml)

A config weights signals the product defines (``scoring/signals.py``, ``known_signals``) and no
others; each signal's dimension and direction come from its definition (a config may state
them, and must then agree).

A top-level ``actions:`` mapping belongs to the action rules; it is passed through untouched
as :attr:`ModelConfig.actions`.

An optional ``score_calibration:`` section (added by recalibrated versions; v1 has none, so its
scores are the plain weighted composite) maps the composite onto the score scale before
rounding - see :class:`ScoreCalibration`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from customer_health.scoring.signal_definition import DIMENSIONS, DIRECTIONS

METHODS: tuple[str, ...] = ("segment_target", "segment_range", "fixed_range")

# How a population-based signal (``segment_target`` / ``segment_range``) is placed against its
# baseline segment (``baselines.method``; ``normalize.py`` states each, docs/DECISIONS.md why the
# default won on held-out churn):
#   segment_relative:   linear between the signal's configured bounds (the first method);
#   segment_percentile: the account's mid-rank percentile in its segment, as a normal score;
#   robust_z:           (value - segment median) / (1.4826 x segment MAD), floored by min_span.
# Both position methods map the position onto 0-100 with one logistic curve (median -> 75).
NORMALIZATION_METHODS: tuple[str, ...] = ("segment_relative", "segment_percentile", "robust_z")
DEFAULT_NORMALIZATION_METHOD = "segment_relative"

# The seed method's "typical weighting distribution" (seeds/000: 35-45 % engagement, 20-30 %
# financial, 15-20 % support, 10-15 % sentiment). A model outside it must say so explicitly.
SEED_DIMENSION_WEIGHT_RANGES: Mapping[str, tuple[float, float]] = {
    "engagement": (0.35, 0.45),
    "financial": (0.20, 0.30),
    "support": (0.15, 0.20),
    "sentiment": (0.10, 0.15),
}


def known_signals() -> Mapping[str, Any]:
    """The signals a model may weight: every signal definition (``scoring/signals.py``) by key."""
    from customer_health.scoring.signal_catalog import SIGNALS

    return SIGNALS


WEIGHT_TOLERANCE = 1e-6


class ModelConfigError(ValueError):
    """The model configuration is invalid; the message names the file, version and problem."""


def default_model_path() -> Path:
    """The model configuration shipped with the package (``config/model_v1.yaml``)."""
    return Path(__file__).resolve().parents[1] / "config" / "model_v1.yaml"


# --------------------------------------------------------------------------- config objects
@dataclass(frozen=True)
class Normalization:
    """How one signal becomes 0-100: linear from ``worst`` (0) to ``best`` (100), clipped.

    ``segment_target`` fixes ``worst`` and takes ``best`` from the segment's
    ``target_percentile``; ``segment_range`` takes both from segment percentiles;
    ``fixed_range`` fixes both. ``min_span`` keeps data-driven bounds apart, so a segment where
    everyone is at zero does not make zero "healthy".
    """

    method: str
    worst: float | None = None
    best: float | None = None
    target_percentile: float | None = None
    worst_percentile: float | None = None
    best_percentile: float | None = None
    min_span: float = 0.0

    @property
    def uses_population(self) -> bool:
        """True when the bounds come from the date's population (segment percentiles)."""
        return self.method != "fixed_range"


@dataclass(frozen=True)
class SignalConfig:
    """One signal the model uses."""

    key: str
    dimension: str
    direction: str
    normalization: Normalization

    @property
    def higher_is_better(self) -> bool:
        """True for signals where a larger raw value is healthier."""
        return self.direction == "higher_is_better"


@dataclass(frozen=True)
class SegmentModel:
    """Weights for one segment of accounts (e.g. ``new`` vs ``established``)."""

    name: str
    tenure_below_days: int | None
    dimension_weights: Mapping[str, float]
    signal_weights: Mapping[str, Mapping[str, float]]

    def signal_weight(self, signal: str, dimension: str) -> float:
        """The signal's weight within its dimension (0 when the model does not use it)."""
        return float(self.signal_weights.get(dimension, {}).get(signal, 0.0))


@dataclass(frozen=True)
class TenureBand:
    """A tenure band of the baseline segments (plan x tenure band)."""

    name: str
    below_days: int | None


@dataclass(frozen=True)
class Zone:
    """A health zone: inclusive integer bounds."""

    name: str
    min: int
    max: int


@dataclass(frozen=True)
class BaselineConfig:
    """Segment baselines: minimum population, tenure bands and how a population-based signal is
    placed against its segment (``method``, one of ``NORMALIZATION_METHODS``; optional in the
    YAML, ``DEFAULT_NORMALIZATION_METHOD`` when absent)."""

    min_segment_size: int
    tenure_bands: tuple[TenureBand, ...]
    method: str = DEFAULT_NORMALIZATION_METHOD


@dataclass(frozen=True)
class CoverageConfig:
    """When a score is trusted.

    ``no_data_score`` is still read (v1 states it, and its text is registered by sha256) but no
    longer used: an account without any informative signal has no score at all (NULL, not a
    neutral 50 that looks like data; ``scoring/score.py``).
    """

    minimum: float
    no_data_score: float


@dataclass(frozen=True)
class TrendConfig:
    """Trend windows (days) and the slope fit."""

    delta_windows_days: tuple[int, ...]
    slope_window_days: int
    slope_sample_every_days: int
    slope_min_points: int
    previous_zone_lookback_days: int

    def history_offsets(self) -> list[int]:
        """Days before D whose scores the trends need (deltas and slope samples), ascending."""
        offsets = set(self.delta_windows_days)
        offsets.update(range(self.slope_sample_every_days, self.slope_window_days + 1, self.slope_sample_every_days))
        offsets.add(self.slope_window_days)
        return sorted(offsets)


@dataclass(frozen=True)
class PriorityConfig:
    """How CSM priority weighs level, trajectory and account value."""

    level_weight: float
    decline_weight: float
    recovery_credit: float
    arr_reference: float
    arr_log_weight: float


@dataclass(frozen=True)
class ExplanationConfig:
    """How many drivers to keep and when a change is worth telling."""

    driver_count: int
    change_count: int
    change_window_days: int
    min_change_points: float
    min_delta_for_change_story: float


# --- score calibration (begin) ---------------------------------------------------------
@dataclass(frozen=True)
class ScoreCalibration:
    """Monotone piecewise-linear map from the weighted composite (0-100) to the score (0-100).

    The zone bounds are fixed by the method (At Risk below 50), so a model whose composite is
    "harsher" or "milder" than the bounds assume is put on the score scale here: the score is
    ``np.interp(composite, composite_knots, score_knots)``, applied before half-up rounding to
    accounts with data (an account without data has no score). Knots start
    at (0, 0), end at (100, 100) and rise strictly in both coordinates, so the map keeps the
    ranking of accounts and every zone reachable. Recalibration fits the middle knot on its
    training periods so that the At Risk bound sits where the seed's targets are met there
    (``validation.recalibrate.fit_score_calibration``); ``fitted`` records how (documentation,
    not used for scoring).
    """

    composite_knots: tuple[float, ...]
    score_knots: tuple[float, ...]
    fitted: Mapping[str, Any] = field(default_factory=dict)

    def apply(self, composite: np.ndarray) -> np.ndarray:
        """The calibrated (unrounded) score of each composite value."""
        return np.interp(np.asarray(composite, dtype=float), self.composite_knots, self.score_knots)

    def composite_at(self, score: float) -> float:
        """The composite value that maps to ``score`` (the inverse map)."""
        return float(np.interp(float(score), self.score_knots, self.composite_knots))


# --- score calibration (end) -----------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """A validated, versioned health model."""

    version: str
    description: str
    source: str
    yaml_text: str
    sha256: str
    signals: tuple[SignalConfig, ...]
    models: tuple[SegmentModel, ...]
    baselines: BaselineConfig
    zones: tuple[Zone, ...]
    rounding: str
    coverage: CoverageConfig
    trends: TrendConfig
    priority: PriorityConfig
    explanations: ExplanationConfig
    allow_out_of_range_weights: bool = False
    actions: dict[str, Any] = field(default_factory=dict)
    score_calibration: ScoreCalibration | None = None  # None: score = composite (v1)

    @property
    def signal_keys(self) -> list[str]:
        """The model's signals in configuration order (the column order used everywhere)."""
        return [s.key for s in self.signals]

    def signal(self, key: str) -> SignalConfig:
        """The configuration of signal ``key``."""
        for s in self.signals:
            if s.key == key:
                return s
        raise KeyError(f"signal {key!r} is not part of model {self.version}")

    @property
    def default_model(self) -> SegmentModel:
        """The segment model for accounts no tenure rule selects."""
        return next(m for m in self.models if m.tenure_below_days is None)

    def weight_matrix(self) -> np.ndarray:
        """Effective weights (dimension weight x signal weight), one row per segment model."""
        return np.array(
            [
                [m.dimension_weights.get(s.dimension, 0.0) * m.signal_weight(s.key, s.dimension) for s in self.signals]
                for m in self.models
            ],
            dtype=float,
        )

    def dimension_index(self) -> np.ndarray:
        """For each signal (config order), the index of its dimension in ``DIMENSIONS``."""
        return np.array([DIMENSIONS.index(s.dimension) for s in self.signals], dtype=np.intp)


# --------------------------------------------------------------------------- loading
def load_model_config(path_or_text: str | Path | None = None) -> ModelConfig:
    """Load and validate a model configuration.

    ``path_or_text`` is a path to a YAML file, the YAML text itself, or None for the shipped
    default (:func:`default_model_path`). Raises :class:`ModelConfigError` naming the file,
    the version and the problem.
    """
    if path_or_text is None:
        path_or_text = default_model_path()
    if isinstance(path_or_text, Path) or ("\n" not in str(path_or_text) and str(path_or_text).endswith((".yaml", ".yml"))):
        path = Path(path_or_text)
        source = _display_path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelConfigError(f"cannot read model config {source}: {exc}") from exc
    else:
        text = str(path_or_text)
        source = "<text>"
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelConfigError(f"model config is not valid YAML: {exc} ({source})") from exc
    if not isinstance(raw, dict):
        raise ModelConfigError(f"model config must be a YAML mapping at the top level ({source})")
    return _Parser(raw, text, source).parse()


def _display_path(path: Path) -> str:
    try:
        from customer_health.settings import PROJECT_ROOT

        return str(path.resolve().relative_to(PROJECT_ROOT))
    except (ValueError, ImportError):
        return str(path)


class _Parser:
    """Turns the raw YAML mapping into a ModelConfig, raising precise errors."""

    def __init__(self, raw: dict[str, Any], text: str, source: str) -> None:
        self.raw = raw
        self.text = text
        self.source = source
        self.version = str(raw.get("version") or "?")

    def fail(self, problem: str) -> ModelConfigError:
        return ModelConfigError(f"{problem} (model {self.version}, {self.source})")

    # -- helpers
    def section(self, name: str, container: Mapping[str, Any] | None = None) -> dict[str, Any]:
        value = (self.raw if container is None else container).get(name)
        if not isinstance(value, dict):
            raise self.fail(f"section '{name}' is missing or not a mapping")
        return value

    def number(self, value: Any, what: str, *, lo: float | None = None, hi: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(f"{what} must be a finite number, got {value!r}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.fail(f"{what} is {value!r}, expected between {lo} and {hi}")
        return float(value)

    def integer(self, value: Any, what: str, *, lo: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise self.fail(f"{what} must be an integer >= {lo}, got {value!r}")
        return int(value)

    # -- sections
    def parse(self) -> ModelConfig:
        version = self.raw.get("version")
        if not isinstance(version, str) or not version.strip():
            raise self.fail("'version' is missing; every model needs a version string such as v1")
        allow = self.raw.get("allow_out_of_range_weights", False)
        if not isinstance(allow, bool):
            raise self.fail(f"allow_out_of_range_weights must be true or false, got {allow!r}")
        actions = self.raw.get("actions") or {}
        if not isinstance(actions, dict):
            raise self.fail("section 'actions' must be a mapping")
        signals = self.parse_signals()
        return ModelConfig(
            version=version,
            description=str(self.raw.get("description") or ""),
            source=self.source,
            yaml_text=self.text,
            sha256=hashlib.sha256(self.text.encode("utf-8")).hexdigest(),
            signals=signals,
            models=self.parse_models(signals, allow),
            baselines=self.parse_baselines(),
            zones=self.parse_zones(),
            rounding=self.parse_rounding(),
            coverage=self.parse_coverage(),
            trends=self.parse_trends(),
            priority=self.parse_priority(),
            explanations=self.parse_explanations(),
            allow_out_of_range_weights=allow,
            actions=actions,
            score_calibration=self.parse_score_calibration(),
        )

    def parse_signals(self) -> tuple[SignalConfig, ...]:
        """The weighted signals. Each must be defined (``scoring/signals.py``); its dimension and
        direction come from the definition, and a config that states them must agree."""
        section = self.section("signals")
        catalog = known_signals()
        out = []
        for key, spec in section.items():
            if key not in catalog:
                raise self.fail(f"unknown signal key '{key}'; known signals: {', '.join(sorted(catalog))}")
            if not isinstance(spec, dict):
                raise self.fail(f"signal '{key}' must be a mapping with a normalization (and optionally dimension, direction)")
            defined = catalog[key]
            dimension = spec.get("dimension", defined.dimension)
            if dimension not in DIMENSIONS:
                raise self.fail(f"signal '{key}' has dimension {dimension!r}, expected one of {', '.join(DIMENSIONS)}")
            direction = spec.get("direction", defined.direction)
            if direction not in DIRECTIONS:
                raise self.fail(f"signal '{key}' has direction {direction!r}, expected one of {', '.join(DIRECTIONS)}")
            for attr, mine in (("dimension", dimension), ("direction", direction)):
                theirs = getattr(defined, attr)
                if theirs != mine:
                    raise self.fail(f"signal '{key}' has {attr} {mine!r} but the signal catalogue says {theirs!r}")
            out.append(SignalConfig(key, dimension, direction, self.parse_normalization(key, direction, spec)))
        if not out:
            raise self.fail("section 'signals' is empty")
        return tuple(out)

    def parse_normalization(self, key: str, direction: str, spec: dict[str, Any]) -> Normalization:
        norm = spec.get("normalization")
        if not isinstance(norm, dict):
            raise self.fail(f"signal '{key}' has no 'normalization' mapping")
        method = norm.get("method")
        if method not in METHODS:
            raise self.fail(f"signal '{key}' has normalization method {method!r}, expected one of {', '.join(METHODS)}")
        higher = direction == "higher_is_better"
        what = f"signal '{key}'"
        min_span = self.number(norm.get("min_span", 0.0), f"{what} min_span", lo=0.0)
        if method == "fixed_range":
            worst = self.number(norm.get("worst"), f"{what} worst")
            best = self.number(norm.get("best"), f"{what} best")
            if (best > worst) != higher or best == worst:
                raise self.fail(
                    f"{what} is {direction} but its fixed_range has best={best} and worst={worst}; "
                    f"best must be {'above' if higher else 'below'} worst"
                )
            return Normalization(method, worst=worst, best=best)
        if method == "segment_target":
            worst = self.number(norm.get("worst"), f"{what} worst")
            target = self.number(norm.get("target_percentile"), f"{what} target_percentile", lo=0.0, hi=1.0)
            if min_span <= 0:
                raise self.fail(f"{what} segment_target needs min_span > 0 so that best never equals worst")
            return Normalization(method, worst=worst, target_percentile=target, min_span=min_span)
        worst_p = self.number(norm.get("worst_percentile"), f"{what} worst_percentile", lo=0.0, hi=1.0)
        best_p = self.number(norm.get("best_percentile"), f"{what} best_percentile", lo=0.0, hi=1.0)
        if (best_p > worst_p) != higher or best_p == worst_p:
            raise self.fail(
                f"{what} is {direction} but its segment_range has best_percentile={best_p} and "
                f"worst_percentile={worst_p}; best must be {'above' if higher else 'below'} worst"
            )
        if min_span <= 0:
            raise self.fail(f"{what} segment_range needs min_span > 0 so that best never equals worst")
        return Normalization(method, worst_percentile=worst_p, best_percentile=best_p, min_span=min_span)

    def parse_models(self, signals: tuple[SignalConfig, ...], allow_out_of_range: bool) -> tuple[SegmentModel, ...]:
        section = self.section("models")
        by_key = {s.key: s for s in signals}
        models = []
        for name, spec in section.items():
            if not isinstance(spec, dict):
                raise self.fail(f"model '{name}' must be a mapping")
            tenure = spec.get("tenure_below_days")
            tenure = None if tenure is None else self.integer(tenure, f"model '{name}' tenure_below_days", lo=1)
            dims = self.section("dimension_weights", spec)
            for d in dims:
                if d not in DIMENSIONS:
                    raise self.fail(f"model '{name}' weights unknown dimension '{d}', expected {', '.join(DIMENSIONS)}")
            dim_weights = {d: self.number(dims.get(d, 0.0), f"model '{name}' weight of {d}", lo=0.0, hi=1.0) for d in DIMENSIONS}
            total = sum(dim_weights.values())
            if abs(total - 1.0) > WEIGHT_TOLERANCE:
                raise self.fail(f"dimension weights for segment '{name}' sum to {total:.6g}, expected 1.0")
            if not allow_out_of_range:
                for d, (lo, hi) in SEED_DIMENSION_WEIGHT_RANGES.items():
                    if not lo - WEIGHT_TOLERANCE <= dim_weights[d] <= hi + WEIGHT_TOLERANCE:
                        raise self.fail(
                            f"segment '{name}' weights {d} at {dim_weights[d]:.0%}, outside the seeds' range "
                            f"{lo:.0%}-{hi:.0%}; fix the weight or set allow_out_of_range_weights: true"
                        )
            raw_signal_weights = self.section("signal_weights", spec)
            signal_weights: dict[str, dict[str, float]] = {}
            for d, weights in raw_signal_weights.items():
                if d not in DIMENSIONS or not isinstance(weights, dict):
                    raise self.fail(f"model '{name}' signal_weights has unknown dimension '{d}' or it is not a mapping")
                for key in weights:
                    if key not in by_key:
                        raise self.fail(f"model '{name}' weights unknown signal key '{key}' (not in 'signals')")
                    if by_key[key].dimension != d:
                        raise self.fail(
                            f"model '{name}' weights signal '{key}' under {d}, but it is a {by_key[key].dimension} signal"
                        )
                signal_weights[d] = {
                    k: self.number(w, f"model '{name}' weight of {k}", lo=0.0, hi=1.0) for k, w in weights.items()
                }
            for d in DIMENSIONS:
                if dim_weights[d] == 0:
                    continue
                total = sum(signal_weights.get(d, {}).values())
                if abs(total - 1.0) > WEIGHT_TOLERANCE:
                    raise self.fail(f"weights for segment '{name}' dimension {d} sum to {total:.6g}, expected 1.0")
            models.append(SegmentModel(name, tenure, dim_weights, signal_weights))
        defaults = [m.name for m in models if m.tenure_below_days is None]
        if len(defaults) != 1:
            raise self.fail(
                f"exactly one model must have no tenure_below_days (the default), found {len(defaults)}: {defaults}"
            )
        tenures = [m.tenure_below_days for m in models if m.tenure_below_days is not None]
        if len(set(tenures)) != len(tenures):
            raise self.fail(f"two models share the same tenure_below_days: {tenures}")
        # Tenure rules are tried shortest first; the default model comes last.
        models.sort(key=lambda m: (m.tenure_below_days is None, m.tenure_below_days or 0))
        return tuple(models)

    def parse_baselines(self) -> BaselineConfig:
        section = self.section("baselines")
        size = self.integer(section.get("min_segment_size"), "baselines.min_segment_size", lo=1)
        raw_bands = section.get("tenure_bands")
        if not isinstance(raw_bands, list) or not raw_bands:
            raise self.fail("baselines.tenure_bands must be a non-empty list")
        bands = []
        previous = 0
        for i, band in enumerate(raw_bands):
            if not isinstance(band, dict) or not band.get("name"):
                raise self.fail(f"baselines.tenure_bands[{i}] needs a name")
            below = band.get("below_days")
            last = i == len(raw_bands) - 1
            if below is None and not last:
                raise self.fail(f"tenure band '{band['name']}' has no below_days but is not the last band")
            if below is not None:
                below = self.integer(below, f"tenure band '{band['name']}' below_days", lo=1)
                if below <= previous:
                    raise self.fail(f"tenure bands must ascend: '{band['name']}' below_days {below} <= {previous}")
                if last:
                    raise self.fail(f"the last tenure band '{band['name']}' must be open-ended (no below_days)")
                previous = below
            bands.append(TenureBand(str(band["name"]), below))
        method = section.get("method", DEFAULT_NORMALIZATION_METHOD)
        if method not in NORMALIZATION_METHODS:
            raise self.fail(f"baselines.method is {method!r}, expected one of {', '.join(NORMALIZATION_METHODS)}")
        return BaselineConfig(size, tuple(bands), method)

    def parse_zones(self) -> tuple[Zone, ...]:
        raw = self.raw.get("zones")
        if not isinstance(raw, list) or not raw:
            raise self.fail("'zones' must be a non-empty list of {name, min, max}")
        zones = []
        for z in raw:
            if not isinstance(z, dict) or not z.get("name"):
                raise self.fail(f"zone {z!r} needs a name, min and max")
            lo = self.integer(z.get("min"), f"zone '{z['name']}' min")
            hi = self.integer(z.get("max"), f"zone '{z['name']}' max")
            if lo > hi:
                raise self.fail(f"zone '{z['name']}' has min {lo} above max {hi}")
            zones.append(Zone(str(z["name"]), lo, hi))
        ordered = sorted(zones, key=lambda z: z.min)
        if ordered[0].min != 0 or ordered[-1].max != 100:
            raise self.fail(f"zones cover {ordered[0].min}-{ordered[-1].max}, expected exactly 0-100")
        for a, b in zip(ordered, ordered[1:], strict=False):
            if b.min <= a.max:
                raise self.fail(f"zones '{a.name}' ({a.min}-{a.max}) and '{b.name}' ({b.min}-{b.max}) overlap")
            if b.min != a.max + 1:
                raise self.fail(f"zones leave a gap between '{a.name}' (max {a.max}) and '{b.name}' (min {b.min})")
        return tuple(zones)

    # --- score calibration (begin) -----------------------------------------------------
    def parse_score_calibration(self) -> ScoreCalibration | None:
        """The optional ``score_calibration`` section (absent: None, the score is the composite)."""
        if "score_calibration" not in self.raw or self.raw["score_calibration"] is None:
            return None
        s = self.raw["score_calibration"]
        if not isinstance(s, dict):
            raise self.fail("section 'score_calibration' must be a mapping with 'knots' (and optionally 'fitted')")
        unknown = set(s) - {"knots", "fitted"}
        if unknown:
            raise self.fail(f"score_calibration has unknown keys {sorted(unknown)}; expected 'knots' and optionally 'fitted'")
        knots = s.get("knots")
        if not isinstance(knots, list) or len(knots) < 2:
            raise self.fail(
                "score_calibration.knots must be a list of at least two {composite, score} points, "
                "e.g. [{composite: 0, score: 0}, {composite: 60, score: 49.5}, {composite: 100, score: 100}]"
            )
        xs, ys = [], []
        for i, knot in enumerate(knots):
            if not isinstance(knot, dict) or set(knot) != {"composite", "score"}:
                raise self.fail(f"score_calibration.knots[{i}] must be a mapping with exactly 'composite' and 'score', got {knot!r}")
            xs.append(self.number(knot["composite"], f"score_calibration.knots[{i}].composite", lo=0.0, hi=100.0))
            ys.append(self.number(knot["score"], f"score_calibration.knots[{i}].score", lo=0.0, hi=100.0))
        if (xs[0], ys[0]) != (0.0, 0.0) or (xs[-1], ys[-1]) != (100.0, 100.0):
            raise self.fail(
                f"score_calibration.knots must start at composite 0 -> score 0 and end at composite 100 -> score 100 "
                f"(got {xs[0]:g} -> {ys[0]:g} and {xs[-1]:g} -> {ys[-1]:g}), so that every zone stays reachable"
            )
        for i in range(1, len(xs)):
            if xs[i] <= xs[i - 1] or ys[i] <= ys[i - 1]:
                raise self.fail(
                    f"score_calibration.knots must rise strictly in both composite and score (knot {i}: "
                    f"{xs[i]:g} -> {ys[i]:g} after {xs[i - 1]:g} -> {ys[i - 1]:g}); the map must keep the ranking of accounts"
                )
        fitted = s.get("fitted") or {}
        if not isinstance(fitted, dict):
            raise self.fail("score_calibration.fitted must be a mapping (how the knots were fitted)")
        return ScoreCalibration(tuple(xs), tuple(ys), fitted)

    # --- score calibration (end) -------------------------------------------------------

    def parse_rounding(self) -> str:
        rounding = self.raw.get("rounding", "half_up")
        if rounding != "half_up":
            raise self.fail(f"rounding {rounding!r} is not supported; use half_up")
        return rounding

    def parse_coverage(self) -> CoverageConfig:
        s = self.section("coverage")
        return CoverageConfig(
            minimum=self.number(s.get("minimum"), "coverage.minimum", lo=0.0, hi=1.0),
            no_data_score=self.number(s.get("no_data_score"), "coverage.no_data_score", lo=0.0, hi=100.0),
        )

    def parse_trends(self) -> TrendConfig:
        s = self.section("trends")
        windows = s.get("delta_windows_days")
        if not isinstance(windows, list) or not windows:
            raise self.fail("trends.delta_windows_days must be a list of days, e.g. [30, 60, 90]")
        return TrendConfig(
            delta_windows_days=tuple(self.integer(w, "trends.delta_windows_days", lo=1) for w in windows),
            slope_window_days=self.integer(s.get("slope_window_days"), "trends.slope_window_days", lo=2),
            slope_sample_every_days=self.integer(s.get("slope_sample_every_days"), "trends.slope_sample_every_days", lo=1),
            slope_min_points=self.integer(s.get("slope_min_points"), "trends.slope_min_points", lo=2),
            previous_zone_lookback_days=self.integer(
                s.get("previous_zone_lookback_days"), "trends.previous_zone_lookback_days", lo=1
            ),
        )

    def parse_priority(self) -> PriorityConfig:
        s = self.section("priority")
        return PriorityConfig(
            level_weight=self.number(s.get("level_weight"), "priority.level_weight", lo=0.0),
            decline_weight=self.number(s.get("decline_weight"), "priority.decline_weight", lo=0.0),
            recovery_credit=self.number(s.get("recovery_credit"), "priority.recovery_credit", lo=0.0),
            arr_reference=self.number(s.get("arr_reference"), "priority.arr_reference", lo=1e-9),
            arr_log_weight=self.number(s.get("arr_log_weight"), "priority.arr_log_weight", lo=0.0),
        )

    def parse_explanations(self) -> ExplanationConfig:
        s = self.section("explanations")
        return ExplanationConfig(
            driver_count=self.integer(s.get("driver_count"), "explanations.driver_count", lo=1),
            change_count=self.integer(s.get("change_count"), "explanations.change_count", lo=0),
            change_window_days=self.integer(s.get("change_window_days"), "explanations.change_window_days", lo=1),
            min_change_points=self.number(s.get("min_change_points"), "explanations.min_change_points", lo=0.0),
            min_delta_for_change_story=self.number(
                s.get("min_delta_for_change_story"), "explanations.min_delta_for_change_story", lo=0.0
            ),
        )
