"""The marketing-tool sandbox: a HubSpot-style lists API plus a campaign-pause API.

Campaigns and sequences are static lists (``mk_list``, each with a ``kind``: upsell, expansion,
engagement, advocacy, nurture, newsletter); contacts are list members by e-mail
(``mk_membership``, status ``active`` or ``paused``). Routes:

* ``GET  /contacts/v1/lists`` - every list with its ``kind`` (HubSpot's ``{"lists": [...]}``);
* ``POST /contacts/v1/lists/{id}/add`` and ``/remove`` with ``{"emails": [...]}`` - answer
  ``{"updated": [...], "discarded": [...]}``: adding a member twice discards the second add;
* ``GET  /marketing/v1/memberships?email=...`` - every list membership of one contact;
* ``PUT  /marketing/v1/lists/{id}/memberships/{email}`` with ``{"status": "paused"|"active"}`` -
  idempotent: setting the status a membership already has changes nothing and is recorded with
  ``created=False``.

Every request needs ``Authorization: Bearer <token>``; the token is ``sandbox_meta``'s
``marketing_api_token`` when the company sets one, else ``SANDBOX_MARKETING_TOKEN``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sqlalchemy import Engine, delete, insert, select, update

from health_sandbox.http import Request, Response, SandboxApp
from health_sandbox.store import mk_list, mk_membership, sandbox_meta

SYSTEM = "marketing"
SANDBOX_MARKETING_TOKEN = "sandbox-marketing-token"
MEMBERSHIP_STATUSES = ("active", "paused")


def sandbox_token(store: Engine) -> str:
    """The bearer token the marketing sandbox accepts."""
    with store.connect() as conn:
        value = conn.execute(
            select(sandbox_meta.c.value).where(sandbox_meta.c.key == "marketing_api_token")
        ).scalar()
    return value or SANDBOX_MARKETING_TOKEN


class MarketingApp(SandboxApp):
    """Routes behind a bearer-token check, with HubSpot's error shape."""

    def __init__(self, system: str, store: Engine, token: str) -> None:
        super().__init__(system, store)
        self.token = token

    def dispatch(self, req: Request) -> Response:
        if req.header("authorization") != f"Bearer {self.token}":
            return _error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found or invalid")
        return super().dispatch(req)

    def not_found(self, req: Request) -> Response:
        return _error(404, "NOT_FOUND", f"no resource at {req.path}")


def _error(status: int, category: str, message: str) -> Response:
    return Response(status, {"status": "error", "category": category, "message": message})


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _list_json(row: Any) -> dict[str, Any]:
    return {"listId": row.id, "name": row.name, "kind": row.kind, "listType": "STATIC"}


def build_app(store: Engine, folder: Path) -> SandboxApp:
    """The marketing-tool app over the sandbox ``store``."""
    app = MarketingApp(SYSTEM, store, sandbox_token(store))

    def find_list(list_id: str) -> Any:
        with store.connect() as conn:
            return conn.execute(select(mk_list).where(mk_list.c.id == int(list_id))).first()

    def emails_of(req: Request) -> list[str] | None:
        try:
            body = req.json()
        except ValueError:
            return None
        emails = body.get("emails") if isinstance(body, dict) else None
        if not isinstance(emails, list) or not all(isinstance(e, str) and "@" in e for e in emails):
            return None
        return [e.strip().lower() for e in emails]

    @app.route("GET", r"/contacts/v1/lists")
    def get_lists(req: Request) -> Response:
        with store.connect() as conn:
            rows = conn.execute(select(mk_list).order_by(mk_list.c.id)).fetchall()
        return Response(200, {"lists": [_list_json(r) for r in rows], "has-more": False, "offset": len(rows)})

    @app.route("POST", r"/contacts/v1/lists/(?P<list_id>\d+)/(?P<op>add|remove)")
    def change_members(req: Request) -> Response:
        if find_list(req.params["list_id"]) is None:
            return _error(404, "OBJECT_NOT_FOUND", f"list {req.params['list_id']} does not exist")
        emails = emails_of(req)
        if emails is None:
            return _error(400, "VALIDATION_ERROR", 'body must be {"emails": ["name@domain", ...]}')
        list_id = int(req.params["list_id"])
        updated: list[str] = []
        discarded: list[str] = []
        with store.begin() as conn:
            for email in emails:
                exists = conn.execute(
                    select(mk_membership.c.status).where(
                        mk_membership.c.list_id == list_id, mk_membership.c.email == email
                    )
                ).first()
                if req.params["op"] == "add" and exists is None:
                    conn.execute(insert(mk_membership).values(list_id=list_id, email=email, status="active", updated_at=_now()))
                    updated.append(email)
                elif req.params["op"] == "remove" and exists is not None:
                    conn.execute(
                        delete(mk_membership).where(mk_membership.c.list_id == list_id, mk_membership.c.email == email)
                    )
                    updated.append(email)
                else:
                    discarded.append(email)
        for email in emails:
            app.record_write(
                req,
                "list_membership",
                f"{list_id}:{email}",
                created=email in updated,
                external_id=email,
                body={"op": req.params["op"], "listId": list_id, "email": email},
            )
        return Response(200, {"updated": updated, "discarded": discarded, "invalidEmails": []})

    @app.route("GET", r"/marketing/v1/memberships")
    def memberships_of_contact(req: Request) -> Response:
        email = (req.arg("email") or "").strip().lower()
        if not email:
            return _error(400, "VALIDATION_ERROR", "query parameter 'email' is required")
        with store.connect() as conn:
            rows = conn.execute(
                select(mk_membership, mk_list.c.name, mk_list.c.kind)
                .join(mk_list, mk_list.c.id == mk_membership.c.list_id)
                .where(mk_membership.c.email == email)
                .order_by(mk_membership.c.list_id)
            ).fetchall()
        return Response(
            200,
            {
                "memberships": [
                    {"listId": r.list_id, "name": r.name, "kind": r.kind, "email": r.email, "status": r.status}
                    for r in rows
                ]
            },
        )

    @app.route("PUT", r"/marketing/v1/lists/(?P<list_id>\d+)/memberships/(?P<email>[^/]+)")
    def set_membership_status(req: Request) -> Response:
        list_id = int(req.params["list_id"])
        email = unquote(req.params["email"]).strip().lower()
        try:
            body = req.json()
        except ValueError:
            body = None
        status = body.get("status") if isinstance(body, dict) else None
        if status not in MEMBERSHIP_STATUSES:
            return _error(400, "VALIDATION_ERROR", f'body must be {{"status": "paused"|"active"}}, got {body!r}')
        with store.begin() as conn:
            current = conn.execute(
                select(mk_membership.c.status).where(mk_membership.c.list_id == list_id, mk_membership.c.email == email)
            ).scalar()
            if current is None:
                return _error(404, "OBJECT_NOT_FOUND", f"{email} is not a member of list {list_id}")
            changed = current != status
            if changed:
                conn.execute(
                    update(mk_membership)
                    .where(mk_membership.c.list_id == list_id, mk_membership.c.email == email)
                    .values(status=status, updated_at=_now())
                )
        app.record_write(
            req,
            "list_membership_status",
            f"{list_id}:{email}",
            created=changed,
            external_id=email,
            body={"listId": list_id, "email": email, "status": status},
        )
        return Response(200, {"listId": list_id, "email": email, "status": status, "changed": changed})

    return app
