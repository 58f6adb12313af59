"""Benchmark: the daily DAG end to end, and the refresh's event-to-score latency, at scale.

Usage::

    PYTHONPATH=include python benchmarks/bench_scale.py --accounts 100000 --days 120 --event-days 30
    PYTHONPATH=include python benchmarks/bench_scale.py --accounts 20000 --warehouse sqlite

Steps, each timed and printed:

1. Generate the synthetic company once into ``.local/bench/company-<N>x<days>e<event_days>``
   (reused when complete). Raw product events are limited to the last ``--event-days`` days;
   tickets, invoices, tasks and NPS cover all ``--days``.
2. Copy it to a scratch folder (the sandbox records every write) and start the sandbox.
3. Create a fresh warehouse (PostgreSQL by default: a uniquely named database, dropped at the
   end; or a SQLite file) and point the Airflow connections at both (``AIRFLOW_CONN_*``).
4. ``customer_health_daily`` for the company's last day with ``dag.test()`` (in-process, one
   task at a time, so the figure is a serial lower bound for one worker): wall time, and the
   ten slowest tasks.
5. ``customer_health_refresh`` at D+1 08:00 with no new event (the day's first refresh also
   stores the whole population's signal input for D+1, once a day), then new negative events
   for ``--changed`` accounts (NPS 0, two urgent complaint tickets) stamped D+1 09:00 and the
   refresh at D+1 12:00: the wall time of that run is the event-to-score latency on top of the
   schedule's wait (at most 15 minutes).
6. ``customer_health_daily`` for D+1: the run of every night after the first (incremental
   extraction, the whole population scored, actions decided), wall time and slowest tasks.

The machine is shared: wall time includes waiting for the CPU. Airflow metadata lives in a
private SQLite home under the output folder (``_airflow_bench``: the set-up shared with
``bench_rebuild.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from _airflow_bench import (
    migrate_metadata,
    point_connections,
    scratch_company,
    task_durations,
    task_totals,
    use_private_airflow_home,
)

ROOT = Path(__file__).resolve().parents[1]


def _section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _bad_news(store, accounts: list[tuple[str, int | None]], at: datetime) -> None:
    """NPS 0 from each account's first contacts and two urgent complaints, stamped ``at``."""
    from sqlalchemy import func, insert, select

    from health_sandbox.ids import salesforce_id
    from health_sandbox.store import sf_contact, sf_nps_response, zd_ticket

    with store.begin() as conn:
        next_ticket = conn.execute(select(func.max(zd_ticket.c.id))).scalar_one() + 1
        for n, (account, org) in enumerate(accounts):
            contacts = conn.execute(select(sf_contact.c.Id).where(sf_contact.c.AccountId == account).limit(3)).scalars()
            for i, contact in enumerate(contacts):
                conn.execute(insert(sf_nps_response).values(
                    Id=salesforce_id("NPS_Response__c", 1_900_000 + n * 10 + i), Account__c=account, Contact__c=contact,
                    Score__c=0, Responded_At__c=at, CreatedDate=at, SystemModstamp=at, IsDeleted=False,
                ))  # fmt: skip
            if org is not None:
                for i in range(2):
                    conn.execute(insert(zd_ticket).values(
                        id=next_ticket, organization_id=org, subject="Urgent: broken again", type="problem",
                        priority="urgent", status="open", tags=["complaint"], created_at=at - timedelta(minutes=5 - i),
                        updated_at=at - timedelta(minutes=5 - i), reopens=0, replies=0,
                    ))  # fmt: skip
                    next_ticket += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--event-days", type=int, default=30)
    parser.add_argument("--end-date", type=date.fromisoformat, default=date(2026, 11, 1))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--warehouse", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("CUSTOMER_HEALTH_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--changed", type=int, default=20, help="accounts given new events before the refresh")
    parser.add_argument("--out", type=Path, default=ROOT / ".local" / "bench")
    parser.add_argument("--generate-only", action="store_true")
    args = parser.parse_args()

    out = args.out.resolve()
    use_private_airflow_home(out / "airflow-scale")
    os.environ.pop("CUSTOMER_HEALTH_WAREHOUSE_URL", None)

    from health_sandbox.company import CompanySpec, generate_company

    spec = CompanySpec(
        accounts=args.accounts, days=args.days, seed=args.seed, end_date=args.end_date, event_days=args.event_days
    )
    company = out / f"company-{args.accounts}x{args.days}e{args.event_days}"
    _section(f"company: {args.accounts:,} accounts, {args.days} days, product events for the last {args.event_days}")
    started = time.perf_counter()
    generate_company(company, spec)
    print(f"generate (or reuse) {company}: {time.perf_counter() - started:,.1f} s", flush=True)
    sizes = {p.name: p.stat().st_size / 1e9 for p in company.glob("*.db")}
    print("files: " + ", ".join(f"{k} {v:.2f} GB" for k, v in sizes.items()))
    if args.generate_only:
        return 0

    from sqlalchemy import create_engine, func, select, text

    from customer_health.warehouse import schema as s
    from customer_health.warehouse.engine import engine_for
    from health_sandbox.server import Sandbox

    work = out / f"scratch-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    scratch_company(company, work)
    print(f"copy to scratch: {time.perf_counter() - started:,.1f} s")

    admin = None
    db_name = None
    if args.warehouse == "postgres":
        db_name = f"ch_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db_name}"'))
        url = args.pg_url.rsplit("/", 1)[0] + f"/{db_name}"
    else:
        url = f"sqlite:///{work / 'warehouse.db'}"
    sandbox = Sandbox.start(work)
    try:
        point_connections(sandbox, url)
        migrate_metadata()
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(str(ROOT / "dags"))
        assert not bag.import_errors, bag.import_errors
        d = args.end_date

        _section(f"customer_health_daily for {d} ({args.warehouse} warehouse, dag.test)")
        started = time.perf_counter()
        run = bag.dags["customer_health_daily"].test(
            logical_date=datetime.combine(d + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        )
        wall = time.perf_counter() - started
        print(f"state {run.state}; wall {wall:,.1f} s")
        for key, runs, secs in task_totals(run)[:12]:
            print(f"  {key:<40} {secs:8.1f} s  ({runs} task run{'s' if runs > 1 else ''})")
        eng = engine_for(url)
        with eng.connect() as conn:
            scored = conn.execute(
                select(func.count()).select_from(s.health_scores).where(s.health_scores.c.as_of_date == d)
            ).scalar_one()
            outbox = conn.execute(select(func.count()).select_from(s.action_outbox)).scalar_one()
            picks = conn.execute(
                select(s.account_crosswalk.c.account_key, s.account_crosswalk.c.zendesk_org_id)
                .join(s.health_scores, s.health_scores.c.account_key == s.account_crosswalk.c.account_key)
                .where(s.health_scores.c.as_of_date == d, s.health_scores.c.zone.in_(["Healthy", "Neutral"]))
                .order_by(s.health_scores.c.score)
                .limit(args.changed)
            ).all()
        print(f"scored {scored:,} accounts; outbox {outbox:,} rows")

        refresh = bag.dags["customer_health_refresh"]
        morning = datetime.combine(d + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        _section("customer_health_refresh, first of the day (no new events)")
        started = time.perf_counter()
        first = refresh.test(logical_date=morning + timedelta(hours=8))
        print(f"state {first.state}; wall {time.perf_counter() - started:,.1f} s")

        _bad_news(sandbox.store, [(k, o) for k, o in picks], (morning + timedelta(hours=9)).replace(tzinfo=None))
        _section(f"customer_health_refresh after new events for {len(picks)} accounts (first refresh of D+1 done)")
        started = time.perf_counter()
        second = refresh.test(logical_date=morning + timedelta(hours=12))
        latency = time.perf_counter() - started
        print(f"state {second.state}; event-to-score latency (run wall) {latency:,.1f} s")
        for key, secs in task_durations(second):
            print(f"  {key:<40} {secs:8.1f} s")
        with eng.connect() as conn:
            refreshed = conn.execute(
                select(func.count()).select_from(s.health_scores).where(s.health_scores.c.as_of_date == d + timedelta(days=1))
            ).scalar_one()
        print(f"accounts re-scored for D+1: {refreshed}")

        _section("customer_health_refresh with nothing new (steady state)")
        started = time.perf_counter()
        idle = refresh.test(logical_date=morning + timedelta(hours=12, minutes=15))
        print(f"state {idle.state}; wall {time.perf_counter() - started:,.1f} s")

        # The next night: the warehouse holds every source up to D+1's refreshes, so this is a
        # daily run as it goes every day after the first (incremental extraction, the whole
        # population re-scored, actions decided), replacing the refreshes' scores of D+1.
        _section(f"customer_health_daily for {d + timedelta(days=1)} (steady state: the day after the first run)")
        started = time.perf_counter()
        nightly = bag.dags["customer_health_daily"].test(logical_date=morning + timedelta(days=1))
        wall = time.perf_counter() - started
        print(f"state {nightly.state}; wall {wall:,.1f} s")
        for key, runs, secs in task_totals(nightly)[:12]:
            print(f"  {key:<40} {secs:8.1f} s  ({runs} task run{'s' if runs > 1 else ''})")
        with eng.connect() as conn:
            scored = conn.execute(
                select(func.count())
                .select_from(s.health_scores)
                .where(s.health_scores.c.as_of_date == d + timedelta(days=1))
            ).scalar_one()
        print(f"scored {scored:,} accounts for {d + timedelta(days=1)}")
    finally:
        sandbox.stop()
        engine_for.cache_clear()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": db_name})
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}"'))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
