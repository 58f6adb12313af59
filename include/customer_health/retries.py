"""Bounded retries of transient failures, honouring the server's ``Retry-After`` (on tenacity).

Every retry in the product goes through ``call_with_retries``: reading a page from Zendesk or
Stripe, delivering an outbox row (Salesforce, Slack, SMTP, the marketing API) and the CRM
writeback's composite calls. Each client fails in its own exception types, so the caller passes
``classify``: it looks at an exception and returns a ``Retryable`` (transient: why, and the
Retry-After the server sent, if any) or None (a retry cannot help: the exception is raised at
once, unchanged).

Waiting (``RetryPolicy``):

* a ``Retry-After`` is honoured as the server gave it, as delta-seconds or as an HTTP date
  (RFC 9110 section 10.2.3; ``parse_retry_after``), up to ``max_retry_after``; a server asking
  for longer ends the retries at once (waiting less than asked only earns another 429);
* without one, exponential backoff from ``base_delay`` with a random jitter of up to
  ``jitter`` x ``base_delay`` (clients retrying in step would hit the server together),
  capped at ``max_delay``;
* everything is bounded: ``attempts`` in total and a sleep ``budget`` per operation, so a task
  never hangs on an API that keeps saying "later". When they run out, ``RetriesExhausted``
  names the operation, the attempts, the waiting and the last error.

Sleeping is injectable (``sleep=``) so tests count the waits instead of sleeping through them.
Salesforce's extraction session retries at the HTTP level instead (urllib3's ``Retry`` in
``sources.salesforce.salesforce_http_session``), which is a transport setting, not a loop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential_jitter
from tenacity.stop import stop_base
from tenacity.wait import wait_base

T = TypeVar("T")

log = logging.getLogger(__name__)

# HTTP statuses that are worth another try: throttling and transient server trouble.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


# ----------------------------------------------------------------------------- Retry-After
def parse_retry_after(value: Any, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date.

    ``"120"`` is 120 seconds; ``"Wed, 21 Oct 2026 07:28:00 GMT"`` is the time until that moment
    (``now``, default the current time; a date in the past is 0). A list (some clients keep
    every header value) uses its first value. Anything else - empty, negative, not a number,
    not a date - is None: no usable Retry-After, so the caller backs off on its own.
    """
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    text = text.strip()
    if not text:
        return None
    try:
        seconds = float(text)  # RFC 9110 says digits; a server sending "1.5" means 1.5 s
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_after_from(headers: Any, *, now: datetime | None = None) -> float | None:
    """The ``Retry-After`` of a response's headers (any mapping, any capitalisation), in seconds."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) or hasattr(headers, "items") else headers
    for key, value in items:
        if str(key).lower() == "retry-after":
            return parse_retry_after(value, now=now)
    return None


# ----------------------------------------------------------------------------- the policy
@dataclass(frozen=True)
class Retryable:
    """A classifier's verdict that an error is transient: why, and how long the server asked to wait."""

    reason: str
    retry_after: float | None = None


Classify = Callable[[BaseException], Retryable | None]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts in total, the backoff, and the bounds on waiting."""

    attempts: int = 5
    base_delay: float = 0.5  # first backoff when the server gives no Retry-After
    max_delay: float = 30.0  # longest backoff between attempts
    jitter: float = 1.0  # random extra on each backoff, up to this many base delays
    max_retry_after: float = 300.0  # longest Retry-After honoured; a longer one ends the retries
    budget: float = 600.0  # total seconds one operation may spend sleeping

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts is {self.attempts}; it counts the first try, so at least 1")
        if min(self.base_delay, self.max_delay, self.jitter, self.max_retry_after, self.budget) < 0:
            raise ValueError(f"RetryPolicy bounds must not be negative: {self}")

    def backoff(self) -> wait_base:
        """Exponential backoff with jitter, capped at ``max_delay`` (tenacity's wait strategy)."""
        return wait_exponential_jitter(initial=self.base_delay, max=self.max_delay, jitter=self.base_delay * self.jitter)

    def wait(self, classify: Classify) -> wait_base:
        """The server's Retry-After when it sent one, else ``backoff()``."""
        return WaitRetryAfter(classify, self.backoff())

    def stop(self, classify: Classify) -> stop_base:
        """Stop after ``attempts``, past the sleep ``budget``, or on a Retry-After beyond ``max_retry_after``."""
        return StopWithinPolicy(self, classify)


def _verdict(retry_state: RetryCallState, classify: Classify) -> Retryable | None:
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None and outcome.failed else None
    return classify(exc) if isinstance(exc, Exception) else None


class WaitRetryAfter(wait_base):
    """Wait what the server asked for (``Retryable.retry_after``), else fall back to ``backoff``."""

    def __init__(self, classify: Classify, backoff: wait_base) -> None:
        self.classify = classify
        self.backoff = backoff

    def __call__(self, retry_state: RetryCallState) -> float:
        verdict = _verdict(retry_state, self.classify)
        if verdict is not None and verdict.retry_after is not None:
            return verdict.retry_after
        return self.backoff(retry_state)


class StopWithinPolicy(stop_base):
    """Stop when the policy's attempts or sleep budget would be exceeded, or the server asks too much."""

    def __init__(self, policy: RetryPolicy, classify: Classify) -> None:
        self.policy = policy
        self.classify = classify

    def __call__(self, retry_state: RetryCallState) -> bool:
        return _why_stop(retry_state, self.policy, self.classify) is not None


def _why_stop(retry_state: RetryCallState, policy: RetryPolicy, classify: Classify) -> str | None:
    verdict = _verdict(retry_state, classify)
    if verdict is not None and verdict.retry_after is not None and verdict.retry_after > policy.max_retry_after:
        return "retry_after"
    if retry_state.attempt_number >= policy.attempts:
        return "attempts"
    if retry_state.idle_for + retry_state.upcoming_sleep > policy.budget:
        return "budget"
    return None


class RetriesExhausted(RuntimeError):
    """An operation kept failing with transient errors until the retry policy ran out.

    ``last_error`` is the last transient error (also the ``__cause__``); ``attempts`` how many
    tries were made.
    """

    def __init__(self, message: str, *, last_error: BaseException, attempts: int) -> None:
        super().__init__(message)
        self.last_error = last_error
        self.attempts = attempts


# ----------------------------------------------------------------------------- calling
def call_with_retries(
    operation: Callable[[], T],
    *,
    describe: str,
    classify: Classify,
    policy: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] | None = None,
    logger: logging.Logger | None = None,
) -> T:
    """Run ``operation``, retrying transient failures within ``policy``.

    ``classify`` returns a ``Retryable`` for transient errors (throttling, 5xx, timeouts) and
    None for everything else, which is re-raised at once. ``sleep`` (default ``time.sleep``) is
    called with each wait in seconds. When the attempts or the sleep budget run out, or the
    server asks to wait longer than ``policy.max_retry_after``, ``RetriesExhausted`` names
    ``describe``, the attempts made and the last error.
    """
    logger = logger or log
    sleeper = sleep or time.sleep

    def transient(exc: BaseException) -> bool:
        return isinstance(exc, Exception) and classify(exc) is not None

    def before_sleep(retry_state: RetryCallState) -> None:
        verdict = _verdict(retry_state, classify)
        logger.warning(
            "%s: %s; retry %d/%d in %.1fs",
            describe,
            verdict.reason if verdict else "?",
            retry_state.attempt_number,
            policy.attempts - 1,
            retry_state.upcoming_sleep,
        )

    def give_up(retry_state: RetryCallState) -> T:
        exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
        assert isinstance(exc, BaseException)
        verdict = _verdict(retry_state, classify)
        reason = verdict.reason if verdict else repr(exc)
        attempts = retry_state.attempt_number
        if _why_stop(retry_state, policy, classify) == "retry_after":
            message = (
                f"{describe}: the server asked to wait {verdict.retry_after:.0f}s ({reason}), longer than the "
                f"{policy.max_retry_after:.0f}s this run allows (after {attempts} attempt(s))."
            )
        else:
            message = (
                f"{describe} failed after {attempts} attempt(s) and {retry_state.idle_for:.1f}s of waiting; "
                f"last error: {reason}."
            )
        raise RetriesExhausted(message, last_error=exc, attempts=attempts) from exc

    retrying = Retrying(
        retry=retry_if_exception(transient),
        wait=policy.wait(classify),
        stop=policy.stop(classify),
        sleep=lambda seconds: sleeper(float(seconds)),
        before_sleep=before_sleep,
        retry_error_callback=give_up,
    )
    return retrying(operation)
