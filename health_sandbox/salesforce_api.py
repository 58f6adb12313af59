"""The loopback Salesforce: the REST API shapes simple-salesforce and the pipeline rely on.

Served over HTTPS by ``Sandbox.start`` from the ``sf_*`` tables of the sandbox store (whose
columns carry the Salesforce API field names). What it answers, under
``/services/data/vNN.N/`` (any version):

* ``POST /services/oauth2/token`` - client-credentials or password grant. Only the sandbox's
  connected app (``SANDBOX_SF_CLIENT_ID`` / ``SANDBOX_SF_CLIENT_SECRET`` of ``connections.py``)
  and, for the password grant, its integration user (``SANDBOX_SF_USERNAME`` /
  ``SANDBOX_SF_PASSWORD``) get a token; anything else gets Salesforce's own OAuth error, HTTP 400:
  ``invalid_client_id`` (unknown consumer key), ``invalid_client`` ("invalid client
  credentials": wrong consumer secret), ``invalid_grant`` ("authentication failure": wrong user
  or password). Tokens live in the server's memory (a restart expires every session, as a real
  org's session timeout does). Everything else needs ``Authorization: Bearer <token>`` and
  otherwise answers 401 ``INVALID_SESSION_ID``.
* ``query/`` and ``queryAll/`` (``?q=SOQL``, see ``soql.py``) - paged with
  ``nextRecordsUrl``; the page size is ``Sforce-Query-Options: batchSize=N`` (default 2000; the
  sandbox honours sizes below Salesforce's minimum of 200 so tests can page through few rows).
  ``query/`` hides ``IsDeleted`` rows, ``queryAll/`` includes them. Parent relationship fields
  (``UserRole.Name``, ``Account.Owner.Name``) work in the select list, WHERE and ORDER BY and come
  back nested as Salesforce returns them: ``"UserRole": {"attributes": {...}, "Name": "..."}``, or
  ``"UserRole": null`` when the reference is empty. A query Salesforce would refuse is refused
  with its error shape, HTTP 400 ``[{"message": "\\n<query>\\n   ^\\nERROR at Row:1:Column:N\\n...",
  "errorCode": ...}]``: ``INVALID_FIELD`` ("No such column 'X' on entity 'User'", "Didn't
  understand relationship 'X' in field path"), ``INVALID_TYPE`` (unknown object),
  ``MALFORMED_QUERY`` (syntax).
* ``sobjects/`` (describeGlobal), ``sobjects/{Obj}/describe/`` (field types as Salesforce's field
  reference gives them for standard fields, as ``salesforce_fields`` defines them for custom
  ones), ``limits/``.
* ``sobjects/{Obj}/`` create, ``sobjects/{Obj}/{Id}`` get/update/delete,
  ``sobjects/{Obj}/{ExternalIdField}/{value}`` get/upsert, and the sObject collections
  ``composite/sobjects`` (create, update) and ``composite/sobjects/{Obj}/{ExternalIdField}``
  (upsert), up to 200 records, ``allOrNone`` honoured. Every write is recorded in
  ``sandbox_writes`` and stamps ``SystemModstamp``. Fields Salesforce computes itself are
  refused (``INVALID_FIELD_FOR_INSERT_UPDATE``) and kept as Salesforce keeps them:
  ``Task.AccountId`` follows ``WhatId`` (an Account, or an Opportunity's account) or else the
  ``WhoId`` contact's account.
* Campaigns as Salesforce keeps them (object reference: Campaign, CampaignMember,
  CampaignMemberStatus): a ``Campaign`` created through the API gets the two member statuses
  every new campaign has, "Sent" (the default) and "Responded" (``HasResponded``);
  ``CampaignMemberStatus`` is read-only (query and retrieve, as the current object reference
  lists its calls); a ``CampaignMember`` needs ``CampaignId`` and ``ContactId`` (both settable
  on create only; the sandbox holds no Leads), takes the campaign's default status when none is
  given, derives ``HasResponded`` from its status, and a second member for the same contact is
  refused with ``DUPLICATE_VALUE`` "Already a campaign member.". A status the campaign does not
  define is refused with ``INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST``: the sandbox is strict
  here (the product checks the campaign's statuses itself before it writes one).

Faults (``Sandbox.inject_fault("salesforce", kind, ...)``), answered the way Salesforce does:

* ``rate_limit`` - 403 ``REQUEST_LIMIT_EXCEEDED`` ("TotalRequests Limit exceeded."), no
  Retry-After: Salesforce's daily API request limit, not an HTTP throttle;
* ``server_error`` - 503 Service Unavailable, or with ``retry_after`` a 429 with Retry-After
  (what a proxy or gateway in front of an org answers);
* ``timeout`` - the server hangs ``retry_after`` seconds (``http.py``);
* ``expired_session`` - the presented token is revoked and the request answers 401
  ``INVALID_SESSION_ID``;
* ``insufficient_access`` - a query answers 400 ``INVALID_TYPE`` (the object is not visible to
  the user), any other request 403 ``INSUFFICIENT_ACCESS``;
* ``malformed`` - one record of the next query page carries a broken field (a text value in a
  number field, a ``SystemModstamp`` that is not a date, or no ``Id``);
* ``duplicate_page`` - the next query page is served twice: its ``nextRecordsUrl`` points at
  itself once, so a client reads the same records again before the query moves on.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    String,
    Table,
    Text,
    and_,
    case,
    func,
    null,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from customer_health.sources.salesforce_fields import CUSTOM_FIELD_INDEX
from health_sandbox.connections import SANDBOX_SF_CLIENT_ID, SANDBOX_SF_CLIENT_SECRET
from health_sandbox.http import Fault, Request, Response, SandboxApp
from health_sandbox.ids import SF_PREFIX, salesforce_id
from health_sandbox.soql import SoqlError, SoqlQuery, parse_datetime_literal, parse_soql, to_sql
from health_sandbox.store import (
    sf_account,
    sf_campaign,
    sf_campaign_member,
    sf_campaign_member_status,
    sf_contact,
    sf_nps_response,
    sf_opportunity,
    sf_task,
    sf_user,
    sf_user_role,
)

SYSTEM = "salesforce"
ORG_ID = "00D5g000004SbxHEAS"
# The sandbox org's integration user, for the OAuth password grant (the sandbox's connection uses
# the client-credentials grant with the connected app's key and secret of ``connections.py``).
SANDBOX_SF_USERNAME = "integration@northpeak-saas.com"
SANDBOX_SF_PASSWORD = "sandbox-password"  # noqa: S105 - accepted only by the loopback sandbox
DEFAULT_BATCH_SIZE = 2000
MAX_COLLECTION_SIZE = 200
DAILY_API_REQUESTS = 100_000
_V = r"/services/data/v(?P<ver>\d+\.\d+)"


@dataclass(frozen=True)
class SObject:
    """One object the org exposes: its API name, store table and Id key prefix."""

    name: str
    table: Table
    key_prefix: str
    label: str
    required: tuple[str, ...] = ()
    createable: bool = True  # the object takes create/update/delete calls (not only query)

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")


SOBJECTS: dict[str, SObject] = {
    o.name.lower(): o
    for o in (
        SObject("User", sf_user, SF_PREFIX["User"], "User"),
        SObject("UserRole", sf_user_role, "00E", "Role", ("Name",)),
        SObject("Account", sf_account, SF_PREFIX["Account"], "Account", ("Name",)),
        SObject("Contact", sf_contact, SF_PREFIX["Contact"], "Contact", ("LastName",)),
        SObject("Task", sf_task, SF_PREFIX["Task"], "Task"),
        SObject("Opportunity", sf_opportunity, SF_PREFIX["Opportunity"], "Opportunity",
                ("Name", "StageName", "CloseDate")),
        SObject("NPS_Response__c", sf_nps_response, SF_PREFIX["NPS_Response__c"], "NPS Response"),
        SObject("Campaign", sf_campaign, "701", "Campaign", ("Name",)),
        SObject("CampaignMember", sf_campaign_member, "00v", "Campaign Member", ("CampaignId", "ContactId")),
        SObject("CampaignMemberStatus", sf_campaign_member_status, "01Y", "Campaign Member Status", createable=False),
    )
}

# Fields Salesforce maintains itself: never writable through the API.
SYSTEM_FIELDS = frozenset({"Id", "CreatedDate", "SystemModstamp", "IsDeleted"})
# Standard fields Salesforce computes (object reference: no Create/Update property).
COMPUTED_FIELDS: dict[str, frozenset[str]] = {
    "User": frozenset({"Name"}),  # FirstName + LastName
    "Task": frozenset({"AccountId"}),  # from WhatId / WhoId
    "Opportunity": frozenset({"IsClosed", "IsWon"}),  # from StageName
    "CampaignMember": frozenset({"HasResponded"}),  # from Status
    # Query and retrieve only (object reference: no Create or Update property on any field).
    "CampaignMemberStatus": frozenset({"CampaignId", "Label", "HasResponded", "IsDefault", "SortOrder"}),
}
# Standard fields a client sets on create and never changes ("Properties: Create", no Update).
CREATE_ONLY_FIELDS: dict[str, frozenset[str]] = {
    "CampaignMember": frozenset({"CampaignId", "ContactId"}),
}
DEFAULT_CAMPAIGN_STATUSES = (("Sent", False, True), ("Responded", True, False))  # (Label, HasResponded, IsDefault)
# Fields marked "External ID" in the org (upsert keys besides Id).
EXTERNAL_ID_FIELDS = {
    obj: next(f.name for f in CUSTOM_FIELD_INDEX.values() if f.object == obj and f.external_id)
    for obj in ("Task", "Account")
}
# Types of the standard fields whose type the store's column cannot tell (Salesforce field reference).
STANDARD_FIELD_TYPES: dict[tuple[str, str], str] = {
    ("User", "Email"): "email",
    ("Account", "Industry"): "picklist",
    ("Account", "Type"): "picklist",
    ("Contact", "Email"): "email",
    ("Task", "Subject"): "combobox",
    ("Task", "Type"): "picklist",
    ("Task", "Status"): "picklist",
    ("Task", "Priority"): "picklist",
    ("Opportunity", "Type"): "picklist",
    ("Opportunity", "StageName"): "picklist",
    ("Campaign", "Type"): "picklist",
    ("Campaign", "Status"): "picklist",
    ("CampaignMember", "Status"): "picklist",
}
# Parent relationships (the non-polymorphic lookups): (object, field) -> the object it points at.
# The relationship is named after the field: ``UserRoleId`` -> ``UserRole``, ``Account__c`` ->
# ``Account__r``. Task's WhatId/WhoId/OwnerId point at several objects and are left out.
REFERENCES: dict[tuple[str, str], str] = {
    ("User", "UserRoleId"): "UserRole",
    ("UserRole", "ParentRoleId"): "UserRole",
    ("Account", "Executive_Sponsor_User__c"): "User",
    ("Account", "OwnerId"): "User",
    ("Account", "ParentId"): "Account",
    ("Contact", "AccountId"): "Account",
    ("Task", "AccountId"): "Account",
    ("Opportunity", "AccountId"): "Account",
    ("NPS_Response__c", "Account__c"): "Account",
    ("NPS_Response__c", "Contact__c"): "Contact",
    ("CampaignMember", "CampaignId"): "Campaign",
    ("CampaignMember", "ContactId"): "Contact",
    ("CampaignMemberStatus", "CampaignId"): "Campaign",
}


def relationship_name(field: str) -> str:
    """The relationship a reference field defines: ``UserRoleId`` -> ``UserRole``, ``X__c`` -> ``X__r``."""
    return field[:-3] + "__r" if field.endswith("__c") else field.removesuffix("Id")


def createable(obj: SObject, name: str) -> bool:
    """Whether the API lets a client set ``obj.name`` when creating a record."""
    return name not in SYSTEM_FIELDS and name not in COMPUTED_FIELDS.get(obj.name, frozenset())


def updateable(obj: SObject, name: str) -> bool:
    """Whether the API lets a client change ``obj.name`` on an existing record."""
    return createable(obj, name) and name not in CREATE_ONLY_FIELDS.get(obj.name, frozenset())


def writable(obj: SObject, name: str) -> bool:
    """Whether the API lets a client set ``obj.name`` both on create and on update."""
    return updateable(obj, name)


# ----------------------------------------------------------------------------- ids
# The generator numbers records from 0; Ids minted by API writes come from numbers far above any
# generated company, and ``salesforce_id`` is a bijection, so they never collide with its Ids.
_MINTED_NUMBERS = (1_000_000_000, 2**31)


def new_record_id(obj: SObject) -> str:
    """A fresh 18-character Id for a record created through the API (valid checksum)."""
    return salesforce_id(obj.key_prefix, _MINTED_NUMBERS[0] + secrets.randbelow(_MINTED_NUMBERS[1] - _MINTED_NUMBERS[0]))


# ----------------------------------------------------------------------------- values
def format_datetime(value: datetime) -> str:
    """A datetime the way the REST API writes it: ``2026-01-01T00:00:00.000+0000``."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _yes_no_fields() -> dict[tuple[str, str], tuple[str, str]]:
    """Custom Yes/No picklists the store holds as booleans: (object, field) -> (yes, no)."""
    out = {}
    for (obj_name, name), f in CUSTOM_FIELD_INDEX.items():
        obj = SOBJECTS.get(obj_name.lower())
        if f.picklist and len(f.picklist) == 2 and obj is not None and isinstance(obj.table.c[name].type, Boolean):
            out[(obj_name, name)] = (f.picklist[0], f.picklist[1])
    return out


YES_NO_FIELDS = _yes_no_fields()


def _now() -> datetime:
    """Now, naive UTC, at Salesforce's millisecond precision."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _field_type(obj: SObject, name: str) -> str:
    col = obj.table.c[name]
    if name == "Id":
        return "id"
    custom = CUSTOM_FIELD_INDEX.get((obj.name, name))
    if custom is not None:
        return custom.type
    if (obj.name, name) in STANDARD_FIELD_TYPES:
        return STANDARD_FIELD_TYPES[(obj.name, name)]
    if (obj.name, name) in REFERENCES:
        return "reference"
    if isinstance(col.type, Boolean):
        return "boolean"
    if isinstance(col.type, DateTime):
        return "datetime"
    if isinstance(col.type, Date):
        return "date"
    if isinstance(col.type, Integer):
        return "int"
    if isinstance(col.type, Float):
        return "currency" if name in ("ARR__c", "Amount") else "double"
    if isinstance(col.type, Text):
        return "textarea"
    if name.endswith("Id") or (name.endswith("__c") and isinstance(col.type, String) and col.type.length == 18):
        return "reference"
    return "string"


class _BadField(ValueError):
    """A value that does not fit its field; ``code`` is Salesforce's status code."""

    def __init__(self, message: str, code: str, fields: list[str]) -> None:
        super().__init__(message)
        self.code = code
        self.fields = fields


def _coerce(obj: SObject, name: str, value: Any) -> Any:
    """A JSON value from a client as the store column's Python type."""
    if value is None:
        return None
    col = obj.table.c[name]
    kind = col.type

    def bad(expected: str) -> _BadField:
        return _BadField(f"{obj.name}.{name}: value not of required type {expected}: {value!r}",
                         "INVALID_TYPE_ON_FIELD_IN_RECORD", [name])

    custom = CUSTOM_FIELD_INDEX.get((obj.name, name))
    if custom is not None and custom.picklist:  # a restricted picklist
        if value not in custom.picklist:
            raise _BadField(f"{obj.name}.{name}: bad value for restricted picklist field: {value}",
                            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", [name])
        if isinstance(kind, Boolean):  # Yes/No held as true/false (see store.py)
            return value == custom.picklist[0]
        return value

    if isinstance(kind, Boolean):
        if not isinstance(value, bool):
            raise bad("boolean")
        return value
    if isinstance(kind, DateTime):
        try:
            return parse_datetime_literal(str(value))
        except SoqlError:
            raise bad("dateTime") from None
    if isinstance(kind, Date):
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise bad("date") from None
    if isinstance(kind, Integer):
        if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
            raise bad("integer")
        return int(value)
    if isinstance(kind, Float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("double")
        return float(value)
    if not isinstance(value, str):
        raise bad("string")
    length = getattr(kind, "length", None)
    if length and len(value) > length:
        raise _BadField(f"{obj.name}.{name}: data value too large (max length={length})",
                        "STRING_TOO_LONG", [name])
    return value


# ----------------------------------------------------------------------------- field paths
_NO_SUCH_COLUMN = ("No such column '{name}' on entity '{obj}'. If you are attempting to use a custom field, be "
                   "sure to append the '__c' after the custom field name. Please reference your WSDL or the "
                   "describe call for the appropriate names.")
_NO_SUCH_RELATIONSHIP = ("Didn't understand relationship '{name}' in field path. If you are attempting to use a "
                         "custom relationship, be sure to append the '__r' after the custom relationship name. "
                         "Please reference your WSDL or the describe call for the appropriate names.")
_NO_SUCH_OBJECT = ("sObject type '{name}' is not supported. If you are attempting to use a custom object, be "
                   "sure to append the '__c' after the entity name. Please reference your WSDL or the describe "
                   "call for the appropriate names.")


@dataclass(frozen=True)
class _Path:
    """A field of the queried object, or one reached through parent relationships."""

    obj: SObject  # the object the field is on (the last one reached)
    field: str  # its canonical name
    hops: tuple[tuple[str, str, SObject], ...] = ()  # (relationship, reference field, parent object)

    @property
    def key(self) -> str:
        return ".".join([h[0] for h in self.hops] + [self.field])


def _column(table: Any, path: _Path, start: int = 0) -> Any:
    """``path`` as a SQL expression over ``table``: a column, or correlated scalar sub-queries."""
    if start == len(path.hops):
        yes_no = YES_NO_FIELDS.get((path.obj.name, path.field))
        if yes_no is not None:  # the picklist's values, as the API shows them (store.py keeps booleans)
            col = table.c[path.field]
            return case((col.is_(True), yes_no[0]), (col.is_(False), yes_no[1]), else_=null())
        return table.c[path.field]
    _, ref_field, parent = path.hops[start]
    alias = parent.table.alias()
    return select(_column(alias, path, start + 1)).where(alias.c.Id == table.c[ref_field]).scalar_subquery()


def _parent_id_path(path: _Path, depth: int) -> _Path:
    """The Id of the parent record reached after ``depth + 1`` relationships of ``path``."""
    return _Path(path.hops[depth][2], "Id", path.hops[: depth + 1])


# ----------------------------------------------------------------------------- query cursors
@dataclass
class _Cursor:
    """A query's result snapshot (the ordered Ids), read page by page like a query locator."""

    obj: SObject
    fields: tuple[_Path, ...]
    ids: list[str]
    batch_size: int
    endpoint: str  # query | queryAll


def _errors(message: str, code: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"message": message, "errorCode": code, **extra}]


class SalesforceApp(SandboxApp):
    """The Salesforce REST API over the sandbox store: sessions, query cursors, write paths."""

    def __init__(self, store: Engine, folder: Path) -> None:
        super().__init__(SYSTEM, store)
        self.folder = folder
        self._tokens: dict[str, datetime] = {}
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._lock = threading.Lock()
        self._api_requests = 0

    # -- sessions and request-level faults ---------------------------------------------
    @staticmethod
    def bearer_token(req: Request) -> str | None:
        """The session id a request presents (``Authorization: Bearer <token>``)."""
        auth = req.header("authorization") or ""
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() in ("bearer", "oauth") and token.strip() else None

    def issue_token(self) -> str:
        """A new session id, remembered until revoked or the server stops."""
        token = f"{ORG_ID[:15]}!{secrets.token_urlsafe(48)}"
        with self._lock:
            self._tokens[token] = _now()
        return token

    def revoke_token(self, token: str | None) -> None:
        """Forget a session id (what an expired session looks like to the client)."""
        with self._lock:
            self._tokens.pop(token or "", None)

    def dispatch(self, req: Request) -> Response:
        """Authenticate, apply faults, then route (the token endpoint needs no session)."""
        if req.path.rstrip("/") != "/services/oauth2/token":
            if self.bearer_token(req) not in self._tokens:
                return Response(401, _errors("Session expired or invalid", "INVALID_SESSION_ID"))
            with self._lock:
                self._api_requests += 1
            fault = self.take_fault(req, kinds=("insufficient_access",))
            if fault is not None:
                return self._insufficient_access(req)
        return super().dispatch(req)

    def _insufficient_access(self, req: Request) -> Response:
        q = req.arg("q")
        if q and re.search(r"/query(All)?/?$", req.path):
            m = re.search(r"\bFROM\s+(\w+)", q, re.IGNORECASE)
            name = m.group(1) if m else "?"
            return Response(400, _errors(
                f"\n{q}\n^\nERROR at Row:1:Column:1\nsObject type '{name}' is not supported. If you are "
                "attempting to use a custom object, be sure to append the '__c' after the entity name. "
                "Please reference your WSDL or the describe call for the appropriate names.",
                "INVALID_TYPE",
            ))
        return Response(403, _errors(
            "insufficient access rights on object id", "INSUFFICIENT_ACCESS"
        ))

    def fault_response(self, fault: Fault, req: Request) -> Response:
        """Salesforce's answers to the request-level faults (see module docstring)."""
        if fault.kind == "rate_limit":
            return Response(403, _errors("TotalRequests Limit exceeded.", "REQUEST_LIMIT_EXCEEDED"))
        if fault.kind == "server_error":
            if fault.retry_after is not None:
                return Response(
                    429,
                    _errors("Too many requests, retry later", "REQUEST_LIMIT_EXCEEDED"),
                    {"Retry-After": str(max(0, round(fault.retry_after)))},
                )
            return Response(503, _errors("Service Unavailable", "SERVER_UNAVAILABLE"))
        if fault.kind == "expired_session":
            self.revoke_token(self.bearer_token(req))
            return Response(401, _errors("Session expired or invalid", "INVALID_SESSION_ID"))
        return super().fault_response(fault, req)

    def not_found(self, req: Request) -> Response:
        """Salesforce's 404 for an unknown resource."""
        return Response(404, _errors("The requested resource does not exist", "NOT_FOUND"))

    # -- lookups -----------------------------------------------------------------------
    def sobject(self, name: str) -> SObject | None:
        """The object called ``name`` (case-insensitive, as Salesforce is)."""
        return SOBJECTS.get(name.lower())

    @staticmethod
    def field_name(obj: SObject, name: str, position: int | None = None) -> str:
        """The canonical spelling of field ``name`` on ``obj``; SoqlError INVALID_FIELD if none."""
        for col in obj.table.c:
            if col.name.lower() == name.lower():
                return col.name
        raise SoqlError(_NO_SUCH_COLUMN.format(name=name, obj=obj.name), "INVALID_FIELD", position)

    def resolve(self, obj: SObject, path: str, position: int | None = None) -> _Path:
        """A field path of a query on ``obj`` (``Name``, ``UserRole.Name``); INVALID_FIELD if wrong."""
        *relationships, name = path.split(".")
        current, hops = obj, []
        for rel in relationships:
            ref = next((f for (o, f) in REFERENCES if o == current.name
                        and relationship_name(f).lower() == rel.lower()), None)
            if ref is None:
                raise SoqlError(_NO_SUCH_RELATIONSHIP.format(name=rel), "INVALID_FIELD", position)
            parent = SOBJECTS[REFERENCES[(current.name, ref)].lower()]
            hops.append((relationship_name(ref), ref, parent))
            current = parent
        return _Path(current, self.field_name(current, name, position), tuple(hops))

    def serialize(self, obj: SObject, row: Any, fields: tuple[_Path, ...], ver: str) -> dict[str, Any]:
        """One record in the REST shape, ``attributes`` first; parents as nested records (or null)."""
        mapping = row._mapping
        base = f"/services/data/v{ver}/sobjects"
        record: dict[str, Any] = {"attributes": {"type": obj.name, "url": f"{base}/{obj.name}/{mapping['Id']}"}}
        for path in fields:
            container = record
            for depth, (rel, _, parent) in enumerate(path.hops):
                if rel not in container:
                    parent_id = mapping[_parent_id_path(path, depth).key]
                    container[rel] = None if parent_id is None else {
                        "attributes": {"type": parent.name, "url": f"{base}/{parent.name}/{parent_id}"}}
                container = container[rel]
                if container is None:
                    break
            else:
                value = mapping[path.key]
                yes_no = YES_NO_FIELDS.get((path.obj.name, path.field))
                if yes_no is not None and value is not None:
                    value = yes_no[0] if value else yes_no[1]
                container[path.field] = _json_value(value)
        return record

    # -- query ----------------------------------------------------------------------------
    def run_query(self, req: Request, endpoint: str) -> Response:
        """Start a query: evaluate it, remember the ordered Ids, answer the first page."""
        soql = req.arg("q")
        if not soql:
            return Response(400, _errors("missing the q parameter with a SOQL query", "MALFORMED_QUERY"))
        try:
            query = parse_soql(soql)
            obj = self.sobject(query.object_name)
            if obj is None:
                raise SoqlError(_NO_SUCH_OBJECT.format(name=query.object_name), "INVALID_TYPE",
                                query.positions.get(" FROM"))
            ids, total, fields = self._evaluate(query, obj, include_deleted=endpoint == "queryAll")
        except SoqlError as exc:
            return Response(400, _errors(exc.error_message(soql), exc.error_code))
        if query.is_count:
            return Response(200, {"totalSize": total, "done": True, "records": []})
        cursor = _Cursor(obj, fields, ids, self._batch_size(req), endpoint)
        locator = "01g" + secrets.token_hex(8)[:15]
        with self._lock:
            self._cursors[locator] = cursor
            while len(self._cursors) > 500:  # old query locators expire
                self._cursors.popitem(last=False)
        return self._page(req, locator, 0)

    def _evaluate(self, query: SoqlQuery, obj: SObject, include_deleted: bool) -> tuple[list[str], int, tuple[_Path, ...]]:
        table = obj.table

        def path(name: str) -> _Path:
            return self.resolve(obj, name, query.positions.get(name))

        fields = tuple(path(f) for f in query.fields)
        where = to_sql(query.where, lambda name: _column(table, path(name)))
        if not include_deleted and "IsDeleted" in table.c:
            where = where & table.c.IsDeleted.isnot(True)
        if query.is_count:
            stmt = select(func.count()).select_from(table).where(where)
            with self.store.connect() as conn:
                total = conn.execute(stmt).scalar_one()
            if query.offset:
                total = max(0, total - query.offset)
            if query.limit is not None:
                total = min(total, query.limit)
            return [], total, ()
        stmt = select(table.c.Id).where(where)
        for item in query.order_by:
            col = _column(table, path(item.field))
            term = col.desc() if item.descending else col.asc()
            stmt = stmt.order_by(term.nulls_last() if item.nulls_are_last else term.nulls_first())
        if query.limit is not None:
            stmt = stmt.limit(query.limit)
        if query.offset:
            stmt = stmt.offset(query.offset)
        with self.store.connect() as conn:
            ids = list(conn.execute(stmt).scalars())
        return ids, len(ids), fields

    @staticmethod
    def _batch_size(req: Request) -> int:
        options = req.header("sforce-query-options") or ""
        m = re.search(r"batchSize\s*=\s*(\d+)", options, re.IGNORECASE)
        return max(1, min(int(m.group(1)), DEFAULT_BATCH_SIZE)) if m else DEFAULT_BATCH_SIZE

    def more(self, req: Request) -> Response:
        """Continue a query from its ``nextRecordsUrl``."""
        return self._page(req, req.params["locator"], int(req.params["offset"]))

    def _page(self, req: Request, locator: str, offset: int) -> Response:
        cursor = self._cursors.get(locator)
        if cursor is None or offset > len(cursor.ids):
            return Response(400, _errors("invalid query locator", "INVALID_QUERY_LOCATOR"))
        ver = req.params.get("ver", "59.0")
        page_ids = cursor.ids[offset : offset + cursor.batch_size]
        table = cursor.obj.table
        records: list[dict[str, Any]] = []
        if page_ids:
            related: dict[str, Any] = {}  # parent fields and parent Ids, labelled by their path
            for path in cursor.fields:
                for depth in range(len(path.hops)):
                    parent_id = _parent_id_path(path, depth)
                    related.setdefault(parent_id.key, _column(table, parent_id))
                if path.hops:
                    related.setdefault(path.key, _column(table, path))
            stmt = select(table, *(expr.label(key) for key, expr in related.items())).where(table.c.Id.in_(page_ids))
            with self.store.connect() as conn:
                rows = {r.Id: r for r in conn.execute(stmt)}
            records = [self.serialize(cursor.obj, rows[i], cursor.fields, ver) for i in page_ids if i in rows]
        if records and self.take_fault(req, kinds=("malformed",)) is not None:
            _break_record(cursor.obj, records[0])
        next_offset = offset + len(page_ids)
        if page_ids and self.take_fault(req, kinds=("duplicate_page",)) is not None:
            next_offset = offset  # the client will be served this very page again
        body: dict[str, Any] = {
            "totalSize": len(cursor.ids),
            "done": next_offset >= len(cursor.ids),
            "records": records,
        }
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/v{ver}/{cursor.endpoint}/{locator}-{next_offset}"
        return Response(200, body)

    # -- describe and limits ----------------------------------------------------------------
    def describe_global(self, req: Request) -> Response:
        """``sobjects/``: the objects this org exposes."""
        ver = req.params["ver"]
        return Response(200, {
            "encoding": "UTF-8",
            "maxBatchSize": MAX_COLLECTION_SIZE,
            "sobjects": [self._object_summary(o, ver) for o in SOBJECTS.values()],
        })

    @staticmethod
    def _object_summary(obj: SObject, ver: str) -> dict[str, Any]:
        base = f"/services/data/v{ver}/sobjects/{obj.name}"
        return {
            "name": obj.name, "label": obj.label, "keyPrefix": obj.key_prefix, "custom": obj.custom,
            "queryable": True, "createable": obj.createable, "updateable": obj.createable,
            "deletable": obj.createable,
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
        }

    def describe(self, req: Request) -> Response:
        """``sobjects/{Obj}/describe/``: the object's fields."""
        obj = self.sobject(req.params["obj"])
        if obj is None:
            return self._unknown_object(req.params["obj"])
        external = EXTERNAL_ID_FIELDS.get(obj.name)
        fields = []
        for col in obj.table.c:
            ftype = _field_type(obj, col.name)
            custom = CUSTOM_FIELD_INDEX.get((obj.name, col.name))
            picklist = custom.picklist if custom is not None else ()
            length = (custom.length if custom is not None else None) or getattr(col.type, "length", None) or 0
            fields.append({
                "name": col.name,
                "label": col.name.removesuffix("__c").replace("_", " "),
                "type": ftype,
                "length": length if ftype in ("string", "textarea", "picklist", "email", "combobox") else 0,
                "custom": col.name.endswith("__c"),
                "externalId": col.name == external,
                "idLookup": col.name in ("Id", external),
                "unique": col.name == external,
                "nillable": (col.name not in SYSTEM_FIELDS and col.name not in obj.required
                             and ftype != "boolean"),  # a checkbox is never null
                "createable": createable(obj, col.name),
                "updateable": updateable(obj, col.name),
                "referenceTo": [REFERENCES[(obj.name, col.name)]] if (obj.name, col.name) in REFERENCES else [],
                "relationshipName": (relationship_name(col.name) if (obj.name, col.name) in REFERENCES
                                     else None),
                "picklistValues": [{"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
                                   for v in picklist],
                "filterable": True,
                "sortable": ftype != "textarea",
            })
        return Response(200, self._object_summary(obj, req.params["ver"]) | {"fields": fields})

    def limits(self, req: Request) -> Response:
        """``limits/``: the daily API request allowance."""
        return Response(200, {
            "DailyApiRequests": {"Max": DAILY_API_REQUESTS, "Remaining": max(0, DAILY_API_REQUESTS - self._api_requests)},
            "DataStorageMB": {"Max": 5120, "Remaining": 5000},
        })

    @staticmethod
    def _unknown_object(name: str) -> Response:
        return Response(404, _errors(f"The requested resource does not exist: sObject type '{name}'", "NOT_FOUND"))

    # -- single-record writes ------------------------------------------------------------
    def get_record(self, req: Request) -> Response:
        """``GET sobjects/{Obj}/{Id}`` or ``sobjects/{Obj}/{ExternalIdField}/{value}``."""
        obj = self.sobject(req.params["obj"])
        if obj is None:
            return self._unknown_object(req.params["obj"])
        try:
            key_field = self.field_name(obj, req.params.get("field", "Id"))
        except SoqlError as exc:
            return Response(400, _errors(str(exc), exc.error_code))
        value = unquote(req.params.get("value") or req.params["id"])
        with self.store.connect() as conn:
            row = conn.execute(select(obj.table).where(obj.table.c[key_field] == value)).first()
        if row is None:
            return self.not_found(req)
        all_fields = tuple(_Path(obj, c.name) for c in obj.table.c)
        return Response(200, self.serialize(obj, row, all_fields, req.params["ver"]))

    def create(self, req: Request) -> Response:
        """``POST sobjects/{Obj}/``: 201 with the new Id."""
        obj = self.sobject(req.params["obj"])
        if obj is None:
            return self._unknown_object(req.params["obj"])
        body = req.json() or {}
        try:
            with self.store.begin() as conn:
                record_id = self._insert(conn, obj, body)
        except _BadField as exc:
            return Response(400, _errors(str(exc), exc.code, fields=exc.fields))
        self.record_write(req, obj.name, record_id, created=True)
        return Response(201, {"id": record_id, "success": True, "errors": []})

    def update_record(self, req: Request) -> Response:
        """``PATCH sobjects/{Obj}/{Id}``: 204."""
        obj = self.sobject(req.params["obj"])
        if obj is None:
            return self._unknown_object(req.params["obj"])
        record_id = req.params["id"]
        try:
            with self.store.begin() as conn:
                found = self._update(conn, obj, obj.table.c.Id == record_id, req.json() or {})
        except _BadField as exc:
            return Response(400, _errors(str(exc), exc.code, fields=exc.fields))
        if not found:
            return Response(404, _errors(f"entity is deleted or does not exist: {obj.name} {record_id}", "NOT_FOUND"))
        self.record_write(req, obj.name, record_id, created=False)
        return Response(204, raw=b"")

    def delete_record(self, req: Request) -> Response:
        """``DELETE sobjects/{Obj}/{Id}``: to the recycle bin (``IsDeleted``), 204."""
        obj = self.sobject(req.params["obj"])
        if obj is None or "IsDeleted" not in obj.table.c or not obj.createable:
            return Response(400, _errors(f"cannot delete {req.params['obj']} records", "INVALID_TYPE"))
        record_id = req.params["id"]
        with self.store.begin() as conn:
            n = conn.execute(
                update(obj.table)
                .where(obj.table.c.Id == record_id, obj.table.c.IsDeleted.isnot(True))
                .values(IsDeleted=True, SystemModstamp=_now())
            ).rowcount
        if not n:
            return Response(404, _errors("entity is deleted or does not exist", "ENTITY_IS_DELETED"))
        self.record_write(req, obj.name, record_id, created=False, body={"deleted": True})
        return Response(204, raw=b"")

    def upsert_record(self, req: Request) -> Response:
        """``PATCH sobjects/{Obj}/{ExternalIdField}/{value}``: 201 created, 200 updated."""
        obj = self.sobject(req.params["obj"])
        if obj is None:
            return self._unknown_object(req.params["obj"])
        try:
            field = self._external_id_field(obj, req.params["field"])
            value = unquote(req.params["value"])
            with self.store.begin() as conn:
                record_id, created = self._upsert(conn, obj, field, value, req.json() or {})
        except _BadField as exc:
            return Response(400, _errors(str(exc), exc.code, fields=exc.fields))
        self.record_write(req, obj.name, record_id, created=created, external_id=value)
        return Response(201 if created else 200, {"id": record_id, "success": True, "errors": [], "created": created})

    def _external_id_field(self, obj: SObject, name: str) -> str:
        try:
            field = self.field_name(obj, name)
        except SoqlError as exc:
            raise _BadField(str(exc), "INVALID_FIELD", [name]) from None
        if field != "Id" and field != EXTERNAL_ID_FIELDS.get(obj.name):
            raise _BadField(f"Field {field} is not an External ID or indexed field for {obj.name}",
                            "INVALID_FIELD", [field])
        return field

    # -- the write primitives (inside a transaction) ---------------------------------------
    def _values(self, obj: SObject, body: dict[str, Any], creating: bool = True) -> dict[str, Any]:
        if not obj.createable:
            raise _BadField(f"entity type cannot be {'inserted' if creating else 'updated'}: {obj.label}",
                            "INVALID_TYPE_FOR_OPERATION", [])
        values: dict[str, Any] = {}
        for key, value in body.items():
            if key == "attributes":
                continue
            try:
                name = self.field_name(obj, key)
            except SoqlError as exc:
                raise _BadField(str(exc), "INVALID_FIELD", [key]) from None
            if not (createable(obj, name) if creating else updateable(obj, name)):
                raise _BadField(f"Unable to create/update fields: {name}. Please check the security "
                                "settings of this field and verify that it is read/write for your "
                                "profile or permission set.", "INVALID_FIELD_FOR_INSERT_UPDATE", [name])
            values[name] = _coerce(obj, name, value)
        return values

    def _insert(self, conn: Any, obj: SObject, body: dict[str, Any]) -> str:
        values = self._values(obj, body)
        missing = [f for f in obj.required if values.get(f) in (None, "")]
        if missing:
            raise _BadField(f"Required fields are missing: [{', '.join(missing)}]", "REQUIRED_FIELD_MISSING", missing)
        now = _now()
        record_id = new_record_id(obj)
        values |= {"Id": record_id, "SystemModstamp": now}
        if "CreatedDate" in obj.table.c:
            values["CreatedDate"] = now
        if "IsDeleted" in obj.table.c:
            values["IsDeleted"] = False
        if obj.name == "CampaignMember":
            values = self._campaign_member(conn, values)
        try:
            conn.execute(obj.table.insert().values(values))
        except IntegrityError:
            raise _BadField(f"duplicate value found: {EXTERNAL_ID_FIELDS.get(obj.name)} duplicates "
                            "value on another record", "DUPLICATE_VALUE", []) from None
        if obj.name == "Campaign":
            for order, (label, responded, default) in enumerate(DEFAULT_CAMPAIGN_STATUSES, 1):
                conn.execute(sf_campaign_member_status.insert().values(
                    Id=new_record_id(SOBJECTS["campaignmemberstatus"]), CampaignId=record_id, Label=label,
                    HasResponded=responded, IsDefault=default, SortOrder=order, CreatedDate=now, SystemModstamp=now,
                    IsDeleted=False))  # fmt: skip
        self._compute(conn, obj, obj.table.c.Id == record_id)
        return record_id

    @staticmethod
    def _statuses(conn: Any, campaign_id: str) -> list[Any]:
        s = sf_campaign_member_status
        return conn.execute(select(s).where(s.c.CampaignId == campaign_id, s.c.IsDeleted.isnot(True))
                            .order_by(s.c.SortOrder)).fetchall()  # fmt: skip

    def _campaign_member(self, conn: Any, values: dict[str, Any]) -> dict[str, Any]:
        """A new CampaignMember as Salesforce takes it: a real campaign and contact, one member
        per contact, the campaign's default status when none is given, a status it defines."""
        cm, c = sf_campaign_member, sf_campaign
        campaign = conn.execute(select(c.c.Id).where(c.c.Id == values["CampaignId"], c.c.IsDeleted.isnot(True))).first()
        if campaign is None:
            raise _BadField(f"invalid cross reference id: CampaignId {values['CampaignId']}",
                            "INVALID_CROSS_REFERENCE_KEY", ["CampaignId"])
        contact = conn.execute(select(sf_contact.c.Id).where(sf_contact.c.Id == values["ContactId"],
                                                             sf_contact.c.IsDeleted.isnot(True))).first()  # fmt: skip
        if contact is None:
            raise _BadField(f"invalid cross reference id: ContactId {values['ContactId']}",
                            "INVALID_CROSS_REFERENCE_KEY", ["ContactId"])
        existing = conn.execute(select(cm.c.Id).where(cm.c.CampaignId == values["CampaignId"],
                                                      cm.c.ContactId == values["ContactId"],
                                                      cm.c.IsDeleted.isnot(True))).first()  # fmt: skip
        if existing is not None:
            raise _BadField("Already a campaign member.", "DUPLICATE_VALUE", [])
        if not values.get("Status"):
            default = next((r.Label for r in self._statuses(conn, values["CampaignId"]) if r.IsDefault), None)
            values["Status"] = default
        self._check_member_status(conn, values["CampaignId"], values["Status"])
        return values

    def _check_member_status(self, conn: Any, campaign_id: str, status: str | None) -> None:
        labels = [r.Label for r in self._statuses(conn, campaign_id)]
        if status not in labels:
            raise _BadField(f"Status: bad value for restricted picklist field: {status}",
                            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["Status"])

    def _update(self, conn: Any, obj: SObject, where: Any, body: dict[str, Any]) -> bool:
        values = self._values(obj, body, creating=False) | {"SystemModstamp": _now()}
        if obj.name == "CampaignMember" and "Status" in values:
            for row in conn.execute(select(obj.table.c.CampaignId).where(where)):
                self._check_member_status(conn, row.CampaignId, values["Status"])
        if "IsDeleted" in obj.table.c:
            where = and_(where, obj.table.c.IsDeleted.isnot(True))
        found = bool(conn.execute(update(obj.table).where(where).values(values)).rowcount)
        if found:
            self._compute(conn, obj, where)
        return found

    @staticmethod
    def _compute(conn: Any, obj: SObject, where: Any) -> None:
        """Recompute the fields Salesforce derives: Task.AccountId from WhatId, else WhoId;
        CampaignMember.HasResponded from its status.

        WhatId an Account: that account; an Opportunity: its account; otherwise the account of the
        WhoId contact, or none (object reference, Task.AccountId).
        """
        if obj.name == "CampaignMember":
            cm, st = sf_campaign_member, sf_campaign_member_status
            responded = select(st.c.HasResponded).where(
                st.c.CampaignId == cm.c.CampaignId, st.c.Label == cm.c.Status, st.c.IsDeleted.isnot(True)
            ).scalar_subquery()
            conn.execute(update(cm).where(where).values(HasResponded=func.coalesce(responded, False)))
            return
        if obj.name != "Task":
            return
        t, a, o, c = sf_task, sf_account, sf_opportunity, sf_contact
        account = func.coalesce(
            select(a.c.Id).where(a.c.Id == t.c.WhatId).scalar_subquery(),
            select(o.c.AccountId).where(o.c.Id == t.c.WhatId).scalar_subquery(),
            select(c.c.AccountId).where(c.c.Id == t.c.WhoId).scalar_subquery(),
        )
        conn.execute(update(t).where(where).values(AccountId=account))

    def _upsert(self, conn: Any, obj: SObject, field: str, value: str, body: dict[str, Any]) -> tuple[str, bool]:
        body = dict(body)
        if field in body and body.pop(field) not in (None, value):
            raise _BadField(f"{field} in the body differs from the value in the URL ({value})",
                            "INVALID_FIELD", [field])
        existing = conn.execute(select(obj.table.c.Id).where(obj.table.c[field] == value)).scalars().all()
        if len(existing) > 1:
            raise _BadField(f"{field} = {value} matches {len(existing)} records", "MULTIPLE_CHOICES", [field])
        if existing:
            self._update(conn, obj, obj.table.c.Id == existing[0], body)
            return existing[0], False
        if field == "Id":
            raise _BadField(f"no {obj.name} with Id {value} to update", "NOT_FOUND", ["Id"])
        return self._insert(conn, obj, body | {field: value}), True

    # -- sObject collections ---------------------------------------------------------------
    def collection(self, req: Request) -> Response:
        """``composite/sobjects`` (POST create, PATCH update) and ``.../{Obj}/{Field}`` (upsert)."""
        body = req.json() or {}
        records = body.get("records")
        if not isinstance(records, list) or not records:
            return Response(400, _errors("records: a non-empty list of records is required", "JSON_PARSER_ERROR"))
        if len(records) > MAX_COLLECTION_SIZE:
            return Response(400, _errors(f"The number of records ({len(records)}) exceeds the maximum of "
                                         f"{MAX_COLLECTION_SIZE} per request; send them in batches.",
                                         "EXCEEDED_ID_LIMIT"))
        all_or_none = bool(body.get("allOrNone", False))
        mode = "upsert" if "field" in req.params else ("create" if req.method == "POST" else "update")
        results: list[dict[str, Any]] = []
        writes: list[tuple[str, str | None, bool, str | None, dict[str, Any]]] = []

        def attempt(conn: Any, record: Any) -> bool:
            try:
                result, write = self._collection_one(conn, req, mode, record)
            except _BadField as exc:
                rid = record.get("Id") if isinstance(record, dict) else None
                results.append({"id": rid, "success": False, "errors": [
                    {"statusCode": exc.code, "message": str(exc), "fields": exc.fields}]})
                return False
            results.append(result)
            writes.append(write)
            return True

        if all_or_none:  # one transaction: every record lands, or none does
            with self.store.connect() as conn:
                txn = conn.begin()
                ok = [attempt(conn, record) for record in records]
                if all(ok):
                    txn.commit()
                else:
                    txn.rollback()
                    rolled_back = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                   "message": "Record rolled back because not all records were valid "
                                              "and the request was using AllOrNone header", "fields": []}
                    results = [r if not r["success"] else {"id": None, "success": False, "errors": [rolled_back]}
                               for r in results]
                    writes = []
        else:  # each record on its own: the valid ones land, the others say why not
            for record in records:
                with self.store.begin() as conn:
                    attempt(conn, record)
        for obj_name, record_id, created, external_id, record in writes:
            self.record_write(req, obj_name, record_id, created=created, external_id=external_id, body=record)
        return Response(200, results)

    def _collection_one(self, conn: Any, req: Request, mode: str, record: Any) -> tuple[dict[str, Any], tuple]:
        if not isinstance(record, dict):
            raise _BadField("each record must be a JSON object", "JSON_PARSER_ERROR", [])
        type_name = (record.get("attributes") or {}).get("type") or req.params.get("obj")
        obj = self.sobject(type_name or "")
        if obj is None:
            raise _BadField(f"sObject type '{type_name}' is not supported (set attributes.type)", "INVALID_TYPE", [])
        if mode == "create":
            record_id = self._insert(conn, obj, {k: v for k, v in record.items() if k != "attributes"})
            return {"id": record_id, "success": True, "errors": []}, (obj.name, record_id, True, None, record)
        if mode == "update":
            record_id = record.get("Id")
            if not record_id:
                raise _BadField("Id is required to update a record", "MISSING_ARGUMENT", ["Id"])
            body = {k: v for k, v in record.items() if k not in ("attributes", "Id")}
            if not self._update(conn, obj, obj.table.c.Id == record_id, body):
                raise _BadField(f"entity is deleted or does not exist: {record_id}", "ENTITY_IS_DELETED", ["Id"])
            return {"id": record_id, "success": True, "errors": []}, (obj.name, record_id, False, None, record)
        field = self._external_id_field(obj, req.params["field"])
        value = record.get(field)
        if value in (None, ""):
            raise _BadField(f"{field} is required on every record of an upsert by {field}", "MISSING_ARGUMENT", [field])
        body = {k: v for k, v in record.items() if k not in ("attributes", field)}
        record_id, created = self._upsert(conn, obj, field, str(value), body)
        return ({"id": record_id, "success": True, "errors": [], "created": created},
                (obj.name, record_id, created, str(value), record))


# What the ``malformed`` fault garbles, per object: a field and the broken value it gets
# (``None``: the field is dropped from the record altogether).
_BREAKAGE: dict[str, tuple[str, Any]] = {
    "Account": ("Seats__c", "twelve"),
    "NPS_Response__c": ("Score__c", "nine"),
    "Opportunity": ("Amount", "lots"),
    "Contact": ("SystemModstamp", "not-a-date"),
    "Task": ("SystemModstamp", "not-a-date"),
    "User": ("Id", None),
}


def _break_record(obj: SObject, record: dict[str, Any]) -> None:
    """Damage one field of ``record`` the way a bad integration or a formula error would."""
    name, broken = _BREAKAGE.get(obj.name, ("SystemModstamp", "not-a-date"))
    if name not in record:
        name, broken = ("SystemModstamp", "not-a-date") if "SystemModstamp" in record else ("Id", None)
    if broken is None:
        record.pop(name, None)
    else:
        record[name] = broken


def _oauth_token(app: SalesforceApp, req: Request) -> Response:
    form = req.form()
    grant = form.get("grant_type", "")
    if grant not in ("client_credentials", "password"):
        return Response(400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
    # Salesforce's answers, in its order of checks: the consumer key, the secret, then the user.
    if form.get("client_id") != SANDBOX_SF_CLIENT_ID:
        return Response(400, {"error": "invalid_client_id", "error_description": "client identifier invalid"})
    if not secrets.compare_digest(form.get("client_secret", "").encode(), SANDBOX_SF_CLIENT_SECRET.encode()):
        return Response(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
    if grant == "password" and not (
        form.get("username") == SANDBOX_SF_USERNAME
        and secrets.compare_digest(form.get("password", "").encode(), SANDBOX_SF_PASSWORD.encode())
    ):
        return Response(400, {"error": "invalid_grant", "error_description": "authentication failure"})
    host = req.header("host") or "127.0.0.1"
    instance_url = f"https://{host}"
    return Response(200, {
        "access_token": app.issue_token(),
        "instance_url": instance_url,
        "id": f"{instance_url}/id/{ORG_ID}/0055g00000DemoUAAS",
        "token_type": "Bearer",
        "issued_at": str(int(time.time() * 1000)),
        "signature": secrets.token_urlsafe(32),
    })


def build_app(store: Engine, folder: Path) -> SandboxApp:
    """The loopback Salesforce over the sandbox store in ``folder`` (served over HTTPS)."""
    from health_sandbox.salesforce_org import OrgSalesforceApp  # the org's setup (fields it lacks ...)

    app = OrgSalesforceApp(store, folder)
    app.route("POST", r"/services/oauth2/token/?")(lambda req: _oauth_token(app, req))
    app.route("GET", _V + r"/(?P<endpoint>query|queryAll)/?")(lambda req: app.run_query(req, req.params["endpoint"]))
    app.route("GET", _V + r"/(?:query|queryAll)/(?P<locator>01g\w+)-(?P<offset>\d+)")(app.more)
    app.route("GET", _V + r"/limits/?")(app.limits)
    app.route("GET", _V + r"/sobjects/?")(app.describe_global)
    app.route("GET", _V + r"/sobjects/(?P<obj>\w+)/describe/?")(app.describe)
    app.route("POST", _V + r"/sobjects/(?P<obj>\w+)/?")(app.create)
    app.route("GET", _V + r"/sobjects/(?P<obj>\w+)/(?P<id>\w{15}|\w{18})/?")(app.get_record)
    app.route("PATCH", _V + r"/sobjects/(?P<obj>\w+)/(?P<id>\w{15}|\w{18})/?")(app.update_record)
    app.route("DELETE", _V + r"/sobjects/(?P<obj>\w+)/(?P<id>\w{15}|\w{18})/?")(app.delete_record)
    app.route("GET", _V + r"/sobjects/(?P<obj>\w+)/(?P<field>\w+)/(?P<value>[^/]+)/?")(app.get_record)
    app.route("PATCH", _V + r"/sobjects/(?P<obj>\w+)/(?P<field>\w+)/(?P<value>[^/]+)/?")(app.upsert_record)
    app.route("POST", _V + r"/composite/sobjects/?")(app.collection)
    app.route("PATCH", _V + r"/composite/sobjects/?")(app.collection)
    app.route("PATCH", _V + r"/composite/sobjects/(?P<obj>\w+)/(?P<field>\w+)/?")(app.collection)
    return app
