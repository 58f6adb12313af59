"""Empty and partial sources: whatever source tables a company has no record in, the daily run,
the refresh and the rebuild store the same signals and the same scores, and none crashes.

A property test over random small companies (``signal_fixtures.random_company``: a few accounts,
each connected to a random set of systems, with deleted records, late payments, churn, trial
usage before the contract, duplicate identities), on SQLite and on PostgreSQL. Each example
leaves out the records of a random set of the source tables - Tasks, Opportunities, NPS
responses, tickets, satisfaction ratings, disputes, invoices, product events - and runs, each on
its own warehouse holding the same raw data:

* **daily**: for each date in order, the daily DAG's signal and score steps (the date's input
  cleared, signals computed in 1 or 2 account shards and stored, the stored input scored);
* **rebuild**: ``customer_health_rebuild`` as one pass over all dates, as two date blocks with
  the later one done first (it derives the earlier dates' scores its trends read), or sharded
  (signals per account shard, then scores);
* **refresh**: the daily run up to the day before, then the refresh for the last day: the
  day's first refresh stores the whole population's input, a later one re-scores some accounts.

Then every ``signal_values``, ``health_scores`` and ``health_score_rollups`` row (all columns but
``computed_at``) is the same in the daily and the rebuilt warehouse, and the refresh stored the
last day's input and scored its accounts exactly as the daily run did. Explicit examples cover
no empty table, every table empty and each table empty alone (no Tasks at all crashed the old
rebuild).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, delete, text

from customer_health.refresh import rescore_accounts
from customer_health.scoring.engine import score_date
from customer_health.scoring.model_config import load_model_config
from customer_health.scoring.rebuild import (
    clear_signal_range,
    rebuild_block,
    rebuild_signals,
    score_range,
    shard_keys,
)
from customer_health.scoring.signal_store import clear_signal_input, read_signal_frame, write_signal_frame
from customer_health.scoring.signals import compute_signals
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.migrate import upgrade_to_head
from customer_health.warehouse.schema import metadata
from tests.conftest import PG_ADMIN_URL, require_postgres
from tests.history_helpers import history_rows
from tests.unit.signal_fixtures import SOURCE_TABLES, random_company

pytestmark = pytest.mark.slow

CONFIG = load_model_config()
LAST = date(2026, 6, 30)
DATES = [LAST - timedelta(days=k) for k in range(3, -1, -1)]
FIRST = DATES[0]
EVERY_TABLE = frozenset(SOURCE_TABLES)
PATHS = ("daily", "rebuild", "refresh")


@pytest.fixture(params=["sqlite", "postgres"])
def warehouses(request, tmp_path) -> Iterator[dict[str, str]]:
    """Three migrated, empty warehouses of one backend: daily, rebuild, refresh."""
    if request.param == "sqlite":
        urls = {path: f"sqlite:///{tmp_path / f'{path}.db'}" for path in PATHS}
        admin = None
    else:
        require_postgres()
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        names = {path: f"ch_test_{uuid.uuid4().hex[:12]}" for path in PATHS}
        with admin.connect() as conn:
            for name in names.values():
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        urls = {path: PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}" for path, name in names.items()}
    for url in urls.values():
        upgrade_to_head(engine_for(url))
    try:
        yield urls
    finally:
        for url in urls.values():
            engine_for(url).dispose()
        engine_for.cache_clear()
        if admin is not None:
            with admin.connect() as conn:
                for name in names.values():
                    conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            admin.dispose()


def _fresh(url: str, world) -> object:
    """The warehouse emptied (an earlier example's rows gone) and holding ``world``."""
    engine = engine_for(url)
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(delete(table))
    world.save(engine)
    return engine


def run_daily(engine, dates: list[date], shards: int) -> None:
    """The daily DAG's signal and score steps for each date in order."""
    for day in dates:
        clear_signal_input(engine, day, day)
        for shard in range(shards):
            write_signal_frame(engine, compute_signals(engine, day, shard_keys(engine, shard, shards)))
        score_date(engine, day, CONFIG, read_signal_frame(engine, day))


def run_rebuild(engine, how: str, chunk_days: int) -> None:
    """``customer_health_rebuild`` of the dates, the way ``how`` says."""
    if how == "one pass":
        rebuild_block(engine, FIRST, LAST, CONFIG, range_start=FIRST, chunk_days=chunk_days)
    elif how == "two blocks, the later first":
        middle = FIRST + timedelta(days=1)
        rebuild_block(engine, middle + timedelta(days=1), LAST, CONFIG, range_start=FIRST, chunk_days=chunk_days)
        rebuild_block(engine, FIRST, middle, CONFIG, range_start=FIRST, chunk_days=chunk_days)
    else:
        clear_signal_range(engine, FIRST, LAST)
        for shard in range(2):
            rebuild_signals(engine, FIRST, LAST, shard_keys(engine, shard, 2), chunk_days=chunk_days)
        score_range(engine, FIRST, LAST, CONFIG)


def _same(expected: list[tuple], actual: list[tuple], what: str) -> None:
    assert len(actual) == len(expected), (what, len(expected), len(actual))
    for want, got in zip(expected, actual, strict=True):
        for a, b in zip(want, got, strict=True):
            if isinstance(a, float) and isinstance(b, float):
                assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (what, want, got)
            else:
                assert a == b, (what, want, got)


@settings(
    max_examples=10, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@example(seed=11, empty=frozenset(), rebuild="one pass", shards=1, chunk_days=2)
@example(seed=12, empty=EVERY_TABLE, rebuild="sharded", shards=2, chunk_days=3)
@example(seed=13, empty=frozenset({"tasks"}), rebuild="one pass", shards=1, chunk_days=4)
@example(seed=14, empty=frozenset({"opportunities"}), rebuild="two blocks, the later first", shards=2, chunk_days=1)
@example(seed=15, empty=frozenset({"nps"}), rebuild="sharded", shards=1, chunk_days=2)
@example(seed=16, empty=frozenset({"tickets"}), rebuild="one pass", shards=2, chunk_days=3)
@example(seed=17, empty=frozenset({"ratings"}), rebuild="two blocks, the later first", shards=1, chunk_days=4)
@example(seed=18, empty=frozenset({"disputes"}), rebuild="sharded", shards=2, chunk_days=1)
@example(seed=19, empty=frozenset({"invoices"}), rebuild="one pass", shards=1, chunk_days=2)
@example(seed=20, empty=frozenset({"product events"}), rebuild="two blocks, the later first", shards=2, chunk_days=3)
@given(
    seed=st.integers(0, 2**31 - 1),
    empty=st.frozensets(st.sampled_from(sorted(SOURCE_TABLES))),
    rebuild=st.sampled_from(["one pass", "two blocks, the later first", "sharded"]),
    shards=st.integers(1, 2),
    chunk_days=st.integers(1, 4),
)
def test_daily_refresh_and_rebuild_agree_whatever_sources_are_empty(warehouses, seed, empty, rebuild, shards, chunk_days):
    world = random_company(seed, LAST).without(*[t for name in empty for t in SOURCE_TABLES[name]])

    daily = _fresh(warehouses["daily"], world)
    run_daily(daily, DATES, shards)
    rebuilt = _fresh(warehouses["rebuild"], world)
    run_rebuild(rebuilt, rebuild, chunk_days)
    refreshed = _fresh(warehouses["refresh"], world)
    run_daily(refreshed, DATES[:-1], 1)
    assert rescore_accounts(refreshed, LAST, [], CONFIG)["population_computed"] > 0 or daily_is_empty(daily)
    some = sorted(compute_signals(refreshed, LAST)["account_key"])[::2]
    rescore_accounts(refreshed, LAST, some, CONFIG)

    expected = history_rows(warehouses["daily"], FIRST, LAST, CONFIG.version)
    assert expected["signal_values"] or daily_is_empty(daily)
    for table, rows in history_rows(warehouses["rebuild"], FIRST, LAST, CONFIG.version).items():
        _same(expected[table], rows, f"rebuild {table}")
    refresh = history_rows(warehouses["refresh"], LAST, LAST, CONFIG.version)
    _same([r for r in expected["signal_values"] if r[0] == LAST], refresh["signal_values"], "refresh signal_values")
    wanted = set(some)
    _same(
        [r for r in expected["health_scores"] if r[1] == LAST and r[0] in wanted],
        [r for r in refresh["health_scores"] if r[0] in wanted],
        "refresh health_scores",
    )


def daily_is_empty(engine) -> bool:
    """True when no account of the company is a customer on the last day (a legal draw)."""
    return compute_signals(engine, LAST).empty
