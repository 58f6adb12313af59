"""Benchmark: score N synthetic accounts in memory, and optionally write them to PostgreSQL.

Usage::

    PYTHONPATH=include python benchmarks/bench_scoring.py 10000 100000 1000000
    PYTHONPATH=include python benchmarks/bench_scoring.py 1000000 --write postgres

For each N it builds (untimed) a random signal frame for date D, the raw signals of D-30 and
a score history with the dates the trends read (D-1 for the previous zone, D-30, D-60, D-90
for deltas and the slope), then times ``score_accounts``: normalization against segment
baselines, weighting, coverage, zones, overrides, trends (deltas, slope, previous zone),
priority, top drivers, drivers JSON and the explanation sentence. Prints wall time, CPU time
(user + system of this process) and the process's peak resident memory (ru_maxrss, inputs
included). tracemalloc is not used: it slows allocation-heavy numpy code several-fold and
would distort the timing. Run one N per process for a clean peak-memory figure.

``--write postgres`` then writes the scored rows with ``write_scores`` into a fresh
PostgreSQL database (migrated to head, uniquely named, dropped afterwards) at ``--pg-url``
(default: ``$CUSTOMER_HEALTH_TEST_PG`` or the local server the tests use), four times:

1. *fresh date*: the first date in an empty ``health_scores`` (the issue's figure);
2. *next date*: the same accounts one day later, the table holding the first date - the daily
   run's case (each primary-key leaf page now holds both dates' keys);
3. *re-run*: that date again (a cleared task: every row replaced);
4. *refresh*: 1,000 of that date's accounts re-scored (the 15-minute refresh's partial write).

Each line gives the write's wall time, the client's CPU time, the server backend's CPU time
(read from /proc when the server runs on this host), the WAL it generated and the 1-minute
load average: on a shared machine the wall time includes waiting for a CPU, the CPU figures
do not. Every write includes ``write_scores``' recomputation of the dashboard summary.

The machine is shared: wall time includes waiting for the CPU, so read it with the CPU
figure. On hosts whose transparent huge pages use ``defrag=madvise`` (cat
/sys/kernel/mm/transparent_hugepage/defrag), numpy's huge-page advice on large arrays makes
the kernel compact memory on page faults; ``NUMPY_MADVISE_HUGEPAGE=0`` (numpy's documented
switch, read at import) turns that advice off - the "sys" figure shows the difference.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from customer_health.scoring.engine import score_accounts
from customer_health.scoring.model_config import ModelConfig, load_model_config
from customer_health.scoring.score import zones

AS_OF = date(2026, 11, 1)
PLANS = np.array(["starter", "growth", "enterprise"], dtype=object)


def synthetic_signals(n: int, config: ModelConfig, as_of: date, seed: int = 0) -> pd.DataFrame:
    """A random but plausible signal frame: one row per account, ~10 % of values missing."""
    rng = np.random.default_rng(seed)
    keys = np.char.add("001", np.char.zfill(np.arange(n).astype(str), 15)).astype(object)
    frame = {
        "account_key": keys,
        "as_of_date": as_of,
        "plan": PLANS[rng.integers(0, 3, n)],
        "seats": rng.integers(1, 500, n),
        "arr": np.round(rng.lognormal(10, 1.2, n), 2),
        "tenure_days": rng.integers(0, 2500, n),
        "parent_account_key": np.where(rng.random(n) < 0.05, keys[rng.integers(0, n, n)], None),
        "owner_id": "005000000000000AAA",
    }
    for key in config.signal_keys:
        values = rng.random(n)
        values[rng.random(n) < 0.1] = np.nan
        frame[key] = values
    return pd.DataFrame(frame)


def synthetic_history(signals: pd.DataFrame, config: ModelConfig, as_of: date, seed: int = 1) -> pd.DataFrame:
    """Stored scores on the dates the trends read, for 95 % of the accounts."""
    rng = np.random.default_rng(seed)
    keys = signals["account_key"].to_numpy(dtype=object)
    frames = []
    for offset in [1, *config.trends.history_offsets()]:
        present = rng.random(len(keys)) < 0.95
        score = rng.integers(0, 101, int(present.sum()))
        frames.append(
            pd.DataFrame(
                {
                    "account_key": keys[present],
                    "as_of_date": as_of - timedelta(days=offset),
                    "computed_score": score,
                    "zone": np.asarray(zones(score, config), dtype=object),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def run(n: int, config: ModelConfig, write: str | None = None, pg_url: str | None = None) -> None:
    """Score n synthetic accounts (and write them when asked), printing the figures."""
    signals = synthetic_signals(n, config, AS_OF)
    previous = synthetic_signals(n, config, AS_OF - timedelta(days=30), seed=2)
    history = synthetic_history(signals, config, AS_OF)
    overrides = pd.DataFrame(
        {
            "override_id": np.arange(100),
            "account_key": signals["account_key"].iloc[: 100 * max(1, n // 100) : max(1, n // 100)].to_numpy(),
            "score": 80,
            "reason": "renewal signed, usage data lagging",
            "created_by": "csm@example.com",
            "expires_at": pd.Timestamp(AS_OF + timedelta(days=10)),
        }
    ).head(min(100, n))
    inputs_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    user0, sys0 = _cpu()
    scored = score_accounts(signals, config, history, overrides, previous_signals=previous)
    elapsed = time.perf_counter() - started
    user1, sys1 = _cpu()
    cpu = (user1 - user0) + (sys1 - sys0)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"N={n:>9,}  score_accounts wall {elapsed:6.2f} s  cpu {cpu:6.2f} s (user {user1 - user0:.2f}, "
        f"sys {sys1 - sys0:.2f})  ({n / elapsed:,.0f} accounts/s)  "
        f"peak RSS {rss_mb:6.0f} MiB (inputs {inputs_mb:5.0f} MiB)  history rows {len(history):,}  "
        f"zones {scored['zone'].value_counts().to_dict()}",
        flush=True,
    )
    del signals, previous, history
    if write == "postgres":
        write_postgres(scored, pg_url or DEFAULT_PG_URL)


DEFAULT_PG_URL = os.environ.get("CUSTOMER_HEALTH_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _backend_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of a PostgreSQL backend on this host, None when not visible."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_postgres(scored: pd.DataFrame, admin_url: str) -> None:
    """Time ``write_scores`` of the scored frame into a fresh, migrated PostgreSQL database."""
    from sqlalchemy import create_engine, func, select, text

    from customer_health.scoring.history import write_scores
    from customer_health.warehouse.migrate import upgrade_to_head
    from customer_health.warehouse.schema import health_scores

    name = f"ch_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(admin_url.rsplit("/", 1)[0] + f"/{name}")
    next_day = scored.assign(as_of_date=AS_OF + timedelta(days=1))
    refresh = next_day.iloc[:: max(1, len(next_day) // 1000)].head(1000).assign(explanation="refreshed")
    try:
        upgrade_to_head(engine)
        for attempt, frame in (
            ("fresh date", scored),
            ("next date (table holds the previous date)", next_day),
            ("re-run of that date (every row replaced)", next_day),
            (f"refresh of {len(refresh):,} accounts of that date", refresh),
        ):
            with engine.begin() as conn:
                pid = conn.execute(select(func.pg_backend_pid())).scalar_one()
                lsn = conn.execute(select(func.pg_current_wal_insert_lsn())).scalar_one()
                server0 = _backend_cpu(pid)
                started = time.perf_counter()
                user0, sys0 = _cpu()
                written = write_scores(conn, frame)
            elapsed = time.perf_counter() - started
            user1, sys1 = _cpu()
            server1 = _backend_cpu(pid)
            with engine.connect() as conn:
                stored = conn.execute(select(func.count()).select_from(health_scores)).scalar_one()
                wal = conn.execute(select(func.pg_wal_lsn_diff(func.pg_current_wal_insert_lsn(), lsn))).scalar_one()
            server = f"{server1 - server0:6.2f} s" if server0 is not None and server1 is not None else "   n/a"
            print(
                f"N={len(frame):>9,}  write_scores postgres, {attempt}: wall {elapsed:6.2f} s  client cpu "
                f"{(user1 - user0) + (sys1 - sys0):6.2f} s  server cpu {server}  WAL {float(wal) / 1e6:5.0f} MB  "
                f"({written / elapsed:,.0f} rows/s)  rows stored {stored:,}  load {os.getloadavg()[0]:.1f}  "
                f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:6.0f} MiB",
                flush=True,
            )
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def main(argv: list[str]) -> None:
    """Parse the arguments and run one benchmark per size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", help="account counts (default: 10000 100000)")
    parser.add_argument("--write", choices=["postgres"], help="also write the scores to a fresh database")
    parser.add_argument("--pg-url", default=None, help=f"admin URL of the PostgreSQL server (default {DEFAULT_PG_URL})")
    args = parser.parse_args(argv)
    sizes = [int(a.replace("_", "").replace(",", "")) for a in args.sizes] or [10_000, 100_000]
    config = load_model_config()
    for n in sizes:
        run(n, config, args.write, args.pg_url)


if __name__ == "__main__":
    main(sys.argv[1:])
