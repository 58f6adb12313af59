"""What a sentence for people must never contain: code, raw structures, or numbers out of agreement.

``problems(text)`` lists what is wrong with a text a CSM, an executive or a marketer reads
(a Salesforce Task description, a CRM field, a Slack or e-mail body, a dashboard page, the
demo's report); ``assert_reads_well`` fails with those problems and the text.
"""

from __future__ import annotations

import re

# Python reprs and raw JSON of lists and dicts, and values that leak from code.
_RAW = [
    (re.compile(r"\[\s*['\"]"), "a raw list"),
    (re.compile(r"\{\s*['\"]"), "a raw dict"),
    (re.compile(r"\b(None|nan|NaN|inf)\b"), "a Python or NumPy value"),
    (re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b"), "a snake_case identifier"),
    (re.compile(r"\{[a-z_]*(?::[^}]*)?\}"), "an unfilled template field"),
]
# "1 tickets", "-1 points": one of a thing in the plural. Words that end in s in the singular
# are exempt.
_ONE_PLURAL = re.compile(r"(?<![\d.,])[-+]?1 ([a-z][a-z-]*s)\b")
_SINGULAR_S = ("ss", "us", "is", "ics")
# "3 ticket", "0 day": more (or none) of a thing in the singular, for the nouns the product counts.
_NOUNS = ("point", "day", "ticket", "account", "payment", "dispute", "feature", "user", "seat", "login", "reply",
          "invoice", "action", "customer", "churner", "month", "week", "record", "task")
_ONE_NOUN_PLURAL = re.compile(r"(?<![\d.,])[-+]?1 (?:[a-z-]+ ){1,2}(?:" + "|".join(_NOUNS) + r")s\b")
_MANY_SINGULAR = re.compile(r"\b(?:0|[2-9]|[1-9]\d+)(?:\.\d+)? (?:open |support |failed |core |active )*(" + "|".join(_NOUNS) + r")\b")


_EMOJI = re.compile(r":[a-z0-9_+-]+:")


def problems(text: str) -> list[str]:
    """Everything in ``text`` a person should not have to read (Slack emoji codes are fine)."""
    text = _EMOJI.sub("", text)
    found = [f"{what}: {m.group(0)!r}" for pattern, what in _RAW for m in pattern.finditer(text)]
    for m in _ONE_PLURAL.finditer(text):
        if not m.group(1).endswith(_SINGULAR_S):
            found.append(f"one in the plural: {m.group(0)!r}")
    found += [f"one in the plural: {m.group(0)!r}" for m in _ONE_NOUN_PLURAL.finditer(text)]
    found += [f"many in the singular: {m.group(0)!r}" for m in _MANY_SINGULAR.finditer(text)]
    return found


def assert_reads_well(text: str, where: str = "text") -> None:
    """Fail with every problem of ``text`` (and the text itself) when there is any."""
    issues = problems(text)
    assert not issues, f"{where} does not read well: {issues}\n---\n{text}"
