"""What the audit and the recalibration share: the snapshot dates, the signals as of a snapshot,
and the model under test.

Both grade the score on the same cohort (the audit's module docstring states it): snapshot dates
``T`` inside an outcome window, each followed by a horizon of ``H`` days, and the point-in-time
signals of every account at ``T``. ``audit`` grades the stored (or re-scored) scores;
``recalibrate`` fits new weights on the same snapshots. Both import this module; neither imports
the other at module level.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from customer_health.scoring.model_config import ModelConfig, load_model_config
from customer_health.validation import registry

DEFAULT_HORIZON_DAYS = 90
CADENCES = ("quarterly", "monthly")

SignalSource = Callable[[Engine, date], pd.DataFrame]


class AuditError(ValueError):
    """The audit cannot run with the arguments given; the message says what to change."""


def as_date(value: Any) -> date:
    """A ``datetime.date`` from a date, a datetime or anything pandas reads as a timestamp."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return pd.Timestamp(value).date()


# --------------------------------------------------------------------------- snapshot dates
def _period_starts(first: date, last: date, cadence: str) -> list[date]:
    if cadence not in CADENCES:
        raise AuditError(f"cadence {cadence!r} is not supported; use one of {', '.join(CADENCES)}")
    step = 3 if cadence == "quarterly" else 1
    month = ((first.month - 1) // step) * step + 1
    day = date(first.year, month, 1)
    out = []
    while day <= last:
        if day >= first:
            out.append(day)
        month_index = day.year * 12 + day.month - 1 + step
        day = date(month_index // 12, month_index % 12 + 1, 1)
    return out


def snapshot_dates(start: date, end: date, horizon_days: int = DEFAULT_HORIZON_DAYS, cadence: str = "quarterly") -> list[date]:
    """Snapshot dates T of the window: period starts with ``start - 1 <= T <= end - H``."""
    if end < start:
        raise AuditError(f"window end {end} is before its start {start}; swap them")
    if horizon_days < 1:
        raise AuditError(f"horizon_days is {horizon_days}; pass a horizon of at least 1 day (default 90)")
    first, last = start - timedelta(days=1), end - timedelta(days=horizon_days)
    dates = _period_starts(first, last, cadence) if last >= first else []
    if not dates:
        raise AuditError(
            f"no {cadence} snapshot date T fits the window {start}..{end} with a {horizon_days}-day horizon "
            f"(T must satisfy {first} <= T <= {last}); widen the window to at least {horizon_days} days "
            "past a period start, or shorten the horizon"
        )
    return dates


# --------------------------------------------------------------------------- signals at T
def stored_signals(engine: Engine, day: date) -> pd.DataFrame:
    """The signals frame of ``day`` exactly as the daily run stored it (empty when none stored).

    Account context (plan, tenure, ARR, ...) is the point-in-time context stored beside the
    values, so an audit rescoring ``day`` sees what the daily run saw.
    """
    from customer_health.scoring.signal_store import read_signal_frame

    frame = read_signal_frame(engine, day)
    return frame if len(frame) else pd.DataFrame()


def signals_at(engine: Engine, day: date) -> pd.DataFrame:
    """Point-in-time signals of ``day``: the stored ``signal_values``, else ``compute_signals``."""
    frame = stored_signals(engine, day)
    if len(frame):
        return frame
    from customer_health.scoring.signals import compute_signals

    return compute_signals(engine, day)


# --------------------------------------------------------------------------- the model under test
def resolve_config(engine: Engine, model_version: str | None) -> ModelConfig:
    """``model_version`` from the registry; else the active version; else the shipped default."""
    if model_version:
        return registry.get_config(engine, model_version)
    active = registry.active_config(engine)
    return active if active is not None else load_model_config()
