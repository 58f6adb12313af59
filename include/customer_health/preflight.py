"""Preflight: is every connection there, working, and holding what the product needs?

``python -m customer_health.preflight`` (and the first task of the daily and refresh DAGs) checks,
with the real clients and without writing anything or sending any message:

* the **source mapping** (``sources.mapping``): valid, which names differ from the defaults, and
  that its ``identity.anchor`` (whose records are the accounts) is connected;
* the **warehouse**: reachable, and its migration revision against the code's;
* **Salesforce**: the login, then ``sobjects/<Object>/describe`` of every object the product reads
  or writes (``salesforce_fields.OBJECT_ACCESS``): the object's permissions (Read; Create and
  Edit where the product writes), and every field the extraction selects or a write sends -
  present (a field without field-level Read access is absent from ``describe``, exactly like a
  field that was never created), of a fitting type, ``updateable``/``createable`` where written,
  an External ID where the product upserts by it, long enough for what is written into it, and
  the picklist values the product reads;
* **Zendesk**: ``users/me`` - the credentials, and that the user is an admin (the incremental
  ticket export and the satisfaction ratings are admin-only);
* **Stripe**: one ``limit=1`` list call per object the extraction reads: the key, and a restricted
  key's permission for each;
* the **product database**: reachable; every mapped table and column exists (SQLAlchemy
  ``inspect``); the login and feature event names occur in its latest week of events (a warning
  otherwise: a misspelt event name counts nothing);
* the **action targets** the action rules deliver to (Slack, e-mail, ...): configured.

Every check prints one line: its status, what was checked, what was found and - for a problem -
the exact fix. Statuses: ``ok``; ``MISSING`` (something required is absent: a field, an object, a
permission, a table) and ``FAIL`` (a connection refused, unreachable, or a source mapping that
does not load) make the exit code 1 and the DAG task fail without retries; ``warn`` is worth a
look and blocks nothing; ``--`` is an optional system that is not connected.

**Optional sources.** Salesforce, Zendesk, Stripe and the product database are each optional: a
source without an Airflow connection is *not connected* - reported as such, its extraction
skipped, its signals absent (NULL, their weight moved to the present ones) - rather than failing
or looking connected and empty. At least one source must be connected. Without Salesforce, CRM
writeback and Salesforce-task actions are not attempted ("no CRM connected"). A connection that
*is* defined must work: a wrong password is a failure, never "not connected".
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from customer_health import settings
from customer_health.wording import count

log = logging.getLogger(__name__)

OK, MISSING, FAIL, WARN, NOT_CONNECTED = "ok", "MISSING", "FAIL", "warn", "--"
BLOCKING = (MISSING, FAIL)

SOURCE_CONNECTIONS: dict[str, str] = {
    "salesforce": settings.SALESFORCE_CONN_ID,
    "zendesk": settings.ZENDESK_CONN_ID,
    "stripe": settings.STRIPE_CONN_ID,
    "product_db": settings.PRODUCT_DB_CONN_ID,
}
# What the product does without each source (the "not connected (optional)" line says it).
WITHOUT = {
    "salesforce": "no CRM connected: accounts, contacts, activities and NPS are not read, the health score is not "
                  "written back and Salesforce-task actions are not attempted",
    "zendesk": "the support signals (tickets, resolution times, CSAT) are absent",
    "stripe": "the financial signals (invoices, payments, disputes, contract value) are absent",
    "product_db": "the engagement signals (logins, active users, feature adoption) are absent",
}
STRIPE_OBJECTS = ("customers", "subscriptions", "invoices", "disputes", "prices")
_TYPE_FAMILIES = (
    {"double", "currency", "int", "percent", "long"},
    {"string", "textarea", "picklist", "email", "phone", "url", "combobox", "encryptedstring"},
    {"reference", "id"},
    {"date"},
    {"datetime"},
    {"boolean"},
)


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Check:
    """One thing checked: its status, what was found and, for a problem, the exact fix."""

    system: str
    subject: str
    status: str
    detail: str
    fix: str = ""

    @property
    def blocking(self) -> bool:
        """A required item missing, or a connection that does not work."""
        return self.status in BLOCKING

    def line(self) -> str:
        """The check as one line of output."""
        text = f"{self.status:<8} {self.system:<11} {self.subject}: {self.detail}"
        return text + (f" -> {self.fix}" if self.fix else "")


@dataclass
class PreflightReport:
    """Every check of one preflight, in order."""

    checks: list[Check] = field(default_factory=list)
    connected: dict[str, bool] = field(default_factory=dict)

    def add(self, system: str, subject: str, status: str, detail: str, fix: str = "") -> Check:
        check = Check(system, subject, status, detail, fix)
        self.checks.append(check)
        (log.warning if check.status != OK else log.info)("preflight: %s", check.line())
        return check

    @property
    def problems(self) -> list[Check]:
        """The checks that block a run."""
        return [c for c in self.checks if c.blocking]

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        return [c.line() for c in self.checks]

    def summary(self) -> str:
        """One sentence: how many checks, how many problems where, what is not connected."""
        by_system: dict[str, int] = {}
        for c in self.problems:
            by_system[c.system] = by_system.get(c.system, 0) + 1
        absent = [s for s, up in self.connected.items() if not up]
        text = f"preflight: {len(self.checks)} checks, "
        text += (f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''} ("
                 + ", ".join(f"{s} {n}" for s, n in by_system.items()) + ")") if self.problems else "no problem"
        warnings = sum(1 for c in self.checks if c.status == WARN)
        if warnings:
            text += f", {warnings} warning{'s' if warnings != 1 else ''}"
        if absent:
            text += f"; not connected (optional): {', '.join(absent)}"
        return text + "."

    def as_dict(self) -> dict[str, Any]:
        """A small JSON-able result (for XCom): the summary, the connected sources, the problems."""
        return {
            "ok": self.ok,
            "summary": self.summary(),
            "connected": dict(self.connected),
            "problems": [c.line() for c in self.problems],
            "warnings": [c.line() for c in self.checks if c.status == WARN],
        }

    def raise_for_problems(self) -> None:
        """``PreflightFailed`` (not retryable) listing every problem, when there is one."""
        if self.problems:
            raise PreflightFailed(self.summary() + "\n" + "\n".join(c.line() for c in self.problems))


class PreflightFailed(RuntimeError):
    """Something the product needs is missing or refused; a retry cannot help until it is fixed."""

    retryable = False


# ----------------------------------------------------------------------------- connections
ConnectionLookup = Callable[[str], Any]


def airflow_connection(conn_id: str) -> Any | None:
    """The Airflow connection ``conn_id``, or None when it is not defined (not connected)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def connected(system: str, lookup: ConnectionLookup | None = None) -> bool:
    """Whether source ``system`` (``salesforce``, ``zendesk``, ``stripe``, ``product_db``) has a
    connection. Defining it is connecting it: a defined connection that fails is a failure."""
    return (lookup or airflow_connection)(SOURCE_CONNECTIONS[system]) is not None


def not_connected_reason(system: str) -> str:
    """Why a source's step does nothing, in words for the task log and the skip message."""
    return (f"{system} is not connected (no Airflow connection {SOURCE_CONNECTIONS[system]!r}; optional): "
            f"{WITHOUT[system]}")


# ----------------------------------------------------------------------------- the checks
def run_preflight(lookup: ConnectionLookup | None = None, mapping: Any = None) -> PreflightReport:
    """Run every check (see the module docstring); never raises for what it finds."""
    lookup = lookup or airflow_connection
    report = PreflightReport()
    source_mapping = _check_mapping(report, mapping)
    _check_warehouse(report)
    for system, conn_id in SOURCE_CONNECTIONS.items():
        conn = lookup(conn_id)
        report.connected[system] = conn is not None
        if conn is None:
            report.add(system, "connection", NOT_CONNECTED, f"not connected (optional): no Airflow connection "
                       f"{conn_id!r}; {WITHOUT[system]}")
            continue
        try:
            if system == "salesforce":
                _check_salesforce(report, conn_id, source_mapping, campaigns=_campaigns_on_salesforce(lookup))
            elif system == "zendesk":
                _check_zendesk(report, conn_id)
            elif system == "stripe":
                _check_stripe(report, conn_id)
            else:
                _check_product_db(report, conn, source_mapping)
        except Exception as exc:  # noqa: BLE001 - a check that breaks is a finding, not a crash
            report.add(system, "connection", FAIL, f"the check could not run: {type(exc).__name__}: {exc}",
                       f"check the Airflow connection {conn_id!r}")
    if not any(report.connected.values()):
        report.add("sources", "connected", MISSING, "no source is connected: there is nothing to score",
                   "define at least one of the Airflow connections " + ", ".join(SOURCE_CONNECTIONS.values()))
    else:
        _check_anchor(report, source_mapping)
    _check_targets(report, lookup)
    return report


ANCHOR_SYSTEMS = {"salesforce": ("salesforce", "Salesforce Account"), "stripe": ("stripe", "Stripe customer"),
                  "product": ("product_db", "product account")}


def _check_anchor(report: PreflightReport, mapping: Any) -> None:
    """The source mapping's ``identity.anchor`` names a connected system (else no account exists):
    MISSING for a billing or product anchor, a warning for the default Salesforce anchor."""
    anchor = getattr(mapping, "identity_anchor", None)
    if anchor not in ANCHOR_SYSTEMS:
        return
    system, what = ANCHOR_SYSTEMS[anchor]
    if report.connected.get(system):
        report.add("mapping", "identity.anchor", OK, f"{anchor}: every account is a {what}")
        return
    others = [a for a, (s, _) in ANCHOR_SYSTEMS.items() if report.connected.get(s)]
    report.add("mapping", "identity.anchor", WARN if anchor == "salesforce" else MISSING,
               f"{anchor}: every account is a {what}, but {system} is not connected, so no account will be scored",
               f"define the Airflow connection {SOURCE_CONNECTIONS[system]!r}, or set identity.anchor to "
               + " or ".join(others) + " in the source mapping (README: \"A company without a CRM\")")


def _check_mapping(report: PreflightReport, mapping: Any) -> Any:
    from customer_health.sources.mapping import SourceMappingError, active_mapping

    try:
        m = mapping or active_mapping()
    except SourceMappingError as exc:
        report.add("mapping", "source mapping", FAIL, str(exc), "correct the file named above (README: "
                   "\"Connecting your company\")")
        return None
    changed = m.changed_from_defaults()
    detail = f"{m.source}; " + (f"{len(changed)} name{'s' if len(changed) != 1 else ''} differ from the defaults: "
                                + ", ".join(f"{k} = {v}" for k, v in changed.items()) if changed
                                else "every name is the default")
    report.add("mapping", "source mapping", OK, detail)
    return m


def _check_warehouse(report: PreflightReport) -> None:
    from alembic.script import ScriptDirectory

    from customer_health.warehouse.engine import get_engine, warehouse_url
    from customer_health.warehouse.migrate import alembic_config, current_revision

    try:
        engine = get_engine()
        revision = current_revision(engine)
    except Exception as exc:  # noqa: BLE001
        report.add("warehouse", "connection", FAIL, f"unreachable: {type(exc).__name__}: {exc}",
                   f"check the Airflow connection {settings.WAREHOUSE_CONN_ID!r} (or "
                   f"{settings.WAREHOUSE_URL_ENV}) and that the database is up")
        return
    script = ScriptDirectory.from_config(alembic_config(engine))
    head = script.get_current_head()
    where = engine.url.render_as_string(hide_password=True) if engine.url else warehouse_url()
    if revision == head:
        report.add("warehouse", "schema", OK, f"{where} at revision {revision} (current)")
    elif revision is None:
        report.add("warehouse", "schema", OK, f"{where} is empty: the run creates the schema (revision {head})")
    elif revision in {s.revision for s in script.walk_revisions()}:
        report.add("warehouse", "schema", OK, f"{where} at revision {revision}; the run migrates it to {head}")
    else:
        report.add("warehouse", "schema", FAIL, f"{where} is at revision {revision}, which this code does not know",
                   "it was migrated by a newer release of the product: deploy that release (never downgrade by hand)")


# ----------------------------------------------------------------------------- Salesforce
def _check_salesforce(report: PreflightReport, conn_id: str, mapping: Any, *, campaigns: bool = False) -> None:
    """Login, then the describe of every object and field the product needs (``campaigns``: also
    the Campaign objects, when the campaign target is Salesforce)."""
    from customer_health.sources.salesforce import HealthSalesforceHook, SalesforceExtractionError

    try:
        sf = HealthSalesforceHook(conn_id).connect()
    except SalesforceExtractionError as exc:
        report.add("salesforce", "login", FAIL, str(exc), f"correct the Airflow connection {conn_id!r}")
        return
    report.add("salesforce", "login", OK, f"connection {conn_id!r}, instance {sf.base_url.split('/services/')[0]}")
    if mapping is None:
        report.add("salesforce", "objects", FAIL, "not checked: the source mapping did not load",
                   "correct the source mapping first")
        return
    needs = _salesforce_needs(mapping) + (_campaign_needs() if campaigns else [])
    for need in needs:
        _check_object(report, sf, need, mapping)


# The Campaign objects the campaign target reads and writes when it runs on Salesforce
# (``actions.campaign_targets.SalesforceCampaigns``): standard objects, names never mapped.
CAMPAIGN_OBJECTS: dict[str, tuple[bool, bool, dict[str, str]]] = {
    # object: (create, edit, {field: "read" | "create" (set when a record is created) | "write"})
    "Campaign": (False, False, {"Name": "read", "Type": "read", "Status": "read", "IsActive": "read"}),
    "CampaignMember": (True, True, {"CampaignId": "create", "ContactId": "create", "Status": "write"}),
    "CampaignMemberStatus": (False, False, {"CampaignId": "read", "Label": "read"}),
}


def _campaign_needs() -> list[_ObjectNeed]:
    needs = []
    for name, (create, edit, fields) in CAMPAIGN_OBJECTS.items():
        wanted = {f.lower(): _FieldNeed(f, read=True, written=use == "write", created=use == "create")
                  for f, use in fields.items()}
        needs.append(_ObjectNeed(name, name, True, create, edit, True, wanted))
    return needs


def _campaigns_on_salesforce(lookup: ConnectionLookup) -> bool:
    """Whether the action rules deliver to campaigns and, without a HubSpot connection, those are
    Salesforce Campaigns (whose objects the Salesforce check then describes too)."""
    try:
        from customer_health.actions.config import load_action_rules

        targets = {spec.target for spec in load_action_rules().actions.values()}
    except Exception:  # noqa: BLE001 - the targets check reports rules that do not load
        return False
    return "campaigns" in targets and lookup(settings.HUBSPOT_CONN_ID) is None


@dataclass
class _ObjectNeed:
    """What the product needs of one object: permissions, and fields read or written."""

    name: str  # the product's (default) name
    api_name: str | None  # the org's name; None: an optional object mapped to null
    read: bool
    create: bool
    edit: bool
    required: bool
    fields: dict[str, _FieldNeed]


@dataclass
class _FieldNeed:
    api_name: str
    read: bool = False
    written: bool = False
    custom: Any = None  # salesforce_fields.CustomField, for a mapped custom field
    created: bool = False  # set only when the product creates a record (CampaignMember.CampaignId)


def _salesforce_needs(mapping: Any) -> list[_ObjectNeed]:
    """Every object and field the extraction selects or a write sends, as this org names them."""
    from customer_health.sources import salesforce_fields as sff
    from customer_health.sources.salesforce import object_mappings

    extraction = object_mappings(mapping)
    needs: dict[str, _ObjectNeed] = {}
    for access in sff.OBJECT_ACCESS:
        needs[access.name] = _ObjectNeed(access.name, sff.api_object(access.name, mapping), access.read,
                                         access.create, access.edit, access.required, {})

    def need(obj: str, api_field: str) -> _FieldNeed:
        fields = needs[obj].fields
        return fields.setdefault(api_field.lower(), _FieldNeed(api_field))

    for obj, m in extraction.items():
        for f in m.fields:
            *path, name = f.sf_field.split(".")
            if path:  # a parent field (UserRole.Name): the reference on this object, the field on the parent
                need(obj, f"{path[0]}Id").read = True
                need(path[0], name).read = True
                continue
            fn = need(obj, f.sf_field)
            fn.read = True
            fn.custom = sff.FIELDS_BY_KEY.get(f.key) if f.key else None
    for f in sff.CUSTOM_FIELDS:
        if f.written and needs[f.object].api_name is not None:
            fn = need(f.object, mapping.salesforce_fields[f.mapping_key] or f.name)
            fn.written, fn.custom = True, f
    for obj, names in sff.STANDARD_WRITES.items():
        for name in names:
            need(obj, name).written = True
    return list(needs.values())


def _check_object(report: PreflightReport, sf: Any, need: _ObjectNeed, mapping: Any) -> None:
    from simple_salesforce.exceptions import SalesforceError, SalesforceResourceNotFound

    from customer_health.sources import salesforce_fields as sff

    if need.api_name is None:
        custom = next(o for o in sff.CUSTOM_OBJECTS if o.name == need.name)
        report.add("salesforce", need.name, NOT_CONNECTED,
                   f"not mapped (optional; salesforce.objects.{custom.key} is null in {mapping.source}): "
                   f"its {custom.label} records are not read")
        return
    api = need.api_name
    custom_object = next((o for o in sff.CUSTOM_OBJECTS if o.name == need.name), None)
    try:
        described = sf.restful(f"sobjects/{api}/describe")
    except SalesforceResourceNotFound:
        if custom_object is not None:
            fix = (f"create the custom object {api} (\"{custom_object.label}\", README: \"Salesforce fields the "
                   f"product needs\") and give the integration user Read on it, or map it: "
                   f"`salesforce.objects.{custom_object.key}: <its API name>` in your source mapping"
                   + ("" if custom_object.required else f" (or `null`: it is optional; "
                      f"its {custom_object.label} records are then not read)"))
        else:
            fix = f"give the integration user Read on {api} (its profile or a permission set)"
        report.add("salesforce", api, MISSING, "describe answers NOT_FOUND: the object does not exist in this org or "
                   "the integration user may not read it", fix)
        return
    except SalesforceError as exc:
        report.add("salesforce", api, MISSING, f"describe refused (HTTP {exc.status}: {str(exc.content)[:200]})",
                   f"give the integration user Read on {api} (its profile or a permission set)")
        return
    problems = 0
    verbs = [("Read", need.read, "queryable"), ("Create", need.create, "createable"), ("Edit", need.edit, "updateable")]
    for verb, wanted, flag in verbs:
        if wanted and not described.get(flag, False):
            problems += 1
            report.add("salesforce", api, MISSING, f"the integration user has no {verb} on {api} ({flag} is false)",
                       f"grant {verb} on {api} in the integration user's profile or permission set")
    fields = {f["name"].lower(): f for f in described.get("fields", [])}
    for key, fn in sorted(need.fields.items()):
        problems += _check_field(report, api, fn, fields.get(key), mapping, creates=need.create)
    if not problems:
        granted = "/".join(v for v, wanted, _ in verbs if wanted)
        report.add("salesforce", api, OK, f"{granted}; {count(len(need.fields), 'field')} present with the type and access "
                   "the product needs")


def _check_field(
    report: PreflightReport, obj: str, need: _FieldNeed, found: dict | None, mapping: Any, *, creates: bool
) -> int:
    """Check one field (``creates``: the product creates records of its object); the number of
    problems reported (0 or more)."""
    f = need.custom
    label = f"{obj}.{need.api_name}" + (f" ({f.mapping_key})" if f is not None else "")
    access = "Read and Edit" if need.read and need.written else ("Edit" if need.written else "Read")
    if found is None:
        if f is not None:
            fix = (f"create the {f.setup} field {need.api_name} on {obj} (Setup > Object Manager > {obj} > Fields & "
                   f"Relationships) and give the integration user {access} access to it, or map it: "
                   f"`salesforce.fields.{f.mapping_key}: <your field's API name>` in your source mapping "
                   f"({_mapping_hint(mapping)})")
        else:
            fix = (f"give the integration user {access} access to the standard field {obj}.{need.api_name} (Setup > "
                   f"Object Manager > {obj} > Fields & Relationships > {need.api_name} > Set Field-Level Security)")
        report.add("salesforce", label, MISSING, f"not in the describe of {obj}: the field does not exist or the "
                   "integration user has no field-level access to it (Salesforce shows both alike)", fix)
        return 1
    problems = 0
    if f is not None and not _same_family(f.type, found.get("type", "")):
        problems += 1
        report.add("salesforce", label, MISSING, f"is a {found.get('type')} field; the product needs {f.setup}",
                   f"map `salesforce.fields.{f.mapping_key}` to a {f.setup} field, or change {need.api_name}'s type "
                   "in Setup")
    if need.written or need.created:
        flags = (["updateable"] if need.written else []) + (["createable"] if creates or need.created else [])
        closed = [flag for flag in flags if not found.get(flag, False)]
        if closed:
            problems += 1
            report.add("salesforce", label, MISSING, f"the product writes it, but it is not {' or '.join(closed)} for "
                       "the integration user", f"give the integration user Edit access to {obj}.{need.api_name} "
                       f"(Setup > Object Manager > {obj} > Fields & Relationships > {need.api_name} > Set Field-Level "
                       "Security: Visible, not Read-Only)")
    if f is not None and f.external_id and need.written and not found.get("externalId", False):
        problems += 1
        report.add("salesforce", label, MISSING, "the product upserts by it, but it is not an External ID",
                   f"edit {obj}.{need.api_name} in Setup and tick \"External ID\" (and \"Unique\")")
    if f is not None and need.written and f.min_length and (found.get("length") or 0) < f.min_length:
        problems += 1
        report.add("salesforce", label, MISSING, f"holds {found.get('length')} characters; the product writes up to "
                   f"{f.min_length}", f"raise {obj}.{need.api_name}'s length to at least {f.min_length} in Setup")
    if f is not None and f.picklist == ("Yes", "No"):
        values = {v.get("value") for v in found.get("picklistValues", []) if v.get("active", True)}
        lacking = [v for v in f.picklist if v not in values]
        if lacking:
            problems += 1
            report.add("salesforce", label, MISSING, f"its picklist lacks {', '.join(lacking)}",
                       f"add the value(s) {', '.join(lacking)} to {obj}.{need.api_name}'s picklist in Setup")
    return problems


def _same_family(expected: str, found: str) -> bool:
    return expected == found or any(expected in fam and found in fam for fam in _TYPE_FAMILIES)


def _mapping_hint(mapping: Any) -> str:
    from customer_health.sources.mapping import SOURCES_FILE_ENV

    return f"the file ${SOURCES_FILE_ENV} names; now {mapping.source}"


# ----------------------------------------------------------------------------- Zendesk
def _check_zendesk(report: PreflightReport, conn_id: str) -> None:
    import requests
    from zenpy.lib.exception import APIException

    from customer_health.sources.zendesk import zendesk_client

    client = zendesk_client(conn_id)
    try:
        me = client.users.me()
    except APIException as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        report.add("zendesk", "users/me", FAIL, f"HTTP {status}: Zendesk did not accept the credentials of connection "
                   f"{conn_id!r}", "set the connection's login to the e-mail of an active Zendesk admin and its password "
                   "to an active API token (Admin Center > Apps and integrations > Zendesk API), with extra "
                   '{"use_token": true}, and the host to <subdomain>.zendesk.com')
        return
    except requests.RequestException as exc:
        report.add("zendesk", "users/me", FAIL, f"unreachable: {exc}", f"check the host of connection {conn_id!r}")
        return
    role, email = getattr(me, "role", None), getattr(me, "email", None)
    if role != "admin":
        report.add("zendesk", "users/me", MISSING, f"{email} is {'an' if str(role)[:1] in 'aeiou' else 'a'} {role}: "
                   "the incremental ticket export and the satisfaction ratings are for admins only",
                   f"use an admin's e-mail and API token in connection {conn_id!r}, or make {email} an admin")
        return
    report.add("zendesk", "users/me", OK, f"{email} is an admin (ticket export and satisfaction ratings allowed)")


# ----------------------------------------------------------------------------- Stripe
def _check_stripe(report: PreflightReport, conn_id: str) -> None:
    import stripe

    from customer_health.sources.stripe import StripeHook

    try:
        client = StripeHook(conn_id).get_conn()
    except ValueError as exc:
        report.add("stripe", "key", FAIL, str(exc), f"set the password of connection {conn_id!r} to the API key")
        return
    readable = []
    for name in STRIPE_OBJECTS:
        try:
            client.raw_request("get", f"/v1/{name}", limit=1)
        except stripe.AuthenticationError as exc:
            report.add("stripe", "key", FAIL, f"Stripe rejected the API key of connection {conn_id!r} "
                       f"({exc.user_message or exc})", "set its password to a live secret key (sk_live_...) or a "
                       "restricted key (rk_live_...) of the right account and mode, not rolled or deleted")
            return
        except stripe.PermissionError as exc:
            said = str(exc.user_message or exc)
            wanted = re.search(r"'(rak_\w+)'", said)
            permission = wanted.group(1) if wanted else f"Read on {name}"
            report.add("stripe", name, MISSING, f"the restricted key may not read {name} ({said})",
                       f"edit the restricted key (Stripe Dashboard > Developers > API keys) and give it {permission} "
                       f"(Read on {name.capitalize()}), or use a key that has it")
            continue
        except stripe.StripeError as exc:
            report.add("stripe", name, FAIL, f"HTTP {exc.http_status}: {exc.user_message or exc}",
                       f"check the api_base extra of connection {conn_id!r} (the root of the Stripe API)")
            return
        readable.append(name)
    if readable:
        report.add("stripe", "key", OK, f"reads {', '.join(readable)} (one limit=1 list call each)")


# ----------------------------------------------------------------------------- product database
def _check_product_db(report: PreflightReport, conn: Any, mapping: Any) -> None:
    from sqlalchemy import inspect, text

    from customer_health.sources import product_fields as pf
    from customer_health.warehouse.engine import connection_to_url, engine_for

    engine = engine_for(connection_to_url(conn))
    try:
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        report.add("product_db", "connection", FAIL, f"unreachable: {type(exc).__name__}: {str(exc)[:200]}",
                   f"check the Airflow connection {settings.PRODUCT_DB_CONN_ID!r} and that the database is up")
        return
    if mapping is None:
        report.add("product_db", "tables", FAIL, "not checked: the source mapping did not load",
                   "correct the source mapping first")
        return
    inspector = inspect(engine)
    present: dict[str, bool] = {}
    for table in pf.PRODUCT_TABLES:
        name = mapping.product_table(table.key)
        if name is None:
            report.add("product_db", table.key, NOT_CONNECTED, f"not mapped (optional; product_db.tables.{table.key} "
                       f"is null in {mapping.source}): not read")
            continue
        schema, _, bare = name.rpartition(".")
        if not inspector.has_table(bare, schema=schema or None):
            present[table.key] = False
            others = ", ".join(sorted(inspector.get_table_names(schema=schema or None))[:12])
            optional = "" if table.required else f", or map `product_db.tables.{table.key}: null` (it is optional)"
            report.add("product_db", name, MISSING, f"no such table (the database has: {others or 'no tables'})",
                       f"map `product_db.tables.{table.key}: <your table>` in your source mapping "
                       f"({_mapping_hint(mapping)}){optional}; the product reads {table.meaning.split('. ')[0].lower()}")
            continue
        present[table.key] = True
        columns = {c["name"] for c in inspector.get_columns(bare, schema=schema or None)}
        needed = [c for c in pf.PRODUCT_COLUMNS if c.table == table.key and mapping.product_column(c.mapping_key)]
        missing = [c for c in needed if mapping.product_column(c.mapping_key) not in columns]
        for c in missing:
            col = mapping.product_column(c.mapping_key)
            report.add("product_db", f"{name}.{col}", MISSING, f"no such column (the table has: "
                       f"{', '.join(sorted(columns))})", f"map `product_db.columns.{c.mapping_key}: <your column>` "
                       f"({c.holds}: {c.meaning[0].lower() + c.meaning[1:]}) in your source mapping")
        if not missing:
            report.add("product_db", name, OK, f"{count(len(needed), 'column')} present: "
                       + ", ".join(str(mapping.product_column(c.mapping_key)) for c in needed))
    if present.get("events"):
        _check_event_names(report, engine, mapping)


def _check_event_names(report: PreflightReport, engine: Any, mapping: Any) -> None:
    from sqlalchemy import text

    from customer_health.sources.product import ProductSql

    sql = ProductSql(mapping, engine.dialect)
    events, at, name = sql.table("events"), sql.column("events.occurred_at"), sql.column("events.event_name")
    with engine.connect() as c:
        latest = c.execute(text(f"SELECT MAX({at}) FROM {events}")).scalar()
        if latest is None:
            report.add("product_db", "events", WARN, "the events table is empty: nothing to aggregate yet")
            return
        latest = latest if not isinstance(latest, str) else _as_datetime(latest)
        since = latest - timedelta(days=7)
        for key, value in sql.params().items():
            if value is None:
                continue
            seen = c.execute(
                text(f"SELECT 1 FROM {events} WHERE {at} >= :since AND {name} = :name LIMIT 1"),
                {"since": since, "name": value},
            ).first()
            if seen is None:
                report.add("product_db", f"event_names.{key}", WARN, f"no {value!r} event in the latest week of "
                           f"events (up to {latest:%Y-%m-%d})", f"if your product calls it otherwise, map "
                           f"`product_db.event_names.{key}: <its name>` in your source mapping")
            else:
                report.add("product_db", f"event_names.{key}", OK, f"{value!r} events occur (latest week up to "
                           f"{latest:%Y-%m-%d})")


def _as_datetime(value: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value[:26])


# ----------------------------------------------------------------------------- action targets
def _check_targets(report: PreflightReport, lookup: ConnectionLookup) -> None:
    """The delivery targets the action rules use: configured (nothing is sent)."""
    try:
        from customer_health.actions.config import load_action_rules

        rules = load_action_rules()
    except Exception as exc:  # noqa: BLE001
        report.add("actions", "rules", FAIL, f"the action rules do not load: {exc}", "correct the rules file")
        return
    by_target: dict[str, list[str]] = {}
    for spec in rules.actions.values():
        by_target.setdefault(spec.target, []).append(spec.action_type)
    for target, types in sorted(by_target.items()):
        conn_ids = _target_connections(target)
        if conn_ids is None:
            report.add(target, "target", WARN, f"{len(types)} action type(s) deliver to {target!r}, which the preflight "
                       "does not know how to check")
            continue
        if target == "salesforce":
            if lookup(settings.SALESFORCE_CONN_ID) is None:
                report.add("salesforce", "target", NOT_CONNECTED, f"no CRM connected: {', '.join(sorted(types))} "
                           "are not attempted (recorded as suppressed)")
            continue  # a connected Salesforce was checked above
        conns = [(cid, lookup(cid)) for cid in conn_ids]
        conn = next((c for _, c in conns if c is not None), None)
        names = " or ".join(repr(cid) for cid in conn_ids)
        if conn is None:
            report.add(target, "target", WARN, f"not configured: no Airflow connection {names}; "
                       f"{', '.join(sorted(types))} cannot be delivered (their dispatch fails)",
                       f"define {names}, or leave those action types out of the action rules")
            continue
        problem = _target_problem(target, conn)
        if problem:
            report.add(target, "target", MISSING, problem, f"complete the Airflow connection {conn.conn_id!r}")
        else:
            report.add(target, "target", OK, f"configured ({conn.conn_id!r}; nothing sent): {', '.join(sorted(types))}")


def _target_connections(target: str) -> tuple[str, ...] | None:
    known = {
        "salesforce": (settings.SALESFORCE_CONN_ID,),
        "slack": (settings.SLACK_CONN_ID,),
        "email": (settings.SMTP_CONN_ID,),
        "marketing": tuple(c for c in (getattr(settings, "MARKETING_CONN_ID", None),) if c),
        "campaigns": tuple(c for c in (getattr(settings, "HUBSPOT_CONN_ID", None), settings.SALESFORCE_CONN_ID) if c),
    }
    return known.get(target) or None


def _target_problem(target: str, conn: Any) -> str | None:
    if target == "slack" and not (conn.password or conn.host):
        return "the Slack connection has neither a webhook token (password) nor a webhook URL (host)"
    if target == "email" and not conn.host:
        return "the SMTP connection has no host"
    return None


# ----------------------------------------------------------------------------- the command
def main(argv: Iterable[str] | None = None) -> int:
    """``python -m customer_health.preflight``: print every check; exit 1 when something required is missing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of lines")
    args = parser.parse_args(list(argv) if argv is not None else None)
    report = run_preflight()
    if args.json:
        print(json.dumps({"checks": [asdict(c) for c in report.checks]} | report.as_dict(), indent=2))
    else:
        for line in report.lines():
            print(line)
        print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
