"""Extraction of Zendesk organizations, tickets and satisfaction ratings into the warehouse.

The client is zenpy, as built by the Airflow Zendesk provider's ``ZendeskHook`` from the
connection (host ``<subdomain>.zendesk.com``, login = e-mail, API token in the password with
``{"use_token": true}`` or in extra ``token``). Pages are read as raw JSON through the zenpy
client's own transport (its session, authentication, URL building and 429 handling), because
the extraction needs what zenpy's object generators hide: each export page's ``after_cursor``,
its sideloaded ``metric_sets``, and the page boundaries it commits on.

How far a run reads: ``until`` is the run's interval end, but never later than the moment the
read starts minus a safety lag (``sources.window.read_bound``; ``read_started`` stands in for
"now" in tests). A run for "today" must not mark as read what has not happened yet, and the lag
covers a Zendesk clock a few seconds behind ours and records that become visible a little after
their stamp. Everything below calls that bound ``bound``.

What is read, and how it stays correct:

* **Organizations** - all of them, every run (a few thousand at most), upserted page by page;
  one created at or after ``bound`` is left for a later run.
* **Tickets** - the cursor-based incremental export with ``include=metric_sets,users``; the
  metric set is folded into the ticket row (reopens, full resolution minutes, solved_at), the
  category derived from tags, and the requester's id and e-mail (from the sideloaded users)
  kept, so a ticket and its rating can be matched to a Salesforce contact (stakeholder
  health). The watermark is the export cursor (``cursor:<token>``), written in the
  transaction that commits its page, so it never runs ahead of stored data; Zendesk's cursor is
  safe to resume from, and a crashed run resumes after its last committed page.
* **Satisfaction ratings** - by ``created_at`` window ``[watermark, bound)``; the watermark (the
  window's end) is written after the whole window is stored, only forward
  (``advance_time_watermark``: an overlapping run that read less far leaves it), pages before it
  are upserted, so a failed run just reads the window again. Zendesk's ratings carry no
  ``organization_id`` (Zendesk's API reference and zenpy's ``SatisfactionRating`` define none):
  the rating's organization is its ticket's, and every reader joins through ``ticket_id``
  (the signals, ``refresh.affected_accounts``); the raw column stays NULL.

Point in time: the export is ordered by each ticket's ``generated_timestamp`` - moved by *every*
change, system updates included - not by ``updated_at``, which only a ticket event moves. So
``updated_at`` can go backwards within a page, and a ticket whose last event was before
``bound`` may carry a later system update. A run stores no ticket generated at or after
``bound``: the first such ticket ends the stream (every later one is generated later still).
Its page's earlier tickets are stored, but the cursor is *not* advanced past that page - the
watermark stays at the previous page's cursor, the last position entirely before ``bound`` - and
the next run reads that page again (upserts make it harmless). Zendesk exports only a ticket's
current state, so a ticket changed both before and after ``bound`` is left at its previously
stored version (or absent) until a later run; a run never stores a version from its future.

Failures: malformed records go to the quarantine with the reason and the rest continues.
zenpy waits out 429s itself, honouring ``Retry-After``; ``ratelimit_budget`` bounds that wait
(zenpy raises ``RatelimitBudgetExceeded`` when spent, unbounded otherwise). 5xx, timeouts and
429s without ``Retry-After`` are retried with backoff by ``customer_health.retries``; when
retries run out the run fails with ``ZendeskExtractionError`` and no watermark past the last
committed page.
Zendesk refusing the credentials (401) or the user's access (403) raises
``ZendeskAuthenticationError`` at once, naming the connection and what to check: it has
``retryable = False``, so the DAG fails the task instead of retrying the same credentials.

Pointing zenpy at the sandbox: zenpy reads ``ZENPY_FORCE_NETLOC`` and ``ZENPY_FORCE_SCHEME``
from the environment on *every request* (``BaseApi._build_url``), not at import or construction,
so they can be set any time before the extraction; they are process-wide. Every URL here is
built through ``_build_url`` (next pages are requested by cursor, never by following the
server's absolute ``after_url``), so the override covers all requests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import requests
from sqlalchemy import Engine
from zenpy import Zenpy
from zenpy.lib.api import BaseApi
from zenpy.lib.endpoint import Url
from zenpy.lib.exception import APIException, RatelimitBudgetExceeded

from customer_health import settings
from customer_health.retries import (
    RETRYABLE_STATUSES,
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
    set_watermark,
    upsert_rows,
    utcnow,
)
from customer_health.warehouse.schema import (
    raw_zd_organization,
    raw_zd_satisfaction_rating,
    raw_zd_ticket,
)

SOURCE = "zendesk"
EPOCH = datetime(1970, 1, 1)
TICKET_PRIORITIES = frozenset({"low", "normal", "high", "urgent"})
TICKET_TYPES = frozenset({"question", "incident", "problem", "task"})
TICKET_STATUSES = frozenset({"new", "open", "pending", "hold", "solved", "closed", "deleted"})
RATING_SCORES = frozenset({"good", "bad", "offered", "unoffered"})
# A page that leads back to its own cursor more often than this is a server fault, not progress.
MAX_PAGES_WITHOUT_PROGRESS = 3

log = logging.getLogger(__name__)


class ZendeskExtractionError(RuntimeError):
    """The Zendesk extraction could not complete; the message says why and what to do.

    Retryable as such (rate limits or an outage that outlasted the retries); the subclass
    below is the failure another attempt cannot fix.
    """

    retryable = True


class ZendeskAuthenticationError(ZendeskExtractionError):
    """Zendesk refused the connection's credentials (401) or the user's access (403).

    A retry sends the same credentials, so the DAG fails at once (``retryable = False``).
    """

    retryable = False


# ----------------------------------------------------------------------------- parsing
def parse_time(value: Any, field: str, *, required: bool = True) -> datetime | None:
    """A Zendesk ISO-8601 timestamp as naive UTC; ``MalformedRecord`` when unreadable."""
    if value is None or value == "":
        if required:
            raise MalformedRecord(f"{field} is missing")
        return None
    if not isinstance(value, str):
        raise MalformedRecord(f"{field} is not a timestamp: {value!r}")
    try:
        return naive_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise MalformedRecord(f"{field} is not a timestamp: {value!r}") from None


def parse_unix(value: Any, field: str) -> datetime:
    """Unix seconds (Zendesk's ``generated_timestamp``) as naive UTC; ``MalformedRecord`` when not."""
    if value is None:
        raise MalformedRecord(f"{field} is missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedRecord(f"{field} is not unix seconds: {value!r}")
    return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)


def _int(value: Any, field: str, *, required: bool = False) -> int | None:
    if value is None:
        if required:
            raise MalformedRecord(f"{field} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedRecord(f"{field} is not an integer: {value!r}")
    return value


def ticket_category(tags: list[str]) -> str:
    """``complaint`` when tagged so (frustration outweighs learning), else ``how_to``, else ``other``."""
    normalized = {t.lower().replace("-", "_") for t in tags}
    if "complaint" in normalized:
        return "complaint"
    if "how_to" in normalized:
        return "how_to"
    return "other"


def organization_row(org: Mapping[str, Any], extracted_at: datetime) -> dict[str, Any]:
    """A ``raw_zd_organization`` row from an API organization."""
    check = FieldCheck()
    external_id = org.get("external_id")
    if external_id is not None and (not isinstance(external_id, str) or len(external_id) > 40):
        check.problem(f"external_id is not a string of at most 40 characters: {external_id!r}")
    return check.row(
        {
            "id": check(_int, org.get("id"), "id", required=True),
            "name": check(_text, org.get("name"), "name", 255),
            "external_id": external_id or None,
            "created_at": check(parse_time, org.get("created_at"), "created_at"),
            "source_updated_at": check(parse_time, org.get("updated_at"), "updated_at", required=False),
            "is_deleted": False,
            "extracted_at": extracted_at,
        }
    )


def ticket_row(
    ticket: Mapping[str, Any],
    metric_set: Mapping[str, Any] | None,
    extracted_at: datetime,
    requester: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``raw_zd_ticket`` row from an exported ticket, its sideloaded metric set and requester
    (the sideloaded user whose id is the ticket's ``requester_id``; its e-mail is NULL without one)."""
    check = FieldCheck()
    requester = requester or {}
    tags = ticket.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        check.problem(f"tags is not a list of strings: {tags!r}")
        tags = []
    status = check(_choice, ticket.get("status"), "status", TICKET_STATUSES)
    metric_set = metric_set or {}
    resolution = metric_set.get("full_resolution_time_in_minutes") or {}
    if not isinstance(resolution, Mapping):
        check.problem(f"full_resolution_time_in_minutes is not an object: {resolution!r}")
        resolution = {}
    return check.row(
        {
            "id": check(_int, ticket.get("id"), "id", required=True),
            "organization_id": check(_int, ticket.get("organization_id"), "organization_id"),
            "subject": check(_text, ticket.get("subject"), "subject", 255),
            "ticket_type": check(_choice, ticket.get("type"), "type", TICKET_TYPES),
            "priority": check(_choice, ticket.get("priority"), "priority", TICKET_PRIORITIES),
            "status": status,
            "tags": json.dumps(tags),
            "category": ticket_category(tags),
            "created_at": check(parse_time, ticket.get("created_at"), "created_at"),
            "solved_at": check(
                parse_time, metric_set.get("solved_at"), "metric_set.solved_at", required=False
            ),
            "reopens": check(_int, metric_set.get("reopens"), "metric_set.reopens"),
            "full_resolution_minutes": check(
                _int, resolution.get("calendar"), "full_resolution_time_in_minutes"
            ),
            "requester_id": check(_int, ticket.get("requester_id"), "requester_id"),
            "requester_email": check(_text, requester.get("email"), "users.email", 255),
            "source_updated_at": check(parse_time, ticket.get("updated_at"), "updated_at"),
            "is_deleted": status == "deleted",
            "extracted_at": extracted_at,
        }
    )


def satisfaction_rating_row(rating: Mapping[str, Any], extracted_at: datetime) -> dict[str, Any]:
    """A ``raw_zd_satisfaction_rating`` row from an API satisfaction rating.

    Zendesk's ratings have no ``organization_id``: the organization is the ticket's, joined
    through ``ticket_id`` by every reader, so the raw column is left NULL.
    """
    check = FieldCheck()
    return check.row(
        {
            "id": check(_int, rating.get("id"), "id", required=True),
            "ticket_id": check(_int, rating.get("ticket_id"), "ticket_id", required=True),
            "organization_id": None,
            "score": check(_choice, rating.get("score"), "score", RATING_SCORES),
            "created_at": check(parse_time, rating.get("created_at"), "created_at"),
            "source_updated_at": check(parse_time, rating.get("updated_at"), "updated_at", required=False),
            "is_deleted": False,
            "extracted_at": extracted_at,
        }
    )


# ----------------------------------------------------------------------------- transport
def classify_zendesk_error(exc: BaseException) -> Retryable | None:
    """Which zenpy/requests failures are transient (5xx, timeouts, 429 zenpy did not wait out)."""
    if isinstance(exc, RatelimitBudgetExceeded):
        return None  # the bound we set was reached: fail, do not wait more
    response = getattr(exc, "response", None)
    if isinstance(exc, APIException | requests.HTTPError) and response is not None:
        if response.status_code in RETRYABLE_STATUSES:
            return Retryable(f"HTTP {response.status_code}", retry_after_from(response.headers))
        return None
    if isinstance(exc, requests.Timeout):
        return Retryable(f"timed out ({exc.__class__.__name__})")
    if isinstance(exc, requests.ConnectionError):
        return Retryable(f"connection failed ({exc.__class__.__name__})")
    return None


class ZendeskPages:
    """Raw JSON pages through a zenpy client: its session, auth, URL building and 429 waits."""

    def __init__(
        self,
        client: Zenpy,
        *,
        policy: RetryPolicy,
        ratelimit_budget: int,
        request_timeout: float,
        logger: logging.Logger,
        connection: str = settings.ZENDESK_CONN_ID,
    ) -> None:
        self.client = client
        self.policy = policy
        self.logger = logger
        self.connection = connection
        # zenpy copies budget and timeout into each API object; ZendeskHook sets neither, and an
        # unset budget means zenpy would wait out 429s forever. Reset per run: zenpy spends it.
        for api in (client.organizations, client.tickets, client.satisfaction_ratings):
            api.ratelimit_budget = ratelimit_budget
            api.timeout = request_timeout

    def get(self, api: Any, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """GET ``/api/v2/<path>`` with ``params``, retried within the policy; the JSON body."""
        url = api._build_url(Url(path))  # honours ZENPY_FORCE_NETLOC/SCHEME on every call

        def fetch() -> requests.Response:
            return api._get(url, raw_response=True, params=dict(params))

        describe = f"Zendesk GET /api/v2/{path}"
        try:
            response = call_with_retries(
                fetch,
                describe=describe,
                classify=classify_zendesk_error,
                policy=self.policy,
                logger=self.logger,
            )
        except RatelimitBudgetExceeded as exc:
            raise ZendeskExtractionError(
                f"{describe}: Zendesk kept answering 429 beyond the rate-limit budget of this run; "
                "the committed pages are kept and the next run resumes. Raise ratelimit_budget or "
                "run outside peak hours."
            ) from exc
        except RetriesExhausted as exc:
            raise ZendeskExtractionError(
                f"{exc} Zendesk is unavailable or throttling; nothing past the last committed page was "
                "recorded, so re-running the task resumes where it stopped."
            ) from exc
        except (APIException, requests.HTTPError) as exc:
            status = getattr(exc.response, "status_code", "?")
            if status in (401, 403):
                raise ZendeskAuthenticationError(self._refused(describe, status, exc)) from exc
            raise ZendeskExtractionError(
                f"{describe} was rejected with HTTP {status}: {exc}; check the request parameters "
                "and the Zendesk plan's API access."
            ) from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise ZendeskExtractionError(
                f"{describe} answered HTTP {response.status_code} with a body that is not JSON "
                f"({response.text[:80]!r}); is the connection's host a Zendesk API?"
            ) from exc
        if not isinstance(body, dict):
            raise ZendeskExtractionError(f"{describe} answered {type(body).__name__}, expected a JSON object")
        return body

    def _refused(self, describe: str, status: Any, exc: BaseException) -> str:
        host = getattr(self.client.tickets, "subdomain", "?")
        if status == 401:
            what = (
                f"Zendesk did not accept the credentials of Airflow connection {self.connection!r} "
                f"(subdomain {host!r}). Check that its login is the e-mail of an active Zendesk admin, "
                "that its password (or extra 'token') holds an API token that is still active in "
                'Admin Center > Apps and integrations > Zendesk API, with extra {"use_token": true} '
                "and token access enabled there, and that the host is <subdomain>.zendesk.com"
            )
        else:
            what = (
                f"Zendesk accepted the credentials of Airflow connection {self.connection!r} "
                f"(subdomain {host!r}) but refused access: the incremental ticket export and the "
                "satisfaction ratings are for admins only; use an admin's e-mail and API token"
            )
        return f"{describe} was refused with HTTP {status} ({exc}). {what}. Retrying will not help."


def _records(body: Mapping[str, Any], key: str, describe: str) -> list[dict[str, Any]]:
    records = body.get(key)
    if not isinstance(records, list):
        raise ZendeskExtractionError(f"{describe}: the response has no '{key}' list; is this a Zendesk API?")
    return records


# ----------------------------------------------------------------------------- extraction
def extract_zendesk(
    client: Zenpy,
    engine: Engine,
    until: datetime,
    *,
    log: logging.Logger = log,
    history_start: datetime = EPOCH,
    page_size: int = 100,
    export_page_size: int = 1000,
    retry: RetryPolicy = RetryPolicy(),
    ratelimit_budget: int = 300,
    request_timeout: float = 60.0,
    read_started: datetime | None = None,
    connection: str = settings.ZENDESK_CONN_ID,
) -> ExtractReport:
    """Extract organizations, tickets and satisfaction ratings up to ``until`` (exclusive).

    The bound is ``read_bound(until, read_started)``: never past the moment of reading (default
    now) minus the safety lag. ``history_start`` bounds the first run (no watermark yet); later
    runs resume from their watermarks. Pages stream one at a time and each is committed before
    the next is read. ``connection`` names the Airflow connection in error messages.
    """
    until = _bound(until, read_started)
    history_start = naive_utc(history_start)
    pages = ZendeskPages(
        client,
        policy=retry,
        ratelimit_budget=ratelimit_budget,
        request_timeout=request_timeout,
        logger=log,
        connection=connection,
    )
    report = ExtractReport(SOURCE)
    extracted_at = utcnow()
    _extract_organizations(pages, engine, until, report.object("organizations"), extracted_at, page_size, log)
    _extract_tickets(
        pages,
        engine,
        until,
        report.object("tickets"),
        extracted_at,
        history_start,
        export_page_size,
        log,
        read_started=read_started,
    )
    _extract_satisfaction_ratings(
        pages,
        engine,
        until,
        report.object("satisfaction_ratings"),
        extracted_at,
        history_start,
        page_size,
        log,
        read_started=read_started,
    )
    log.info("Zendesk extraction up to %s: %s", until.isoformat(), report.as_dict())
    return report


def _bound(until: datetime, read_started: datetime | None) -> datetime:
    """``read_bound`` in whole seconds (Zendesk's resolution), rounded down: still before the read."""
    return read_bound(naive_utc(until), read_started).replace(microsecond=0)


def _store_page(
    engine: Engine,
    table: Any,
    obj: str,
    rows: list[dict[str, Any]],
    bad: list[tuple[str, str, Any]],
    watermark: str | None = None,
) -> None:
    """Commit one page: its rows, its quarantined records and (optionally) the watermark."""
    with engine.begin() as conn:
        upsert_rows(conn, table, rows)
        quarantine_records(conn, SOURCE, obj, bad)
        if watermark is not None:
            set_watermark(conn, SOURCE, obj, watermark, len(rows))


def _extract_organizations(
    pages: ZendeskPages,
    engine: Engine,
    until: datetime,
    report: ObjectReport,
    extracted_at: datetime,
    page_size: int,
    log: logging.Logger,
) -> None:
    api = pages.client.organizations
    params: dict[str, Any] = {"page[size]": page_size}
    previous: set[tuple[Any, Any]] = set()
    stalled = 0
    while True:
        body = pages.get(api, "organizations.json", params)
        report.pages += 1
        records = _records(body, "organizations", "Zendesk organizations")
        rows, bad = [], []
        for org in records:
            if (org.get("id"), org.get("updated_at")) in previous:
                continue  # the same page served twice
            try:
                row = organization_row(org, extracted_at)
            except MalformedRecord as exc:
                bad.append((str(org.get("id")), f"organization: {exc}", org))
                continue
            if row["created_at"] >= until:
                continue  # created after this run's point in time
            rows.append(row)
        previous = {(o.get("id"), o.get("updated_at")) for o in records}
        _store_page(engine, raw_zd_organization, "organizations", rows, bad)
        report.rows += len(rows)
        report.quarantined += len(bad)
        meta = body.get("meta") or {}
        after = meta.get("after_cursor")
        if not meta.get("has_more") or not records or not after:
            return
        stalled = stalled + 1 if after == params.get("page[after]") else 0
        if stalled > MAX_PAGES_WITHOUT_PROGRESS:
            raise ZendeskExtractionError(f"Zendesk organizations: the cursor {after!r} does not advance")
        params = {"page[size]": page_size, "page[after]": after}


def _cursor_of(watermark: str | None) -> str | None:
    if watermark is None:
        return None
    kind, _, cursor = watermark.partition(":")
    if kind != "cursor" or not cursor:
        raise ZendeskExtractionError(
            f"the tickets watermark {watermark!r} is not 'cursor:<token>'; delete the row "
            "(zendesk, tickets) from extraction_watermarks to re-export from history_start"
        )
    return cursor


def _extract_tickets(
    pages: ZendeskPages,
    engine: Engine,
    until: datetime,
    report: ObjectReport,
    extracted_at: datetime,
    history_start: datetime,
    per_page: int,
    log: logging.Logger,
    *,
    read_started: datetime | None = None,
) -> None:
    """Export tickets generated before ``read_bound(until, read_started)``, cursor page by page."""
    until = _bound(until, read_started)
    api = pages.client.tickets
    with engine.connect() as conn:
        report.watermark_before = get_watermark(conn, SOURCE, "tickets")
    report.watermark_after = report.watermark_before
    cursor = _cursor_of(report.watermark_before)
    base: dict[str, Any] = {"include": "metric_sets,users", "per_page": per_page}
    if cursor is None:
        params = base | {"start_time": int(history_start.replace(tzinfo=UTC).timestamp())}
    else:
        params = base | {"cursor": cursor}
    previous: set[tuple[Any, Any]] = set()
    stalled = 0
    while True:
        body = pages.get(api, "incremental/tickets/cursor.json", params)
        report.pages += 1
        tickets = _records(body, "tickets", "Zendesk ticket export")
        metric_sets = {m.get("ticket_id"): m for m in body.get("metric_sets") or [] if isinstance(m, dict)}
        users = {u.get("id"): u for u in body.get("users") or [] if isinstance(u, dict)}
        rows, bad, reached_until = [], [], False
        for ticket in tickets:
            if (ticket.get("id"), ticket.get("generated_timestamp")) in previous:
                continue  # the same page served twice
            try:
                generated = parse_unix(ticket.get("generated_timestamp"), "generated_timestamp")
                if generated >= until:
                    # Ordered by generated_timestamp (not updated_at): the rest is later still.
                    reached_until = True
                    break
                requester = users.get(ticket.get("requester_id"))
                row = ticket_row(ticket, metric_sets.get(ticket.get("id")), extracted_at, requester)
            except MalformedRecord as exc:
                bad.append((str(ticket.get("id")), f"ticket: {exc}", ticket))
                continue
            rows.append(row)
        previous = {(t.get("id"), t.get("generated_timestamp")) for t in tickets}
        after = body.get("after_cursor")
        # Advance only past pages wholly before the bound; a page reaching it is read again next run.
        advance = f"cursor:{after}" if after and not reached_until else None
        _store_page(engine, raw_zd_ticket, "tickets", rows, bad, advance)
        if advance:
            report.watermark_after = advance
        report.rows += len(rows)
        report.deleted += sum(1 for r in rows if r["is_deleted"])
        report.quarantined += len(bad)
        if reached_until or body.get("end_of_stream") or not tickets or not after:
            return
        stalled = stalled + 1 if after == params.get("cursor") else 0
        if stalled > MAX_PAGES_WITHOUT_PROGRESS:
            raise ZendeskExtractionError(f"Zendesk ticket export: the cursor {after!r} does not advance")
        params = base | {"cursor": after}


def _extract_satisfaction_ratings(
    pages: ZendeskPages,
    engine: Engine,
    until: datetime,
    report: ObjectReport,
    extracted_at: datetime,
    history_start: datetime,
    page_size: int,
    log: logging.Logger,
    *,
    read_started: datetime | None = None,
) -> None:
    """Ratings created in ``[watermark, read_bound(until, read_started))``; then the watermark."""
    until = _bound(until, read_started)
    api = pages.client.satisfaction_ratings
    with engine.connect() as conn:
        report.watermark_before = get_watermark(conn, SOURCE, "satisfaction_ratings")
    report.watermark_after = report.watermark_before
    start = (
        naive_utc(datetime.fromisoformat(report.watermark_before))
        if report.watermark_before
        else history_start
    )
    if start >= until:
        return  # this window was extracted already (a re-run, an older backfill date, a later run)
    window = {
        "start_time": int(start.replace(tzinfo=UTC).timestamp()),
        "end_time": int(until.replace(tzinfo=UTC).timestamp()),
        "page[size]": page_size,
    }
    params = dict(window)
    previous: set[tuple[Any, Any]] = set()
    stalled = 0
    while True:
        body = pages.get(api, "satisfaction_ratings.json", params)
        report.pages += 1
        records = _records(body, "satisfaction_ratings", "Zendesk satisfaction ratings")
        rows, bad = [], []
        for rating in records:
            if (rating.get("id"), rating.get("updated_at")) in previous:
                continue  # the same page served twice
            try:
                rows.append(satisfaction_rating_row(rating, extracted_at))
            except MalformedRecord as exc:
                bad.append((str(rating.get("id")), f"satisfaction rating: {exc}", rating))
        previous = {(r.get("id"), r.get("updated_at")) for r in records}
        meta = body.get("meta") or {}
        after = meta.get("after_cursor")
        last_page = not meta.get("has_more") or not records or not after
        # The window's end becomes the watermark only with the window's last page, and only forward.
        with engine.begin() as conn:
            upsert_rows(conn, raw_zd_satisfaction_rating, rows)
            quarantine_records(conn, SOURCE, "satisfaction_ratings", bad)
            if last_page:
                report.watermark_after = advance_time_watermark(
                    conn, SOURCE, "satisfaction_ratings", until.isoformat(), until, report.rows + len(rows)
                )
        report.rows += len(rows)
        report.quarantined += len(bad)
        if last_page:
            return
        stalled = stalled + 1 if after == params.get("page[after]") else 0
        if stalled > MAX_PAGES_WITHOUT_PROGRESS:
            raise ZendeskExtractionError(
                f"Zendesk satisfaction ratings: the cursor {after!r} does not advance"
            )
        params = window | {"page[after]": after}


# ----------------------------------------------------------------------------- Airflow-facing
def point_zenpy_at(client: Zenpy, netloc: str, scheme: str = "https") -> None:
    """Send every request of ``client`` to ``scheme://netloc`` (a sandbox or a proxy).

    zenpy builds URLs from each API object's ``protocol``, ``subdomain`` and ``domain``; setting
    them per client avoids the process-wide ``ZENPY_FORCE_*`` variables (which, when set, still
    take precedence).
    """
    subdomain, _, domain = netloc.partition(".")
    if not subdomain or not domain:
        raise ValueError(
            f"Zendesk netloc {netloc!r} must be host.domain[:port] (zenpy joins subdomain and domain "
            "with a dot); use 127.0.0.1:<port> rather than localhost:<port>"
        )
    for api in vars(client).values():
        if isinstance(api, BaseApi):
            api.protocol, api.subdomain, api.domain = scheme, subdomain, domain


def zendesk_client(conn_id: str = settings.ZENDESK_CONN_ID) -> Zenpy:
    """The zenpy client of Airflow connection ``conn_id``, built by the provider's ``ZendeskHook``.

    Besides the provider's fields, extras ``netloc`` and ``scheme`` (set by the sandbox's
    connections) redirect the client, e.g. ``{"netloc": "127.0.0.1:18480", "scheme": "http"}``.
    """
    from airflow.providers.zendesk.hooks.zendesk import ZendeskHook  # Airflow only where needed

    hook = ZendeskHook(zendesk_conn_id=conn_id)
    client = hook.get_conn()
    extra = hook.get_connection(conn_id).extra_dejson
    if extra.get("netloc"):
        point_zenpy_at(client, extra["netloc"], extra.get("scheme", "https"))
    return client


def run_zendesk_extraction(
    conn_id: str = settings.ZENDESK_CONN_ID, engine: Engine | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """Extract Zendesk up to ``until`` with the connection ``conn_id``; counts for XCom."""
    if until is None:
        raise ValueError("run_zendesk_extraction needs `until` (the data interval's end), got None")
    if engine is None:
        from customer_health.warehouse.engine import get_engine

        engine = get_engine()
    return extract_zendesk(zendesk_client(conn_id), engine, until, connection=conn_id).as_dict()
