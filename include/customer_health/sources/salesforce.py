"""Extraction of Salesforce into the warehouse (``raw_sf_*``), incremental by ``SystemModstamp``.

For each object (User, Account, Contact, Task, Opportunity, NPS_Response__c) one SOQL query
through ``queryAll`` (so deletions arrive as ``IsDeleted`` rows; a user's role name is the parent
field ``UserRole.Name``, which Salesforce returns nested, or ``"UserRole": null``)::

    SELECT ... FROM Account
    WHERE SystemModstamp > <watermark - OVERLAP> AND SystemModstamp <= <until>
    ORDER BY SystemModstamp ASC, Id ASC

is streamed page by page (``query`` then ``query_more`` on ``nextRecordsUrl``; never
``query_all`` into memory). Each page is mapped to warehouse rows, validated - a record with a
wrong type, a bad date or no Id goes to ``quarantine`` with the reason while the rest of the page
loads - and upserted in its own transaction. ``until`` is the run's interval end, but never
later than the moment of reading minus a safety lag (``sources.window.read_bound``): a run for
"today" does not jump the watermark past changes still to come. Only after the last page of an
object is committed does its watermark move to ``until``, and only forward (an overlapping run
that read less far leaves it): a run that fails half-way re-reads the object from the old
watermark next time, and the upserts make that, the ``OVERLAP`` re-read before the watermark and
a page served twice harmless. A run whose ``until`` is not after the watermark (a backfill of an
old date) reads nothing.

Failures are told apart, because the fix differs:

* ``SalesforceRateLimited`` - 403 ``REQUEST_LIMIT_EXCEEDED``: the org's rolling 24-hour API
  request allowance is spent. Retrying in seconds cannot help; retry in an hour or more.
* ``SalesforceQueryError`` - 400 ``INVALID_FIELD`` / ``INVALID_TYPE`` / ``MALFORMED_QUERY``:
  Salesforce refused an object's query. ``INVALID_FIELD`` ("No such column 'X' on entity 'Y'")
  and ``INVALID_TYPE`` ("sObject type 'Y' is not supported") mean the field or object does not
  exist in this org *or* the integration user may not see it (field-level security, object
  permission): Salesforce answers both the same way, so the message names the field and object
  and says what to check for each. The other objects are still extracted; the error is raised
  at the end.
* ``SalesforcePermissionError`` - ``INSUFFICIENT_ACCESS`` (and the API being disabled for the
  org or user): the integration user may not do what was asked. Names the object and what to
  grant. The other objects are still extracted; the error is raised at the end.
* ``SalesforceUnavailable`` - 429/5xx or timeouts that persisted through the HTTP session's
  bounded retries (``salesforce_http_session``: Retry-After honoured, exponential backoff).
* ``SalesforceAuthenticationError`` - the login was refused (HTTP 400 ``invalid_client_id``,
  ``invalid_client``, ``invalid_grant``) or a session could not be renewed.

The authentication, query and permission errors have ``retryable = False``: retrying cannot help
until someone changes the connection or the org, so a task fails at once rather than retrying.

The custom fields the mapping reads come from ``salesforce_fields.CUSTOM_FIELDS`` (a field not
in that list cannot be mapped), so the README's list of fields to create is the extraction's. The
names queried are the org's, from the source mapping (``sources.mapping``: ``Account.arr`` may be
``AnnualRevenue`` in one org and ``ARR__c`` in another; the optional NPS object may be absent);
watermarks, reports and warehouse columns keep the product's names whatever the org calls them.

Expired sessions are renewed by the client itself when it knows how to log in again
(``HealthSalesforceHook``), and otherwise once here, by calling the connection factory again.

The Airflow side is thin: ``HealthSalesforceHook`` (the provider's hook, plus a login through a
custom OAuth token endpoint such as the sandbox or a My Domain) and
``run_salesforce_extraction`` for a task. Airflow is imported only when the hook is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession
from sqlalchemy import Engine, Integer, String, Table, delete
from urllib3.util.retry import Retry

from customer_health.settings import SALESFORCE_CONN_ID
from customer_health.sources.mapping import SourceMapping, active_mapping, default_mapping
from customer_health.sources.report import ExtractReport, ObjectReport
from customer_health.sources.salesforce_fields import CUSTOM_FIELD_INDEX, CUSTOM_OBJECTS, FIELDS_BY_KEY
from customer_health.sources.window import OVERLAP, naive_utc, read_bound
from customer_health.warehouse.io import (
    advance_time_watermark,
    get_watermark,
    quarantine_records,
    upsert_rows,
    utcnow,
)
from customer_health.warehouse.schema import (
    quarantine,
    raw_sf_account,
    raw_sf_contact,
    raw_sf_nps_response,
    raw_sf_opportunity,
    raw_sf_task,
    raw_sf_user,
)

if TYPE_CHECKING:
    from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

SOURCE = "salesforce"
DEFAULT_API_VERSION = "59.0"
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_RETRIES = 3
DEFAULT_BATCH_SIZE = 2000
MAX_RETRY_AFTER_SECONDS = 120.0
# The daily allowance is a rolling 24-hour window: an hour frees a twenty-fourth of it.
RATE_LIMIT_RETRY_SECONDS = 3600

log = logging.getLogger(__name__)
T = TypeVar("T")


# ----------------------------------------------------------------------------- errors
class SalesforceExtractionError(RuntimeError):
    """Extraction from Salesforce failed; the message says why and what to do."""


class SalesforceRateLimited(SalesforceExtractionError):
    """The org's daily API request limit is reached (``REQUEST_LIMIT_EXCEEDED``). Retryable later."""

    retry_after_seconds = RATE_LIMIT_RETRY_SECONDS


class SalesforcePermissionError(SalesforceExtractionError):
    """The integration user may not read an object or field. Not retryable until granted."""

    retryable = False

    def __init__(self, message: str, objects: list[str], report: ExtractReport | None = None) -> None:
        super().__init__(message)
        self.objects = objects
        self.report = report


class SalesforceUnavailable(SalesforceExtractionError):
    """Salesforce kept answering 429/5xx or not at all, through every retry. Retryable."""


class SalesforceAuthenticationError(SalesforceExtractionError):
    """Login failed (bad consumer key/secret or user credentials, or a session rejected again)."""

    retryable = False


class SalesforceQueryError(SalesforceExtractionError):
    """Salesforce refused a query (INVALID_FIELD, INVALID_TYPE, MALFORMED_QUERY). Not retryable.

    ``objects`` are the objects whose query was refused, ``fields`` the ``Object.Field`` names
    Salesforce said it does not know (for ``INVALID_FIELD``).
    """

    retryable = False

    def __init__(self, message: str, objects: list[str], fields: list[str], report: ExtractReport | None = None
                 ) -> None:
        super().__init__(message)
        self.objects = objects
        self.fields = fields
        self.report = report


# ----------------------------------------------------------------------------- the mapping
@dataclass(frozen=True)
class FieldMapping:
    """One Salesforce field and the warehouse column it lands in, with its expected kind."""

    sf_field: str  # the org's API name: a field, or a parent relationship path such as UserRole.Name
    column: str
    kind: str  # id | str | int | float | bool | yesno | date | datetime
    key: str | None = None  # the source mapping's key of a custom field (Account.arr)


@dataclass(frozen=True)
class ObjectMapping:
    """How one Salesforce object lands in its ``raw_sf_*`` table.

    ``name`` is the product's name for the object (its watermark and report key: the default API
    name, ``NPS_Response__c``); ``sobject`` is what this org calls it (the source mapping).
    """

    name: str
    table: Table
    fields: tuple[FieldMapping, ...]
    has_is_deleted: bool = True  # User has no IsDeleted: users are deactivated, not deleted
    sobject: str = ""

    @property
    def api_name(self) -> str:
        """The object's API name in the org (``sobject``, else ``name``)."""
        return self.sobject or self.name

    @property
    def select_fields(self) -> list[str]:
        """The fields the extraction query selects."""
        return [f.sf_field for f in self.fields] + ["SystemModstamp"] + (["IsDeleted"] if self.has_is_deleted else [])

    def soql(self, since: str | None, until: str) -> str:
        """The incremental query for the interval (since, until]."""
        where = f"SystemModstamp <= {until}"
        if since is not None:
            where = f"SystemModstamp > {since} AND {where}"
        return (
            f"SELECT {', '.join(self.select_fields)} FROM {self.api_name} "
            f"WHERE {where} ORDER BY SystemModstamp ASC, Id ASC"
        )

    def field_key(self, api_field: str) -> str | None:
        """The mapping key of the custom field this org calls ``api_field`` (None for a standard one)."""
        return next((f.key for f in self.fields if f.sf_field.lower() == api_field.lower()), None)


def _fields(*specs: tuple[str, str, str] | FieldMapping) -> tuple[FieldMapping, ...]:
    return tuple(spec if isinstance(spec, FieldMapping) else FieldMapping(*spec) for spec in specs)


_CUSTOM_KINDS = {"boolean": "bool", "date": "date", "datetime": "datetime", "currency": "float",
                 "reference": "id", "string": "str", "textarea": "str", "picklist": "str"}


def _custom(table: Table, key: str, column: str, mapping: SourceMapping) -> FieldMapping:
    """The mapping of custom field ``key`` (``Account.arr``): the org's name from ``mapping``, the
    kind from ``salesforce_fields`` (KeyError if unlisted)."""
    f = FIELDS_BY_KEY[key]
    if not f.read:
        raise ValueError(f"{key} is listed as written only; the extraction cannot read it")
    if f.picklist == ("Yes", "No"):
        kind = "yesno"
    elif f.type == "double":  # a Number: whole when the warehouse keeps a whole number
        kind = "int" if isinstance(table.c[column].type, Integer) else "float"
    else:
        kind = _CUSTOM_KINDS[f.type]
    return FieldMapping(mapping.salesforce_fields[key] or f.name, column, kind, key)


def object_mappings(mapping: SourceMapping | None = None) -> dict[str, ObjectMapping]:
    """Every object the extraction reads, named as ``mapping`` (default: the active one) says.

    An optional object the org does not have (mapped to null) is left out.
    """
    m = mapping or active_mapping()
    nps = m.salesforce_objects.get("NPS_Response")
    out = (
        # The role's name is a field of UserRole, reached through the user's UserRoleId.
        ObjectMapping("User", raw_sf_user, _fields(
            ("Id", "id", "id"), ("Name", "name", "str"), ("Email", "email", "str"),
            ("Title", "title", "str"), ("UserRole.Name", "role", "str"), ("IsActive", "is_active", "bool"),
            # The role hierarchy: the user's role and the role above it (a CSM's manager's role).
            ("UserRoleId", "role_id", "id"), ("UserRole.ParentRoleId", "parent_role_id", "id"),
        ), has_is_deleted=False),
        ObjectMapping("Account", raw_sf_account, _fields(
            ("Id", "id", "id"), ("Name", "name", "str"), ("ParentId", "parent_id", "id"),
            ("OwnerId", "owner_id", "id"), ("Industry", "industry", "str"),
            _custom(raw_sf_account, "Account.plan", "plan", m),
            _custom(raw_sf_account, "Account.seats", "seats", m),
            _custom(raw_sf_account, "Account.arr", "arr", m),
            _custom(raw_sf_account, "Account.customer_since", "customer_since", m),
            _custom(raw_sf_account, "Account.product_account_id", "product_account_id", m),
            _custom(raw_sf_account, "Account.executive_sponsor_user", "executive_sponsor_user_id", m),
            ("CreatedDate", "created_at", "datetime"),
        )),
        ObjectMapping("Contact", raw_sf_contact, _fields(
            ("Id", "id", "id"), ("AccountId", "account_id", "id"), ("FirstName", "first_name", "str"),
            ("LastName", "last_name", "str"), ("Email", "email", "str"), ("Title", "title", "str"),
            _custom(raw_sf_contact, "Contact.executive_sponsor", "is_executive_sponsor", m),
            ("CreatedDate", "created_at", "datetime"),
        )),
        ObjectMapping("Task", raw_sf_task, _fields(
            ("Id", "id", "id"), ("AccountId", "account_id", "id"), ("WhoId", "who_id", "id"),
            ("OwnerId", "owner_id", "id"), ("Subject", "subject", "str"), ("Type", "task_type", "str"),
            ("Status", "status", "str"), ("ActivityDate", "activity_date", "date"),
            _custom(raw_sf_task, "Task.executive_touch", "is_executive_touch", m),
            _custom(raw_sf_task, "Task.outreach_responded", "outreach_responded", m),
            _custom(raw_sf_task, "Task.health_action_key", "health_action_key", m),
            ("CreatedDate", "created_at", "datetime"),
        )),
        ObjectMapping("Opportunity", raw_sf_opportunity, _fields(
            ("Id", "id", "id"), ("AccountId", "account_id", "id"), ("Name", "name", "str"),
            ("Type", "opportunity_type", "str"), ("StageName", "stage", "str"), ("Amount", "amount", "float"),
            ("CloseDate", "close_date", "date"), ("IsClosed", "is_closed", "bool"), ("IsWon", "is_won", "bool"),
            ("CreatedDate", "created_at", "datetime"),
        )),
        ObjectMapping("NPS_Response__c", raw_sf_nps_response, _fields(
            ("Id", "id", "id"),
            _custom(raw_sf_nps_response, "NPS_Response.account", "account_id", m),
            _custom(raw_sf_nps_response, "NPS_Response.contact", "contact_id", m),
            _custom(raw_sf_nps_response, "NPS_Response.score", "score", m),
            _custom(raw_sf_nps_response, "NPS_Response.comment", "comment", m),
            _custom(raw_sf_nps_response, "NPS_Response.responded_at", "responded_at", m),
        ), sobject=nps or "NPS_Response__c"),
    )
    return {o.name: o for o in out if o.name != "NPS_Response__c" or nps is not None}


# The objects as the defaults name them (what the sandbox's org and the contract test use).
OBJECT_MAPPINGS: dict[str, ObjectMapping] = object_mappings(default_mapping())
DEFAULT_OBJECTS: tuple[str, ...] = tuple(OBJECT_MAPPINGS)


# ----------------------------------------------------------------------------- values
class RecordInvalid(ValueError):
    """A record that cannot land in the warehouse as is; the message is the quarantine reason."""


_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_INT_RANGE = (-(2**31), 2**31 - 1)


def case_safe_id(value: str) -> str:
    """The 18-character form of a Salesforce Id (15-character Ids get their checksum suffix)."""
    if len(value) == 18:
        return value
    suffix = ""
    for chunk in (value[0:5], value[5:10], value[10:15]):
        suffix += _CHECKSUM_ALPHABET[sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")]
    return value + suffix


def parse_sf_datetime(value: str) -> datetime:
    """A REST datetime (``2026-01-01T00:00:00.000+0000``, ``...Z``) as naive UTC."""
    text = value.strip().replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = f"{text[:-2]}:{text[-2:]}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed.astimezone(UTC).replace(tzinfo=None)


def soql_datetime(value: datetime) -> str:
    """``value`` as a SOQL datetime literal in UTC (milliseconds only when there are any)."""
    value = naive_utc(value)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond // 1000:03d}"
    return text + "Z"


def _convert(mapping: ObjectMapping, field: FieldMapping, value: Any) -> Any:
    if value is None:
        if field.sf_field == "Id":
            raise RecordInvalid("missing Id")
        return None

    def wrong(expected: str) -> RecordInvalid:
        return RecordInvalid(f"{field.sf_field}: expected {expected}, got {value!r}")

    kind = field.kind
    if kind == "id":
        if not isinstance(value, str) or not _ID.fullmatch(value):
            raise wrong("a 15- or 18-character Salesforce Id")
        return case_safe_id(value)
    if kind == "str":
        if not isinstance(value, str):
            raise wrong("text")
        column_type = mapping.table.c[field.column].type
        length = getattr(column_type, "length", None) if isinstance(column_type, String) else None
        if length and len(value) > length:
            raise RecordInvalid(f"{field.sf_field}: {len(value)} characters, the warehouse column "
                                f"{mapping.table.name}.{field.column} holds {length}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
            raise wrong("a whole number")
        if isinstance(mapping.table.c[field.column].type, Integer) and not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            raise wrong("a number within the 32-bit integer range")
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong("a number")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if kind == "yesno":  # a Yes/No picklist; blank (null) means "does not apply"
        if value not in ("Yes", "No"):
            raise wrong("Yes, No or blank (a Picklist: see the README's Salesforce fields)")
        return value == "Yes"
    if kind == "date":
        try:
            return date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else _raise()
        except ValueError:
            raise wrong("a date like 2026-01-31") from None
    if kind == "datetime":
        try:
            return parse_sf_datetime(value) if isinstance(value, str) else _raise()
        except ValueError:
            raise wrong("a datetime like 2026-01-31T09:30:00.000+0000") from None
    raise AssertionError(f"unknown field kind {kind!r} for {mapping.name}.{field.sf_field}")


def _raise() -> Any:
    raise ValueError


def field_value(record: Mapping[str, Any], path: str) -> Any:
    """The value of ``path`` in a REST record: a field, or a parent relationship path.

    Salesforce returns ``UserRole.Name`` nested - ``{"UserRole": {"attributes": {...}, "Name":
    "VP Customer Success"}}`` - and the parent as ``null`` when the reference is empty (the
    field is then null). A parent that is neither a record nor null is ``RecordInvalid``.
    """
    *relationships, name = path.split(".")
    current: Any = record
    walked: list[str] = []
    for rel in relationships:
        walked.append(rel)
        current = current.get(rel)
        if current is None:
            return None
        if not isinstance(current, Mapping):
            raise RecordInvalid(f"{'.'.join(walked)}: expected a related record or null, got {current!r}")
    return current.get(name)


def record_to_row(mapping: ObjectMapping, record: Mapping[str, Any], extracted_at: datetime) -> dict[str, Any]:
    """One Salesforce record as a ``raw_sf_*`` row; ``RecordInvalid`` says what is wrong."""
    row: dict[str, Any] = {}
    problems: list[str] = []
    for field in mapping.fields:
        try:
            row[field.column] = _convert(mapping, field, field_value(record, field.sf_field))
        except RecordInvalid as exc:
            problems.append(str(exc))
    modstamp = record.get("SystemModstamp")
    try:
        row["source_updated_at"] = parse_sf_datetime(modstamp) if isinstance(modstamp, str) else _raise()
    except ValueError:
        problems.append(f"SystemModstamp: expected a datetime like 2026-01-31T09:30:00.000+0000, got {modstamp!r}")
    deleted = record.get("IsDeleted", False)
    if not isinstance(deleted, bool):
        problems.append(f"IsDeleted: expected true or false, got {deleted!r}")
    if problems:
        raise RecordInvalid("; ".join(problems))
    row["is_deleted"] = deleted
    row["extracted_at"] = extracted_at
    return row


def _quarantine_key(record: Mapping[str, Any]) -> str:
    record_id = record.get("Id")
    if isinstance(record_id, str) and record_id:
        return record_id
    digest = hashlib.sha1(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"no-id:{digest}"


# ----------------------------------------------------------------------------- HTTP session
class _BoundedRetry(Retry):
    """urllib3's Retry, but a Retry-After longer than ``MAX_RETRY_AFTER_SECONDS`` is capped."""

    def get_retry_after(self, response: Any) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, MAX_RETRY_AFTER_SECONDS)


class _TimeoutSession(requests.Session):
    """A session whose requests time out after ``default_timeout`` unless told otherwise."""

    def __init__(self, default_timeout: float) -> None:
        super().__init__()
        self.default_timeout = default_timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.default_timeout)
        if isinstance(self.verify, str):
            # requests lets REQUESTS_CA_BUNDLE override a session's CA bundle; the one this
            # session was given (the sandbox's certificate, a corporate CA) must win.
            kwargs.setdefault("verify", self.verify)
        return super().request(method, url, *args, **kwargs)


def _retry_policy(retries: int, backoff: float, methods: frozenset[str] | None) -> Retry:
    return _BoundedRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff,
        status_forcelist=(429, 502, 503, 504),
        allowed_methods=methods,
        respect_retry_after_header=True,
        raise_on_status=False,  # the last 429/503 reaches the client, which raises its own error
    )


_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})


def salesforce_http_session(
    ca_cert: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    retries: int = DEFAULT_RETRIES,
    backoff: float = 0.5,
    token_url: str | None = None,
) -> requests.Session:
    """The requests session Salesforce clients should use: timeouts and bounded retries.

    Every request times out after ``timeout`` seconds. Idempotent requests (GET, and PATCH -
    updates and upserts by external id) are retried up to ``retries`` times on 429, 502, 503
    and 504, on connection errors and read timeouts, with exponential backoff, honouring
    Retry-After (capped at ``MAX_RETRY_AFTER_SECONDS``). POST (creates) is never replayed,
    except to ``token_url``: asking for a token twice does no harm. ``ca_cert`` is a CA bundle
    to trust instead of the system's (the sandbox's certificate).
    """
    session = _TimeoutSession(timeout)
    adapter = HTTPAdapter(max_retries=_retry_policy(retries, backoff, _IDEMPOTENT_METHODS))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    if token_url:  # requests picks the longest matching prefix
        session.mount(token_url, HTTPAdapter(max_retries=_retry_policy(retries, backoff, None)))
    if ca_cert:
        session.verify = ca_cert
    return session


# ----------------------------------------------------------------------------- calling Salesforce
def _error_codes(exc: SalesforceError) -> list[str]:
    content = exc.content
    if isinstance(content, list):
        return [str(e.get("errorCode", "")) for e in content if isinstance(e, dict)]
    return []


def _error_message(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        message = str(content[0].get("message", ""))
        # A query error starts with the query, a caret line and "ERROR at Row:1:Column:N":
        # the explanation is what follows.
        message = re.sub(r"(?s)^.*ERROR at Row:\d+:Column:\d+\s*", "", message)
        return " ".join(message.split())
    return str(content)[:300]


_PERMISSION_CODES = {"INSUFFICIENT_ACCESS", "INSUFFICIENT_ACCESS_OR_READONLY", "API_DISABLED_FOR_ORG",
                     "API_CURRENTLY_DISABLED"}
# The query was refused as written: an unknown (or invisible) field or object, or bad syntax.
_QUERY_CODES = {"INVALID_FIELD", "INVALID_TYPE", "MALFORMED_QUERY", "INVALID_QUERY_FILTER_OPERATOR"}
_NO_SUCH_COLUMN = re.compile(r"No such column '(?P<field>[^']+)' on entity '(?P<entity>[^']+)'")
_NO_SUCH_RELATIONSHIP = re.compile(r"Didn't understand relationship '(?P<field>[^']+)'")


class _ObjectDenied(Exception):
    """Internal: one object could not be read (its query refused, or access denied); the others continue.

    ``obj`` is the org's name of the object; ``mapping`` (set by the extraction) how the product
    maps it, and ``source`` the source mapping's file(s), for the advice.
    """

    def __init__(self, obj: str, code: str, message: str) -> None:
        super().__init__(message)
        self.obj, self.code, self.message = obj, code, message
        self.mapping: ObjectMapping | None = None
        self.source: str | None = None

    @property
    def name(self) -> str:
        """The product's name of the object (its default API name)."""
        return self.mapping.name if self.mapping is not None else self.obj

    @property
    def is_query_error(self) -> bool:
        return self.code in _QUERY_CODES

    @property
    def field(self) -> str | None:
        """``Entity.Field`` Salesforce named as unknown (INVALID_FIELD), if it did."""
        m = _NO_SUCH_COLUMN.search(self.message)
        if m:
            return f"{m['entity']}.{m['field']}"
        m = _NO_SUCH_RELATIONSHIP.search(self.message)
        return f"{self.obj}.{m['field']}" if m else None


class SalesforceSession:
    """A Salesforce client plus the one-time re-login and the translation of its errors."""

    def __init__(self, sf: Salesforce | Callable[[], Salesforce], logger: logging.Logger) -> None:
        if isinstance(sf, Salesforce):
            self.sf, self._factory = sf, None
        else:
            self._factory = sf
            self.sf = sf()
        self.log = logger

    def call(self, obj: str, what: str, fn: Callable[[Salesforce], T]) -> T:
        """``fn(client)``; re-login once on an expired session; errors become clear ones."""
        try:
            try:
                return fn(self.sf)
            except SalesforceExpiredSession:
                if self._factory is None:
                    raise
                self.log.info("Salesforce session expired during %s of %s; logging in again", what, obj)
                self.sf = self._factory()
                return fn(self.sf)
        except SalesforceExpiredSession as exc:
            raise SalesforceAuthenticationError(
                f"Salesforce rejected the session during {what} of {obj} ({_error_message(exc)}) and it "
                "could not be renewed; check the connection's consumer key/secret or user credentials"
            ) from exc
        except SalesforceError as exc:
            raise self._translate(exc, obj, what) from exc
        except requests.Timeout as exc:
            raise SalesforceUnavailable(
                f"Salesforce did not answer {what} of {obj} in time, after the session's retries: {exc}. "
                "Retry later, or raise the connection's 'timeout' extra if the org is just slow."
            ) from exc
        except requests.ConnectionError as exc:
            raise SalesforceUnavailable(
                f"Salesforce could not be reached for {what} of {obj} (timeouts or refused connections "
                f"after the session's retries): {exc}. Retry later; check the instance URL if it persists."
            ) from exc

    @staticmethod
    def _translate(exc: SalesforceError, obj: str, what: str) -> Exception:
        codes = _error_codes(exc)
        message = _error_message(exc)
        if exc.status == 403 and "REQUEST_LIMIT_EXCEEDED" in codes:
            return SalesforceRateLimited(
                f"Salesforce's daily API request limit is reached (REQUEST_LIMIT_EXCEEDED: {message}) during "
                f"{what} of {obj}. The limit is a rolling 24-hour window: retry in an hour or more "
                f"(check limits/ DailyApiRequests.Remaining) or ask the Salesforce admin to raise it. "
                "Watermarks were not advanced past committed data, so the retry resumes cleanly."
            )
        refused = next((c for c in codes if c in _PERMISSION_CODES | _QUERY_CODES), None)
        if refused:
            return _ObjectDenied(obj, refused, message)
        if exc.status == 429 or exc.status >= 500:
            return SalesforceUnavailable(
                f"Salesforce answered HTTP {exc.status} to {what} of {obj} through every retry "
                f"({message}). It is overloaded or down; retry later."
            )
        return exc


_README_FIELDS = "the README's \"Salesforce fields the product needs\""


def _field_advice(field: str, key: str | None = None, source: str | None = None) -> str:
    """Why ``Object.Field`` is refused and what to do; ``key``: its mapping key, when it is a mapped one."""
    entity, _, name = field.partition(".")
    listed = key is not None or (entity, name) in CUSTOM_FIELD_INDEX
    exists = (f"create the custom field {field} as listed in {_README_FIELDS}" if listed
              else f"check that {field} exists in this org (Setup > Object Manager > {entity} > Fields & "
                   "Relationships) under that API name")
    if key is not None:
        exists += (f", or - if the org has it under another API name - map it: `salesforce.fields.{key}: "
                   f"<that name>` in the source mapping ({source or 'config/sources.yaml'})")
    roles = (" (roles are visible only with the View Roles and Role Hierarchy permission)"
             if entity == "UserRole" else "")
    return (f"either the field {field} does not exist in this org - {exists} - or the integration user lacks "
            f"field-level access to it - give its profile or permission set Read access to {field} (Setup > "
            f"Object Manager > {entity} > Fields & Relationships > {name} > Set Field-Level Security){roles}. "
            "Salesforce answers both the same way")


def _refusal_advice(d: _ObjectDenied) -> str:
    """What one refused object means and what to check, in a sentence."""
    head = f"{d.obj}: {d.code} ({d.message})"
    custom = next((o for o in CUSTOM_OBJECTS if o.name == d.name), None)
    optional = (f"; or leave it out of `objects`, or map `salesforce.objects.{custom.key}: null` in the source "
                f"mapping ({d.source}) (it is optional)" if custom is not None and not custom.required else "")
    if d.code == "INVALID_FIELD":
        field = d.field
        if field is None:
            return f"{head}: a field of the query is unknown or not visible; {_field_advice(d.obj + '.?')}"
        key = d.mapping.field_key(field.partition(".")[2]) if d.mapping is not None else None
        return f"{head}: {_field_advice(field, key, d.source)}"
    if d.code == "INVALID_TYPE":
        create = (f"create the custom object {d.obj} as listed in {_README_FIELDS}" if d.obj.endswith("__c")
                  else f"check that the org has {d.obj}")
        if custom is not None:
            create += (f", or map `salesforce.objects.{custom.key}` to its API name in the source mapping "
                       f"({d.source})")
        return (f"{head}: either the object {d.obj} does not exist in this org - {create} - or the integration "
                f"user has no Read access to it - grant Read on {d.obj} in its profile or permission set{optional}")
    if d.code in _QUERY_CODES:
        return (f"{head}: Salesforce could not run the extraction's query for {d.obj}; this is a fault in the "
                "product's query, report it with this message")
    return (f"{head}: grant Read access on the {d.obj} object (profile or permission set of the integration "
            f"user), or leave {d.obj} out of `objects`")


# ----------------------------------------------------------------------------- the extraction
def extract_salesforce(
    sf: Salesforce | Callable[[], Salesforce],
    engine: Engine,
    until: datetime,
    objects: Iterable[str] | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    log: logging.Logger = log,
    read_started: datetime | None = None,
    mapping: SourceMapping | None = None,
) -> ExtractReport:
    """Extract Salesforce changes up to ``until`` (inclusive) into the ``raw_sf_*`` tables.

    The bound is ``read_bound(until, read_started)``: never past the moment of reading (default
    now) minus the safety lag.

    ``sf`` is a simple-salesforce client, or a callable returning a freshly logged-in one
    (called again once when the session expires). ``objects`` defaults to every mapped
    object; an optional object the source ``mapping`` (default: the active one) maps to null is
    not read (the report's ``skipped`` says so). Fields and objects are queried by the names the
    mapping gives. ``batch_size`` is the page size asked for (``Sforce-Query-Options``). Returns
    the per-object counts and watermarks; see the module docstring for the errors.
    """
    source_mapping = mapping or active_mapping()
    mapped = object_mappings(source_mapping) if source_mapping.changed_from_defaults() else dict(OBJECT_MAPPINGS)
    names = list(objects) if objects is not None else list(DEFAULT_OBJECTS)
    unknown = [n for n in names if n not in OBJECT_MAPPINGS]
    if unknown:
        raise ValueError(f"unknown Salesforce object(s) {unknown}; the extraction maps {list(OBJECT_MAPPINGS)}")
    report = ExtractReport(SOURCE)
    for name in [n for n in names if n not in mapped]:
        report.skipped[name] = f"not in this org (null in the source mapping, {source_mapping.source})"
        log.info("Salesforce %s: not read, %s", name, report.skipped[name])
    names = [n for n in names if n in mapped]
    session = SalesforceSession(sf, log)
    denied: list[_ObjectDenied] = []
    bound = read_bound(until, read_started)
    for name in names:
        try:
            _extract_object(session, engine, mapped[name], bound, batch_size, report.object(name), log)
        except _ObjectDenied as exc:
            log.warning("Salesforce %s skipped: %s %s", name, exc.code, exc.message)
            exc.mapping, exc.source = mapped[name], source_mapping.source
            denied.append(exc)
    queries = [d for d in denied if d.is_query_error]
    if queries:
        fields = [d.field for d in queries if d.field]
        raise SalesforceQueryError(
            f"Salesforce refused the extraction's query for {len(queries)} object(s) "
            f"({', '.join(d.obj for d in queries)}). " + ". ".join(_refusal_advice(d) for d in denied)
            + ". The other objects were extracted; their watermarks moved, these objects' did not.",
            [d.obj for d in denied],
            fields,
            report,
        )
    if denied:
        raise SalesforcePermissionError(
            f"the Salesforce integration user cannot read {len(denied)} object(s): "
            + ". ".join(_refusal_advice(d) for d in denied) + ". The other objects were extracted.",
            [d.obj for d in denied],
            report,
        )
    return report


def _extract_object(
    session: SalesforceSession,
    engine: Engine,
    mapping: ObjectMapping,
    until: datetime,
    batch_size: int,
    report: ObjectReport,
    log: logging.Logger,
) -> None:
    with engine.connect() as conn:
        watermark = get_watermark(conn, SOURCE, mapping.name)
    report.watermark_before = report.watermark_after = watermark
    if watermark is not None and naive_utc(datetime.fromisoformat(watermark)) >= until:
        log.info("Salesforce %s: watermark %s is not before %s; nothing to read", mapping.name, watermark, until)
        return
    until_literal = soql_datetime(until)
    # Re-read OVERLAP before the watermark: a record committed late with an earlier
    # SystemModstamp than ones already read is still picked up (the upsert by Id dedupes).
    since = None if watermark is None else soql_datetime(naive_utc(datetime.fromisoformat(watermark)) - OVERLAP)
    soql = mapping.soql(since, until_literal)
    headers = {"Sforce-Query-Options": f"batchSize={batch_size}"}
    log.info("Salesforce %s: reading changes after %s up to %s", mapping.name, since or "the beginning",
             until_literal)
    page = session.call(mapping.api_name, "the query", lambda sf: sf.query(soql, include_deleted=True, headers=headers))
    previous_ids: set[str] = set()
    times_served: dict[str, int] = {}
    while True:
        report.pages += 1
        previous_ids = _load_page(engine, mapping, page.get("records", []), report, previous_ids)
        if page.get("done", True):
            break
        next_url = page["nextRecordsUrl"]
        times_served[next_url] = times_served.get(next_url, 0) + 1
        if times_served[next_url] > 3:
            raise SalesforceExtractionError(
                f"Salesforce served {next_url} for {mapping.name} more than 3 times; the query cursor is "
                "not advancing. Re-run later; the watermark was not moved."
            )
        page = session.call(
            mapping.api_name, "paging",
            lambda sf, url=next_url: sf.query_more(url, identifier_is_url=True, headers=headers),
        )
    with engine.begin() as conn:
        report.watermark_after = advance_time_watermark(conn, SOURCE, mapping.name, until_literal, until, report.rows)
    log.info("Salesforce %s: %d rows (%d deleted), %d quarantined, %d pages; watermark now %s",
             mapping.name, report.rows, report.deleted, report.quarantined, report.pages, report.watermark_after)


def _load_page(
    engine: Engine,
    mapping: ObjectMapping,
    records: list[dict[str, Any]],
    report: ObjectReport,
    previous_ids: set[str],
) -> set[str]:
    """Validate and upsert one page in one transaction; returns the Ids it held.

    A record whose Id was on the previous page is a page served twice: written again (the
    upsert is idempotent) but not counted again.
    """
    extracted_at = utcnow()
    rows: dict[str, dict[str, Any]] = {}
    bad: list[tuple[str, str, Any]] = []
    for record in records:
        payload = {k: v for k, v in record.items() if k != "attributes"}
        try:
            row = record_to_row(mapping, payload, extracted_at)
        except RecordInvalid as exc:
            bad.append((_quarantine_key(payload), str(exc), payload))
            continue
        rows[row["id"]] = row
    with engine.begin() as conn:
        upsert_rows(conn, mapping.table, list(rows.values()))
        if bad:
            quarantine_records(conn, SOURCE, mapping.name, bad)
        if rows:  # a record that loads cleanly now is no longer in quarantine
            conn.execute(delete(quarantine).where(
                quarantine.c.source == SOURCE,
                quarantine.c.object == mapping.name,
                quarantine.c.record_id.in_(list(rows)),
            ))
    fresh = [r for i, r in rows.items() if i not in previous_ids]
    report.rows += len(fresh)
    report.deleted += sum(1 for r in fresh if r["is_deleted"])
    report.quarantined += sum(1 for key, _, _ in bad if key not in previous_ids)
    return set(rows) | {key for key, _, _ in bad}


# ----------------------------------------------------------------------------- Airflow
@lru_cache(maxsize=1)
def _hook_class() -> type[SalesforceHook]:
    """Build ``HealthSalesforceHook`` on first use, so importing this module needs no Airflow."""
    from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

    class HealthSalesforceHook(SalesforceHook):
        """The provider's Salesforce hook, plus login through a custom OAuth token endpoint.

        The provider's login flows only reach ``*.salesforce.com``. When the connection's extra
        has ``token_url`` (the sandbox, or a My Domain ``https://<domain>.my.salesforce.com/
        services/oauth2/token``), this hook logs in there itself: the password grant when the
        connection has a login and password, else client credentials, with the extras
        ``consumer_key``/``consumer_secret``. The token response's ``instance_url`` becomes
        the API host. Other extras: ``ca_cert`` (CA bundle to trust), ``version`` (API version,
        default 59.0), ``timeout`` (seconds per request, default 30). Without ``token_url`` the
        provider's own login is used, on the same retrying session. The client renews an expired
        session by logging in again. Secrets are never logged.
        """

        def __init__(
            self,
            salesforce_conn_id: str = SALESFORCE_CONN_ID,
            *,
            timeout: float | None = None,
            retries: int = DEFAULT_RETRIES,
        ) -> None:
            super().__init__(salesforce_conn_id=salesforce_conn_id)
            self.timeout = timeout
            self.retries = retries
            self._client: Salesforce | None = None

        def get_conn(self) -> Salesforce:
            """The logged-in client (cached; ``connect()`` for a new login)."""
            if self._client is None:
                self._client = self.connect()
            return self._client

        def connect(self) -> Salesforce:
            """Log in afresh and return a new simple-salesforce client."""
            connection = self.get_connection(self.conn_id)
            extras = connection.extra_dejson
            timeout = float(self.timeout or self._get_field(extras, "timeout") or DEFAULT_TIMEOUT_SECONDS)
            token_url = self._get_field(extras, "token_url")
            http = salesforce_http_session(self._get_field(extras, "ca_cert"), timeout, self.retries,
                                           token_url=token_url)
            if not token_url:
                self.session = http
                self.__dict__.pop("conn", None)  # the provider caches its client in `conn`
                self._client = self.conn
                return self._client

            def login() -> tuple[str, str]:
                return self._token_login(token_url, connection, extras, http)

            session_id, instance_url = login()
            client = Salesforce(
                instance_url=instance_url,
                session_id=session_id,
                session=http,
                version=self._get_field(extras, "version") or DEFAULT_API_VERSION,
            )
            # simple-salesforce renews a session on 401 INVALID_SESSION_ID by calling this
            # (its own login flows set it; a direct session leaves it empty).
            client._salesforce_login_partial = lambda: _instance_pair(login())
            self._client = client
            return client

        def _token_login(self, token_url: str, connection: Any, extras: dict, http: requests.Session) -> tuple[str, str]:
            client_id = self._get_field(extras, "consumer_key") or self._get_field(extras, "client_id")
            client_secret = self._get_field(extras, "consumer_secret")
            form = {"client_id": client_id or "", "client_secret": client_secret or ""}
            if connection.login and connection.password:
                grant = "password"
                form |= {"username": connection.login,
                         "password": connection.password + (self._get_field(extras, "security_token") or "")}
            else:
                grant = "client_credentials"
            form["grant_type"] = grant
            self.log.info("Logging in to Salesforce at %s (%s grant, connection %s)", token_url, grant, self.conn_id)
            try:
                resp = http.post(token_url, data=form)
            except requests.RequestException as exc:
                raise SalesforceUnavailable(f"the Salesforce token endpoint {token_url} (connection "
                                            f"{self.conn_id}) could not be reached: {exc}") from exc
            try:
                body = resp.json()
            except ValueError:
                body = {}
            if resp.status_code != 200 or "access_token" not in body:
                error = str(body.get("error", ""))
                hint = _LOGIN_HINTS.get(error, "Check the extras consumer_key/consumer_secret"
                                        + (" and the login/password (+ security_token)" if grant == "password"
                                           else ""))
                raise SalesforceAuthenticationError(
                    f"Salesforce login at {token_url} failed for connection {self.conn_id} ({grant} grant): "
                    f"HTTP {resp.status_code} {error} {body.get('error_description', '')}. {hint}. "
                    "Retrying cannot help until the connection is corrected."
                )
            self.log.info("Salesforce login succeeded; instance %s", body.get("instance_url"))
            return body["access_token"], body["instance_url"]

    HealthSalesforceHook.__qualname__ = "HealthSalesforceHook"
    return HealthSalesforceHook


# Salesforce's OAuth errors (token endpoint, HTTP 400) and what to correct for each.
_LOGIN_HINTS = {
    "invalid_client_id": "The consumer key is unknown to this org: check the extra consumer_key (the connected "
                         "app's Consumer Key) and that token_url/the domain is this org's",
    "invalid_client": "The consumer secret does not match the consumer key: check the extra consumer_secret "
                      "(the connected app's Consumer Secret)",
    "invalid_grant": "The user could not log in: check the connection's login and password (+ the extra "
                     "security_token), that the user is active and not locked out, and - for the client "
                     "credentials grant - that the connected app has a run-as user",
    "unsupported_grant_type": "The connected app does not allow this grant type: enable it in the app's OAuth "
                              "policies",
}


def _instance_pair(login: tuple[str, str]) -> tuple[str, str]:
    """(session id, instance URL) as simple-salesforce's refresh wants it: (id, host[:port])."""
    session_id, instance_url = login
    parts = urlsplit(instance_url)
    host = parts.hostname or instance_url
    return session_id, host if parts.port in (None, 443) else f"{host}:{parts.port}"


def __getattr__(name: str) -> Any:
    if name == "HealthSalesforceHook":
        return _hook_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_salesforce_extraction(conn_id: str, engine: Engine, until: datetime) -> dict[str, Any]:
    """Extract Salesforce up to ``until`` through connection ``conn_id`` (names from the active
    source mapping); counts for XCom."""
    hook = _hook_class()(conn_id)
    report = extract_salesforce(hook.connect, engine, until, log=hook.log)
    return report.as_dict()
