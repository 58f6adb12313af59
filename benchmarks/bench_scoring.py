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

``--write postgres`` then writes scored rows with ``write_scores`` into a fresh PostgreSQL
database (migrated to head, uniquely named, dropped afterwards) at ``--pg-url`` (default:
``$CUSTOMER_HEALTH_TEST_PG`` or the local server the tests use). What a write costs beyond the
rows depends on how many accounts changed zone overnight (the partial zone-change index, the
At Risk episodes), and the random history above changes ~75 % of them - no portfolio does. So
the written frame is *a typical day*: the same signals scored again (untimed) with yesterday's
scores equal to today's, but for ``--zone-change-rate`` of the accounts (default
``ZONE_CHANGE_RATE``, the synthetic company's median daily rate - ``--measure-zone-changes``
prints it for any scored warehouse), whose yesterday is the nearest score in another zone.
It is written four times:

1. *fresh date*: the first date in an empty ``health_scores`` (the issue's figure);
2. *next date*: the same accounts one day later, the table holding the first date - the daily
   run's case (keyed by version and date, the day's rows append at the primary key's right edge);
3. *re-run*: that date again (a cleared task: every row replaced);
4. *refresh*: 1,000 of that date's accounts re-scored (the 15-minute refresh's partial write).

The random-history frame is then written once more as a fresh date (*stress*). Each line
gives the write's wall time, the client's CPU time, the server backend's CPU time
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
# Share of accounts whose zone differs from the day before on a typical day: the median over
# the last 365 days of the synthetic company that `make demo` scores (2,000 accounts, model v1),
# measured with --measure-zone-changes on its warehouse (2026-12-04: "v1: 364 dates, 1,616
# accounts a date; accounts changing zone a day: median 4.67%, quartiles 4.24%-5.05%, max 6.60%").
ZONE_CHANGE_RATE = 0.0467


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


def nearest_in_another_zone(scores: np.ndarray, config: ModelConfig, rng: np.random.Generator) -> np.ndarray:
    """Per score, the closest score (0-100) whose zone differs: an overnight zone change is a
    small move across a zone bound. Up or down first at random."""
    own = zones(scores, config).codes
    out = np.full(len(scores), -1, dtype=np.int64)
    first = np.where(rng.random(len(scores)) < 0.5, 1, -1)
    for distance in range(1, 101):
        for sign in (first, -first):
            candidate = np.clip(scores + sign * distance, 0, 100)
            hit = (out < 0) & (zones(candidate, config).codes != own)
            out[hit] = candidate[hit]
        if (out >= 0).all():
            break
    return out


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def run(n: int, config: ModelConfig, write: str | None = None, pg_url: str | None = None,
        zone_change_rate: float = ZONE_CHANGE_RATE) -> None:
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
    if write == "postgres":
        # The random history above makes ~75 % of the accounts change zone overnight - a stress
        # test of everything that follows zone changes (the zone-change index, the At Risk
        # episodes), not a day. A typical day: yesterday's score is today's, but for
        # ZONE_CHANGE_RATE of the accounts, whose yesterday is the nearest score in another zone.
        yesterday = scored[["account_key", "computed_score"]].assign(as_of_date=AS_OF - timedelta(days=1))
        changed = np.random.default_rng(3).random(n) < zone_change_rate
        moved = yesterday["computed_score"].to_numpy(dtype=np.int64).copy()
        moved[changed] = nearest_in_another_zone(moved[changed], config, np.random.default_rng(4))
        yesterday["computed_score"] = moved
        yesterday["zone"] = np.asarray(zones(moved, config), dtype=object)
        typical = pd.concat(
            [history[history["as_of_date"] != AS_OF - timedelta(days=1)], yesterday[history.columns]], ignore_index=True
        )
        day = score_accounts(signals, config, typical, overrides, previous_signals=previous)
        del signals, previous, history, typical
        rate = float((day["zone"] != day["previous_zone"]).mean())
        write_postgres(day, pg_url or DEFAULT_PG_URL, f"a typical day ({rate:.1%} of accounts change zone)")
        rate = float((scored["zone"] != scored["previous_zone"]).mean())
        write_postgres(scored, pg_url or DEFAULT_PG_URL, f"stress: random history ({rate:.0%} change zone)",
                       fresh_only=True)  # fmt: skip


DEFAULT_PG_URL = os.environ.get("CUSTOMER_HEALTH_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _backend_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of a PostgreSQL backend on this host, None when not visible."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_postgres(scored: pd.DataFrame, admin_url: str, label: str, *, fresh_only: bool = False) -> None:
    """Time ``write_scores`` of the scored frame into a fresh, migrated PostgreSQL database
    (the four writes, or the fresh date alone)."""
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
        writes = [
            ("fresh date", scored),
            ("next date (table holds the previous date)", next_day),
            ("re-run of that date (every row replaced)", next_day),
            (f"refresh of {len(refresh):,} accounts of that date", refresh),
        ]
        for attempt, frame in writes[:1] if fresh_only else writes:
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
                f"N={len(frame):>9,}  write_scores postgres, {label}, {attempt}: wall {elapsed:6.2f} s  client cpu "
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


def measure_zone_changes(url: str, days: int = 365) -> None:
    """Per scored date of the last ``days`` of the active model: the share of accounts whose zone
    differs from their previous zone; prints the median, quartiles and maximum."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version FROM model_versions WHERE status = 'active'")).scalar_one()
        rows = conn.execute(
            text(
                "SELECT as_of_date, AVG(CASE WHEN zone <> previous_zone THEN 1.0 ELSE 0.0 END), COUNT(*) "
                "FROM health_scores WHERE model_version = :v AND previous_zone IS NOT NULL "
                "GROUP BY as_of_date ORDER BY as_of_date DESC LIMIT :days"
            ),
            {"v": version, "days": days},
        ).all()
    rates = np.array([float(r[1]) for r in rows])
    if not len(rates):
        raise SystemExit(f"no scores of {version} with a previous zone in {url}")
    q1, median, q3 = np.percentile(rates, [25, 50, 75])
    print(
        f"{version}: {len(rates)} dates, {int(np.median([r[2] for r in rows])):,} accounts a date; accounts changing "
        f"zone a day: median {median:.2%}, quartiles {q1:.2%}-{q3:.2%}, max {rates.max():.2%}"
    )


def main(argv: list[str]) -> None:
    """Parse the arguments and run one benchmark per size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", help="account counts (default: 10000 100000)")
    parser.add_argument("--write", choices=["postgres"], help="also write the scores to a fresh database")
    parser.add_argument("--pg-url", default=None, help=f"admin URL of the PostgreSQL server (default {DEFAULT_PG_URL})")
    parser.add_argument("--zone-change-rate", type=float, default=ZONE_CHANGE_RATE,
                        help=f"share of accounts changing zone on the typical day written (default {ZONE_CHANGE_RATE})")
    parser.add_argument("--measure-zone-changes", metavar="WAREHOUSE_URL",
                        help="print the daily zone-change rates of a scored warehouse (e.g. the demo's) and exit")
    args = parser.parse_args(argv)
    if args.measure_zone_changes:
        measure_zone_changes(args.measure_zone_changes)
        return
    sizes = [int(a.replace("_", "").replace(",", "")) for a in args.sizes] or [10_000, 100_000]
    config = load_model_config()
    for n in sizes:
        run(n, config, args.write, args.pg_url, args.zone_change_rate)


if __name__ == "__main__":
    main(sys.argv[1:])
