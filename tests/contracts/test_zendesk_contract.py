"""Contract: the Zendesk extraction and the Zendesk sandbox, checked against definitions we did not write.

The sandbox is our reading of Zendesk's API and so is the extraction; where that reading is wrong
both are wrong together and every other test passes. Here both are held, offline, to:

* **zenpy's object definitions** - the classes of ``zenpy.lib.api_objects`` in the zenpy pinned in
  ``constraints.txt`` (``zenpy==2.0.57``, checked below): ``Ticket``, ``Via``, ``TicketMetric``,
  ``TicketMetricItem``, ``Organization``, ``SatisfactionRating``, ``User`` (a ticket's
  sideloaded requester). A class's constructor
  parameters are the object's fields (zenpy generates them from Zendesk's example payloads;
  ``from_`` is ``from``). For request parameters, zenpy's endpoint builders
  (``zenpy.lib.endpoint.EndpointFactory``): the parameters zenpy itself sends to each path.
* **Zendesk's published API reference** - ``tests/contracts/zendesk/zendesk_api_reference.json``:
  facts restated from Zendesk's OpenAPI description (Support API 2.0.0: ``TicketObject``,
  ``TicketMetricObject``, ``OrganizationObject``, ``SatisfactionRatingObject``,
  ``CursorBasedExportIncrementalTicketsResponse``, ``IncrementalTicketExportCursor``) and its
  reference pages (incremental exports, cursor pagination, side-loading, satisfaction ratings,
  authentication, the 401 body), each entry with its source; read 2026-12-06. The document has
  no licence, so only facts are kept there (see its ``about``).

A field is *defined* when either definition has it (each says where), e.g. a rating's ``comment``
is Zendesk's but not zenpy's, and the export's ``generated_timestamp`` is in neither object
definition but in the export's reference. What is checked: every field the extraction reads from
every response (recorded while it runs against the sandbox) is defined for that object; every
parameter it sends is one zenpy or the reference sends to that path, within documented limits;
every object, page and error the sandbox serves has only defined fields, of the defined types and
values; the values the extraction accepts are the ones Zendesk defines. The checker itself must
reject what the definitions do not allow (a rating with an ``organization_id``, say).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import requests
import zenpy.lib.api_objects as zenpy_objects
from sqlalchemy import insert, select
from zenpy import Zenpy
from zenpy.lib.endpoint import EndpointFactory

from customer_health.retries import RetryPolicy
from customer_health.sources import zendesk as extraction
from customer_health.warehouse.engine import engine_for
from health_sandbox.connections import SANDBOX_ZENDESK_EMAIL, SANDBOX_ZENDESK_TOKEN
from health_sandbox.http import serve
from health_sandbox.server import Sandbox
from health_sandbox.store import sandbox_meta, store_engine, zd_ticket, zd_user
from health_sandbox.zendesk_api import build_app
from tests.integration.test_zendesk_extraction import UNTIL, seed_zendesk

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_FILE = Path(__file__).parent / "zendesk" / "zendesk_api_reference.json"
REFERENCE = json.loads(REFERENCE_FILE.read_text())
AUTH = (f"{SANDBOX_ZENDESK_EMAIL}/token", SANDBOX_ZENDESK_TOKEN)
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


# ----------------------------------------------------------------------------- definitions
@dataclass
class Shape:
    """One JSON object shape: its defined fields (each with where it is defined), types, values."""

    name: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    values: dict[str, set[Any]] = field(default_factory=dict)

    def add(self, names: Any, source: str, types: dict | None = None, values: dict | None = None) -> Shape:
        for name in names:
            self.fields.setdefault(name, []).append(source)
        self.types.update(types or {})
        for key, allowed in (values or {}).items():
            self.values.setdefault(key, set()).update(allowed)
        return self

    def zenpy(self, cls: type) -> Shape:
        params = inspect.signature(cls.__init__).parameters
        names = [p.rstrip("_") for p in params if p not in ("self", "api", "kwargs")]
        return self.add(names, f"zenpy {cls.__module__}.{cls.__name__}")

    def reference(self, section: str, key: str) -> Shape:
        entry = REFERENCE[section][key]
        return self.add(
            entry["fields"],
            f"Zendesk reference {key}",
            entry.get("types"),
            {k: set(v) for k, v in entry.get("values", {}).items()},
        )


def _shapes() -> dict[str, Shape]:
    objects, responses = "objects", "responses"
    page = REFERENCE[responses]["CursorPaginationPage"]
    export = REFERENCE[responses]["CursorBasedExportIncrementalTicketsResponse"]
    shapes = {
        "ticket": Shape("ticket").zenpy(zenpy_objects.Ticket).reference(objects, "TicketObject"),
        "ticket (export)": Shape("ticket (export)")
        .zenpy(zenpy_objects.Ticket)
        .reference(objects, "TicketObject")
        .reference(objects, "TicketObject in the incremental export"),
        "via": Shape("via").zenpy(zenpy_objects.Via).reference(objects, "TicketViaObject"),
        "metric set": Shape("metric set")
        .zenpy(zenpy_objects.TicketMetric)
        .reference(objects, "TicketMetricObject"),
        "metric time": Shape("metric time")
        .zenpy(zenpy_objects.TicketMetricItem)
        .reference(objects, "TicketMetricTimeObject"),
        "organization": Shape("organization")
        .zenpy(zenpy_objects.Organization)
        .reference(objects, "OrganizationObject"),
        "user": Shape("user").zenpy(zenpy_objects.User),
        "satisfaction rating": Shape("satisfaction rating")
        .zenpy(zenpy_objects.SatisfactionRating)
        .reference(objects, "SatisfactionRatingObject"),
        "export page": Shape("export page")
        .reference(responses, "CursorBasedExportIncrementalTicketsResponse")
        .add(export["sideloads"], "Zendesk reference side-loading (tickets)"),
        "organizations page": Shape("organizations page")
        .add(["organizations"], "Zendesk reference OrganizationsResponse")
        .add(page["fields"], "Zendesk reference CursorPaginationPage"),
        "satisfaction ratings page": Shape("satisfaction ratings page")
        .add(["satisfaction_ratings"], "Zendesk reference SatisfactionRatingsResponse")
        .add(page["fields"], "Zendesk reference CursorPaginationPage"),
        "pagination meta": Shape("pagination meta").add(
            page["meta"], "Zendesk reference CursorPaginationPage.meta"
        ),
        "pagination links": Shape("pagination links").add(
            page["links"], "Zendesk reference CursorPaginationPage.links"
        ),
        "show ticket": Shape("show ticket").add(["ticket"], "Zendesk reference TicketResponse"),
        "error": Shape("error").reference(responses, "Error"),
    }
    return shapes


SHAPES = _shapes()
ENDPOINTS = {  # path after /api/v2/ -> the shape of its body
    "incremental/tickets/cursor.json": "export page",
    "organizations.json": "organizations page",
    "satisfaction_ratings.json": "satisfaction ratings page",
}
CHILDREN = {  # (shape, key) -> the shape of that key's object (or of each item of its list)
    ("export page", "tickets"): "ticket (export)",
    ("export page", "metric_sets"): "metric set",
    ("export page", "users"): "user",
    ("ticket", "via"): "via",
    ("ticket (export)", "via"): "via",
    ("organizations page", "organizations"): "organization",
    ("satisfaction ratings page", "satisfaction_ratings"): "satisfaction rating",
    ("show ticket", "ticket"): "ticket",
}
for _page in ("organizations page", "satisfaction ratings page"):
    CHILDREN[(_page, "meta")] = "pagination meta"
    CHILDREN[(_page, "links")] = "pagination links"


def child_shape(shape: str | None, key: str) -> str | None:
    if shape == "metric set" and key.endswith(("_in_minutes", "_in_seconds")):
        return "metric time"
    return CHILDREN.get((shape, key)) if shape else None


def endpoint_shape(path: str) -> str:
    if re.fullmatch(r"tickets/\d+\.json", path):
        return "show ticket"
    return ENDPOINTS[path]


# ----------------------------------------------------------------------------- the checker
def _type_ok(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "date-time":
        return isinstance(value, str) and ISO_UTC.fullmatch(value) is not None
    if kind == "array of string":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    raise AssertionError(f"unknown type {kind!r} in the reference file")


def violations(body: Any, shape: str, where: str = "") -> Iterator[str]:
    """Everything in ``body`` (of ``shape``) that no definition allows."""
    definition = SHAPES[shape]
    if not isinstance(body, dict):
        yield f"{where or shape}: a {type(body).__name__}, not a JSON object"
        return
    for key, value in body.items():
        at = f"{where or shape}.{key}"
        if key not in definition.fields:
            yield f"{at}: not a field of {shape} in zenpy or Zendesk's reference"
            continue
        kind = definition.types.get(key)
        if kind and (value is not None or key == "id") and not _type_ok(value, kind):
            yield f"{at}: {value!r} is not {kind}"
        allowed = definition.values.get(key)
        if allowed and value is not None and value not in allowed:
            yield f"{at}: {value!r} is not one of {sorted(allowed)}"
        inner = child_shape(shape, key)
        if inner and value is not None:
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                yield from violations(item, inner, f"{at}[{i}]" if isinstance(value, list) else at)


def summary(problems: list[str]) -> str:
    """Problems with list positions folded (``[3]`` -> ``[*]``), each once with its count."""
    folded: dict[str, int] = {}
    for problem in problems:
        key = re.sub(r"\[\d+\]", "[*]", re.sub(r"tickets/\d+", "tickets/<id>", problem.split(": ", 1)[0]))
        key += ": " + re.sub(r"^.*?: ", "", problem, count=1) if ": " in problem else ""
        folded[key] = folded.get(key, 0) + 1
    return "\n".join(f"{text} (x{n})" for text, n in folded.items())


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture()
def zendesk(tmp_path, monkeypatch) -> Iterator[Sandbox]:
    folder = tmp_path / "sandbox"
    store = store_engine(folder / "company.db")
    seed_zendesk(store)
    with store.begin() as conn:  # the requesters, sideloaded with their tickets (include=users)
        requesters = sorted(set(conn.execute(select(zd_ticket.c.requester_id)).scalars()))
        conn.execute(insert(zd_user), [
            {"id": r, "name": f"Requester {r}", "email": f"Requester.{r}@example.com", "organization_id": None,
             "role": "end-user", "created_at": datetime(2025, 1, 1), "updated_at": datetime(2025, 1, 1)}
            for r in requesters
        ])  # fmt: skip
    running = serve(build_app(store, folder))
    monkeypatch.setenv("ZENPY_FORCE_NETLOC", f"127.0.0.1:{running.port}")
    monkeypatch.setenv("ZENPY_FORCE_SCHEME", "http")
    yield Sandbox(folder=folder, store=store, servers={"zendesk": running})
    running.stop()


def _get(base: str, path: str, params: dict | None = None, auth: Any = AUTH) -> requests.Response:
    return requests.get(f"{base}/api/v2/{path}", params=params, auth=auth, timeout=30)


def served_pages(base: str) -> Iterator[tuple[str, dict]]:
    """Every page of every list the extraction reads, as the sandbox serves it."""
    for path, size in (("organizations.json", 100), ("satisfaction_ratings.json", 100)):
        params: dict[str, Any] = {"page[size]": size}
        while True:
            body = _get(base, path, params).json()
            yield path, body
            if not body["meta"]["has_more"]:
                break
            params = {"page[size]": size, "page[after]": body["meta"]["after_cursor"]}
    params = {"start_time": 0, "per_page": 1000, "include": "metric_sets,users"}
    while True:
        body = _get(base, "incremental/tickets/cursor.json", params).json()
        yield "incremental/tickets/cursor.json", body
        if body["end_of_stream"]:
            break
        params = {"cursor": body["after_cursor"], "per_page": 1000, "include": "metric_sets,users"}


# ----------------------------------------------------------------------------- recording the extraction
class Recorded(dict):
    """A JSON object of a known shape that notes every key the extraction reads from it."""

    def __init__(self, data: dict, shape: str, reads: set[tuple[str, str]]) -> None:
        super().__init__({k: _wrap(v, child_shape(shape, k), reads) for k, v in data.items()})
        self.shape, self.reads = shape, reads

    def get(self, key: str, default: Any = None) -> Any:
        self.reads.add((self.shape, key))
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.reads.add((self.shape, key))
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.reads.add((self.shape, str(key)))
        return super().__contains__(key)


def _wrap(value: Any, shape: str | None, reads: set[tuple[str, str]]) -> Any:
    if isinstance(value, list):
        return [_wrap(v, shape, reads) for v in value]
    if isinstance(value, dict) and shape:
        return Recorded(value, shape, reads)
    return value


@dataclass
class Recording:
    reads: set[tuple[str, str]] = field(default_factory=set)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@pytest.fixture()
def recorded_run(zendesk, sqlite_warehouse_url, monkeypatch) -> Recording:
    """One full extraction against the sandbox, recording every request and every field read."""
    recording = Recording()
    get = extraction.ZendeskPages.get

    def recording_get(self, api, path, params):  # noqa: ANN001, ANN202
        recording.requests.append((path, dict(params)))
        return _wrap(get(self, api, path, params), endpoint_shape(path), recording.reads)

    monkeypatch.setattr(extraction.ZendeskPages, "get", recording_get)
    client = Zenpy(subdomain="acme", email=SANDBOX_ZENDESK_EMAIL, token=SANDBOX_ZENDESK_TOKEN)
    report = extraction.extract_zendesk(
        client,
        engine_for(sqlite_warehouse_url),
        UNTIL,
        page_size=7,
        export_page_size=9,
        retry=RetryPolicy(attempts=2, base_delay=0.01),
    )
    assert report.rows > 0 and report.quarantined == 0
    return recording


def zenpy_parameters(path: str) -> set[str]:
    """The parameters zenpy's own endpoint builders send to ``path``."""
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    built = {
        "incremental/tickets/cursor.json": [
            EndpointFactory("tickets").incremental.cursor_start(
                start_time=0, include=["metric_sets"], per_page=1
            ),
            EndpointFactory("tickets").incremental.cursor(cursor="c", include=["metric_sets"]),
        ],
        "organizations.json": [EndpointFactory("organizations")(cursor_pagination=100)],
        "satisfaction_ratings.json": [
            EndpointFactory("satisfaction_ratings")(
                score="good", sort_order="asc", start_time=moment, end_time=moment, cursor_pagination=100
            )
        ],
    }[path]
    # Zendesk serves a path with or without ".json"; zenpy writes satisfaction_ratings without.
    assert all(url.path.removesuffix(".json") == path.removesuffix(".json") for url in built), built
    return {name for url in built for name in url.params}


# ----------------------------------------------------------------------------- the definitions in use
def test_the_definitions_are_the_pinned_zenpy_and_a_sourced_reference_file():
    pinned = re.search(r"^zenpy==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert pinned and metadata.version("zenpy") == pinned.group(1)
    about = REFERENCE["about"]
    assert {"sources", "read", "licence", "version"} <= set(about)
    for section in ("objects", "responses", "parameters"):
        for name, entry in REFERENCE[section].items():
            assert entry.get("source"), f"{section}.{name} does not say where it comes from"


def test_the_checker_rejects_what_the_definitions_do_not_allow():
    rating = {
        "id": 1, "url": "u", "ticket_id": 2, "requester_id": 3, "assignee_id": None, "group_id": None,
        "score": "good", "comment": "Thanks", "reason": None, "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    assert list(violations(rating, "satisfaction rating")) == []
    assert list(violations(rating | {"organization_id": 9}, "satisfaction rating")) == [
        "satisfaction rating.organization_id: not a field of satisfaction rating in zenpy or Zendesk's reference"
    ]
    assert list(violations(rating | {"score": "meh"}, "satisfaction rating"))
    assert list(violations(rating | {"created_at": "2026-01-01 00:00"}, "satisfaction rating"))
    ticket = {"id": 1, "status": "open", "updated_at": "2026-01-01T00:00:00Z", "via": {"channel": "web"}}
    assert list(violations(ticket | {"generated_timestamp": 1}, "ticket (export)")) == []
    assert list(violations(ticket | {"generated_timestamp": 1}, "ticket"))  # export-only
    assert list(violations(ticket | {"status": "deleted"}, "ticket (export)")) == []
    assert list(violations(ticket | {"via": {"channel": "web", "colour": "red"}}, "ticket"))
    assert list(violations({"tickets": [], "end_of_stream": "yes"}, "export page"))


# ----------------------------------------------------------------------------- the sandbox
def test_every_page_and_object_the_sandbox_serves_is_defined(sandbox):
    base = sandbox.endpoints["zendesk"]
    problems, seen = [], set()
    for path, body in served_pages(base):
        problems += violations(body, endpoint_shape(path), path)
        seen.add(path)
    with sandbox.store.connect() as conn:
        ticket_ids = list(conn.execute(select(zd_ticket.c.id).order_by(zd_ticket.c.id).limit(5)).scalars())
    for ticket_id in ticket_ids:
        problems += violations(
            _get(base, f"tickets/{ticket_id}.json").json(), "show ticket", f"tickets/{ticket_id}"
        )

    assert seen == set(ENDPOINTS)
    assert problems == [], summary(problems)


def test_every_error_the_sandbox_serves_has_zendesks_error_shape(zendesk):
    base = zendesk.servers["zendesk"].base_url
    answers = {
        "no credentials": _get(base, "organizations.json", auth=None),
        "a wrong token": _get(base, "organizations.json", auth=(AUTH[0], "wrong")),
        "an unknown path": _get(base, "nothing_here.json"),
        "a bad parameter": _get(base, "organizations.json", {"page[size]": "many"}),
        "export without start_time or cursor": _get(base, "incremental/tickets/cursor.json"),
    }
    zendesk.inject_fault("zendesk", "rate_limit", path_regex="organizations", times=1, retry_after=1)
    answers["rate limited"] = _get(base, "organizations.json")
    zendesk.inject_fault("zendesk", "server_error", path_regex="satisfaction", times=1)
    answers["an outage"] = _get(base, "satisfaction_ratings.json")
    with zendesk.store.begin() as conn:
        conn.execute(insert(sandbox_meta).values(key="zendesk_role", value="agent"))
    answers["an agent on the export"] = _get(base, "incremental/tickets/cursor.json", {"start_time": 0})

    problems = []
    for what, response in answers.items():
        assert response.status_code >= 400, what
        body = response.json()
        problems += violations(body, "error", f"{what} (HTTP {response.status_code})")
        if not isinstance(body.get("error"), str):
            problems.append(f"{what}: no 'error' string (zenpy's _check_response reads it)")
    assert problems == [], "\n".join(problems)
    assert answers["no credentials"].json() == REFERENCE["responses"]["Error"]["401"]
    assert answers["a wrong token"].json() == REFERENCE["responses"]["Error"]["401"]
    assert (answers["rate limited"].status_code, answers["an agent on the export"].status_code) == (429, 403)


# ----------------------------------------------------------------------------- the extraction
def test_every_field_the_extraction_reads_is_defined(recorded_run):
    undefined = sorted(
        f"{shape}.{key}" for shape, key in recorded_run.reads if key not in SHAPES[shape].fields
    )
    read = {shape for shape, _ in recorded_run.reads}

    assert undefined == [], f"the extraction reads fields no definition has: {undefined}"
    assert {"export page", "ticket (export)", "metric set", "metric time", "organization", "satisfaction rating",
            "organizations page", "pagination meta", "satisfaction ratings page"} <= read  # fmt: skip
    assert ("satisfaction rating", "organization_id") not in recorded_run.reads
    assert ("ticket (export)", "generated_timestamp") in recorded_run.reads  # the export's order
    assert {("ticket (export)", "requester_id"), ("user", "email")} <= recorded_run.reads  # who filed it


def test_every_parameter_the_extraction_sends_is_one_zendesk_or_zenpy_defines(recorded_run):
    problems = []
    for path, params in recorded_run.requests:
        reference = REFERENCE["parameters"][path]
        allowed = zenpy_parameters(path) | set(reference["names"])
        for name, value in params.items():
            if name not in allowed:
                problems.append(f"{path}: parameter {name!r} is neither zenpy's nor in Zendesk's reference")
            limit = reference.get("maximum", {}).get(name)
            if limit is not None and not (isinstance(value, int) and 1 <= value <= limit):
                problems.append(f"{path}: {name}={value!r} is not 1..{limit}")
            if name in ("start_time", "end_time") and not isinstance(value, int):
                problems.append(f"{path}: {name}={value!r} is not unix seconds")
            if name == "include" and not set(str(value).split(",")) <= set(reference.get("sideloads", [])):
                problems.append(f"{path}: include={value!r} is not a documented sideload")
        one_of = reference.get("one_of")
        if one_of and sum(name in params for name in one_of) != 1:
            problems.append(f"{path}: exactly one of {one_of} is required, got {sorted(params)}")

    assert {path for path, _ in recorded_run.requests} == set(ENDPOINTS)
    assert problems == [], "\n".join(problems)


def test_the_values_the_extraction_accepts_are_the_ones_zendesk_defines():
    ticket = SHAPES["ticket (export)"].values
    rating = SHAPES["satisfaction rating"].values

    assert ticket["priority"] == extraction.TICKET_PRIORITIES
    assert ticket["type"] == extraction.TICKET_TYPES
    assert ticket["status"] == extraction.TICKET_STATUSES
    assert rating["score"] == extraction.RATING_SCORES
