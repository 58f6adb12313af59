"""Contract: the Stripe extraction and the Stripe sandbox, checked against definitions we did not write.

The sandbox is our reading of Stripe's API and so is the extraction; where that reading is wrong
both are wrong together and every other test passes. Here both are held to Stripe's own
definitions, offline:

* **Objects** - the typed resource classes of the ``stripe`` SDK pinned in ``constraints.txt``
  (``stripe==16.1.0``; its modules say "File generated from our OpenAPI spec"; it speaks API
  version ``stripe.api_version``, 2026-10-28): ``stripe.Customer``, ``Subscription``,
  ``SubscriptionItem``, ``Price``, ``Plan``, ``Invoice``, ``InvoiceLineItem``,
  ``InvoicePayment``, ``Dispute``, ``ListObject`` and, for errors, ``stripe.ErrorObject``
  (``stripe/_error_object.py``). A class's annotations declare each field and its type; nested
  objects are its inner classes (``Invoice.Parent.SubscriptionDetails``). ``ListObject``
  declares ``data``, ``has_more`` and ``url``; its ``object`` is its ``OBJECT_NAME``, "list".
* **List parameters** - the SDK's ``TypedDict`` for each list call,
  ``stripe.params.<Resource>ListParams`` (less ``RequestOptions``, the client's own options).
* **The checker itself** - Stripe's example objects (``tests/contracts/stripe/``, cut from
  stripe/openapi's ``openapi/fixtures3.json``, MIT; see the README there) must pass the check
  the sandbox must pass, and objects with undeclared fields or wrong types must fail it.

What is checked: every field the extraction reads from a Stripe object is declared on that
object's type (nested paths included: subscription items, their price and plan, invoice lines,
payments); every parameter it sends to a list call is a declared parameter of that call, with a
declared type; every object and error the sandbox serves has only declared fields, of the
declared types.
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys
import types
import typing
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ForwardRef, Literal, Union, get_args, get_origin

import pytest
import stripe
import typing_extensions
from sqlalchemy import select
from stripe._list_object import ListObject
from stripe._request_options import RequestOptions
from stripe._stripe_object import StripeObject, UntypedStripeObject

from customer_health.retries import RetryPolicy
from customer_health.sources import stripe as extraction
from customer_health.sources.report import MalformedRecord
from customer_health.warehouse.engine import engine_for
from health_sandbox import stripe_api
from health_sandbox.connections import SANDBOX_STRIPE_KEY
from health_sandbox.store import stripe_customer, stripe_invoice

FIXTURES = Path(__file__).parent / "stripe" / "fixtures3.subset.json"

# Each list the project reads: its object type and the SDK's parameters of that list call.
LISTS: dict[str, tuple[type, str]] = {
    "customers": (stripe.Customer, "CustomerListParams"),
    "subscriptions": (stripe.Subscription, "SubscriptionListParams"),
    "invoices": (stripe.Invoice, "InvoiceListParams"),
    "disputes": (stripe.Dispute, "DisputeListParams"),
    "prices": (stripe.Price, "PriceListParams"),
}


# ----------------------------------------------------------------------------- the SDK's types
class _Names(Mapping):
    """Names an annotation may use: enclosing classes, the module, then the ``stripe`` package
    (the SDK imports the types its annotations name only under TYPE_CHECKING)."""

    def __init__(self, scopes: list[Mapping[str, Any]]) -> None:
        self.scopes = scopes

    def __getitem__(self, name: str) -> Any:
        for scope in self.scopes:
            if name in scope:
                return scope[name]
        value = getattr(stripe, name, None)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _resolve(tp: Any, owner: Any) -> Any:
    """``tp`` with a string or ForwardRef evaluated where ``owner`` (a class) was defined."""
    if isinstance(tp, str):
        tp = ForwardRef(tp)
    if not isinstance(tp, ForwardRef):
        return tp
    module = sys.modules[owner.__module__]
    chain, obj = [], module
    for part in owner.__qualname__.split("."):
        obj = getattr(obj, part)
        chain.append(vars(obj))
    names = _Names([*reversed(chain), vars(module)])
    return _resolve(eval(tp.__forward_arg__, {"__builtins__": __builtins__}, names), owner)  # noqa: S307


def declared_fields(cls: type) -> dict[str, tuple[Any, type]]:
    """Field -> (annotation, class that declares it) of an SDK resource or TypedDict."""
    fields: dict[str, tuple[Any, type]] = {}
    skip = set(RequestOptions.__annotations__) if typing_extensions.is_typeddict(cls) else set()
    for klass in reversed(cls.__mro__):
        if klass in (StripeObject, object, dict) or klass is RequestOptions:
            continue
        for name, tp in vars(klass).get("__annotations__", {}).items():
            if name.startswith("_") or name in skip or get_origin(tp) is typing.ClassVar:
                continue
            fields[name] = (tp, klass)
    if getattr(cls, "OBJECT_NAME", None) and "object" not in fields:
        fields["object"] = (Literal[cls.OBJECT_NAME], cls)
    return fields


def _members(tp: Any) -> list[Any]:
    return (
        [a for a in get_args(tp) if a is not type(None)]
        if get_origin(tp) in (Union, types.UnionType)
        else [tp]
    )


def check_value(value: Any, tp: Any, owner: Any, path: str, problems: list[str]) -> None:
    """Append to ``problems`` every way ``value`` (JSON) is not of the SDK's type ``tp``."""
    tp = _resolve(tp, owner)
    origin, args = get_origin(tp), get_args(tp)
    if origin is typing.NotRequired:
        return check_value(value, args[0], owner, path, problems)
    if tp is Any or isinstance(tp, typing.TypeVar):
        return None
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) not in args:
                problems.append(f"{path}: null, but {tp} is not Optional")
            return None
        attempts = []
        for member in _members(tp):
            sub: list[str] = []
            check_value(value, member, owner, path, sub)
            if not sub:
                return None
            attempts.append(sub)
        problems.extend(min(attempts, key=len))
        return None
    if value is None:
        problems.append(f"{path}: null, but {tp} is not Optional")
    elif origin is Literal:
        if value not in args:
            problems.append(f"{path}: {value!r} is not one of {args}")
    elif tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{path}: {value!r} is not a boolean")
    elif tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float) if tp is float else int):
            problems.append(f"{path}: {value!r} is not {'a number' if tp is float else 'an integer'}")
    elif tp is str:
        if not isinstance(value, str):
            problems.append(f"{path}: {value!r} is not a string")
    elif tp is Decimal:  # Stripe sends decimals as strings
        try:
            Decimal(value) if isinstance(value, str) else Decimal("x")
        except InvalidOperation:
            problems.append(f"{path}: {value!r} is not a decimal string")
    elif origin in (list, typing.List):  # noqa: UP006 - the SDK's annotations use typing.List
        if not isinstance(value, list):
            problems.append(f"{path}: {value!r} is not a list")
        else:
            for i, element in enumerate(value):
                check_value(element, args[0], owner, f"{path}[{i}]", problems)
    elif origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            problems.append(f"{path}: {value!r} is not an object")
        else:
            for key, element in value.items():
                check_value(element, args[1], owner, f"{path}.{key}", problems)
    elif typing_extensions.is_typeddict(tp) or (
        isinstance(origin or tp, type) and issubclass(origin or tp, StripeObject)
    ):
        _check_object(value, tp, owner, path, problems)
    else:
        problems.append(f"{path}: the checker does not know the type {tp!r}")
    return None


def _check_object(value: Any, tp: Any, owner: Any, path: str, problems: list[str]) -> None:
    cls, args = get_origin(tp) or tp, get_args(tp)
    if not isinstance(value, dict):
        problems.append(f"{path}: {value!r} is not a {cls.__qualname__} object")
        return
    if cls is UntypedStripeObject:  # metadata: any key, values of the declared type
        for key, element in value.items():
            check_value(element, args[0] if args else Any, owner, f"{path}.{key}", problems)
        return
    fields = declared_fields(cls)
    for key, element in value.items():
        if key not in fields:
            problems.append(f"{path}.{key}: not a field of {cls.__qualname__}")
            continue
        field_tp, declared_by = fields[key]
        if cls is ListObject and key == "data":  # List[T] of this ListObject["Item"]
            check_value(element, typing.List[args[0]] if args else Any, owner, f"{path}.data", problems)  # noqa: UP006
        else:
            check_value(element, field_tp, declared_by, f"{path}.{key}", problems)


def validate(value: Any, tp: Any, path: str | None = None) -> list[str]:
    """Every problem of ``value`` as an SDK ``tp`` (a resource class, ``ListObject[...]``, a TypedDict)."""
    problems: list[str] = []
    owner = get_origin(tp) or tp
    check_value(value, tp, owner, path or getattr(owner, "__name__", str(tp)), problems)
    return problems


def undeclared(tp: Any, owner: Any, path: tuple[str, ...]) -> str | None:
    """Why ``path`` (keys, ``[]`` for list elements) is not declared under ``tp``; None when it is."""
    here: list[tuple[Any, Any]] = [(tp, owner)]
    for depth, key in enumerate(path):
        found: list[tuple[Any, Any]] = []
        for step_tp, step_owner in here:
            for member in _members(_resolve(step_tp, step_owner)):
                origin, args = get_origin(member) or member, get_args(member)
                if key == "[]":
                    if origin in (list, typing.List):  # noqa: UP006
                        found.append((args[0], step_owner))
                    continue
                if not isinstance(origin, type) or not issubclass(origin, StripeObject):
                    continue
                if origin is UntypedStripeObject:
                    found.append((args[0] if args else Any, step_owner))
                elif origin is ListObject and key == "data":
                    found.append((typing.List[args[0]] if args else Any, step_owner))  # noqa: UP006
                elif key in (fields := declared_fields(origin)):
                    found.append(fields[key])
        if not found:
            return f"{'.'.join(path[: depth + 1]).replace('.[]', '[]')} is not declared"
        here = found
    return None


# ----------------------------------------------------------------------------- what the extraction reads
class Reading(Mapping):
    """A JSON object that records every key read from it (and from what it contains)."""

    def __init__(self, data: Mapping[str, Any], path: tuple[str, ...], log: set[tuple[str, ...]]) -> None:
        self.data, self.path, self.log = data, path, log

    def __getitem__(self, key: str) -> Any:
        self.log.add((*self.path, key))
        return _reading(self.data[key], (*self.path, key), self.log)

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def _reading(value: Any, path: tuple[str, ...], log: set[tuple[str, ...]]) -> Any:
    if isinstance(value, dict):
        return Reading(value, path, log)
    if isinstance(value, list):
        return [_reading(v, (*path, "[]"), log) for v in value]
    return value


def _without(value: Any, path: tuple[str, ...]) -> Any:
    """A copy of ``value`` with the field at ``path`` null (in every element of a list on the way)."""
    value = copy.deepcopy(value)

    def clear(node: Any, rest: tuple[str, ...]) -> None:
        if not rest:
            return
        if rest[0] == "[]":
            for element in node if isinstance(node, list) else []:
                clear(element, rest[1:])
        elif isinstance(node, dict) and rest[0] in node:
            if len(rest) == 1:
                node[rest[0]] = None
            else:
                clear(node[rest[0]], rest[1:])

    clear(value, path)
    return value


def fields_read(to_row: Any, objects: list[dict[str, Any]], **context: Any) -> set[tuple[str, ...]]:
    """Every field path ``to_row`` reads from ``objects``, including the fallbacks it reads when a
    field it read is null (explored until no new path appears)."""
    log: set[tuple[str, ...]] = set()

    def run(obj: dict[str, Any]) -> None:
        with contextlib.suppress(MalformedRecord):
            to_row(_reading(obj, (), log), datetime(2026, 1, 1), **context)

    for obj in objects:
        run(obj)
    explored: set[tuple[str, ...]] = set()
    while pending := sorted(log - explored):
        for path in pending:
            explored.add(path)
            for obj in objects:
                run(_without(obj, path))
    return log


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def stripe_examples() -> dict[str, Any]:
    """Stripe's own example objects (see tests/contracts/stripe/README.md)."""
    resources = json.loads(FIXTURES.read_text())["resources"]
    # The one disagreement between two Stripe artifacts: stripe-mock's example invoice still
    # carries `subscription` (null), which the API dropped in 2025-03-31.basil and the pinned
    # SDK's Invoice no longer declares. The SDK is the definition checked against here.
    resources["invoice"] = {k: v for k, v in resources["invoice"].items() if k != "subscription"}
    return resources


def _client(sandbox: Any, key: str = SANDBOX_STRIPE_KEY, retries: int = 0) -> stripe.StripeClient:
    return stripe.StripeClient(
        key, base_addresses={"api": sandbox.servers["stripe"].base_url}, max_network_retries=retries
    )


def _every_page(
    client: stripe.StripeClient, name: str, params: Mapping[str, Any]
) -> Iterator[dict[str, Any]]:
    query = dict(params)
    while True:
        body = client.raw_request("get", f"/v1/{name}", **query).data
        yield body
        if not body["has_more"]:
            return
        query = {**params, "starting_after": body["data"][-1]["id"]}


@pytest.fixture(scope="module")
def served(sandbox) -> dict[str, list[dict[str, Any]]]:
    """Every object the sandbox serves for the session's company, listed as the extraction lists."""
    client = _client(sandbox)
    params = {spec.name: {**spec.list_params, "limit": 100} for spec in extraction.STRIPE_OBJECTS}
    params["prices"] = {"limit": 100}
    return {
        name: [obj for page in _every_page(client, name, query) for obj in page["data"]]
        for name, query in params.items()
    }


# ----------------------------------------------------------------------------- the checker
def test_the_checker_accepts_stripe_s_own_example_objects(stripe_examples):
    types_ = {
        "customer": stripe.Customer,
        "subscription": stripe.Subscription,
        "subscription_item": stripe.SubscriptionItem,
        "price": stripe.Price,
        "plan": stripe.Plan,
        "invoice": stripe.Invoice,
        "line_item": stripe.InvoiceLineItem,
        "invoice_payment": stripe.InvoicePayment,
        "dispute": stripe.Dispute,
    }

    assert {name: validate(stripe_examples[name], tp) for name, tp in types_.items()} == {
        name: [] for name in types_
    }


def test_the_checker_refuses_undeclared_fields_wrong_types_and_unknown_paths(stripe_examples):
    invoice = copy.deepcopy(stripe_examples["invoice"])
    invoice["charge"] = "ch_1"  # dropped from Invoice in 2025-03-31.basil
    invoice["amount_due"] = "1000"
    invoice["status_transitions"]["paid_at"] = 1.5
    invoice["lines"]["data"][0]["price"] = {"id": "price_1"}
    invoice["metadata"] = {"plan": 3}

    assert validate(invoice, stripe.Invoice) == [
        "Invoice.amount_due: '1000' is not an integer",
        "Invoice.lines.data[0].price: not a field of InvoiceLineItem",
        "Invoice.metadata.plan: 3 is not a string",
        "Invoice.status_transitions.paid_at: 1.5 is not an integer",
        "Invoice.charge: not a field of Invoice",
    ]
    assert (
        undeclared(
            stripe.Invoice, stripe.Invoice, ("lines", "data", "[]", "pricing", "price_details", "price")
        )
        is None
    )
    assert undeclared(stripe.SubscriptionItem, stripe.SubscriptionItem, ("plan", "amount")) is None
    assert undeclared(stripe.SubscriptionItem, stripe.SubscriptionItem, ("plan", "unit_amount")) == (
        "plan.unit_amount is not declared"
    )
    assert undeclared(stripe.Subscription, stripe.Subscription, ("current_period_end",)) == (
        "current_period_end is not declared"
    )
    assert validate({"created": {"gte": 1, "lt": "2"}, "limit": 10}, _params("invoices")) == [
        "InvoiceListParams.created.lt: '2' is not an integer"
    ]


def _params(name: str) -> Any:
    import stripe.params

    return getattr(stripe.params, LISTS[name][1])


# ----------------------------------------------------------------------------- what the extraction reads
def _contexts(served: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {
        spec.name: dict(spec.context(_ServedPages(served, set()))) if spec.context else {}
        for spec in extraction.STRIPE_OBJECTS
    }


class _ServedPages:
    """Stands in for ``StripePages``: serves the sandbox's objects, recording what is read of them."""

    def __init__(self, served: dict[str, list[dict[str, Any]]], log: set[tuple[str, ...]]) -> None:
        self.served, self.log = served, log

    def pages(self, name: str, params: Mapping[str, Any]) -> Iterator[list[Any]]:
        yield [_reading(obj, (name,), self.log) for obj in self.served[name]]


@pytest.mark.parametrize("spec", extraction.STRIPE_OBJECTS, ids=lambda s: s.name)
def test_every_field_the_extraction_reads_is_declared_on_the_object_type(spec, served, stripe_examples):
    """The row builders read sandbox objects and Stripe's own examples; each field they touch,
    fallbacks included (read when the field before is null), must exist on the SDK type."""
    tp = LISTS[spec.name][0]
    example = {
        "customers": [stripe_examples["customer"]],
        "subscriptions": [
            {
                **stripe_examples["subscription"],
                "items": {
                    **stripe_examples["subscription"]["items"],
                    "data": [stripe_examples["subscription_item"]],
                },
            }
        ],
        "invoices": [
            {
                **stripe_examples["invoice"],
                "payments": {
                    "object": "list",
                    "data": [stripe_examples["invoice_payment"]],
                    "has_more": False,
                    "url": "/v1/x",
                },
            }
        ],
        "disputes": [stripe_examples["dispute"]],
    }[spec.name]
    context = _contexts(served)[spec.name]

    read = fields_read(spec.to_row, served[spec.name][:200] + example, **context)

    assert sorted({why for path in read if (why := undeclared(tp, tp, path))}) == []
    assert read  # the recorder saw the reads


def test_every_field_read_to_find_metered_prices_is_declared(served):
    log: set[tuple[str, ...]] = set()
    for spec in extraction.STRIPE_OBJECTS:
        if spec.context is not None:
            spec.context(_ServedPages(served, log))

    assert log
    assert sorted({why for p in log if (why := undeclared(stripe.Price, stripe.Price, p[1:]))}) == []


# ----------------------------------------------------------------------------- what the extraction sends
def _recording(client: stripe.StripeClient, requests: list) -> stripe.StripeClient:
    send = client.raw_request

    def raw_request(method: str, url: str, **params: Any) -> Any:
        requests.append((method, url, params))
        return send(method, url, **params)

    client.raw_request = raw_request  # type: ignore[method-assign]
    return client


def test_every_parameter_the_extraction_sends_is_a_declared_parameter_of_that_list(
    fresh_sandbox, sqlite_warehouse_url
):
    requests: list[tuple[str, str, dict[str, Any]]] = []
    client = _recording(_client(fresh_sandbox), requests)
    warehouse = engine_for(sqlite_warehouse_url)
    fast = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05)
    until = datetime(2026, 11, 2)

    extraction.extract_stripe(client, warehouse, until, retry=fast, page_size=50)
    extraction.extract_stripe(client, warehouse, until, retry=fast, page_size=50)  # the re-reads too

    assert {url for _, url, _ in requests} == {f"/v1/{name}" for name in LISTS}
    problems = []
    for method, url, params in requests:
        name = url.removeprefix("/v1/")
        assert method == "get"
        problems += validate(params, _params(name), path=f"GET {url}")
    assert problems == []


@pytest.mark.parametrize("spec", extraction.STRIPE_OBJECTS, ids=lambda s: s.name)
def test_what_the_extraction_expands_is_an_expandable_field(spec):
    tp = ListObject[LISTS[spec.name][0]]
    for path in spec.list_params.get("expand", []):
        keys = tuple(k for part in path.split(".") for k in ((part, "[]") if part == "data" else (part,)))
        assert undeclared(tp, ListObject, keys) is None, path
        field = _field_type(LISTS[spec.name][0], keys[2:])
        assert any(  # Stripe expands ids (Union[str, T]) and includes lists (ListObject[T])
            (get_origin(m) or m) is ListObject
            or (get_origin(m) in (Union, types.UnionType) and str in get_args(m))
            for m in _members(field) + [field]
        ), f"{path}: {field} is neither an expandable id nor an includable list"


def _field_type(cls: type, keys: tuple[str, ...]) -> Any:
    tp, owner = cls, cls
    for key in keys:
        tp, owner = declared_fields(get_origin(tp) or _members(_resolve(tp, owner))[0])[key]
    return _resolve(tp, owner)


def test_the_sandbox_takes_only_parameters_the_sdk_declares_for_each_list():
    for name, accepted in stripe_api.LIST_PARAMS.items():
        assert accepted <= set(declared_fields(_params(name))), name
    for name, paths in stripe_api.EXPANDABLE.items():
        for path in paths:
            assert (
                undeclared(ListObject[LISTS[name][0]], ListObject, ("data", "[]", *path.split(".")[1:]))
                is None
            )


# ----------------------------------------------------------------------------- what the sandbox serves
@pytest.mark.parametrize("name", list(LISTS))
def test_every_object_the_sandbox_serves_is_declared_with_declared_types(name, served):
    assert served[name], f"the sandbox served no {name}"
    problems = [
        p for i, obj in enumerate(served[name]) for p in validate(obj, LISTS[name][0], f"{name}[{i}]")
    ]

    assert sorted(set(problems))[:20] == []


def test_list_pages_retrievals_and_writes_the_sandbox_serves_are_declared(fresh_sandbox):
    client = _client(fresh_sandbox)
    with fresh_sandbox.store.connect() as conn:
        invoice_id = (
            conn.execute(select(stripe_invoice.c.id).where(stripe_invoice.c.charge.isnot(None)))
            .scalars()
            .first()
        )
    page = client.raw_request("get", "/v1/invoices", limit=3, expand=["data.payments"]).data
    invoice = client.raw_request("get", f"/v1/invoices/{invoice_id}", expand=["payments"]).data
    subscriptions = client.raw_request("get", "/v1/subscriptions", limit=2).data
    created = client.raw_request("post", "/v1/customers", email="new@example.com", metadata={"k": "v"}).data
    updated = client.raw_request("post", f"/v1/customers/{created['id']}", name="New").data

    assert validate(page, ListObject[stripe.Invoice]) == []
    assert validate(invoice, stripe.Invoice) == []
    assert invoice["payments"]["data"][0]["payment"]["type"] == "payment_intent"
    assert validate(subscriptions, ListObject[stripe.Subscription]) == []
    assert validate(created, stripe.Customer) == [] and validate(updated, stripe.Customer) == []


def _error(client_call: Any) -> tuple[type, int | None, Any]:
    with pytest.raises(stripe.StripeError) as caught:
        client_call()
    return type(caught.value), caught.value.http_status, caught.value.json_body


def _first_customer(sandbox: Any) -> str:
    with sandbox.store.connect() as conn:
        return conn.execute(select(stripe_customer.c.id).order_by(stripe_customer.c.id)).scalars().first()


def test_every_error_the_sandbox_serves_is_stripe_s_error_object_and_maps_to_the_sdk_s_class(fresh_sandbox):
    stripe_api.configure(fresh_sandbox.store, restricted_keys={"rk_test_billing_only": ["rak_customer_read"]})
    good = _client(fresh_sandbox)
    customer = _first_customer(fresh_sandbox)
    good.v1.customers.update(customer, params={"name": "A"}, options={"idempotency_key": "k1"})

    def faulty(kind: str) -> Any:
        fresh_sandbox.inject_fault("stripe", kind, path_regex="/v1/prices", times=1)
        return _error(lambda: good.raw_request("get", "/v1/prices"))

    unauthenticated = urllib.request.Request(fresh_sandbox.servers["stripe"].base_url + "/v1/customers")
    with pytest.raises(urllib.error.HTTPError) as no_key:
        urllib.request.urlopen(unauthenticated, timeout=10)  # noqa: S310 - loopback

    errors = {
        "wrong key": _error(
            lambda: _client(fresh_sandbox, "sk_test_wrong").raw_request("get", "/v1/customers")
        ),
        "restricted": _error(
            lambda: _client(fresh_sandbox, "rk_test_billing_only").raw_request("get", "/v1/invoices")
        ),
        "unknown url": _error(lambda: good.raw_request("get", "/v1/v1/customers")),
        "no such object": _error(lambda: good.raw_request("get", "/v1/invoices/in_missing")),
        "unknown parameter": _error(lambda: good.raw_request("get", "/v1/invoices", updated_since=1)),
        "not expandable": _error(lambda: good.raw_request("get", "/v1/disputes", expand=["data.charge"])),
        "idempotency": _error(
            lambda: good.v1.customers.update(
                customer, params={"name": "B"}, options={"idempotency_key": "k1"}
            )
        ),
        "rate limit": faulty("rate_limit"),
        "server error": faulty("server_error"),
    }

    assert no_key.value.code == 401
    assert {name: (cls, status) for name, (cls, status, _) in errors.items()} == {
        "wrong key": (stripe.AuthenticationError, 401),
        "restricted": (stripe.PermissionError, 403),
        "unknown url": (stripe.InvalidRequestError, 404),
        "no such object": (stripe.InvalidRequestError, 404),
        "unknown parameter": (stripe.InvalidRequestError, 400),
        "not expandable": (stripe.InvalidRequestError, 400),
        "idempotency": (stripe.IdempotencyError, 400),
        "rate limit": (stripe.RateLimitError, 429),
        "server error": (stripe.APIError, 500),
    }
    bodies = {
        "no key": json.loads(no_key.value.read()),
        **{name: body for name, (_, _, body) in errors.items()},
    }
    for name, body in bodies.items():
        assert set(body) == {"error"}, name
        assert validate(body["error"], stripe.ErrorObject, f"{name}: error") == []
        # ErrorObject.type is a plain str; its documentation lists the values
        assert body["error"]["type"] in (
            "api_error",
            "card_error",
            "idempotency_error",
            "invalid_request_error",
        )
