"""Compare normalization methods on held-out churn: the B2B demo company and the self-serve one (#18).

For each company this script

1. generates it (``health_sandbox.company.generate_company`` / ``health_sandbox.self_serve``),
   extracts it with the real extraction functions through the sandbox into a SQLite warehouse,
   builds the crosswalk and the churn outcomes (``validation.outcomes.build_outcomes``);
2. computes the point-in-time signals of every monthly snapshot date with the product's own
   ``compute_signals`` and labels each (account, snapshot) churned within the 90-day horizon
   (``validation.recalibrate.label_snapshots``);
3. scores every snapshot through the scoring engine (``engine.score_accounts``) once per
   normalization method, v1's weights otherwise unchanged, and prints a table: held-out ROC AUC
   (and over every snapshot), the share of scored accounts At Risk or Critical, the share of
   customers left unscored for lack of data, the share of population-based signal values
   normalized to exactly 0 or 100 (``clipped``: resolution lost at the ends), and the mean and
   10th/50th/90th percentiles of the engagement sub-score.

"Held-out" = the later half of the snapshot dates (time-ordered). None of the methods is fitted
on outcomes (their parameters are stated in the code, the same for both companies), so the
earlier half is not used to fit anything; it is reported as well (``all``) to show the figures
are not an accident of one period.

The self-serve company has no Salesforce, so the product's account roster (``raw_sf_account``)
is empty after extraction. Until identity can be anchored on another system (issue #18 item 5),
this benchmark anchors it itself, in the benchmark's own warehouse only: one account per product
account (its id as the key, ``customer_since`` = the end of the 14-day trial), the product and
Stripe identities mapped to it (Stripe by ``metadata.product_account_id``). It changes no signal
definition: the signals are computed by the product's code from those tables.

Companies, warehouses and signal frames are cached under ``--out`` (default
``.local/compare_normalization``); a second run only re-scores.

    .local/venv/bin/python benchmarks/compare_normalization.py
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
sys.path.insert(0, str(ROOT))

END = date(2026, 11, 1)
HORIZON_DAYS = 90
FIRST_SNAPSHOT_AFTER_DAYS = 180  # signals with 90- and 180-day windows need history behind them


# --------------------------------------------------------------------------- companies
def _extract(company: Path, path: Path) -> None:
    """Extract ``company`` through the sandbox into the SQLite file ``path`` (real extraction)."""
    import os

    from customer_health import pipeline, settings
    from customer_health.warehouse.engine import engine_for
    from health_sandbox.connections import as_environment, sandbox_connections
    from health_sandbox.server import Sandbox

    folder = path.with_name(path.name + ".extracting")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    work = folder / "sandbox"
    shutil.copytree(company, work)
    sandbox = Sandbox.start(work)
    target = folder / "warehouse.db"
    url = f"sqlite:///{target}"
    saved = dict(os.environ)
    try:
        os.environ.update(as_environment(sandbox_connections(sandbox.endpoints, url)))
        os.environ[settings.WAREHOUSE_URL_ENV] = url
        engine_for.cache_clear()
        until = datetime.combine(END + timedelta(days=1), datetime.min.time())
        pipeline.migrate_warehouse()
        from airflow.sdk.exceptions import AirflowSkipException

        for extract in (pipeline.extract_salesforce, pipeline.extract_zendesk, pipeline.extract_stripe,
                        pipeline.extract_product, pipeline.build_crosswalk):  # fmt: skip
            try:
                extract(until) if extract is not pipeline.build_crosswalk else extract()
            except AirflowSkipException as skipped:  # a source the company does not have
                print(f"{company.name}: {skipped}", flush=True)
        engine_for(url).dispose()
    finally:
        sandbox.stop()
        os.environ.clear()
        os.environ.update(saved)
        engine_for.cache_clear()
    shutil.move(target, path)
    shutil.rmtree(folder, ignore_errors=True)


def _anchor_on_product(url: str) -> int:
    """Benchmark-only identity anchor for a company without Salesforce (see the module docstring)."""
    from sqlalchemy import delete, insert, select

    from customer_health.warehouse.engine import engine_for
    from customer_health.warehouse.raw_schema import (
        account_identity_map,
        raw_product_account,
        raw_sf_account,
        raw_stripe_customer,
    )

    engine = engine_for(url)
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        accounts = conn.execute(select(raw_product_account.c.id, raw_product_account.c.name,
                                       raw_product_account.c.plan, raw_product_account.c.created_at)).all()
        customers = conn.execute(select(raw_stripe_customer.c.id, raw_stripe_customer.c.product_account_id)).all()
        if conn.execute(select(raw_sf_account.c.id).limit(1)).first() is not None:
            raise SystemExit(f"{url} has Salesforce accounts: the product anchor is only for a company without them")
        conn.execute(delete(account_identity_map))
        ids = {a.id for a in accounts}
        conn.execute(insert(raw_sf_account), [
            {"id": a.id, "name": a.name, "plan": a.plan, "customer_since": (a.created_at + timedelta(days=14)).date(),
             "product_account_id": a.id, "created_at": a.created_at, "is_deleted": False, "extracted_at": now}
            for a in accounts
        ])  # fmt: skip
        rows = [{"system": "product", "source_id": a.id, "account_key": a.id, "match_method": "anchor", "updated_at": now}
                for a in accounts]  # fmt: skip
        rows += [{"system": "stripe", "source_id": c.id, "account_key": c.product_account_id, "match_method": "metadata",
                  "updated_at": now} for c in customers if c.product_account_id in ids]  # fmt: skip
        conn.execute(insert(account_identity_map), rows)
    return len(accounts)


def build(kind: str, out: Path, accounts: int, days: int, seed: int) -> Path:
    """The labelled snapshot signals of one company (cached as a pickle)."""
    from customer_health.scoring.signals import compute_signals
    from customer_health.validation.outcomes import build_outcomes, read_outcomes
    from customer_health.validation.recalibrate import label_snapshots
    from customer_health.warehouse.engine import engine_for

    shape = f"{kind}-{accounts}x{days}-s{seed}"
    frames_path = out / f"{shape}.signals.pkl"
    if frames_path.exists():
        return frames_path
    company = out / f"{shape}-company"
    t0 = time.monotonic()
    if kind == "b2b":
        from health_sandbox.company import CompanySpec, generate_company

        generate_company(company, CompanySpec(accounts=accounts, days=days, seed=seed, end_date=END))
    else:
        from health_sandbox.self_serve import SelfServeSpec, generate_self_serve

        generate_self_serve(company, SelfServeSpec(accounts=accounts, days=days, seed=seed, end_date=END))
    print(f"{shape}: company in {time.monotonic() - t0:.0f} s", flush=True)
    db = out / f"{shape}.warehouse.db"
    if not db.exists():
        t0 = time.monotonic()
        _extract(company, db)
        print(f"{shape}: extracted in {time.monotonic() - t0:.0f} s", flush=True)
    url = f"sqlite:///{db}"
    if kind == "self_serve":
        print(f"{shape}: {_anchor_on_product(url)} accounts anchored on the product", flush=True)
    engine = engine_for(url)
    build_outcomes(engine, END)
    start = END - timedelta(days=days - 1)
    first = start + timedelta(days=FIRST_SNAPSHOT_AFTER_DAYS)
    dates, day = [], date(first.year, first.month, 1)
    while day + timedelta(days=HORIZON_DAYS) <= END:
        if day >= first:
            dates.append(day)
        day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    t0 = time.monotonic()
    stacked = pd.concat([compute_signals(engine, d) for d in dates], ignore_index=True)
    labelled = label_snapshots(stacked, read_outcomes(engine, outcomes=["churn"]), HORIZON_DAYS)
    print(f"{shape}: {len(dates)} snapshots, {len(labelled)} rows, {int(labelled['churned'].sum())} churned "
          f"within {HORIZON_DAYS} days; signals in {time.monotonic() - t0:.0f} s", flush=True)  # fmt: skip
    labelled.to_pickle(frames_path)
    engine.dispose()
    return frames_path


# --------------------------------------------------------------------------- evaluation
def roc_auc(scores: np.ndarray, churned: np.ndarray) -> float:
    """ROC AUC of a health score (low = risk) against churn (ties count half)."""
    from customer_health.validation.metrics import roc_auc as metric

    return float(metric(np.asarray(scores, dtype=float), np.asarray(churned, dtype=bool)))


def evaluate(frame: pd.DataFrame, method: str) -> dict[str, float]:
    """Score every snapshot of ``frame`` with v1 normalized by ``method``; the table's figures."""
    from customer_health.scoring.engine import score_accounts
    from customer_health.scoring.model_config import load_model_config
    from customer_health.scoring.normalize import normalize_signals

    base = load_model_config()
    # A tree from before #18 (run with --methods before) has no baselines.method: v1 as it was.
    config = replace(base, baselines=replace(base.baselines, method=method)) if hasattr(base.baselines, "method") else base
    dates = sorted(pd.unique(frame["as_of_date"]))
    held_out = set(dates[len(dates) // 2 :])
    parts = []
    signal_columns = [c for c in frame.columns if c != "churned"]
    population_signals = [j for j, s in enumerate(config.signals) if s.normalization.method != "fixed_range"]
    held_values = clipped = 0
    for day in dates:
        rows = frame[frame["as_of_date"] == day].reset_index(drop=True)
        normalized = normalize_signals(rows[signal_columns], config).values[:, population_signals]
        present = ~np.isnan(normalized)
        held_values += int(present.sum())
        clipped += int(((normalized <= 0.0) | (normalized >= 100.0))[present].sum())
        scored = score_accounts(rows[signal_columns], config)
        merged = rows[["account_key", "churned"]].merge(
            scored[["account_key", "score", "zone", "engagement_score"]], on="account_key", how="left"
        )
        merged["held_out"] = day in held_out
        parts.append(merged)
    every = pd.concat(parts, ignore_index=True)
    scored_rows = every[every["score"].notna()]
    held = scored_rows[scored_rows["held_out"]]
    engagement = scored_rows["engagement_score"].dropna()
    return {
        "auc_held_out": roc_auc(held["score"], held["churned"]),
        "auc_all": roc_auc(scored_rows["score"], scored_rows["churned"]),
        "at_risk_share": float(scored_rows["zone"].isin(["At Risk", "Critical"]).mean()),
        "unscored_share": float(every["score"].isna().mean()),
        "clipped_share": clipped / held_values if held_values else float("nan"),
        "eng_mean": float(engagement.mean()),
        "eng_p10": float(engagement.quantile(0.10)),
        "eng_p50": float(engagement.quantile(0.50)),
        "eng_p90": float(engagement.quantile(0.90)),
    }


def main(argv: list[str] | None = None) -> int:
    """Build (or reuse) both companies and print the comparison table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".local" / "compare_normalization")
    parser.add_argument("--b2b-accounts", type=int, default=1000)
    parser.add_argument("--b2b-days", type=int, default=730)
    parser.add_argument("--b2b-seed", type=int, default=42)
    parser.add_argument("--self-serve-accounts", type=int, default=1500)
    parser.add_argument("--self-serve-days", type=int, default=730)
    parser.add_argument("--self-serve-seed", type=int, default=7)
    parser.add_argument("--build-only", action="store_true", help="build the cached signal frames and stop")
    parser.add_argument("--methods", nargs="*", default=None, help="default: every method normalize.py knows")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    companies = {
        "B2B": build("b2b", args.out, args.b2b_accounts, args.b2b_days, args.b2b_seed),
        "self-serve": build("self_serve", args.out, args.self_serve_accounts, args.self_serve_days, args.self_serve_seed),
    }
    if args.build_only:
        return 0
    if not args.methods:
        from customer_health.scoring.model_config import NORMALIZATION_METHODS

        args.methods = list(NORMALIZATION_METHODS)
    header = (f"{'method':<20} {'company':<11} {'AUC held-out':>12} {'AUC all':>8} {'At Risk+Crit':>12} "
              f"{'unscored':>8} {'clipped':>8} {'eng mean':>8} {'eng p10':>8} {'eng p50':>8} {'eng p90':>8}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for method in args.methods:
        for name, path in companies.items():
            m = evaluate(pd.read_pickle(path), method)
            print(f"{method:<20} {name:<11} {m['auc_held_out']:>12.3f} {m['auc_all']:>8.3f} {m['at_risk_share']:>12.1%} "
                  f"{m['unscored_share']:>8.1%} {m['clipped_share']:>8.1%} {m['eng_mean']:>8.1f} {m['eng_p10']:>8.1f} {m['eng_p50']:>8.1f} "
                  f"{m['eng_p90']:>8.1f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
