"""Benchmark: rebuild a year of score history, against Airflow's native backfill per date.

Usage::

    PYTHONPATH=include python benchmarks/bench_rebuild.py                       # 10,000 x 365, SQLite
    PYTHONPATH=include python benchmarks/bench_rebuild.py --accounts 2000 --rebuild-days 90
    PYTHONPATH=include python benchmarks/bench_rebuild.py --warehouse postgresql+psycopg2://...
    PYTHONPATH=include python benchmarks/bench_rebuild.py --skip-native-backfill  # rebuild + daily path only

Built once and reused under ``.local/bench`` (while the shape ``<accounts>x<company days>``
matches):

* the synthetic company (``sandbox.company.generate_company``: ``--accounts`` accounts,
  ``--company-days`` days of history ending 2026-11-01, every product event kept) in
  ``rebuild-company-<shape>``;
* a SQLite warehouse with that company extracted by the **real extraction functions** (the
  daily DAG's steps: Salesforce, Zendesk, Stripe and product DB through the sandbox's real
  protocols, then the crosswalk), up to the company's last day: ``rebuild-extracted-<shape>.db``.

Then, in one process and run, on a copy of that warehouse (``rebuild-work-<shape>.db``, or the
``--warehouse`` URL):

1. ``pipeline.rebuild_history`` of the ``--rebuild-days`` dates ending on the company's last day
   on ``--workers`` processes (default: the machine's cores) - the rebuild DAG's mapped tasks
   with ``blocks=workers``: each date block in one pass (its signals vectorized over dates and
   bulk-written, the same frames scored date by date in order and bulk-written), the blocks
   side by side - wall time;
2. the **daily path** (functions only) for the last ``--native-dates`` of those dates
   (``pipeline.clear_signal_input`` + ``pipeline.compute_signals`` + ``pipeline.score`` - what
   the daily DAG's signal and score tasks run, without Airflow), wall time per date;
3. the **native backfill** of ``customer_health_daily`` over the same dates: Airflow's own
   backfill (``_create_backfill``, then the scheduler's run-starting and task-scheduling code)
   with every task of the daily DAG run in-process through the Task SDK, as ``dag.test()`` does
   (``tests/dags/backfill_driver.py``, the driver the tests use). It runs against a sandbox over
   a scratch copy of the company and a fresh private Airflow home (``airflow-rebuild-<shape>``,
   metadata DB migrated, the scoring pool created), with the connections as ``AIRFLOW_CONN_*``.
   The dates' history exists (step 1 wrote it) and the warehouse is extracted up to the last
   day, so the extraction tasks find little new: the cost per date is Airflow's scheduling plus
   every task of the daily run for that date (extract, crosswalk, signals, score, decide actions
   - recorded as suppressed, none dispatched). Its figure per date is the backfill's span (from
   its creation to its completion, in the metadata DB) divided by the number of dates; the
   one-off set-up before it (metadata DB, DAG parse, the start-up of in-process task runs:
   the Execution API app standing in for the API server, the task runner) is printed apart
   and not counted. Airflow's task logs go to
   ``airflow-rebuild-<shape>/native-backfill.log``. Running tasks in-process skips what a real
   worker pays per task (a supervised subprocess that parses the DAG file), so this figure is a
   lower bound of a deployment's: the ratio below is conservative;
4. the ratios: native backfill per date / rebuild per date (the issue's target, >= 50x), and
   daily path per date / rebuild per date.

``--skip-native-backfill`` leaves out step 3 (no sandbox, no Airflow). With ``--warehouse URL``
(PostgreSQL) the extracted SQLite warehouse is copied there first. The machine is shared: wall
times include waiting for the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from _airflow_bench import (
    migrate_metadata,
    output_to,
    point_connections,
    scratch_company,
    task_durations,
    use_private_airflow_home,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
sys.path.insert(0, str(ROOT))

END = date(2026, 11, 1)
DAILY_DAG = "customer_health_daily"


def build_company(folder: Path, accounts: int, days: int) -> None:
    from health_sandbox.company import CompanySpec, generate_company

    t0 = time.monotonic()
    generate_company(folder, CompanySpec(accounts=accounts, days=days, seed=42, end_date=END, event_days=None))
    print(f"company: {accounts:,} accounts x {days} days generated in {time.monotonic() - t0:.0f} s", flush=True)


def _move_sqlite(source: Path, target: Path) -> None:
    """Move a SQLite file with any ``-wal`` / ``-shm`` beside it."""
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.move(source, target)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{source}{suffix}")
        if side.exists():
            shutil.move(side, f"{target}{suffix}")


def build_warehouse(company: Path, path: Path) -> None:
    """Extract the company with the real extraction functions into the SQLite file ``path``."""
    from health_sandbox.server import Sandbox
    from tests.history_helpers import extracted_template

    t0 = time.monotonic()
    # A folder of its own: the template's file name is the same for every shape.
    folder = path.with_name(path.name + ".extracting")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    sandbox = Sandbox.start(company)
    try:
        template = extracted_template(sandbox, folder, END)
    finally:
        sandbox.stop()
    _move_sqlite(template, path)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"warehouse: extracted in {time.monotonic() - t0:.0f} s -> {path}", flush=True)


def _midnight(day: date) -> datetime:
    """The daily DAG's logical date for as-of date ``day`` (the start of its data interval)."""
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def _warm_up_task_runs() -> None:
    """Pay, before the backfill, the one-off start-up of running tasks in-process: the in-process
    Execution API app (what a deployment's API server is: up before any backfill) with its first
    request, and the Task SDK's task runner import. Otherwise the first task of the first date
    carries it (~10-20 s on this machine)."""
    with contextlib.suppress(ImportError, AttributeError):
        import airflow.sdk.execution_time.task_runner  # noqa: F401
        from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

        client = InProcessTestSupervisor._api_client(None)
        print("bench_rebuild warm-up: a request for an unknown task instance ('Task Instance not found' expected)")
        with contextlib.suppress(Exception):  # an unknown task instance: 404, nothing written
            client.task_instances.start(uuid.uuid4(), os.getpid(), datetime.now(UTC))


def native_backfill(company: Path, scratch_root: Path, url: str, first: date, last: date, log: Path) -> dict:
    """Airflow's backfill of the daily DAG for ``first`` .. ``last`` against a sandbox over a
    scratch copy of ``company`` and the warehouse ``url``; timings and the runs' task durations.
    Airflow's own output (task logs) goes to ``log``."""
    from customer_health.warehouse.engine import engine_for
    from health_sandbox.server import Sandbox

    t0 = time.monotonic()
    # The sandbox records writes in company.db: a private copy. product.db is only read (and is
    # the big file), so it is linked.
    scratch = scratch_company(company, scratch_root / f"rebuild-sandbox-{uuid.uuid4().hex[:8]}", link=("product.db",))
    sandbox = Sandbox.start(scratch)
    try:
        with output_to(log):
            point_connections(sandbox, url)
            migrate_metadata()
            from airflow import settings as airflow_settings
            from airflow.dag_processing.dagbag import DagBag
            from airflow.models.backfill import Backfill
            from sqlalchemy import select

            from tests.dags.backfill_driver import drive_backfill

            bag = DagBag(str(ROOT / "dags"))
            assert not bag.import_errors, bag.import_errors
            _warm_up_task_runs()
            setup_s = time.monotonic() - t0

            t1 = time.monotonic()
            runs = drive_backfill(bag.dags[DAILY_DAG], _midnight(first), _midnight(last))
            wall_s = time.monotonic() - t1

            session = airflow_settings.Session()
            try:
                backfill = session.scalars(select(Backfill).where(Backfill.id == runs[0].backfill_id)).one()
                span_s = (backfill.completed_at - backfill.created_at).total_seconds()
            finally:
                session.close()
            per_run = {str(run.logical_date.date()): (str(run.state), task_durations(run)) for run in runs}
    except Exception as exc:
        raise SystemExit(f"the native backfill failed ({type(exc).__name__}: {exc}); Airflow's log: {log}") from exc
    finally:
        sandbox.stop()
        engine_for.cache_clear()
        shutil.rmtree(scratch, ignore_errors=True)
    states = {day: state for day, (state, _) in per_run.items()}
    if len(runs) != (last - first).days + 1 or set(states.values()) != {"success"}:
        raise SystemExit(f"the native backfill did not succeed: {states}; Airflow's log: {log}")
    return {"setup": setup_s, "wall": wall_s, "span": span_s, "runs": per_run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--company-days", type=int, default=400)
    parser.add_argument("--rebuild-days", type=int, default=365)
    parser.add_argument("--native-dates", type=int, default=3, help="dates of the daily path and the native backfill")
    parser.add_argument("--chunk-days", type=int, default=31)
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes running the rebuild's date blocks at once, as the DAG's mapped tasks on that many "
        "worker slots (default: the machine's cores)",
    )
    parser.add_argument("--warehouse", help="SQLAlchemy URL to benchmark on (default: a SQLite copy)")
    parser.add_argument(
        "--skip-native-backfill", action="store_true", help="leave out the Airflow backfill (quick runs)"
    )
    args = parser.parse_args()
    if not 1 <= args.native_dates <= args.rebuild_days:
        parser.error("--native-dates must be between 1 and --rebuild-days")

    bench = ROOT / ".local" / "bench"
    shape = f"{args.accounts}x{args.company_days}"
    # Airflow reads its configuration at import: a private home first, fresh for each run (a
    # backfill left unfinished by an interrupted run would block the next one).
    home = bench / f"airflow-rebuild-{shape}"
    use_private_airflow_home(home)
    if not args.skip_native_backfill:
        shutil.rmtree(home, ignore_errors=True)

    company = bench / f"rebuild-company-{shape}"
    extracted = bench / f"rebuild-extracted-{shape}.db"
    if not (company / "product.db").exists():
        build_company(company, args.accounts, args.company_days)
    if not extracted.exists():
        build_warehouse(company, extracted)

    from customer_health import pipeline, settings
    from customer_health.warehouse.engine import engine_for

    if args.warehouse:
        from tests.history_helpers import load_warehouse

        url = args.warehouse
        t0 = time.monotonic()
        load_warehouse(extracted, url)
        print(f"copied the extracted warehouse to {url.split('@')[-1]} in {time.monotonic() - t0:.0f} s", flush=True)
    else:
        work = bench / f"rebuild-work-{shape}.db"
        for suffix in ("-wal", "-shm"):
            Path(f"{work}{suffix}").unlink(missing_ok=True)
        shutil.copy(extracted, work)
        url = f"sqlite:///{work}"
    os.environ[settings.WAREHOUSE_URL_ENV] = url
    engine_for.cache_clear()
    pipeline.migrate_warehouse()  # as the DAGs' first task: the extracted copy may predate a migration

    last = END
    first = last - timedelta(days=args.rebuild_days - 1)
    print(
        f"rebuild {first} .. {last} ({args.rebuild_days} dates), {engine_for(url).dialect.name}, "
        f"{args.workers} worker process(es)",
        flush=True,
    )
    t0 = time.monotonic()
    report = pipeline.rebuild_history(first, last, chunk_days=args.chunk_days, workers=args.workers)
    rebuild_s = time.monotonic() - t0
    per_date_rebuild = rebuild_s / args.rebuild_days
    if report["one_pass"]:
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in report["phase_seconds"].items())
        split = f"one pass per date block; summed over the blocks: {phases}"
    else:
        split = f"signals {report['signal_seconds']:.1f} s, scoring {report['score_seconds']:.1f} s"
    print(
        f"  rebuild wall time {rebuild_s:.1f} s ({split}): {report['account_dates']:,} account-dates, "
        f"{report['signal_rows']:,} signal rows, {report['scores']:,} scores -> {per_date_rebuild:.3f} s/date",
        flush=True,
    )

    # The last dates of the range: their history exists (the rebuild wrote it), as in production.
    native_first = last - timedelta(days=args.native_dates - 1)

    # The daily path, functions only (no Airflow): the daily DAG's signal and score steps.
    daily = []
    for back in range(args.native_dates):
        day = last - timedelta(days=back)
        t1 = time.monotonic()
        pipeline.clear_signal_input(day)
        pipeline.compute_signals(day)
        pipeline.score(day)
        daily.append(time.monotonic() - t1)
        print(f"  daily path (functions only) {day}: {daily[-1]:.1f} s", flush=True)
    per_date_daily = sum(daily) / len(daily)

    native = None
    if not args.skip_native_backfill:
        print(
            f"native backfill of {DAILY_DAG} {native_first} .. {last} ({args.native_dates} dates): "
            "Airflow backfill + scheduler, every task in-process through the Task SDK",
            flush=True,
        )
        log = home / "native-backfill.log"
        native = native_backfill(company, bench, url, native_first, last, log)
        print(
            f"  set-up (scratch sandbox, Airflow metadata DB migrated, DAGs parsed, in-process task "
            f"runs warmed up; not counted): {native['setup']:.1f} s; Airflow's log: {log}",
            flush=True,
        )
        totals: dict[str, float] = defaultdict(float)
        for day, (state, tasks) in native["runs"].items():
            for key, secs in tasks:
                totals[key.split("[")[0]] += secs
            slowest = ", ".join(f"{k} {s:.1f} s" for k, s in tasks[:3])
            print(f"  {day}: {state}, {len(tasks)} task runs, {sum(s for _, s in tasks):.1f} s in tasks ({slowest})")
        in_tasks = sum(totals.values())
        print(
            f"  backfill span (created -> completed) {native['span']:.1f} s: {in_tasks:.1f} s in tasks, "
            f"{native['span'] - in_tasks:.1f} s scheduling and task start-up; "
            f"driver wall {native['wall']:.1f} s (with the DAG parse and serialization before the backfill)"
        )
        top = sorted(totals.items(), key=lambda kv: -kv[1])[:6]
        print("  task time over all dates: " + ", ".join(f"{k} {s:.1f} s" for k, s in top), flush=True)

    print()
    print(f"rebuild:                      {per_date_rebuild:8.3f} s/date ({args.rebuild_days} dates in {rebuild_s:.1f} s)")
    if native is not None:
        per_date_native = native["span"] / args.native_dates
        print(
            f"native backfill (Airflow):    {per_date_native:8.2f} s/date (mean of {args.native_dates}) "
            f"-> rebuild {per_date_native / per_date_rebuild:.0f}x faster per date"
        )
    print(
        f"daily path (functions only):  {per_date_daily:8.2f} s/date (mean of {args.native_dates}) "
        f"-> rebuild {per_date_daily / per_date_rebuild:.0f}x faster per date"
    )
    print(f"{args.rebuild_days} dates x {args.accounts:,} accounts: rebuild {rebuild_s:.0f} s", end="")
    if native is not None:
        print(f"; the native backfill would take ~{per_date_native * args.rebuild_days / 60:.0f} min", end="")
    print(f"; the daily path ~{per_date_daily * args.rebuild_days / 60:.0f} min")


if __name__ == "__main__":
    main()
