"""What an extraction did, per source object: the report a task logs and returns as XCom.

Every API extraction (Salesforce, Zendesk, Stripe) returns an ``ExtractReport``. It holds counts
and watermarks only - never records - so ``as_dict()`` is small enough for XCom.

Records that cannot be stored are quarantined, not dropped: ``MalformedRecord`` carries the
reason, and ``FieldCheck`` reads a record's fields collecting *every* problem, so the reason a
data engineer reads in the quarantine names all of them at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


class MalformedRecord(ValueError):
    """A source record whose fields cannot be stored; the message names the fields and values."""


class FieldCheck:
    """Reads a record's fields and collects every problem, for one complete quarantine reason."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def __call__(self, read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``read(*args, **kwargs)``; None, with the problem noted, when it is malformed."""
        try:
            return read(*args, **kwargs)
        except MalformedRecord as exc:
            self.problems.append(str(exc))
            return None

    def problem(self, message: str) -> None:
        """Note a problem found outside ``read`` functions."""
        self.problems.append(message)

    def row(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` when no field was malformed; ``MalformedRecord`` naming them all otherwise."""
        if self.problems:
            raise MalformedRecord("; ".join(self.problems))
        return row


@dataclass
class ObjectReport:
    """The outcome of extracting one object (e.g. Zendesk tickets) in one run.

    ``rows`` counts distinct records written by the incremental read, ``refreshed`` records
    re-read on purpose (a lookback re-read of objects that change after creation), ``deleted``
    records the source reported as deleted, ``quarantined`` malformed records kept aside, and
    ``pages`` the API pages read (including pages that had to be retried).
    """

    rows: int = 0
    deleted: int = 0
    quarantined: int = 0
    pages: int = 0
    refreshed: int = 0
    watermark_before: str | None = None
    watermark_after: str | None = None


@dataclass
class ExtractReport:
    """The outcome of one extraction run of one source."""

    source: str
    objects: dict[str, ObjectReport] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # object -> why it was not read

    def object(self, name: str) -> ObjectReport:
        """The report of object ``name``, created empty on first use."""
        return self.objects.setdefault(name, ObjectReport())

    @property
    def rows(self) -> int:
        """Records written across all objects (incremental reads only)."""
        return sum(o.rows for o in self.objects.values())

    @property
    def quarantined(self) -> int:
        """Malformed records kept aside across all objects."""
        return sum(o.quarantined for o in self.objects.values())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able summary for XCom and logs (counts and watermarks only)."""
        return {
            "source": self.source,
            "rows": self.rows,
            "quarantined": self.quarantined,
            "objects": {name: asdict(o) for name, o in self.objects.items()},
        } | ({"skipped": dict(self.skipped)} if self.skipped else {})


def checked_text(value: Any, field: str, limit: int = 255) -> str | None:
    """A display string, cut to the column's ``limit`` (a long subject is not a broken record)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedRecord(f"{field} is not a string: {value!r}")
    return value[:limit]


def checked_choice(value: Any, field: str, allowed: frozenset[str]) -> str | None:
    """One of ``allowed`` (or None); anything else makes the record malformed."""
    if value is None:
        return None
    if not isinstance(value, str) or value not in allowed:
        raise MalformedRecord(f"{field} {value!r} is not one of {sorted(allowed)}")
    return value
