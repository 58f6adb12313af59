"""The loopback Stripe API (v1): customers, subscriptions, invoices, disputes; customer writes.

Shapes follow Stripe's API reference closely enough for the official ``stripe`` SDK:

* List endpoints (``GET /v1/customers``, ``/v1/subscriptions``, ``/v1/invoices``,
  ``/v1/disputes``) answer ``{"object": "list", "data", "has_more", "url"}``, newest first
  (``created`` then ``id`` descending), with ``limit`` (1-100, default 10), ``starting_after``,
  ``ending_before`` and ``created`` / ``created[gt|gte|lt|lte]`` filters. Subscriptions omit
  canceled ones unless ``status=canceled`` or ``status=all``, as Stripe does; ``customer`` and
  ``status`` filter subscriptions and invoices.
* ``GET /v1/<objects>/{id}``; ``POST /v1/customers`` (create) and ``POST /v1/customers/{id}``
  (update ``name``, ``email``, ``description``, ``metadata[...]``; an empty value unsets a
  metadata key) - form-encoded bodies, as the SDK sends.
* Invoices carry two ``lines``: the seat line (licensed price) and the metered usage line,
  ``status_transitions.paid_at``, ``charge``, and ``parent.subscription_details`` (newer API
  versions) besides the classic ``subscription`` field.
* Authentication: ``Authorization: Bearer sk_test_...`` (``rk_test_`` restricted keys too).
  When ``sandbox_meta`` holds ``stripe_api_key`` the key must match it.
* Idempotency, exactly like Stripe: a POST with an ``Idempotency-Key`` seen before with the same
  method, path and parameters gets the stored response again with ``Idempotent-Replayed: true``
  (and no second write); the same key with different parameters gets 400 ``idempotency_error``.
  Keys and responses are kept in ``sandbox_meta`` (``stripe_idempotency:<key>``). Every executed
  write is recorded in ``sandbox_writes`` with ``created=True``; replays are recorded with
  ``created=False``.
* Errors in Stripe's shape ``{"error": {"type", "code", "message"}}`` with a ``Request-Id``.

Faults: ``rate_limit`` - 429, code ``rate_limit``, ``Retry-After`` and
``Stripe-Should-Retry: false`` (the SDK does not retry it blindly; the caller waits out
Retry-After); ``server_error`` - 500 ``api_error`` with ``Stripe-Should-Retry: true`` (the SDK
retries within ``max_network_retries``); ``timeout`` hangs; ``malformed`` breaks the first
object of the next non-empty list page (``created: "garbage"`` plus a broken amount or status);
``duplicate_page`` answers the next request carrying ``starting_after`` with the page that ends
at that object - the page the client already has - so one page arrives twice.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, and_, insert, or_, select, update

from customer_health.sandbox.http import Request, Response, SandboxApp
from customer_health.sandbox.store import (
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


def _now() -> int:
    return int(datetime.now(UTC).timestamp())


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


def subscription_json(row: Any) -> dict[str, Any]:
    """A Subscription object (its period lives on the item, as in current API versions)."""
    price = {
        "id": f"price_seat_{row.interval or 'month'}",
        "object": "price",
        "currency": "usd",
        "unit_amount": row.unit_amount,
        "recurring": {"interval": row.interval, "interval_count": 1, "usage_type": "licensed"},
        "type": "recurring",
    }
    item = {
        "id": f"si_{row.id[4:]}",
        "object": "subscription_item",
        "created": row.created,
        "current_period_start": row.current_period_start,
        "current_period_end": row.current_period_end,
        "price": price,
        "quantity": row.quantity,
        "subscription": row.id,
    }
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
            "data": [item],
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={row.id}",
        },
        "livemode": False,
        "metadata": dict(row.metadata or {}),
        "start_date": row.created,
        "status": row.status,
    }


def invoice_json(row: Any) -> dict[str, Any]:
    """An Invoice object with its seat line and metered-usage line."""
    usage = row.usage_amount or 0
    period = {"start": row.period_start, "end": row.period_end}
    lines = [
        {
            "id": f"il_{row.id[3:]}_seats",
            "object": "line_item",
            "amount": (row.subtotal or 0) - usage,
            "currency": "usd",
            "description": "Seats",
            "period": period,
            "price": {"id": "price_seat", "object": "price", "recurring": {"usage_type": "licensed"}},
            "quantity": 1,
            "type": "subscription",
        }
    ]
    if usage:
        lines.append(
            {
                "id": f"il_{row.id[3:]}_usage",
                "object": "line_item",
                "amount": usage,
                "currency": "usd",
                "description": "Metered usage",
                "period": period,
                "price": {"id": "price_usage", "object": "price", "recurring": {"usage_type": "metered"}},
                "quantity": None,
                "type": "subscription",
            }
        )
    status = row.status
    return {
        "id": row.id,
        "object": "invoice",
        "amount_due": row.amount_due,
        "amount_paid": row.amount_paid,
        "amount_remaining": max(0, (row.amount_due or 0) - (row.amount_paid or 0)),
        "attempt_count": row.attempt_count,
        "attempted": bool(row.attempt_count),
        "billing_reason": "subscription_cycle",
        "charge": row.charge,
        "collection_method": "charge_automatically",
        "created": row.created,
        "currency": "usd",
        "customer": row.customer,
        "due_date": row.due_date,
        "lines": {"object": "list", "data": lines, "has_more": False, "url": f"/v1/invoices/{row.id}/lines"},
        "livemode": False,
        "paid": status == "paid",
        "parent": {
            "type": "subscription_details",
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
        "subscription": row.subscription,
        "subtotal": row.subtotal,
        "total": row.subtotal,
    }


def dispute_json(row: Any) -> dict[str, Any]:
    """A Dispute object."""
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
        "payment_intent": None,
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


# ----------------------------------------------------------------------------- the app
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
        header = req.header("authorization") or ""
        key = header[7:].strip() if header.startswith("Bearer ") else ""
        if not key:
            return stripe_error(
                401,
                "invalid_request_error",
                "You did not provide an API key. Provide it in the Authorization header (Bearer auth).",
            )
        with self.store.connect() as conn:
            expected = conn.execute(
                select(sandbox_meta.c.value).where(sandbox_meta.c.key == "stripe_api_key")
            ).scalar_one_or_none()
        if not key.startswith(("sk_test_", "rk_test_")) or (expected and key != expected):
            return stripe_error(
                401, "invalid_request_error", f"Invalid API Key provided: {key[:8]}****{key[-4:]}"
            )
        return None

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


def build_app(store: Engine, folder: Path | None = None) -> SandboxApp:
    """The Stripe sandbox app over ``store`` (``folder`` is unused; kept for the common API)."""
    app = StripeApp(SYSTEM, store)

    def list_objects(req: Request, table: Table, url: str, serialize, breaker, where: list) -> Response:  # noqa: ANN001
        limit = _int_arg(req, "limit") or LIST_LIMIT_DEFAULT
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise StripeRequestError(
                400, "This value must be between 1 and 100.", code="parameter_invalid_integer", param="limit"
            )
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
        if starting_after and ending_before:
            raise StripeRequestError(
                400,
                "You may only specify one of these parameters: ending_before, starting_after.",
                param="starting_after",
            )

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
        data = [serialize(r) for r in rows]
        if data and app.take_fault(req, kinds=("malformed",)) is not None:
            breaker(data[0])
        return Response(200, {"object": "list", "data": data, "has_more": has_more, "url": url})

    def retrieve(table: Table, serialize, noun: str):  # noqa: ANN001, ANN202
        def handler(req: Request) -> Response:
            with store.connect() as conn:
                row = conn.execute(select(table).where(table.c.id == req.params["id"])).first()
            if row is None:
                raise StripeRequestError(
                    404, f"No such {noun}: '{req.params['id']}'", code="resource_missing", param="id"
                )
            return Response(200, serialize(row))

        return handler

    @app.route("GET", r"/v1/customers")
    def list_customers(req: Request) -> Response:
        where = []
        if req.arg("email"):
            where.append(stripe_customer.c.email == req.arg("email"))
        return list_objects(req, stripe_customer, "/v1/customers", customer_json, _break_customer, where)

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
            req, stripe_subscription, "/v1/subscriptions", subscription_json, _break_subscription, where
        )

    @app.route("GET", r"/v1/invoices")
    def list_invoices(req: Request) -> Response:
        where = []
        for name in ("customer", "subscription", "status"):
            if req.arg(name):
                where.append(stripe_invoice.c[name] == req.arg(name))
        return list_objects(req, stripe_invoice, "/v1/invoices", invoice_json, _break_invoice, where)

    @app.route("GET", r"/v1/disputes")
    def list_disputes(req: Request) -> Response:
        where = [stripe_dispute.c.charge == req.arg("charge")] if req.arg("charge") else []
        return list_objects(req, stripe_dispute, "/v1/disputes", dispute_json, _break_dispute, where)

    app.route("GET", r"/v1/subscriptions/(?P<id>[^/]+)")(
        retrieve(stripe_subscription, subscription_json, "subscription")
    )
    app.route("GET", r"/v1/invoices/(?P<id>[^/]+)")(retrieve(stripe_invoice, invoice_json, "invoice"))
    app.route("GET", r"/v1/disputes/(?P<id>[^/]+)")(retrieve(stripe_dispute, dispute_json, "dispute"))
    get_customer = retrieve(stripe_customer, customer_json, "customer")

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
                        created=_now(),
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
