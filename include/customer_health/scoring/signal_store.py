"""A date's whole scoring input, stored and read back: signal values plus account context.

The signals step writes, for each as-of date, the raw signal values (``signal_values``, long)
and who each account was (``signal_context``: plan, seats, ARR, tenure, parent, owner). The
scoring step reads both back as the exact frame ``compute_signals`` returned, so signals can be
computed in account shards (mapped tasks) while scoring normalizes against the baseline of the
whole population, and a rebuild scores from the same stored input as the daily run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy import Engine, delete, select

from customer_health.warehouse.io import upsert_rows
from customer_health.warehouse.schema import signal_context, signal_values

CONTEXT_COLUMNS = (
    "plan",
    "seats",
    "arr",
    "customer_since",
    "tenure_days",
    "parent_account_key",
    "owner_id",
)
_CHUNK = 5000


def _signal_columns(frame: pd.DataFrame) -> list[str]:
    from customer_health.scoring.signal_catalog import SIGNALS

    return [c for c in SIGNALS if c in frame.columns]


def _clean(value):
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.date()
    if value is pd.NaT:
        return None
    return value


def write_signal_frame(engine: Engine, frame: pd.DataFrame, *, replace_date: bool = False) -> int:
    """Store a ``compute_signals`` frame (values + context); returns the value rows written.

    With ``replace_date`` the date's previous rows are deleted first (a full, unsharded
    recompute); otherwise rows are upserted, so shards of one date never erase each other.
    """
    if frame.empty:
        return 0
    signals = _signal_columns(frame)
    dates = sorted({pd.Timestamp(d).date() for d in frame["as_of_date"].unique()})
    keys = frame["account_key"].astype(str).to_numpy()
    as_of = [pd.Timestamp(d).date() for d in frame["as_of_date"].to_numpy()]
    context_rows = [
        {"account_key": k, "as_of_date": d} | {c: _clean(v) for c, v in zip(CONTEXT_COLUMNS, vals, strict=True)}
        for k, d, vals in zip(
            keys, as_of, frame[list(CONTEXT_COLUMNS)].itertuples(index=False, name=None), strict=True
        )
    ]
    long = frame[["account_key", "as_of_date", *signals]].melt(
        id_vars=["account_key", "as_of_date"], var_name="signal", value_name="value"
    )
    value_rows = [
        {"account_key": str(k), "as_of_date": pd.Timestamp(d).date(), "signal": s, "value": _clean(v)}
        for k, d, s, v in long.itertuples(index=False, name=None)
    ]
    with engine.begin() as conn:
        if replace_date:
            for d in dates:
                conn.execute(delete(signal_values).where(signal_values.c.as_of_date == d))
                conn.execute(delete(signal_context).where(signal_context.c.as_of_date == d))
        for start in range(0, len(context_rows), _CHUNK):
            upsert_rows(conn, signal_context, context_rows[start : start + _CHUNK])
        for start in range(0, len(value_rows), _CHUNK):
            upsert_rows(conn, signal_values, value_rows[start : start + _CHUNK])
    return len(value_rows)


def read_signal_frame(engine: Engine, as_of: date, account_keys: Sequence[str] | None = None) -> pd.DataFrame:
    """The stored scoring input of ``as_of``: the frame ``compute_signals`` produced."""
    from customer_health.scoring.signal_catalog import SIGNALS

    ctx_q = select(signal_context).where(signal_context.c.as_of_date == as_of)
    val_q = select(signal_values.c.account_key, signal_values.c.signal, signal_values.c.value).where(
        signal_values.c.as_of_date == as_of
    )
    if account_keys is not None:
        ctx_q = ctx_q.where(signal_context.c.account_key.in_(list(account_keys)))
        val_q = val_q.where(signal_values.c.account_key.in_(list(account_keys)))
    with engine.connect() as conn:
        ctx = pd.DataFrame(conn.execute(ctx_q).fetchall(), columns=[c.name for c in signal_context.columns])
        vals = pd.DataFrame(conn.execute(val_q).fetchall(), columns=["account_key", "signal", "value"])
    if ctx.empty:
        return pd.DataFrame(columns=["account_key", "as_of_date", *CONTEXT_COLUMNS, *SIGNALS])
    wide = (
        vals.pivot(index="account_key", columns="signal", values="value")
        if not vals.empty
        else pd.DataFrame(index=pd.Index([], name="account_key"))
    )
    wide = wide.reindex(columns=list(SIGNALS)).astype(float)
    frame = ctx.merge(wide, left_on="account_key", right_index=True, how="left")
    frame["as_of_date"] = as_of
    frame["customer_since"] = pd.to_datetime(frame["customer_since"]).dt.date
    for col in ("seats", "arr", "tenure_days"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame.sort_values("account_key").reset_index(drop=True)[
        ["account_key", "as_of_date", *CONTEXT_COLUMNS, *SIGNALS]
    ]
