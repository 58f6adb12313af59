"""The model iteration log: every model version, what changed, how accurate, what it did.

The seeds: "Document every model iteration with version numbers, weight adjustments, accuracy
metrics, and business impact measurements". Each registered version (``model_versions``, with
its ``parent_version``) gets one entry:

* **Weight adjustments** against its parent: each segment model's dimension weights and signal
  weights (within their dimension) that changed, signals added to or dropped from the model,
  normalizations that changed, zone bounds, and the score calibration (``score_calibration``).
  Read from the two registered configurations (their exact YAML), never from a file on disk.
* **Accuracy**: the latest audit of the version (``model_audits``, kind ``audit``: its own
  scores graded against churn) and, for a recalibration, the held-out comparison it was
  proposed with (``model_versions.metrics["holdout"]``).
* **Business impact since promotion**: the version's At Risk recovery rate and the churn of the
  accounts it flagged, from the day it became active to today (or to its retirement; at most
  ``window_days``), against the same measures of its parent over as many days before
  (``validation.episodes``; mature episodes only, horizon ``horizon_days``). Promotion is the approval in the registry's trail;
  the first version of a warehouse became active with its first score (nothing before it to
  compare with). A version never promoted has no business impact.

The comparison is before/after, not an experiment: the periods differ (season, the mix of
accounts, the actions in place), a recalibrated model flags a different set of accounts (the
"At Risk" of two versions are not the same accounts), and windows that have not matured yet are
short. ``CAVEATS`` says so wherever the log is shown (the model page, the monthly review).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, func, select

from customer_health.scoring.model_config import ModelConfig, ModelConfigError, load_model_config
from customer_health.validation import episodes as ep
from customer_health.validation.registry import ModelVersion, registered_versions, transition_times
from customer_health.warehouse.io import as_date
from customer_health.warehouse.schema import health_score_summary, model_audits

DEFAULT_WINDOW_DAYS = 365
MIN_CHANGE = 0.0005  # a weight that moved less than this (rounding) did not change

CAVEATS = (
    "Before and after promotion are different periods: seasonality, the mix of accounts and the "
    "actions in place differ, so the comparison is a trend to watch, not a measured effect.",
    "A recalibrated model flags a different set of accounts, so At Risk under two versions are "
    "not the same accounts.",
    "Only episodes that have had the whole horizon to end are counted; a recent promotion has "
    "few of them.",
)


def signal_label(key: str) -> str:
    """A signal as people read it (the catalog's label; the key for a signal it does not know)."""
    from customer_health.scoring.signal_catalog import SIGNALS

    spec = SIGNALS.get(key)
    return spec.label if spec is not None else key.replace("_", " ")


def _weight_rows(parent: ModelConfig, child: ModelConfig) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    old_models = {m.name: m for m in parent.models}
    for model in child.models:
        old = old_models.get(model.name)
        if old is None:
            rows.append({"segment_model": model.name, "weight": "whole segment model", "parent": None, "new": None,
                         "change": "added"})  # fmt: skip
            continue
        for dim in sorted(set(model.dimension_weights) | set(old.dimension_weights)):
            a, b = float(old.dimension_weights.get(dim, 0.0)), float(model.dimension_weights.get(dim, 0.0))
            if abs(a - b) >= MIN_CHANGE:
                rows.append({"segment_model": model.name, "weight": f"{dim} (dimension)", "parent": a, "new": b,
                             "change": b - a})  # fmt: skip
        for dim in sorted(set(model.signal_weights) | set(old.signal_weights)):
            new_w, old_w = model.signal_weights.get(dim, {}), old.signal_weights.get(dim, {})
            for signal in sorted(set(new_w) | set(old_w)):
                a, b = float(old_w.get(signal, 0.0)), float(new_w.get(signal, 0.0))
                if abs(a - b) >= MIN_CHANGE:
                    rows.append({"segment_model": model.name, "weight": f"{signal_label(signal)} (within {dim})", "parent": a,
                                 "new": b, "change": b - a})  # fmt: skip
    for name in sorted(set(old_models) - {m.name for m in child.models}):
        rows.append({"segment_model": name, "weight": "whole segment model", "parent": None, "new": None,
                     "change": "removed"})  # fmt: skip
    return rows


def _normalization(config: ModelConfig, key: str) -> str:
    """A signal's normalization in words: ``fixed range, worst 0.5, best 1``."""
    spec = config.signal(key).normalization
    parts = [spec.method.replace("_", " ")]
    parts += [f"{k.replace('_', ' ')} {v:g}" for k, v in vars(spec).items() if k != "method" and v is not None and v != 0.0]
    return ", ".join(parts)


def weight_changes(parent: ModelConfig, child: ModelConfig) -> dict[str, Any]:
    """What ``child`` changed against ``parent``: weights, signals, normalizations, zones, calibration."""
    old_keys, new_keys = set(parent.signal_keys), set(child.signal_keys)
    normalizations = [
        {"signal": signal_label(key), "parent": _normalization(parent, key), "new": _normalization(child, key)}
        for key in sorted(old_keys & new_keys)
        if _normalization(parent, key) != _normalization(child, key)
    ]
    zones = [
        {"zone": z.name, "parent": f"{o.min}-{o.max}" if o else None, "new": f"{z.min}-{z.max}"}
        for z in child.zones
        for o in [next((p for p in parent.zones if p.name == z.name), None)]
        if o is None or (o.min, o.max) != (z.min, z.max)
    ]
    old_cal, new_cal = parent.score_calibration, child.score_calibration

    def knots(cal: Any) -> str | None:
        if cal is None:
            return None
        return ", ".join(f"{c:g} to {s:g}" for c, s in zip(cal.composite_knots, cal.score_knots, strict=True))

    calibration = None
    if knots(old_cal) != knots(new_cal):
        calibration = {"parent": knots(old_cal) or "none (score = composite)", "new": knots(new_cal) or "none"}
    return {
        "weights": _weight_rows(parent, child),
        "signals_added": [signal_label(k) for k in sorted(new_keys - old_keys)],
        "signals_removed": [signal_label(k) for k in sorted(old_keys - new_keys)],
        "normalizations": normalizations,
        "zones": zones,
        "score_calibration": calibration,
    }


def _config(version: ModelVersion) -> ModelConfig | None:
    try:
        return load_model_config(version.config_yaml)
    except ModelConfigError:
        return None


def _latest_audits(conn: Connection) -> dict[str, dict[str, Any]]:
    t = model_audits.c
    found: dict[str, dict[str, Any]] = {}
    for row in conn.execute(select(model_audits).where(t.kind == "audit").order_by(t.window_end, t.audited_at)):
        found[row.model_version] = {
            "window_start": row.window_start, "window_end": row.window_end, "horizon_days": row.horizon_days,
            "threshold": row.threshold, "roc_auc": row.roc_auc, "sensitivity": row.sensitivity,
            "specificity": row.specificity, "precision": row.precision, "top_decile_lift": row.top_decile_lift,
            "observations": row.observations, "churners": row.churners, "report_path": row.report_path,
        }  # fmt: skip
    return found


def _first_scored(conn: Connection) -> dict[str, date]:
    s = health_score_summary.c
    rows = conn.execute(select(s.model_version, func.min(s.as_of_date)).group_by(s.model_version)).all()
    return {v: as_date(d) for v, d in rows}


def _impact_side(
    conn: Connection, version: str, start: date, end: date, churn: pd.DataFrame, horizon_days: int, as_of: date
) -> dict[str, Any]:
    frame = ep.episodes(conn, version, start, end)
    rec = ep.recovery(frame, horizon_days, as_of)
    churned = ep.churn_after_flag(frame, churn, horizon_days, as_of)
    return {"version": version, "from": start, "to": end, "episodes": rec.episodes, "mature": rec.mature,
            "recovered": rec.recovered, "recovery_rate": rec.rate, "flagged_accounts": churned.flagged,
            "churned": churned.churned, "churn_rate": churned.rate}  # fmt: skip


def stored_churn(conn: Connection) -> pd.DataFrame:
    """The churn outcomes stored by the last model audit (``account_outcomes``)."""
    from customer_health.warehouse.schema import account_outcomes

    t = account_outcomes.c
    rows = conn.execute(select(t.account_key, t.occurred_on).where(t.outcome == "churn")).all()
    frame = pd.DataFrame(rows, columns=["account_key", "occurred_on"])
    frame["occurred_on"] = frame["occurred_on"].map(as_date)
    return frame


def iteration_log(
    conn: Connection,
    as_of: date,
    churn_events: pd.DataFrame | None = None,
    *,
    window_days: int = DEFAULT_WINDOW_DAYS,
    horizon_days: int = ep.DEFAULT_HORIZON_DAYS,
) -> list[dict[str, Any]]:
    """One entry per registered version, oldest first (see the module docstring).

    ``churn_events`` (``account_key``, ``occurred_on``; e.g. ``outcomes.read_outcomes(...,
    outcomes=["churn"])``) gives the churn after flagging; without it that part is None.
    """
    versions = registered_versions(conn)
    by_name = {v.version: v for v in versions}
    approved = transition_times(conn, "approved")
    retired = transition_times(conn, "retired")
    audits = _latest_audits(conn)
    first_scored = _first_scored(conn)
    churn = churn_events if churn_events is not None else pd.DataFrame(columns=["account_key", "occurred_on"])
    log: list[dict[str, Any]] = []
    for version in versions:
        config = _config(version)
        parent = by_name.get(version.parent_version or "")
        parent_config = _config(parent) if parent else None
        if version.version in approved:
            promoted_on, promotion = approved[version.version].date(), "approved"
        elif version.status in ("active", "retired") and version.version in first_scored and not version.parent_version:
            promoted_on, promotion = first_scored[version.version], "first version"
        else:
            promoted_on, promotion = None, "not promoted"
        changes = weight_changes(parent_config, config) if config and parent_config else None
        holdout = (version.metrics or {}).get("holdout") if isinstance(version.metrics, Mapping) else None
        impact = None
        if promoted_on is not None and promoted_on <= as_of:
            until = as_of
            if version.version in retired and retired[version.version].date() > promoted_on:
                until = min(until, retired[version.version].date() - timedelta(days=1))
            after_end = min(until, promoted_on + timedelta(days=window_days - 1))
            length = timedelta(days=(after_end - promoted_on).days + 1)
            after = _impact_side(conn, version.version, promoted_on, after_end, churn, horizon_days, as_of)
            before = None
            if parent is not None:
                # As many days before the promotion, from the parent's first score at the earliest.
                before_start = max(promoted_on - length, first_scored.get(parent.version, promoted_on - length))
                before = _impact_side(conn, parent.version, before_start, promoted_on - timedelta(days=1),
                                      churn, horizon_days, as_of)  # fmt: skip
            impact = {"window_days": window_days, "horizon_days": horizon_days, "before": before, "after": after,
                      "churn_known": churn_events is not None}  # fmt: skip
        log.append({
            "version": version.version, "status": version.status, "parent_version": version.parent_version,
            "created_at": version.created_at, "created_by": version.created_by, "decided_at": version.decided_at,
            "decided_by": version.decided_by, "decision_note": version.decision_note,
            "promoted_on": promoted_on, "promotion": promotion, "changes": changes,
            "description": config.description if config else None,
            "audit": audits.get(version.version), "holdout": holdout, "impact": impact,
        })  # fmt: skip
    return log
