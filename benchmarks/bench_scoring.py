"""Benchmark: score N synthetic accounts in memory, everything but the database.

Usage::

    PYTHONPATH=include python benchmarks/bench_scoring.py 10000 100000 1000000

For each N it builds (untimed) a random signal frame for date D, the raw signals of D-30 and
a score history with the dates the trends read (D-1 for the previous zone, D-30, D-60, D-90
for deltas and the slope), then times ``score_accounts``: normalization against segment
baselines, weighting, coverage, zones, overrides, trends (deltas, slope, previous zone),
priority, top drivers, drivers JSON and the explanation sentence. Prints wall time and the
process's peak resident memory (ru_maxrss, inputs included). tracemalloc is not used: it
slows allocation-heavy numpy code several-fold and would distort the timing.
Run one N per process for a clean peak-memory figure.
"""

from __future__ import annotations

import resource
import sys
import time
from datetime import date, timedelta

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


def run(n: int, config: ModelConfig) -> None:
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
    cpu_started = time.process_time()
    scored = score_accounts(signals, config, history, overrides, previous_signals=previous)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"N={n:>9,}  score_accounts wall {elapsed:6.2f} s  cpu {cpu:6.2f} s  ({n / elapsed:,.0f} accounts/s)  "
        f"peak RSS {rss_mb:6.0f} MiB (inputs {inputs_mb:5.0f} MiB)  history rows {len(history):,}  "
        f"zones {scored['zone'].value_counts().to_dict()}",
        flush=True,
    )


def main(argv: list[str]) -> None:
    sizes = [int(a.replace("_", "").replace(",", "")) for a in argv] or [10_000, 100_000]
    config = load_model_config()
    for n in sizes:
        run(n, config)


if __name__ == "__main__":
    main(sys.argv[1:])
