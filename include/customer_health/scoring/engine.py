"""The health model engine: signals of one date in, scored and explained accounts out.

``score_accounts`` is the pure, vectorized core (no database, no per-account Python loop):

    signals -> normalize vs segment baselines -> weighted composite + coverage -> zone
            -> CSM overrides -> trends from history -> priority -> drivers + explanation

An account without any informative signal (every signal missing, or only signals constant over
the date's population) has no score: it gets no row (``scoring/score.py``), and the report
counts it as ``unscored``.

``score_date`` wraps it for one scoring date in the warehouse: it registers the model
version, reads the history and overrides the trends and scores need, scores, and upserts
``health_scores`` and ``health_score_rollups`` in one transaction. It returns a small
:class:`ScoreReport` (counts, zone distribution, coverage, top priorities) fit for XCom.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from customer_health.scoring.explain import explain, rank_drivers, signal_templates
from customer_health.scoring.model_config import DIMENSIONS, ModelConfig, ModelConfigError
from customer_health.scoring.normalize import (
    distinct_codes,
    normalize_against,
    normalize_signals,
    raw_signal_matrix,
    segment_model_index,
)
from customer_health.scoring.overrides import end_of_day
from customer_health.scoring.score import composite_scores, zones
from customer_health.scoring.trends import compute_trends, priority_scores, trajectory_points
from customer_health.warehouse.io import as_date, utcnow
from customer_health.warehouse.schema import model_versions

PASS_THROUGH = ["parent_account_key", "owner_id", "plan"]

log = logging.getLogger(__name__)


class ScoringInputError(ValueError):
    """The signal frame handed to the engine cannot be scored as it is."""


def _scoring_date(signals: pd.DataFrame) -> date:
    if "as_of_date" not in signals.columns:
        raise ScoringInputError("signal frame has no as_of_date column; compute_signals(engine, as_of) provides it")
    dates = pd.unique(signals["as_of_date"])
    if len(dates) != 1:
        raise ScoringInputError(
            f"signal frame holds {len(dates)} as_of_date values ({', '.join(map(str, dates[:5]))}); score one date at a time"
        )
    return as_date(dates[0])


def _active_at(overrides: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Defensive re-check of the override window, so the pure function is right on any input."""
    at = end_of_day(as_of)
    keep = np.ones(len(overrides), dtype=bool)
    if "created_at" in overrides.columns:
        keep &= pd.to_datetime(overrides["created_at"]).to_numpy() < np.datetime64(at)
    if "expires_at" in overrides.columns:
        keep &= pd.to_datetime(overrides["expires_at"]).to_numpy() >= np.datetime64(at)
    if "revoked_at" in overrides.columns:
        revoked = pd.to_datetime(overrides["revoked_at"])
        keep &= (revoked.isna() | (revoked >= at)).to_numpy()
    active = overrides.loc[keep]
    if "created_at" in active.columns:
        active = active.sort_values("created_at", kind="stable")
    return active.drop_duplicates("account_key", keep="last")


def empty_scores(config: ModelConfig) -> pd.DataFrame:
    """The columns ``score_accounts`` returns, with no rows."""
    windows = config.trends.delta_windows_days
    columns = [
        "account_key", "as_of_date", "model_version", "segment", "score", "computed_score", "zone",
        "previous_zone", "coverage", "low_coverage", *[f"{d}_score" for d in DIMENSIONS],
        *[f"delta_{w}" for w in windows], f"slope_{config.trends.slope_window_days}", "priority", "arr",
        "override_id", "drivers", "explanation", *PASS_THROUGH,
    ]  # fmt: skip
    return pd.DataFrame(columns=columns)


@contextmanager
def _without_hugepage_advice() -> Iterator[None]:
    """Stop numpy from advising huge pages for the arrays allocated inside the block.

    numpy asks the kernel for transparent huge pages on every large array. Where THP defrag
    is ``madvise`` (common on VMs), each such page fault may compact memory first: scoring a
    million accounts then spent as much time in the kernel as in numpy (4.7 s of system time
    for 6.2 s of user time). The setting only changes how memory is mapped, never a result;
    it is restored on exit. Deployments can instead set ``NUMPY_MADVISE_HUGEPAGE=0``.
    """
    toggle = getattr(np._core.multiarray, "_set_madvise_hugepage", None)  # numpy's own switch
    if toggle is None:  # pragma: no cover - a numpy without the switch
        yield
        return
    previous = toggle(False)
    try:
        yield
    finally:
        toggle(previous)


@dataclass
class _Core:
    """A date's scores before trends and explanations: what later dates' trends read.

    Rows are the accounts that have a score (``signals`` and ``key_index`` restricted to them).
    """

    signals: pd.DataFrame
    key_index: pd.Index
    normalized: Any
    model_idx: np.ndarray
    composite: Any
    computed: np.ndarray
    effective: np.ndarray
    zone: np.ndarray
    override_id: np.ndarray
    override_rows: np.ndarray
    active: pd.DataFrame | None


def _core_scores(
    signals: pd.DataFrame, config: ModelConfig, overrides: pd.DataFrame | None, key_index: pd.Index, as_of: date
) -> _Core:
    """Normalize, weigh, apply the active overrides and zone one date's accounts.

    Baselines and constant signals come from the whole population; accounts without any
    informative signal are then left out (no score).
    """
    n = len(signals)
    normalized = normalize_signals(signals, config)
    tenure = signals["tenure_days"].to_numpy(dtype=float, na_value=np.nan) if "tenure_days" in signals else np.full(n, np.nan)
    model_idx = segment_model_index(tenure, config)
    composite = composite_scores(normalized.values, model_idx, config)
    scored = composite.scored
    if not scored.all():
        rows = np.flatnonzero(scored)
        signals = signals.iloc[rows].reset_index(drop=True)
        key_index = key_index[rows]
        normalized, model_idx, composite = normalized.take(rows), model_idx[rows], composite.take(rows)
        n = len(rows)
    computed = composite.score.astype(np.int64)

    effective = computed.copy()
    override_id = np.full(n, np.nan)
    override_rows = np.zeros(0, dtype=np.intp)
    active = None
    if overrides is not None and len(overrides):
        active = _active_at(overrides, as_of)
        pos = key_index.get_indexer(pd.Index(active["account_key"].to_numpy(dtype=object), dtype=object))
        found = pos >= 0
        override_rows = pos[found]
        active = active.loc[found]
        effective[override_rows] = active["score"].to_numpy(dtype=np.int64)
        override_id[override_rows] = active["override_id"].to_numpy(dtype=float)
    zone = np.asarray(zones(effective, config), dtype=object)
    return _Core(
        signals, key_index, normalized, model_idx, composite, computed, effective, zone, override_id, override_rows, active
    )


def history_scores(signals: pd.DataFrame, config: ModelConfig, overrides: pd.DataFrame | None = None) -> pd.DataFrame:
    """The columns later dates' trends read (``history.HISTORY_COLUMNS``) for one date's
    accounts: exactly those ``score_accounts`` gives, without trends or explanations.

    A rebuild's date block scored in parallel with the blocks before it derives the history
    its first dates need with this, instead of waiting for the earlier block.
    """
    from customer_health.scoring.history import HISTORY_COLUMNS

    if signals.empty:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    with _without_hugepage_advice():
        as_of = _scoring_date(signals)
        keys = signals["account_key"].to_numpy(dtype=object)
        core = _core_scores(signals, config, overrides, pd.Index(keys, dtype=object), as_of)
    return pd.DataFrame(
        {"account_key": core.key_index.to_numpy(dtype=object), "as_of_date": as_of, "computed_score": core.computed,
         "score": core.effective, "zone": core.zone}
    )[HISTORY_COLUMNS]  # fmt: skip


def score_accounts(
    signals: pd.DataFrame,
    config: ModelConfig,
    history: pd.DataFrame | None = None,
    overrides: pd.DataFrame | None = None,
    *,
    previous_signals: pd.DataFrame | None = None,
    templates: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Score, zone, trend, prioritize and explain every account of one date (pure function).

    * ``signals`` - one row per account of one ``as_of_date`` with ``account_key``, ``plan``,
      ``tenure_days``, ``arr`` (optional: ``parent_account_key``, ``owner_id``) and one float
      column per signal (NaN = no data).
    * ``history`` - earlier scores of the same model version (``account_key``,
      ``as_of_date``, ``computed_score``, ``zone``); rows on or after the date are ignored.
    * ``overrides`` - active CSM overrides (``override_id``, ``account_key``, ``score``,
      ``reason``, ``created_by``, ``expires_at``).
    * ``previous_signals`` - raw signals ``explanations.change_window_days`` earlier
      (``account_key`` + signal columns), for the "what changed" drivers.

    Returns one row per account with the ``health_scores`` columns plus ``low_coverage``
    and the pass-through columns ``parent_account_key``, ``owner_id``, ``plan``.
    """
    with _without_hugepage_advice():
        return _score_accounts(signals, config, history, overrides, previous_signals, templates)


def _score_accounts(
    signals: pd.DataFrame,
    config: ModelConfig,
    history: pd.DataFrame | None,
    overrides: pd.DataFrame | None,
    previous_signals: pd.DataFrame | None,
    templates: dict[str, str] | None,
) -> pd.DataFrame:
    """The body of ``score_accounts`` (see there)."""
    if signals.empty:
        return empty_scores(config)
    as_of = _scoring_date(signals)
    if "account_key" not in signals.columns:
        raise ScoringInputError("signal frame has no account_key column")
    keys = signals["account_key"].to_numpy(dtype=object)
    # One hash table of today's keys, built once and reused for the uniqueness check, the
    # overrides and the history join (an object Index: no str inference of a million keys).
    key_index = pd.Index(keys, dtype=object)
    if not key_index.is_unique:
        dupes = signals.loc[signals["account_key"].duplicated(), "account_key"].head(3).tolist()
        raise ScoringInputError(f"signal frame has several rows for accounts {dupes} on {as_of}; one row per account")
    core = _core_scores(signals, config, overrides, key_index, as_of)
    if len(core.signals) < len(signals) and not len(core.signals):
        return empty_scores(config)
    signals, key_index = core.signals, core.key_index
    keys = key_index.to_numpy(dtype=object)
    n = len(signals)
    normalized, model_idx, composite = core.normalized, core.model_idx, core.composite
    computed, effective, zone = core.computed, core.effective, core.zone
    override_id, override_rows, active = core.override_id, core.override_rows, core.active

    trends = compute_trends(key_index, computed, history, as_of, config)
    arr = pd.to_numeric(signals["arr"], errors="coerce").to_numpy(dtype=float, na_value=np.nan) if "arr" in signals else np.full(n, np.nan)
    priority = priority_scores(effective, trajectory_points(trends, config), arr, config)

    previous_normalized = previous_raw = None
    if previous_signals is not None and len(previous_signals):
        previous_keys = previous_signals["account_key"].to_numpy(dtype=object)
        previous_raw = raw_signal_matrix(previous_signals, config)
        if len(previous_keys) != n or not (previous_keys == keys).all():
            # Rows in another order (or other accounts): gather column by column, which
            # keeps the column-major layout (a row gather of a column-major matrix crawls).
            pos = pd.Index(previous_keys, dtype=object).get_indexer(key_index)
            found = pos >= 0
            gathered = np.empty((n, previous_raw.shape[1]), dtype=float, order="F")
            for j in range(previous_raw.shape[1]):
                np.copyto(gathered[:, j], previous_raw[:, j].take(np.where(found, pos, 0)))
                gathered[~found, j] = np.nan
            previous_raw = gathered
        # The earlier values against today's yardstick: the change is the account's own.
        previous_normalized = normalize_against(previous_raw, normalized.baselines, normalized.baseline_rows)
    drivers = rank_drivers(composite.weights, normalized.values, previous_normalized, config)
    window = config.explanations.change_window_days
    change_delta = trends.deltas.get(window, np.full(n, np.nan))
    texts = explain(
        drivers,
        normalized.values,
        previous_normalized,
        normalized.raw,
        previous_raw,
        computed,
        change_delta,
        composite.coverage,
        composite.low_coverage,
        config,
        templates or signal_templates(config),
        absent_dimensions=composite.absent_dimensions,
        constant=composite.constant,
    )
    sentence = texts.sentence
    if active is not None and len(override_rows):
        # Few rows: a CSM's override is stated first, the model's reading after it.
        sentence = sentence.copy()
        for row, (_, o) in zip(override_rows, active.iterrows(), strict=True):
            until = as_date(o["expires_at"]) if o.get("expires_at") is not None else None
            sentence[row] = (
                f"Score {int(o['score'])} set by {o['created_by']}"
                + (f" until {until:%Y-%m-%d}" if until else "")
                + f": {o['reason']} (model: {sentence[row]})"
            )

    # "established/growth/first_year": segment model / baseline segment, one label per pair.
    n_labels = len(normalized.segment_labels)
    pair = model_idx.astype(np.int64) * n_labels + normalized.segment_code
    distinct, inverse = distinct_codes(pair)
    labels = np.array(
        [f"{config.models[p // n_labels].name}/{normalized.segment_labels[p % n_labels]}" for p in distinct], dtype=object
    )
    segment = labels[inverse] if n else np.zeros(0, dtype=object)
    data: dict[str, Any] = {
        "account_key": keys,
        "as_of_date": as_of,
        "model_version": config.version,
        "segment": segment,
        "score": effective,
        "computed_score": computed,
        "zone": zone,
        "previous_zone": trends.previous_zone,
        "coverage": np.round(composite.coverage, 6),
        "low_coverage": composite.low_coverage,
    }
    for i, d in enumerate(DIMENSIONS):
        data[f"{d}_score"] = np.round(composite.dimension_scores[:, i], 4)
    for w, values in trends.deltas.items():
        data[f"delta_{w}"] = values
    data[f"slope_{config.trends.slope_window_days}"] = np.round(trends.slope, 4)
    data["priority"] = priority
    data["arr"] = arr
    data["override_id"] = pd.array(override_id, dtype="Int64") if n else override_id
    data["drivers"] = texts.drivers_json
    data["explanation"] = sentence
    for col in PASS_THROUGH:
        data[col] = signals[col].to_numpy(dtype=object) if col in signals.columns else None
    return pd.DataFrame(data)


# --------------------------------------------------------------------------- warehouse run
def ensure_model_registered(engine: Engine, config: ModelConfig, created_by: str = "customer_health") -> bool:
    """Record the model version in ``model_versions`` unless it is there.

    It becomes the active version when the registry has none yet, else a proposed one.

    Returns True when it was registered now. Refuses, with a ModelConfigError, a version
    string already registered with a different configuration (sha256): a changed model needs
    a new version, or history would mix two models under one name.
    """
    with engine.begin() as conn:
        existing = conn.execute(
            select(model_versions.c.config_sha256).where(model_versions.c.version == config.version)
        ).scalar_one_or_none()
        if existing is not None:
            if existing != config.sha256:
                raise ModelConfigError(
                    f"model version {config.version} is already registered with sha256 {existing[:12]}…, but "
                    f"{config.source} has sha256 {config.sha256[:12]}…; give the changed config a new version "
                    f"(model {config.version}, {config.source})"
                )
            return False
        # The first version a warehouse sees becomes active; any later one waits for a person
        # to approve it (validation.registry), so two versions are never active at once.
        has_active = conn.execute(
            select(model_versions.c.version).where(model_versions.c.status == "active").limit(1)
        ).first()
        conn.execute(
            model_versions.insert().values(
                version=config.version,
                status="proposed" if has_active else "active",
                config_yaml=config.yaml_text,
                config_sha256=config.sha256,
                created_at=utcnow(),
                created_by=created_by,
            )
        )
        return True


@dataclass
class ScoreReport:
    """What one scoring date produced: small enough for XCom and a log line."""

    as_of: str
    model_version: str
    accounts: int
    written: int
    rollups: int
    overrides_applied: int
    low_coverage: int
    zones: dict[str, int]
    coverage_mean: float
    coverage_min: float
    top_priority: list[dict[str, Any]] = field(default_factory=list)
    unscored: int = 0  # customers without any informative signal: no score written

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable dict (for XCom)."""
        return asdict(self)

    def __str__(self) -> str:
        zones_text = ", ".join(f"{k} {v}" for k, v in self.zones.items())
        return (
            f"{self.as_of} model {self.model_version}: {self.accounts} accounts scored ({zones_text}); "
            f"coverage mean {self.coverage_mean:.0%}, {self.low_coverage} low; "
            + (f"{self.unscored} without data, not scored; " if self.unscored else "")
            + f"{self.overrides_applied} overrides; {self.rollups} rollups"
        )


def build_report(
    scored: pd.DataFrame, config: ModelConfig, as_of: date, written: int, rollups: int, top: int = 10, unscored: int = 0
) -> ScoreReport:
    """Summarize a scored frame: counts, zone distribution, coverage and the top priorities
    (``unscored``: the customers of the date left without a score for lack of data)."""
    counts = scored["zone"].value_counts() if len(scored) else pd.Series(dtype=int)
    ranked = scored.sort_values(["priority", "account_key"], ascending=[False, True]).head(top)
    top_rows = [
        {
            "account_key": r.account_key,
            "score": int(r.score),
            "zone": r.zone,
            "delta_30": None if pd.isna(getattr(r, "delta_30", np.nan)) else float(r.delta_30),
            "priority": float(r.priority),
            "explanation": r.explanation,
        }
        for r in ranked.itertuples(index=False)
    ]
    return ScoreReport(
        as_of=as_of.isoformat(),
        model_version=config.version,
        accounts=len(scored),
        written=written,
        rollups=rollups,
        overrides_applied=int(scored["override_id"].notna().sum()) if len(scored) else 0,
        low_coverage=int(scored["low_coverage"].sum()) if len(scored) else 0,
        zones={z.name: int(counts.get(z.name, 0)) for z in config.zones},
        coverage_mean=float(scored["coverage"].mean()) if len(scored) else 0.0,
        coverage_min=float(scored["coverage"].min()) if len(scored) else 0.0,
        top_priority=json.loads(json.dumps(top_rows, default=str)),
        unscored=unscored,
    )


def score_date(engine: Engine, as_of: date, config: ModelConfig, signals: pd.DataFrame) -> ScoreReport:
    """Score one date in the warehouse and return its report.

    Idempotent: scores and rollups are upserted by (account, date, model version), so a
    re-run or a backfill of the date overwrites what it wrote before, and the rows of accounts
    it no longer scores (no informative data now) are removed (``history.remove_stale_scores``).
    Everything read is
    dated on or before ``as_of`` (history, overrides in force at the end of the day, the
    signal snapshot of the change window), so a rebuild equals the daily run.
    """
    from customer_health.scoring.history import (
        read_score_history,
        read_signal_snapshot,
        remove_stale_scores,
        write_rollups,
        write_scores,
    )
    from customer_health.scoring.overrides import active_overrides
    from customer_health.scoring.rollup import compute_rollups

    if len(signals) and _scoring_date(signals) != as_of:
        raise ScoringInputError(f"signals are for {_scoring_date(signals)} but score_date was asked for {as_of}")
    ensure_model_registered(engine, config)
    history = read_score_history(engine, as_of, config)
    previous = read_signal_snapshot(
        engine, as_of - timedelta(days=config.explanations.change_window_days), config.signal_keys
    )
    overrides = active_overrides(engine, as_of)
    scored = score_accounts(signals, config, history, overrides, previous_signals=previous)
    rollups = compute_rollups(scored, config)
    with engine.begin() as conn:
        written = write_scores(conn, scored)
        rolled = write_rollups(conn, rollups)
        parents = rollups["parent_account_key"] if len(rollups) else []
        removed = remove_stale_scores(conn, config.version, as_of, scored["account_key"] if len(scored) else [], parents)
    if removed:
        log.warning("re-run of %s: removed the earlier scores of %d account(s) without informative data now", as_of, removed)
    return build_report(scored, config, as_of, written, rolled, unscored=len(signals) - len(scored))
