"""A date's whole scoring input, stored and read back: account context plus signal values.

The signals step writes, for each as-of date and account, one ``signal_values`` row: who the
account was (plan, seats, ARR, tenure, parent, owner) and the raw value of every defined
signal (the table's signal columns are the definitions' keys, ``warehouse/schema.py``). The scoring step reads it back as the exact frame ``compute_signals`` returned, so
signals can be computed in account shards (mapped tasks) while scoring normalizes against the
baseline of the whole population, and a rebuild, an audit and a refresh score from the same
stored input as the daily run. Writes are bulk upserts (``warehouse.io.upsert_rows``): a re-run or a
retried shard overwrites its rows, never duplicates them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, String, and_, delete, select, type_coerce

from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.scoring.signal_engine import ACCOUNT_COLUMNS
from customer_health.warehouse.io import as_date, encoded_column, upsert_rows
from customer_health.warehouse.schema import signal_values

CONTEXT_COLUMNS = ACCOUNT_COLUMNS[2:]
"""Who the account was that day: the frame's columns between its keys and its signals."""
INPUT_COLUMNS = ("account_key", "as_of_date", *CONTEXT_COLUMNS, *SIGNALS)
"""The columns of a ``compute_signals`` frame, in order (what ``read_signal_frame`` returns)."""
_SQL_KEY_LIMIT = 10_000
_FLOAT_COLUMNS = frozenset(SIGNALS)


def _signal_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in SIGNALS if c in frame.columns]


def input_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """A ``compute_signals`` frame (any number of dates) as ``signal_values`` rows.

    ``account_key`` and ``as_of_date`` are required, and at least one signal; a context column
    the frame lacks is stored as NULL.
    """
    missing = [c for c in ("account_key", "as_of_date") if c not in frame.columns]
    if missing:
        raise ValueError(f"signal input: frame lacks column(s) {missing}; store the frame compute_signals returned")
    signals = _signal_columns(frame)
    if not signals:
        raise ValueError(f"signal input: frame has no signal columns; expected some of {list(SIGNALS)}")
    context = [c for c in CONTEXT_COLUMNS if c in frame.columns]
    rows = frame[["as_of_date", "account_key", *context, *signals]].copy()
    rows["account_key"] = rows["account_key"].astype(str)
    distinct = {d: as_date(d) for d in rows["as_of_date"].unique()}
    rows["as_of_date"] = rows["as_of_date"].map(distinct)
    if "tenure_days" in rows.columns:
        rows["tenure_days"] = rows["tenure_days"].astype(object)
    return rows


def write_signal_frame(
    target: Engine | Connection, frame: pd.DataFrame, *, replace_date: bool = False
) -> int:
    """Store a ``compute_signals`` frame (context + values); returns the account rows written.

    With ``replace_date`` the frame's dates are cleared first (a full, unsharded recompute);
    otherwise rows are upserted, so shards of one date never erase each other.
    """
    if frame.empty:
        return 0
    rows = input_rows(frame)
    if isinstance(target, Connection):
        return _write(target, rows, replace_date)
    with target.begin() as conn:
        return _write(conn, rows, replace_date)


def _write(conn: Connection, rows: pd.DataFrame, replace_date: bool) -> int:
    if replace_date:
        for day in sorted(set(rows["as_of_date"])):
            conn.execute(delete(signal_values).where(signal_values.c.as_of_date == day))
    return upsert_rows(conn, signal_values, rows)


def clear_signal_input(engine: Engine, first: date, last: date, accounts: Sequence[str] | None = None) -> int:
    """Delete the stored input of ``first`` .. ``last`` (of ``accounts`` only, if given)."""
    in_range = and_(signal_values.c.as_of_date >= first, signal_values.c.as_of_date <= last)
    removed = 0
    with engine.begin() as conn:
        if accounts is None:
            return conn.execute(delete(signal_values).where(in_range)).rowcount
        keys = sorted(set(accounts))
        for start in range(0, len(keys), _SQL_KEY_LIMIT):
            part = keys[start : start + _SQL_KEY_LIMIT]
            removed += conn.execute(delete(signal_values).where(in_range, signal_values.c.account_key.in_(part))).rowcount
    return removed


def _fetch(conn: Connection, first: date, last: date, account_keys: Sequence[str] | None) -> pd.DataFrame:
    """The stored rows of the range as a frame of objects, column by column.

    On SQLite dates come back as their ISO text (parsed once per distinct value below rather
    than per row by SQLAlchemy).
    """
    t = signal_values.c
    columns = [
        type_coerce(c, String).label(c.name) if c.name in ("as_of_date", "customer_since") and conn.dialect.name == "sqlite" else c
        for c in signal_values.columns
    ]  # fmt: skip
    stmt = select(*columns).where(t.as_of_date.between(first, last)).order_by(t.as_of_date, t.account_key)
    parts = []
    keys = None if account_keys is None else sorted(set(account_keys))
    chunks = [None] if keys is None else [keys[i : i + _SQL_KEY_LIMIT] for i in range(0, len(keys), _SQL_KEY_LIMIT)]
    for chunk in chunks:
        query = stmt if chunk is None else stmt.where(t.account_key.in_(chunk))
        result = conn.execute(query)
        names = list(result.keys())
        rows = result.cursor.fetchall() if result.cursor is not None else []  # driver rows, unprocessed
        result.close()
        data = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        parts.append(
            pd.DataFrame(
                {
                    n: np.array(v, dtype=float) if n in _FLOAT_COLUMNS else pd.Series(v, dtype=object)
                    for n, v in zip(names, data, strict=True)
                }
            )
        )
    if len(parts) == 1:
        return parts[0]
    both = pd.concat(parts, ignore_index=True)
    return both.sort_values(["as_of_date", "account_key"], kind="stable").reset_index(drop=True)


def _as_input(raw: pd.DataFrame) -> pd.DataFrame:
    """Stored rows (sorted by date, account) -> the ``compute_signals`` frame (columns, dtypes)."""
    frame = raw.copy()
    frame["as_of_date"] = frame["as_of_date"].map({d: as_date(d) for d in frame["as_of_date"].unique()})
    since = frame["customer_since"]
    distinct = {d: as_date(d) for d in since.dropna().unique()}
    frame["customer_since"] = since.map(lambda v: distinct.get(v) if v is not None and v == v else None)
    for col in ("seats", "arr", "tenure_days"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame[list(INPUT_COLUMNS)]


def as_stored(frame: pd.DataFrame, dialect: str) -> dict[date, pd.DataFrame]:
    """A ``compute_signals`` frame (any number of dates) exactly as ``read_signal_frames``
    returns it once ``write_signal_frame`` has stored it, per date, without the round trip.

    The values are those the bulk write hands the driver (``warehouse.io``: the same
    encoding, the same primary-key order), as the database gives them back: a NaN comes back
    NULL, a column the frame lacks is NULL, dates come back as dates. A rebuild that computes
    a date's signals and scores it in one pass scores what the daily run reads back.
    """
    if frame.empty:
        return {}
    rows = input_rows(frame).sort_values(["as_of_date", "account_key"], kind="stable").reset_index(drop=True)
    raw = {}
    for column in signal_values.columns:
        name = column.name
        values = encoded_column(rows[name], column.type, dialect) if name in rows.columns else [None] * len(rows)
        if name in _FLOAT_COLUMNS:
            raw[name] = np.array(values, dtype=float)  # None -> NaN, as _fetch reads a NULL signal
        else:
            stored = pd.Series(values, dtype=object)
            raw[name] = stored.where(stored.notna(), None)  # a bound NaN is stored NULL
    return _per_date(_as_input(pd.DataFrame(raw)))


def _per_date(frame: pd.DataFrame) -> dict[date, pd.DataFrame]:
    """A frame sorted by date, cut into one frame per date."""
    days = frame["as_of_date"].to_numpy()
    bounds = [*np.flatnonzero(np.r_[True, days[1:] != days[:-1]]).tolist(), len(frame)]
    frames = {}
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        part = frame.iloc[start:stop].reset_index(drop=True)
        frames[part["as_of_date"].iloc[0]] = part
    return frames


def read_signal_frames(
    engine: Engine, first: date, last: date, account_keys: Sequence[str] | None = None
) -> dict[date, pd.DataFrame]:
    """The stored scoring input of every date ``first`` .. ``last`` that has one, per date."""
    with engine.connect() as conn:
        raw = _fetch(conn, first, last, account_keys)
    if raw.empty:
        return {}
    return _per_date(_as_input(raw))


def read_signal_frame(engine: Engine, as_of: date, account_keys: Sequence[str] | None = None) -> pd.DataFrame:
    """The stored scoring input of ``as_of``: the frame ``compute_signals`` produced
    (empty, with the same columns, when nothing is stored for that date)."""
    frames = read_signal_frames(engine, as_of, as_of, account_keys)
    if as_of not in frames:
        return pd.DataFrame(columns=list(INPUT_COLUMNS))
    return frames[as_of]


def stored_accounts(engine: Engine, as_of: date) -> int:
    """How many accounts have stored input for ``as_of``."""
    from sqlalchemy import func

    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(signal_values).where(signal_values.c.as_of_date == as_of)
        ).scalar_one()
