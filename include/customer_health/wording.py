"""The words the product writes for people: counts with their nouns, points, escaping.

Every sentence a CSM, an executive or a marketer reads (Salesforce Task descriptions, CRM
fields, Slack and e-mail bodies, dashboard pages, the demo's report) is assembled from these
helpers, so that "1 ticket" / "3 tickets" agree everywhere and text that comes from a source
system (an account name, a reason) cannot break out of the HTML or the Slack message it is
placed in.
"""

from __future__ import annotations

import math
from html import escape as _html_escape

# Nouns whose plural is not the singular + "s".
_IRREGULAR = {"reply": "replies", "company": "companies", "opportunity": "opportunities", "this": "these"}


def plural_of(noun: str) -> str:
    """The plural of ``noun`` (``ticket`` -> ``tickets``, ``reply`` -> ``replies``)."""
    if noun in _IRREGULAR:
        return _IRREGULAR[noun]
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    return noun + "s"


def count(n: float | int, noun: str, plural: str | None = None) -> str:
    """``n`` and its noun in agreement: ``count(1, "ticket")`` -> ``"1 ticket"``.

    Only exactly one (as printed: an integer) takes the singular; 0, 2 and fractions take
    the plural, as English does ("0 tickets", "1.5 days").
    """
    value = int(n) if float(n).is_integer() else n
    word = noun if value == 1 else (plural or plural_of(noun))
    return f"{value:,} {word}" if isinstance(value, int) else f"{value} {word}"


def points(value: float, *, signed: bool = False) -> str:
    """Score points as people read them: ``"1 point"``, ``"12 points"``, ``"-2.2 points"``.

    Whole numbers print without decimals; others with one. ``signed`` prints a ``+`` on gains.
    """
    rounded = round(float(value), 1)
    text = "0.0" if rounded == 0 else f"{rounded:+.1f}" if signed else f"{rounded:.1f}"  # never "-0" or "+0"
    if text.endswith(".0"):
        text = text[:-2]
    return f"{text} {'point' if text.lstrip('+-') == '1' else 'points'}"


def days(n: int) -> str:
    """``"1 day"`` / ``"30 days"``."""
    return count(int(n), "day")


def html(text: object) -> str:
    """``text`` escaped for an HTML body (names and reasons come from source systems)."""
    return _html_escape("" if text is None else str(text), quote=True)


def slack(text: object) -> str:
    """``text`` escaped for a Slack message (``mrkdwn``).

    Slack reads ``<...>`` as links and mentions (``<!channel>``, ``<https://x|label>``) and
    ``&`` as the start of an entity; its documentation asks for exactly these three to be
    escaped in text that is not a deliberate control sequence.
    """
    return "" if text is None else str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def is_number(value: object) -> bool:
    """True for a finite int or float (not a bool, not NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
