"""What declaring a health signal means: one ``Signal`` holds everything about it.

A ``Signal`` names its key (the column in the signals frame and in ``signal_values``), the
health dimension it belongs to, which direction is good, its unit, the sentence a CSM reads
(``reading``, a template over ``value``), its short ``label``, its look-back ``window_days``,
the measures it reads (``inputs``, see ``scoring/measures.py``), and the one formula (``value``)
that turns those measures into the signal for any number of (account, date) rows at once.

Missing is part of the definition (``docs/DECISIONS.md``, "Missing is missing"):

* ``requires``: the source system the signal needs (its product account, Zendesk organization,
  Stripe customer); without one existing at D the signal is NULL, never a default.
* ``needs_tenure_days``: the signal compares or counts over a window that must lie inside the
  account's tenure (a trend's baseline, a count over 180 days); a younger account gets NULL.
  Shares and rates whose denominator adapts to what happened (invoices due, customer days) do
  not need it.
* ``when_quiet``: the value for an account connected to the system but with no record counting
  at D - ``None`` (NULL: a share of nothing) or a real value (0 open tickets). Each signal's
  formula produces it; the signal tests check it for every signal.

Reading templates are ``str.format`` templates over ``value`` and ``{s}``, the plural ending that
agrees with the value as printed (``"{value:.0f} open support ticket{s}"`` -> ``"1 open support
ticket"``, ``"3 open support tickets"``).
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from customer_health.scoring.measures import Measure, System

Dimension = Literal["engagement", "support", "financial", "sentiment"]
Direction = Literal["higher_is_better", "lower_is_better"]

DIMENSIONS: tuple[str, ...] = ("engagement", "support", "financial", "sentiment")
DIRECTIONS: tuple[str, ...] = ("higher_is_better", "lower_is_better")


def value_spec(template: str) -> str:
    """The format spec of the ``value`` field of ``template`` (``".0%"``), ``".3g"`` without one."""
    for _literal, name, spec, _conv in string.Formatter().parse(template):
        if name == "value":
            return spec or ""
    return ".3g"


def fill_template(template: str, value: float) -> str:
    """``template`` filled with ``value`` and the plural ending ``{s}`` that agrees with it.

    The ending follows the value *as printed*: ``1`` (or ``+1``) is singular, ``0``, ``2`` and
    ``1.0`` are plural.
    """
    printed = format(value, value_spec(template))
    return template.format(value=value, s="" if printed.lstrip("+") == "1" else "s")


class Inputs:
    """What a signal's formula reads, one value per (account, date) row: each of its measures by
    name (``inputs.logins_28``) and the account context (``day``, ``since``, ``tenure``,
    ``seats``)."""

    def __init__(
        self, measures: Mapping[str, np.ndarray], day: np.ndarray, since: np.ndarray, seats: np.ndarray
    ) -> None:
        self._measures = measures
        self.day = day
        self.since = since
        self.tenure = day - since
        self.seats = seats

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self._measures[name]
        except KeyError:
            raise AttributeError(f"no measure {name!r} among the signal's inputs: {sorted(self._measures)}") from None

    def customer_days(self, window_days: int) -> np.ndarray:
        """Days of the ``window_days``-day window ending on D on which the account was a customer."""
        start = np.maximum(self.since, self.day - (window_days - 1))
        return (self.day + 1 - start).astype(float)

    def customer_weekdays(self, window_days: int) -> np.ndarray:
        """Monday-Friday days of the window ending on D on which the account was a customer."""
        start = np.maximum(self.since, self.day - (window_days - 1)).astype("datetime64[D]")
        return np.busday_count(start, (self.day + 1).astype("datetime64[D]")).astype(float)


Formula = Callable[[Inputs], np.ndarray]


@dataclass(frozen=True, eq=False)
class Signal:
    """One health signal, declared once (see the module docstring)."""

    key: str
    dimension: Dimension
    direction: Direction
    unit: str
    window_days: int
    label: str
    reading: str
    inputs: tuple[Measure, ...]
    value: Formula
    requires: System | None = None
    needs_tenure_days: int = 0
    when_quiet: float | None = None
    _measures: Mapping[str, Measure] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        where = f"signal {self.key!r} (scoring/signals.py)"
        if not self.key.isidentifier() or self.key != self.key.lower():
            raise ValueError(f"{where}: the key must be a lower-case identifier (it is a column name)")
        if self.dimension not in DIMENSIONS:
            raise ValueError(f"{where}: dimension {self.dimension!r} is not one of {DIMENSIONS}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"{where}: direction {self.direction!r} is not one of {DIRECTIONS}")
        if self.window_days < 0 or self.needs_tenure_days < 0:
            raise ValueError(f"{where}: window_days and needs_tenure_days must be >= 0")
        if "{value" not in self.reading:
            raise ValueError(f"{where}: the reading {self.reading!r} has no {{value}} field")
        try:
            fill_template(self.reading, 0.5)
        except (ValueError, KeyError, IndexError) as exc:
            raise ValueError(f"{where}: the reading {self.reading!r} does not format a number: {exc}") from exc
        names = [m.name for m in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"{where}: two inputs share a name: {names}")
        object.__setattr__(self, "_measures", {m.name: m for m in self.inputs})

    # -- the catalog view (what explanations, drivers and the dashboard read)
    @property
    def description(self) -> str:
        """The reading template (the catalog's name for it)."""
        return self.reading

    @property
    def higher_is_better(self) -> bool:
        """True when a larger raw value means a healthier account."""
        return self.direction == "higher_is_better"

    def describe(self, value: float | None) -> str:
        """The CSM-readable phrase for ``value`` (``"no data for ..."`` when it is missing)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return f"no data for {self.label}"
        return fill_template(self.reading, value)

    # -- the computation
    def compute(self, inputs: Inputs, connected: np.ndarray | None) -> np.ndarray:
        """The signal for every row: the formula, then NULL where the required system is not
        connected (``connected``) or the tenure is too short for the window."""
        values = np.asarray(self.value(inputs), dtype=float)
        values = np.broadcast_to(values, inputs.day.shape).astype(float)
        if connected is not None:
            values = np.where(connected, values, np.nan)
        if self.needs_tenure_days:
            values = np.where(inputs.tenure >= self.needs_tenure_days, values, np.nan)
        return values


def check_definitions(definitions: tuple[Signal, ...]) -> dict[str, Signal]:
    """The definitions by key, refusing duplicate keys and two different measures of one name."""
    by_key: dict[str, Signal] = {}
    measures: dict[str, Any] = {}
    for signal in definitions:
        if signal.key in by_key:
            raise ValueError(f"signal {signal.key!r} is defined twice (scoring/signals.py)")
        by_key[signal.key] = signal
        extra = [signal.requires.presence] if signal.requires is not None else []
        for measure in (*signal.inputs, *extra):
            seen = measures.setdefault(measure.name, measure)
            if seen is not measure:
                raise ValueError(
                    f"signal {signal.key!r}: two different measures are named {measure.name!r}; "
                    "rename one (a formula reads its inputs by name)"
                )
    return by_key
