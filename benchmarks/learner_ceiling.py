"""How well *any* simple learner ranks churners on a company: the ceiling the health model is under.

An AUC target means something only if the data can reach it. This script takes the same
labelled monthly snapshots the recalibration fits on (``validation.recalibrate.training_snapshots``
over the window the audit resolves: it ends where the outcomes end, horizon 90 days) and grades,
on the same expanding time folds (each snapshot date predicted by a fit on the snapshots whose
labels were known by then), learners that are free of the health model's constraints:

* ``LR signals``: the audit's baseline itself (``validation.baseline.predict_on_folds``) -
  logistic regression on the raw catalogued signals (median-imputed, a missing-indicator per
  signal, standardized);
* ``LR events``: logistic regression on log(1 + count) of every product event type (and feature
  key) in the 7 and 30 days before the snapshot, read straight from the product database - the
  learner the foreign company's 0.73 came from (issue #18);
* ``LR events + signals`` and ``GBM events + signals`` (scikit-learn's histogram gradient boosting,
  fixed seed): both sets together, linear and not (here the signals are median-imputed over all
  rows with a missing-indicator each: label-free preprocessing; every learner is standardized and
  fitted on each fold's training rows only).

It reads a company prepared by ``benchmarks/eval_models.py`` (its ``--workdir``: the warehouse
with its score history, outcomes and crosswalk, and the sandbox's product database); nothing is
written. Usage::

    python benchmarks/eval_models.py --company self-serve      # prepares .local/eval/self-serve
    python benchmarks/learner_ceiling.py --company self-serve
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "include", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HORIZON_DAYS = 90


def event_counts(product_db: Path, snapshots: pd.DataFrame, source_of: dict[str, str]) -> pd.DataFrame:
    """log1p counts per event type / feature key in the 7 and 30 days before each snapshot row."""
    frames = []
    with sqlite3.connect(f"file:{product_db}?mode=ro", uri=True) as db:
        for day in sorted(snapshots["as_of_date"].unique()):
            stamp = pd.Timestamp(day)
            for window in (7, 30):
                counts = pd.read_sql(
                    "SELECT account_id, COALESCE(feature_key, event_name) AS k, COUNT(*) AS n FROM events "
                    "WHERE occurred_at >= ? AND occurred_at < ? GROUP BY 1, 2",
                    db,
                    params=((stamp - pd.Timedelta(days=window)).strftime("%Y-%m-%d"), stamp.strftime("%Y-%m-%d")),
                )
                wide = counts.pivot(index="account_id", columns="k", values="n").add_prefix(f"last{window}d_")
                wide["as_of_date"] = day
                frames.append(wide.reset_index())
    counts = pd.concat(frames).groupby(["account_id", "as_of_date"]).first().reset_index()
    rows = snapshots[["account_key", "as_of_date"]].assign(account_id=snapshots["account_key"].map(source_of))
    merged = rows.merge(counts, on=["account_id", "as_of_date"], how="left")
    columns = [c for c in merged.columns if c.startswith("last")]
    return np.log1p(merged[columns].fillna(0.0))


def grade(name: str, x: np.ndarray, churned: np.ndarray, days: np.ndarray, make) -> None:
    """Held-out ROC AUC of ``make()`` on expanding time folds (standardized on each training set)."""
    from customer_health.validation.metrics import roc_auc

    risks, labels = [], []
    for t in sorted(set(days)):
        train = np.array([d + timedelta(days=HORIZON_DAYS) <= t for d in days])
        test = days == t
        if churned[train].sum() < 10 or churned[train].all():
            continue
        mean, scale = x[train].mean(axis=0), x[train].std(axis=0) + 1e-9
        model = make().fit((x[train] - mean) / scale, churned[train])
        risks.append(model.predict_proba((x[test] - mean) / scale)[:, 1])
        labels.append(churned[test])
    if not risks:
        print(f"  {name:<24} no time fold with 10 churners to train on")
        return
    print(f"  {name:<24} ROC AUC {roc_auc(-np.concatenate(risks), np.concatenate(labels)):.3f}"
          f"   ({sum(len(r) for r in risks)} held-out rows)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--company", choices=("b2b", "self-serve"), default="self-serve")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".local" / "eval")
    args = parser.parse_args()
    folder = args.workdir / args.company
    if not (folder / "warehouse.db").exists():
        sys.exit(f"{folder / 'warehouse.db'} does not exist: run benchmarks/eval_models.py --company {args.company} first")

    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sqlalchemy import select

    from customer_health.validation.audit import resolve_window
    from customer_health.validation.baseline import predict_on_folds, raw_signal_columns
    from customer_health.validation.metrics import roc_auc
    from customer_health.validation.recalibrate import training_snapshots
    from customer_health.validation.snapshots import as_date, snapshot_dates
    from customer_health.warehouse.engine import engine_for
    from customer_health.warehouse.schema import account_identity_map as ids

    engine = engine_for(f"sqlite:///{folder / 'warehouse.db'}")
    start, end = resolve_window(datetime.now(UTC).date(), None, None, engine)
    snapshots = training_snapshots(engine, snapshot_dates(start, end, HORIZON_DAYS, "monthly"), HORIZON_DAYS)
    snapshots = snapshots.sort_values(["as_of_date", "account_key"], kind="stable").reset_index(drop=True)
    snapshots["as_of_date"] = snapshots["as_of_date"].map(as_date)
    with engine.connect() as conn:
        source_of = dict(conn.execute(select(ids.c.account_key, ids.c.source_id).where(ids.c.system == "product")).all())
    churned = snapshots["churned"].to_numpy(dtype=bool)
    days = snapshots["as_of_date"].to_numpy()
    print(f"{args.company}: {len(snapshots)} snapshot rows, {int(churned.sum())} churners within {HORIZON_DAYS} days, "
          f"snapshots {days.min()}..{days.max()} (window {start}..{end})")  # fmt: skip

    raw = np.column_stack([pd.to_numeric(snapshots[k], errors="coerce").to_numpy(dtype=float)
                           for k in raw_signal_columns(snapshots)])  # fmt: skip
    varying = [j for j in range(raw.shape[1]) if np.nanmax(raw[:, j], initial=0) > np.nanmin(raw[:, j], initial=0)]
    raw = raw[:, varying]
    missing = np.isnan(raw)
    signals = np.column_stack([np.where(missing, np.nanmedian(raw, axis=0), raw), missing[:, missing.any(axis=0)]])
    events = event_counts(folder / "sandbox" / "product.db", snapshots, source_of).to_numpy(dtype=float)

    def lr():
        return LogisticRegression(C=1.0, max_iter=5000)

    def gbm():
        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0)

    risk = predict_on_folds(snapshots, churned, sorted(set(days)), HORIZON_DAYS)
    held = ~np.isnan(risk)
    print(f"  {'LR signals (baseline)':<24} ROC AUC {roc_auc(-risk[held], churned[held]):.3f}   ({int(held.sum())} held-out rows)")
    grade("LR events", events, churned, days, lr)
    grade("LR events + signals", np.column_stack([events, signals]), churned, days, lr)
    grade("GBM events + signals", np.column_stack([events, signals]), churned, days, gbm)


if __name__ == "__main__":
    main()
