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
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, func, select

from customer_health.scoring.model_config import ModelConfig
from customer_health.warehouse.io import upsert_rows, utcnow
from customer_health.warehouse.schema import health_score_rollups, health_scores, signal_values

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
    stmt = select(t.account_key, t.signal, t.value).where(t.as_of_date == day, t.signal.in_(signal_keys))
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    if not rows:
        return None
    long = pd.DataFrame([tuple(r) for r in rows], columns=["account_key", "signal", "value"])
    wide = long.pivot(index="account_key", columns="signal", values="value").reset_index()
    wide.columns.name = None
    for key in signal_keys:
        if key not in wide.columns:
            wide[key] = np.nan
    return wide[["account_key", *signal_keys]]


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    """Rows as dicts with SQL NULL (None) for every missing value (NaN would be stored as NaN)."""
    subset = frame[columns].astype(object)
    subset = subset.where(subset.notna(), None)
    return subset.to_dict("records")


def _upsert(target: Engine | Connection, table, rows: list[dict]) -> int:
    if isinstance(target, Connection):
        return upsert_rows(target, table, rows)
    with target.begin() as conn:
        return upsert_rows(conn, table, rows)


def write_scores(target: Engine | Connection, frame: pd.DataFrame) -> int:
    """Upsert a scored frame into ``health_scores``; returns the number of rows written.

    ``target`` is an engine (own transaction) or a connection (the caller's transaction).
    The frame carries (at least) every non-nullable column of the table except
    ``computed_at``, which is stamped here.
    """
    columns = [c.name for c in health_scores.columns if c.name in frame.columns and c.name != "computed_at"]
    if frame.empty:
        return 0
    rows = _records(frame, columns)
    stamp = utcnow()
    for row in rows:
        row["computed_at"] = stamp
    return _upsert(target, health_scores, rows)


def write_rollups(target: Engine | Connection, rollups: pd.DataFrame) -> int:
    """Upsert parent rollups into ``health_score_rollups``; returns the number of rows."""
    if rollups.empty:
        return 0
    columns = [c.name for c in health_score_rollups.columns if c.name in rollups.columns and c.name != "computed_at"]
    rows = _records(rollups, columns)
    stamp = utcnow()
    for row in rows:
        row["computed_at"] = stamp
    return _upsert(target, health_score_rollups, rows)


def read_scores(engine: Engine, as_of: date, model_version: str) -> pd.DataFrame:
    """All stored scores of one date and model version (for reports and tests)."""
    stmt = select(health_scores).where(
        health_scores.c.as_of_date == as_of, health_scores.c.model_version == model_version
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=[c.name for c in health_scores.columns])
