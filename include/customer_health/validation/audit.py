"""The quarterly accuracy audit: did the accounts the score flagged actually churn?

The cohort (stated once, used by the audit and the recalibration)
-----------------------------------------------------------------
For an outcome window ``[start, end]`` and a horizon ``H`` (default 90 days):

* **Snapshot dates** ``T`` are the first days of each quarter (or month, ``cadence``) with
  ``start - 1 <= T`` and ``T + H <= end``: every snapshot's horizon ``(T, T + H]`` lies inside
  the window, so every label is fully observed and uses only outcomes inside the window.
* **Observations** are (account, T) pairs: every account scored as a customer at T, i.e. every
  account with a ``health_scores`` row of the audited model version at T. When no score is
  stored at T, the latest one within ``tolerance_days`` before T is used; an account that
  churned between that date and T is left out (it was no longer a customer at T).
* **Label**: churned = at least one churn outcome (``account_outcomes``) in ``(T, T + H]``. The
  score used is the one *as of T*, so a churner's score is taken 1 to H days before it churned
  (``days_to_churn`` says how many): the score had to see it coming.
* **Retained** accounts at the same T are the comparison group. An account appears once per
  snapshot, so a long-lived account counts in several quarters (as it would be acted on).

When the audited version has no stored scores around T (a model never run daily, e.g. a new
proposal, or a history that was not backfilled), the snapshot is **re-scored**: the signals as
of T (``signal_values`` when stored, else ``compute_signals``) through the scoring engine's
``score_accounts``. The report says which snapshots were stored and which re-scored.

Flagged = ``score <= threshold`` (default 49, the At Risk upper bound). False negatives
(churned but scored above the threshold) are listed with the drivers their score carried;
false positives (flagged but retained) are listed too. Results are stored per model version in
``model_audits`` (and merged into ``model_versions.metrics`` when the version is registered),
and a self-contained HTML report is written (see ``report.py``).

Run it on the current warehouse: ``python -m customer_health.validation.audit --help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, select

from customer_health.scoring.drivers import read_drivers
from customer_health.scoring.model_config import ModelConfig
from customer_health.validation.metrics import DEFAULT_THRESHOLD, evaluate_scores, json_safe
from customer_health.validation.outcomes import read_outcomes
from customer_health.validation.snapshots import (
    CADENCES,
    DEFAULT_HORIZON_DAYS,
    AuditError,
    SignalSource,
    as_date,
    resolve_config,
    signals_at,
    snapshot_dates,
)
from customer_health.warehouse.io import upsert_rows, utcnow
from customer_health.warehouse.schema import (
    health_scores,
    model_audits,
    model_versions,
)

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE_DAYS = 7
MAX_LISTED = 200  # false negatives / positives kept in the stored metrics and the report


# --------------------------------------------------------------------------- scores at T
def stored_scores(engine: Engine, day: date, model_version: str, tolerance_days: int = DEFAULT_TOLERANCE_DAYS) -> pd.DataFrame:
    """Each account's latest stored score of ``model_version`` in ``[day - tolerance, day]``."""
    t = health_scores.c
    stmt = select(t.account_key, t.as_of_date, t.score, t.zone, t.drivers, t.explanation).where(
        t.model_version == model_version,
        t.as_of_date <= day,
        t.as_of_date >= day - timedelta(days=tolerance_days),
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=["account_key", "score_date", "score", "zone", "drivers", "explanation"])
    if frame.empty:
        return frame
    frame["score_date"] = frame["score_date"].map(as_date)
    frame = frame.sort_values(["account_key", "score_date"]).drop_duplicates("account_key", keep="last")
    return frame.reset_index(drop=True)


def rescore(signals: pd.DataFrame, config: ModelConfig) -> pd.DataFrame:
    """Score a signals frame of one date with ``config`` through the scoring engine (no writes)."""
    from customer_health.scoring.engine import score_accounts

    if signals.empty:
        return pd.DataFrame(columns=["account_key", "score_date", "score", "zone", "drivers", "explanation"])
    scored = score_accounts(signals, config)
    out = scored[["account_key", "as_of_date", "score", "zone", "drivers", "explanation"]].rename(columns={"as_of_date": "score_date"})
    out["score_date"] = out["score_date"].map(as_date)
    out["zone"] = out["zone"].astype(object)
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- the cohort
def _labels(keys: Sequence[str], snapshot: date, horizon_days: int, churn: pd.DataFrame) -> tuple[np.ndarray, list[date | None]]:
    """Churned within (T, T+H], and the first churn date in that window (None when retained)."""
    first: dict[str, date] = {}
    if len(churn):
        window_end = snapshot + timedelta(days=horizon_days)
        inside = churn[(churn["occurred_on"] > snapshot) & (churn["occurred_on"] <= window_end)]
        for key, day in zip(inside["account_key"], inside["occurred_on"], strict=True):
            if key not in first or day < first[key]:
                first[key] = day
    on = [first.get(k) for k in keys]
    return np.array([d is not None for d in on], dtype=bool), on


def build_cohort(
    engine: Engine,
    config: ModelConfig,
    dates: Sequence[date],
    horizon_days: int,
    *,
    tolerance_days: int = DEFAULT_TOLERANCE_DAYS,
    signal_source: SignalSource = signals_at,
    prefer_stored: bool = True,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Observations (account, snapshot) with their score as of T and the churn label.

    Returns the cohort frame (``account_key, snapshot_date, score_date, score, zone, churned,
    churned_on, days_to_churn, drivers, explanation, score_source``) and one summary dict per
    snapshot (date, source, accounts, churners).
    """
    churn = read_outcomes(engine, outcomes=["churn"])
    frames, summaries = [], []
    for day in dates:
        scores = stored_scores(engine, day, config.version, tolerance_days) if prefer_stored else pd.DataFrame()
        source = "stored"
        if scores.empty:
            scores = rescore(signal_source(engine, day), config)
            source = "rescored"
        if len(scores) and len(churn):
            # Scores taken before T: drop accounts that churned between that score and T.
            gone = churn[churn["occurred_on"] <= day][["account_key", "occurred_on"]]
            merged = scores[["account_key", "score_date"]].merge(gone, on="account_key", how="inner")
            later = [o > s for o, s in zip(merged["occurred_on"], merged["score_date"], strict=True)]
            stale = merged.loc[later, "account_key"] if len(merged) else []
            scores = scores[~scores["account_key"].isin(set(stale))]
        keys = scores["account_key"].tolist()
        churned, churned_on = _labels(keys, day, horizon_days, churn)
        frame = scores.assign(
            snapshot_date=day,
            churned=churned,
            churned_on=churned_on,
            days_to_churn=[(d - day).days if d is not None else None for d in churned_on],
            score_source=source,
        )
        frames.append(frame)
        summaries.append({"snapshot_date": day.isoformat(), "source": source, "accounts": len(frame), "churners": int(churned.sum())})
    columns = [
        "account_key", "snapshot_date", "score_date", "score", "zone", "churned", "churned_on",
        "days_to_churn", "drivers", "explanation", "score_source",
    ]  # fmt: skip
    non_empty = [f for f in frames if len(f)]
    cohort = pd.concat(non_empty, ignore_index=True)[columns] if non_empty else pd.DataFrame(columns=columns)
    cohort["score"] = cohort["score"].astype(float)
    cohort["churned"] = cohort["churned"].astype(bool)
    return cohort, summaries


# --------------------------------------------------------------------------- the baseline
DEFAULT_BASELINE_LOOKBACK_DAYS = 365


def memoized(source: SignalSource) -> SignalSource:
    """``source`` with each date's frame computed once (the cohort and the baseline share them)."""
    cache: dict[date, pd.DataFrame] = {}

    def cached(engine: Engine, day: date) -> pd.DataFrame:
        if day not in cache:
            cache[day] = source(engine, day)
        return cache[day]

    return cached


def baseline_for_cohort(
    engine: Engine,
    cohort: pd.DataFrame,
    horizon_days: int,
    threshold: int,
    signal_source: SignalSource = signals_at,
    *,
    lookback_days: int = DEFAULT_BASELINE_LOOKBACK_DAYS,
    label: str = "model",
) -> dict[str, Any]:
    """The model's scores and a plain logistic regression on the raw signals, on the same rows.

    Test dates are the cohort's snapshot dates; training snapshots are the monthly dates from
    ``lookback_days`` before the first snapshot (and the snapshot dates themselves), each test
    date T predicted by a fit on the snapshots s with s + H <= T (``baseline.predict_on_folds``).
    The comparison holds the cohort rows (account, T) that got a baseline prediction.
    """
    from customer_health.validation.baseline import compare_on_rows, predict_on_folds, raw_signal_columns
    from customer_health.validation.snapshots import _period_starts

    test_dates = sorted({as_date(d) for d in cohort["snapshot_date"]})
    pool = set(test_dates) | set(
        _period_starts(test_dates[0] - timedelta(days=lookback_days), test_dates[-1] - timedelta(days=horizon_days), "monthly")
    )
    churn = read_outcomes(engine, outcomes=["churn"])
    frames = []
    for day in sorted(pool):
        frame = signal_source(engine, day)
        if len(frame):
            frame = frame.assign(as_of_date=day)
            labels, _ = _labels(frame["account_key"].tolist(), day, horizon_days, churn)
            frames.append(frame.assign(churned=labels))
    if not frames:
        return compare_on_rows(np.array([]), np.array([]), np.array([], dtype=bool), threshold, model_label=label).as_dict()
    stacked = pd.concat(frames, ignore_index=True)
    risk = predict_on_folds(stacked, stacked["churned"].to_numpy(dtype=bool), test_dates, horizon_days)
    predicted = stacked.assign(baseline_risk=risk)[["account_key", "as_of_date", "baseline_risk"]]
    rows = cohort[["account_key", "snapshot_date", "score", "churned"]].assign(as_of_date=cohort["snapshot_date"].map(as_date))
    rows = rows.merge(predicted, on=["account_key", "as_of_date"], how="left")
    held = rows["baseline_risk"].notna()
    used = sorted({d.isoformat() for d in rows.loc[held, "as_of_date"]})
    return compare_on_rows(
        rows["score"].to_numpy(dtype=float),
        rows["baseline_risk"].to_numpy(dtype=float),
        rows["churned"].to_numpy(dtype=bool),
        threshold,
        test_dates=used,
        model_label=label,
        features=raw_signal_columns(stacked),
    ).as_dict()


# --------------------------------------------------------------------------- drivers for FN/FP
def driver_texts(drivers_json: Any, kind: str = "down", limit: int = 3) -> list[str]:
    """The driver phrases of one ``health_scores.drivers`` value (``down``: pulling it down)."""
    return [d.phrase() for d in getattr(read_drivers(drivers_json), kind)[:limit]]


def _listing(frame: pd.DataFrame, sort_ascending: bool) -> list[dict[str, Any]]:
    ordered = frame.sort_values(["score", "snapshot_date", "account_key"], ascending=[sort_ascending, True, True]).head(MAX_LISTED)
    out = []
    for r in ordered.itertuples(index=False):
        out.append(
            {
                "account_key": r.account_key,
                "snapshot_date": as_date(r.snapshot_date).isoformat(),
                "score": int(r.score),
                "zone": r.zone,
                "churned_on": r.churned_on.isoformat() if isinstance(r.churned_on, date) else None,
                "days_to_churn": int(r.days_to_churn) if r.days_to_churn is not None and not pd.isna(r.days_to_churn) else None,
                "held_down_by": driver_texts(r.drivers, "down"),
                "held_up_by": driver_texts(r.drivers, "up"),
                "explanation": r.explanation,
            }
        )
    return out


def false_negatives(cohort: pd.DataFrame, threshold: int = DEFAULT_THRESHOLD) -> list[dict[str, Any]]:
    """Churned but scored above the threshold (missed), highest score first, with drivers."""
    return _listing(cohort[cohort["churned"] & (cohort["score"] > threshold)], sort_ascending=False)


def false_positives(cohort: pd.DataFrame, threshold: int = DEFAULT_THRESHOLD) -> list[dict[str, Any]]:
    """Flagged (score <= threshold) but retained, lowest score first, with drivers."""
    return _listing(cohort[~cohort["churned"] & (cohort["score"] <= threshold)], sort_ascending=True)


# --------------------------------------------------------------------------- the audit
@dataclass
class AuditResult:
    """What one audit found (the cohort stays in memory; ``summary`` is XCom-sized)."""

    model_version: str
    window_start: date
    window_end: date
    horizon_days: int
    threshold: int
    cadence: str
    snapshots: list[dict[str, Any]]
    cohort: pd.DataFrame
    metrics: dict[str, Any]
    false_negatives: list[dict[str, Any]]
    false_positives: list[dict[str, Any]]
    kind: str = "audit"
    report_path: str | None = None
    notes: list[str] = field(default_factory=list)
    baseline: dict[str, Any] | None = None  # baseline.BaselineComparison.as_dict()

    @property
    def warnings(self) -> list[str]:
        """Plain-words warnings for the first lines of every output (baseline.baseline_warnings)."""
        from customer_health.validation.baseline import baseline_warnings

        return baseline_warnings(self.baseline, self.metrics.get("roc_auc"), f"model {self.model_version}")

    def summary(self) -> dict[str, Any]:
        """The headline numbers, JSON-safe (for XCom, logs and the approval body)."""
        m = self.metrics
        return json_safe(
            {
                "model_version": self.model_version,
                "kind": self.kind,
                "window_start": self.window_start.isoformat(),
                "window_end": self.window_end.isoformat(),
                "horizon_days": self.horizon_days,
                "threshold": self.threshold,
                "snapshots": [s["snapshot_date"] for s in self.snapshots],
                "observations": m["observations"],
                "churners": m["churners"],
                "roc_auc": m["roc_auc"],
                "sensitivity": m["sensitivity"],
                "specificity": m["specificity"],
                "precision": m["precision"],
                "top_decile_lift": m["top_decile_lift"],
                "meets_targets": m["meets_targets"],
                "false_negatives": len(self.false_negatives),
                "false_positives": len(self.false_positives),
                "report_path": self.report_path,
                "baseline": self.baseline,
                "warnings": self.warnings,
            }
        )

    def stored_metrics(self) -> dict[str, Any]:
        """Everything that goes into ``model_audits.metrics`` (JSON-safe)."""
        return json_safe(
            {
                **self.metrics,
                "snapshots": self.snapshots,
                "cadence": self.cadence,
                "false_negatives": self.false_negatives,
                "false_positives": self.false_positives,
                "notes": self.notes,
                "baseline": self.baseline,
                "warnings": self.warnings,
            }
        )


def _zones(config: ModelConfig) -> list[tuple[str, int, int]]:
    return [(z.name, z.min, z.max) for z in sorted(config.zones, key=lambda z: -z.max)]


def evaluate_cohort(
    cohort: pd.DataFrame,
    config: ModelConfig,
    *,
    window_start: date,
    window_end: date,
    horizon_days: int,
    threshold: int,
    cadence: str,
    snapshots: list[dict[str, Any]],
    kind: str = "audit",
) -> AuditResult:
    """Grade a cohort (pure: no database): metrics, false negatives and false positives."""
    if cohort.empty:
        raise AuditError(
            f"no scored accounts at the snapshot dates {[s['snapshot_date'] for s in snapshots]} for model "
            f"{config.version}; score those dates first (backfill customer_health_daily) or pick another window"
        )
    metrics = evaluate_scores(cohort["score"].to_numpy(), cohort["churned"].to_numpy(), threshold, _zones(config))
    notes = []
    if metrics["churners"] == 0:
        notes.append(empty_window_message(window_start, window_end, horizon_days, snapshots))
    rescored = [s["snapshot_date"] for s in snapshots if s.get("source") == "rescored"]
    if rescored:
        notes.append(f"Snapshots re-scored through the engine (no stored scores): {', '.join(rescored)}.")
    return AuditResult(
        model_version=config.version,
        window_start=window_start,
        window_end=window_end,
        horizon_days=horizon_days,
        threshold=threshold,
        cadence=cadence,
        snapshots=snapshots,
        cohort=cohort,
        metrics=metrics,
        false_negatives=false_negatives(cohort, threshold),
        false_positives=false_positives(cohort, threshold),
        kind=kind,
        notes=notes,
    )


def empty_window_message(window_start: date, window_end: date, horizon_days: int, snapshots: Sequence[dict[str, Any]], latest_churn: date | None = None) -> str:
    """What to say when no observation of the window churned (AUC and sensitivity cannot be measured)."""
    dates = [s["snapshot_date"] for s in snapshots]
    first = date.fromisoformat(dates[0]) if dates else window_start
    last = date.fromisoformat(dates[-1]) if dates else window_end
    text = (
        f"No churn outcome in the window {window_start}..{window_end}: none of the accounts scored at "
        f"{', '.join(dates) or 'any snapshot'} churned within {horizon_days} days (churn dates "
        f"{first + timedelta(days=1)}..{last + timedelta(days=horizon_days)}), so ROC AUC and sensitivity cannot be measured."
    )
    if latest_churn is not None:
        text += f" The latest churn known is on {latest_churn}."
    return text + " Build the outcomes first (validation.outcomes.build_outcomes) or pick a window that holds churn."


def store_audit(engine: Engine, result: AuditResult) -> None:
    """Upsert the audit into ``model_audits`` and merge its summary into ``model_versions.metrics``."""
    m = json_safe(result.metrics)
    row = {
        "model_version": result.model_version,
        "window_start": result.window_start,
        "window_end": result.window_end,
        "horizon_days": result.horizon_days,
        "kind": result.kind,
        "threshold": result.threshold,
        "observations": m["observations"],
        "churners": m["churners"],
        "roc_auc": m["roc_auc"],
        "sensitivity": m["sensitivity"],
        "specificity": m["specificity"],
        "precision": m["precision"],
        "top_decile_lift": m["top_decile_lift"],
        "metrics": json.dumps(result.stored_metrics(), sort_keys=True, default=str),
        "report_path": result.report_path,
        "audited_at": utcnow(),
    }
    with engine.begin() as conn:
        upsert_rows(conn, model_audits, [row])
        registered = conn.execute(
            select(model_versions.c.version).where(model_versions.c.version == result.model_version)
        ).scalar_one_or_none()
    if registered is not None:
        from customer_health.validation.registry import record_metrics

        record_metrics(engine, result.model_version, {result.kind: result.summary()})


def audit_model(
    engine: Engine,
    window_start: date,
    window_end: date,
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    model_version: str | None = None,
    config: ModelConfig | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    cadence: str = "quarterly",
    tolerance_days: int = DEFAULT_TOLERANCE_DAYS,
    report_dir: str | Path | None = None,
    write_report: bool = True,
    store: bool = True,
    signal_source: SignalSource = signals_at,
    baseline: bool = True,
    baseline_lookback_days: int = DEFAULT_BASELINE_LOOKBACK_DAYS,
) -> AuditResult:
    """Audit a model version against the outcomes of ``[window_start, window_end]``.

    Reads ``account_outcomes`` (run ``outcomes.build_outcomes`` first), the model's stored scores
    (re-scoring snapshots that have none), grades them, stores the result (``store``) and writes
    the HTML report (``write_report``) under ``report_dir`` (default ``.local/reports``).
    ``baseline``: also grade a plain logistic regression on the raw signals on the same held-out
    rows (``baseline_for_cohort``); its training snapshots reach ``baseline_lookback_days``
    before the first snapshot.
    """
    config = config or resolve_config(engine, model_version)
    dates = snapshot_dates(window_start, window_end, horizon_days, cadence)
    signal_source = memoized(signal_source)
    cohort, snapshots = build_cohort(
        engine, config, dates, horizon_days, tolerance_days=tolerance_days, signal_source=signal_source
    )
    result = evaluate_cohort(
        cohort,
        config,
        window_start=window_start,
        window_end=window_end,
        horizon_days=horizon_days,
        threshold=threshold,
        cadence=cadence,
        snapshots=snapshots,
    )
    if result.metrics["churners"] == 0:
        churn = read_outcomes(engine, outcomes=["churn"])
        if len(churn):
            result.notes[0] = empty_window_message(window_start, window_end, horizon_days, snapshots, max(churn["occurred_on"]))
    elif baseline:
        result.baseline = baseline_for_cohort(
            engine, cohort, horizon_days, threshold, signal_source, lookback_days=baseline_lookback_days, label=config.version
        )
    if write_report:
        from customer_health.validation.report import write_audit_report

        result.report_path = str(write_audit_report(result, report_dir=report_dir))
    if store:
        store_audit(engine, result)
    return result


def latest_audit(engine: Engine, model_version: str, kind: str = "audit") -> dict[str, Any] | None:
    """The most recent stored audit of a version (row with its metrics parsed), or None."""
    t = model_audits.c
    stmt = (
        select(model_audits)
        .where(and_(t.model_version == model_version, t.kind == kind))
        .order_by(t.window_end.desc(), t.audited_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(stmt).first()
    if row is None:
        return None
    out = dict(row._mapping)
    out["metrics"] = json.loads(out["metrics"])
    return out


# --------------------------------------------------------------------------- command line
def default_window(today: date) -> tuple[date, date]:
    """The outcome window a quarterly run on ``today`` audits when the data reaches ``today``:
    the 365 days before it. ``resolve_window`` with an engine ends it where the data ends."""
    return today - timedelta(days=365), today - timedelta(days=1)


def data_end(engine: Engine, run_date: date) -> date:
    """Where the data ends, as seen on ``run_date``: the latest outcome (churn, contraction or
    expansion) in ``account_outcomes`` before ``run_date``; without outcomes, the latest stored
    score; without either, the day before ``run_date``.

    Outcomes are what labels the audit, so a window ending after the last known outcome would
    count accounts as "retained" over days nobody observed (a warehouse loaded from an export
    that stops months ago, or sources disconnected since).
    """
    from sqlalchemy import func

    from customer_health.warehouse.schema import account_outcomes

    yesterday = run_date - timedelta(days=1)
    with engine.connect() as conn:
        latest = conn.execute(select(func.max(account_outcomes.c.occurred_on)).where(account_outcomes.c.occurred_on <= yesterday)).scalar()
        if latest is None:
            latest = conn.execute(select(func.max(health_scores.c.as_of_date)).where(health_scores.c.as_of_date <= yesterday)).scalar()
    return as_date(latest) if latest is not None else yesterday


def resolve_window(
    run_date: date,
    window_start: str | date | None = None,
    window_end: str | date | None = None,
    engine: Engine | None = None,
) -> tuple[date, date]:
    """The audit window from optional overrides (ISO strings or dates).

    Without ``window_end`` it ends where the data ends (``data_end``, when ``engine`` is given;
    else the day before ``run_date``); without ``window_start`` it starts 364 days before its end.
    """

    def parse(value: str | date | None, name: str) -> date | None:
        if value is None or value == "":
            return None
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError as exc:
            raise AuditError(f"{name} {value!r} is not an ISO date; pass YYYY-MM-DD or leave it empty") from exc

    end = parse(window_end, "window_end") or (data_end(engine, run_date) if engine is not None else default_window(run_date)[1])
    start = parse(window_start, "window_start") or end - timedelta(days=364)
    if end < start:
        raise AuditError(f"window_end {end} is before window_start {start}; swap them")
    return start, end


def format_summary(result: AuditResult) -> str:
    """A few lines a person reads in a terminal or a task log."""
    m = result.metrics

    def pct(v: float) -> str:
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.0%}"

    def num(v: float) -> str:
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"

    lines = list(result.warnings)
    if m["churners"] == 0:
        lines += [f"NOTE: {result.notes[0]}" if result.notes else "NOTE: no churn outcome in the window."]
    lines += [
        f"Model {result.model_version}: outcomes {result.window_start}..{result.window_end}, horizon {result.horizon_days} days, "
        f"snapshots {', '.join(s['snapshot_date'] + ' (' + s['source'] + ')' for s in result.snapshots)}",
        f"  observations {m['observations']}, churners {m['churners']} ({pct(m['churn_rate'])})",
        f"  flagged = score <= {result.threshold}: sensitivity {pct(m['sensitivity'])} (target 75%), "
        f"specificity {pct(m['specificity'])} (target 70%), precision {pct(m['precision'])}",
        f"  ROC AUC {num(m['roc_auc'])}, top-decile lift {num(m['top_decile_lift'])}",
        "  churn by zone: " + ", ".join(f"{z['zone']} {pct(z['churn_rate'])} of {z['accounts']}" for z in m["by_zone"]),
        f"  false negatives {len(result.false_negatives)}, false positives {len(result.false_positives)}",
    ]
    if m["churners"] == 0:
        lines = [ln for ln in lines if not ln.startswith(("  ROC AUC", "  flagged = score"))]
    from customer_health.validation.baseline import format_comparison

    lines += format_comparison(result.baseline)
    lines += [f"  note: {n}" for n in (result.notes[1:] if m["churners"] == 0 else result.notes)]
    if result.report_path:
        lines.append(f"  report: {result.report_path}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m customer_health.validation.audit``: audit the current warehouse, print metrics."""
    parser = argparse.ArgumentParser(
        prog="python -m customer_health.validation.audit",
        description="Audit the health score against churn outcomes in the warehouse and write the HTML report.",
    )
    parser.add_argument("--start", type=date.fromisoformat, help="first outcome date (default: 365 days before --end)")
    parser.add_argument("--end", type=date.fromisoformat, help="last outcome date (default: where the data ends - the latest known outcome)")
    parser.add_argument("--horizon-days", type=int, default=DEFAULT_HORIZON_DAYS, help="churn horizon H (default 90)")
    parser.add_argument("--model-version", help="registered model version (default: active, else the shipped v1)")
    parser.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD, help="flagged = score <= threshold (default 49)")
    parser.add_argument("--cadence", choices=CADENCES, default="quarterly", help="snapshot dates (default quarterly)")
    parser.add_argument("--report-dir", help="folder of the HTML report (default .local/reports)")
    parser.add_argument("--warehouse-url", help="SQLAlchemy URL (default: the configured warehouse)")
    parser.add_argument("--skip-outcomes", action="store_true", help="use account_outcomes as stored, do not rebuild it")
    parser.add_argument("--no-store", action="store_true", help="do not write model_audits / model_versions")
    parser.add_argument(
        "--recalibrate",
        action="store_true",
        help="also fit a recalibrated model (registered as proposed) and print its held-out metrics beside the current one's",
    )
    args = parser.parse_args(argv)

    from customer_health.validation.outcomes import build_outcomes
    from customer_health.warehouse.engine import get_engine

    engine = get_engine(args.warehouse_url)
    today = utcnow().date()
    outcomes_line = None
    try:
        if not args.skip_outcomes:
            known_by = args.end or (today - timedelta(days=1))
            report = build_outcomes(engine, known_by)
            outcomes_line = f"Outcomes known by {known_by}: {report.churn} churn, {report.contraction} contraction, {report.expansion} expansion"
        start, end = resolve_window(today, args.start, args.end, engine)
        result = audit_model(
            engine,
            start,
            end,
            horizon_days=args.horizon_days,
            model_version=args.model_version,
            threshold=args.threshold,
            cadence=args.cadence,
            report_dir=args.report_dir,
            store=not args.no_store,
        )
    except (AuditError, ValueError) as exc:
        print(f"audit failed: {exc}", file=sys.stderr)
        return 2
    print(format_summary(result))
    if outcomes_line:
        print(f"  {outcomes_line}; window ends {end} (where the known outcomes end)" if not args.end else f"  {outcomes_line}")
    if args.recalibrate:
        from customer_health.validation.recalibrate import recalibrate

        try:
            recal = recalibrate(
                engine, start, end, horizon_days=args.horizon_days, parent_version=args.model_version, register=not args.no_store
            )
        except ValueError as exc:
            print(f"recalibration failed: {exc}", file=sys.stderr)
            return 2
        print(format_recalibration(recal.summary()))
    return 0


def format_recalibration(summary: dict[str, Any]) -> str:
    """The current model, the in-range and the free fit side by side on the held-out periods,
    with the plain-LR baseline; warnings (worse than the baseline, AUC under 0.6) first."""
    rows = [("ROC AUC", "roc_auc", "{:.3f}"), ("sensitivity", "sensitivity", "{:.1%}"), ("specificity", "specificity", "{:.1%}"),
            ("precision", "precision", "{:.1%}"), ("top-decile lift", "top_decile_lift", "{:.2f}"), ("observations", "observations", "{}"),
            ("churners", "churners", "{}")]
    old = summary.get("old") or {}
    fits = {k: (f.get("holdout") or {}) for k, f in (summary.get("fits") or {}).items()} or {"proposed": summary.get("new") or {}}
    proposed = summary.get("proposed_fit")
    labels = {"in_range": "in-range fit", "free": "free fit"}

    def cell(m: dict[str, Any], key: str, fmt: str) -> str:
        return "n/a" if m.get(key) is None else fmt.format(m[key])

    def head(kind: str) -> str:
        return labels.get(kind, kind) + (" *" if kind == proposed else "")

    lines = list(summary.get("warnings") or [])
    lines += [
        f"Recalibration: {summary.get('parent_version')} -> proposed {summary.get('proposed_version')} "
        f"(* = the {labels.get(proposed, proposed)}; {summary.get('folds')} time folds, {summary.get('training_rows')} training rows, "
        f"{summary.get('training_churners')} churners); held-out periods:",
        f"  {'metric':<16} {summary.get('parent_version') or 'current':>14}" + "".join(f" {head(k):>15}" for k in fits),
    ]
    lines += [f"  {label:<16} {cell(old, key, fmt):>14}" + "".join(f" {cell(fits[k], key, fmt):>15}" for k in fits) for label, key, fmt in rows]
    baseline = summary.get("baseline") or {}
    if baseline and not baseline.get("skipped") and baseline.get("baseline_auc") is not None:
        lines.append(
            f"  baseline (plain logistic regression on the raw signals, same held-out rows): ROC AUC {baseline['baseline_auc']:.3f}; "
            f"flagging as many rows as the proposal ({baseline['flagged']}): sensitivity {baseline['baseline_sensitivity']:.1%}, "
            f"specificity {baseline['baseline_specificity']:.1%}"
        )
    for kind, f in (summary.get("fits") or {}).items():
        outside = f.get("out_of_range") or []
        if outside:
            lines.append(
                f"  {labels.get(kind, kind)}: weights outside the seeds' ranges: "
                + ", ".join(f"{o['segment']} {o['dimension']} {o['weight']:.0%} (range {o['range'][0]:.0%}-{o['range'][1]:.0%})" for o in outside)
            )
    selection = summary.get("selection") or {}
    if selection:
        taken = [k for k in selection.get("candidates") or [] if k in (selection.get("kept") or [])]
        lines.append(
            f"  signals: candidates {', '.join(selection.get('candidates') or []) or 'none'} (taken up: {', '.join(taken) or 'none'}); "
            f"no weight (uninformative): {', '.join(selection.get('dropped') or []) or 'none'}; "
            f"no data: {', '.join(selection.get('no_data') or []) or 'none'}"
        )
    calibration = summary.get("score_calibration")
    if calibration:
        knots = calibration.get("knots") or []
        fitted = calibration.get("fitted") or {}
        line = "  score calibration: composite -> score " + ", ".join(f"{k['composite']:g} -> {k['score']:g}" for k in knots)
        if fitted.get("training_sensitivity") is not None:
            line += (
                f" (fitted on training periods: sensitivity {fitted['training_sensitivity']:.1%}, "
                f"specificity {fitted['training_specificity']:.1%})"
            )
        lines.append(line)
    lines.append("  The proposal scores nothing until a person approves it (customer_health_model_audit's review task).")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
