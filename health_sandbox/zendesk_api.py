"""The loopback Zendesk Support API (v2): organizations, ticket export, satisfaction ratings.

Served shapes follow Zendesk's API reference and zenpy's object definitions, and are checked
against both (``tests/contracts/test_zendesk_contract.py``):

* ``GET /api/v2/organizations.json`` - cursor pagination (``page[size]`` up to 100,
  ``page[after]``), answering ``{"organizations", "meta": {"has_more", "after_cursor",
  "before_cursor"}, "links": {"next", "prev"}}``; ordered by id.
* ``GET /api/v2/incremental/tickets/cursor.json`` - the cursor-based incremental export:
  ``start_time`` (unix) *or* ``cursor``, ``per_page`` (up to 1000) and ``include`` with
  ``metric_sets`` and/or ``users`` (the page's requesters and submitters, as Zendesk sideloads
  a ticket's users).
  Ordered as Zendesk orders it: by ``generated_timestamp`` (then id), the moment of the ticket's
  last change of *any* kind, not by ``updated_at``, which only a ticket event moves. Some tickets
  carry a later system update (``system_update_delay``: a deterministic subset, a few minutes
  after their last event), so ``updated_at`` goes backwards within a page, as on real pages.
  Each page ``{"tickets", "metric_sets", "users", "after_cursor", "after_url", "before_cursor",
  "before_url", "end_of_stream"}``; a ticket changed again moves to its new position; the cursor
  is an opaque token for "after (generated second, id)"; the last page's ``after_cursor``
  resumes the export later.
* ``GET /api/v2/satisfaction_ratings.json`` - ``start_time`` (inclusive) and ``end_time``
  (exclusive), unix seconds on ``created_at``, with the same cursor pagination, ordered by id.
  A rating has no ``organization_id`` (Zendesk's has none; the store keeps one for the
  company's bookkeeping, never served): its organization is its ticket's.
* ``GET /api/v2/tickets/{id}.json``.
* ``GET /api/v2/users/me.json`` - the authenticated user, ``{"user": {..., "role",
  "authenticity_token"}}`` (Zendesk's ShowCurrentUser, a CurrentUserResponse): the preflight reads
  its ``role`` (``admin``, ``agent`` or ``end-user``; ``sandbox_meta['zendesk_role']``).

The sandbox's clock is the host's plus a skew of a few seconds (``CLOCK_SKEW``, overridden by
``sandbox_meta`` ``zendesk_clock_skew_seconds``; ``source_now``): the source and the warehouse
host never agree exactly, and a test stamps "now at Zendesk" with it. A system update is served
only once it has happened: not after the source's now, nor after the newest ticket event the
store holds (the company's history ends there; nothing happened after it).

Authentication is HTTP basic with an API token, ``{email}/token:{api_token}``, as Zendesk
takes it: the e-mail and token are the sandbox connection's (``sandbox.connections``), or
``sandbox_meta``'s ``zendesk_email`` / ``zendesk_api_token`` when set. Anything else - no
header, another e-mail or token, a password instead of a token - answers 401 with Zendesk's body
``{"error": "Couldn't authenticate you"}``. The user is an admin unless ``sandbox_meta``'s
``zendesk_role`` says otherwise (e.g. ``agent``); the incremental export and the satisfaction
ratings are admin-only, so a non-admin gets 403 ``{"error": "Forbidden", "description": ...}``. zenpy reaches this server when the environment has
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
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Integer, and_, case, cast, func, literal, or_, select

from health_sandbox.connections import SANDBOX_ZENDESK_EMAIL, SANDBOX_ZENDESK_TOKEN
from health_sandbox.http import Request, Response, SandboxApp
from health_sandbox.store import (
    sandbox_meta,
    zd_organization,
    zd_satisfaction_rating,
    zd_ticket,
    zd_user,
)

SYSTEM = "zendesk"
SANDBOX_USER_ID = 9000000001  # the API user (users/me)
ORG_PAGE_DEFAULT = 100
ORG_PAGE_MAX = 100
EXPORT_PAGE_DEFAULT = 1000
EXPORT_PAGE_MAX = 1000
# The Zendesk host's clock against ours: a few seconds behind (the direction that hides a record
# stamped just before a read began, if a reader trusted the read's start as its bound).
CLOCK_SKEW = timedelta(seconds=-4)
# Every SYSTEM_UPDATE_EVERY-th ticket (by id) gets one system update a few minutes after its last
# event: generated_timestamp moves, updated_at does not (Zendesk: SLA and metric recalculations,
# merges and other background updates create no ticket event).
SYSTEM_UPDATE_EVERY = 7
UNAUTHORIZED = {"error": "Couldn't authenticate you"}
FORBIDDEN = {
    "error": "Forbidden",
    "description": "You do not have access to this page. Please contact the account owner of this help desk for further help.",
}
ADMIN_ONLY = re.compile(r"/api/v2/(incremental/.*|satisfaction_ratings(/.*)?\.json)")


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


def system_update_delay(ticket_id: int) -> timedelta | None:
    """How long after its last event ticket ``ticket_id`` gets a system update (None: never)."""
    if ticket_id % SYSTEM_UPDATE_EVERY != 3:
        return None
    return timedelta(minutes=7 + ticket_id % 9)


def generated_at(ticket_id: int, updated_at: datetime, present: datetime) -> datetime:
    """The ticket's ``generated_timestamp`` as served when the source's history ends at ``present``.

    Whole seconds, like Zendesk's. Mirrors the export's SQL (``_generated_second``).
    """
    updated_at = updated_at.replace(microsecond=0)
    delay = system_update_delay(ticket_id)
    if delay is not None and updated_at + delay <= present:
        return updated_at + delay
    return updated_at


def source_now(store: Engine) -> datetime:
    """Now on the Zendesk host's clock: ours plus ``CLOCK_SKEW`` (or ``sandbox_meta``'s override)."""
    with store.connect() as conn:
        skew = conn.execute(
            select(sandbox_meta.c.value).where(sandbox_meta.c.key == "zendesk_clock_skew_seconds")
        ).scalar_one_or_none()
    offset = timedelta(seconds=float(skew)) if skew not in (None, "") else CLOCK_SKEW
    return datetime.now(UTC).replace(tzinfo=None) + offset


def history_present(store: Engine) -> datetime:
    """The latest moment a system update may have happened: the source's now, capped at the
    store's newest ticket event (nothing happens in the company after its history ends)."""
    with store.connect() as conn:
        newest = conn.execute(
            select(func.max(func.coalesce(zd_ticket.c.updated_at, zd_ticket.c.created_at)))
        ).scalar_one_or_none()
    now = source_now(store)
    if newest is None:
        return now
    if isinstance(newest, str):  # a raw SQLite value
        newest = datetime.fromisoformat(newest)
    return min(now, newest)


def _generated_second(present: datetime) -> Any:
    """SQL: the export's ordering key, ``generated_timestamp`` in unix seconds (see ``generated_at``)."""
    t = zd_ticket.c
    second = cast(func.strftime("%s", func.coalesce(t.updated_at, t.created_at)), Integer)
    delay = (literal(7) + t.id % 9) * 60
    touched = and_(t.id % SYSTEM_UPDATE_EVERY == 3, second + delay <= unix(present))
    return case((touched, second + delay), else_=second)


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


def ticket_json(row: Any, base: str, generated: int | None = None) -> dict[str, Any]:
    """A ticket as Zendesk serializes it; the incremental export adds ``generated_timestamp``."""
    updated = row.updated_at or row.created_at
    ticket = {
        "url": f"{base}/api/v2/tickets/{row.id}.json",
        "id": row.id,
        "external_id": None,
        "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}},
        "created_at": iso(row.created_at),
        "updated_at": iso(updated),
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
    if generated is not None:
        ticket["generated_timestamp"] = generated
    return ticket


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


def user_json(row: Any, base: str) -> dict[str, Any]:
    """An end user as Zendesk serializes it (a subset of its fields, as a sideload carries)."""
    return {
        "url": f"{base}/api/v2/users/{row.id}.json",
        "id": row.id,
        "name": row.name,
        "email": row.email,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at or row.created_at),
        "organization_id": row.organization_id,
        "role": row.role,
        "external_id": None,
        "active": True,
        "verified": True,
        "suspended": False,
        "tags": [],
        "user_fields": {},
    }


def satisfaction_rating_json(row: Any, base: str) -> dict[str, Any]:
    """A satisfaction rating as Zendesk serializes it: no organization (that is the ticket's)."""
    return {
        "url": f"{base}/api/v2/satisfaction_ratings/{row.id}.json",
        "id": row.id,
        "assignee_id": None,
        "group_id": None,
        "requester_id": row.requester_id,
        "ticket_id": row.ticket_id,
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
        """None when the request carries ``{email}/token:{api_token}`` of the sandbox's user."""
        unauthorized = Response(401, dict(UNAUTHORIZED))
        header = req.header("authorization") or ""
        if not header.startswith("Basic "):
            return unauthorized
        try:
            user, _, secret = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return unauthorized
        email, _, kind = user.rpartition("/")
        user_meta = self.user()
        if kind != "token" or email.lower() != user_meta["email"].lower() or secret != user_meta["token"]:
            return unauthorized
        if user_meta["role"] != "admin" and ADMIN_ONLY.fullmatch(req.path):
            return Response(403, dict(FORBIDDEN))
        return None

    def user(self) -> dict[str, str]:
        """The sandbox's API user: ``email``, API ``token`` and ``role``."""
        with self.store.connect() as conn:
            meta = dict(
                conn.execute(
                    select(sandbox_meta.c.key, sandbox_meta.c.value).where(
                        sandbox_meta.c.key.in_(("zendesk_email", "zendesk_api_token", "zendesk_role"))
                    )
                ).all()
            )
        return {
            "email": meta.get("zendesk_email") or SANDBOX_ZENDESK_EMAIL,
            "token": meta.get("zendesk_api_token") or SANDBOX_ZENDESK_TOKEN,
            "role": meta.get("zendesk_role") or "admin",
        }

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

    @app.route("GET", r"/api/v2/users/me\.json")
    def current_user(req: Request) -> Response:
        me = app.user()
        stamp = iso(datetime(2020, 1, 1, tzinfo=UTC))
        return Response(200, {"user": {
            "url": f"{_base(req)}/api/v2/users/{SANDBOX_USER_ID}.json", "id": SANDBOX_USER_ID,
            "name": "Customer Health Pipeline", "email": me["email"], "created_at": stamp, "updated_at": stamp,
            "time_zone": "UTC", "locale": "en-US", "organization_id": None, "role": me["role"], "role_type": None,
            "custom_role_id": None, "active": True, "verified": True, "suspended": False,
            "authenticity_token": "sandbox-authenticity-token",
        }})

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
        second = _generated_second(history_present(store))
        duplicate = cursor is not None and app.take_fault(req, kinds=("duplicate_page",)) is not None
        with store.connect() as conn:
            if duplicate:  # the page before the cursor, again, leading back to the cursor
                rows = conn.execute(
                    select(zd_ticket, second.label("generated"))
                    .where(or_(second < after[0], and_(second == after[0], zd_ticket.c.id <= after[1])))
                    .order_by(second.desc(), zd_ticket.c.id.desc())
                    .limit(size)
                ).fetchall()[::-1]
                end_of_stream = False
            else:
                rows = conn.execute(
                    select(zd_ticket, second.label("generated"))
                    .where(or_(second > after[0], and_(second == after[0], zd_ticket.c.id > after[1])))
                    .order_by(second, zd_ticket.c.id)
                    .limit(size + 1)
                ).fetchall()
                end_of_stream = len(rows) <= size
                rows = rows[:size]
        tickets = [ticket_json(r, base, r.generated) for r in rows]
        app.take_malformed(req, tickets, _break_ticket)
        if duplicate:
            after_cursor = cursor
        elif rows:
            last = rows[-1]
            after_cursor = encode_cursor({"u": last.generated, "i": last.id})
        else:
            after_cursor = encode_cursor({"u": after[0], "i": after[1]})
        wanted = [part for part in ("metric_sets", "users") if part in include]
        extra = f"&include={','.join(wanted)}" if wanted else ""
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
        if "users" in include:
            ids = sorted({r.requester_id for r in rows if r.requester_id is not None})
            with store.connect() as conn:
                users = conn.execute(select(zd_user).where(zd_user.c.id.in_(ids)).order_by(zd_user.c.id)).fetchall()
            body["users"] = [user_json(u, base) for u in users]
        return Response(200, body)

    return app
