"""Bounded retries with backoff that honour a server's ``Retry-After``.

Every source client (zenpy, the stripe SDK, simple-salesforce, plain requests) fails in its
own exception types, so the retry loop is generic: the caller passes ``classify``, which looks
at an exception and says whether it is worth retrying and how long the server asked to wait.
Everything is bounded - a number of attempts, a longest single wait and a total sleep budget -
so a task never hangs on an API that keeps saying "later"; it fails with an error that names
the operation, what went wrong and what to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

# HTTP statuses that are worth another try: throttling and transient server trouble.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts in total, backoff, and the bounds on waiting."""

    attempts: int = 5
    base_delay: float = 0.5  # first backoff when the server gives no Retry-After
    max_delay: float = 30.0  # longest backoff between attempts
    max_retry_after: float = 300.0  # longest Retry-After we are willing to honour
    budget: float = 600.0  # total seconds one operation may spend sleeping

    def backoff(self, attempt: int) -> float:
        """Exponential backoff before retry number ``attempt`` (1-based)."""
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1))


@dataclass(frozen=True)
class Retryable:
    """A classifier's verdict that an error is transient: why, and how long to wait."""

    reason: str
    retry_after: float | None = None


class RetriesExhausted(RuntimeError):
    """An operation kept failing with transient errors until the retry policy ran out."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def retry_after_from(headers: Mapping[str, str] | None) -> float | None:
    """The ``Retry-After`` of a response's headers (any capitalisation), in seconds."""
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == "retry-after":
            return parse_retry_after(value)
    return None


def call_with_retries(
    operation: Callable[[], T],
    *,
    describe: str,
    classify: Callable[[BaseException], Retryable | None],
    policy: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
    logger: logging.Logger | None = None,
) -> T:
    """Run ``operation``, retrying transient failures within ``policy``.

    ``classify`` returns a ``Retryable`` for transient errors (throttling, 5xx, timeouts) and
    None for everything else, which is re-raised at once. A server's Retry-After is honoured
    exactly; without one the wait backs off exponentially. When attempts, the longest allowed
    Retry-After or the sleep budget run out, ``RetriesExhausted`` names ``describe``, the
    attempts made and the last error.
    """
    logger = logger or log
    slept = 0.0
    attempt = 0
    while True:
        attempt += 1
        try:
            return operation()
        except Exception as exc:  # noqa: BLE001 - classify decides; others re-raise below
            verdict = classify(exc)
            if verdict is None:
                raise
            if verdict.retry_after is not None and verdict.retry_after > policy.max_retry_after:
                raise RetriesExhausted(
                    f"{describe}: the server asked to wait {verdict.retry_after:.0f}s "
                    f"({verdict.reason}), longer than the {policy.max_retry_after:.0f}s this run "
                    "allows. Re-run the task later, or raise RetryPolicy.max_retry_after."
                ) from exc
            wait = verdict.retry_after if verdict.retry_after is not None else policy.backoff(attempt)
            if attempt >= policy.attempts or slept + wait > policy.budget:
                raise RetriesExhausted(
                    f"{describe} failed after {attempt} attempt(s) and {slept:.1f}s of waiting; "
                    f"last error: {verdict.reason}. The source is unavailable or throttling; "
                    "nothing past the last committed page was recorded, so re-running the task "
                    "resumes where it stopped."
                ) from exc
            logger.warning(
                "%s: %s; retry %d/%d in %.1fs", describe, verdict.reason, attempt, policy.attempts - 1, wait
            )
            sleep(wait)
            slept += wait
