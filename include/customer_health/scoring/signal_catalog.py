"""The catalog of health signals: what each raw signal measures, and how a CSM reads it.

Every signal the pipeline computes (``scoring/signals.py``) is described here, once: its key
(the column in the signals frame and the ``signal`` in ``signal_values``), the health dimension
it belongs to, which direction is good, its unit, the phrase a CSM reads in an explanation, and
how many days of history before the as-of date it looks at.

The phrase templates are ``str.format`` templates over the field ``value``, e.g.
``SIGNALS["active_user_ratio"].describe(0.42)`` -> ``"active users 42% of seats (weekday
average, last 28 days)"``, and ``{s}``, the plural ending that agrees with the value as printed
(``"{value:.0f} open support ticket{s}"`` -> ``"1 open support ticket"``, ``"3 open support
tickets"``). ``label`` is the signal's short name where no value is shown (driver lists).
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import Literal

Dimension = Literal["engagement", "support", "financial", "sentiment"]
Direction = Literal["higher_is_better", "lower_is_better"]

DIMENSIONS: tuple[str, ...] = ("engagement", "support", "financial", "sentiment")
DIRECTIONS: tuple[str, ...] = ("higher_is_better", "lower_is_better")


@dataclass(frozen=True)
class SignalSpec:
    """One raw health signal.

    ``window_days`` is the total look-back in days ending on the as-of date D (inclusive): a
    28-day window covers D-27 .. D. Trends compare two sub-windows inside it (documented per
    signal). ``0`` means the signal is a state at the end of D, not a window (open tickets).
    """

    key: str
    dimension: Dimension
    direction: Direction
    unit: str
    description: str
    window_days: int
    label: str = ""

    def __post_init__(self) -> None:
        if self.dimension not in DIMENSIONS:
            raise ValueError(
                f"signal {self.key!r}: dimension {self.dimension!r} is not one of {DIMENSIONS}; "
                "fix the SignalSpec in scoring/signal_catalog.py"
            )
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"signal {self.key!r}: direction {self.direction!r} is not one of {DIRECTIONS}; "
                "fix the SignalSpec in scoring/signal_catalog.py"
            )
        if self.window_days < 0:
            raise ValueError(f"signal {self.key!r}: window_days {self.window_days} must be >= 0")
        if not self.label:
            object.__setattr__(self, "label", self.key.replace("_", " "))

    @property
    def higher_is_better(self) -> bool:
        """True when a larger raw value means a healthier account."""
        return self.direction == "higher_is_better"

    def describe(self, value: float | None) -> str:
        """The CSM-readable phrase for ``value`` (``"no data: ..."`` when the value is missing)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return f"no data for {self.label}"
        return fill_template(self.description, value)


def value_spec(template: str) -> str:
    """The format spec of the ``value`` field of ``template`` (``".0%"``), ``".3g"`` without one."""
    for _literal, field, spec, _conv in string.Formatter().parse(template):
        if field == "value":
            return spec or ""
    return ".3g"


def fill_template(template: str, value: float) -> str:
    """``template`` filled with ``value`` and the plural ending ``{s}`` that agrees with it.

    The ending follows the value *as printed*: ``1`` (or ``+1``) is singular, ``0``, ``2`` and
    ``1.0`` are plural.
    """
    printed = format(value, value_spec(template))
    return template.format(value=value, s="" if printed.lstrip("+") == "1" else "s")


_CATALOG: tuple[SignalSpec, ...] = (
    # ---------------------------------------------------------------- engagement (product DB)
    SignalSpec(
        "login_frequency", "engagement", "higher_is_better", "logins per seat per week",
        "{value:.1f} logins per seat per week (last 28 days)", 28, "login frequency",
    ),
    SignalSpec(
        "active_user_ratio", "engagement", "higher_is_better", "share of seats",
        "active users {value:.0%} of seats (weekday average, last 28 days)", 28, "active users vs seats",
    ),
    SignalSpec(
        "feature_breadth", "engagement", "higher_is_better", "share of core features",
        "{value:.0%} of core features used in the last 30 days", 30, "core features used",
    ),
    SignalSpec(
        "feature_depth", "engagement", "higher_is_better", "events per active user-day",
        "{value:.1f} core-feature actions per active user per day (last 30 days)", 30, "depth of core-feature use",
    ),
    SignalSpec(
        # logins of D-29..D against the mean 30-day logins of D-89..D-30
        "engagement_trend", "engagement", "higher_is_better", "fractional change",
        "logins {value:+.0%} vs the two months before", 90, "login trend",
    ),
    # ---------------------------------------------------------------- support (Zendesk)
    SignalSpec(
        "open_tickets", "support", "lower_is_better", "tickets",
        "{value:.0f} open support ticket{s}", 0, "open support tickets",
    ),
    SignalSpec(
        "severity_mix", "support", "lower_is_better", "share of tickets",
        "{value:.0%} of tickets high or urgent priority (last 90 days)", 90, "high-severity tickets",
    ),
    SignalSpec(
        # median resolution of tickets solved D-89..D against those solved D-179..D-90
        "resolution_time_trend", "support", "lower_is_better", "fractional change",
        "ticket resolution time {value:+.0%} vs the quarter before", 180, "ticket resolution time",
    ),
    SignalSpec(
        "howto_complaint_ratio", "support", "higher_is_better", "share of tickets",
        "{value:.0%} of how-to and complaint tickets are how-to questions (last 180 days)", 180, "how-to vs complaint tickets",
    ),
    SignalSpec(
        "reopen_rate", "support", "lower_is_better", "reopens per solved ticket",
        "{value:.2f} reopens per solved ticket (last 180 days)", 180, "ticket reopen rate",
    ),
    SignalSpec(
        "csat", "support", "higher_is_better", "share of ratings",
        "CSAT {value:.0%} good (last 180 days)", 180, "CSAT",
    ),
    # ---------------------------------------------------------------- financial (Stripe)
    SignalSpec(
        "payment_timeliness", "financial", "higher_is_better", "share of invoices",
        "{value:.0%} of invoices due in the last 180 days paid on time", 180, "on-time payments",
    ),
    SignalSpec(
        "payment_failures", "financial", "lower_is_better", "failures",
        "{value:.0f} failed payment{s} or dispute{s} (last 180 days)", 180, "failed payments and disputes",
    ),
    SignalSpec(
        # recurring amount of the latest invoices as of D against those as of D-180
        "contract_value_change", "financial", "higher_is_better", "fractional change",
        "contract value {value:+.0%} vs six months ago", 180, "contract value change",
    ),
    SignalSpec(
        # metered usage billed D-89..D against D-179..D-90
        "usage_billing_trend", "financial", "higher_is_better", "fractional change",
        "usage billing {value:+.0%} vs the quarter before", 180, "usage billing trend",
    ),
    # ---------------------------------------------------------------- sentiment (Salesforce)
    SignalSpec(
        "nps", "sentiment", "higher_is_better", "score 0-10",
        "NPS responses average {value:.1f} of 10 (last 12 months)", 365, "NPS",
    ),
    SignalSpec(
        "exec_sponsor_recency", "sentiment", "lower_is_better", "days",
        "{value:.0f} day{s} since the last executive-sponsor touch", 365, "executive-sponsor contact",
    ),
    SignalSpec(
        "outreach_response", "sentiment", "higher_is_better", "share of e-mails",
        "{value:.0%} of outreach e-mails answered (last 90 days)", 90, "outreach response rate",
    ),
)

SIGNALS: dict[str, SignalSpec] = {spec.key: spec for spec in _CATALOG}
"""Every signal by key, in catalog order (engagement, support, financial, sentiment)."""


def signals_of(dimension: Dimension) -> list[SignalSpec]:
    """The signals of one dimension, in catalog order."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}; expected one of {DIMENSIONS}")
    return [spec for spec in SIGNALS.values() if spec.dimension == dimension]
