"""The custom objects and fields the product needs in Salesforce: one list, read by everything.

Standard objects and fields (``Account.Name``, ``Task.Subject``, ``User.UserRoleId`` ...) exist in
every org. These do not: a Salesforce administrator creates them once (Setup > Object Manager,
with the type given here) and gives the integration user field-level access - Read on the fields
the product reads, Edit on the ones it writes. The extraction's mapping, the CRM writeback, the
Task payloads, the loopback sandbox's org and the README's table "Salesforce fields the product
needs" all come from this list; the contract test (``tests/contracts/test_salesforce_contract.py``)
checks that nothing the product reads or writes, and nothing the sandbox serves, is outside it
or Salesforce's own standard-field reference.

A field marked *required* must exist for the product to run: its object's extraction query
selects it (a missing field fails the query with ``INVALID_FIELD``) or a write sends it. The
``NPS_Response__c`` object is *optional*: map it to ``null`` and the NPS signal is simply absent
(its weight moves to the other signals and coverage says so).

Each custom object and field has a *mapping key* (``Account.arr``, ``NPS_Response.score``): the
name the product uses for it, whatever the org calls it. The names here are the defaults; an org
whose fields are called otherwise maps the keys to its own API names in the source mapping
(``customer_health.sources.mapping``, ``config/sources.yaml``), and everything that reads or
writes Salesforce asks ``api_name(key)`` / ``api_object(key)`` for the org's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

READ = "read"
WRITE = "write"
READ_WRITE = "read, write"


@dataclass(frozen=True)
class CustomField:
    """One custom field the product reads or writes.

    ``type`` is the field type the API reports in ``describe`` (``boolean``, ``date``,
    ``datetime``, ``double``, ``currency``, ``string``, ``textarea``, ``picklist``,
    ``reference``); ``setup`` is what to choose when creating it in Setup.
    """

    object: str
    name: str
    type: str
    setup: str
    access: str  # READ | WRITE | READ_WRITE
    required: bool
    meaning: str
    length: int | None = None  # text and text-area lengths
    picklist: tuple[str, ...] = ()  # the values, for a restricted picklist
    reference_to: str | None = None
    external_id: bool = False  # "External ID" (and Unique): an upsert key
    key: str = ""  # the mapping key's field part: Account.<key>
    min_length: int | None = None  # written text: the longest value the product writes

    @property
    def mapping_key(self) -> str:
        """``<object key>.<field key>``, e.g. ``Account.arr``: how the source mapping names it."""
        return f"{object_key(self.object)}.{self.key}"

    @property
    def read(self) -> bool:
        return self.access in (READ, READ_WRITE)

    @property
    def written(self) -> bool:
        return self.access in (WRITE, READ_WRITE)

    @property
    def nillable(self) -> bool:
        """Whether the field can be blank: a Checkbox is always true or false, never null."""
        return self.type != "boolean"


@dataclass(frozen=True)
class CustomObject:
    """A custom object the product reads (its standard system fields come with it)."""

    name: str
    label: str
    required: bool
    meaning: str
    key: str = ""  # the mapping key: NPS_Response

    @property
    def mapping_key(self) -> str:
        """How the source mapping names the object."""
        return self.key


CUSTOM_OBJECTS: tuple[CustomObject, ...] = (
    CustomObject("NPS_Response__c", "NPS Response", False,
                 "One answer to the NPS survey. Optional: without it the NPS signal is absent and its weight "
                 "moves to the other signals.", key="NPS_Response"),
)

CUSTOM_FIELDS: tuple[CustomField, ...] = (
    # -- Account: what the customer bought, and the health score written back
    CustomField("Account", "Plan__c", "picklist", "Picklist (starter, growth, enterprise)", READ, True,
                "The customer's plan; with tenure it picks the segment baseline each signal is compared with.",
                length=255, picklist=("starter", "growth", "enterprise"), key="plan"),
    CustomField("Account", "Seats__c", "double", "Number(18, 0)", READ, True,
                "Seats under contract, where Stripe has none: per-seat signals (logins per seat) divide by it.", key="seats"),
    CustomField("Account", "ARR__c", "currency", "Currency(16, 2)", READ, True,
                "Annual recurring revenue, where Stripe has none: what is at stake in escalations and reports.", key="arr"),
    CustomField("Account", "Customer_Since__c", "date", "Date", READ, True,
                "Contract start: the account is a customer (and scored) from this date; its tenure.", key="customer_since"),
    CustomField("Account", "Product_Account_Id__c", "string", "Text(40), External ID, Unique", READ, True,
                "The account's id in the product database: how product usage finds its account.",
                length=40, external_id=True, key="product_account_id"),
    CustomField("Account", "Health_Score__c", "double", "Number(5, 2)", WRITE, True,
                "The health score, 0-100.", key="health_score"),
    CustomField("Account", "Health_Zone__c", "string", "Text(20)", WRITE, True,
                "The score's zone: Healthy, Neutral, At Risk or Critical.", length=20, key="health_zone", min_length=8),
    CustomField("Account", "Health_Trend__c", "string", "Text(40)", WRITE, True,
                "Direction of the score over 90 days: Improving, Stable or Declining.", length=40, key="health_trend", min_length=9),
    CustomField("Account", "Health_Drivers__c", "textarea", "Long Text Area(32768)", WRITE, True,
                "Why the score is what it is, in sentences (at most 1,000 characters).", length=32768, key="health_drivers", min_length=1000),
    CustomField("Account", "Health_Score_Date__c", "date", "Date", WRITE, True,
                "The date the score on the record is as of; an older score never replaces a newer one.", key="health_score_date"),
    CustomField("Account", "Executive_Sponsor_User__c", "reference", "Lookup(User)", READ, True,
                "Our executive sponsor of the account (a Salesforce User): executive escalations reach them "
                "with the VP of Customer Success.", reference_to="User", key="executive_sponsor_user"),
    # -- Contact
    CustomField("Contact", "Executive_Sponsor__c", "boolean", "Checkbox", READ, True,
                "The customer's executive sponsor: executive engagement and who escalations name.", key="executive_sponsor"),
    # -- Task: activity the CSMs log, and the tasks the product creates
    CustomField("Task", "Executive_Touch__c", "boolean", "Checkbox", READ, True,
                "The activity was with the customer's executive sponsor.", key="executive_touch"),
    CustomField("Task", "Outreach_Responded__c", "picklist", "Picklist (Yes, No)", READ, True,
                "For an outreach e-mail: whether the customer answered. Blank for every other task (a "
                "Checkbox cannot be blank, so it cannot tell \"not outreach\" from \"no answer\").",
                length=255, picklist=("Yes", "No"), key="outreach_responded"),
    CustomField("Task", "Health_Action_Key__c", "string", "Text(120), External ID, Unique", READ_WRITE, True,
                "The product's idempotency key: tasks are upserted by it, so a re-run never creates one twice.",
                length=120, external_id=True, key="health_action_key", min_length=80),
    # -- NPS_Response__c (optional custom object)
    CustomField("NPS_Response__c", "Account__c", "reference", "Lookup(Account)", READ, False,
                "The account that answered.", reference_to="Account", key="account"),
    CustomField("NPS_Response__c", "Contact__c", "reference", "Lookup(Contact)", READ, False,
                "The contact who answered.", reference_to="Contact", key="contact"),
    CustomField("NPS_Response__c", "Score__c", "double", "Number(2, 0)", READ, False,
                "The answer, 0-10.", key="score"),
    CustomField("NPS_Response__c", "Comment__c", "textarea", "Long Text Area(32768)", READ, False,
                "The free-text comment.", length=32768, key="comment"),
    CustomField("NPS_Response__c", "Responded_At__c", "datetime", "Date/Time", READ, False,
                "When the survey was answered.", key="responded_at"),
)

CUSTOM_FIELD_INDEX: dict[tuple[str, str], CustomField] = {(f.object, f.name): f for f in CUSTOM_FIELDS}


def object_key(name: str) -> str:
    """The mapping key of an object by its default API name: ``NPS_Response__c`` -> ``NPS_Response``;
    a standard object (``Account``) is its own key."""
    return next((o.key for o in CUSTOM_OBJECTS if o.name == name), name)


FIELDS_BY_KEY: dict[str, CustomField] = {f.mapping_key: f for f in CUSTOM_FIELDS}
OBJECTS_BY_KEY: dict[str, CustomObject] = {o.key: o for o in CUSTOM_OBJECTS}


@dataclass(frozen=True)
class ObjectAccess:
    """What the integration user must be allowed to do with one object (profile or permission set)."""

    name: str  # the default API name; custom objects are mapped like their fields
    read: bool = True
    create: bool = False
    edit: bool = False

    @property
    def required(self) -> bool:
        """Standard objects exist in every org; a custom object is required when listed so."""
        obj = next((o for o in CUSTOM_OBJECTS if o.name == self.name), None)
        return obj is None or obj.required


# Every object the product reads or writes, and the object permissions it needs: Read on all of
# them (UserRole too: the VP of Customer Success is found by role name), Edit on Account (the
# health fields), Create and Edit on Task (the tasks it upserts).
OBJECT_ACCESS: tuple[ObjectAccess, ...] = (
    ObjectAccess("User"),
    ObjectAccess("UserRole"),
    ObjectAccess("Account", edit=True),
    ObjectAccess("Contact"),
    ObjectAccess("Task", create=True, edit=True),
    ObjectAccess("Opportunity"),
    ObjectAccess("NPS_Response__c"),
)

# The standard fields the product sets (beside the written custom fields above): the Task it
# creates for a CSM (``actions.decide``) and completes (``actions.dispatch``). The contract test
# holds this equal to what the payload builders send.
STANDARD_WRITES: dict[str, tuple[str, ...]] = {
    "Task": ("Subject", "Description", "ActivityDate", "Status", "Priority", "Type", "OwnerId", "WhatId", "WhoId"),
}


def api_name(key: str, mapping: Any = None) -> str:
    """The org's API name of custom field ``key`` (``Account.health_score``), from the source mapping.

    ``mapping`` defaults to the active one (``sources.mapping.active_mapping``). A field of an
    optional object the org does not have raises ``KeyError`` naming the mapping; a key that is
    not in ``CUSTOM_FIELDS`` raises ``KeyError`` naming the list.
    """
    from customer_health.sources.mapping import active_mapping

    if key not in FIELDS_BY_KEY:
        raise KeyError(f"{key!r} is not a mapping key of customer_health.sources.salesforce_fields.CUSTOM_FIELDS "
                       f"(known: {', '.join(FIELDS_BY_KEY)})")
    name = (mapping or active_mapping()).salesforce_fields.get(key)
    if name is None:
        raise KeyError(f"{key} is not mapped to a field of this org (null in {(mapping or active_mapping()).source})")
    return name


def api_object(name: str, mapping: Any = None) -> str | None:
    """The org's API name of the object whose default name is ``name`` (``NPS_Response__c``);
    standard objects are their own name; None when the mapping says the org has no such object."""
    from customer_health.sources.mapping import active_mapping

    obj = next((o for o in CUSTOM_OBJECTS if o.name == name), None)
    if obj is None:
        return name
    return (mapping or active_mapping()).salesforce_objects.get(obj.key)


def custom_field(obj: str, name: str) -> CustomField:
    """The custom field ``obj.name``; KeyError naming the list when it is not in it."""
    try:
        return CUSTOM_FIELD_INDEX[(obj, name)]
    except KeyError:
        raise KeyError(f"{obj}.{name} is not in customer_health.sources.salesforce_fields.CUSTOM_FIELDS") from None


def readme_table() -> str:
    """The README's table of the fields, generated from the list (the README holds this text)."""
    lines = [
        "| Object | Field | Mapping key | Type in Setup | Product | Required | What it means |",
        "|---|---|---|---|---|---|---|",
    ]
    for obj in CUSTOM_OBJECTS:
        lines.append(f"| {obj.name} | *(custom object)* | `{obj.key}` | Custom object \"{obj.label}\" | reads | "
                     f"{'yes' if obj.required else 'optional'} | {obj.meaning} |")
    for f in CUSTOM_FIELDS:
        does = {READ: "reads", WRITE: "writes", READ_WRITE: "reads, writes"}[f.access]
        lines.append(f"| {f.object} | `{f.name}` | `{f.mapping_key}` | {f.setup} | {does} | "
                     f"{'yes' if f.required else 'optional'} | {f.meaning} |")
    return "\n".join(lines)


__all__ = [
    "CUSTOM_FIELDS",
    "CUSTOM_FIELD_INDEX",
    "CUSTOM_OBJECTS",
    "FIELDS_BY_KEY",
    "OBJECTS_BY_KEY",
    "OBJECT_ACCESS",
    "STANDARD_WRITES",
    "CustomField",
    "CustomObject",
    "ObjectAccess",
    "READ",
    "READ_WRITE",
    "WRITE",
    "api_name",
    "api_object",
    "custom_field",
    "object_key",
    "readme_table",
]
