"""Benchmark: rebuild a year of score history, against the daily path per date.

Usage::

    PYTHONPATH=include python benchmarks/bench_rebuild.py                       # 10,000 x 365, SQLite
    PYTHONPATH=include python benchmarks/bench_rebuild.py --accounts 2000 --rebuild-days 90
    PYTHONPATH=include python benchmarks/bench_rebuild.py --warehouse postgresql+psycopg2://...

Built once and reused under ``.local/bench`` (while the shape matches):

* the synthetic company (``sandbox.company.generate_company``: ``--accounts`` accounts,
  ``--company-days`` days of history ending 2026-11-01, every product event kept);
* a SQLite warehouse with that company extracted by the **real extraction functions** (the
  daily DAG's steps: Salesforce, Zendesk, Stripe and product DB through the sandbox's real
  protocols, then the crosswalk), up to the company's last day.

Then, in one process and run:

1. ``pipeline.rebuild_history`` of the ``--rebuild-days`` dates ending on the company's last day
   (all signals vectorized and bulk-written, then every date scored in order), wall time;
2. the daily path for ``--native-dates`` of those dates (``pipeline.clear_signal_input`` +
   ``pipeline.compute_signals`` + ``pipeline.score`` - what the daily DAG's signal and score
   tasks run), wall time per date;
3. the ratio of the daily path's time per date to the rebuild's.

With ``--warehouse URL`` (PostgreSQL) the extracted SQLite warehouse is copied there first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
sys.path.insert(0, str(ROOT))

END = date(2026, 11, 1)


def build_company(folder: Path, accounts: int, days: int) -> None:
    from customer_health.sandbox.company import CompanySpec, generate_company

    t0 = time.monotonic()
    generate_company(folder, CompanySpec(accounts=accounts, days=days, seed=42, end_date=END, event_days=None))
    print(f"company: {accounts:,} accounts x {days} days generated in {time.monotonic() - t0:.0f} s", flush=True)


def build_warehouse(company: Path, path: Path) -> None:
    """Extract the company with the real extraction functions into the SQLite file ``path``."""
    from customer_health.sandbox.server import Sandbox
    from tests.history_helpers import extracted_template

    t0 = time.monotonic()
    sandbox = Sandbox.start(company)
    try:
        template = extracted_template(sandbox, path.parent, END)
    finally:
        sandbox.stop()
    shutil.move(template, path)
    print(f"warehouse: extracted in {time.monotonic() - t0:.0f} s -> {path}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--company-days", type=int, default=400)
    parser.add_argument("--rebuild-days", type=int, default=365)
    parser.add_argument("--native-dates", type=int, default=3)
    parser.add_argument("--chunk-days", type=int, default=31)
    parser.add_argument("--warehouse", help="SQLAlchemy URL to benchmark on (default: a SQLite copy)")
    args = parser.parse_args()

    bench = ROOT / ".local" / "bench"
    company = bench / f"rebuild-company-{args.accounts}x{args.company_days}"
    extracted = bench / f"rebuild-extracted-{args.accounts}x{args.company_days}.db"
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
        work = bench / "rebuild-work.db"
        shutil.copy(extracted, work)
        url = f"sqlite:///{work}"
    os.environ[settings.WAREHOUSE_URL_ENV] = url
    engine_for.cache_clear()

    last = END
    first = last - timedelta(days=args.rebuild_days - 1)
    print(f"rebuild {first} .. {last} ({args.rebuild_days} dates), {engine_for(url).dialect.name}", flush=True)
    t0 = time.monotonic()
    report = pipeline.rebuild_history(first, last, chunk_days=args.chunk_days)
    rebuild_s = time.monotonic() - t0
    per_date_rebuild = rebuild_s / args.rebuild_days
    print(
        f"  rebuild wall time {rebuild_s:.1f} s (signals {report['signal_seconds']:.1f} s, scoring "
        f"{report['score_seconds']:.1f} s): {report['account_dates']:,} account-dates, "
        f"{report['signal_values']:,} signal values, {report['scores']:,} scores -> {per_date_rebuild:.3f} s/date",
        flush=True,
    )

    # The daily path, for the last dates of the range (their history exists, as in production).
    native = []
    for back in range(args.native_dates):
        day = last - timedelta(days=back)
        t1 = time.monotonic()
        pipeline.clear_signal_input(day)
        pipeline.compute_signals(day)
        pipeline.score(day)
        native.append(time.monotonic() - t1)
        print(f"  daily path {day}: {native[-1]:.1f} s", flush=True)
    per_date_native = sum(native) / len(native)
    print(f"daily path: {per_date_native:.2f} s/date (mean of {len(native)})")
    print(f"rebuild:    {per_date_rebuild:.3f} s/date -> {per_date_native / per_date_rebuild:.0f}x faster per date")
    print(f"{args.rebuild_days} dates x {args.accounts:,} accounts: rebuild {rebuild_s:.0f} s; "
          f"the daily path would take ~{per_date_native * args.rebuild_days / 60:.0f} min")  # fmt: skip


if __name__ == "__main__":
    main()
