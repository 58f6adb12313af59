"""How the dashboard's templates print values: money, shares, signed points, zone colours.

The page templates (``dashboard.app``) and the monthly health review's file
(``customer_health.review``, rendered from the same templates outside the web app) use these
filters, so a figure reads the same on the page and in the file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from customer_health.wording import count

ZONE_CLASSES = {"Healthy": "z-healthy", "Neutral": "z-neutral", "At Risk": "z-at-risk", "Critical": "z-critical"}


def money(value: float | None) -> str:
    """``$1.2M``, ``$15k``, ``$800``; a dash for no value."""
    if value is None:
        return "-"
    for bound, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= bound:
            return f"${value / bound:,.1f}{suffix}"
    return f"${value:,.0f}"


def pct(value: float | None, digits: int = 0) -> str:
    """A share as a percentage (``0.25`` -> ``25%``); a dash for no value."""
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def signed(value: float | None) -> str:
    """A change with its sign (``+3``, ``-12``); a dash for no value."""
    return "-" if value is None else f"{value:+.0f}"


def zone_class(zone: str | None) -> str:
    """The CSS class of a zone's colour (the CSP allows no inline ``style`` attribute)."""
    return ZONE_CLASSES.get(zone or "", "z-other")


FILTERS: dict[str, Callable[..., Any]] = {
    "money": money, "pct": pct, "signed": signed, "zone_class": zone_class, "count": count,
}  # fmt: skip
"""The filters every template environment registers."""
