"""Stripe extraction: the stripe SDK against the loopback Stripe API, into SQLite and PostgreSQL.

The store is seeded directly (small, exact data) and only the Stripe app is served, so every
fault is placed precisely. Whether the sandbox's shapes are Stripe's is checked apart, against
the SDK's own type definitions (``tests/contracts/test_stripe_contract.py``).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import stripe
from sqlalchemy import func, insert, select, update

from customer_health.retries import RetryPolicy
from customer_health.sources.stripe import (
    StripeAuthenticationError,
    StripeExtractionError,
    StripeHook,
    StripeNotFoundError,
    StripePermissionError,
    extract_stripe,
    run_stripe_extraction,
    subscription_row,
)
from customer_health.sources.window import SAFETY_LAG
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.io import get_watermark
from customer_health.warehouse.schema import (
    quarantine,
    raw_stripe_customer,
    raw_stripe_dispute,
    raw_stripe_invoice,
    raw_stripe_subscription,
)
from health_sandbox.http import Response, SandboxApp, serve
from health_sandbox.server import Sandbox
from health_sandbox.store import (
    sandbox_writes,
    store_engine,
    stripe_customer,
    stripe_dispute,
    stripe_invoice,
    stripe_subscription,
)
from health_sandbox.stripe_api import build_app, configure

T0 = datetime(2026, 1, 1)
UNTIL = T0 + timedelta(days=60)
CUSTOMERS = 17
INVOICES_PER_CUSTOMER = 3  # created 10, 30 and 50 days after T0 (same second for all customers)
INVOICES = CUSTOMERS * INVOICES_PER_CUSTOMER
DISPUTES = 5
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
SMALL_PAGES = {"page_size": 4, "retry": FAST}


def unix(value: datetime) -> int:
    return int(value.replace(tzinfo=UTC).timestamp())


def seed_stripe(store) -> None:
    """A small billing account: customers, their subscriptions, invoices with usage, disputes."""
    with store.begin() as conn:
        conn.execute(
            insert(stripe_customer),
            [
                {
                    "id": f"cus_{i:04d}",
                    "email": f"billing@customer{i}.example",
                    "name": f"Customer {i}",
                    "metadata": {"salesforce_account_id": f"001A{i:014d}", "product_account_id": f"acct_{i}"}
                    if i % 5
                    else {},
                    "created": unix(T0 - timedelta(days=300)) + i * 3600,
                }
                for i in range(CUSTOMERS)
            ],
        )
        conn.execute(
            insert(stripe_subscription),
            [
                {
                    "id": f"sub_{i:04d}",
                    "customer": f"cus_{i:04d}",
                    "status": "canceled" if i % 6 == 0 else "active",
                    "quantity": 10 + i,
                    "unit_amount": 2500,
                    "interval": "month",
                    "created": unix(T0 - timedelta(days=299)) + i * 3600,
                    "canceled_at": unix(T0 - timedelta(days=5)) if i % 6 == 0 else None,
                    "cancel_at_period_end": False,
                    "current_period_start": unix(T0),
                    "current_period_end": unix(T0 + timedelta(days=31)),
                }
                for i in range(CUSTOMERS)
            ],
        )
        conn.execute(
            insert(stripe_invoice),
            [
                {
                    "id": f"in_{i:04d}_{k}",
                    "customer": f"cus_{i:04d}",
                    "subscription": f"sub_{i:04d}",
                    "charge": f"ch_{i:04d}_{k}",
                    "status": "open" if k == 2 else "paid",
                    "subtotal": 30000,
                    "usage_amount": 1200 * k,
                    "amount_due": 30000,
                    "amount_paid": 0 if k == 2 else 30000,
                    "attempt_count": 1,
                    "created": unix(T0 + timedelta(days=10 + 20 * k)),
                    "due_date": None,
                    "paid_at": None if k == 2 else unix(T0 + timedelta(days=11 + 20 * k)),
                    "period_start": unix(T0 + timedelta(days=20 * k)),
                    "period_end": unix(T0 + timedelta(days=10 + 20 * k)),
                }
                for i in range(CUSTOMERS)
                for k in range(INVOICES_PER_CUSTOMER)
            ],
        )
        conn.execute(
            insert(stripe_dispute),
            [
                {
                    "id": f"dp_{j:04d}",
                    "charge": f"ch_{j:04d}_0",
                    "amount": 30000,
                    "status": "needs_response",
                    "reason": "fraudulent",
                    "created": unix(T0 + timedelta(days=12 + j)),
                }
                for j in range(DISPUTES)
            ],
        )


@pytest.fixture()
def stripe_sandbox(tmp_path):
    """The Stripe app served alone over a seeded store."""
    folder = tmp_path / "sandbox"
    store = store_engine(folder / "company.db")
    seed_stripe(store)
    running = serve(build_app(store, folder))
    yield Sandbox(folder=folder, store=store, servers={"stripe": running})
    running.stop()


def make_client(sandbox: Sandbox, *, retries: int = 2, timeout: float = 10.0) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_sandbox",
        base_addresses={"api": sandbox.servers["stripe"].base_url},
        max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


@pytest.fixture()
def client(stripe_sandbox) -> stripe.StripeClient:
    return make_client(stripe_sandbox)


@pytest.fixture()
def warehouse(warehouse_url):
    return engine_for(warehouse_url)


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def counts(engine) -> tuple[int, int, int, int]:
    tables = (raw_stripe_customer, raw_stripe_subscription, raw_stripe_invoice, raw_stripe_dispute)
    return tuple(count(engine, t) for t in tables)


def watermark(engine, obj: str) -> str | None:
    with engine.connect() as conn:
        return get_watermark(conn, "stripe", obj)


EVERYTHING = (CUSTOMERS, CUSTOMERS, INVOICES, DISPUTES)


# ----------------------------------------------------------------------------- completeness
def test_every_object_lands_exactly_once_across_many_small_pages(client, warehouse):
    report = extract_stripe(client, warehouse, UNTIL, **SMALL_PAGES)

    assert counts(warehouse) == EVERYTHING
    assert {name: o.rows for name, o in report.objects.items()} == dict(
        zip(("customers", "subscriptions", "invoices", "disputes"), EVERYTHING, strict=True)
    )
    assert report.objects["invoices"].pages >= INVOICES // 4
    assert report.quarantined == 0
    assert all(watermark(warehouse, name) == UNTIL.isoformat() for name in report.objects)


def test_invoice_lines_status_transitions_and_customer_metadata_fill_the_columns(client, warehouse):
    extract_stripe(client, warehouse, UNTIL, **SMALL_PAGES)

    with warehouse.connect() as conn:
        invoice = conn.execute(select(raw_stripe_invoice).where(raw_stripe_invoice.c.id == "in_0003_1")).one()
        customer = conn.execute(
            select(raw_stripe_customer).where(raw_stripe_customer.c.id == "cus_0003")
        ).one()
        unmapped = conn.execute(
            select(raw_stripe_customer).where(raw_stripe_customer.c.id == "cus_0005")
        ).one()
        canceled = conn.execute(
            select(raw_stripe_subscription).where(raw_stripe_subscription.c.id == "sub_0006")
        ).one()
    # Invoices name their payment's PaymentIntent (the sandbox pairs charge ch_X with pi_X)
    assert (invoice.subscription_id, invoice.charge_id, invoice.status) == ("sub_0003", "pi_0003_1", "paid")
    assert (invoice.subtotal, invoice.usage_amount, invoice.amount_paid) == (30000, 1200, 30000)
    assert invoice.paid_at == T0 + timedelta(days=31)
    assert invoice.created_at == T0 + timedelta(days=30)
    assert (customer.salesforce_account_id, customer.product_account_id) == (f"001A{3:014d}", "acct_3")
    assert unmapped.salesforce_account_id is None
    assert (canceled.status, canceled.quantity, canceled.unit_amount, canceled.interval) == (
        "canceled",
        16,
        2500,
        "month",
    )
    assert canceled.canceled_at == T0 - timedelta(days=5)
    assert canceled.current_period_end == T0 + timedelta(days=31)


def test_every_dispute_joins_the_invoice_whose_payment_it_disputes(client, warehouse):
    extract_stripe(client, warehouse, UNTIL, **SMALL_PAGES)

    with warehouse.connect() as conn:
        joined = conn.execute(
            select(raw_stripe_dispute.c.id, raw_stripe_invoice.c.id).join(
                raw_stripe_invoice, raw_stripe_invoice.c.charge_id == raw_stripe_dispute.c.charge_id
            )
        ).fetchall()
    assert sorted(joined) == [(f"dp_{j:04d}", f"in_{j:04d}_0") for j in range(DISPUTES)]


def test_a_subscription_item_without_a_price_is_priced_by_its_plan_s_amount(client):
    """Issue #16.6: the fallback read ``plan.unit_amount``; a Plan's field is ``amount``."""
    served = client.raw_request("get", "/v1/subscriptions", limit=1).data["data"][0]
    seat_item = served["items"]["data"][0]
    del seat_item["price"]  # an item of a plan-based integration: the plan alone prices it
    assert seat_item["plan"]["object"] == "plan"

    row = subscription_row(served, datetime(2026, 3, 1))

    assert (row["unit_amount"], row["interval"], row["quantity"]) == (2500, "month", seat_item["quantity"])


def test_rerun_of_the_same_interval_changes_no_counts(client, warehouse):
    extract_stripe(client, warehouse, UNTIL, **SMALL_PAGES)

    again = extract_stripe(client, warehouse, UNTIL, **SMALL_PAGES)

    assert counts(warehouse) == EVERYTHING
    assert again.rows == 0
    assert again.objects["invoices"].refreshed == INVOICES  # all within the 120-day re-read
    assert all(watermark(warehouse, name) == UNTIL.isoformat() for name in again.objects)


def test_objects_created_at_or_after_until_are_not_stored(client, warehouse):
    until = T0 + timedelta(days=30)  # the day-30 invoices are created exactly at `until`

    extract_stripe(client, warehouse, until, **SMALL_PAGES)

    assert count(warehouse, raw_stripe_invoice) == CUSTOMERS
    with warehouse.connect() as conn:
        assert conn.execute(select(func.max(raw_stripe_invoice.c.created_at))).scalar_one() < until


def test_incremental_run_reads_only_new_windows_and_picks_up_new_objects(client, stripe_sandbox, warehouse):
    extract_stripe(client, warehouse, T0 + timedelta(days=20), **SMALL_PAGES)
    with stripe_sandbox.store.begin() as conn:
        conn.execute(
            insert(stripe_dispute).values(
                id="dp_late",
                charge="ch_0001_1",
                amount=500,
                status="warning_needs_response",
                reason="general",
                created=unix(T0 + timedelta(days=45)),
            )
        )

    report = extract_stripe(client, warehouse, UNTIL, window=timedelta(days=7), **SMALL_PAGES)

    assert report.objects["invoices"].rows == INVOICES - CUSTOMERS
    assert report.objects["disputes"].rows == 1
    assert report.objects["customers"].rows == 0
    assert counts(warehouse) == (CUSTOMERS, CUSTOMERS, INVOICES, DISPUTES + 1)
    assert watermark(warehouse, "invoices") == UNTIL.isoformat()


def test_status_changes_after_creation_land_through_the_reread(client, stripe_sandbox, warehouse):
    extract_stripe(client, warehouse, UNTIL, **SMALL_PAGES)
    with stripe_sandbox.store.begin() as conn:
        conn.execute(
            update(stripe_invoice)
            .where(stripe_invoice.c.id == "in_0002_2")
            .values(status="paid", amount_paid=30000, paid_at=unix(UNTIL + timedelta(hours=2)))
        )
        conn.execute(
            update(stripe_subscription)
            .where(stripe_subscription.c.id == "sub_0001")
            .values(status="canceled", canceled_at=unix(UNTIL + timedelta(hours=3)))
        )

    extract_stripe(client, warehouse, UNTIL + timedelta(days=1), **SMALL_PAGES)

    with warehouse.connect() as conn:
        invoice = conn.execute(select(raw_stripe_invoice).where(raw_stripe_invoice.c.id == "in_0002_2")).one()
        subscription = conn.execute(
            select(raw_stripe_subscription.c.status).where(raw_stripe_subscription.c.id == "sub_0001")
        ).scalar_one()
    assert (invoice.status, invoice.paid_at) == ("paid", UNTIL + timedelta(hours=2))
    assert subscription == "canceled"  # created ~300 days ago: subscriptions are re-read in full
    assert counts(warehouse) == EVERYTHING


def test_a_run_never_moves_a_watermark_past_the_moment_it_read(client, stripe_sandbox, warehouse):
    """Issue #16.1. A run for today (its interval ends at midnight, in the future) while the
    account changes under it: an invoice is created and another paid while the invoices are
    paged, on a Stripe clock five seconds behind ours. The watermark stops a safety lag before
    the read began, so the new invoice is after it and lands in the next run as a new row.
    (A watermark at the interval end, or even at the read's start, would pass it: it was
    created before both, yet after its page was read.)"""
    configure(stripe_sandbox.store, clock_skew=-5)
    stripe_sandbox.inject_fault("stripe", "concurrent_change", path_regex="/v1/invoices", times=1, skip=1)
    started = datetime.now(UTC).replace(tzinfo=None)
    midnight = datetime.combine(started.date() + timedelta(days=1), datetime.min.time())

    first = extract_stripe(client, warehouse, midnight, read_started=started, **SMALL_PAGES)

    marks = {name: datetime.fromisoformat(watermark(warehouse, name)) for name in first.objects}
    assert marks == dict.fromkeys(first.objects, started - SAFETY_LAG)
    with stripe_sandbox.store.connect() as conn:
        late = conn.execute(
            select(stripe_invoice).where(stripe_invoice.c.id.like("%\\_c%", escape="\\"))
        ).one()
        paid = conn.execute(
            select(stripe_invoice.c.id).where(
                stripe_invoice.c.status == "paid", stripe_invoice.c.created > unix(T0 + timedelta(days=40))
            )
        ).scalar_one()
    assert unix(started) - 10 <= late.created < unix(started)  # stamped by the lagging clock
    assert late.created >= unix(marks["invoices"])  # after the watermark: not lost
    assert count(warehouse, raw_stripe_invoice) == INVOICES
    assert stored_status(warehouse, paid) == "open"  # read before it was paid

    later = started + timedelta(minutes=10)  # the next run
    second = extract_stripe(client, warehouse, midnight, read_started=later, **SMALL_PAGES)

    assert second.objects["invoices"].rows == 1
    assert watermark(warehouse, "invoices") == (later - SAFETY_LAG).isoformat()
    assert stored_status(warehouse, late.id) == "open"


def stored_status(engine, invoice_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            select(raw_stripe_invoice.c.status).where(raw_stripe_invoice.c.id == invoice_id)
        ).scalar_one_or_none()


def test_a_backfill_never_moves_a_watermark_back(client, warehouse):
    extract_stripe(client, warehouse, UNTIL, **SMALL_PAGES)

    report = extract_stripe(client, warehouse, T0 + timedelta(days=20), **SMALL_PAGES)

    assert report.rows == 0
    assert all(watermark(warehouse, name) == UNTIL.isoformat() for name in report.objects)


# ----------------------------------------------------------------------------- faults
def test_rate_limit_with_retry_after_is_honoured(client, stripe_sandbox, warehouse):
    stripe_sandbox.inject_fault(
        "stripe", "rate_limit", path_regex="/v1/invoices", times=2, retry_after=1, skip=2
    )

    started = time.monotonic()
    extract_stripe(client, warehouse, UNTIL, **SMALL_PAGES)

    assert time.monotonic() - started >= 2.0
    assert counts(warehouse) == EVERYTHING


def test_rate_limiting_that_outlasts_the_retries_fails_clearly_without_moving_the_watermark(
    client, stripe_sandbox, warehouse
):
    extract_stripe(client, warehouse, T0 + timedelta(days=20), **SMALL_PAGES)
    stripe_sandbox.inject_fault(
        "stripe", "rate_limit", path_regex="/v1/invoices", times=100, retry_after=1, skip=1
    )

    with pytest.raises(
        StripeExtractionError, match=r"/v1/invoices.*failed after 3 attempt\(s\).*429 rate_limit"
    ):
        extract_stripe(client, warehouse, UNTIL, **SMALL_PAGES)

    assert watermark(warehouse, "invoices") == (T0 + timedelta(days=20)).isoformat()
    assert watermark(warehouse, "customers") == UNTIL.isoformat()  # extracted before invoices


def test_server_errors_are_retried_by_the_sdk_and_the_run_completes(client, stripe_sandbox, warehouse):
    stripe_sandbox.inject_fault("stripe", "server_error", path_regex="/v1/invoices", times=2, skip=3)

    report = extract_stripe(client, warehouse, UNTIL, **SMALL_PAGES)

    assert report.objects["invoices"].rows == INVOICES
    assert counts(warehouse) == EVERYTHING


def test_persistent_server_errors_fail_clearly_without_moving_the_watermark(stripe_sandbox, warehouse):
    client = make_client(stripe_sandbox, retries=1)
    stripe_sandbox.inject_fault("stripe", "server_error", path_regex="/v1/subscriptions", times=100)

    with pytest.raises(StripeExtractionError, match="kept failing with HTTP 500"):
        extract_stripe(client, warehouse, UNTIL, **SMALL_PAGES)

    assert watermark(warehouse, "customers") == UNTIL.isoformat()
    assert watermark(warehouse, "subscriptions") is None
    assert count(warehouse, raw_stripe_subscription) == 0


def test_a_server_that_hangs_times_out_and_the_sdk_retries(stripe_sandbox, warehouse):
    client = make_client(stripe_sandbox, retries=2, timeout=0.5)
    stripe_sandbox.inject_fault("stripe", "timeout", path_regex="/v1/disputes", times=1, retry_after=1.5)

    report = extract_stripe(client, warehouse, UNTIL, **SMALL_PAGES)

    assert report.objects["disputes"].rows == DISPUTES


def test_malformed_objects_are_quarantined_and_counted_and_the_rest_continues(
    client, stripe_sandbox, warehouse
):
    stripe_sandbox.inject_fault("stripe", "malformed", path_regex="/v1/invoices", times=1, skip=2)

    report = extract_stripe(client, warehouse, UNTIL, **SMALL_PAGES)

    assert report.objects["invoices"].quarantined == 1
    assert count(warehouse, raw_stripe_invoice) == INVOICES - 1
    with warehouse.connect() as conn:
        reason = conn.execute(select(quarantine.c.reason).where(quarantine.c.source == "stripe")).scalar_one()
    assert "created is not a unix timestamp: 'garbage'" in reason
    assert "amount_due is not an integer: 'lots'" in reason


def test_a_page_served_twice_stores_each_object_once(client, stripe_sandbox, warehouse):
    stripe_sandbox.inject_fault("stripe", "duplicate_page", path_regex="/v1/invoices", times=2)

    report = extract_stripe(client, warehouse, UNTIL, **SMALL_PAGES)

    assert report.objects["invoices"].rows == INVOICES
    assert report.objects["invoices"].pages == -(-INVOICES // 4) + 2
    assert count(warehouse, raw_stripe_invoice) == INVOICES


# ----------------------------------------------------------------------------- the API itself
def customer_writes(stripe_sandbox) -> list:
    with stripe_sandbox.store.connect() as conn:
        return conn.execute(select(sandbox_writes).where(sandbox_writes.c.system == "stripe")).fetchall()


def test_idempotency_key_replays_the_stored_response_and_writes_once(client, stripe_sandbox):
    params = {"metadata": {"health_zone": "At Risk"}}
    options = {"idempotency_key": "health-cus_0001-2026-03-02"}

    first = client.v1.customers.update("cus_0001", params=params, options=options)
    replay = client.v1.customers.update("cus_0001", params=params, options=options)

    assert first.metadata["health_zone"] == "At Risk"
    assert replay.to_dict() == first.to_dict()
    assert replay.last_response.headers.get("Idempotent-Replayed") == "true"
    assert first.last_response.headers.get("Idempotent-Replayed") is None
    writes = customer_writes(stripe_sandbox)
    assert [(w.record_id, w.created) for w in writes] == [("cus_0001", True), ("cus_0001", False)]
    assert writes[0].idempotency_key == "health-cus_0001-2026-03-02"


def test_idempotency_key_reused_with_different_parameters_is_refused(client, stripe_sandbox):
    options = {"idempotency_key": "health-cus_0002-2026-03-02"}
    client.v1.customers.update("cus_0002", params={"metadata": {"health_zone": "Healthy"}}, options=options)

    with pytest.raises(stripe.IdempotencyError, match="same parameters"):
        client.v1.customers.update(
            "cus_0002", params={"metadata": {"health_zone": "Critical"}}, options=options
        )

    assert client.v1.customers.retrieve("cus_0002").metadata["health_zone"] == "Healthy"
    assert len(customer_writes(stripe_sandbox)) == 1


def test_lists_page_both_ways_and_filter_by_created(client):
    newest = client.v1.invoices.list(params={"limit": 5})
    older = client.v1.invoices.list(params={"limit": 5, "starting_after": newest.data[-1].id})
    back = client.v1.invoices.list(params={"limit": 5, "ending_before": older.data[0].id})
    window = client.v1.invoices.list(
        params={
            "limit": 100,
            "created": {"gte": unix(T0 + timedelta(days=30)), "lt": unix(T0 + timedelta(days=31))},
        }
    )
    active = client.v1.subscriptions.list(params={"limit": 100})

    assert [i.id for i in back.data] == [i.id for i in newest.data]
    assert newest.data[0].created >= older.data[-1].created
    assert {i.id[-1] for i in window.data} == {"1"} and len(window.data) == CUSTOMERS
    assert all(s.status != "canceled" for s in active.data)
    with pytest.raises(stripe.InvalidRequestError, match="No such customer"):
        client.v1.customers.retrieve("cus_missing")


def stripe_connection(monkeypatch, sandbox: Sandbox, key: str, api_base: str | None = None) -> None:
    """``health_stripe`` as an Airflow connection to the sandbox, with API key ``key``."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_HEALTH_STRIPE",
        json.dumps(
            {
                "conn_type": "stripe",
                "password": key,
                "extra": {
                    "api_base": api_base or sandbox.servers["stripe"].base_url,
                    "max_network_retries": 1,
                },
            }
        ),
    )


def test_a_wrong_api_key_fails_fast_naming_the_connection_and_what_to_check(
    stripe_sandbox, warehouse, monkeypatch
):
    """Issue #16.6: the sandbox took any sk_test_ key, so wrong credentials were never tested;
    a 401 must not look transient."""
    stripe_connection(monkeypatch, stripe_sandbox, "sk_test_51WrongKeyForAnotherAccount9z")

    with pytest.raises(StripeAuthenticationError) as failed:
        run_stripe_extraction("health_stripe", warehouse, UNTIL)

    error = failed.value
    assert error.retryable is False and isinstance(error, StripeExtractionError)
    assert "rejected the API key of connection 'health_stripe'" in str(error)
    assert "Check the connection's password" in str(error) and "Retrying will not help" in str(error)
    assert error.__cause__.http_status == 401
    assert error.__cause__.json_body == {  # Stripe's own words and shape
        "error": {
            "type": "invalid_request_error",
            "message": f"Invalid API Key provided: sk_test_{'*' * 25}nt9z",
        }
    }
    assert watermark(warehouse, "customers") is None


def test_a_key_from_no_account_at_all_is_refused_too(stripe_sandbox, warehouse):
    client = stripe.StripeClient(
        "pk_live_oops", base_addresses={"api": stripe_sandbox.servers["stripe"].base_url}
    )

    with pytest.raises(StripeAuthenticationError, match="rejected the API key of the Stripe connection"):
        extract_stripe(client, warehouse, UNTIL)


def test_a_restricted_key_without_a_permission_fails_fast_naming_what_to_grant(
    stripe_sandbox, warehouse, monkeypatch
):
    configure(
        stripe_sandbox.store,
        restricted_keys={
            "rk_test_51HealthReadOnly": [
                "rak_customer_read",
                "rak_subscription_read",
                "rak_invoice_read",
                "rak_price_read",
            ]
        },
    )
    stripe_connection(monkeypatch, stripe_sandbox, "rk_test_51HealthReadOnly")

    with pytest.raises(StripePermissionError) as failed:
        run_stripe_extraction("health_stripe", warehouse, UNTIL)

    assert failed.value.retryable is False
    assert "the API key of connection 'health_stripe' may not read disputes" in str(failed.value)
    assert "Having the 'rak_dispute_read' permission would allow this request to continue" in str(
        failed.value
    )
    assert "Give the restricted key Read access to disputes" in str(failed.value)
    assert failed.value.__cause__.http_status == 403
    assert watermark(warehouse, "invoices") == UNTIL.isoformat()  # what it may read is stored
    assert watermark(warehouse, "disputes") is None


def test_a_404_says_what_was_not_found_and_that_retrying_will_not_help(
    stripe_sandbox, warehouse, monkeypatch
):
    """Issue #16.6: a 404 was reported as "kept failing after retries, try again later"."""
    base = stripe_sandbox.servers["stripe"].base_url
    stripe_connection(monkeypatch, stripe_sandbox, "sk_test_sandbox", api_base=f"{base}/v1")  # a common slip

    with pytest.raises(StripeNotFoundError) as failed:
        run_stripe_extraction("health_stripe", warehouse, UNTIL)

    message = str(failed.value)
    assert failed.value.retryable is False
    assert f"404 Not Found at {base}/v1" in message and "/v1/v1/customers" in message
    assert "Check the api_base extra of connection 'health_stripe'" in message
    assert "Retrying will not help" in message and "try again later" not in message


def test_a_404_from_something_that_is_not_stripe_is_not_called_transient(warehouse, tmp_path):
    """An api_base pointing at another web server: its 404 is an HTML page, which the SDK turns
    into an APIError (the class of Stripe's 5xx) - still a 404, not an outage."""

    class Elsewhere(SandboxApp):
        def not_found(self, req):  # noqa: ANN001, ANN202
            return Response(
                404, raw=b"<html><body>404 Not Found</body></html>", headers={"Content-Type": "text/html"}
            )

    other = serve(Elsewhere("elsewhere", store_engine(tmp_path / "other.db")))
    try:
        client = stripe.StripeClient(
            "sk_test_sandbox", base_addresses={"api": other.base_url}, max_network_retries=1
        )
        with pytest.raises(StripeNotFoundError) as failed:
            extract_stripe(client, warehouse, UNTIL, retry=FAST)
    finally:
        other.stop()

    assert failed.value.retryable is False
    assert "try again later" not in str(failed.value) and "Retrying will not help" in str(failed.value)


# ----------------------------------------------------------------------------- Airflow
def test_the_stripe_hook_built_from_an_airflow_connection_extracts_from_the_sandbox(
    stripe_sandbox, warehouse, monkeypatch
):
    stripe_connection(monkeypatch, stripe_sandbox, "sk_test_sandbox")

    result = run_stripe_extraction("health_stripe", warehouse, UNTIL)

    assert result["source"] == "stripe"
    assert result["rows"] == sum(EVERYTHING)
    json.dumps(result)  # XCom-able


def test_the_stripe_hook_names_a_connection_without_a_secret_key(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BAD_STRIPE", json.dumps({"conn_type": "stripe", "password": "hunter2"}))

    with pytest.raises(ValueError, match="Connection 'bad_stripe' has no Stripe secret key"):
        StripeHook("bad_stripe").get_conn()


# ----------------------------------------------------------------------------- the generated company
def test_the_generated_company_extracts_completely_through_the_sandbox_connection(
    sandbox, sqlite_warehouse_url, monkeypatch
):
    from health_sandbox.connections import as_environment, sandbox_connections

    for name, value in as_environment(sandbox_connections(sandbox.endpoints)).items():
        monkeypatch.setenv(name, value)
    warehouse = engine_for(sqlite_warehouse_url)

    result = run_stripe_extraction("health_stripe", warehouse, datetime(2030, 1, 1))

    with sandbox.store.connect() as conn:
        expected = {
            name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in (
                ("customers", stripe_customer),
                ("subscriptions", stripe_subscription),
                ("invoices", stripe_invoice),
                ("disputes", stripe_dispute),
            )
        }
    assert {name: o["rows"] for name, o in result["objects"].items()} == expected
    assert result["quarantined"] == 0
    assert counts(warehouse) == tuple(expected.values())
