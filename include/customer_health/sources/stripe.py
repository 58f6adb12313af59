"""Extraction of Stripe customers, subscriptions, invoices and disputes into the warehouse.

The client is the official SDK's ``stripe.StripeClient``, built by ``StripeHook`` from an Airflow
connection (conn type ``stripe``: password = secret or restricted API key, extra ``api_base`` to
reach another host such as the sandbox, optional extras ``max_network_retries`` and
``timeout``).

Incremental by creation time. Stripe lists cannot be filtered by "changed since", only by
``created``, so each object has a watermark: the end of the last ``created`` window fully stored
(ISO timestamp, exclusive). A run reads ``created >= watermark`` and ``< until`` in windows of at
most ``window`` (31 days), each window's pages upserted one at a time and its watermark written
in the transaction of its last page; a failed run leaves the watermark at the last complete
window and the next run reads the rest again (upserts make repeats harmless). The first run
reads everything before ``until`` as one window. Windows are half-open, ``[start, until)``, like
every extraction's ``until`` (the exclusive end of the data interval), so a run never stores an
object created at or after ``until``.

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

Failures: malformed objects go to the quarantine with every bad field named. Transport failures
are retried by the SDK (``max_network_retries``: connection errors, timeouts, 5xx, and whatever
Stripe marks ``Stripe-Should-Retry: true``); 429 rate limits, which Stripe marks as not to be
retried blindly, are waited out by ``sources.retry`` honouring ``Retry-After``. When retries run
out, ``StripeExtractionError`` says what failed, and no watermark has moved past stored data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from sqlalchemy import Engine, Table

from customer_health import settings
from customer_health.sources.report import ExtractReport, FieldCheck, MalformedRecord, ObjectReport
from customer_health.sources.report import checked_choice as _choice
from customer_health.sources.report import checked_text as _text
from customer_health.sources.retry import (
    RetriesExhausted,
    Retryable,
    RetryPolicy,
    call_with_retries,
    retry_after_from,
)
from customer_health.warehouse.io import get_watermark, quarantine_records, set_watermark, upsert_rows, utcnow
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
    """The Stripe extraction could not complete; the message says why and what to do."""


# ----------------------------------------------------------------------------- parsing
def naive_utc(value: datetime) -> datetime:
    """``value`` as naive UTC (the warehouse convention); aware datetimes are converted."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


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


def _seat_item(subscription: Mapping[str, Any]) -> Mapping[str, Any]:
    """The subscription's licensed (per-seat) item; metered items carry usage, not seats."""
    items = _dig(subscription, "items", "data") or []
    for item in items:
        if isinstance(item, Mapping) and _dig(item, "price", "recurring", "usage_type") != "metered":
            return item
    return items[0] if items and isinstance(items[0], Mapping) else {}


def subscription_row(subscription: Mapping[str, Any], extracted_at: datetime) -> dict[str, Any]:
    """A ``raw_stripe_subscription`` row (seats, price and period from the seat item)."""
    check = FieldCheck()
    item = _seat_item(subscription)
    price = item.get("price") or subscription.get("plan") or {}
    interval = _dig(price, "recurring", "interval") or price.get("interval")
    period_end = item.get("current_period_end", subscription.get("current_period_end"))
    return check.row(
        {
            "id": check(_id, subscription.get("id"), "id", required=True),
            "customer_id": check(_id, subscription.get("customer"), "customer", required=True),
            "status": check(_choice, subscription.get("status"), "status", SUBSCRIPTION_STATUSES),
            "quantity": check(_int, item.get("quantity", subscription.get("quantity")), "quantity"),
            "unit_amount": check(_int, price.get("unit_amount"), "price.unit_amount"),
            "interval": check(_text, interval, "price.recurring.interval", 10),
            "created_at": check(_timestamp, subscription.get("created"), "created", required=True),
            "canceled_at": check(_timestamp, subscription.get("canceled_at"), "canceled_at"),
            "cancel_at_period_end": bool(subscription.get("cancel_at_period_end")),
            "current_period_end": check(_timestamp, period_end, "current_period_end"),
            "source_updated_at": None,
            "is_deleted": False,
            "extracted_at": extracted_at,
        }
    )


def invoice_row(invoice: Mapping[str, Any], extracted_at: datetime) -> dict[str, Any]:
    """A ``raw_stripe_invoice`` row; ``usage_amount`` sums the metered-usage lines."""
    check = FieldCheck()
    lines = _dig(invoice, "lines", "data") or []
    if _dig(invoice, "lines", "has_more"):
        check.problem("lines has_more: more than the embedded lines; usage_amount would be incomplete")
    usage = 0
    for line in lines:
        if isinstance(line, Mapping) and _dig(line, "price", "recurring", "usage_type") == "metered":
            usage += check(_int, line.get("amount"), f"lines[{line.get('id')}].amount") or 0
    subscription = invoice.get("subscription") or _dig(
        invoice, "parent", "subscription_details", "subscription"
    )
    return check.row(
        {
            "id": check(_id, invoice.get("id"), "id", required=True),
            "customer_id": check(_id, invoice.get("customer"), "customer", required=True),
            "subscription_id": check(_id, subscription, "subscription"),
            "charge_id": check(_id, invoice.get("charge"), "charge"),
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
            "charge_id": check(_id, dispute.get("charge"), "charge"),
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
    """One extracted Stripe object: its list service, table, row builder and re-read policy."""

    name: str  # the ``client.v1`` service, the watermark object and the report key
    table: Table
    to_row: Callable[[Mapping[str, Any], datetime], dict[str, Any]]
    list_params: Mapping[str, Any]
    refresh_lookback: timedelta | None  # None: every object created before the watermark


STRIPE_OBJECTS: tuple[StripeObject, ...] = (
    StripeObject("customers", raw_stripe_customer, customer_row, {}, None),
    StripeObject("subscriptions", raw_stripe_subscription, subscription_row, {"status": "all"}, None),
    StripeObject("invoices", raw_stripe_invoice, invoice_row, {}, REFRESH_LOOKBACK),
    StripeObject("disputes", raw_stripe_dispute, dispute_row, {}, REFRESH_LOOKBACK),
)


# ----------------------------------------------------------------------------- transport
def classify_stripe_error(exc: BaseException) -> Retryable | None:
    """429s are waited out here (Retry-After); the SDK already retried everything else it should."""
    if isinstance(exc, stripe.RateLimitError):
        return Retryable(f"HTTP 429 {exc.code or 'rate_limit'}", retry_after_from(dict(exc.headers or {})))
    return None


def _explain(exc: stripe.StripeError, describe: str) -> StripeExtractionError:
    if isinstance(exc, stripe.AuthenticationError):
        hint = "Stripe rejected the API key; check the password (sk_... or rk_...) of the Stripe connection"
    elif isinstance(exc, stripe.APIConnectionError):
        hint = f"Stripe could not be reached after the SDK's retries ({exc.user_message}); check api_base/network"
    elif isinstance(exc, stripe.APIError):
        hint = f"Stripe kept failing with HTTP {exc.http_status} after the SDK's retries; try again later"
    else:
        hint = f"Stripe refused it with HTTP {exc.http_status} {exc.code or ''}: {exc.user_message}"
    return StripeExtractionError(f"{describe}: {hint}. Watermarks stay at the last complete window.")


class StripePages:
    """List pages of one Stripe object, one request at a time, with bounded 429 waits."""

    def __init__(self, client: stripe.StripeClient, policy: RetryPolicy, logger: logging.Logger) -> None:
        self.client = client
        self.policy = policy
        self.logger = logger

    def _fetch(self, request: Callable[[], Any], describe: str) -> Any:
        try:
            return call_with_retries(
                request,
                describe=describe,
                classify=classify_stripe_error,
                policy=self.policy,
                logger=self.logger,
            )
        except RetriesExhausted as exc:
            raise StripeExtractionError(str(exc)) from exc
        except stripe.StripeError as exc:
            raise _explain(exc, describe) from exc

    def pages(self, name: str, params: Mapping[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """Each page of ``GET /v1/<name>`` with ``params``, as plain dicts, newest first.

        Pages are requested through the SDK (``StripeClient.raw_request``: its authentication,
        network retries and error types) but read as the JSON they are: building a
        ``StripeObject`` for every nested value only to turn it back into a dict cost about
        60% of the extraction's time (a 5,000-account company: 31 s of 52 s).
        Pagination is Stripe's: ``starting_after`` the last id of the previous page.
        """
        describe = f"Stripe GET /v1/{name} created {dict(params.get('created', {}))}"
        query = dict(params)
        while True:
            response = self._fetch(
                lambda: self.client.raw_request("get", f"/v1/{name}", **query),  # noqa: B023 - called at once
                describe,
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
) -> ExtractReport:
    """Extract Stripe objects created before ``until`` (exclusive), plus the re-read of older ones.

    Pages stream one at a time and are committed as they come; see the module docstring for the
    windows, the watermarks and the re-read of objects that change after creation.
    """
    until = naive_utc(until)
    pages = StripePages(client, retry, log)
    report = ExtractReport(SOURCE)
    extracted_at = utcnow()
    for spec in objects:
        _extract_object(pages, engine, spec, until, report.object(spec.name), extracted_at, page_size, window)
    log.info("Stripe extraction up to %s: %s", until.isoformat(), report.as_dict())
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
    for start, end in created_windows(old, until, window):
        report.rows += _read_window(
            pages, engine, spec, start, end, report, extracted_at, page_size, watermark=end
        )
        report.watermark_after = end.isoformat()
    if old is not None:  # the re-read of objects created before this run's window
        refresh_start = EPOCH if spec.refresh_lookback is None else max(EPOCH, until - spec.refresh_lookback)
        refresh_end = min(old, until)
        if refresh_start < refresh_end:
            report.refreshed += _read_window(
                pages,
                engine,
                spec,
                refresh_start,
                refresh_end,
                report,
                extracted_at,
                page_size,
                watermark=None,
            )


def _read_window(
    pages: StripePages,
    engine: Engine,
    spec: StripeObject,
    start: datetime,
    end: datetime,
    report: ObjectReport,
    extracted_at: datetime,
    page_size: int,
    *,
    watermark: datetime | None,
) -> int:
    """Store every object created in ``[start, end)``; write ``watermark`` with the last page."""
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
                rows.append(spec.to_row(obj, extracted_at))
            except MalformedRecord as exc:
                bad.append((str(obj.get("id")), f"{spec.name[:-1]}: {exc}", obj))
        previous = {obj.get("id") for obj in objects}
        with engine.begin() as conn:
            upsert_rows(conn, spec.table, rows)
            quarantine_records(conn, SOURCE, spec.name, bad)
        written += len(rows)
        report.quarantined += len(bad)
    if watermark is not None:  # only once every page of the window is committed
        with engine.begin() as conn:
            set_watermark(conn, SOURCE, spec.name, watermark.isoformat(), written)
    return written


# ----------------------------------------------------------------------------- Airflow-facing
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

    def get_conn(self) -> stripe.StripeClient:
        """A ``stripe.StripeClient`` configured from the connection."""
        conn = self.get_connection(self.stripe_conn_id)
        api_key = conn.password or ""
        if not api_key.startswith(("sk_", "rk_")):
            raise ValueError(
                f"Connection '{self.stripe_conn_id}' has no Stripe secret key in its password "
                "(expected sk_... or rk_...); set it to the API key from the Stripe dashboard."
            )
        extra = conn.extra_dejson
        api_base = extra.get("api_base")
        return stripe.StripeClient(
            api_key,
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
