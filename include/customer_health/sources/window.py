"""How far an incremental read may go: never past the moment the source was read.

A run's data interval may end in the future: the demo's "today", a manual trigger for today,
the 15-minute refresh. Reading "everything changed up to the interval end" and then setting the
watermark to that end would skip every change made between the read and the end: the next run
asks only for changes after the watermark. So the upper bound of every incremental read is the
interval end *or* the moment the read starts minus ``SAFETY_LAG``, whichever is earlier
(``read_bound``). The lag covers a source clock a few seconds ahead of ours and records
committed with a timestamp slightly before they became visible (Salesforce's
``SystemModstamp`` is not strictly monotonic under concurrent commits); Salesforce reads
additionally overlap the previous window by ``OVERLAP`` (the upsert by Id makes the re-read
harmless).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

SAFETY_LAG = timedelta(minutes=2)
OVERLAP = timedelta(minutes=10)


def naive_utc(moment: datetime) -> datetime:
    """``moment`` as a plain naive UTC ``datetime`` (aware values are converted, naive ones taken
    as UTC; subclasses such as pendulum's ``DateTime`` become ``datetime``, which every database
    driver can bind)."""
    if moment.tzinfo:
        moment = moment.astimezone(UTC)
    return datetime(
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, moment.microsecond
    )


def read_bound(until: datetime, started: datetime | None = None, lag: timedelta = SAFETY_LAG) -> datetime:
    """The exclusive upper bound of an incremental read asked to go up to ``until`` (naive UTC).

    ``started`` is when the read starts (default: now). The bound never passes
    ``started - lag``: what changes after the read must be left for the next run.
    """
    started = naive_utc(started) if started is not None else datetime.now(UTC).replace(tzinfo=None)
    return min(naive_utc(until), started - lag)
