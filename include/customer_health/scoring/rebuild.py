"""Score history rebuilds: a range of dates recomputed in bulk, equal to the daily runs.

A rebuild of ``start`` .. ``end`` leaves ``signal_values``, ``signal_context``,
``health_scores`` and ``health_score_rollups`` exactly as running the daily DAG for each date in
order would (every column but ``computed_at``), in two phases:

1. **Signals, sharded.** ``clear_signal_range`` removes the range's stored signal input (of the
   filtered accounts, when there is a filter), as the daily run clears its date. Then each work
   item of ``plan_signal_work`` - a block of dates x an account shard, one mapped task each -
   computes its signals with ``signals_range`` (vectorized over dates; equal to
   ``compute_signals`` per date) and bulk-writes them (``write_signal_rows``).
2. **Scores, sequential over dates, whole population per date.** Normalization compares each
   account with the baseline of *all* accounts of the date, and trends for D read the scores
   of D-1 (previous zone), D-30/60/90 and the slope samples. So shards cannot score alone:
   ``score_range`` reads the stored input of a block of dates in one query per table, scores
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

import csv
import io
import logging
import time as clock
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Boolean,
    Connection,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    Table,
    and_,
    case,
    delete,
    func,
    select,
)

from customer_health.scoring.model_config import ModelConfig
from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.scoring.signal_store import CONTEXT_COLUMNS
from customer_health.warehouse.io import utcnow
from customer_health.warehouse.schema import (
    account_crosswalk,
    health_score_rollups,
    health_scores,
    signal_context,
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


def clear_signal_range(engine: Engine, start: date, end: date, accounts: Sequence[str] | None = None) -> dict[str, int]:
    """Delete the stored signal input of ``start`` .. ``end`` (of ``accounts`` only, if given)."""
    removed = {"values_removed": 0, "accounts_removed": 0}
    with engine.begin() as conn:
        for table, name in ((signal_values, "values_removed"), (signal_context, "accounts_removed")):
            in_range = and_(table.c.as_of_date >= start, table.c.as_of_date <= end)
            if accounts is None:
                removed[name] += conn.execute(delete(table).where(in_range)).rowcount
            else:
                keys = sorted(set(accounts))
                for first in range(0, len(keys), _SQL_KEY_LIMIT):
                    part = keys[first : first + _SQL_KEY_LIMIT]
                    removed[name] += conn.execute(
                        delete(table).where(in_range, table.c.account_key.in_(part))
                    ).rowcount
    return removed


# --------------------------------------------------------------------------- bulk writes
def _encoded_column(values: pd.Series, sql_type: Any, dialect: str) -> list[Any]:
    """One column as the DB-API driver takes it (a list, None for NULL), converted per column.

    SQLite gets what SQLAlchemy would store: dates as ``YYYY-MM-DD``, stamps as
    ``YYYY-MM-DD HH:MM:SS.ffffff``, booleans as 0/1. PostgreSQL (COPY text) gets ISO dates and
    stamps; floats keep Python's shortest exact form (``repr``) either way.
    """
    column = values.astype(object)
    missing = column.isna().to_numpy()
    if isinstance(sql_type, DateTime):
        fmt = "%Y-%m-%d %H:%M:%S.%f" if dialect == "sqlite" else "%Y-%m-%dT%H:%M:%S.%f"
        distinct = {v: pd.Timestamp(v).strftime(fmt) for v in column[~missing].unique()}
        out = column.map(distinct)
    elif isinstance(sql_type, Date):
        distinct = {v: (v.date() if isinstance(v, datetime) else pd.Timestamp(v).date()).isoformat()
                    for v in column[~missing].unique()}  # fmt: skip
        out = column.map(distinct)
    elif isinstance(sql_type, Boolean):
        out = pd.Series([int(bool(v)) if v is not None else None for v in column.tolist()], dtype=object)
    elif isinstance(sql_type, Integer):
        numbers = pd.to_numeric(column.where(~missing, np.nan)).to_numpy()
        # A list, not Series.map: pandas would turn ints mixed with None back into floats.
        out = pd.Series([None if v != v else int(v) for v in numbers.tolist()], dtype=object)
    elif isinstance(sql_type, Float):
        floats = pd.to_numeric(column.where(~missing, np.nan)).to_numpy(dtype=float)
        missing = missing | np.isnan(floats)
        out = pd.Series(floats.tolist(), dtype=object)
    else:
        out = column
    result = np.array(out.to_numpy(dtype=object), dtype=object)
    result[missing] = None
    return result.tolist()


def bulk_upsert(conn: Connection, table: Table, frame: pd.DataFrame) -> int:
    """Upsert ``frame`` (columns named as ``table``'s) by primary key, in bulk; returns rows.

    PostgreSQL: COPY into a temporary table, then one INSERT ... ON CONFLICT DO UPDATE.
    SQLite: one executemany of INSERT ... ON CONFLICT DO UPDATE. NaN and None become NULL.
    Rows are written in primary-key order (index inserts stay local).
    """
    if frame.empty:
        return 0
    columns = [c.name for c in table.columns if c.name in frame.columns]
    pk = [c.name for c in table.primary_key.columns]
    updates = [c for c in columns if c not in pk]
    quoted = ", ".join(f'"{c}"' for c in columns)
    conflict = (
        f"ON CONFLICT ({', '.join(pk)}) DO UPDATE SET " + ", ".join(f'"{c}" = excluded."{c}"' for c in updates)
        if updates
        else f"ON CONFLICT ({', '.join(pk)}) DO NOTHING"
    )
    frame = frame.sort_values(pk, kind="stable").reset_index(drop=True)
    dialect = conn.dialect.name
    encoded = [_encoded_column(frame[c], table.c[c].type, dialect) for c in columns]
    dbapi = conn.connection.driver_connection
    if dialect == "postgresql":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(
            zip(*[["\\N" if v is None else (repr(v) if isinstance(v, float) else v) for v in col] for col in encoded],
                strict=True)
        )  # fmt: skip
        buffer.seek(0)
        stage = f"stage_{table.name}"
        with dbapi.cursor() as cursor:
            cursor.execute(f'CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE "{table.name}" INCLUDING DEFAULTS)')
            cursor.execute(f"TRUNCATE {stage}")
            cursor.copy_expert(f"COPY {stage} ({quoted}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)
            cursor.execute(f'INSERT INTO "{table.name}" ({quoted}) SELECT {quoted} FROM {stage} {conflict}')
        return len(frame)
    if dialect == "sqlite":
        marks = ", ".join("?" for _ in columns)
        cursor = dbapi.cursor()
        try:
            cursor.executemany(
                f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks}) {conflict}', zip(*encoded, strict=True)
            )
        finally:
            cursor.close()
        return len(frame)
    from customer_health.warehouse.io import upsert_rows  # pragma: no cover - other dialects

    records = frame[columns].astype(object).where(frame[columns].notna(), None).to_dict("records")
    return upsert_rows(conn, table, records)  # pragma: no cover


def write_signal_rows(engine: Engine, frame: pd.DataFrame) -> int:
    """Store a signals frame (any number of dates) as ``write_signal_frame`` would; bulk.

    Returns the number of ``signal_values`` rows written (accounts x signals).
    """
    if frame.empty:
        return 0
    signals = [c for c in SIGNALS if c in frame.columns]
    context = frame[["account_key", "as_of_date", *CONTEXT_COLUMNS]].copy()
    context["tenure_days"] = context["tenure_days"].astype(object)
    n = len(frame)
    long = pd.DataFrame(
        {
            "account_key": np.repeat(frame["account_key"].to_numpy(dtype=object), len(signals)),
            "as_of_date": np.repeat(frame["as_of_date"].to_numpy(dtype=object), len(signals)),
            "signal": np.tile(np.array(signals, dtype=object), n),
            "value": frame[signals].to_numpy(dtype=float).reshape(-1),
        }
    )
    with engine.begin() as conn:
        bulk_upsert(conn, signal_context, context)
        return bulk_upsert(conn, signal_values, long)


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
    from customer_health.scoring.signals_range import iter_signal_chunks

    say = progress or log.info
    total_days = (last - first).days + 1
    done = accounts = values = 0
    began = clock.monotonic()
    for frame in iter_signal_chunks(engine, first, last, account_keys, chunk_days=chunk_days):
        values += write_signal_rows(engine, frame)
        accounts += len(frame)
        done = min(total_days, done + chunk_days)
        elapsed = clock.monotonic() - began
        say(
            f"signals {first}..{last}: {done}/{total_days} dates, {accounts:,} account-dates, "
            f"{values:,} values written, {accounts / max(elapsed, 1e-9):,.0f} account-dates/s"
        )
    return {
        "first": first.isoformat(),
        "last": last.isoformat(),
        "dates": total_days,
        "account_dates": accounts,
        "values": values,
        "seconds": round(clock.monotonic() - began, 2),
    }


# --------------------------------------------------------------------------- stored input, read in bulk
def read_signal_frames(engine: Engine, first: date, last: date) -> dict[date, pd.DataFrame]:
    """The stored scoring input of every date ``first`` .. ``last``: per date, the frame
    ``signal_store.read_signal_frame`` returns (same columns, order, dtypes, values).

    Two queries for the whole block; the long ``signal_values`` are pivoted in SQL (one row per
    account and date, ``MAX(CASE ...)`` per signal: one stored value or NULL each).
    """
    from customer_health.scoring.signals_range import _read

    keys = list(SIGNALS)
    v = signal_values.c
    pivot = (
        select(
            v.account_key,
            v.as_of_date,
            *[func.max(case((v.signal == key, v.value))).label(key) for key in keys],
        )
        .where(v.as_of_date.between(first, last))
        .group_by(v.account_key, v.as_of_date)
    )
    with engine.connect() as conn:
        ctx = _read(conn, select(signal_context).where(signal_context.c.as_of_date.between(first, last)))
        values = _read(conn, pivot)
    if ctx.empty:
        return {}
    for frame in (ctx, values):
        distinct = {d: _as_date(d) for d in frame["as_of_date"].unique()}
        frame["as_of_date"] = frame["as_of_date"].map(distinct)
    wide = ctx.merge(values, on=["account_key", "as_of_date"], how="left")
    wide[keys] = wide[keys].apply(pd.to_numeric, errors="coerce").astype(float)
    wide["customer_since"] = pd.to_datetime(wide["customer_since"]).dt.date
    for col in ("seats", "arr", "tenure_days"):
        wide[col] = pd.to_numeric(wide[col], errors="coerce")
    wide = wide.sort_values(["as_of_date", "account_key"], kind="stable")
    frames = {}
    for day, part in wide.groupby("as_of_date", sort=True):
        frame = part.reset_index(drop=True)[["account_key", "as_of_date", *CONTEXT_COLUMNS, *keys]]
        frame["as_of_date"] = day
        frames[day] = frame
    return frames


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


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
        with engine.connect() as conn:
            rows = conn.execute(stmt).fetchall()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=HISTORY_COLUMNS)
        if frame.empty:
            return
        frame["as_of_date"] = frame["as_of_date"].map(_as_date)
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


def score_range(
    engine: Engine,
    start: date,
    end: date,
    config: ModelConfig,
    *,
    block_days: int = 31,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score every date ``start`` .. ``end`` in order from the stored input; bulk-write history.

    Equal to ``engine.score_date`` run for each date in order (see the module docstring).
    """
    from customer_health.scoring.engine import ensure_model_registered, score_accounts
    from customer_health.scoring.explain import signal_templates
    from customer_health.scoring.history import read_signal_snapshot
    from customer_health.scoring.overrides import active_overrides
    from customer_health.scoring.rollup import compute_rollups

    say = progress or log.info
    ensure_model_registered(engine, config)
    tc = config.trends
    reach = max([*tc.history_offsets(), tc.previous_zone_lookback_days])
    history = _History(config)
    history.load(engine, start - timedelta(days=reach), end)
    window = config.explanations.change_window_days
    keys = config.signal_keys
    templates = signal_templates(config)
    recent: dict[date, pd.DataFrame] = {}
    total = (end - start).days + 1
    done = scored_rows = rollup_rows = 0
    zones: dict[str, int] = {}
    began = clock.monotonic()
    for first, last in date_blocks(start, end, block_days):
        frames = read_signal_frames(engine, first, last)
        recent.update(frames)
        score_parts, rollup_parts = [], []
        day = first
        while day <= last:
            signals = frames.get(day)
            if signals is not None and len(signals):
                before = day - timedelta(days=window)
                previous = (
                    _snapshot(recent.get(before), keys) if before >= start else read_signal_snapshot(engine, before, keys)
                )
                scored = score_accounts(
                    signals, config, history.for_date(day), active_overrides(engine, day),
                    previous_signals=previous, templates=templates,
                )  # fmt: skip
                history.put(day, scored)
                score_parts.append(scored)
                rollup_parts.append(compute_rollups(scored, config))
                for zone, count in scored["zone"].value_counts().items():
                    zones[zone] = zones.get(zone, 0) + int(count)
            day += timedelta(days=1)
        for old in [d for d in recent if d < last - timedelta(days=window)]:
            del recent[old]
        stamp = utcnow()
        with engine.begin() as conn:
            if score_parts:
                scores = pd.concat(score_parts, ignore_index=True)
                columns = [c.name for c in health_scores.columns if c.name in scores.columns]
                scores = scores[columns].assign(computed_at=stamp)
                scored_rows += bulk_upsert(conn, health_scores, scores)
            rollups = [r for r in rollup_parts if len(r)]
            if rollups:
                frame = pd.concat(rollups, ignore_index=True)
                columns = [c.name for c in health_score_rollups.columns if c.name in frame.columns]
                rollup_rows += bulk_upsert(conn, health_score_rollups, frame[columns].assign(computed_at=stamp))
        done += (last - first).days + 1
        elapsed = clock.monotonic() - began
        say(
            f"scores {config.version}: {done}/{total} dates, {scored_rows:,} scores and {rollup_rows:,} rollups "
            f"written, {done / max(elapsed, 1e-9):.1f} dates/s"
        )
    return {
        "from_date": start.isoformat(),
        "to_date": end.isoformat(),
        "model_version": config.version,
        "dates": total,
        "scores": scored_rows,
        "rollups": rollup_rows,
        "zones": zones,
        "seconds": round(clock.monotonic() - began, 2),
    }


def history_counts(engine: Engine, start: date, end: date, model_version: str) -> dict[str, int]:
    """Rows of the range in each history table (for reports and tests)."""
    with engine.connect() as conn:
        counts = {}
        for table in (signal_values, signal_context):
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
