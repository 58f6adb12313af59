"""The catalog of health signals: what each measures and how a CSM reads it, by key.

A view of the signal definitions (``scoring/signals.py``), never a list of its own: ``SIGNALS``
maps each key to its ``Signal`` (dimension, direction, unit, ``description`` - the reading
template - ``label``, ``window_days``, ``describe(value)``), in definition order. Explanations,
drivers and the dashboard read signals through it.

``SIGNALS["active_user_ratio"].describe(0.42)`` -> ``"active users 42% of seats (weekday
average, last 28 days)"``; the templates also take ``{s}``, the plural ending that agrees with
the value as printed (``fill_template``).
"""

from __future__ import annotations

from customer_health.scoring.signal_definition import (
    DIMENSIONS,
    DIRECTIONS,
    Dimension,
    Direction,
    Signal,
    fill_template,
    value_spec,
)
from customer_health.scoring.signals import DEFINITIONS

SignalSpec = Signal
"""The catalog's name for a signal definition."""

SIGNALS: dict[str, Signal] = {signal.key: signal for signal in DEFINITIONS}
"""Every signal by key, in definition order (engagement, support, financial, sentiment)."""


def signals_of(dimension: Dimension) -> list[Signal]:
    """The signals of one dimension, in catalog order."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}; expected one of {DIMENSIONS}")
    return [spec for spec in SIGNALS.values() if spec.dimension == dimension]


__all__ = [
    "DIMENSIONS",
    "DIRECTIONS",
    "SIGNALS",
    "Dimension",
    "Direction",
    "SignalSpec",
    "fill_template",
    "signals_of",
    "value_spec",
]
