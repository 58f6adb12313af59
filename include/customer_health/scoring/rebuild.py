"""Score history rebuilds: a range of dates recomputed in bulk, equal to the daily runs.

A rebuild of ``start`` .. ``end`` leaves ``signal_values`` (the stored scoring input),
``health_scores`` and ``health_score_rollups`` exactly as running the daily DAG for each date in
order would (every column but ``computed_at``), in two phases:

1. **Signals, sharded.** ``clear_signal_range`` removes the range's stored signal input (of the
   filtered accounts, when there is a filter), as the daily run clears its date. Then each work
   item of ``plan_signal_work`` - a block of dates x an account shard, one mapped task each -
   computes its signals with ``signals.iter_signal_chunks`` (vectorized over dates; equal to
   ``compute_signals`` per date) and bulk-writes them (``write_signal_rows``).
2. **Scores, sequential over dates, whole population per date.** Normalization compares each
   account with the baseline of *all* accounts of the date, and trends for D read the scores
   of D-1 (previous zone), D-30/60/90 and the slope samples. So shards cannot score alone:
   ``score_range`` reads the stored input of a block of dates in one query, scores
   the dates in order with the pure ``engine.score_accounts`` - keeping the history it needs in
   memory, with the same upsert semantics as ``health_scores`` (earlier rows of the version are
   loaded first, rebuilt dates replace theirs) - and bulk-writes scores and rollups per block.

Bulk writes: PostgreSQL ``COPY`` into a temporary table, then ``INSERT ... ON CONFLICT DO
UPDATE``; SQLite ``executemany`` of the same upsert in one transaction per block, with values
encoded as SQLAlchemy stores them. Both are idempotent, so a re-run or a retried mapped task
leaves the same rows and never a second one.

An account filter limits which accounts' *signals* are recomputed (say, after fixing one
customer's source data); every date is still scored over the whole population from the stored
input, so the baselines - and other accounts' scores - stay what the daily run computes.
"""

from __future__ import annotations

import logging
import time as clock
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import (
    Engine,
    func,
    select,
)

from customer_health.scoring.history import refresh_score_episodes, scored_dates, summarize_bulk_write
from customer_health.scoring.model_config import ModelConfig
from customer_health.scoring.signal_engine import as_date as _as_date
from customer_health.scoring.signal_store import (
    clear_signal_input,
    read_signal_frames,
    write_signal_frame,
)
from customer_health.warehouse.io import upsert_rows, utcnow
from customer_health.warehouse.schema import (
    account_crosswalk,
    health_score_rollups,
    health_scores,
    signal_values,
)

log = logging.getLogger(__name__)

DEFAULT_BLOCK_DAYS = 92
"""Dates per mapped signal task (facts are read once per block and account shard)."""
_SQL_KEY_LIMIT = 10_000


# --------------------------------------------------------------------------- planning
def date_blocks(start: date, end: date, block_days: int = DEFAULT_BLOCK_DAYS) -> list[tuple[date, date]]:
    """``start`` .. ``end`` cut into consecutive blocks of at most ``block_days`` dates."""
    if end < start:
        raise ValueError(f"rebuild range: to_date {end} is before from_date {start}; swap them")
    if block_days < 1:
        raise ValueError(f"block_days must be at least 1, got {block_days}")
    blocks = []
    first = start
    while first <= end:
        last = min(end, first + timedelta(days=block_days - 1))
        blocks.append((first, last))
        first = last + timedelta(days=1)
    return blocks


def shard_keys(engine: Engine, shard: int, of: int, accounts: Sequence[str] | None = None) -> list[str] | None:
    """The account keys of shard ``shard`` of ``of`` (every ``of``-th key in sorted order, as the
    daily DAG shards), within ``accounts`` when given; None means every account, unfiltered."""
    if of == 1 and accounts is None:
        return None
    if accounts is not None:
        keys = sorted(set(accounts))
    else:
        with engine.connect() as conn:
            keys = list(
                conn.execute(
                    select(account_crosswalk.c.account_key).order_by(account_crosswalk.c.account_key)
                ).scalars()
            )
    return keys[shard::of]


def plan_signal_work(
    start: date, end: date, shards: int = 1, block_days: int = DEFAULT_BLOCK_DAYS
) -> list[dict[str, Any]]:
    """One work item per (date block, account shard): the mapped signal tasks' arguments."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    return [
        {"first": a.isoformat(), "last": b.isoformat(), "shard": s, "of": shards}
        for a, b in date_blocks(start, end, block_days)
        for s in range(shards)
    ]


def blocks_of(start: date, end: date, blocks: int) -> int:
    """Dates per block when ``start`` .. ``end`` is cut into ``blocks`` blocks (as even as can be)."""
    if blocks < 1:
        raise ValueError(f"blocks must be at least 1, got {blocks}")
    days = (end - start).days + 1
    return max(1, -(-days // blocks))


def plan_score_work(start: date, end: date, blocks: int = 1) -> list[dict[str, Any]]:
    """One work item per date block scored in parallel (later blocks derive the scores of the
    rebuild's earlier dates their trends need, see ``score_range``)."""
    return [
        {"first": a.isoformat(), "last": b.isoformat(), "range_start": start.isoformat()}
        for a, b in date_blocks(start, end, blocks_of(start, end, blocks))
    ]


def clear_signal_range(engine: Engine, start: date, end: date, accounts: Sequence[str] | None = None) -> dict[str, int]:
    """Delete the stored signal input of ``start`` .. ``end`` (of ``accounts`` only, if given)."""
    return {"accounts_removed": clear_signal_input(engine, start, end, accounts)}


def write_signal_rows(engine: Engine, frame: pd.DataFrame) -> int:
    """Store a signals frame (any number of dates) in bulk; returns the account-date rows."""
    return write_signal_frame(engine, frame)


def rebuild_signals(
    engine: Engine,
    first: date,
    last: date,
    account_keys: Sequence[str] | None = None,
    *,
    chunk_days: int = 31,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compute and store the signals of ``first`` .. ``last`` for ``account_keys`` (None: all)."""
    from customer_health.scoring.signals import iter_signal_chunks

    say = progress or log.info
    total_days = (last - first).days + 1
    done = accounts = rows = 0
    began = mark = clock.monotonic()
    computing = writing = 0.0
    for frame in iter_signal_chunks(engine, first, last, account_keys, chunk_days=chunk_days):
        computing += clock.monotonic() - mark
        mark = clock.monotonic()
        rows += write_signal_rows(engine, frame)
        writing += clock.monotonic() - mark
        accounts += len(frame)
        done = min(total_days, done + chunk_days)
        elapsed = clock.monotonic() - began
        say(
            f"signals {first}..{last}: {done}/{total_days} dates, {accounts:,} account-dates, "
            f"{rows:,} rows written, {accounts / max(elapsed, 1e-9):,.0f} account-dates/s "
            f"(read and compute {computing:.1f} s, write {writing:.1f} s)"
        )
        mark = clock.monotonic()
    return {
        "first": first.isoformat(),
        "last": last.isoformat(),
        "dates": total_days,
        "account_dates": accounts,
        "rows": rows,
        "seconds": round(clock.monotonic() - began, 2),
    }


# --------------------------------------------------------------------------- scoring over dates
@dataclass
class _History:
    """Scores of one model version by date, with ``health_scores`` upsert semantics."""

    config: ModelConfig
    by_date: dict[date, pd.DataFrame] = field(default_factory=dict)

    def load(self, engine: Engine, first: date, last: date) -> None:
        from customer_health.scoring.history import HISTORY_COLUMNS

        t = health_scores.c
        stmt = select(t.account_key, t.as_of_date, t.computed_score, t.score, t.zone).where(
            t.model_version == self.config.version, t.as_of_date.between(first, last)
        )
        from customer_health.scoring.signal_engine import read_frame

        with engine.connect() as conn:
            frame = read_frame(conn, stmt)  # driver rows, whole columns converted below
        if frame.empty:
            return
        frame.columns = HISTORY_COLUMNS
        frame["as_of_date"] = frame["as_of_date"].map({d: _as_date(d) for d in frame["as_of_date"].unique()})
        for day, part in frame.groupby("as_of_date"):
            self.by_date[day] = part.reset_index(drop=True)

    def put(self, day: date, scored: pd.DataFrame) -> None:
        from customer_health.scoring.history import HISTORY_COLUMNS

        new = scored[HISTORY_COLUMNS].copy()
        new["as_of_date"] = day
        old = self.by_date.get(day)
        if old is not None:
            new = pd.concat([old[~old["account_key"].isin(set(new["account_key"]))], new], ignore_index=True)
        self.by_date[day] = new

    def for_date(self, as_of: date) -> pd.DataFrame:
        """What ``history.read_score_history`` returns for ``as_of`` (same dates, same rows)."""
        from customer_health.scoring.history import HISTORY_COLUMNS

        tc = self.config.trends
        dates = {as_of - timedelta(days=k) for k in tc.history_offsets()}
        lookback = as_of - timedelta(days=tc.previous_zone_lookback_days)
        earlier = [d for d, f in self.by_date.items() if lookback <= d < as_of and len(f)]
        if earlier:
            dates.add(max(earlier))
        parts = [self.by_date[d] for d in sorted(dates) if d in self.by_date and len(self.by_date[d])]
        if not parts:
            return pd.DataFrame(columns=HISTORY_COLUMNS)
        return pd.concat(parts, ignore_index=True)


def _snapshot(frame: pd.DataFrame | None, signal_keys: list[str]) -> pd.DataFrame | None:
    """A stored frame as ``history.read_signal_snapshot`` returns it (None when nothing stored)."""
    if frame is None or frame.empty:
        return None
    return frame[["account_key", *signal_keys]].sort_values("account_key").reset_index(drop=True)


class _Phases:
    """Seconds spent per phase of a long loop, for its progress log."""

    def __init__(self, *names: str) -> None:
        self.seconds = dict.fromkeys(names, 0.0)

    @contextmanager
    def timing(self, name: str) -> Iterator[None]:
        began = clock.monotonic()
        try:
            yield
        finally:
            self.seconds[name] += clock.monotonic() - began

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())


class _DateScorer:
    """Scores one model version's dates in order, as ``engine.score_date`` would one by one,
    keeping in memory what later dates read (the trend history and the inputs the "what
    changed" drivers compare with), and bulk-writes the scored dates in chunks."""

    def __init__(self, engine: Engine, config: ModelConfig, start: date, end: date) -> None:
        from customer_health.scoring.explain import signal_templates

        self.engine = engine
        self.config = config
        tc = config.trends
        self.reach = max([*tc.history_offsets(), tc.previous_zone_lookback_days])
        self.window = config.explanations.change_window_days
        self.history = _History(config)
        self.history.load(engine, start - timedelta(days=self.reach), end)
        self.templates = signal_templates(config)
        self.recent: dict[date, pd.DataFrame] = {}
        self.zones: dict[str, int] = {}
        self.scored_rows = self.rollup_rows = 0

    def warm_first(self, start: date, range_start: date | None) -> date:
        """The first of the rebuild's dates before ``start`` whose scores the trends of ``start``
        onwards read (``start`` itself when there are none)."""
        return max(min(range_start or start, start), start - timedelta(days=self.reach))

    def derive(self, frames: dict[date, pd.DataFrame], start: date) -> None:
        """Take the history of earlier rebuilt dates from their input (``engine.history_scores``:
        the same computed score, score and zone), not from ``health_scores``."""
        from customer_health.scoring.engine import history_scores
        from customer_health.scoring.overrides import active_overrides

        for day in sorted(frames):
            self.history.put(day, history_scores(frames[day], self.config, active_overrides(self.engine, day)))
        self.recent.update({d: f for d, f in frames.items() if d >= start - timedelta(days=self.window)})

    def read_recent(self, start: date, warm_first: date) -> None:
        """The stored input of the dates the first "what changed" drivers compare with, not
        otherwise at hand (before ``warm_first``), in one query."""
        if start - timedelta(days=self.window) < warm_first:
            self.recent.update(
                read_signal_frames(self.engine, start - timedelta(days=self.window), warm_first - timedelta(days=1))
            )

    def score(self, frames: dict[date, pd.DataFrame], first: date, last: date) -> tuple[list, list]:
        """Score ``first`` .. ``last`` in order from ``frames``; the scored and rollup frames."""
        from customer_health.scoring.engine import score_accounts
        from customer_health.scoring.overrides import active_overrides
        from customer_health.scoring.rollup import compute_rollups

        keys = self.config.signal_keys
        self.recent.update(frames)
        score_parts, rollup_parts = [], []
        day = first
        while day <= last:
            signals = frames.get(day)
            if signals is not None and len(signals):
                previous = _snapshot(self.recent.get(day - timedelta(days=self.window)), keys)
                scored = score_accounts(
                    signals, self.config, self.history.for_date(day), active_overrides(self.engine, day),
                    previous_signals=previous, templates=self.templates,
                )  # fmt: skip
                self.history.put(day, scored)
                score_parts.append(scored)
                rollup_parts.append(compute_rollups(scored, self.config))
                for zone, count in scored["zone"].value_counts().items():
                    self.zones[zone] = self.zones.get(zone, 0) + int(count)
            day += timedelta(days=1)
        for old in [d for d in self.recent if d < last - timedelta(days=self.window)]:
            del self.recent[old]
        return score_parts, rollup_parts

    def write(self, score_parts: list, rollup_parts: list, first: date, last: date) -> None:
        """Bulk-write scored dates and their rollups, with the dashboard's summary and movers of
        these dates, in one transaction."""
        stamp = utcnow()
        with self.engine.begin() as conn:
            if score_parts:
                scores = pd.concat(score_parts, ignore_index=True)
                columns = [c.name for c in health_scores.columns if c.name in scores.columns]
                scores = scores[columns]
                # Summarized from the frame for the dates that held no scores of this version before.
                before = {(self.config.version, d) for d in scored_dates(conn, self.config.version, first, last)}
                self.scored_rows += upsert_rows(conn, health_scores, scores, constants={"computed_at": stamp})
                summarize_bulk_write(conn, scores, before)
            rollups = [r for r in rollup_parts if len(r)]
            if rollups:
                frame = pd.concat(rollups, ignore_index=True)
                columns = [c.name for c in health_score_rollups.columns if c.name in frame.columns]
                self.rollup_rows += upsert_rows(conn, health_score_rollups, frame[columns], constants={"computed_at": stamp})

    def finish(self, start: date, end: date, began: float) -> dict[str, Any]:
        """Recompute the version's At Risk episodes (they span dates) once; the report."""
        # From every stored zone change of the version: a later block scored in parallel
        # finishing first is covered by the last one's recompute.
        refresh_score_episodes(self.engine, self.config.version)
        return {
            "from_date": start.isoformat(),
            "to_date": end.isoformat(),
            "model_version": self.config.version,
            "dates": (end - start).days + 1,
            "scores": self.scored_rows,
            "rollups": self.rollup_rows,
            "zones": self.zones,
            "seconds": round(clock.monotonic() - began, 2),
        }


def score_range(
    engine: Engine,
    start: date,
    end: date,
    config: ModelConfig,
    *,
    block_days: int = 31,
    progress: Callable[[str], None] | None = None,
    range_start: date | None = None,
) -> dict[str, Any]:
    """Score every date ``start`` .. ``end`` in order from the stored input; bulk-write history.

    Equal to ``engine.score_date`` run for each date in order (see the module docstring).

    ``range_start`` (default ``start``) is the first date of the whole rebuild when this call
    scores one of its later date blocks, in parallel with the earlier ones: the scores of the
    rebuild's dates before ``start`` that the trends read are then derived here from their
    stored input (``engine.history_scores``: the same computed score, score and zone), not
    read from ``health_scores``, where the earlier block may not have written them yet.
    """
    from customer_health.scoring.engine import ensure_model_registered

    say = progress or log.info
    ensure_model_registered(engine, config)
    scorer = _DateScorer(engine, config, start, end)
    warm_first = scorer.warm_first(start, range_start)
    if warm_first < start:
        began = clock.monotonic()
        earlier = read_signal_frames(engine, warm_first, start - timedelta(days=1))
        scorer.derive(earlier, start)
        say(
            f"scores {config.version}: derived the scores of {len(earlier)} rebuilt dates {warm_first}..{start - timedelta(days=1)} "
            f"for the trends of {start} onwards in {clock.monotonic() - began:.1f} s"
        )
    scorer.read_recent(start, warm_first)
    total = (end - start).days + 1
    done = 0
    began = clock.monotonic()
    phases = _Phases("read", "score", "write")
    for first, last in date_blocks(start, end, block_days):
        with phases.timing("read"):
            frames = read_signal_frames(engine, first, last)
        with phases.timing("score"):
            parts = scorer.score(frames, first, last)
        with phases.timing("write"):
            scorer.write(*parts, first, last)
        done += (last - first).days + 1
        elapsed = clock.monotonic() - began
        say(
            f"scores {config.version}: {done}/{total} dates, {scorer.scored_rows:,} scores and {scorer.rollup_rows:,} "
            f"rollups written, {done / max(elapsed, 1e-9):.1f} dates/s ({phases})"
        )
    return scorer.finish(start, end, began)


def rebuild_block(
    engine: Engine,
    start: date,
    end: date,
    config: ModelConfig,
    *,
    range_start: date | None = None,
    chunk_days: int = 31,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Signals and scores of the dates ``start`` .. ``end`` in one pass, every account.

    What ``rebuild_signals`` then ``score_range`` write for the block, without reading the
    block's stored input back: each chunk of dates is computed (``iter_signal_chunks``), its signal
    rows bulk-written, and the same frame - as the stored input reads back
    (``signal_store.as_stored``) - scored in order and bulk-written. Only for a rebuild of every
    account in one shard: scoring normalizes each date over the whole population.

    A later block of a rebuild (``range_start`` < ``start``) also computes the signals of the up
    to ``reach`` earlier dates its trends read, to derive their scores in memory (they are the
    earlier block's to store, and are not written here).
    """
    from customer_health.scoring.engine import ensure_model_registered
    from customer_health.scoring.signal_store import as_stored
    from customer_health.scoring.signals import iter_signal_chunks

    say = progress or log.info
    ensure_model_registered(engine, config)
    scorer = _DateScorer(engine, config, start, end)
    warm_first = scorer.warm_first(start, range_start)
    scorer.read_recent(start, warm_first)
    dialect = engine.dialect.name
    total = (end - start).days + 1
    done = signal_rows = 0
    began = clock.monotonic()
    phases = _Phases("signals", "warm-up", "signal write", "score", "score write")
    chunks = iter_signal_chunks(engine, warm_first, end, None, chunk_days=chunk_days)
    while True:
        with phases.timing("signals"):
            frame = next(chunks, None)
            if frame is None:
                break
            frames = as_stored(frame, dialect)
        earlier = {d: f for d, f in frames.items() if d < start}
        if earlier:
            with phases.timing("warm-up"):
                scorer.derive(earlier, start)
        mine = {d: f for d, f in frames.items() if d >= start}
        if mine:
            with phases.timing("signal write"):
                in_block = frame[frame["as_of_date"].map(_as_date) >= start] if earlier else frame
                signal_rows += write_signal_rows(engine, in_block)
            with phases.timing("score"):
                parts = scorer.score(mine, min(mine), max(mine))
            with phases.timing("score write"):
                scorer.write(*parts, min(mine), max(mine))
            done += len(mine)
        elapsed = clock.monotonic() - began
        say(
            f"rebuild {config.version} {start}..{end}: {done}/{total} dates, {signal_rows:,} signal rows, "
            f"{scorer.scored_rows:,} scores and {scorer.rollup_rows:,} rollups written, "
            f"{done / max(elapsed, 1e-9):.1f} dates/s ({phases})"
        )
    return scorer.finish(start, end, began) | {
        "signal_rows": signal_rows,
        "phases": {phase: round(seconds, 2) for phase, seconds in phases.seconds.items()},
    }


def history_counts(engine: Engine, start: date, end: date, model_version: str) -> dict[str, int]:
    """Rows of the range in each history table (for reports and tests)."""
    with engine.connect() as conn:
        counts = {}
        for table in (signal_values,):
            counts[table.name] = conn.execute(
                select(func.count()).select_from(table).where(table.c.as_of_date.between(start, end))
            ).scalar_one()
        for table in (health_scores, health_score_rollups):
            counts[table.name] = conn.execute(
                select(func.count())
                .select_from(table)
                .where(table.c.as_of_date.between(start, end), table.c.model_version == model_version)
            ).scalar_one()
    return counts
