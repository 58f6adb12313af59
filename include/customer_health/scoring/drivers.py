"""The drivers of a score: one documented shape, one writer, one reader.

``health_scores.drivers`` holds, for every score, the signals that pull it down, those that
hold it up, and the biggest changes over the explanation window. The scoring engine writes
it (``explain.drivers_document``, vectorized over a million rows); everything that shows
drivers to a person - the dashboard, Salesforce Tasks and ``Health_Drivers__c``, the Slack
and e-mail escalations, the audit's false-negative tables - reads it through
``read_drivers`` and words it through ``Driver.phrase`` / ``describe_drivers``.

The stored JSON (compact: a million rows a day)::

    {"down":    [[signal, points, score], ...],   # pulling the score down, strongest first
     "up":      [[signal, points, score], ...],   # holding it up, strongest first
     "changes": [[signal, points], ...]}          # biggest weighted moves over the window

``signal`` is a signal key of the model, ``points`` the score points the signal contributes
relative to a neutral 50 (one decimal; negative in ``down``, positive in ``up``; in
``changes`` the points gained or lost since the start of the window), ``score`` the signal's
normalized 0-100 value against similar accounts (plan x tenure). Any other shape is an error
(``DriversFormatError``): there is exactly one writer, so a different shape is a bug to see,
not a variant to guess at.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from customer_health import wording
from customer_health.scoring.signal_catalog import SIGNALS

KINDS = ("down", "up", "changes")


class DriversFormatError(ValueError):
    """A drivers document that is not in the documented shape."""


@dataclass(frozen=True)
class Driver:
    """One signal's part in a score."""

    signal: str
    points: float
    score: float | None = None  # normalized 0-100 vs similar accounts; None for changes

    @property
    def label(self) -> str:
        """The signal's short name for people (``"executive-sponsor contact"``)."""
        spec = SIGNALS.get(self.signal)
        return spec.label if spec is not None else self.signal.replace("_", " ")

    def phrase(self) -> str:
        """``"executive-sponsor contact (-2.2 points; 8/100 vs similar accounts)"``."""
        detail = wording.points(self.points, signed=True)
        if self.score is not None:
            detail += f"; {round(self.score)}/100 vs similar accounts"
        return f"{self.label} ({detail})"

    def as_dict(self) -> dict[str, Any]:
        """The driver for JSON readers (the dashboard API)."""
        return {"signal": self.signal, "label": self.label, "points": self.points, "score": self.score}


@dataclass(frozen=True)
class ScoreDrivers:
    """The drivers of one score."""

    down: tuple[Driver, ...] = ()
    up: tuple[Driver, ...] = ()
    changes: tuple[Driver, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.down or self.up or self.changes)

    def as_dict(self) -> dict[str, list[dict[str, Any]]]:
        """``{"down": [...], "up": [...], "changes": [...]}`` of ``Driver.as_dict`` entries."""
        return {kind: [d.as_dict() for d in getattr(self, kind)] for kind in KINDS}


NO_DRIVERS = ScoreDrivers()


def _number(value: Any, what: str) -> float:
    if not wording.is_number(value):
        raise DriversFormatError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _entry(kind: str, i: int, item: Any) -> Driver:
    where = f"drivers[{kind!r}][{i}]"
    size = 2 if kind == "changes" else 3
    if not isinstance(item, list | tuple) or len(item) != size:
        raise DriversFormatError(f"{where} must be a list of {size} items ([signal, points{', score' * (size == 3)}]), got {item!r}")
    signal = item[0]
    if not isinstance(signal, str) or not signal:
        raise DriversFormatError(f"{where}: the signal must be a non-empty string, got {signal!r}")
    points = _number(item[1], f"{where}: points")
    score = None
    if size == 3:
        score = _number(item[2], f"{where}: score")
        if not 0 <= score <= 100:
            raise DriversFormatError(f"{where}: score {score} is outside 0-100")
    if kind == "down" and points >= 0 or kind == "up" and points <= 0:
        raise DriversFormatError(f"{where}: points {points} have the wrong sign for {kind!r}")
    return Driver(signal, points, score)


def read_drivers(document: str | Mapping[str, Any] | None) -> ScoreDrivers:
    """The drivers of a ``health_scores.drivers`` value (JSON text or already parsed).

    ``None`` or ``""`` (a score without drivers) reads as no drivers; anything not in the
    documented shape raises ``DriversFormatError`` naming the offending entry.
    """
    if document is None or (isinstance(document, float) and math.isnan(document)) or document == "":
        return NO_DRIVERS
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise DriversFormatError(f"drivers are not valid JSON: {exc}") from exc
    if not isinstance(document, Mapping):
        raise DriversFormatError(f"drivers must be a JSON object with keys {KINDS}, got {type(document).__name__}")
    unknown = set(document) - set(KINDS)
    if unknown:
        raise DriversFormatError(f"drivers have unknown keys {sorted(unknown)}; expected {KINDS}")
    parsed = {}
    for kind in KINDS:
        items = document.get(kind) or []
        if not isinstance(items, list):
            raise DriversFormatError(f"drivers[{kind!r}] must be a list, got {type(items).__name__}")
        parsed[kind] = tuple(_entry(kind, i, item) for i, item in enumerate(items))
    return ScoreDrivers(**parsed)


def describe_drivers(drivers: ScoreDrivers, limit: int = 3, kind: str = "down") -> str:
    """The strongest ``limit`` drivers of one kind as a phrase, ``""`` when there are none.

    ``"executive-sponsor contact (-2.2 points; 8/100 vs similar accounts); CSAT (-1.5 points;
    20/100 vs similar accounts)"``.
    """
    return "; ".join(d.phrase() for d in getattr(drivers, kind)[:limit])
