"""The loopback Zendesk Support API (v2): organizations, ticket export, satisfaction ratings.

Served shapes follow Zendesk's documentation closely enough for zenpy and for the extraction:

* ``GET /api/v2/organizations.json`` - cursor pagination (``page[size]`` up to 100,
  ``page[after]``), answering ``{"organizations", "meta": {"has_more", "after_cursor",
  "before_cursor"}, "links": {"next", "prev"}}``; ordered by id.
* ``GET /api/v2/incremental/tickets/cursor.json`` - the cursor-based incremental export:
  ``start_time`` (unix) *or* ``cursor``, ``per_page`` (up to 1000) and ``include=metric_sets``.
  Tickets whose ``updated_at`` is at or after ``start_time``, ordered by (updated_at, id), each
  page ``{"tickets", "metric_sets", "after_cursor", "after_url", "before_cursor", "before_url",
  "end_of_stream"}``. A ticket updated again moves to its new position, as in Zendesk. The
  cursor is an opaque token for "after ticket (updated_at second, id)"; the last page's
  ``after_cursor`` resumes the export later.
* ``GET /api/v2/satisfaction_ratings.json`` - ``start_time`` (inclusive) and ``end_time``
  (exclusive), unix seconds on ``created_at``, with the same cursor pagination, ordered by id.
* ``GET /api/v2/tickets/{id}.json``.

Authentication is HTTP basic, ``{email}/token:{api_token}`` (or ``{email}:{password}``). When
``sandbox_meta`` holds ``zendesk_api_token`` the token must match; otherwise any non-empty
credentials pass. zenpy reaches this server when the environment has
``ZENPY_FORCE_NETLOC=127.0.0.1:<port>`` and ``ZENPY_FORCE_SCHEME=http`` (zenpy reads both on
every request, so they may be set after the client was built).

Faults (see ``Sandbox.inject_fault``): ``rate_limit`` answers 429 with ``Retry-After``;
``server_error`` 503; ``timeout`` hangs; ``malformed`` breaks one record of the next non-empty
page (a ticket gets ``created_at: "garbage"`` and ``priority: 42``, an organization a
``created_at`` of ``"garbage"``, a rating the score ``42``); ``duplicate_page`` answers the next
request that carries a cursor with the page *before* that cursor again, pointing back to the
requested cursor, so the client receives one page twice.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Integer, and_, cast, func, or_, select

from customer_health.sandbox.http import Request, Response, SandboxApp
from customer_health.sandbox.store import (
    sandbox_meta,
    zd_organization,
    zd_satisfaction_rating,
    zd_ticket,
)

SYSTEM = "zendesk"
ORG_PAGE_DEFAULT = 100
ORG_PAGE_MAX = 100
EXPORT_PAGE_DEFAULT = 1000
EXPORT_PAGE_MAX = 1000


# ----------------------------------------------------------------------------- helpers
def iso(value: datetime | None) -> str | None:
    """Zendesk's timestamp format: ISO 8601 UTC, whole seconds, ``Z``."""
    if value is None:
        return None
    return value.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def unix(value: datetime) -> int:
    """Unix seconds of a naive-UTC datetime."""
    return int(value.replace(tzinfo=UTC).timestamp())


def from_unix(seconds: int) -> datetime:
    """A naive-UTC datetime from unix seconds."""
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def encode_cursor(payload: dict[str, Any]) -> str:
    """An opaque, URL-safe cursor token."""
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_cursor(token: str) -> dict[str, Any]:
    """The position a cursor token stands for; ``ValueError`` for a token we never issued."""
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"invalid cursor {token!r}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"invalid cursor {token!r}")
    return value


def _bounded_int(raw: str | None, default: int, maximum: int, name: str) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return min(value, maximum)


def _invalid(message: str) -> Response:
    return Response(400, {"error": "InvalidPaginationParameter", "description": message})


# ----------------------------------------------------------------------------- serializers
def organization_json(row: Any, base: str) -> dict[str, Any]:
    """An organization as Zendesk serializes it."""
    return {
        "url": f"{base}/api/v2/organizations/{row.id}.json",
        "id": row.id,
        "name": row.name,
        "shared_tickets": False,
        "shared_comments": False,
        "external_id": row.external_id,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at or row.created_at),
        "domain_names": [],
        "details": "",
        "notes": "",
        "group_id": None,
        "tags": [],
        "organization_fields": {},
    }


def ticket_json(row: Any, base: str) -> dict[str, Any]:
    """A ticket as Zendesk serializes it (incremental export adds ``generated_timestamp``)."""
    updated = row.updated_at or row.created_at
    return {
        "url": f"{base}/api/v2/tickets/{row.id}.json",
        "id": row.id,
        "external_id": None,
        "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}},
        "created_at": iso(row.created_at),
        "updated_at": iso(updated),
        "generated_timestamp": unix(updated) if updated else None,
        "type": row.type,
        "subject": row.subject,
        "raw_subject": row.subject,
        "description": row.subject,
        "priority": row.priority,
        "status": row.status,
        "recipient": None,
        "requester_id": row.requester_id,
        "submitter_id": row.requester_id,
        "assignee_id": None,
        "organization_id": row.organization_id,
        "group_id": None,
        "collaborator_ids": [],
        "follower_ids": [],
        "has_incidents": False,
        "is_public": True,
        "due_at": None,
        "tags": list(row.tags or []),
        "custom_fields": [],
        "satisfaction_rating": None,
        "sharing_agreement_ids": [],
        "brand_id": 1,
        "allow_channelback": False,
        "allow_attachments": True,
    }


def metric_set_json(row: Any, base: str) -> dict[str, Any]:
    """The ticket's ``metric_set`` as sideloaded by ``include=metric_sets``."""

    def minutes(value: int | None) -> dict[str, int | None]:
        return {"calendar": value, "business": value}

    return {
        "url": f"{base}/api/v2/ticket_metrics/{row.id}.json",
        "id": row.id,
        "ticket_id": row.id,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at or row.created_at),
        "group_stations": 1,
        "assignee_stations": 1,
        "reopens": row.reopens,
        "replies": row.replies,
        "assignee_updated_at": None,
        "requester_updated_at": iso(row.created_at),
        "status_updated_at": iso(row.updated_at or row.created_at),
        "initially_assigned_at": None,
        "assigned_at": None,
        "solved_at": iso(row.solved_at),
        "latest_comment_added_at": iso(row.updated_at or row.created_at),
        "reply_time_in_minutes": minutes(row.first_reply_time_in_minutes),
        "first_resolution_time_in_minutes": minutes(
            row.full_resolution_time_in_minutes if not row.reopens else None
        ),
        "full_resolution_time_in_minutes": minutes(row.full_resolution_time_in_minutes),
        "agent_wait_time_in_minutes": minutes(None),
        "requester_wait_time_in_minutes": minutes(None),
        "on_hold_time_in_minutes": minutes(0),
    }


def satisfaction_rating_json(row: Any, base: str) -> dict[str, Any]:
    """A satisfaction rating as Zendesk serializes it."""
    return {
        "url": f"{base}/api/v2/satisfaction_ratings/{row.id}.json",
        "id": row.id,
        "assignee_id": None,
        "group_id": None,
        "requester_id": row.requester_id,
        "ticket_id": row.ticket_id,
        "organization_id": row.organization_id,
        "score": row.score,
        "comment": row.comment,
        "reason": None,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at or row.created_at),
    }


# ----------------------------------------------------------------------------- the app
class ZendeskApp(SandboxApp):
    """The Zendesk sandbox: Zendesk's error shapes on top of the shared fault framework."""

    def not_found(self, req: Request) -> Response:
        return Response(404, {"error": "InvalidEndpoint", "description": "Not found"})

    def fault_response(self, fault, req: Request) -> Response:  # noqa: ANN001 - Fault
        if fault.kind == "rate_limit":
            return Response(
                429,
                {
                    "error": "APIRateLimitExceeded",
                    "description": "Number of allowed API requests per minute exceeded",
                },
                {"Retry-After": str(max(1, int(fault.retry_after or 1))), "X-Rate-Limit-Remaining": "0"},
            )
        if fault.kind == "server_error":
            return Response(503, {"error": "ServiceUnavailable", "description": "Maintenance"})
        return super().fault_response(fault, req)

    def dispatch(self, req: Request) -> Response:
        denied = self._authenticate(req)
        if denied is not None:
            return denied
        try:
            return super().dispatch(req)
        except ValueError as exc:  # bad parameters: Zendesk answers 400 and says which
            return _invalid(str(exc))

    def _authenticate(self, req: Request) -> Response | None:
        unauthorized = Response(401, {"error": "Couldn't authenticate you"})
        header = req.header("authorization") or ""
        if not header.startswith("Basic "):
            return unauthorized
        try:
            user, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return unauthorized
        if not user or not secret:
            return unauthorized
        with self.store.connect() as conn:
            expected = conn.execute(
                select(sandbox_meta.c.value).where(sandbox_meta.c.key == "zendesk_api_token")
            ).scalar_one_or_none()
        if expected and user.endswith("/token") and secret != expected:
            return unauthorized
        return None

    def take_malformed(self, req: Request, records: list[dict[str, Any]], breaker) -> None:  # noqa: ANN001
        """Break the first record of a non-empty page when a ``malformed`` fault is armed."""
        if records and self.take_fault(req, kinds=("malformed",)) is not None:
            breaker(records[0])


def _base(req: Request) -> str:
    return f"http://{req.header('host') or '127.0.0.1'}"


def _break_ticket(record: dict[str, Any]) -> None:
    record["created_at"] = "garbage"
    record["priority"] = 42


def _break_organization(record: dict[str, Any]) -> None:
    record["created_at"] = "garbage"


def _break_rating(record: dict[str, Any]) -> None:
    record["score"] = 42


def build_app(store: Engine, folder: Path | None = None) -> SandboxApp:
    """The Zendesk sandbox app over ``store`` (``folder`` is unused; kept for the common API)."""
    app = ZendeskApp(SYSTEM, store)

    def id_cursor_page(req: Request, table, where: list, key: str, serialize, breaker) -> Response:  # noqa: ANN001
        """Zendesk's cursor pagination over ``table`` ordered by id."""
        size = _bounded_int(req.arg("page[size]"), ORG_PAGE_DEFAULT, ORG_PAGE_MAX, "page[size]")
        after = req.arg("page[after]")
        base = _base(req)
        after_id = int(decode_cursor(after)["id"]) if after else None
        duplicate = after is not None and app.take_fault(req, kinds=("duplicate_page",)) is not None
        with store.connect() as conn:
            if duplicate:  # the page before the cursor, again, leading back to the cursor
                rows = conn.execute(
                    select(table)
                    .where(*where, table.c.id <= after_id)
                    .order_by(table.c.id.desc())
                    .limit(size)
                ).fetchall()[::-1]
                has_more = True
            else:
                cond = [*where] + ([table.c.id > after_id] if after_id is not None else [])
                rows = conn.execute(
                    select(table).where(*cond).order_by(table.c.id).limit(size + 1)
                ).fetchall()
                has_more = len(rows) > size
                rows = rows[:size]
        records = [serialize(r, base) for r in rows]
        app.take_malformed(req, records, breaker)
        after_cursor = after if duplicate else (encode_cursor({"id": rows[-1].id}) if rows else after)
        before_cursor = encode_cursor({"id": rows[0].id - 1}) if rows else None
        query = {k: v[0] for k, v in req.query.items() if k != "page[after]"}
        next_url = None
        if has_more and after_cursor:
            params = "&".join(f"{k}={v}" for k, v in {**query, "page[after]": after_cursor}.items())
            next_url = f"{base}{req.path}?{params}"
        return Response(
            200,
            {
                key: records,
                "meta": {"has_more": has_more, "after_cursor": after_cursor, "before_cursor": before_cursor},
                "links": {"next": next_url, "prev": None},
            },
        )

    @app.route("GET", r"/api/v2/organizations\.json")
    def list_organizations(req: Request) -> Response:
        return id_cursor_page(
            req, zd_organization, [], "organizations", organization_json, _break_organization
        )

    @app.route("GET", r"/api/v2/satisfaction_ratings\.json")
    def list_satisfaction_ratings(req: Request) -> Response:
        where = []
        start, end = req.arg("start_time"), req.arg("end_time")
        try:
            if start:
                where.append(zd_satisfaction_rating.c.created_at >= from_unix(int(start)))
            if end:
                where.append(zd_satisfaction_rating.c.created_at < from_unix(int(end)))
        except ValueError:
            return _invalid(f"start_time and end_time must be unix seconds, got {start!r} and {end!r}")
        return id_cursor_page(
            req,
            zd_satisfaction_rating,
            where,
            "satisfaction_ratings",
            satisfaction_rating_json,
            _break_rating,
        )

    @app.route("GET", r"/api/v2/tickets/(?P<id>\d+)\.json")
    def show_ticket(req: Request) -> Response:
        with store.connect() as conn:
            row = conn.execute(select(zd_ticket).where(zd_ticket.c.id == int(req.params["id"]))).first()
        if row is None:
            return Response(404, {"error": "RecordNotFound", "description": "Not found"})
        return Response(200, {"ticket": ticket_json(row, _base(req))})

    @app.route("GET", r"/api/v2/incremental/tickets/cursor\.json")
    def export_tickets(req: Request) -> Response:
        start, cursor = req.arg("start_time"), req.arg("cursor")
        if (start is None) == (cursor is None):
            return _invalid("pass either start_time or cursor (exactly one)")
        size = _bounded_int(req.arg("per_page"), EXPORT_PAGE_DEFAULT, EXPORT_PAGE_MAX, "per_page")
        if cursor is not None:
            position = decode_cursor(cursor)
            after = (int(position["u"]), int(position["i"]))
        else:
            try:
                after = (int(start), -1)  # every ticket updated at or after start_time
            except ValueError:
                return _invalid(f"start_time must be unix seconds, got {start!r}")
        include = {part.strip() for part in (req.arg("include") or "").split(",")}
        base = _base(req)
        second = cast(func.strftime("%s", zd_ticket.c.updated_at), Integer)
        duplicate = cursor is not None and app.take_fault(req, kinds=("duplicate_page",)) is not None
        with store.connect() as conn:
            if duplicate:  # the page before the cursor, again, leading back to the cursor
                rows = conn.execute(
                    select(zd_ticket)
                    .where(or_(second < after[0], and_(second == after[0], zd_ticket.c.id <= after[1])))
                    .order_by(second.desc(), zd_ticket.c.id.desc())
                    .limit(size)
                ).fetchall()[::-1]
                end_of_stream = False
            else:
                rows = conn.execute(
                    select(zd_ticket)
                    .where(or_(second > after[0], and_(second == after[0], zd_ticket.c.id > after[1])))
                    .order_by(second, zd_ticket.c.id)
                    .limit(size + 1)
                ).fetchall()
                end_of_stream = len(rows) <= size
                rows = rows[:size]
        tickets = [ticket_json(r, base) for r in rows]
        app.take_malformed(req, tickets, _break_ticket)
        if duplicate:
            after_cursor = cursor
        elif rows:
            last = rows[-1]
            after_cursor = encode_cursor({"u": unix(last.updated_at or last.created_at), "i": last.id})
        else:
            after_cursor = encode_cursor({"u": after[0], "i": after[1]})
        extra = "&include=metric_sets" if "metric_sets" in include else ""
        body: dict[str, Any] = {
            "tickets": tickets,
            "after_cursor": after_cursor,
            "after_url": f"{base}{req.path}?cursor={after_cursor}&per_page={size}{extra}",
            "before_cursor": None,  # reading the export backwards is not served
            "before_url": None,
            "end_of_stream": end_of_stream,
        }
        if "metric_sets" in include:
            body["metric_sets"] = [metric_set_json(r, base) for r in rows]
        return Response(200, body)

    return app
