"""The loopback Stripe API (v1): customers, subscriptions, invoices, disputes, prices; customer writes.

Shapes follow the API version the pinned ``stripe`` SDK speaks (``stripe.api_version``), and
``tests/contracts/test_stripe_contract.py`` checks every object and error served here against
the SDK's own type definitions: only declared fields, of the declared types.

* List endpoints (``GET /v1/customers``, ``/v1/subscriptions``, ``/v1/invoices``,
  ``/v1/disputes``, ``/v1/prices``) answer ``{"object": "list", "data", "has_more", "url"}``,
  newest first (``created`` then ``id`` descending), with ``limit`` (1-100, default 10),
  ``starting_after``, ``ending_before`` and ``created`` / ``created[gt|gte|lt|lte]`` filters.
  Subscriptions omit canceled ones unless ``status=canceled`` or ``status=all``, as Stripe does;
  ``customer`` and ``status`` filter subscriptions and invoices; prices filter by ``active``,
  ``type`` and ``recurring[interval|usage_type]``. A parameter an endpoint does not take is
  refused (400 ``parameter_unknown``), and so is an ``expand`` of a field that cannot be
  expanded, as Stripe does.
* ``GET /v1/<objects>/{id}``; ``POST /v1/customers`` (create) and ``POST /v1/customers/{id}``
  (update ``name``, ``email``, ``description``, ``metadata[...]``; an empty value unsets a
  metadata key) - form-encoded bodies, as the SDK sends.
* Subscriptions carry their price, seats and period on their items (a licensed seat item, and a
  metered usage item on monthly ones), each item with its ``price`` and legacy ``plan``.
  Invoices carry their subscription in ``parent.subscription_details``; their lines (the seat
  line, the metered usage line) name their price by id in ``pricing.price_details.price``
  (``GET /v1/prices`` says which prices are metered); ``status_transitions.paid_at``; and, only
  when asked with ``expand[]=data.payments`` (``expand[]=payments`` on a retrieve), their
  ``payments``: an InvoicePayment naming the PaymentIntent (``pi_`` + the stored charge's
  suffix) that the matching dispute also names. Invoices carry no ``charge``, ``paid`` or
  ``subscription`` field any more.
* Authentication, like Stripe: ``Authorization: Bearer <key>``. The secret key is
  ``sandbox_meta['stripe_api_key']``, by default ``connections.SANDBOX_STRIPE_KEY``; any other
  key gets 401 ``Invalid API Key provided``. Restricted keys (``configure(restricted_keys=
  {"rk_test_...": ["rak_invoice_read", ...]})``) may read or write only what they were granted:
  otherwise 403 naming the missing permission, in Stripe's words.
* Idempotency, exactly like Stripe: a POST with an ``Idempotency-Key`` seen before with the same
  method, path and parameters gets the stored response again with ``Idempotent-Replayed: true``
  (and no second write); the same key with different parameters gets 400 ``idempotency_error``.
  Keys and responses are kept in ``sandbox_meta`` (``stripe_idempotency:<key>``). Every executed
  write is recorded in ``sandbox_writes`` with ``created=True``; replays are recorded with
  ``created=False``.
* Errors in Stripe's shape ``{"error": {"type", "code", "message"}}`` with a ``Request-Id``.
* Stripe's clock: ``configure(clock_skew=seconds)`` runs it ahead (or, negative, behind) the
  host's, as a real source's clock may be; objects created here are stamped with it.

Faults: ``rate_limit`` - 429, code ``rate_limit``, ``Retry-After`` and
``Stripe-Should-Retry: false`` (the SDK does not retry it blindly; the caller waits out
Retry-After); ``server_error`` - 500 ``api_error`` with ``Stripe-Should-Retry: true`` (the SDK
retries within ``max_network_retries``); ``timeout`` hangs; ``malformed`` breaks the first
object of the next non-empty list page (``created: "garbage"`` plus a broken amount or status);
``duplicate_page`` answers the next request carrying ``starting_after`` with the page that ends
at that object - the page the client already has - so one page arrives twice;
``concurrent_change`` - while the matching list request is served, the account changes under
the reader: a new object of that list is created (a copy of the newest, stamped with Stripe's
clock; a new invoice is open and unpaid) and, for invoices, the newest open invoice is paid.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, and_, delete, insert, or_, select, update

from health_sandbox.company import USAGE_PRICE_CENTS
from health_sandbox.connections import SANDBOX_STRIPE_KEY
from health_sandbox.http import Request, Response, SandboxApp
from health_sandbox.store import (
    sandbox_meta,
    stripe_customer,
    stripe_dispute,
    stripe_invoice,
    stripe_subscription,
)

SYSTEM = "stripe"
LIST_LIMIT_DEFAULT = 10
LIST_LIMIT_MAX = 100
IDEMPOTENCY_PREFIX = "stripe_idempotency:"
SUBSCRIPTION_STATUSES = (
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "canceled",
    "unpaid",
    "paused",
)
# sandbox_meta keys of the account's settings (``configure``)
API_KEY_META = "stripe_api_key"
RESTRICTED_KEYS_META = "stripe_restricted_keys"
CLOCK_SKEW_META = "stripe_clock_skew_seconds"
# The prices: one per seat (interval, unit amount) in use, and the metered feature-use price.
USAGE_PRICE = "price_usage"
USAGE_METER = "mtr_feature_uses"
PRICES_CREATED = 1_577_836_800  # 2020-01-01: the price book predates every subscription
# The restricted-key permission each path's resource needs (Stripe: rak_<resource>_read|write).
PERMISSIONS = {
    "customers": "customer",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "disputes": "dispute",
    "prices": "price",
}
# The list parameters each list endpoint takes (anything else: 400 parameter_unknown) and the
# fields its ``expand`` may name.
PAGING = frozenset({"limit", "starting_after", "ending_before", "created", "expand"})
LIST_PARAMS = {
    "customers": PAGING | {"email"},
    "subscriptions": PAGING | {"status", "customer"},
    "invoices": PAGING | {"status", "customer", "subscription"},
    "disputes": PAGING | {"charge", "payment_intent"},
    "prices": PAGING | {"active", "type", "recurring"},
}
EXPANDABLE = {"invoices": frozenset({"data.payments"})}


class StripeRequestError(Exception):
    """A request Stripe would refuse: becomes a Stripe-shaped error response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.type, self.code, self.param = status, type_, code, param


def stripe_error(
    status: int,
    type_: str,
    message: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A response in Stripe's error shape."""
    error: dict[str, Any] = {"type": type_, "message": message}
    if code:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        error["param"] = param
    return Response(status, {"error": error}, {"Request-Id": _request_id(), **(headers or {})})


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex[:14]}"


# ----------------------------------------------------------------------------- the account's settings
def configure(
    store: Engine,
    *,
    api_key: str | None = None,
    restricted_keys: dict[str, Sequence[str]] | None = None,
    clock_skew: float | None = None,
) -> None:
    """Set the sandbox account's secret key, restricted keys (key -> permissions such as
    ``rak_invoice_read``) and clock skew in seconds (Stripe's clock minus the host's)."""
    values = {
        API_KEY_META: api_key,
        RESTRICTED_KEYS_META: None
        if restricted_keys is None
        else json.dumps({key: list(perms) for key, perms in restricted_keys.items()}),
        CLOCK_SKEW_META: None if clock_skew is None else str(float(clock_skew)),
    }
    with store.begin() as conn:
        for key, value in values.items():
            if value is not None:
                conn.execute(delete(sandbox_meta).where(sandbox_meta.c.key == key))
                conn.execute(insert(sandbox_meta).values(key=key, value=value))


def _settings(store: Engine) -> dict[str, str]:
    with store.connect() as conn:
        rows = conn.execute(
            select(sandbox_meta.c.key, sandbox_meta.c.value).where(
                sandbox_meta.c.key.in_((API_KEY_META, RESTRICTED_KEYS_META, CLOCK_SKEW_META))
            )
        ).fetchall()
    return {row.key: row.value for row in rows}


def stripe_now(store: Engine) -> int:
    """Unix seconds on Stripe's clock (the host's plus the configured skew)."""
    return int(time.time() + float(_settings(store).get(CLOCK_SKEW_META) or 0))


def _masked(key: str) -> str:
    """A key as Stripe prints it in errors: its prefix, asterisks, its last four characters."""
    prefix = key[: key.index("_", 3) + 1] if key.count("_") >= 2 else key[:3]
    return prefix + "*" * max(0, len(key) - len(prefix) - 4) + key[-4:]


def payment_intent_of(charge: str | None) -> str | None:
    """The PaymentIntent behind a stored charge (``ch_X`` -> ``pi_X``), as Stripe pairs them."""
    return f"pi_{charge.split('_', 1)[1]}" if charge and "_" in charge else None


# ----------------------------------------------------------------------------- serializers
def customer_json(row: Any) -> dict[str, Any]:
    """A Customer object."""
    return {
        "id": row.id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": row.created,
        "currency": "usd",
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": row.email,
        "invoice_prefix": row.id[-8:].upper(),
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None},
        "livemode": False,
        "metadata": dict(row.metadata or {}),
        "name": row.name,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def seat_price_id(interval: str | None, unit_amount: int | None) -> str:
    """The id of the seat price billed per ``interval`` at ``unit_amount`` cents."""
    return f"price_seat_{interval or 'month'}_{unit_amount or 0}"


def price_json(price_id: str, unit_amount: int | None, interval: str, usage_type: str) -> dict[str, Any]:
    """A Price object (recurring: a seat price, licensed, or the feature-use price, metered)."""
    metered = usage_type == "metered"
    return {
        "id": price_id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": PRICES_CREATED,
        "currency": "usd",
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": "Feature uses" if metered else f"Seat ({interval}ly)",
        "product": "prod_feature_uses" if metered else "prod_seats",
        "recurring": {
            "interval": interval,
            "interval_count": 1,
            "meter": USAGE_METER if metered else None,
            "trial_period_days": None,
            "usage_type": usage_type,
        },
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": unit_amount,
        "unit_amount_decimal": None if unit_amount is None else str(unit_amount),
    }


def plan_json(price: dict[str, Any]) -> dict[str, Any]:
    """The legacy Plan view of a recurring price (same id; ``amount``, not ``unit_amount``)."""
    recurring = price["recurring"]
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "created": price["created"],
        "currency": price["currency"],
        "interval": recurring["interval"],
        "interval_count": recurring["interval_count"],
        "livemode": False,
        "metadata": {},
        "meter": recurring["meter"],
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": recurring["usage_type"],
    }


def usage_price_json() -> dict[str, Any]:
    """The metered feature-use price, billed monthly in arrears."""
    return price_json(USAGE_PRICE, USAGE_PRICE_CENTS, "month", "metered")


def subscription_json(row: Any) -> dict[str, Any]:
    """A Subscription object (price, seats and period live on its items, as in current API versions)."""

    def item(suffix: str, price: dict[str, Any], quantity: int | None) -> dict[str, Any]:
        return {
            "id": f"si_{row.id[4:]}{suffix}",
            "object": "subscription_item",
            "billing_thresholds": None,
            "created": row.created,
            "current_period_end": row.current_period_end,
            "current_period_start": row.current_period_start,
            "discounts": [],
            "metadata": {},
            "plan": plan_json(price),
            "price": price,
            "quantity": quantity,
            "subscription": row.id,
            "tax_rates": [],
        }

    interval = row.interval or "month"
    items = [
        item(
            "",
            price_json(seat_price_id(interval, row.unit_amount), row.unit_amount, interval, "licensed"),
            row.quantity,
        )
    ]
    if interval == "month":  # usage rides along on monthly subscriptions (one interval per subscription)
        items.append(item("_usage", usage_price_json(), None))
    return {
        "id": row.id,
        "object": "subscription",
        "cancel_at": row.current_period_end if row.cancel_at_period_end else None,
        "cancel_at_period_end": bool(row.cancel_at_period_end),
        "canceled_at": row.canceled_at,
        "collection_method": "charge_automatically",
        "created": row.created,
        "currency": "usd",
        "customer": row.customer,
        "ended_at": row.canceled_at if row.status == "canceled" else None,
        "items": {
            "object": "list",
            "data": items,
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={row.id}",
        },
        "livemode": False,
        "metadata": dict(row.metadata or {}),
        "start_date": row.created,
        "status": row.status,
    }


def _line(
    invoice: Any, suffix: str, amount: int, price: str, quantity: int | None, item: str | None
) -> dict[str, Any]:
    """An invoice line item of a subscription item, naming its price by id."""
    return {
        "id": f"il_{invoice.id[3:]}_{suffix}",
        "object": "line_item",
        "amount": amount,
        "currency": "usd",
        "description": "Seats" if suffix == "seats" else "Feature uses (metered)",
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": invoice.id,
        "livemode": False,
        "metadata": {},
        "parent": {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": invoice.subscription,
                "subscription_item": item,
            },
        },
        "period": {"start": invoice.period_start, "end": invoice.period_end},
        "pretax_credit_amounts": [],
        "pricing": {
            "type": "price_details",
            "price_details": {
                "price": price,
                "product": "prod_feature_uses" if price == USAGE_PRICE else "prod_seats",
            },
            "unit_amount_decimal": None,
        },
        "quantity": quantity,
        "subscription": invoice.subscription,
        "subtotal": amount,
        "taxes": [],
    }


def invoice_payment_json(row: Any) -> dict[str, Any]:
    """The InvoicePayment of an invoice that was charged: its PaymentIntent, paid or still open."""
    paid = row.status == "paid"
    return {
        "id": f"inpay_{row.id[3:]}",
        "object": "invoice_payment",
        "amount_paid": row.amount_paid if paid else None,
        "amount_requested": row.amount_due,
        "created": row.created,
        "currency": "usd",
        "invoice": row.id,
        "is_default": True,
        "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": payment_intent_of(row.charge)},
        "status": "paid" if paid else ("canceled" if row.status in ("void", "uncollectible") else "open"),
        "status_transitions": {"canceled_at": None, "paid_at": row.paid_at if paid else None},
    }


def invoice_json(
    row: Any, seat_price: tuple[str | None, int | None] | None = None, *, payments: bool = False
) -> dict[str, Any]:
    """An Invoice with its seat line and metered-usage line; ``payments`` when expanded.

    ``seat_price`` is the subscription's (interval, unit amount), which names the seat line's price.
    """
    usage = row.usage_amount or 0
    seats_amount = (row.subtotal or 0) - usage
    interval, unit_amount = seat_price or ("month", None)
    sub_suffix = row.subscription[4:] if row.subscription else ""
    lines = []
    if seats_amount or not usage:
        seats = seats_amount // unit_amount if unit_amount and seats_amount % unit_amount == 0 else None
        lines.append(
            _line(row, "seats", seats_amount, seat_price_id(interval, unit_amount), seats, f"si_{sub_suffix}")
        )
    if usage:
        uses = usage // USAGE_PRICE_CENTS if usage % USAGE_PRICE_CENTS == 0 else None
        lines.append(_line(row, "usage", usage, USAGE_PRICE, uses, f"si_{sub_suffix}_usage"))
    status = row.status
    body = {
        "id": row.id,
        "object": "invoice",
        "amount_due": row.amount_due,
        "amount_paid": row.amount_paid,
        "amount_remaining": max(0, (row.amount_due or 0) - (row.amount_paid or 0)),
        "attempt_count": row.attempt_count,
        "attempted": bool(row.attempt_count),
        "billing_reason": "subscription_cycle",
        "collection_method": "charge_automatically",
        "created": row.created,
        "currency": "usd",
        "customer": row.customer,
        "due_date": row.due_date,
        "lines": {"object": "list", "data": lines, "has_more": False, "url": f"/v1/invoices/{row.id}/lines"},
        "livemode": False,
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"subscription": row.subscription, "metadata": {}},
        }
        if row.subscription
        else None,
        "period_end": row.period_end,
        "period_start": row.period_start,
        "status": status,
        "status_transitions": {
            "finalized_at": row.created if status != "draft" else None,
            "marked_uncollectible_at": None,
            "paid_at": row.paid_at,
            "voided_at": None,
        },
        "subtotal": row.subtotal,
        "total": row.subtotal,
    }
    if payments:  # an includable field: there only when asked for
        data = [invoice_payment_json(row)] if row.charge else []
        body["payments"] = {
            "object": "list",
            "data": data,
            "has_more": False,
            "url": f"/v1/invoice_payments?invoice={row.id}",
        }
    return body


def dispute_json(row: Any) -> dict[str, Any]:
    """A Dispute object: the disputed charge and the PaymentIntent it belongs to."""
    return {
        "id": row.id,
        "object": "dispute",
        "amount": row.amount,
        "balance_transactions": [],
        "charge": row.charge,
        "created": row.created,
        "currency": "usd",
        "evidence_details": {
            "due_by": row.created + 7 * 86400,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": payment_intent_of(row.charge),
        "reason": row.reason,
        "status": row.status,
    }


def _break_customer(obj: dict[str, Any]) -> None:
    obj["created"] = "garbage"


def _break_subscription(obj: dict[str, Any]) -> None:
    obj["created"] = "garbage"
    obj["status"] = 42


def _break_invoice(obj: dict[str, Any]) -> None:
    obj["created"] = "garbage"
    obj["amount_due"] = "lots"


def _break_dispute(obj: dict[str, Any]) -> None:
    obj["created"] = "garbage"
    obj["amount"] = "garbage"


def _break_price(obj: dict[str, Any]) -> None:
    obj["created"] = "garbage"


# ----------------------------------------------------------------------------- the app
ACCOUNT_ID = "acct_1SandboxNorthpeak"
NEW_OBJECT_VALUES = {  # what a copy made by ``concurrent_change`` starts as
    "stripe_invoice": {
        "status": "open",
        "amount_paid": 0,
        "attempt_count": 0,
        "charge": None,
        "paid_at": None,
        "due_date": None,
    },
    "stripe_dispute": {"status": "needs_response"},
}


class StripeApp(SandboxApp):
    """The Stripe sandbox: Stripe's auth, error shapes and idempotency on the shared framework."""

    def __init__(self, system: str, store: Engine) -> None:
        super().__init__(system, store)
        self.idempotency_lock = threading.Lock()

    def not_found(self, req: Request) -> Response:
        return stripe_error(
            404, "invalid_request_error", f"Unrecognized request URL ({req.method}: {req.path})."
        )

    def fault_response(self, fault, req: Request) -> Response:  # noqa: ANN001 - Fault
        if fault.kind == "rate_limit":
            return stripe_error(
                429,
                "invalid_request_error",
                "Request rate limit exceeded. Retry after the time given in Retry-After.",
                code="rate_limit",
                headers={
                    "Retry-After": str(max(1, int(fault.retry_after or 1))),
                    "Stripe-Should-Retry": "false",
                },
            )
        if fault.kind == "server_error":
            return stripe_error(
                500,
                "api_error",
                "An unknown error occurred while processing your request.",
                headers={"Stripe-Should-Retry": "true"},
            )
        return super().fault_response(fault, req)

    def dispatch(self, req: Request) -> Response:
        denied = self._authenticate(req)
        if denied is not None:
            return denied
        try:
            response = super().dispatch(req)
        except StripeRequestError as exc:
            return stripe_error(exc.status, exc.type, str(exc), code=exc.code, param=exc.param)
        response.headers.setdefault("Request-Id", _request_id())
        return response

    def _authenticate(self, req: Request) -> Response | None:
        """Stripe's answers to a missing key (401), a wrong one (401) and a restricted key used
        beyond its permissions (403)."""
        header = req.header("authorization") or ""
        key = header[7:].strip() if header.startswith("Bearer ") else ""
        if not key:
            return stripe_error(
                401,
                "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in the Authorization "
                "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
                "https://stripe.com/docs/api#authentication for details, or we can help at "
                "https://support.stripe.com/.",
            )
        settings = _settings(self.store)
        if key == settings.get(API_KEY_META, SANDBOX_STRIPE_KEY):
            return None
        restricted = json.loads(settings.get(RESTRICTED_KEYS_META) or "{}")
        if key not in restricted:
            return stripe_error(401, "invalid_request_error", f"Invalid API Key provided: {_masked(key)}")
        resource = PERMISSIONS.get(req.path.removeprefix("/v1/").split("/")[0])
        if resource is None:
            return None  # an unknown URL: the 404 follows
        needed = f"rak_{resource}_{'read' if req.method == 'GET' else 'write'}"
        granted = set(restricted[key])
        if needed in granted or f"rak_{resource}_write" in granted:  # write implies read
            return None
        return stripe_error(
            403,
            "invalid_request_error",
            f"The provided key '{_masked(key)}' does not have the required permissions for this endpoint "
            f"on account '{ACCOUNT_ID}'. Having the '{needed}' permission would allow this request to "
            "continue.",
        )

    def concurrent_change(self, table: Table, tag: int) -> None:
        """The account changes while a client reads it: for invoices the newest open one is paid;
        a new object (a copy of the newest, stamped with Stripe's clock) is created."""
        now = stripe_now(self.store)
        newest_first = (table.c.created.desc(), table.c.id.desc())
        with self.store.begin() as conn:
            if table is stripe_invoice:
                due = conn.execute(
                    select(stripe_invoice)
                    .where(stripe_invoice.c.status == "open")
                    .order_by(*newest_first)
                    .limit(1)
                ).first()
                if due is not None:
                    conn.execute(
                        update(stripe_invoice)
                        .where(stripe_invoice.c.id == due.id)
                        .values(
                            status="paid",
                            amount_paid=due.amount_due,
                            paid_at=now,
                            attempt_count=max(1, due.attempt_count or 0),
                            charge=due.charge or f"ch_{due.id[3:]}",
                        )
                    )
            newest = conn.execute(select(table).order_by(*newest_first).limit(1)).first()
            if newest is not None:
                values = {**newest._mapping, **NEW_OBJECT_VALUES.get(table.name, {})}
                values.update(id=f"{newest.id}_c{tag}", created=now)
                conn.execute(insert(table).values(**values))

    # -- idempotency ---------------------------------------------------------------------
    def idempotent(self, req: Request, params: dict[str, Any], execute) -> Response:  # noqa: ANN001
        """Run the write ``execute()`` once per Idempotency-Key, replaying its stored response."""
        key = req.header("idempotency-key")
        if not key:
            return execute()
        fingerprint = {"method": req.method, "path": req.path, "params": params}
        meta_key = f"{IDEMPOTENCY_PREFIX}{key}"
        with self.idempotency_lock:
            with self.store.connect() as conn:
                stored = conn.execute(
                    select(sandbox_meta.c.value).where(sandbox_meta.c.key == meta_key)
                ).scalar_one_or_none()
            if stored is not None:
                saved = json.loads(stored)
                if saved["request"] != fingerprint:
                    return stripe_error(
                        400,
                        "idempotency_error",
                        f"Keys for idempotent requests can only be used with the same parameters they were "
                        f"first used with. Try using a key other than '{key}' if you meant to execute a "
                        "different request.",
                    )
                self.record_write(
                    req, saved["object"], saved["record_id"], created=False, idempotency_key=key, body=params
                )
                return Response(
                    saved["status"],
                    saved["body"],
                    {
                        "Idempotent-Replayed": "true",
                        "Idempotency-Key": key,
                        "Request-Id": saved["request_id"],
                    },
                )
            response = execute()
            if response.status < 500:  # Stripe does not save results of 500s: retrying may succeed
                body = response.body or {}
                response.headers.setdefault("Request-Id", _request_id())
                saved = {
                    "request": fingerprint,
                    "status": response.status,
                    "body": body,
                    "object": body.get("object"),
                    "record_id": body.get("id"),
                    "request_id": response.headers["Request-Id"],
                }
                with self.store.begin() as conn:
                    conn.execute(insert(sandbox_meta).values(key=meta_key, value=json.dumps(saved)))
            response.headers["Idempotency-Key"] = key
            return response


def _form_params(req: Request) -> dict[str, Any]:
    """The form body with ``metadata[k]=v`` folded into a ``metadata`` dict (Stripe's encoding)."""
    params: dict[str, Any] = {}
    for name, value in req.form().items():
        if name.startswith("metadata[") and name.endswith("]"):
            params.setdefault("metadata", {})[name[9:-1]] = value
        else:
            params[name] = value
    return params


def _int_arg(req: Request, name: str) -> int | None:
    raw = req.arg(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise StripeRequestError(
            400, f"Invalid integer: {raw}", code="parameter_invalid_integer", param=name
        ) from None


def _expand(req: Request, allowed: frozenset[str]) -> set[str]:
    """The ``expand`` values of a request (``expand[]=``, ``expand[0]=``), refused unless allowed."""
    asked = {
        value
        for name, values in req.query.items()
        if name == "expand" or (name.startswith("expand[") and name.endswith("]"))
        for value in values
    }
    for field in sorted(asked - allowed):
        raise StripeRequestError(400, f"This property cannot be expanded ({field}).", param="expand")
    return asked


def _known_params(req: Request, resource: str) -> None:
    """400 ``parameter_unknown`` for a list parameter the endpoint does not take, as Stripe answers."""
    for name in req.query:
        top = name.split("[", 1)[0]
        if top not in LIST_PARAMS[resource]:
            raise StripeRequestError(
                400, f"Received unknown parameter: {top}", code="parameter_unknown", param=top
            )


def _page_bounds(req: Request) -> int:
    limit = _int_arg(req, "limit") or LIST_LIMIT_DEFAULT
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise StripeRequestError(
            400, "This value must be between 1 and 100.", code="parameter_invalid_integer", param="limit"
        )
    if req.arg("starting_after") and req.arg("ending_before"):
        raise StripeRequestError(
            400,
            "You may only specify one of these parameters: ending_before, starting_after.",
            param="starting_after",
        )
    return limit


def build_app(store: Engine, folder: Path | None = None) -> SandboxApp:
    """The Stripe sandbox app over ``store`` (``folder`` is unused; kept for the common API)."""
    app = StripeApp(SYSTEM, store)
    SerializePage = Callable[[list[Any], set[str]], list[dict[str, Any]]]  # noqa: N806

    def one_by_one(serialize: Callable[[Any], dict[str, Any]]) -> SerializePage:
        return lambda rows, expand: [serialize(r) for r in rows]

    def list_objects(
        req: Request,
        resource: str,
        table: Table,
        serialize: SerializePage,
        breaker,
        where: list,  # noqa: ANN001
    ) -> Response:
        _known_params(req, resource)
        expand = _expand(req, EXPANDABLE.get(resource, frozenset()))
        limit = _page_bounds(req)
        created = table.c.created
        exact = _int_arg(req, "created")
        bounds = {op: _int_arg(req, f"created[{op}]") for op in ("gt", "gte", "lt", "lte")}
        conds = list(where)
        if exact is not None:
            conds.append(created == exact)
        for op, value in bounds.items():
            if value is not None:
                conds.append(
                    {
                        "gt": created > value,
                        "gte": created >= value,
                        "lt": created < value,
                        "lte": created <= value,
                    }[op]
                )
        starting_after, ending_before = req.arg("starting_after"), req.arg("ending_before")

        def anchor(object_id: str, param: str) -> tuple[int, str]:
            with store.connect() as conn:
                row = conn.execute(select(table.c.created, table.c.id).where(table.c.id == object_id)).first()
            if row is None:
                raise StripeRequestError(
                    400, f"No such object: '{object_id}'", code="resource_missing", param=param
                )
            return row.created, row.id

        def older(pos: tuple[int, str], inclusive: bool = False):  # noqa: ANN202
            same = table.c.id <= pos[1] if inclusive else table.c.id < pos[1]
            return or_(created < pos[0], and_(created == pos[0], same))

        def newer(pos: tuple[int, str]):  # noqa: ANN202
            return or_(created > pos[0], and_(created == pos[0], table.c.id > pos[1]))

        desc = (created.desc(), table.c.id.desc())
        asc = (created, table.c.id)
        duplicate = bool(starting_after) and app.take_fault(req, kinds=("duplicate_page",)) is not None
        with store.connect() as conn:
            if duplicate:  # the page ending at starting_after, which the client already has
                pos = anchor(starting_after, "starting_after")
                rows = conn.execute(
                    select(table)
                    .where(*conds, newer(pos) | (table.c.id == pos[1]))
                    .order_by(*asc)
                    .limit(limit)
                ).fetchall()[::-1]
                has_more = True
            elif ending_before:
                pos = anchor(ending_before, "ending_before")
                rows = conn.execute(
                    select(table).where(*conds, newer(pos)).order_by(*asc).limit(limit + 1)
                ).fetchall()
                has_more = len(rows) > limit
                rows = rows[:limit][::-1]
            else:
                if starting_after:
                    conds.append(older(anchor(starting_after, "starting_after")))
                rows = conn.execute(select(table).where(*conds).order_by(*desc).limit(limit + 1)).fetchall()
                has_more = len(rows) > limit
                rows = rows[:limit]
        data = serialize(rows, expand)
        if data and app.take_fault(req, kinds=("malformed",)) is not None:
            breaker(data[0])
        change = app.take_fault(req, kinds=("concurrent_change",))
        if change is not None:
            app.concurrent_change(table, change.id)
        return Response(200, {"object": "list", "data": data, "has_more": has_more, "url": f"/v1/{resource}"})

    def seat_prices(subscription_ids: set[str]) -> dict[str, tuple[str | None, int | None]]:
        if not subscription_ids:
            return {}
        with store.connect() as conn:
            rows = conn.execute(
                select(
                    stripe_subscription.c.id,
                    stripe_subscription.c.interval,
                    stripe_subscription.c.unit_amount,
                ).where(stripe_subscription.c.id.in_(sorted(subscription_ids)))
            ).fetchall()
        return {r.id: (r.interval, r.unit_amount) for r in rows}

    def invoices_page(rows: list[Any], expand: set[str]) -> list[dict[str, Any]]:
        prices = seat_prices({r.subscription for r in rows if r.subscription})
        payments = "data.payments" in expand or "payments" in expand
        return [invoice_json(r, prices.get(r.subscription), payments=payments) for r in rows]

    def retrieve(table: Table, serialize: SerializePage, noun: str, expandable: frozenset[str] = frozenset()):  # noqa: ANN202
        def handler(req: Request) -> Response:
            expand = _expand(req, expandable)
            with store.connect() as conn:
                row = conn.execute(select(table).where(table.c.id == req.params["id"])).first()
            if row is None:
                raise StripeRequestError(
                    404, f"No such {noun}: '{req.params['id']}'", code="resource_missing", param="id"
                )
            return Response(200, serialize([row], expand)[0])

        return handler

    @app.route("GET", r"/v1/customers")
    def list_customers(req: Request) -> Response:
        where = []
        if req.arg("email"):
            where.append(stripe_customer.c.email == req.arg("email"))
        return list_objects(
            req, "customers", stripe_customer, one_by_one(customer_json), _break_customer, where
        )

    @app.route("GET", r"/v1/subscriptions")
    def list_subscriptions(req: Request) -> Response:
        status = req.arg("status")
        where = []
        if status is None:
            where.append(stripe_subscription.c.status != "canceled")
        elif status != "all":
            if status not in SUBSCRIPTION_STATUSES and status != "ended":
                raise StripeRequestError(
                    400,
                    f"Invalid status: must be one of {', '.join(SUBSCRIPTION_STATUSES)}, ended, or all",
                    param="status",
                )
            where.append(stripe_subscription.c.status == status)
        if req.arg("customer"):
            where.append(stripe_subscription.c.customer == req.arg("customer"))
        return list_objects(
            req,
            "subscriptions",
            stripe_subscription,
            one_by_one(subscription_json),
            _break_subscription,
            where,
        )

    @app.route("GET", r"/v1/invoices")
    def list_invoices(req: Request) -> Response:
        where = []
        for name in ("customer", "subscription", "status"):
            if req.arg(name):
                where.append(stripe_invoice.c[name] == req.arg(name))
        return list_objects(req, "invoices", stripe_invoice, invoices_page, _break_invoice, where)

    @app.route("GET", r"/v1/disputes")
    def list_disputes(req: Request) -> Response:
        where = []
        if req.arg("charge"):
            where.append(stripe_dispute.c.charge == req.arg("charge"))
        if req.arg("payment_intent"):
            where.append(stripe_dispute.c.charge == f"ch_{req.arg('payment_intent').split('_', 1)[-1]}")
        return list_objects(req, "disputes", stripe_dispute, one_by_one(dispute_json), _break_dispute, where)

    def all_prices() -> list[dict[str, Any]]:
        with store.connect() as conn:
            seats = conn.execute(
                select(stripe_subscription.c.interval, stripe_subscription.c.unit_amount).distinct()
            ).fetchall()
        prices = [
            price_json(
                seat_price_id(s.interval, s.unit_amount), s.unit_amount, s.interval or "month", "licensed"
            )
            for s in seats
        ]
        return sorted([*prices, usage_price_json()], key=lambda p: (p["created"], p["id"]), reverse=True)

    @app.route("GET", r"/v1/prices")
    def list_prices(req: Request) -> Response:
        _known_params(req, "prices")
        _expand(req, frozenset())
        limit = _page_bounds(req)
        filters = {
            ("active",): {"true": True, "false": False}.get(req.arg("active") or ""),
            ("type",): req.arg("type"),
            ("recurring", "interval"): req.arg("recurring[interval]"),
            ("recurring", "usage_type"): req.arg("recurring[usage_type]"),
        }
        prices = all_prices()
        for path, wanted in filters.items():
            if wanted is not None:
                prices = [
                    p for p in prices if (p[path[0]] if len(path) == 1 else p[path[0]][path[1]]) == wanted
                ]
        ids = [p["id"] for p in prices]
        for param in ("starting_after", "ending_before"):
            if req.arg(param) and req.arg(param) not in ids:
                raise StripeRequestError(
                    400, f"No such price: '{req.arg(param)}'", code="resource_missing", param=param
                )
        if req.arg("ending_before"):
            before = prices[: ids.index(req.arg("ending_before"))]
            data, has_more = before[-limit:], len(before) > limit
        else:
            if req.arg("starting_after"):
                prices = prices[ids.index(req.arg("starting_after")) + 1 :]
            data, has_more = prices[:limit], len(prices) > limit
        if data and app.take_fault(req, kinds=("malformed",)) is not None:
            _break_price(data[0])
        return Response(200, {"object": "list", "data": data, "has_more": has_more, "url": "/v1/prices"})

    app.route("GET", r"/v1/subscriptions/(?P<id>[^/]+)")(
        retrieve(stripe_subscription, one_by_one(subscription_json), "subscription")
    )
    app.route("GET", r"/v1/invoices/(?P<id>[^/]+)")(
        retrieve(stripe_invoice, invoices_page, "invoice", frozenset({"payments"}))
    )
    app.route("GET", r"/v1/disputes/(?P<id>[^/]+)")(
        retrieve(stripe_dispute, one_by_one(dispute_json), "dispute")
    )
    get_customer = retrieve(stripe_customer, one_by_one(customer_json), "customer")

    @app.route("POST", r"/v1/customers")
    def create_customer(req: Request) -> Response:
        params = _form_params(req)

        def execute() -> Response:
            customer_id = f"cus_{uuid.uuid4().hex[:14]}"
            with store.begin() as conn:
                conn.execute(
                    insert(stripe_customer).values(
                        id=customer_id,
                        email=params.get("email"),
                        name=params.get("name"),
                        metadata={k: v for k, v in (params.get("metadata") or {}).items() if v != ""},
                        created=stripe_now(store),
                    )
                )
                row = conn.execute(select(stripe_customer).where(stripe_customer.c.id == customer_id)).first()
            app.record_write(
                req,
                "customer",
                customer_id,
                created=True,
                idempotency_key=req.header("idempotency-key"),
                body=params,
            )
            return Response(200, customer_json(row))

        return app.idempotent(req, params, execute)

    @app.route("GET", r"/v1/customers/(?P<id>[^/]+)")
    def show_customer(req: Request) -> Response:
        return get_customer(req)

    @app.route("POST", r"/v1/customers/(?P<id>[^/]+)")
    def update_customer(req: Request) -> Response:
        params = _form_params(req)
        customer_id = req.params["id"]

        def execute() -> Response:
            with store.begin() as conn:
                row = conn.execute(select(stripe_customer).where(stripe_customer.c.id == customer_id)).first()
                if row is None:
                    return stripe_error(
                        404,
                        "invalid_request_error",
                        f"No such customer: '{customer_id}'",
                        code="resource_missing",
                        param="id",
                    )
                values: dict[str, Any] = {k: params[k] for k in ("email", "name") if k in params}
                if "metadata" in params:
                    metadata = dict(row.metadata or {})
                    for k, v in params["metadata"].items():
                        if v == "":
                            metadata.pop(k, None)
                        else:
                            metadata[k] = v
                    values["metadata"] = metadata
                if values:
                    conn.execute(
                        update(stripe_customer).where(stripe_customer.c.id == customer_id).values(**values)
                    )
                row = conn.execute(select(stripe_customer).where(stripe_customer.c.id == customer_id)).first()
            app.record_write(
                req,
                "customer",
                customer_id,
                created=True,
                idempotency_key=req.header("idempotency-key"),
                body=params,
            )
            return Response(200, customer_json(row))

        return app.idempotent(req, params, execute)

    return app
