"""Benchmark: the signal computation of this tree against the one it replaced, side by side.

Usage::

    PYTHONPATH=include python benchmarks/bench_signals.py                 # both figures, SQLite
    PYTHONPATH=include python benchmarks/bench_signals.py --daily-backends sqlite postgres
    PYTHONPATH=include python benchmarks/bench_signals.py --skip-rebuild --repeat 1

Two figures, each measured for the **old** code (git commit ``--old-commit``, default
``15caf39``: ``scoring/signals.py`` and ``scoring/signals_range.py``, checked out once as a git
worktree under ``--out``, never committed) and the **new** code (this tree), in one run, on the
same data, in alternating order, ``--repeat`` times each:

1. **Daily signal computation**: ``compute_signals(engine, D)`` of every account for the
   company's last day - what the daily DAG's signal task runs (unsharded) - on a warehouse
   extracted from a synthetic company of ``--daily-accounts`` accounts (``--daily-days`` days of
   history, product events for the last ``--daily-event-days``; the shape ``bench_scale.py``
   uses), on SQLite and/or PostgreSQL (``--daily-backends``). Read-only: every run reads the
   same warehouse.
2. **History rebuild**: ``pipeline.rebuild_history`` of ``--rebuild-days`` dates on
   ``--workers`` processes - the ``customer_health_rebuild`` DAG's mapped tasks with
   ``blocks=workers``, signals vectorized over dates, bulk-written and scored - on a fresh
   copy of a SQLite warehouse extracted from a ``--rebuild-accounts`` x ``--rebuild-company-days``
   company (the shape ``bench_rebuild.py`` uses), wall time.

Each measurement runs in a subprocess whose ``PYTHONPATH`` is the old worktree's ``include``
or this tree's, so neither version imports the other. Companies and extracted warehouses are
built once under ``--out`` with the real extraction functions through the sandbox (as
``bench_rebuild.py`` builds them; its files are reused when present) - the first run takes a
while. The machine is shared: wall times include waiting for the CPU; the table prints the
best of the repeats and every run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
END = date(2026, 11, 1)


# --------------------------------------------------------------------------- data, built once
def ensure_company(folder: Path, accounts: int, days: int, event_days: int | None) -> None:
    """Generate the synthetic company into ``folder`` unless it is there already."""
    from health_sandbox.company import CompanySpec, generate_company

    t0 = time.monotonic()
    summary = generate_company(folder, CompanySpec(accounts=accounts, days=days, seed=42, end_date=END, event_days=event_days))
    if not summary.reused:
        print(f"company {folder.name}: generated in {time.monotonic() - t0:.0f} s", flush=True)


def ensure_extracted(company: Path, path: Path) -> None:
    """Extract ``company`` with the real extraction functions into the SQLite file ``path``
    (``bench_rebuild.build_warehouse``), unless it is there already."""
    if not path.exists():
        from bench_rebuild import build_warehouse

        build_warehouse(company, path)


def copy_to_postgres(sqlite_path: Path, pg_url: str, name: str) -> str:
    """A PostgreSQL database ``name`` holding the extracted SQLite warehouse (created once and
    kept; the copy goes table by table in chunks, by binary COPY)."""
    import pandas as pd
    from sqlalchemy import create_engine, func, select, text

    from customer_health.warehouse import schema as s
    from customer_health.warehouse.bulk import bulk_upsert
    from customer_health.warehouse.migrate import upgrade_to_head

    url = pg_url.rsplit("/", 1)[0] + f"/{name}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        done = exists and create_engine(url).connect().execute(
            text("SELECT to_regclass('bench_copied') IS NOT NULL")
        ).scalar_one()
        if done:
            return url
        if exists:
            conn.execute(text(f'DROP DATABASE "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    t0 = time.monotonic()
    target = create_engine(url)
    upgrade_to_head(target)
    source = create_engine(f"sqlite:///{sqlite_path}")
    for table in s.metadata.sorted_tables:
        with source.connect() as read:
            total = read.execute(select(func.count()).select_from(table)).scalar_one()
            result = read.execution_options(stream_results=True, yield_per=200_000).execute(select(table))
            for part in result.partitions():
                frame = pd.DataFrame(part, columns=list(result.keys()))
                if table is s.raw_zd_satisfaction_rating:  # ids beyond INTEGER (tests/history_helpers.py)
                    frame["id"] = frame["id"].where(frame["id"] < 7_000_000_000, frame["id"] - 7_000_000_000)
                with target.begin() as write:
                    bulk_upsert(write, table, frame)
        if total:
            print(f"  postgres copy: {table.name} {total:,} rows", flush=True)
    with target.begin() as conn:
        conn.execute(text("ANALYZE"))
        conn.execute(text("CREATE TABLE bench_copied (done integer)"))
    print(f"warehouse {name}: copied to PostgreSQL in {time.monotonic() - t0:.0f} s", flush=True)
    return url


# --------------------------------------------------------------------------- one measurement
def worker(kind: str, url: str, first: str, last: str, workers: int) -> None:
    """Measure ``kind`` with whichever ``customer_health`` is on ``PYTHONPATH``; print JSON."""
    from customer_health import settings
    from customer_health.scoring import signals
    from customer_health.warehouse.engine import engine_for

    day = date.fromisoformat(last)
    if kind == "daily":
        engine = engine_for(url)
        t0 = time.perf_counter()
        frame = signals.compute_signals(engine, day)
        seconds = time.perf_counter() - t0
        result = {"seconds": seconds, "accounts": len(frame), "signals": int(frame.iloc[:, 9:].notna().sum().sum())}
    else:
        os.environ[settings.WAREHOUSE_URL_ENV] = url
        from customer_health import pipeline

        pipeline.migrate_warehouse()
        t0 = time.perf_counter()
        report = pipeline.rebuild_history(date.fromisoformat(first), day, workers=workers)
        seconds = time.perf_counter() - t0
        result = {"seconds": seconds, "account_dates": report["account_dates"], "scores": report["scores"]}
    print(json.dumps(result | {"code": signals.__file__}))


def old_tree(out: Path, commit: str) -> Path:
    """The old code, checked out once as a git worktree (under ``out``: never committed)."""
    tree = out / f"signals-old-{commit}"
    if not (tree / "include" / "customer_health").exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit], check=True)
    return tree


def measure(code: Path, kind: str, url: str, first: date, last: date, workers: int) -> dict:
    """One measurement in a fresh process running the package under ``code/include``."""
    env = {**os.environ, "PYTHONPATH": str(code / "include")}
    args = [sys.executable, __file__, "--worker", kind, "--url", url, "--first", first.isoformat(), "--last", last.isoformat()]
    run = subprocess.run([*args, "--workers", str(workers)], env=env, capture_output=True, text=True, cwd=code)
    if run.returncode != 0:
        raise SystemExit(f"{kind} on {code} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def fresh_copy(source: Path, work: Path) -> str:
    """A private copy of a SQLite warehouse (the rebuild writes)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{work}{suffix}").unlink(missing_ok=True)
    shutil.copy(source, work)
    return f"sqlite:///{work}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".local" / "bench")
    parser.add_argument("--build-only", action="store_true", help="build the companies and warehouses, measure nothing")
    parser.add_argument("--old-commit", default="15caf39")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--daily-accounts", type=int, default=100_000)
    parser.add_argument("--daily-days", type=int, default=120)
    parser.add_argument("--daily-event-days", type=int, default=30)
    parser.add_argument("--daily-backends", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("CUSTOMER_HEALTH_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--rebuild-accounts", type=int, default=10_000)
    parser.add_argument("--rebuild-company-days", type=int, default=400)
    parser.add_argument("--rebuild-days", type=int, default=365)
    parser.add_argument("--workers", type=int, default=2, help="rebuild processes (the DAG's blocks)")
    parser.add_argument("--skip-daily", action="store_true")
    parser.add_argument("--skip-rebuild", action="store_true")
    parser.add_argument("--worker", choices=["daily", "rebuild"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--first", help=argparse.SUPPRESS)
    parser.add_argument("--last", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.url, args.first, args.last, args.workers)
        return 0

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    sys.path[:0] = [str(ROOT / "include"), str(ROOT), str(ROOT / "benchmarks")]
    from _airflow_bench import use_private_airflow_home

    use_private_airflow_home(out / "airflow-signals")
    daily_shape = f"{args.daily_accounts}x{args.daily_days}e{args.daily_event_days}"
    daily_company = out / f"company-{daily_shape}"
    daily_db = out / f"signals-extracted-{daily_shape}.db"
    rebuild_shape = f"{args.rebuild_accounts}x{args.rebuild_company_days}"
    rebuild_company = out / f"rebuild-company-{rebuild_shape}"
    rebuild_db = out / f"rebuild-extracted-{rebuild_shape}.db"
    if not args.skip_daily:
        ensure_company(daily_company, args.daily_accounts, args.daily_days, args.daily_event_days)
        ensure_extracted(daily_company, daily_db)
    if not args.skip_rebuild:
        ensure_company(rebuild_company, args.rebuild_accounts, args.rebuild_company_days, None)
        ensure_extracted(rebuild_company, rebuild_db)
    daily_urls = {}
    if not args.skip_daily:
        daily_urls["sqlite"] = f"sqlite:///{daily_db}"
        if "postgres" in args.daily_backends:
            daily_urls["postgres"] = copy_to_postgres(daily_db, args.pg_url, f"ch_bench_signals_{args.daily_accounts}")
        daily_urls = {k: v for k, v in daily_urls.items() if k in args.daily_backends}
    if args.build_only:
        return 0

    versions = {"old": old_tree(out, args.old_commit), "new": ROOT}
    last = END
    figures: dict[tuple[str, str], list[dict]] = {}
    jobs = [(f"daily signals, {args.daily_accounts:,} accounts, {backend}", "daily", url) for backend, url in daily_urls.items()]
    if not args.skip_rebuild:
        jobs.append((f"customer_health_rebuild, {args.rebuild_days} days x {args.rebuild_accounts:,} accounts, sqlite", "rebuild", None))
    first = last - timedelta(days=args.rebuild_days - 1)
    for round_ in range(args.repeat):
        for name, kind, url in jobs:
            order = ["old", "new"] if round_ % 2 == 0 else ["new", "old"]
            for version in order:
                target = url or fresh_copy(rebuild_db, out / f"signals-rebuild-work-{uuid.uuid4().hex[:6]}.db")
                result = measure(versions[version], kind, target, first, last, args.workers)
                if url is None:
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{target.removeprefix('sqlite:///')}{suffix}").unlink(missing_ok=True)
                figures.setdefault((name, version), []).append(result)
                print(f"  {name}: {version} {result['seconds']:.1f} s ({json.dumps({k: v for k, v in result.items() if k not in ('seconds', 'code')})})", flush=True)

    print()
    print(f"{'figure':<62} {'old (s)':>9} {'new (s)':>9} {'new/old':>8}   every run (old | new)")
    for name, _, _ in jobs:
        old = [r["seconds"] for r in figures[(name, "old")]]
        new = [r["seconds"] for r in figures[(name, "new")]]
        runs = f"{', '.join(f'{s:.1f}' for s in old)} | {', '.join(f'{s:.1f}' for s in new)}"
        print(f"{name:<62} {min(old):9.1f} {min(new):9.1f} {min(new) / min(old):8.2f}   {runs}")
    print(f"(best of {args.repeat}; old = {args.old_commit}, new = this tree)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
