"""The loopback HubSpot: the contacts and lists APIs the HubSpot campaign target uses.

Served from the store's ``hs_contact``, ``hs_list`` and ``hs_list_membership`` tables in the
paths and JSON shapes of HubSpot's API v3, as ``hubspot-api-client`` (HubSpot's official Python
client, whose generated models are the definition checked against in
``tests/contracts/test_hubspot_contract.py``) sends and reads them:

* ``POST /crm/v3/objects/contacts/batch/read`` - contacts by ``idProperty`` (``email`` or the
  record id), at most 100 inputs: 200 ``{status, results, startedAt, completedAt}``, or 207 with
  ``numErrors`` and an ``OBJECT_NOT_FOUND`` error listing the ids it could not find;
* ``GET /crm/v3/lists/object-type-id/{objectTypeId}/name/{listName}`` - ``{"list": {...}}``, 404
  when there is none; ``POST /crm/v3/lists/search`` - ``{lists, total, offset, hasMore}``
  (``query`` matches names case-insensitively);
* ``PUT /crm/v3/lists/{listId}/memberships/add`` and ``/remove`` with a JSON array of record ids
  - ``{recordsIdsAdded, recordIdsRemoved, recordIdsMissing}`` (HubSpot's spelling); members
  already on the list (or not on it, for a removal) are ignored; only ``MANUAL`` and
  ``SNAPSHOT`` lists take membership changes (400 otherwise);
* ``GET /crm/v3/lists/{listId}/memberships`` - ``{results: [{recordId, membershipTimestamp}],
  paging: {next: {after}}, total}``, ``limit`` up to 250; ``GET
  /crm/v3/lists/records/{objectTypeId}/{recordId}/memberships`` - the lists a record is on.

Every request needs ``Authorization: Bearer <private app token>`` (``SANDBOX_HUBSPOT_TOKEN``);
otherwise 401 with HubSpot's error body (``category`` ``INVALID_AUTHENTICATION``). Errors have
HubSpot's shape: ``{status: "error", message, correlationId, category}``. Every membership
change is recorded in ``sandbox_writes`` (system ``hubspot``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sqlalchemy import Engine, delete, func, insert, select

from health_sandbox.connections import SANDBOX_HUBSPOT_TOKEN
from health_sandbox.http import Fault, Request, Response, SandboxApp
from health_sandbox.store import hs_contact, hs_list, hs_list_membership

SYSTEM = "hubspot"
CONTACTS = "0-1"
MAX_BATCH_READ = 100
MAX_PAGE = 250
STATIC = ("MANUAL", "SNAPSHOT")


def _error(status: int, category: str, message: str, **extra: Any) -> Response:
    return Response(status, {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                             "category": category, **extra})  # fmt: skip


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _list_json(row: Any, size: int | None = None, search: bool = False) -> dict[str, Any]:
    out = {
        "listId": row.listId, "listVersion": row.listVersion or 1, "name": row.name,
        "processingType": row.processingType, "objectTypeId": row.objectTypeId, "processingStatus": "COMPLETE",
        "createdAt": _iso(row.createdAt), "updatedAt": _iso(row.updatedAt),
    }  # fmt: skip
    if search:
        out["additionalProperties"] = {"hs_list_size": str(size or 0)}
    else:
        out["size"] = size or 0
    return out


class HubSpotApp(SandboxApp):
    """HubSpot's API behind a private-app token check, with HubSpot's error shapes."""

    def __init__(self, store: Engine, token: str) -> None:
        super().__init__(SYSTEM, store)
        self.token = token

    def dispatch(self, req: Request) -> Response:
        if req.header("authorization") != f"Bearer {self.token}":
            return _error(401, "INVALID_AUTHENTICATION",
                          "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
                          "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview")
        return super().dispatch(req)

    def not_found(self, req: Request) -> Response:
        return _error(404, "OBJECT_NOT_FOUND", f"resource not found: {req.path}")

    def fault_response(self, fault: Fault, req: Request) -> Response:
        if fault.kind == "rate_limit":
            return Response(429, {"status": "error", "message": "You have reached your secondly limit.",
                                  "errorType": "RATE_LIMIT", "correlationId": str(uuid.uuid4()),
                                  "policyName": "SECONDLY", "category": "RATE_LIMITS"},
                            {"Retry-After": str(int(fault.retry_after or 1))})  # fmt: skip
        if fault.kind == "server_error":
            return _error(503, "SERVICE_UNAVAILABLE", "The service is temporarily unavailable")
        return super().fault_response(fault, req)


def build_app(store: Engine, folder: Path) -> SandboxApp:
    """The loopback HubSpot over the sandbox ``store``."""
    app = HubSpotApp(store, SANDBOX_HUBSPOT_TOKEN)

    def find_list(list_id: str) -> Any:
        with store.connect() as conn:
            return conn.execute(select(hs_list).where(hs_list.c.listId == list_id)).first()

    def size_of(conn: Any, list_id: str) -> int:
        return conn.execute(select(func.count()).select_from(hs_list_membership)
                            .where(hs_list_membership.c.listId == list_id)).scalar_one()  # fmt: skip

    @app.route("POST", r"/crm/v3/objects/contacts/batch/read")
    def batch_read(req: Request) -> Response:
        body = req.json() or {}
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not all(isinstance(i, dict) and "id" in i for i in inputs):
            return _error(400, "VALIDATION_ERROR", "inputs: a list of {\"id\": ...} is required")
        if len(inputs) > MAX_BATCH_READ:
            return _error(400, "VALIDATION_ERROR", f"Too many inputs: {len(inputs)} (at most {MAX_BATCH_READ})")
        prop = body.get("idProperty") or "hs_object_id"
        if prop not in ("email", "hs_object_id"):
            return _error(400, "VALIDATION_ERROR", f"idProperty {prop!r} is not a unique property of contacts")
        wanted = [str(i["id"]).strip() for i in inputs]
        column = hs_contact.c.email if prop == "email" else hs_contact.c.id
        values = [w.lower() for w in wanted] if prop == "email" else wanted
        started = _now()
        with store.connect() as conn:
            rows = conn.execute(select(hs_contact).where(column.in_(values), hs_contact.c.archived.isnot(True))
                                .order_by(hs_contact.c.id)).fetchall()  # fmt: skip
        found = {(r.email if prop == "email" else r.id) for r in rows}
        results = [{
            "id": r.id, "archived": False, "createdAt": _iso(r.createdate), "updatedAt": _iso(r.lastmodifieddate),
            "properties": {"email": r.email, "hs_object_id": r.id, "createdate": _iso(r.createdate),
                           "lastmodifieddate": _iso(r.lastmodifieddate)},
        } for r in rows]  # fmt: skip
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": _iso(started),
                                  "completedAt": _iso(_now())}  # fmt: skip
        missing = [w for w, v in zip(wanted, values, strict=True) if v not in found]
        if not missing:
            return Response(200, answer)
        answer |= {"numErrors": 1, "errors": [{
            "status": "error", "category": "OBJECT_NOT_FOUND", "context": {"ids": missing}, "links": {},
            "errors": [],
            "message": "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
        }]}  # fmt: skip
        return Response(207, answer)

    @app.route("GET", r"/crm/v3/lists/object-type-id/(?P<object>[^/]+)/name/(?P<name>[^/]+)")
    def list_by_name(req: Request) -> Response:
        name = unquote(req.params["name"])
        with store.connect() as conn:
            row = conn.execute(select(hs_list).where(func.lower(hs_list.c.name) == name.lower(),
                                                     hs_list.c.objectTypeId == req.params["object"])).first()
            if row is None:
                return _error(404, "OBJECT_NOT_FOUND", f"List does not exist with name {name}.")
            return Response(200, {"list": _list_json(row, size_of(conn, row.listId))})

    @app.route("POST", r"/crm/v3/lists/search")
    def search(req: Request) -> Response:
        body = req.json() or {}
        query = (body.get("query") or "").lower()
        offset, count = int(body.get("offset") or 0), int(body.get("count") or 20)
        kinds = body.get("processingTypes") or []
        with store.connect() as conn:
            rows = [r for r in conn.execute(select(hs_list).order_by(hs_list.c.listId))
                    if query in (r.name or "").lower() and (not kinds or r.processingType in kinds)]
            page = [_list_json(r, size_of(conn, r.listId), search=True) for r in rows[offset : offset + count]]
        return Response(200, {"lists": page, "total": len(rows), "offset": offset + len(page),
                              "hasMore": offset + len(page) < len(rows)})  # fmt: skip

    @app.route("PUT", r"/crm/v3/lists/(?P<list_id>\d+)/memberships/(?P<op>add|remove)")
    def change(req: Request) -> Response:
        row = find_list(req.params["list_id"])
        if row is None:
            return _error(404, "OBJECT_NOT_FOUND", f"List {req.params['list_id']} does not exist.")
        if row.processingType not in STATIC:
            return _error(400, "VALIDATION_ERROR", f"List {row.listId} has processingType {row.processingType}: "
                          "membership changes are only allowed for MANUAL or SNAPSHOT lists")
        ids = req.json()
        if not isinstance(ids, list) or not all(isinstance(i, str | int) for i in ids):
            return _error(400, "VALIDATION_ERROR", "the body must be a JSON array of record ids")
        ids = [str(i) for i in dict.fromkeys(ids)]
        m = hs_list_membership
        done, missing = [], []
        with store.begin() as conn:
            known = set(conn.execute(select(hs_contact.c.id).where(hs_contact.c.id.in_(ids),
                                                                   hs_contact.c.archived.isnot(True))).scalars())
            members = set(conn.execute(select(m.c.recordId).where(m.c.listId == row.listId, m.c.recordId.in_(ids)))
                          .scalars())  # fmt: skip
            for rid in ids:
                if rid not in known:
                    missing.append(rid)
                elif req.params["op"] == "add" and rid not in members:
                    conn.execute(insert(m).values(listId=row.listId, recordId=rid, membershipTimestamp=_now()))
                    done.append(rid)
                elif req.params["op"] == "remove" and rid in members:
                    conn.execute(delete(m).where(m.c.listId == row.listId, m.c.recordId == rid))
                    done.append(rid)
        for rid in ids:
            if rid not in missing:
                app.record_write(req, "list_membership", f"{row.listId}:{rid}", created=rid in done,
                                 external_id=rid, body={"op": req.params["op"], "listId": row.listId, "recordId": rid})
        added = done if req.params["op"] == "add" else []
        removed = done if req.params["op"] == "remove" else []
        return Response(200, {"recordsIdsAdded": added, "recordIdsRemoved": removed, "recordIdsMissing": missing})

    @app.route("GET", r"/crm/v3/lists/(?P<list_id>\d+)/memberships")
    def members(req: Request) -> Response:
        row = find_list(req.params["list_id"])
        if row is None:
            return _error(404, "OBJECT_NOT_FOUND", f"List {req.params['list_id']} does not exist.")
        limit = max(1, min(int(req.arg("limit") or 100), MAX_PAGE))
        after = req.arg("after") or ""
        m = hs_list_membership
        with store.connect() as conn:
            total = size_of(conn, row.listId)
            rows = conn.execute(select(m).where(m.c.listId == row.listId, m.c.recordId > after)
                                .order_by(m.c.recordId).limit(limit + 1)).fetchall()  # fmt: skip
        page = rows[:limit]
        body: dict[str, Any] = {"results": [{"recordId": r.recordId, "membershipTimestamp": _iso(r.membershipTimestamp)}
                                            for r in page], "total": total}  # fmt: skip
        if len(rows) > limit:
            body["paging"] = {"next": {"after": page[-1].recordId}}
        return Response(200, body)

    @app.route("GET", r"/crm/v3/lists/records/(?P<object>[^/]+)/(?P<record>\d+)/memberships")
    def lists_of_record(req: Request) -> Response:
        m = hs_list_membership
        with store.connect() as conn:
            rows = conn.execute(select(m, hs_list.c.listVersion).join(hs_list, hs_list.c.listId == m.c.listId)
                                .where(m.c.recordId == req.params["record"]).order_by(m.c.listId)).fetchall()
        return Response(200, {"results": [{
            "listId": r.listId, "listVersion": r.listVersion or 1,
            "firstAddedTimestamp": _iso(r.membershipTimestamp), "lastAddedTimestamp": _iso(r.membershipTimestamp),
        } for r in rows], "total": len(rows)})  # fmt: skip

    return app
