"""Score history in the warehouse: read what the trends need, write a date's scores.

Reads are narrow on purpose. For scoring date D the trends need only the scores of a few
dates - D-30, D-60, D-90, the slope samples (every ``trends.slope_sample_every_days`` days
over the last ``trends.slope_window_days``) and the most recent earlier date for
``previous_zone`` - of the same model version; ``read_score_history`` fetches exactly those
(one indexed ``IN`` on (as_of_date, model_version)), never the whole table.

Writes are upserts keyed (account_key, as_of_date, model_version) for scores and
(parent_account_key, as_of_date, model_version) for rollups: re-running a date overwrites
its rows and never adds a second one. (Accounts are upserted rather than the date's partition
replaced, so shards of one date scored by separate mapped tasks do not erase each other.)
They go through the warehouse's one write path (``warehouse.io``); on PostgreSQL a date scored
for the first time is COPYed straight into the table, a rewrite after deleting the frame's keys
(see ``_pg_write``).

``write_scores`` also keeps the dashboard's derived tables - health_score_summary (accounts
and ARR per version, date, segment and zone), health_score_movers (the biggest 30-day moves)
and health_score_episodes (At Risk episodes) - equal to a recomputation from health_scores,
in the same transaction, mostly from the frame itself (see ``_update_summary``,
``_update_episodes``). Anything else that writes scores calls ``refresh_score_summary``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Connection,
    Date,
    Engine,
    Text,
    any_,
    bindparam,
    cast,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY

from customer_health.scoring.model_config import ModelConfig
from customer_health.warehouse.io import as_date, copy_new_rows, in_key_order, text_array, upsert_rows, utcnow
from customer_health.warehouse.schema import (
    health_score_episodes,
    health_score_movers,
    health_score_rollups,
    health_score_summary,
    health_scores,
    signal_values,
)

HISTORY_COLUMNS = ["account_key", "as_of_date", "computed_score", "score", "zone"]


def history_dates(engine: Engine, as_of: date, config: ModelConfig) -> list[date]:
    """The earlier dates whose scores the trends for ``as_of`` need."""
    tc = config.trends
    dates = {as_of - timedelta(days=k) for k in tc.history_offsets()}
    with engine.connect() as conn:
        latest = conn.execute(
            select(func.max(health_scores.c.as_of_date)).where(
                health_scores.c.model_version == config.version,
                health_scores.c.as_of_date < as_of,
                health_scores.c.as_of_date >= as_of - timedelta(days=tc.previous_zone_lookback_days),
            )
        ).scalar_one_or_none()
    if latest is not None:
        dates.add(latest if isinstance(latest, date) else date.fromisoformat(str(latest)))
    return sorted(dates)


def read_score_history(engine: Engine, as_of: date, config: ModelConfig) -> pd.DataFrame:
    """Earlier scores of this model version on the dates the trends need (see module doc)."""
    dates = history_dates(engine, as_of, config)
    t = health_scores.c
    stmt = select(t.account_key, t.as_of_date, t.computed_score, t.score, t.zone).where(
        t.model_version == config.version, t.as_of_date.in_(dates)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=HISTORY_COLUMNS)


def read_signal_snapshot(engine: Engine, day: date, signal_keys: list[str]) -> pd.DataFrame | None:
    """Raw signal values stored for ``day`` as a wide frame (account_key + one column per
    signal), or None when nothing was stored for that day."""
    t = signal_values.c
    stmt = select(t.account_key, *[t[key] for key in signal_keys]).where(t.as_of_date == day).order_by(t.account_key)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    if not rows:
        return None
    frame = pd.DataFrame([tuple(r) for r in rows], columns=["account_key", *signal_keys])
    for key in signal_keys:
        frame[key] = pd.to_numeric(frame[key], errors="coerce").astype(float)
    return frame


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    """Rows as dicts with SQL NULL (None) for every missing value (NaN would be stored as NaN)."""
    subset = frame[columns].astype(object)
    subset = subset.where(subset.notna(), None)
    return subset.to_dict("records")


# What a write reports about the rows it replaced, for the dashboard summary: "fresh" (the
# frame's dates had no rows of its model version), the replaced rows' accounts and ARR per
# (model_version, as_of_date, segment, zone) - see _zone_totals - or None (not known).
SUMMARY_SOURCE = ["model_version", "as_of_date", "account_key", "segment", "zone", "arr", "delta_30"]
_FRESH = "fresh"
Replaced = pd.DataFrame | str | None


def _pg_write(conn: Connection, table, frame: pd.DataFrame, names: list[str], stamp: datetime,
              totals: bool = False) -> Replaced:
    """PostgreSQL: bulk upsert through binary COPY (``warehouse.io``), in the caller's transaction.

    * None of the frame's (date, model version) pairs has rows yet - a date scored for the
      first time, the daily case: the rows are COPYed straight into the table
      (``io.copy_new_rows``). Returns "fresh".
    * Rows exist and the frame has every column - a re-run, a retry, a refresh of a few
      accounts: the frame's keys are deleted and its rows COPYed in (a delete and an append
      per row instead of ON CONFLICT's probe, update and second index entry). Returns the
      deleted rows' totals with ``totals`` (else None).
    * Either way inside a savepoint: should a concurrent writer have added one of the keys
      meanwhile, the unique index refuses the COPY, the savepoint is rolled back and the
      general path runs: ``io.upsert_rows`` (also the path of a frame with only some of the
      columns, whose other columns keep their stored values). Returns None.

    All of them leave the same rows as a row-by-row upsert would.
    """
    import psycopg2.errors

    frame = in_key_order(frame[names], table)
    constants = {"computed_at": stamp}
    complete = {c.name for c in table.columns} == {*names, "computed_at"}
    existing = not _indexed_by_date(table) or _has_rows_for(conn, table, frame)
    if not existing or (complete and _keyed_by_date(table)):
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute("SAVEPOINT bulk_copy")
            try:
                replaced = _delete_keys(conn, cursor, table, frame, totals) if existing else _FRESH
                copy_new_rows(conn, table, frame, constants=constants)
                cursor.execute("RELEASE SAVEPOINT bulk_copy")
                return replaced
            except psycopg2.errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT bulk_copy")
        finally:
            cursor.close()
    upsert_rows(conn, table, frame, constants=constants)
    return None


def _keyed_by_date(table) -> bool:
    """Whether the primary key is (one key column, as_of_date, model_version)."""
    pk = [c.name for c in table.primary_key.columns]
    return len(pk) == 3 and {"as_of_date", "model_version"} <= set(pk)


_FEW_KEYS = 20_000  # up to this many keys of a date are deleted by primary-key probes


def _delete_keys(conn: Connection, cursor, table, frame: pd.DataFrame, totals: bool) -> pd.DataFrame | None:
    """Delete the stored rows with the frame's keys (one statement per date and model version).

    With ``totals``, the deleted rows' accounts and ARR per (model_version, as_of_date, segment,
    zone), aggregated by the server from the DELETE's RETURNING (hashed: a date written in this
    transaction has no statistics to plan a sort by).
    """
    prep = conn.dialect.identifier_preparer
    key = next(c.name for c in table.primary_key.columns if c.name not in ("as_of_date", "model_version"))
    target, quoted = prep.format_table(table), prep.quote(key)
    # Many keys: the date's rows through the date index, each checked against the hashed key
    # array. A few keys (a refresh): one primary-key probe each - written as a join on columns
    # behind OFFSET 0, so that no plan can scan the whole date instead (a date written minutes
    # ago has no statistics yet, and the planner would take it for a few rows).
    many = (
        f"DELETE FROM {target} WHERE as_of_date = %(day)s AND model_version = %(version)s "
        f"AND {quoted} = ANY(%(keys)s::text[])"
    )
    few = (
        f"DELETE FROM {target} t USING (SELECT UNNEST(%(keys)s::text[]) AS k, %(day)s::date AS d, "
        f"%(version)s::text AS v OFFSET 0) keys WHERE t.{quoted} = keys.k AND t.as_of_date = keys.d "
        "AND t.model_version = keys.v"
    )
    if totals:
        setting = None
        aggregate = (
            " RETURNING segment, zone, arr) SELECT %(version)s, %(day)s, COALESCE(segment, ''), zone, COUNT(*), "
            "COALESCE(SUM(arr), 0) FROM gone GROUP BY COALESCE(segment, ''), zone"
        )
        many, few = f"WITH gone AS ({many}{aggregate}", f"WITH gone AS ({few}{aggregate}"
        cursor.execute("SELECT current_setting('enable_sort'), set_config('enable_sort', 'off', true)")
        setting = cursor.fetchone()[0]
    rows: list[tuple] = []
    for (day, version), keys in frame.groupby(["as_of_date", "model_version"], sort=False)[key]:
        params = {"day": as_date(day), "version": version, "keys": text_array(keys)}
        cursor.execute(few if len(keys) <= _FEW_KEYS else many, params)
        if totals:
            rows.extend(cursor.fetchall())
    if not totals:
        return None
    cursor.execute("SELECT set_config('enable_sort', %s, true)", (setting,))
    return pd.DataFrame(rows, columns=["model_version", "as_of_date", "segment", "zone", "accounts", "arr"])


def _indexed_by_date(table) -> bool:
    """Whether the primary key or an index of ``table`` leads with as_of_date/model_version (a
    cheap existence check)."""
    if {c.name for c in list(table.primary_key.columns)[:2]} == {"as_of_date", "model_version"}:
        return True
    for index in table.indexes:
        lead = [c.name for c in index.columns][:2]
        if set(lead) == {"as_of_date", "model_version"} and index.dialect_options["postgresql"].get("where") is None:
            return True
    return False


def _has_rows_for(conn: Connection, table, frame: pd.DataFrame) -> bool:
    """Whether ``table`` holds any row of the frame's (as_of_date, model_version) pairs."""
    pairs = frame[["as_of_date", "model_version"]].drop_duplicates()
    clauses = [
        (table.c.as_of_date == as_date(d)) & (table.c.model_version == v)
        for d, v in pairs.itertuples(index=False)
    ]
    return conn.execute(select(table.c.as_of_date).where(or_(*clauses)).limit(1)).first() is not None


def _write_frame(target: Engine | Connection, table, frame: pd.DataFrame, totals: bool = False) -> tuple[int, Replaced]:
    """Upsert the frame's columns of ``table`` (plus a fresh ``computed_at``) by primary key.

    Through the warehouse's one write path (``warehouse.io.upsert_rows``), with the
    PostgreSQL shortcuts of ``_pg_write`` for a date's fresh rows and rewrites. Missing
    values are stored as NULL, ``computed_at`` stamped once for the batch. Returns the rows
    written and what they replaced (see ``_pg_write``; None: not known).
    """
    names = [c.name for c in table.columns if c.name in frame.columns and c.name != "computed_at"]
    if frame.empty:
        return 0, None
    if not isinstance(target, Connection):
        with target.begin() as conn:
            return _write_frame(conn, table, frame, totals)
    stamp = utcnow()
    if target.dialect.name == "postgresql" and target.dialect.driver == "psycopg2":
        return len(frame), _pg_write(target, table, frame, names, stamp, totals)
    return upsert_rows(target, table, frame[names], constants={"computed_at": stamp}), None


def write_scores(target: Engine | Connection, frame: pd.DataFrame) -> int:
    """Upsert a scored frame into ``health_scores``; returns the number of rows written.

    ``target`` is an engine (own transaction) or a connection (the caller's transaction).
    The frame carries (at least) every non-nullable column of the table except
    ``computed_at``, which is stamped here. A million rows go in one bulk write (see
    ``_write_frame``), not row by row. In the same transaction the dashboard's summary of
    every (model version, date) written is brought up to date (see ``refresh_score_summary``):
    from the frame and the rows it replaced when the write knows them, else recomputed.
    """
    if frame.empty:
        return 0
    if not isinstance(target, Connection):
        with target.begin() as conn:
            return write_scores(conn, frame)
    _lock_score_writes(target)
    summarized = all(c in frame.columns for c in SUMMARY_SOURCE)
    written, replaced = _write_frame(target, health_scores, frame, totals=summarized)
    # Episodes follow one date at a time; a frame of several dates of a version (a bulk load)
    # has them recomputed instead.
    dates = frame.groupby("model_version")["as_of_date"].nunique()
    recompute = set(dates[dates > 1].index)
    for (version, day), new in frame.groupby(["model_version", "as_of_date"], sort=False):
        day = as_date(day)
        if replaced is None or not summarized:
            _refresh_summary(target, [(version, day)])
        else:
            old = None
            if not isinstance(replaced, str):
                mine = (replaced["model_version"] == version) & (replaced["as_of_date"].map(as_date) == day)
                old = replaced[mine].set_index(["segment", "zone"])[["accounts", "arr"]]
            _update_summary(target, version, day, new, old)
        if version in recompute:
            continue
        if "previous_zone" not in new.columns or not _update_episodes(target, version, day, new, isinstance(replaced, str)):
            recompute.add(version)
    for version in sorted(recompute):
        _recompute_episodes(target, version)
    return written


def write_rollups(target: Engine | Connection, rollups: pd.DataFrame) -> int:
    """Upsert parent rollups into ``health_score_rollups``; returns the number of rows."""
    return _write_frame(target, health_score_rollups, rollups)[0]


def remove_stale_scores(conn: Connection, model_version: str, day: date, scored: Iterable[str], parents: Iterable[str]) -> int:
    """Delete ``model_version``'s rows of ``day`` for accounts (and parents) this run did not score.

    A re-run of a date replaces what the earlier run wrote: an account scored then and without
    informative data now (its data was deleted or quarantined at the source) must not keep the
    earlier score - it would stay on the dashboard and drive actions. Upserts alone leave it, so
    after a date's scores are written the others are removed, and the date's summary and the
    version's episodes are recomputed when any was. Returns the number of score rows removed.
    A re-run that scored no account at all removes nothing and raises: that is the sources
    failing, not every account losing its data.
    """
    hs, ru = health_scores.c, health_score_rollups.c
    keep, keep_parents = set(scored), set(parents)
    stored = conn.execute(select(hs.account_key).where(hs.model_version == model_version, hs.as_of_date == day)).scalars()
    stale = sorted(set(stored) - keep)
    stored_parents = conn.execute(
        select(ru.parent_account_key).where(ru.model_version == model_version, ru.as_of_date == day)
    ).scalars()
    stale_parents = sorted(set(stored_parents) - keep_parents)
    if stale and not keep:
        raise ValueError(
            f"the re-run of {day} ({model_version}) scored no account, but {len(stale)} were scored before: not "
            "removing them - a run without a single account with data points at the sources (an empty "
            "extraction, a disconnected system), not at the accounts; check the extraction tasks' reports"
        )
    for start in range(0, len(stale_parents), _KEY_CHUNK):
        conn.execute(health_score_rollups.delete().where(
            ru.model_version == model_version, ru.as_of_date == day, ru.parent_account_key.in_(stale_parents[start : start + _KEY_CHUNK])
        ))  # fmt: skip
    if not stale:
        return 0
    _lock_score_writes(conn)
    for start in range(0, len(stale), _KEY_CHUNK):
        conn.execute(health_scores.delete().where(
            hs.model_version == model_version, hs.as_of_date == day, hs.account_key.in_(stale[start : start + _KEY_CHUNK])
        ))  # fmt: skip
    _refresh_summary(conn, [(model_version, day)])
    _recompute_episodes(conn, model_version)
    return len(stale)


# --------------------------------------------------------------------------- dashboard summary
# How many of the biggest declines and recoveries health_score_movers keeps per (version, date):
# the trending page's largest ``limit``.
MOVERS_KEPT = 200

_SCORE_WRITES_LOCK = "customer_health.health_scores.write"
_DIRECTIONS = ("decline", "recovery")


def _lock_score_writes(conn: Connection) -> None:
    """PostgreSQL: serialize the transactions that write scores (held until commit).

    A write reads what it replaces and the summary it updates, so two writers of the same
    date must not interleave. (Daily and refresh runs are already serialized by the Airflow
    pool ``customer_health_scoring``; this also covers manual and concurrent shard writes.)
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(_SCORE_WRITES_LOCK))))


def refresh_score_summary(
    target: Engine | Connection, pairs: Iterable[tuple[str, date]] | None = None, *, episodes: bool = True
) -> int:
    """Recompute the dashboard's derived tables from ``health_scores``: health_score_summary and
    health_score_movers of ``pairs``, and health_score_episodes of their model versions.

    ``pairs``: the (model_version, as_of_date) pairs written; None recomputes everything (a
    repair, or after a bulk load that bypassed ``write_scores``). Call it in the transaction
    that wrote the scores, after writing them, whenever scores are written other than through
    ``write_scores`` (which keeps the tables itself): the derived tables must always equal a
    recomputation from the scores. Returns the summary rows written.

    Cost: one pass over each pair's scores for the summary, one top-N pass per direction for
    the movers (~1 s of server time per million scores), and one pass over each version's
    zone changes for the episodes.
    """
    if not isinstance(target, Connection):
        with target.begin() as conn:
            return refresh_score_summary(conn, pairs, episodes=episodes)
    _lock_score_writes(target)
    if pairs is None and episodes:
        target.execute(health_score_episodes.delete())
    written, pairs = _refresh_summary(target, pairs)
    if episodes:
        for version in sorted({v for v, _ in pairs}):
            _recompute_episodes(target, version)
    return written


def scored_dates(conn: Connection, model_version: str, first: date, last: date) -> set[date]:
    """The dates ``first`` .. ``last`` that hold scores of ``model_version`` (read from the summary)."""
    return set(scored_dates_desc(conn, model_version, last, first))


def scored_dates_desc(conn: Connection, model_version: str, last: date, first: date | None = None) -> list[date]:
    """The dates ``first`` (or the first ever) .. ``last`` that hold scores of ``model_version``,
    newest first (read from the summary: ~50 rows a date, not the date's scores)."""
    sm = health_score_summary.c
    where = [sm.model_version == model_version, sm.as_of_date <= last]
    if first is not None:
        where.append(sm.as_of_date >= first)
    rows = conn.execute(select(sm.as_of_date).distinct().where(*where).order_by(sm.as_of_date.desc()))
    return [as_date(r[0]) for r in rows]


_DATES_PER_PROBE = 31


def account_scores(
    conn: Connection, model_version: str, keys: Sequence[str], dates: Sequence[date], columns: Sequence[Any]
) -> list[Any]:
    """The stored scores (``columns`` of health_scores) of ``keys`` on ``dates`` of ``model_version``.

    health_scores is keyed by (model_version, as_of_date, account_key): a few accounts' rows
    are found by one index descent per (date, account) - the dates named, never a scan of
    the table for the accounts.
    """
    hs = health_scores.c
    rows: list[Any] = []
    for start in range(0, len(dates), _DATES_PER_PROBE):
        days = list(dates[start : start + _DATES_PER_PROBE])
        for first in range(0, len(keys), _KEY_CHUNK):
            chunk = list(keys[first : first + _KEY_CHUNK])
            where = [hs.model_version == model_version, hs.as_of_date.in_(days), hs.account_key.in_(chunk)]
            rows.extend(conn.execute(select(*columns).where(*where)))
    return rows


def latest_account_scores(
    conn: Connection, model_version: str, keys: Sequence[str], as_of: date, columns: Sequence[Any]
) -> dict[str, Any]:
    """Each of ``keys``' latest stored score of ``model_version`` on or before ``as_of``.

    ``columns`` must include health_scores' account_key and as_of_date. The scored dates are
    probed newest first - the newest alone, then a month at a time - until every account is
    found or the dates run out (an account never scored is absent from the result).
    """
    hs = health_scores.c
    names = [c.name for c in columns]
    key_at, day_at = names.index(hs.account_key.name), names.index(hs.as_of_date.name)
    dates = scored_dates_desc(conn, model_version, as_of)
    found: dict[str, Any] = {}
    remaining = list(dict.fromkeys(keys))
    start, step = 0, 1
    while remaining and start < len(dates):
        for row in account_scores(conn, model_version, remaining, dates[start : start + step], columns):
            key = row[key_at]
            if key not in found or as_date(row[day_at]) > as_date(found[key][day_at]):
                found[key] = row
        remaining = [k for k in remaining if k not in found]
        start, step = start + step, _DATES_PER_PROBE
    return found


def summarize_bulk_write(conn: Connection, frame: pd.DataFrame, stored_before: set[tuple[str, date]]) -> None:
    """Bring the summary and movers up to date after a bulk writer upserted ``frame``.

    For writers that bypass ``write_scores`` (the rebuild), in their transaction, after the
    write. ``stored_before``: the frame's (model version, date) pairs that held scores before
    it (``scored_dates``). A pair that did not is summarized from the frame itself - its rows
    are the date's only rows - instead of re-reading the date from health_scores.
    """
    _lock_score_writes(conn)
    columns = [c for c in SUMMARY_SOURCE if c in frame.columns]
    complete = len(columns) == len(SUMMARY_SOURCE)
    for (version, day), new in frame.groupby(["model_version", "as_of_date"], sort=True):
        day = as_date(day)
        if complete and (version, day) not in stored_before:
            _update_summary(conn, version, day, new[columns], None)
        else:
            _refresh_summary(conn, [(version, day)])


def refresh_score_episodes(target: Engine | Connection, model_version: str) -> None:
    """Recompute ``model_version``'s At Risk episodes from its stored zone changes.

    For a bulk writer of many dates (the rebuild), which refreshes the summary of each chunk of
    dates it writes with ``refresh_score_summary(..., episodes=False)`` and the episodes, which
    span dates, once when its last chunk is written.
    """
    if not isinstance(target, Connection):
        with target.begin() as conn:
            return refresh_score_episodes(conn, model_version)
    _lock_score_writes(target)
    _recompute_episodes(target, model_version)


def _refresh_summary(conn: Connection, pairs: Iterable[tuple[str, date]] | None) -> tuple[int, list[tuple[str, date]]]:
    """Recompute the summary and the movers of ``pairs`` (None: of every stored pair)."""
    hs, sm, mv = health_scores.c, health_score_summary, health_score_movers
    segment = func.coalesce(hs.segment, "")
    grouped = select(
        hs.model_version, hs.as_of_date, segment, hs.zone, func.count(), func.coalesce(func.sum(hs.arr), 0.0)
    ).group_by(hs.model_version, hs.as_of_date, segment, hs.zone)
    columns = ["model_version", "as_of_date", "segment", "zone", "accounts", "arr"]
    sort_setting = None
    if conn.dialect.name == "postgresql":
        # A date written in this transaction has no statistics yet: the planner would expect a
        # few rows and sort a million to group them. There are ~50 groups: hash them.
        sort_setting = conn.execute(select(func.current_setting("enable_sort"))).scalar_one()
        conn.execute(select(func.set_config("enable_sort", "off", True)))
    try:
        if pairs is None:
            conn.execute(sm.delete())
            conn.execute(mv.delete())
            written = conn.execute(sm.insert().from_select(columns, grouped)).rowcount
            pairs = [tuple(r) for r in conn.execute(select(sm.c.model_version, sm.c.as_of_date).distinct())]
        else:
            pairs = sorted({(v, as_date(d)) for v, d in pairs})
            written = 0
            for version, day in pairs:
                conn.execute(sm.delete().where(sm.c.model_version == version, sm.c.as_of_date == day))
                one = grouped.where(hs.model_version == version, hs.as_of_date == day)
                written += conn.execute(sm.insert().from_select(columns, one)).rowcount
    finally:
        if sort_setting is not None:
            conn.execute(select(func.set_config("enable_sort", sort_setting, True)))
    for version, day in pairs:
        for direction in _DIRECTIONS:
            _store_movers(conn, version, day, direction, _scan_movers(conn, version, day, direction))
    return written, [(v, as_date(d)) for v, d in pairs]


def _key_order(conn: Connection, column):
    """``column`` ordered by code point (Python's string order) in the warehouse's SQL."""
    return column.collate("C") if conn.dialect.name == "postgresql" else column


def _scan_movers(conn: Connection, version: str, day: Any, direction: str) -> pd.DataFrame:
    """The top ``MOVERS_KEPT`` of one direction of (version, date), read from health_scores."""
    hs = health_scores.c
    stmt = select(hs.account_key, hs.delta_30).where(hs.model_version == version, hs.as_of_date == day)
    if direction == "decline":
        stmt = stmt.where(hs.delta_30 < 0).order_by(hs.delta_30.asc(), _key_order(conn, hs.account_key))
    else:
        stmt = stmt.where(hs.delta_30 > 0).order_by(hs.delta_30.desc(), _key_order(conn, hs.account_key))
    rows = conn.execute(stmt.limit(MOVERS_KEPT)).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=["account_key", "delta_30"])


def _ranked(rows: pd.DataFrame, direction: str, limit: int | None = None) -> pd.DataFrame:
    """``rows`` (account_key, delta_30) of one direction, ranked as trending ranks them."""
    delta = pd.to_numeric(rows["delta_30"]).to_numpy(dtype=float, na_value=np.nan)
    keep = delta < 0 if direction == "decline" else delta > 0
    rows = rows.loc[keep, ["account_key", "delta_30"]].assign(delta_30=delta[keep])
    magnitude = rows["delta_30"].abs()
    if limit is not None and len(rows) > limit:  # ties at the cut stay in, to be ordered by key
        cut = np.partition(magnitude.to_numpy(), len(rows) - limit)[len(rows) - limit]
        rows, magnitude = rows[magnitude >= cut], magnitude[magnitude >= cut]
    ordered = rows.assign(_m=-magnitude).sort_values(["_m", "account_key"], kind="stable").drop(columns="_m")
    return (ordered if limit is None else ordered.head(limit)).reset_index(drop=True)


def _store_movers(conn: Connection, version: str, day: date, direction: str, ranked: pd.DataFrame) -> None:
    mv = health_score_movers
    conn.execute(mv.delete().where(mv.c.model_version == version, mv.c.as_of_date == day, mv.c.direction == direction))
    if len(ranked):
        conn.execute(mv.insert(), [
            {"model_version": version, "as_of_date": day, "direction": direction, "rank": rank,
             "account_key": key, "delta_30": float(delta)}
            for rank, (key, delta) in enumerate(ranked[["account_key", "delta_30"]].itertuples(index=False), start=1)
        ])  # fmt: skip


def _zone_totals(rows: pd.DataFrame) -> pd.DataFrame:
    """Accounts and ARR per (segment, zone) of score rows."""
    if rows.empty:
        return pd.DataFrame(columns=["accounts", "arr"], index=pd.MultiIndex.from_tuples([], names=["segment", "zone"]))
    keyed = pd.DataFrame({
        "segment": rows["segment"].astype(object).where(rows["segment"].notna(), ""),
        "zone": rows["zone"].astype(object),
        "arr": pd.to_numeric(rows["arr"]).astype(float).fillna(0.0),
    })  # fmt: skip
    return keyed.groupby(["segment", "zone"]).agg(accounts=("arr", "size"), arr=("arr", "sum"))


def _update_summary(conn: Connection, version: str, day: date, new: pd.DataFrame, old: pd.DataFrame | None) -> None:
    """Bring one (version, date) of the summary and movers up to date after a write.

    ``new``: the rows written (they replaced the stored rows of the same accounts, if any);
    ``old``: the replaced rows' totals (``_zone_totals``), or None when the date had no rows of
    this version before (the summary is then the new rows' alone). Exact: the summary's counts
    are added and taken away; the movers are re-ranked from the stored list less the rewritten
    accounts plus the new rows, and re-read from health_scores only when that list could miss
    an account (see ``_merged_movers``).
    """
    sm = health_score_summary
    where = (sm.c.model_version == version, sm.c.as_of_date == day)
    totals = _zone_totals(new)
    if old is not None:
        stored = pd.DataFrame(
            [tuple(r) for r in conn.execute(select(sm.c.segment, sm.c.zone, sm.c.accounts, sm.c.arr).where(*where))],
            columns=["segment", "zone", "accounts", "arr"],
        ).set_index(["segment", "zone"])
        totals = stored.add(totals, fill_value=0).sub(old, fill_value=0)
        totals = totals[totals["accounts"] > 0]
    conn.execute(sm.delete().where(*where))
    if len(totals):
        conn.execute(sm.insert(), [
            {"model_version": version, "as_of_date": day, "segment": seg, "zone": zone,
             "accounts": int(row.accounts), "arr": float(row.arr)}
            for (seg, zone), row in totals.iterrows()
        ])  # fmt: skip
    for direction in _DIRECTIONS:
        if old is None:
            ranked = _ranked(new, direction, MOVERS_KEPT)
        else:
            ranked = _merged_movers(conn, version, day, direction, new)
        _store_movers(conn, version, day, direction, ranked)


def _merged_movers(conn: Connection, version: str, day: date, direction: str, new: pd.DataFrame) -> pd.DataFrame:
    """The movers of one direction after a write that replaced the stored rows of ``new``'s accounts.

    The stored list is the exact top ``MOVERS_KEPT`` (or every candidate, when shorter). Every
    account outside it ranks below the list's last entry as it was, and an account that was
    not rewritten keeps its rank; so in the merged ranking (stored list less the rewritten
    accounts, plus the new rows) every candidate ranked up to that old last entry is exactly
    placed. When fewer than ``MOVERS_KEPT`` are, the movers are re-read from health_scores.
    """
    mv = health_score_movers.c
    stored = pd.DataFrame(
        [tuple(r) for r in conn.execute(
            select(mv.account_key, mv.delta_30)
            .where(mv.model_version == version, mv.as_of_date == day, mv.direction == direction)
            .order_by(mv.rank)
        )],
        columns=["account_key", "delta_30"],
    )  # fmt: skip
    new_keys = new["account_key"]
    rewritten = set(new_keys[new_keys.isin(stored["account_key"])])  # hashes the short list, not the frame
    kept = stored[~stored["account_key"].isin(rewritten)]
    merged = _ranked(pd.concat([kept, new[["account_key", "delta_30"]]], ignore_index=True), direction, MOVERS_KEPT)
    if len(stored) < MOVERS_KEPT:  # the stored list held every candidate of the date
        return merged
    last = stored.iloc[-1]
    sign = 1.0 if direction == "decline" else -1.0
    bound = (sign * float(last["delta_30"]), last["account_key"])
    placed = sum(1 for delta, key in zip(merged["delta_30"], merged["account_key"], strict=True)
                 if (sign * float(delta), key) <= bound)  # fmt: skip
    if placed >= MOVERS_KEPT:
        return merged
    return _scan_movers(conn, version, day, direction)


# --------------------------------------------------------------------------- At Risk episodes
# The zone names are fixed by the design (DESIGN.md, decision 8).
RISK_ZONES = ("At Risk", "Critical")
SAFE_ZONES = ("Healthy", "Neutral")
_KEY_CHUNK = 5_000  # keys per IN list where the warehouse has no array parameters (SQLite)


def _recompute_episodes(conn: Connection, version: str) -> None:
    """Every At Risk episode of ``version``, from its zone changes (ix_health_scores_zone_changes).

    An episode starts on a score whose zone is At Risk or Critical after a Healthy or Neutral
    previous zone, and ends on the account's next score that changes into Healthy or Neutral.
    """
    hs, ep = health_scores.c, health_score_episodes
    later = health_scores.alias("later")
    recovered_on = (
        select(func.min(later.c.as_of_date))
        .where(
            later.c.model_version == hs.model_version,
            later.c.account_key == hs.account_key,
            later.c.as_of_date > hs.as_of_date,
            later.c.zone != later.c.previous_zone,
            later.c.zone.in_(SAFE_ZONES),
        )
        .scalar_subquery()
    )
    entries = select(hs.model_version, hs.account_key, hs.as_of_date, recovered_on).where(
        hs.model_version == version, hs.zone != hs.previous_zone, hs.zone.in_(RISK_ZONES), hs.previous_zone.in_(SAFE_ZONES)
    )
    conn.execute(ep.delete().where(ep.c.model_version == version))
    conn.execute(ep.insert().from_select(["model_version", "account_key", "started", "recovered_on"], entries))


def _key_conditions(conn: Connection, keys: Sequence[str]) -> list[Any]:
    """``health_score_episodes.account_key`` in ``keys``: one condition with an array parameter
    on PostgreSQL, IN lists of ``_KEY_CHUNK`` elsewhere (SQLite)."""
    column = health_score_episodes.c.account_key
    if not keys:
        return []
    if conn.dialect.name == "postgresql":
        return [column == any_(_pg_text_array(keys))]
    return [column.in_(list(keys[start : start + _KEY_CHUNK])) for start in range(0, len(keys), _KEY_CHUNK)]


def _pg_text_array(keys: Sequence[str]) -> Any:
    """``keys`` as one bound ``text[]`` literal (see ``io.text_array``: not an element per key)."""
    return cast(bindparam("keys", text_array(keys), type_=Text), ARRAY(Text))


def _for_keys(conn: Connection, keys: Sequence[str], statement: Callable[[Any], Any]) -> None:
    """Run ``statement(condition)`` for every condition of ``_key_conditions``."""
    for condition in _key_conditions(conn, keys):
        conn.execute(statement(condition))


def _update_episodes(conn: Connection, version: str, day: date, new: pd.DataFrame, fresh: bool) -> bool:
    """Bring the episodes up to date after ``new`` (rows of ``day``) replaced its accounts' rows.

    Exact when ``day`` is the version's latest scored date (the daily run, its re-runs and
    refreshes): no later score depends on it, so the replaced rows' effects are undone (an
    episode that started on ``day`` is dropped, one that ended on ``day`` reopens) and the
    new rows' applied (an entry opens an episode, a recovery ends the open ones). Returns
    False when ``day`` is an earlier date: the caller recomputes the version's episodes.
    """
    sm, ep = health_score_summary.c, health_score_episodes
    latest = conn.execute(select(func.max(sm.as_of_date)).where(sm.model_version == version)).scalar()
    if latest is not None and as_date(latest) > day:
        return False
    mine = ep.c.model_version == version
    if not fresh:
        keys = set(new["account_key"])
        on_day = select(ep.c.account_key, ep.c.started).where(mine, or_(ep.c.started == day, ep.c.recovered_on == day))
        if len(keys) <= _FEW_KEYS:  # a refresh: the accounts' own episodes, by primary key
            touched = [row for c in _key_conditions(conn, sorted(keys)) for row in conn.execute(on_day.where(c))]
        else:
            touched = conn.execute(on_day).all()
        began = [k for k, started in touched if k in keys and as_date(started) == day]
        ended = [k for k, started in touched if k in keys and as_date(started) != day]
        _for_keys(conn, began, lambda chosen: ep.delete().where(mine, ep.c.started == day, chosen))
        _for_keys(conn, ended, lambda chosen: ep.update().where(mine, ep.c.recovered_on == day, chosen)
                  .values(recovered_on=None))  # fmt: skip
    zone, previous = new["zone"].astype(object), new["previous_zone"].astype(object)
    changed = previous.notna() & (zone != previous)
    recovered = new.loc[changed & zone.isin(SAFE_ZONES), "account_key"].tolist()
    entered = new.loc[changed & zone.isin(RISK_ZONES) & previous.isin(SAFE_ZONES), "account_key"].tolist()
    _for_keys(conn, recovered, lambda chosen: ep.update().where(
        mine, ep.c.recovered_on.is_(None), ep.c.started < day, chosen).values(recovered_on=day))  # fmt: skip
    if entered:
        if conn.dialect.name == "postgresql":
            keys = _pg_text_array(entered)
            conn.execute(ep.insert().from_select(
                ["model_version", "account_key", "started"],
                select(literal(version), func.unnest(keys), literal(day, Date)),
            ))  # fmt: skip
        else:
            conn.execute(ep.insert(), [{"model_version": version, "account_key": k, "started": day} for k in entered])
    return True


def read_scores(engine: Engine, as_of: date, model_version: str) -> pd.DataFrame:
    """All stored scores of one date and model version (for reports and tests)."""
    stmt = select(health_scores).where(
        health_scores.c.as_of_date == as_of, health_scores.c.model_version == model_version
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=[c.name for c in health_scores.columns])
