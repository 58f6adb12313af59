"""The one retry loop (customer_health.retries): Retry-After in both of RFC 9110's forms, bounded
backoff with jitter, and giving up clearly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from requests.structures import CaseInsensitiveDict

from customer_health.actions.targets import TransientDeliveryError, classify_delivery_error, classify_http
from customer_health.retries import (
    RetriesExhausted,
    Retryable,
    RetryPolicy,
    call_with_retries,
    parse_retry_after,
    retry_after_from,
)

NOW = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)


class Flaky:
    """Raises ``errors`` in turn, then returns ``result``; counts the calls."""

    def __init__(self, *errors: Exception, result: str = "page") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def transient(exc: BaseException) -> Retryable | None:
    """ConnectionError("429 <seconds>") carries a Retry-After; other ConnectionErrors none."""
    if not isinstance(exc, ConnectionError):
        return None
    words = str(exc).split()
    return Retryable(words[0], float(words[1]) if len(words) > 1 else None)


# ----------------------------------------------------------------------------- Retry-After
@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (b"30", 30.0),
        (["12", "99"], 12.0),
        ("Wed, 21 Oct 2026 07:28:45 GMT", 45.0),  # IMF-fixdate, the preferred format
        ("Wednesday, 21-Oct-26 07:29:00 GMT", 60.0),  # obsolete RFC 850 format
        ("Wed Oct 21 07:30:00 2026", 120.0),  # obsolete asctime format (GMT by definition)
        ("Wed, 21 Oct 2026 07:00:00 GMT", 0.0),  # a date in the past: go now
    ],
)
def test_retry_after_is_read_as_delta_seconds_or_an_http_date(value, seconds):
    assert parse_retry_after(value, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "nan", "inf", [], "Wed, 99 Foo 2026"])
def test_an_unusable_retry_after_is_none(value):
    assert parse_retry_after(value, now=NOW) is None


def test_the_retry_after_header_is_found_in_any_capitalisation():
    assert retry_after_from({"retry-after": "3"}) == 3.0
    assert retry_after_from(CaseInsensitiveDict({"RETRY-AFTER": "4"})) == 4.0
    assert retry_after_from([("Retry-After", "5")]) == 5.0
    assert retry_after_from({"Content-Type": "text/plain"}) is None and retry_after_from(None) is None


def test_a_target_answering_429_with_an_http_date_gives_the_time_until_that_date():
    """The deliveries' own parser ignored HTTP dates (float() or nothing); now both forms count."""
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    with pytest.raises(TransientDeliveryError) as raised:
        classify_http(429, "slow down", "Slack webhook", {"Retry-After": later})
    assert 87 <= raised.value.retry_after <= 90
    verdict = classify_delivery_error(raised.value)
    assert verdict is not None and verdict.retry_after == raised.value.retry_after


# ----------------------------------------------------------------------------- waiting
def test_retry_after_is_honoured_exactly_and_backoff_is_exponential_with_bounded_jitter():
    waits: list[float] = []
    operation = Flaky(ConnectionError("429 2"), ConnectionError("503"), ConnectionError("503"))
    policy = RetryPolicy(attempts=4, base_delay=0.5, jitter=1.0)
    assert call_with_retries(operation, describe="GET x", classify=transient, policy=policy, sleep=waits.append) == "page"
    assert operation.calls == 4
    assert waits[0] == 2.0  # the server's Retry-After
    assert 1.0 <= waits[1] <= 1.5 and 2.0 <= waits[2] <= 2.5  # 0.5 x 2^n plus up to one base delay
    assert all(type(w) is float for w in waits)


def test_without_jitter_the_backoff_is_exact_and_capped():
    waits: list[float] = []
    operation = Flaky(*[ConnectionError("503") for _ in range(5)])
    policy = RetryPolicy(attempts=6, base_delay=1.0, max_delay=5.0, jitter=0.0)
    call_with_retries(operation, describe="GET x", classify=transient, policy=policy, sleep=waits.append)
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_spreads_the_waits_of_clients_retrying_together():
    firsts = set()
    for _ in range(20):
        waits: list[float] = []
        call_with_retries(Flaky(ConnectionError("503")), describe="GET x", classify=transient,
                          policy=RetryPolicy(base_delay=1.0), sleep=waits.append)
        firsts.add(waits[0])
        assert 1.0 <= waits[0] <= 2.0
    assert len(firsts) > 1


# ----------------------------------------------------------------------------- giving up
def test_errors_that_are_not_transient_are_raised_at_once_unchanged():
    waits: list[float] = []
    operation = Flaky(KeyError("id"))
    with pytest.raises(KeyError):
        call_with_retries(operation, describe="GET x", classify=transient, sleep=waits.append)
    assert (operation.calls, waits) == (1, [])


def test_the_attempts_run_out_with_an_error_naming_the_operation_and_the_last_error():
    waits: list[float] = []
    operation = Flaky(*[ConnectionError("503") for _ in range(10)])
    with pytest.raises(RetriesExhausted, match=r"GET x failed after 3 attempt\(s\) .* last error: 503") as raised:
        call_with_retries(operation, describe="GET x", classify=transient,
                          policy=RetryPolicy(attempts=3, base_delay=0.01), sleep=waits.append)
    assert operation.calls == 3 and len(waits) == 2
    assert raised.value.attempts == 3 and isinstance(raised.value.last_error, ConnectionError)
    assert raised.value.__cause__ is raised.value.last_error


def test_a_retry_after_beyond_the_policy_ends_the_retries_at_once():
    waits: list[float] = []
    operation = Flaky(ConnectionError("429 900"))
    with pytest.raises(RetriesExhausted, match="asked to wait 900s .* longer than the 300s"):
        call_with_retries(operation, describe="GET y", classify=transient, sleep=waits.append)
    assert (operation.calls, waits) == (1, [])


def test_the_sleep_budget_bounds_the_total_wait():
    waits: list[float] = []
    operation = Flaky(*[ConnectionError("429 40") for _ in range(10)])
    with pytest.raises(RetriesExhausted, match=r"failed after 3 attempt\(s\) and 80.0s of waiting"):
        call_with_retries(operation, describe="GET z", classify=transient,
                          policy=RetryPolicy(attempts=10, budget=100), sleep=waits.append)
    assert waits == [40.0, 40.0]


def test_a_policy_that_cannot_try_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(attempts=0)
