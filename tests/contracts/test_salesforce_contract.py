"""The Salesforce contract: what the product and the sandbox use, checked against Salesforce's own docs.

The sandbox is our reading of Salesforce; so is the extraction. Both can be wrong together (the
extraction once selected ``User.UserRoleName``, which no org has, and the sandbox served it). So
every field the extraction selects, every field the product writes (the CRM writeback and the
Task payloads) and every field the sandbox's store serves must be either

* a **standard field**, recorded below with its type - and, for fields the product writes,
  whether the API lets a client set it - and the Salesforce document it comes from; or
* one of the **custom fields the product requires** (``sources.salesforce_fields``, the one list
  the README's "Salesforce fields the product needs" is generated from).

Nothing else. The sandbox's ``describe`` must give the recorded types, and the records it serves
for a generated company must fit them. Runs offline: the references are recorded here, not
fetched.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from simple_salesforce import Salesforce

from customer_health.actions.config import load_action_rules
from customer_health.actions.decide import AccountContext, Person, build_payload
from customer_health.actions.rules import AccountHealth
from customer_health.actions.writeback import account_health_fields
from customer_health.sources.salesforce import DEFAULT_BATCH_SIZE, OBJECT_MAPPINGS, salesforce_http_session
from customer_health.sources.salesforce_fields import (
    CUSTOM_FIELD_INDEX,
    CUSTOM_FIELDS,
    CUSTOM_OBJECTS,
    readme_table,
)
from health_sandbox.connections import SANDBOX_SF_CLIENT_ID, SANDBOX_SF_CLIENT_SECRET
from health_sandbox.http import serve
from health_sandbox.salesforce_api import SOBJECTS, build_app
from health_sandbox.store import store_engine
from health_sandbox.tls import ensure_certificate, server_context

# ----------------------------------------------------------------------------- the documents
_FIELD_REF = "https://developer.salesforce.com/docs/platform/field-reference/references/field-reference"
_ATLAS_FIELD_REF = "https://developer.salesforce.com/docs/atlas.en-us.sfFieldRef.meta/sfFieldRef"
_OBJECT_REF = "https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference"
DOCS = {
    "User": f"{_ATLAS_FIELD_REF}/salesforce_field_reference_User.htm",
    "UserRole": f"{_ATLAS_FIELD_REF}/salesforce_field_reference_UserRole.htm",
    "Account": f"{_FIELD_REF}/salesforce-field-reference-account.html",
    "Contact": f"{_FIELD_REF}/salesforce-field-reference-contact.html",
    "Opportunity": f"{_FIELD_REF}/salesforce-field-reference-opportunity.html",
    "Task": f"{_OBJECT_REF}/sforce_api_objects_task.htm",
    "Campaign": f"{_FIELD_REF}/salesforce-field-reference-campaign.html",
    "CampaignMember": f"{_FIELD_REF}/salesforce-field-reference-campaignmember.html",
    "CampaignMemberStatus": f"{_FIELD_REF}/salesforce-field-reference-campaignmemberstatus.html",
    # Id, CreatedDate, SystemModstamp (every object) and IsDeleted: read-only system fields.
    "system": f"{_OBJECT_REF}/system_fields.htm",
    # Which fields a client may set ("Properties: Create, Update" in the object reference).
    "User.props": f"{_OBJECT_REF}/sforce_api_objects_user.htm",
    "Task.props": f"{_OBJECT_REF}/sforce_api_objects_task.htm",
    "Opportunity.props": f"{_OBJECT_REF}/sforce_api_objects_opportunity.htm",
    "Account.props": f"{_OBJECT_REF}/sforce_api_objects_account.htm",
    # CampaignId/ContactId "Create" without "Update"; HasResponded set from Status.
    "CampaignMember.props": f"{_OBJECT_REF}/sforce_api_objects_campaignmember.htm",
    # Supported calls: describeLayout, describeSObjects, getDeleted, getUpdated, query, retrieve.
    "CampaignMemberStatus.props": f"{_OBJECT_REF}/sforce_api_objects_campaignmemberstatus.htm",
    # "Already a campaign member." is DUPLICATE_VALUE (StatusCode in the SOAP API's ExceptionCode list).
    "status_codes": ("https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/"
                     "sforce_api_calls_concepts_core_data_objects.htm#statuscode"),
    # Response shapes.
    "rest_errors": "https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm",
    "oauth_errors": "https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_flow_errors.htm",
    "query_options": ("https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/"
                      "headers_queryoptions.htm"),
}


@dataclass(frozen=True)
class Std:
    """A standard field as Salesforce documents it."""

    type: str  # as describe reports it
    doc: str  # key of DOCS the type comes from
    writable: bool = True  # Create (and Update, unless create_only) in the object reference
    writable_doc: str | None = None  # key of DOCS saying it is not settable, when it is not
    reference_to: str | None = None  # the one object a (non-polymorphic) reference points at
    create_only: bool = False  # "Create" without "Update": set once, when the record is made

    @property
    def updatable(self) -> bool:
        return self.writable and not self.create_only


def _system(obj: str, deleted: bool = True) -> dict[tuple[str, str], Std]:
    fields = {
        (obj, "Id"): Std("id", "system", False, "system"),
        (obj, "CreatedDate"): Std("datetime", "system", False, "system"),
        (obj, "SystemModstamp"): Std("datetime", "system", False, "system"),
    }
    if deleted:
        fields[(obj, "IsDeleted")] = Std("boolean", "system", False, "system")
    return fields


STANDARD: dict[tuple[str, str], Std] = {
    # User has no IsDeleted: users are deactivated (IsActive), never deleted.
    **_system("User", deleted=False),
    ("User", "Name"): Std("string", "User", False, "User.props"),  # FirstName + LastName
    ("User", "Email"): Std("email", "User"),
    ("User", "Title"): Std("string", "User"),
    ("User", "UserRoleId"): Std("reference", "User", reference_to="UserRole"),
    ("User", "IsActive"): Std("boolean", "User"),
    # UserRole: the role's name lives here, not on User.
    ("UserRole", "Id"): Std("id", "UserRole", False, "system"),
    ("UserRole", "Name"): Std("string", "UserRole"),
    ("UserRole", "ParentRoleId"): Std("reference", "UserRole", reference_to="UserRole"),  # the role hierarchy
    ("UserRole", "SystemModstamp"): Std("datetime", "UserRole", False, "system"),
    **_system("Account"),
    ("Account", "Name"): Std("string", "Account"),
    ("Account", "ParentId"): Std("reference", "Account", reference_to="Account"),
    ("Account", "OwnerId"): Std("reference", "Account", reference_to="User"),
    ("Account", "Industry"): Std("picklist", "Account"),
    ("Account", "Type"): Std("picklist", "Account"),
    **_system("Contact"),
    ("Contact", "AccountId"): Std("reference", "Contact", reference_to="Account"),
    ("Contact", "FirstName"): Std("string", "Contact"),
    ("Contact", "LastName"): Std("string", "Contact"),
    ("Contact", "Email"): Std("email", "Contact"),
    ("Contact", "Title"): Std("string", "Contact"),
    **_system("Task"),
    # "Properties: Filter, Group, Nillable, Sort": Salesforce sets it from WhatId / WhoId.
    ("Task", "AccountId"): Std("reference", "Task", False, "Task.props", reference_to="Account"),
    ("Task", "WhatId"): Std("reference", "Task"),  # polymorphic: Account, Opportunity, ...
    ("Task", "WhoId"): Std("reference", "Task"),  # polymorphic: Contact or Lead
    ("Task", "OwnerId"): Std("reference", "Task"),  # polymorphic: User or Group (queue)
    ("Task", "Subject"): Std("combobox", "Task"),
    ("Task", "Type"): Std("picklist", "Task"),
    ("Task", "Status"): Std("picklist", "Task"),
    ("Task", "Priority"): Std("picklist", "Task"),
    ("Task", "ActivityDate"): Std("date", "Task"),
    ("Task", "Description"): Std("textarea", "Task"),
    **_system("Opportunity"),
    ("Opportunity", "AccountId"): Std("reference", "Opportunity", reference_to="Account"),
    ("Opportunity", "Name"): Std("string", "Opportunity"),
    ("Opportunity", "Type"): Std("picklist", "Opportunity"),
    ("Opportunity", "StageName"): Std("picklist", "Opportunity"),
    ("Opportunity", "Amount"): Std("currency", "Opportunity"),
    ("Opportunity", "CloseDate"): Std("date", "Opportunity"),
    ("Opportunity", "IsClosed"): Std("boolean", "Opportunity", False, "Opportunity.props"),  # from StageName
    ("Opportunity", "IsWon"): Std("boolean", "Opportunity", False, "Opportunity.props"),  # from StageName
    # A custom object comes with the system fields (and Name/OwnerId, which the product does not use).
    **_system("NPS_Response__c"),
    # Campaigns: the default campaign target (actions.campaign_targets.SalesforceCampaigns).
    **_system("Campaign"),
    ("Campaign", "Name"): Std("string", "Campaign"),
    ("Campaign", "Type"): Std("picklist", "Campaign"),
    ("Campaign", "Status"): Std("picklist", "Campaign"),
    ("Campaign", "IsActive"): Std("boolean", "Campaign"),
    **_system("CampaignMember"),
    ("CampaignMember", "CampaignId"): Std("reference", "CampaignMember", reference_to="Campaign", create_only=True,
                                          writable_doc="CampaignMember.props"),
    ("CampaignMember", "ContactId"): Std("reference", "CampaignMember", reference_to="Contact", create_only=True,
                                         writable_doc="CampaignMember.props"),
    ("CampaignMember", "Status"): Std("picklist", "CampaignMember"),
    ("CampaignMember", "HasResponded"): Std("boolean", "CampaignMember", False, "CampaignMember.props"),
    **_system("CampaignMemberStatus"),
    ("CampaignMemberStatus", "CampaignId"): Std("reference", "CampaignMemberStatus", False,
                                                "CampaignMemberStatus.props", reference_to="Campaign"),
    ("CampaignMemberStatus", "Label"): Std("string", "CampaignMemberStatus", False, "CampaignMemberStatus.props"),
    ("CampaignMemberStatus", "HasResponded"): Std("boolean", "CampaignMemberStatus", False, "CampaignMemberStatus.props"),
    ("CampaignMemberStatus", "IsDefault"): Std("boolean", "CampaignMemberStatus", False, "CampaignMemberStatus.props"),
    ("CampaignMemberStatus", "SortOrder"): Std("int", "CampaignMemberStatus", False, "CampaignMemberStatus.props"),
}

STANDARD_OBJECTS = {"User", "UserRole", "Account", "Contact", "Task", "Opportunity", "Campaign", "CampaignMember",
                    "CampaignMemberStatus"}


def test_every_recorded_field_names_the_document_it_comes_from():
    for key, std in STANDARD.items():
        assert std.doc in DOCS and DOCS[std.doc].startswith("https://"), key
        assert std.writable or std.writable_doc in DOCS, f"{key}: read-only, but says not where that is documented"
    for key in CUSTOM_FIELD_INDEX:
        assert key not in STANDARD, f"{key} is recorded as standard and listed as custom"
        assert key[1].endswith("__c")
    assert {o.name for o in CUSTOM_OBJECTS} == {obj for obj, _ in STANDARD} - STANDARD_OBJECTS


# ----------------------------------------------------------------------------- what the product uses
def known(obj: str, name: str) -> Std | object | None:
    return STANDARD.get((obj, name)) or CUSTOM_FIELD_INDEX.get((obj, name))


def resolve_path(obj: str, path: str) -> tuple[str, str]:
    """``UserRole.Name`` on User -> (UserRole, Name), through the recorded reference fields."""
    *relationships, name = path.split(".")
    for rel in relationships:
        ref = STANDARD.get((obj, f"{rel}Id"))
        custom = CUSTOM_FIELD_INDEX.get((obj, rel.removesuffix("__r") + "__c"))
        target = ref.reference_to if ref else custom.reference_to if custom else None
        assert target, f"{obj}.{path}: '{rel}' is not a documented relationship of {obj}"
        obj = target
    return obj, name


def test_every_field_the_extraction_selects_is_a_standard_field_or_a_listed_custom_field():
    for obj, mapping in OBJECT_MAPPINGS.items():
        for path in mapping.select_fields:
            target, name = resolve_path(obj, path)
            assert known(target, name), (
                f"the extraction selects {obj}.{path}, which is neither in Salesforce's field reference "
                f"({target}.{name}) nor in salesforce_fields.CUSTOM_FIELDS")
            custom = CUSTOM_FIELD_INDEX.get((target, name))
            assert custom is None or custom.read, f"{target}.{name} is listed as written only"


def test_the_user_role_is_read_through_user_role_id():
    """The issue's field: User has no ``UserRoleName``; the name is ``UserRole.Name`` via ``UserRoleId``."""
    assert ("User", "UserRoleName") not in STANDARD
    assert "UserRole.Name" in OBJECT_MAPPINGS["User"].select_fields
    assert resolve_path("User", "UserRole.Name") == ("UserRole", "Name")


def _written_fields() -> dict[str, set[str]]:
    """Every field the product sends to Salesforce, per object, taken from the code that sends it."""
    rules = load_action_rules()
    row = SimpleNamespace(score=42.0, zone="At Risk", slope_90=-3.0, explanation="Usage fell.", drivers=None)
    account_fields = set(account_health_fields(row, rules)) | {"Health_Score_Date__c"}  # + the score date
    account = AccountHealth("001000000000001AAA", date(2026, 11, 1), "At Risk", "Neutral", 42, account_name="Acme")
    sponsor = Person("003000000000001AAA", "Sam Sponsor", "sam@acme.example")
    ctx = AccountContext("005000000000001AAA", False, ["sam@acme.example"], sponsor)
    vps = [Person("005000000000002AAA", "Vera VP", "vera@northpeak.example")]
    task_fields: set[str] = {"Status"}  # completing a task: {"Status": "Completed"} (actions.dispatch)
    kinds = set()
    for spec in rules.actions.values():
        if spec.kind != "salesforce_task":
            continue
        payload, why = build_payload(spec, account, "Score fell.", "key", ctx, vps, (), rules)
        assert payload is not None, why
        kinds.add(spec.action_type)
        task_fields |= set(payload["fields"]) | {payload["external_id_field"]}
    assert kinds, "no Salesforce task actions in the rules"
    return {"Account": account_fields, "Task": task_fields, **_campaign_fields_written()}


class _RecordingSalesforce:
    """A simple-salesforce stand-in that records what ``SalesforceCampaigns`` sends."""

    def __init__(self) -> None:
        self.sent: dict[str, set[str]] = {}
        self.queried: list[str] = []

    def query_all(self, soql: str) -> dict:
        self.queried.append(soql)
        if "FROM CampaignMemberStatus" in soql:
            return {"records": [{"CampaignId": "701000000000001AAA", "Label": "Paused"}]}
        if "FROM CampaignMember " in soql:
            return {"records": [{"Id": "00v000000000001AAA", "CampaignId": "701000000000001AAA",
                                 "ContactId": "003000000000001AAA", "Status": "Sent"}]}
        return {"records": []}

    def restful(self, path: str, method: str, json: dict) -> list[dict]:
        for record in json["records"]:
            obj = record["attributes"]["type"]
            self.sent.setdefault(obj, set()).update(k for k in record if k not in ("attributes", "Id"))
        return [{"id": "00v000000000002AAA", "success": True, "errors": []} for _ in json["records"]]


def _campaign_fields_written() -> dict[str, set[str]]:
    """What the Salesforce campaign target writes: adding, pausing and resuming members."""
    from customer_health.actions.campaign_targets import Member, SalesforceCampaigns

    sf = _RecordingSalesforce()
    target = SalesforceCampaigns(sf)
    target.add("701000000000001AAA", ["003000000000002AAA"])
    member = Member("701000000000001AAA", "003000000000001AAA", "00v000000000001AAA", "Sent")
    target.pause([member], "Paused")
    target.resume([(member, "Sent")], "Sent")  # the recording org answers "Sent": resumable
    return {obj: fields for obj, fields in sf.sent.items()}


def test_the_campaign_target_queries_only_documented_fields():
    sf = _RecordingSalesforce()
    from customer_health.actions.campaign_targets import SalesforceCampaigns
    from customer_health.actions.config import ProgrammeSelector

    target = SalesforceCampaigns(sf)
    # The recording org has no campaigns: only the query it sends matters here.
    with contextlib.suppress(Exception):
        target.programmes(ProgrammeSelector("upsell", name_contains="Upsell"))
    target.members(["701000000000001AAA"], ["003000000000001AAA"])
    target.check_pausable([], "Paused")
    for soql in sf.queried:
        m = re.match(r"SELECT (.+?) FROM (\w+)", soql)
        assert m, soql
        for name in (f.strip() for f in m.group(1).split(",")):
            assert STANDARD.get((m.group(2), name)), f"{soql}: {m.group(2)}.{name} is not a recorded standard field"


def test_every_field_the_product_writes_is_settable_through_the_api():
    written = _written_fields()
    assert written["Task"] >= {"Subject", "Description", "ActivityDate", "Status", "Priority", "Type", "OwnerId",
                               "WhatId", "WhoId", "Health_Action_Key__c"}
    for obj, fields in written.items():
        for name in fields:
            std, custom = STANDARD.get((obj, name)), CUSTOM_FIELD_INDEX.get((obj, name))
            assert std or custom, f"the product writes {obj}.{name}: not a standard field, not listed"
            if std:
                assert std.writable, f"the product writes {obj}.{name}, which Salesforce computes ({DOCS[std.writable_doc]})"
                assert obj != "CampaignMember" or std.updatable or name in ("CampaignId", "ContactId"), name
            else:
                assert custom.written, f"the product writes {obj}.{name}, listed as read only"


def test_the_custom_list_holds_exactly_what_the_product_uses():
    """No field in the README's list that nothing uses; none used that the list lacks."""
    read = {(obj, name) for obj, m in OBJECT_MAPPINGS.items() for path in m.select_fields
            for name in [resolve_path(obj, path)[1]] if (obj, name) in CUSTOM_FIELD_INDEX}
    written = {(obj, name) for obj, names in _written_fields().items() for name in names
               if (obj, name) in CUSTOM_FIELD_INDEX}
    for f in CUSTOM_FIELDS:
        assert ((f.object, f.name) in read) == f.read, f"{f.object}.{f.name}: access {f.access!r} but read={f.read}"
        assert ((f.object, f.name) in written) == f.written, f"{f.object}.{f.name}: access {f.access!r}"
        if f.external_id:
            assert f.type == "string" and f.length, f"{f.name}: an External ID is a text field"


def test_the_extraction_asks_for_a_page_size_salesforce_allows():
    # Sforce-Query-Options batchSize: 200 to 2000 (DOCS["query_options"]); the sandbox also takes
    # smaller sizes so tests can page through a few records.
    assert 200 <= DEFAULT_BATCH_SIZE <= 2000


def test_the_readme_lists_exactly_the_custom_fields():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    m = re.search(r"^## Salesforce fields the product needs\n(.*?)(?=^## )", readme, re.S | re.M)
    assert m, "README: the section '## Salesforce fields the product needs' is missing"
    assert readme_table() in m.group(1), (
        "README's table differs from salesforce_fields.readme_table(); paste its output into the section")


# ----------------------------------------------------------------------------- what the sandbox serves
def test_every_field_the_sandbox_store_serves_is_standard_or_listed():
    for obj in SOBJECTS.values():
        assert obj.name in STANDARD_OBJECTS | {o.name for o in CUSTOM_OBJECTS}, f"the sandbox serves {obj.name}"
        for column in obj.table.c:
            assert known(obj.name, column.name), (
                f"the sandbox's {obj.table.name} serves {obj.name}.{column.name}: not in Salesforce's field "
                "reference as recorded here, and not in salesforce_fields.CUSTOM_FIELDS")


@pytest.fixture(scope="module")
def empty_org(tmp_path_factory) -> Iterator[Salesforce]:
    folder = tmp_path_factory.mktemp("sf_contract")
    store = store_engine(folder / "company.db")
    cert, _ = ensure_certificate(folder)
    server = serve(build_app(store, folder), tls=server_context(folder))
    yield _login(server.base_url, str(cert))
    server.stop()
    store.dispose()


def _login(base_url: str, ca_cert: str) -> Salesforce:
    token_url = f"{base_url}/services/oauth2/token"
    http = salesforce_http_session(ca_cert, timeout=10, token_url=token_url)
    token = http.post(token_url, data={"grant_type": "client_credentials", "client_id": SANDBOX_SF_CLIENT_ID,
                                       "client_secret": SANDBOX_SF_CLIENT_SECRET}).json()
    return Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], session=http,
                      version="59.0")


def test_the_sandbox_describes_fields_as_salesforce_documents_them(empty_org):
    for obj in SOBJECTS.values():
        described = {f["name"]: f for f in empty_org.restful(f"sobjects/{obj.name}/describe")["fields"]}
        for name, field in described.items():
            std, custom = STANDARD.get((obj.name, name)), CUSTOM_FIELD_INDEX.get((obj.name, name))
            expected = std.type if std else custom.type
            assert field["type"] == expected, f"describe {obj.name}.{name}: {field['type']}, documented {expected}"
            settable = std.writable if std else True
            updatable = std.updatable if std else True
            assert (field["createable"], field["updateable"]) == (settable, updatable), f"{obj.name}.{name}"
            if field["type"] == "boolean":
                assert field["nillable"] is False, f"{obj.name}.{name}: a checkbox is never null"
            if std and std.reference_to:
                assert field["referenceTo"] == [std.reference_to], f"{obj.name}.{name}"
            if custom:
                assert field["custom"] is True and field["externalId"] == custom.external_id, f"{obj.name}.{name}"
                assert [v["value"] for v in field["picklistValues"]] == list(custom.picklist), f"{obj.name}.{name}"
                if custom.length:
                    assert field["length"] == custom.length, f"{obj.name}.{name}"
                if custom.reference_to:
                    assert field["referenceTo"] == [custom.reference_to], f"{obj.name}.{name}"


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000")
_ID = re.compile(r"[A-Za-z0-9]{18}")


def _fits(kind: str, value: object) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)  # never null
    if value is None:
        return True
    if kind in ("id", "reference"):
        return isinstance(value, str) and bool(_ID.fullmatch(value))
    if kind == "date":
        return isinstance(value, str) and bool(_DATE.fullmatch(value))
    if kind == "datetime":
        return isinstance(value, str) and bool(_DATETIME.fullmatch(value))
    if kind in ("double", "currency", "int"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def test_records_the_sandbox_serves_for_a_generated_company_fit_the_documented_types(sandbox):
    sf = _login(sandbox.endpoints["salesforce"], sandbox.endpoints["ca_cert"])
    for obj in SOBJECTS.values():
        fields = [c.name for c in obj.table.c]
        records = sf.query_all(f"SELECT {', '.join(fields)} FROM {obj.name} ORDER BY Id LIMIT 3000",
                               include_deleted=True)["records"]
        assert records, f"the generated company has no {obj.name}"
        for name in fields:
            std, custom = STANDARD.get((obj.name, name)), CUSTOM_FIELD_INDEX.get((obj.name, name))
            kind = std.type if std else custom.type
            bad = [r[name] for r in records if not _fits(kind, r[name])]
            assert not bad, f"{obj.name}.{name} ({kind}) served {bad[:3]}"
            if custom and custom.picklist:
                assert {r[name] for r in records} - {None} <= set(custom.picklist), f"{obj.name}.{name}"
            if custom and custom.length:
                assert max((len(r[name]) for r in records if r[name]), default=0) <= custom.length


def test_user_roles_are_served_as_salesforce_nests_them(sandbox):
    sf = _login(sandbox.endpoints["salesforce"], sandbox.endpoints["ca_cert"])
    users = sf.query_all("SELECT Id, UserRole.Name FROM User")["records"]
    roles = [u["UserRole"] for u in users]
    assert None in roles, "the integration user has no role: its UserRole is null"
    nested = [r for r in roles if r is not None]
    assert nested and all(set(r) == {"attributes", "Name"} and r["attributes"]["type"] == "UserRole" for r in nested)
    assert "VP Customer Success" in {r["Name"] for r in nested}


# ----------------------------------------------------------------------------- error shapes
def test_errors_have_salesforces_shapes(empty_org):
    """REST errors: HTTP 4xx, a JSON list of {message, errorCode} (DOCS["rest_errors"]). OAuth
    errors: HTTP 400, {error, error_description} (DOCS["oauth_errors"])."""
    base = empty_org.base_url
    resp = empty_org.session.get(f"{base}query/", params={"q": "SELECT Id, UserRoleName FROM User"},
                                 headers=empty_org.headers)
    assert resp.status_code == 400
    body = resp.json()
    assert isinstance(body, list) and set(body[0]) == {"message", "errorCode"}
    assert body[0]["errorCode"] == "INVALID_FIELD"
    assert "No such column 'UserRoleName' on entity 'User'" in body[0]["message"]
    token_url = base.split("/services/data/")[0] + "/services/oauth2/token"
    resp = empty_org.session.post(token_url, data={"grant_type": "client_credentials",
                                                   "client_id": SANDBOX_SF_CLIENT_ID, "client_secret": "wrong"})
    assert resp.status_code == 400
    assert resp.json() == {"error": "invalid_client", "error_description": "invalid client credentials"}
    assert isinstance(resp, requests.Response)
