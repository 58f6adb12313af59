"""The health model on both synthetic companies, graded by the audit itself (issue #18's targets).

For each company - the B2B company at the size ``make demo`` uses (2,000 accounts, two years,
seed 42, a year of score history) and the self-serve company (``health_sandbox/self_serve.py``,
same size, anchored on Stripe, only Stripe and the product database connected) - this script
generates it (or reuses the copy in ``--workdir``), serves it on loopback, extracts it through
the real clients (``pipeline.extract_*``, the same functions the daily DAG's tasks call),
builds the crosswalk, rebuilds the score history and then prints, with a 90-day horizon:

* the audit of the active model (v1 out of the box) over the window ending where the data ends
  (``validation.audit.audit_model``): its ROC AUC, and the share of the audited accounts At Risk
  or Critical (score <= 49), with the audit's own summary lines (baseline beside the model);
* the recalibration (``validation.recalibrate.recalibrate``, not registered): the held-out
  figures of the current model, the in-range and free fits, and the plain logistic regression
  on the raw signals on the same held-out rows;
* a last table of both companies against the issue's targets.

Nothing here tunes a company: the companies are what their generators and committed stories
make them, and the figures are what the audit measures. Usage::

    python benchmarks/eval_models.py                      # both companies, demo size
    python benchmarks/eval_models.py --company self-serve --accounts 600 --days 500

Each company keeps its data in ``--workdir/<company>`` (default ``.local/eval``); a second run
reuses the generated company and a copy of its extracted raw tables (``extracted.db``, taken
before anything was scored), but starts a new warehouse from that copy, builds the crosswalk and
rebuilds the history, so the figures are those of the code and model config as they are now
(``--reuse-warehouse`` keeps the whole warehouse, its model registry and its score history;
``--re-extract`` extracts again).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "include", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

HORIZON_DAYS = 90
TARGETS = {
    "b2b": "v1 AUC >= 0.80; recalibrated AUC >= 0.82, sensitivity >= 75 %, specificity >= 70 %",
    "self-serve": "v1 AUC >= 0.65 with some accounts At Risk; recalibrated AUC >= baseline and >= 0.75",
}


@dataclass
class Figures:
    """What one company measured (None where the step did not produce it)."""

    company: str
    accounts: int = 0
    v1_version: str | None = None
    v1_auc: float | None = None
    observations: int | None = None
    churners: int | None = None
    at_risk_share: float | None = None
    holdout_v1_auc: float | None = None
    proposed_version: str | None = None
    proposed_fit: str | None = None
    proposed_auc: float | None = None
    proposed_sensitivity: float | None = None
    proposed_specificity: float | None = None
    baseline_auc: float | None = None
    notes: list[str] = field(default_factory=list)


def _step(msg: str) -> float:
    print(f"==> {msg}", flush=True)
    return time.monotonic()


def _done(t0: float, extra: str = "") -> None:
    print(f"    done in {time.monotonic() - t0:.1f} s{(' - ' + extra) if extra else ''}", flush=True)


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set environment variables for a block (the sandbox's connections, the warehouse, the mapping)."""
    from customer_health.warehouse.engine import engine_for

    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    engine_for.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        engine_for.cache_clear()


def _generate(company: str, folder: Path, accounts: int, days: int, seed: int, end: date) -> str:
    if company == "b2b":
        from health_sandbox.company import CompanySpec, generate_company

        summary = generate_company(folder, CompanySpec(accounts=accounts, days=days, seed=seed, end_date=end))
    else:
        from health_sandbox.self_serve import SelfServeSpec, generate_self_serve

        summary = generate_self_serve(folder, SelfServeSpec(accounts=accounts, days=days, seed=seed, end_date=end))
    return summary.describe().splitlines()[0] if hasattr(summary, "describe") else ""


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database (WAL included), through SQLite's backup API."""
    import sqlite3

    target.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def _scored_dates(engine: Any, start: date, end: date) -> int:
    from sqlalchemy import func, select

    from customer_health.warehouse.schema import health_scores

    with engine.connect() as conn:
        return conn.execute(
            select(func.count(func.distinct(health_scores.c.as_of_date))).where(
                health_scores.c.as_of_date.between(start, end)
            )
        ).scalar_one()


def _headline(summary: dict[str, Any], key: str) -> dict[str, Any]:
    value = summary.get(key)
    return value if isinstance(value, dict) else {}


def evaluate(company: str, args: argparse.Namespace) -> Figures:
    """Generate, serve, extract, rebuild and grade one company; print what the audit prints."""
    from customer_health import pipeline
    from customer_health.sources.mapping import SOURCES_FILE_ENV
    from customer_health.warehouse.engine import engine_for
    from customer_health.warehouse.migrate import upgrade_to_head
    from health_sandbox.connections import as_environment, sandbox_connections
    from health_sandbox.server import Sandbox

    figures = Figures(company)
    end = args.end_date
    work = args.workdir / company
    folder = work / "sandbox"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\n######## {company} company: {args.accounts} accounts, {args.days} days ending {end}, seed {args.seed}")
    t0 = _step(f"generate into {folder} (reused when the same spec is there)")
    _done(t0, _generate(company, folder, args.accounts, args.days, args.seed, end))

    extracted, extracted_spec = work / "extracted.db", work / "extracted.json"
    spec = json.dumps({"accounts": args.accounts, "days": args.days, "seed": args.seed, "end": end.isoformat()})
    reuse_extraction = (
        not args.re_extract and extracted.exists() and extracted_spec.exists() and extracted_spec.read_text() == spec
    )
    if not args.reuse_warehouse:
        (work / "warehouse.db").unlink(missing_ok=True)
        if reuse_extraction:
            _sqlite_copy(extracted, work / "warehouse.db")
    url = f"sqlite:///{work / 'warehouse.db'}"
    engine_for.cache_clear()
    engine = engine_for(url)
    upgrade_to_head(engine)
    sandbox = Sandbox.start(folder)
    try:
        env = as_environment(sandbox_connections(sandbox.endpoints, url))
        from customer_health import settings

        env[settings.WAREHOUSE_URL_ENV] = url
        if company == "self-serve":
            sources = work / "sources.yaml"
            sources.write_text("version: 1\nidentity:\n  anchor: stripe\n")
            env[SOURCES_FILE_ENV] = str(sources)
        else:
            env[SOURCES_FILE_ENV] = ""
        with _environment(env):
            history_start = end - timedelta(days=args.history_days - 1)
            if _scored_dates(engine, history_start, end) < args.history_days:
                until = datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
                pipeline.migrate_warehouse()
                if reuse_extraction and not args.reuse_warehouse:
                    print(f"==> extracted raw tables: copied from {extracted} (--re-extract to extract again)", flush=True)
                else:
                    t0 = _step("extract every connected source (pipeline.extract_*)")
                    skipped = []
                    for name in ("salesforce", "zendesk", "stripe", "product"):
                        try:
                            getattr(pipeline, f"extract_{name}")(until)
                        except Exception as exc:  # AirflowSkipException: not connected
                            if type(exc).__name__ != "AirflowSkipException":
                                raise
                            skipped.append(name)
                    _sqlite_copy(work / "warehouse.db", extracted)
                    extracted_spec.write_text(spec)
                    _done(t0, f"not connected: {', '.join(skipped) or 'none'}; raw tables kept in {extracted}")
                t0 = _step("build the crosswalk")
                _done(t0, str(pipeline.build_crosswalk()))
                t0 = _step(f"rebuild {args.history_days} days of score history, {history_start} .. {end}")
                pipeline.rebuild_history(history_start, end, workers=args.workers)
                _done(t0)
            else:
                print(f"==> score history {history_start} .. {end}: already built", flush=True)
            figures.accounts = _accounts(engine)
            _grade(engine, figures)
    finally:
        sandbox.stop()
    return figures


def _accounts(engine: Any) -> int:
    from sqlalchemy import func, select

    from customer_health.warehouse.schema import account_crosswalk

    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(account_crosswalk)).scalar_one()


def _grade(engine: Any, figures: Figures) -> None:
    """The audit (v1) and the recalibration, printed as the audit prints them; figures kept."""
    from customer_health.validation import audit as audit_module
    from customer_health.validation.outcomes import build_outcomes

    today = datetime.now(UTC).date()
    build_outcomes(engine, today)
    start, end = audit_module.resolve_window(today, None, None, engine)
    t0 = _step(f"audit of the active model, outcomes {start} .. {end}, horizon {HORIZON_DAYS} days")
    result = audit_module.audit_model(
        engine, start, end, horizon_days=HORIZON_DAYS, store=False, write_report=False
    )
    _done(t0)
    print(audit_module.format_summary(result), flush=True)
    m = result.metrics
    figures.v1_version = result.model_version
    figures.v1_auc = m.get("roc_auc")
    figures.observations = m.get("observations")
    figures.churners = m.get("churners")
    zones = {z["zone"]: z["accounts"] for z in m.get("by_zone", [])}
    if figures.observations:
        figures.at_risk_share = (zones.get("At Risk", 0) + zones.get("Critical", 0)) / figures.observations

    from customer_health.validation.recalibrate import recalibrate

    t0 = _step(f"recalibration (held-out time folds, horizon {HORIZON_DAYS} days; not registered)")
    try:
        summary = recalibrate(engine, start, end, horizon_days=HORIZON_DAYS, register=False).summary()
    except ValueError as exc:
        figures.notes.append(f"recalibration failed: {exc}")
        print(f"    recalibration failed: {exc}", flush=True)
        return
    _done(t0)
    formatter = getattr(audit_module, "format_recalibration", None)
    if formatter is not None:
        print(formatter(summary), flush=True)
    figures.holdout_v1_auc = _headline(summary, "old").get("roc_auc")
    new = _headline(summary, "new")
    figures.proposed_version = summary.get("proposed_version")
    figures.proposed_fit = summary.get("proposed_fit")
    figures.proposed_auc = new.get("roc_auc")
    figures.proposed_sensitivity = new.get("sensitivity")
    figures.proposed_specificity = new.get("specificity")
    baseline = summary.get("baseline") or {}
    figures.baseline_auc = baseline.get("baseline_auc") if isinstance(baseline, dict) else None


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def verdicts(f: Figures) -> list[str]:
    """Each target of the issue for this company: met, missed, or not measured."""

    def check(label: str, ok: bool | None) -> str:
        return f"{label}: {'not measured' if ok is None else ('met' if ok else 'MISSED')}"

    def at_least(value: float | None, bound: float) -> bool | None:
        return None if value is None else value >= bound

    if f.company == "b2b":
        return [
            check("v1 AUC >= 0.80", at_least(f.v1_auc, 0.80)),
            check("recalibrated AUC >= 0.82", at_least(f.proposed_auc, 0.82)),
            check("recalibrated sensitivity >= 75 %", at_least(f.proposed_sensitivity, 0.75)),
            check("recalibrated specificity >= 70 %", at_least(f.proposed_specificity, 0.70)),
        ]
    beats = None if f.proposed_auc is None or f.baseline_auc is None else f.proposed_auc >= f.baseline_auc
    return [
        check("v1 AUC >= 0.65", at_least(f.v1_auc, 0.65)),
        check("some accounts At Risk", None if f.at_risk_share is None else f.at_risk_share > 0),
        check("recalibrated AUC >= baseline", beats),
        check("recalibrated AUC >= 0.75", at_least(f.proposed_auc, 0.75)),
    ]


def table(results: list[Figures]) -> str:
    """The closing table: one line per company, then its targets."""
    lines = [
        "",
        f"Both companies, horizon {HORIZON_DAYS} days (audit window ends where the data ends):",
        f"  {'company':<11} {'accounts':>8} {'v1 AUC':>7} {'At Risk':>8} {'held-out v1':>11} {'proposed':>9} "
        f"{'sens':>6} {'spec':>6} {'LR baseline':>11}",
    ]
    for f in results:
        lines.append(
            f"  {f.company:<11} {f.accounts:>8} {_fmt(f.v1_auc):>7} {_fmt(f.at_risk_share, '{:.1%}'):>8} "
            f"{_fmt(f.holdout_v1_auc):>11} {_fmt(f.proposed_auc):>9} {_fmt(f.proposed_sensitivity, '{:.0%}'):>6} "
            f"{_fmt(f.proposed_specificity, '{:.0%}'):>6} {_fmt(f.baseline_auc):>11}"
        )
    for f in results:
        lines.append(f"  {f.company}: " + "; ".join(verdicts(f)) + (f" ({'; '.join(f.notes)})" if f.notes else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--company", choices=("both", "b2b", "self-serve"), default="both")
    parser.add_argument("--accounts", type=int, default=2000, help="accounts per company (make demo: 2000)")
    parser.add_argument("--days", type=int, default=730, help="days of generated history (make demo: 730)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--history-days", type=int, default=365, help="score history to rebuild (make demo: 365)")
    parser.add_argument("--end-date", type=date.fromisoformat, default=datetime.now(UTC).date())
    parser.add_argument("--workers", type=int, default=1, help="processes for the history rebuild")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".local" / "eval")
    parser.add_argument("--reuse-warehouse", action="store_true", help="keep the warehouse and history of a previous run")
    parser.add_argument("--re-extract", action="store_true", help="extract again instead of copying extracted.db")
    args = parser.parse_args(argv)
    companies = ["b2b", "self-serve"] if args.company == "both" else [args.company]
    results = []
    for company in companies:
        try:
            results.append(evaluate(company, args))
        except Exception:  # one company failing must not hide the other's figures
            traceback.print_exc()
            results.append(Figures(company, notes=["failed: see the traceback above"]))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
