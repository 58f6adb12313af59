"""Extraction of Stripe customers, subscriptions, invoices and disputes into the warehouse.

The client is the official SDK's ``stripe.StripeClient``, built by ``StripeHook`` from an Airflow
connection (conn type ``stripe``: password = secret or restricted API key, extra ``api_base`` to
reach another host such as the sandbox, optional extras ``max_network_retries`` and
``timeout``). Responses have the shapes of the API version the SDK pins (``stripe.api_version``);
``tests/contracts/test_stripe_contract.py`` checks every field read here and every parameter
sent against the SDK's own type definitions.

Incremental by creation time. Stripe lists cannot be filtered by "changed since", only by
``created``, so each object has a watermark: the end of the last ``created`` window fully stored
(ISO timestamp, exclusive). A run reads ``created >= watermark`` and ``< bound`` in windows of at
most ``window`` (31 days), each window's pages upserted one at a time and its watermark written
in the transaction of its last page; a failed run leaves the watermark at the last complete
window and the next run reads the rest again (upserts make repeats harmless). The first run
reads everything before the bound as one window. Windows are half-open, ``[start, bound)``.
The bound is ``until`` (the exclusive end of the data interval), but never later than the
moment the read starts minus ``sources.window.SAFETY_LAG`` (``read_bound``): an object created
while the run is in progress, or stamped a few seconds early by a source clock behind ours, is
after the watermark and lands in the next run. Watermarks only move forward
(``advance_time_watermark``: an overlapping run that read less far leaves them).

Objects change after creation - an invoice is paid or marked uncollectible, a subscription is
canceled, a dispute is won or lost, a customer's metadata (our crosswalk keys) is edited - so
each run also *re-reads* what it already has, by the same ``created`` filter below the old
watermark: invoices and disputes created within ``REFRESH_LOOKBACK`` (120 days; their status
settles well within that), customers and subscriptions all of them (one per account: cheap, and a
subscription canceled years after it started must land). Those re-reads count as ``refreshed``,
not ``rows``. Production at a larger scale would follow the Events API (``/v1/events``) instead;
the sandbox does not serve it yet. The re-read brings the *current* state, so a status change
after ``until`` can land in a run for an earlier date; point-in-time signals therefore read the
event timestamps (``paid_at``, ``canceled_at``), not just ``status``.

Where the fields come from (API version of the pinned SDK):

* A subscription's seats, price and period are its licensed item's ``quantity``, ``price``
  (``unit_amount``, ``recurring.interval``) and ``current_period_end``; an item without a
  ``price`` falls back to its legacy ``plan`` (``amount``, ``interval``). Subscriptions carry no
  top-level ``plan``, ``quantity`` or period any more.
* An invoice's subscription is ``parent.subscription_details.subscription``. Its metered usage
  is the sum of the lines whose ``pricing.price_details.price`` is a metered price: the ids of
  the account's metered prices are listed once per run (``GET /v1/prices`` with
  ``recurring[usage_type]=metered``), because a line names its price only by id.
* Invoices no longer name a charge; their payments (``payments``, included by asking for
  ``expand[]=data.payments``) name a PaymentIntent, or a Charge when there is none. The
  ``charge_id`` columns of invoices and disputes therefore hold the id of *the payment*: the
  PaymentIntent (``pi_...``) when there is one, else the Charge (``ch_...``) - a dispute's own
  ``payment_intent`` or ``charge`` - which is what joins a dispute to the invoice it disputes.

Failures: malformed objects go to the quarantine with every bad field named. Transport failures
are retried by the SDK (``max_network_retries``: connection errors, timeouts, 5xx, and whatever
Stripe marks ``Stripe-Should-Retry: true``); 429 rate limits, which Stripe marks as not to be
retried blindly, are waited out by ``customer_health.retries`` honouring ``Retry-After``. When
retries run out, ``StripeExtractionError`` says what failed, and no watermark has moved past
stored data.
Errors a retry cannot fix are their own classes with ``retryable = False`` (the DAG fails them
at once): ``StripeAuthenticationError`` (401, the key is wrong), ``StripePermissionError`` (403,
a restricted key lacks a permission), ``StripeNotFoundError`` (404, usually an ``api_base`` that
is not the API root) and ``StripeRequestRejected`` (another 4xx: the request itself is wrong).
Each names the connection and what to check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from sqlalchemy import Engine, Table

from customer_health import settings
from customer_health.retries import (
    RetriesExhausted,
    Retryable,
    RetryPolicy,
    call_with_retries,
    retry_after_from,
)
from customer_health.sources.report import ExtractReport, FieldCheck, MalformedRecord, ObjectReport
from customer_health.sources.report import checked_choice as _choice
from customer_health.sources.report import checked_text as _text
from customer_health.sources.window import naive_utc, read_bound
from customer_health.warehouse.io import (
    advance_time_watermark,
    get_watermark,
    quarantine_records,
    upsert_rows,
    utcnow,
)
from customer_health.warehouse.schema import (
    raw_stripe_customer,
    raw_stripe_dispute,
    raw_stripe_invoice,
    raw_stripe_subscription,
)

try:  # the package works without Airflow; only StripeHook needs it
    from airflow.sdk import BaseHook
except ImportError:  # pragma: no cover
    BaseHook = object  # type: ignore[assignment,misc]

SOURCE = "stripe"
EPOCH = datetime(1970, 1, 1)
REFRESH_LOOKBACK = timedelta(days=120)
DEFAULT_WINDOW = timedelta(days=31)
INVOICE_STATUSES = frozenset({"draft", "open", "paid", "uncollectible", "void"})
SUBSCRIPTION_STATUSES = frozenset(
    {"incomplete", "incomplete_expired", "trialing", "active", "past_due", "canceled", "unpaid", "paused"}
)

log = logging.getLogger(__name__)


class StripeExtractionError(RuntimeError):
    """The Stripe extraction could not complete; the message says why and what to do.

    Retryable as such (rate limits or an outage that outlasted the SDK's retries); the
    subclasses below are the failures another attempt cannot fix.
    """

    retryable = True


class StripeAuthenticationError(StripeExtractionError):
    """Stripe refused the connection's API key (HTTP 401). A retry sends the same key."""

    retryable = False


class StripePermissionError(StripeExtractionError):
    """The connection's restricted key lacks a permission (HTTP 403). Not retryable until granted."""

    retryable = False


class StripeNotFoundError(StripeExtractionError):
    """HTTP 404: the URL (usually ``api_base``) or the object does not exist. Not retryable."""

    retryable = False


class StripeRequestRejected(StripeExtractionError):
    """Another 4xx: Stripe refused the request itself (a parameter it does not accept)."""

    retryable = False


# ----------------------------------------------------------------------------- parsing
def to_unix(value: datetime) -> int:
    """Unix seconds of a naive-UTC datetime."""
    return int(value.replace(tzinfo=UTC).timestamp())


def _timestamp(value: Any, field: str, *, required: bool = False) -> datetime | None:
    if value is None:
        if required:
            raise MalformedRecord(f"{field} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedRecord(f"{field} is not a unix timestamp: {value!r}")
    return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)


def _int(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedRecord(f"{field} is not an integer: {value!r}")
    return value


def _id(value: Any, field: str, *, required: bool = False, limit: int = 40) -> str | None:
    if isinstance(value, Mapping):  # an expanded object
        value = value.get("id")
    if value is None or value == "":
        if required:
            raise MalformedRecord(f"{field} is missing")
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise MalformedRecord(f"{field} is not an id of at most {limit} characters: {value!r}")
    return value






def _dig(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def customer_row(customer: Mapping[str, Any], extracted_at: datetime) -> dict[str, Any]:
    """A ``raw_stripe_customer`` row; the crosswalk keys come from the customer's metadata."""
    check = FieldCheck()
    metadata = customer.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        check.problem(f"metadata is not an object: {metadata!r}")
        metadata = {}
    return check.row(
        {
            "id": check(_id, customer.get("id"), "id", required=True),
            "email": check(_text, customer.get("email"), "email"),
            "name": check(_text, customer.get("name"), "name"),
            "salesforce_account_id": check(
                _id, metadata.get("salesforce_account_id"), "metadata.salesforce_account_id", limit=18
            ),
            "product_account_id": check(
                _id, metadata.get("product_account_id"), "metadata.product_account_id"
            ),
            "created_at": check(_timestamp, customer.get("created"), "created", required=True),
            "source_updated_at": None,  # Stripe keeps no modification time
            "is_deleted": bool(customer.get("deleted")),
            "extracted_at": extracted_at,
        }
    )


def _pricing(item: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """Where an item's price lives: its ``price``, else its legacy ``plan`` (name and object)."""
    for name in ("price", "plan"):
        value = item.get(name)
        if isinstance(value, Mapping):
            return name, value
    return "price", {}


def _usage_type(item: Mapping[str, Any]) -> Any:
    """``licensed`` or ``metered``: a Price says it under ``recurring``, a Plan at its top level."""
    name, pricing = _pricing(item)
    return _dig(pricing, "recurring", "usage_type") if name == "price" else pricing.get("usage_type")


def _seat_item(subscription: Mapping[str, Any]) -> Mapping[str, Any]:
    """The subscription's licensed (per-seat) item; metered items carry usage, not seats."""
    items = _dig(subscription, "items", "data") or []
    for item in items:
        if isinstance(item, Mapping) and _usage_type(item) != "metered":
            return item
    return items[0] if items and isinstance(items[0], Mapping) else {}


def subscription_row(subscription: Mapping[str, Any], extracted_at: datetime) -> dict[str, Any]:
    """A ``raw_stripe_subscription`` row: seats, price and period from the licensed item.

    The item's ``price`` gives ``unit_amount`` and ``recurring.interval``; an item without a
    price falls back to its legacy ``plan``, whose fields are ``amount`` and ``interval``.
    """
    check = FieldCheck()
    item = _seat_item(subscription)
    source, pricing = _pricing(item)
    if source == "price":
        amount, amount_field = pricing.get("unit_amount"), "items.price.unit_amount"
        interval, interval_field = _dig(pricing, "recurring", "interval"), "items.price.recurring.interval"
    else:
        amount, amount_field = pricing.get("amount"), "items.plan.amount"
        interval, interval_field = pricing.get("interval"), "items.plan.interval"
    return check.row(
        {
            "id": check(_id, subscription.get("id"), "id", required=True),
            "customer_id": check(_id, subscription.get("customer"), "customer", required=True),
            "status": check(_choice, subscription.get("status"), "status", SUBSCRIPTION_STATUSES),
            "quantity": check(_int, item.get("quantity"), "items.quantity"),
            "unit_amount": check(_int, amount, amount_field),
            "interval": check(_text, interval, interval_field, 10),
            "created_at": check(_timestamp, subscription.get("created"), "created", required=True),
            "canceled_at": check(_timestamp, subscription.get("canceled_at"), "canceled_at"),
            "cancel_at_period_end": bool(subscription.get("cancel_at_period_end")),
            "current_period_end": check(
                _timestamp, item.get("current_period_end"), "items.current_period_end"
            ),
            "source_updated_at": None,
            "is_deleted": False,
            "extracted_at": extracted_at,
        }
    )


def _payment_id(invoice: Mapping[str, Any], check: FieldCheck) -> str | None:
    """The invoice's payment: its PaymentIntent, else its Charge (see the module docstring).

    ``payments`` is there only when the list asked for ``expand[]=data.payments``; of several
    payments (a partial payment, a retry by another method) the paid one counts.
    """
    payments = [p for p in _dig(invoice, "payments", "data") or [] if isinstance(p, Mapping)]
    paid = [p for p in payments if p.get("status") == "paid"]
    for payment in paid or payments:
        details = payment.get("payment")
        if not isinstance(details, Mapping):
            continue
        key = check(_id, details.get("payment_intent"), "payments.payment.payment_intent") or check(
            _id, details.get("charge"), "payments.payment.charge"
        )
        if key:
            return key
    return None


def invoice_row(
    invoice: Mapping[str, Any], extracted_at: datetime, *, metered_prices: Collection[str]
) -> dict[str, Any]:
    """A ``raw_stripe_invoice`` row; ``usage_amount`` sums the lines of ``metered_prices``."""
    check = FieldCheck()
    lines = _dig(invoice, "lines", "data") or []
    if _dig(invoice, "lines", "has_more"):
        check.problem("lines has_more: more than the embedded lines; usage_amount would be incomplete")
    usage = 0
    for line in lines:
        if not isinstance(line, Mapping):
            continue
        price_field = "lines.pricing.price_details.price"
        price = check(_id, _dig(line, "pricing", "price_details", "price"), price_field)
        if price in metered_prices:
            usage += check(_int, line.get("amount"), f"lines[{line.get('id')}].amount") or 0
    subscription = _dig(invoice, "parent", "subscription_details", "subscription")
    return check.row(
        {
            "id": check(_id, invoice.get("id"), "id", required=True),
            "customer_id": check(_id, invoice.get("customer"), "customer", required=True),
            "subscription_id": check(_id, subscription, "parent.subscription_details.subscription"),
            "charge_id": _payment_id(invoice, check),
            "status": check(_choice, invoice.get("status"), "status", INVOICE_STATUSES),
            "subtotal": check(_int, invoice.get("subtotal"), "subtotal"),
            "usage_amount": usage,
            "amount_due": check(_int, invoice.get("amount_due"), "amount_due"),
            "amount_paid": check(_int, invoice.get("amount_paid"), "amount_paid"),
            "attempt_count": check(_int, invoice.get("attempt_count"), "attempt_count"),
            "created_at": check(_timestamp, invoice.get("created"), "created", required=True),
            "due_date": check(_timestamp, invoice.get("due_date"), "due_date"),
            "paid_at": check(
                _timestamp, _dig(invoice, "status_transitions", "paid_at"), "status_transitions.paid_at"
            ),
            "source_updated_at": None,
            "is_deleted": False,
            "extracted_at": extracted_at,
        }
    )


def dispute_row(dispute: Mapping[str, Any], extracted_at: datetime) -> dict[str, Any]:
    """A ``raw_stripe_dispute`` row."""
    check = FieldCheck()
    return check.row(
        {
            "id": check(_id, dispute.get("id"), "id", required=True),
            # the disputed payment, keyed like an invoice's (PaymentIntent, else Charge)
            "charge_id": check(_id, dispute.get("payment_intent"), "payment_intent")
            or check(_id, dispute.get("charge"), "charge"),
            "amount": check(_int, dispute.get("amount"), "amount"),
            "status": check(_text, dispute.get("status"), "status", 30),
            "reason": check(_text, dispute.get("reason"), "reason", 40),
            "created_at": check(_timestamp, dispute.get("created"), "created", required=True),
            "source_updated_at": None,
            "is_deleted": False,
            "extracted_at": extracted_at,
        }
    )


@dataclass(frozen=True)
class StripeObject:
    """One extracted Stripe object: its list service, table, row builder and re-read policy.

    ``context``, when set, is read once per run before the object's pages (one more list call)
    and passed to ``to_row`` as keyword arguments: invoices need the ids of the metered prices.
    """

    name: str  # the ``/v1/<name>`` list, the watermark object and the report key
    table: Table
    to_row: Callable[..., dict[str, Any]]  # (object, extracted_at, **context) -> row
    list_params: Mapping[str, Any]
    refresh_lookback: timedelta | None  # None: every object created before the watermark
    context: Callable[[StripePages], Mapping[str, Any]] | None = None


def metered_prices(pages: StripePages) -> dict[str, Any]:
    """``{"metered_prices": ids}``: every metered price of the account, active or not.

    An invoice line names its price only by id (``pricing.price_details.price``) and Stripe
    expands at most four levels deep, so the usage type cannot come with the invoice list.
    """
    ids = {
        price["id"]
        for page in pages.pages("prices", METERED_PRICE_PARAMS)
        for price in page
        if isinstance(price, Mapping) and isinstance(price.get("id"), str)
    }
    return {"metered_prices": frozenset(ids)}


METERED_PRICE_PARAMS: Mapping[str, Any] = {"limit": 100, "recurring": {"usage_type": "metered"}}
# Invoices include their payments only when asked (an "includable" field).
INVOICE_LIST_PARAMS: Mapping[str, Any] = {"expand": ["data.payments"]}

STRIPE_OBJECTS: tuple[StripeObject, ...] = (
    StripeObject("customers", raw_stripe_customer, customer_row, {}, None),
    StripeObject("subscriptions", raw_stripe_subscription, subscription_row, {"status": "all"}, None),
    StripeObject(
        "invoices", raw_stripe_invoice, invoice_row, INVOICE_LIST_PARAMS, REFRESH_LOOKBACK, metered_prices
    ),
    StripeObject("disputes", raw_stripe_dispute, dispute_row, {}, REFRESH_LOOKBACK),
)


# ----------------------------------------------------------------------------- transport
def classify_stripe_error(exc: BaseException) -> Retryable | None:
    """429s are waited out here (Retry-After); the SDK already retried everything else it should."""
    if isinstance(exc, stripe.RateLimitError):
        return Retryable(f"HTTP 429 {exc.code or 'rate_limit'}", retry_after_from(dict(exc.headers or {})))
    return None


def api_base_of(client: stripe.StripeClient) -> str:
    """The API root a client sends to (``api_base`` of the connection), for error messages."""
    options = getattr(getattr(client, "_requestor", None), "_options", None)
    return (getattr(options, "base_addresses", None) or {}).get("api") or stripe.DEFAULT_API_BASE


def _explain(
    exc: stripe.StripeError, describe: str, resource: str, conn_id: str | None, api_base: str
) -> StripeExtractionError:
    """The error to raise for ``exc``: its class says whether a retry can help, its text what to fix."""
    conn = f"connection '{conn_id}'" if conn_id else "the Stripe connection"
    said = f"HTTP {exc.http_status}: {exc.user_message or exc}"
    keep = "Watermarks stay at the last complete window."
    if exc.http_status == 401 or isinstance(exc, stripe.AuthenticationError):
        return StripeAuthenticationError(
            f"{describe}: Stripe rejected the API key of {conn} ({said}). Check the connection's "
            "password: a secret key (sk_live_/sk_test_...) or restricted key (rk_...) of the right "
            f"Stripe account and mode, not rolled or deleted. Retrying will not help. {keep}"
        )
    if exc.http_status == 403 or isinstance(exc, stripe.PermissionError):
        return StripePermissionError(
            f"{describe}: the API key of {conn} may not read {resource} ({said}). Give the restricted "
            f"key Read access to {resource} (Stripe dashboard, Developers > API keys) or use a key "
            f"that has it. Retrying will not help. {keep}"
        )
    if exc.http_status == 404:
        return StripeNotFoundError(
            f"{describe}: Stripe answered 404 Not Found at {api_base} ({said}): that URL does not "
            f"exist there. Check the api_base extra of {conn}: it must be the root of the Stripe "
            f"API (https://api.stripe.com, without /v1). Retrying will not help. {keep}"
        )
    if isinstance(exc, stripe.APIConnectionError):
        return StripeExtractionError(
            f"{describe}: Stripe could not be reached at {api_base} after the SDK's retries "
            f"({exc.user_message}); check the api_base extra of {conn} and the network. {keep}"
        )
    if isinstance(exc, stripe.APIError) or (exc.http_status or 0) >= 500:
        return StripeExtractionError(
            f"{describe}: Stripe kept failing with HTTP {exc.http_status} after the SDK's retries; "
            f"try again later. {keep}"
        )
    return StripeRequestRejected(
        f"{describe}: Stripe refused the request ({said}{', code ' + exc.code if exc.code else ''}); "
        f"the same request will be refused again. {keep}"
    )


class StripePages:
    """List pages of one Stripe object, one request at a time, with bounded 429 waits.

    ``conn_id`` names the Airflow connection in error messages.
    """

    def __init__(
        self,
        client: stripe.StripeClient,
        policy: RetryPolicy,
        logger: logging.Logger,
        conn_id: str | None = None,
    ) -> None:
        self.client = client
        self.policy = policy
        self.logger = logger
        self.conn_id = conn_id

    def _fetch(self, request: Callable[[], Any], describe: str, resource: str) -> Any:
        try:
            return call_with_retries(
                request,
                describe=describe,
                classify=classify_stripe_error,
                policy=self.policy,
                logger=self.logger,
            )
        except RetriesExhausted as exc:
            raise StripeExtractionError(
                f"{exc} Stripe is throttling this key; nothing past the last committed page was recorded, "
                "so re-running the task resumes where it stopped."
            ) from exc
        except stripe.StripeError as exc:
            raise _explain(exc, describe, resource, self.conn_id, api_base_of(self.client)) from exc

    def pages(self, name: str, params: Mapping[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """Each page of ``GET /v1/<name>`` with ``params``, as plain dicts, newest first.

        Pages are requested through the SDK (``StripeClient.raw_request``: its authentication,
        network retries and error types) but read as the JSON they are: building a
        ``StripeObject`` for every nested value only to turn it back into a dict cost about
        60% of the extraction's time (a 5,000-account company: 31 s of 52 s).
        Pagination is Stripe's: ``starting_after`` the last id of the previous page.
        """
        created = params.get("created")
        describe = f"Stripe GET /v1/{name}" + (f" created {dict(created)}" if created else "")
        query = dict(params)
        while True:
            response = self._fetch(
                lambda: self.client.raw_request("get", f"/v1/{name}", **query),  # noqa: B023 - called at once
                describe,
                name,
            )
            body = response.data
            if not isinstance(body, dict) or body.get("object") != "list" or not isinstance(body.get("data"), list):
                got = f"keys {sorted(body)[:8]}" if isinstance(body, dict) else type(body).__name__
                raise StripeExtractionError(
                    f"{describe}: the response is not a Stripe list ({got}); check that api_base points at the Stripe API"
                )
            items = body["data"]
            yield items
            if not body.get("has_more") or not items:
                return
            query = {**dict(params), "starting_after": items[-1]["id"]}


def created_windows(
    watermark: datetime | None, until: datetime, window: timedelta
) -> list[tuple[datetime, datetime]]:
    """Half-open ``created`` windows from the watermark to ``until``; one window on the first run."""
    if watermark is None:
        return [(EPOCH, until)] if until > EPOCH else []
    windows = []
    start = watermark
    while start < until:
        end = min(start + window, until)
        windows.append((start, end))
        start = end
    return windows


# ----------------------------------------------------------------------------- extraction
def extract_stripe(
    client: stripe.StripeClient,
    engine: Engine,
    until: datetime,
    *,
    log: logging.Logger = log,
    page_size: int = 100,
    window: timedelta = DEFAULT_WINDOW,
    retry: RetryPolicy = RetryPolicy(),
    objects: tuple[StripeObject, ...] = STRIPE_OBJECTS,
    read_started: datetime | None = None,
    conn_id: str | None = None,
) -> ExtractReport:
    """Extract Stripe objects created before ``until`` (exclusive), plus the re-read of older ones.

    The windows end at ``read_bound(until, read_started)``: never later than the moment the read
    starts (default now) minus the safety lag. Pages stream one at a time and are committed as
    they come; see the module docstring for the windows, the watermarks and the re-read of
    objects that change after creation. ``conn_id`` names the connection in error messages
    (default: the one a ``StripeHook`` client was built from).
    """
    bound = read_bound(naive_utc(until), read_started)
    pages = StripePages(client, retry, log, conn_id or getattr(client, "conn_id", None))
    report = ExtractReport(SOURCE)
    extracted_at = utcnow()
    for spec in objects:
        _extract_object(pages, engine, spec, bound, report.object(spec.name), extracted_at, page_size, window)
    log.info("Stripe extraction up to %s: %s", bound.isoformat(), report.as_dict())
    return report


def _extract_object(
    pages: StripePages,
    engine: Engine,
    spec: StripeObject,
    until: datetime,
    report: ObjectReport,
    extracted_at: datetime,
    page_size: int,
    window: timedelta,
) -> None:
    with engine.connect() as conn:
        report.watermark_before = get_watermark(conn, SOURCE, spec.name)
    report.watermark_after = report.watermark_before
    old = datetime.fromisoformat(report.watermark_before) if report.watermark_before else None
    windows = created_windows(old, until, window)
    refresh_start = EPOCH if spec.refresh_lookback is None else max(EPOCH, until - spec.refresh_lookback)
    refresh_end = min(old, until) if old is not None else EPOCH
    if not windows and refresh_start >= refresh_end:
        return
    context = dict(spec.context(pages)) if spec.context is not None else {}
    for start, end in windows:
        rows, stored = _read_window(
            pages, engine, spec, start, end, report, extracted_at, page_size, context, watermark=end
        )
        report.rows += rows
        report.watermark_after = stored
    if refresh_start < refresh_end:  # the re-read of objects created before this run's window
        span = (refresh_start, refresh_end)
        rows, _ = _read_window(
            pages, engine, spec, *span, report, extracted_at, page_size, context, watermark=None
        )
        report.refreshed += rows


def _read_window(
    pages: StripePages,
    engine: Engine,
    spec: StripeObject,
    start: datetime,
    end: datetime,
    report: ObjectReport,
    extracted_at: datetime,
    page_size: int,
    context: Mapping[str, Any],
    *,
    watermark: datetime | None,
) -> tuple[int, str | None]:
    """Store every object created in ``[start, end)``; move the watermark to ``watermark`` (only
    forward) with the last page. Returns the rows written and the watermark now stored."""
    params = {**spec.list_params, "limit": page_size, "created": {"gte": to_unix(start), "lt": to_unix(end)}}
    written = 0
    previous: set[Any] = set()
    for objects in pages.pages(spec.name, params):
        report.pages += 1
        rows, bad = [], []
        for obj in objects:
            if obj.get("id") in previous:
                continue  # the same page served twice
            try:
                rows.append(spec.to_row(obj, extracted_at, **context))
            except MalformedRecord as exc:
                bad.append((str(obj.get("id")), f"{spec.name[:-1]}: {exc}", obj))
        previous = {obj.get("id") for obj in objects}
        with engine.begin() as conn:
            upsert_rows(conn, spec.table, rows)
            quarantine_records(conn, SOURCE, spec.name, bad)
        written += len(rows)
        report.quarantined += len(bad)
    if watermark is None:
        return written, None
    with engine.begin() as conn:  # only once every page of the window is committed
        stored = advance_time_watermark(conn, SOURCE, spec.name, watermark.isoformat(), watermark, written)
    return written, stored


# ----------------------------------------------------------------------------- Airflow-facing
class ConnectionStripeClient(stripe.StripeClient):
    """A ``stripe.StripeClient`` that remembers the Airflow connection it was built from."""

    def __init__(self, api_key: str, *, conn_id: str, **options: Any) -> None:
        super().__init__(api_key, **options)
        self.conn_id = conn_id


class StripeHook(BaseHook):
    """The Stripe SDK client of an Airflow connection (conn type ``stripe``).

    Connection: password = secret or restricted key (``sk_...``/``rk_...``); extra ``api_base``
    (default Stripe's own), ``max_network_retries`` (default 3) and ``timeout`` seconds (default
    30). Example: ``AIRFLOW_CONN_HEALTH_STRIPE='{"conn_type": "stripe", "password": "sk_test_...",
    "extra": {"api_base": "http://127.0.0.1:18481"}}'``.
    """

    conn_name_attr = "stripe_conn_id"
    default_conn_name = "stripe_default"
    conn_type = "stripe"
    hook_name = "Stripe"

    def __init__(self, stripe_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.stripe_conn_id = stripe_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel fields for the Connection UI."""
        return {
            "hidden_fields": ["schema", "port", "login", "host"],
            "relabeling": {"password": "Secret API key"},
        }

    def get_conn(self) -> ConnectionStripeClient:
        """A ``stripe.StripeClient`` configured from the connection (and knowing its name)."""
        conn = self.get_connection(self.stripe_conn_id)
        api_key = conn.password or ""
        if not api_key.startswith(("sk_", "rk_")):
            raise ValueError(
                f"Connection '{self.stripe_conn_id}' has no Stripe secret key in its password "
                "(expected sk_... or rk_...); set it to the API key from the Stripe dashboard."
            )
        extra = conn.extra_dejson
        api_base = extra.get("api_base")
        return ConnectionStripeClient(
            api_key,
            conn_id=self.stripe_conn_id,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            max_network_retries=int(extra.get("max_network_retries", 3)),
            http_client=stripe.RequestsClient(timeout=float(extra.get("timeout", 30))),
        )


def run_stripe_extraction(
    conn_id: str = settings.STRIPE_CONN_ID, engine: Engine | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """Extract Stripe up to ``until`` with the connection ``conn_id``; counts for XCom."""
    if until is None:
        raise ValueError("run_stripe_extraction needs `until` (the data interval's end), got None")
    if engine is None:
        from customer_health.warehouse.engine import get_engine

        engine = get_engine()
    return extract_stripe(StripeHook(conn_id).get_conn(), engine, until).as_dict()
