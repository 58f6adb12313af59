"""Benchmark: the signal computation of this tree against the one it replaced, side by side.

Usage::

    PYTHONPATH=include python benchmarks/bench_signals.py                  # both figures, PostgreSQL
    PYTHONPATH=include python benchmarks/bench_signals.py --daily-backends sqlite postgres
    PYTHONPATH=include python benchmarks/bench_signals.py --skip-rebuild --repeat 1
    PYTHONPATH=include python benchmarks/bench_signals.py --daily-on-rebuild-data   # no 100,000-account company

Two figures, each measured for the **old** code (``--old-commit``, default ``5374d8e~1``: the
tree before "Each signal defined once" (#17), with ``scoring/signals.py`` and
``scoring/signals_range.py``) and the **new** code (``--new-commit``, default ``HEAD``), each
checked out as a detached git worktree (``--old-tree`` / ``--new-tree``; never committed, so
uncommitted edits in this working tree are not measured), in one run, on the same data, in
alternating order, ``--repeat`` times each:

1. **Daily signal computation**: ``compute_signals(engine, D)`` of every account for the
   company's last day - what the daily DAG's signal task runs (unsharded) - on a warehouse
   extracted from a synthetic company of ``--daily-accounts`` accounts (``--daily-days`` days of
   history, product events for the last ``--daily-event-days``; the shape ``bench_scale.py``
   uses), on PostgreSQL and/or SQLite (``--daily-backends``). Read-only: every run reads the
   same warehouse.
2. **History rebuild**: ``pipeline.rebuild_history`` of ``--rebuild-days`` dates on
   ``--workers`` processes - the ``customer_health_rebuild`` DAG's code path (its mapped tasks
   with ``blocks=workers``: signals vectorized over dates, bulk-written and scored) - on a fresh
   copy of a warehouse extracted from a ``--rebuild-accounts`` x ``--rebuild-company-days``
   company (the shape ``bench_rebuild.py`` uses), wall time, on ``--rebuild-backend``
   (PostgreSQL: each run on its own ``CREATE DATABASE ... TEMPLATE`` copy).

Each measurement runs in a subprocess whose ``PYTHONPATH`` is the old worktree's ``include``
or the new one's, so neither version imports the other. Companies and extracted SQLite
warehouses are built once under ``--out`` with the real extraction functions through the
sandbox (as ``bench_rebuild.py`` builds them; its files are reused when present) - the first
run takes a while. The PostgreSQL databases (``ch_bench_<random>_...``) are created for the run
(the SQLite warehouse copied in by ``warehouse.io.copy_new_rows``) and dropped at its end. The
machine is shared: wall times include waiting for the CPU; the table prints the best of the
repeats and every run.
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
    """A new PostgreSQL database ``name`` holding the extracted SQLite warehouse (migrated, then
    table by table in chunks by binary COPY - ``warehouse.io.copy_new_rows``; analyzed)."""
    import pandas as pd
    from sqlalchemy import create_engine, func, inspect, select, text

    from customer_health.warehouse import schema as s
    from customer_health.warehouse.io import copy_new_rows
    from customer_health.warehouse.migrate import upgrade_to_head

    url = pg_url.rsplit("/", 1)[0] + f"/{name}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    t0 = time.monotonic()
    target = create_engine(url)
    upgrade_to_head(target)
    source = create_engine(f"sqlite:///{sqlite_path}")
    present = inspect(source)
    for table in s.metadata.sorted_tables:
        if not present.has_table(table.name):
            continue
        # A warehouse extracted before a later migration lacks its new (nullable) columns: NULL.
        columns = [c for c in table.columns if c.name in {col["name"] for col in present.get_columns(table.name)}]
        with source.connect() as read:
            total = read.execute(select(func.count()).select_from(table)).scalar_one()
            result = read.execution_options(stream_results=True, yield_per=200_000).execute(select(*columns))
            for part in result.partitions():
                frame = pd.DataFrame(part, columns=list(result.keys()))
                if table is s.raw_zd_satisfaction_rating:  # ids beyond INTEGER (tests/history_helpers.py)
                    frame["id"] = frame["id"].where(frame["id"] < 7_000_000_000, frame["id"] - 7_000_000_000)
                with target.begin() as write:
                    copy_new_rows(write, table, frame)
        if total:
            print(f"  postgres copy {name}: {table.name} {total:,} rows", flush=True)
    with target.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    target.dispose()
    source.dispose()
    print(f"warehouse {name}: copied to PostgreSQL in {time.monotonic() - t0:.0f} s", flush=True)
    return url


def clone_database(pg_url: str, template: str, name: str) -> str:
    """A new database ``name`` copied from ``template`` (``CREATE DATABASE ... TEMPLATE``)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    for attempt in range(30):  # the last reader's session may still be closing
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
            break
        except OperationalError as exc:
            if "being accessed by other users" not in str(exc) or attempt == 29:
                raise
            time.sleep(1)
    admin.dispose()
    return pg_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(pg_url: str, name: str) -> None:
    """Drop ``name`` (its sessions ended first)."""
    from sqlalchemy import create_engine, text

    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# --------------------------------------------------------------------------- one measurement
def digest(frame: object, keys: list[str]) -> dict[str, str]:
    """Per signal, a hash of its values by account (rounded to 12 significant digits, NULL kept):
    old and new must compute the same values."""
    import hashlib

    import numpy as np

    ordered = frame.sort_values("account_key", kind="stable")
    out = {}
    for key in keys:
        values = ordered[key].to_numpy(dtype=float)
        text = "|".join("" if v != v else f"{v:.12g}" for v in np.round(values, 12).tolist())
        out[key] = hashlib.sha256((",".join(ordered["account_key"]) + text).encode()).hexdigest()[:16]
    return out


def worker(kind: str, url: str, first: str, last: str, workers: int) -> None:
    """Measure ``kind`` with whichever ``customer_health`` is on ``PYTHONPATH``; print JSON.

    The warehouse is already at the newest schema (extracted and copied by this tree), which
    only adds tables and nullable columns to the old one: neither version migrates it (the old
    code would not know the newer revisions)."""
    from customer_health import settings
    from customer_health.scoring import signals
    from customer_health.scoring.signal_catalog import SIGNALS
    from customer_health.warehouse.engine import engine_for

    day = date.fromisoformat(last)
    if kind == "daily":
        engine = engine_for(url)
        t0 = time.perf_counter()
        frame = signals.compute_signals(engine, day)
        seconds = time.perf_counter() - t0
        keys = sorted(SIGNALS)
        save = os.environ.get("BENCH_SIGNALS_SAVE")
        if save:  # the values themselves, for the side-by-side comparison
            frame[["account_key", *keys]].to_pickle(save)
        result = {"seconds": seconds, "accounts": len(frame), "signals": int(frame[keys].notna().sum().sum()),
                  "present": {k: int(frame[k].notna().sum()) for k in keys}, "digest": digest(frame, keys)}  # fmt: skip
    else:
        os.environ[settings.WAREHOUSE_URL_ENV] = url
        from customer_health import pipeline

        t0 = time.perf_counter()
        report = pipeline.rebuild_history(date.fromisoformat(first), day, workers=workers)
        seconds = time.perf_counter() - t0
        result = {"seconds": seconds, "account_dates": report["account_dates"], "scores": report["scores"]}
    print(json.dumps(result | {"code": signals.__file__}))


def checkout(tree: Path, commit: str) -> Path:
    """``commit`` checked out as a detached git worktree at ``tree`` (made once; never committed)."""
    if not (tree / "include" / "customer_health").exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit], check=True)
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True)
    want = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", commit], check=True, capture_output=True, text=True)
    if head.stdout.strip() != want.stdout.strip():
        raise SystemExit(f"{tree} holds {head.stdout.strip()}, not {commit} ({want.stdout.strip()}): "
                         f"remove it (git worktree remove {tree}) or name another --old-tree/--new-tree")  # fmt: skip
    return tree


def measure(code: Path, kind: str, url: str, first: date, last: date, workers: int, save: Path | None = None) -> dict:
    """One measurement in a fresh process running the package under ``code/include``
    (``save``: where the daily run leaves its signal values)."""
    env = {**os.environ, "PYTHONPATH": str(code / "include")} | ({"BENCH_SIGNALS_SAVE": str(save)} if save else {})
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
    parser.add_argument("--old-commit", default="5374d8e~1")
    parser.add_argument("--new-commit", default="HEAD")
    parser.add_argument("--old-tree", type=Path, default=Path("/tmp/oldcode"))
    parser.add_argument("--new-tree", type=Path, default=None, help="default: <out>/signals-new-<commit>")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rebuild-repeat", type=int, default=None, help="rebuild runs per version (default: --repeat)")
    parser.add_argument("--daily-accounts", type=int, default=100_000)
    parser.add_argument("--daily-days", type=int, default=120)
    parser.add_argument("--daily-event-days", type=int, default=30)
    parser.add_argument("--daily-backends", nargs="+", choices=["sqlite", "postgres"], default=["postgres"])
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("CUSTOMER_HEALTH_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--rebuild-accounts", type=int, default=10_000)
    parser.add_argument("--rebuild-company-days", type=int, default=400)
    parser.add_argument("--rebuild-days", type=int, default=365)
    parser.add_argument("--rebuild-backend", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--workers", type=int, default=2, help="rebuild processes (the DAG's blocks)")
    parser.add_argument("--daily-on-rebuild-data", action="store_true",
                        help="measure the daily figure on the rebuild's warehouse (its accounts, its last day) "
                             "instead of building a --daily-accounts company")  # fmt: skip
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
    if args.daily_on_rebuild_data:
        args.daily_accounts, daily_db = args.rebuild_accounts, rebuild_db
    elif not args.skip_daily:
        ensure_company(daily_company, args.daily_accounts, args.daily_days, args.daily_event_days)
        ensure_extracted(daily_company, daily_db)
    if not args.skip_rebuild or args.daily_on_rebuild_data:
        ensure_company(rebuild_company, args.rebuild_accounts, args.rebuild_company_days, None)
        ensure_extracted(rebuild_company, rebuild_db)
    if args.build_only:
        return 0

    run_id = f"ch_bench_{uuid.uuid4().hex[:8]}"
    databases: list[str] = []  # every PostgreSQL database this run creates, dropped at the end
    try:
        return _measure_all(args, out, run_id, databases, daily_db, rebuild_db)
    finally:
        for name in databases:
            drop_database(args.pg_url, name)
        if databases:
            print(f"dropped {', '.join(databases)}")


def _compare(name: str, old: list[dict], new: list[dict]) -> None:
    """Print where old and new computed different results (counts, or per signal: values
    present and the digest of the values)."""
    a, b = old[0], new[0]
    for key in sorted({*a, *b} - {"seconds", "code", "digest", "present", "values"}):
        if a.get(key) != b.get(key):
            print(f"  ! {name}: {key} old {a.get(key)} new {b.get(key)}")
    for key in sorted(a.get("digest", {})):
        if a["digest"][key] != b.get("digest", {}).get(key):
            print(f"  ~ {name}: signal {key} differs: present old {a['present'][key]:,} new {b['present'].get(key, 0):,}")
    if a.get("digest") and a.get("digest") == b.get("digest"):
        print(f"  = {name}: every signal's values identical (old and new)")
    if a.get("values") and b.get("values"):
        import numpy as np
        import pandas as pd

        frames = [pd.read_pickle(r["values"]).set_index("account_key").sort_index() for r in (a, b)]
        for path in (a["values"], b["values"]):
            Path(path).unlink(missing_ok=True)
        old_values, new_values = frames[0], frames[1].reindex(frames[0].index)
        for key in old_values.columns:
            x, y = old_values[key].to_numpy(dtype=float), new_values[key].to_numpy(dtype=float)
            both = ~np.isnan(x) & ~np.isnan(y)
            same = int(np.isclose(x[both], y[both], rtol=1e-9, atol=1e-12).sum())
            only_old = ~np.isnan(x) & np.isnan(y)
            only_new = np.isnan(x) & ~np.isnan(y)
            if same != both.sum() or only_old.any() or only_new.any():
                shown = pd.Series(x[only_old]).value_counts().head(3).to_dict()
                print(f"    {key}: equal where both present {same:,}/{int(both.sum()):,}; NULL in new only "
                      f"{int(only_old.sum()):,} (old values there, most common: {shown}); NULL in old only {int(only_new.sum()):,}")


def _measure_all(args: argparse.Namespace, out: Path, run_id: str, databases: list[str], daily_db: Path,
                 rebuild_db: Path) -> int:
    """Set up the warehouses of this run, measure every figure old and new, print the table."""
    old_sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.old_commit], check=True,
                             capture_output=True, text=True).stdout.strip()  # fmt: skip
    new_sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.new_commit], check=True,
                             capture_output=True, text=True).stdout.strip()  # fmt: skip
    versions = {
        "old": checkout(args.old_tree, old_sha),
        "new": checkout(args.new_tree or out / f"signals-new-{new_sha}", new_sha),
    }
    daily_urls = {}
    if not args.skip_daily and "sqlite" in args.daily_backends:
        daily_urls["sqlite"] = f"sqlite:///{daily_db}"
    rebuild_template = None
    if not args.skip_rebuild and args.rebuild_backend == "postgres":
        databases.append(f"{run_id}_rebuild_template")
        copy_to_postgres(rebuild_db, args.pg_url, databases[-1])
        rebuild_template = databases[-1]
    if not args.skip_daily and "postgres" in args.daily_backends:
        if args.daily_on_rebuild_data and rebuild_template is not None:
            # Read-only runs, all finished before a rebuild run clones the template.
            daily_urls["postgres"] = args.pg_url.rsplit("/", 1)[0] + f"/{rebuild_template}"
        else:
            databases.append(f"{run_id}_daily")
            daily_urls["postgres"] = copy_to_postgres(daily_db, args.pg_url, databases[-1])

    last = END
    first = last - timedelta(days=args.rebuild_days - 1)
    figures: dict[tuple[str, str], list[dict]] = {}
    jobs = [(f"daily signals, {args.daily_accounts:,} accounts, {backend}", "daily", url) for backend, url in daily_urls.items()]
    if not args.skip_rebuild:
        name = f"customer_health_rebuild, {args.rebuild_days} days x {args.rebuild_accounts:,} accounts, {args.rebuild_backend}"
        jobs.append((name, "rebuild", None))
    for round_ in range(args.repeat):
        for name, kind, url in jobs:
            if kind == "rebuild" and round_ >= (args.rebuild_repeat or args.repeat):
                continue
            order = ["old", "new"] if round_ % 2 == 0 else ["new", "old"]
            for version in order:
                scratch = None
                if url is not None:
                    target = url
                elif rebuild_template is not None:
                    scratch = f"{run_id}_rebuild_{version}_{round_}"
                    databases.append(scratch)
                    target = clone_database(args.pg_url, rebuild_template, scratch)
                else:
                    target = fresh_copy(rebuild_db, out / f"signals-rebuild-work-{uuid.uuid4().hex[:6]}.db")
                save = out / f"{run_id}-{kind}-{name.rsplit(' ', 1)[-1]}-{version}.pkl" if kind == "daily" and round_ == 0 else None
                result = measure(versions[version], kind, target, first, last, args.workers, save)
                if save is not None:
                    result["values"] = str(save)
                if scratch is not None:
                    drop_database(args.pg_url, scratch)
                    databases.remove(scratch)
                elif target.startswith("sqlite:///") and url is None:
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{target.removeprefix('sqlite:///')}{suffix}").unlink(missing_ok=True)
                figures.setdefault((name, version), []).append(result)
                shown = {k: v for k, v in result.items() if k not in ("seconds", "code", "digest", "present", "values")}
                print(f"  {name}: {version} {result['seconds']:.1f} s ({json.dumps(shown)})", flush=True)

    print()
    print(f"{'figure':<66} {'old (s)':>9} {'new (s)':>9} {'new/old':>8}   every run (old | new)")
    for name, _, _ in jobs:
        old = [r["seconds"] for r in figures[(name, "old")]]
        new = [r["seconds"] for r in figures[(name, "new")]]
        runs = f"{', '.join(f'{s:.1f}' for s in old)} | {', '.join(f'{s:.1f}' for s in new)}"
        print(f"{name:<66} {min(old):9.1f} {min(new):9.1f} {min(new) / min(old):8.2f}   {runs}")
        _compare(name, figures[(name, "old")], figures[(name, "new")])
    print(f"(best of {args.repeat}; old = {args.old_commit} = {old_sha}, new = {args.new_commit} = {new_sha})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
