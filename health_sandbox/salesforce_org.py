"""The sandbox org's setup: fields and objects it lacks, calls them otherwise, or keeps from the user.

A real org is never exactly the product's defaults: a field was created under another API name,
an object was never created, the integration user's profile lacks field-level security on a field
or Edit on an object. ``configure_org`` records such a setup in the sandbox store
(``sandbox_meta['salesforce_org']``) and the loopback Salesforce answers as such an org does, in
Salesforce's own terms:

* a **hidden** field (not created, or no field-level Read for the user) is absent from
  ``describe`` and refused in a query (``INVALID_FIELD`` "No such column") and a write;
* a **read-only** field (field-level security without Edit) is described with ``createable`` and
  ``updateable`` false, and a write to it is refused (``INVALID_FIELD_FOR_INSERT_UPDATE``
  "Unable to create/update fields ... check the security settings of this field");
* a **hidden** object (never created, or no Read on it) is absent from ``describeGlobal``; its
  ``describe`` is 404 ``NOT_FOUND`` and a query ``INVALID_TYPE`` "sObject type ... is not
  supported";
* a **read-only** object (Read without Create/Edit) is described with ``createable`` and
  ``updateable`` false, and a write is refused (``INSUFFICIENT_ACCESS_OR_READONLY``);
* a **renamed** field or custom object is served, described, queried and written under its new
  API name only (the store keeps the product's default names).

Names in the setup are the store's (the product's default) names: ``"Account.ARR__c"``,
``"NPS_Response__c"``. With no setup the org is the defaults, exactly as before.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, delete, insert, select

from health_sandbox.http import Request, Response
from health_sandbox.salesforce_api import SOBJECTS, SalesforceApp, SObject, _BadField
from health_sandbox.soql import SoqlError
from health_sandbox.store import sandbox_meta

ORG_META = "salesforce_org"
_NO_SUCH_COLUMN = ("No such column '{name}' on entity '{obj}'. If you are attempting to use a custom field, be "
                   "sure to append the '__c' after the custom field name. Please reference your WSDL or the "
                   "describe call for the appropriate names.")


@dataclass(frozen=True)
class OrgSetup:
    """How the sandbox org differs from the product's defaults (names are the store's)."""

    hidden_fields: frozenset[str] = frozenset()  # "Object.Field"
    read_only_fields: frozenset[str] = frozenset()
    hidden_objects: frozenset[str] = frozenset()
    read_only_objects: frozenset[str] = frozenset()
    renamed_fields: Mapping[str, str] = field(default_factory=dict)  # "Object.Field" -> API name
    renamed_objects: Mapping[str, str] = field(default_factory=dict)  # "NPS_Response__c" -> API name

    @property
    def is_default(self) -> bool:
        return not (self.hidden_fields or self.read_only_fields or self.hidden_objects or self.read_only_objects
                    or self.renamed_fields or self.renamed_objects)

    def api_object(self, obj: SObject) -> str:
        """What the org calls ``obj``."""
        return self.renamed_objects.get(obj.name, obj.name)

    def object_named(self, api_name: str) -> SObject | None:
        """The object the org calls ``api_name`` (case-insensitive), unless hidden."""
        for obj in SOBJECTS.values():
            if self.api_object(obj).lower() == api_name.lower():
                return None if obj.name in self.hidden_objects else obj
        return None

    def api_field(self, obj: SObject, column: str) -> str | None:
        """What the org calls the store's ``obj.column``; None when the user cannot see it."""
        key = f"{obj.name}.{column}"
        return None if key in self.hidden_fields else self.renamed_fields.get(key, column)

    def column(self, obj: SObject, api_name: str) -> str | None:
        """The store column of the field the org calls ``api_name`` on ``obj`` (None: no such field)."""
        for col in obj.table.c:
            name = self.api_field(obj, col.name)
            if name is not None and name.lower() == api_name.lower():
                return col.name
        return None

    def field_writable(self, obj: SObject, column: str) -> bool:
        return f"{obj.name}.{column}" not in self.read_only_fields and obj.name not in self.read_only_objects

    def as_json(self) -> str:
        return json.dumps({
            "hidden_fields": sorted(self.hidden_fields), "read_only_fields": sorted(self.read_only_fields),
            "hidden_objects": sorted(self.hidden_objects), "read_only_objects": sorted(self.read_only_objects),
            "renamed_fields": dict(self.renamed_fields), "renamed_objects": dict(self.renamed_objects),
        }, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> OrgSetup:
        data = json.loads(text) if text else {}
        return cls(
            hidden_fields=frozenset(data.get("hidden_fields", ())),
            read_only_fields=frozenset(data.get("read_only_fields", ())),
            hidden_objects=frozenset(data.get("hidden_objects", ())),
            read_only_objects=frozenset(data.get("read_only_objects", ())),
            renamed_fields=dict(data.get("renamed_fields", {})),
            renamed_objects=dict(data.get("renamed_objects", {})),
        )


def configure_org(
    store: Engine,
    *,
    hidden_fields: Iterable[str] = (),
    read_only_fields: Iterable[str] = (),
    hidden_objects: Iterable[str] = (),
    read_only_objects: Iterable[str] = (),
    renamed_fields: Mapping[str, str] | None = None,
    renamed_objects: Mapping[str, str] | None = None,
) -> OrgSetup:
    """Record how the sandbox org differs from the defaults (replacing any earlier setup)."""
    setup = OrgSetup(frozenset(hidden_fields), frozenset(read_only_fields), frozenset(hidden_objects),
                     frozenset(read_only_objects), dict(renamed_fields or {}), dict(renamed_objects or {}))
    unknown = [n for n in [*setup.hidden_objects, *setup.read_only_objects, *setup.renamed_objects]
               if n.lower() not in SOBJECTS]
    unknown += [n for n in [*setup.hidden_fields, *setup.read_only_fields, *setup.renamed_fields]
                if n.partition(".")[0].lower() not in SOBJECTS
                or n.partition(".")[2] not in SOBJECTS[n.partition(".")[0].lower()].table.c]
    if unknown:
        raise ValueError(f"the sandbox org has no {unknown}; name objects and fields as the store does (Account.ARR__c)")
    with store.begin() as conn:
        conn.execute(delete(sandbox_meta).where(sandbox_meta.c.key == ORG_META))
        if not setup.is_default:
            conn.execute(insert(sandbox_meta).values(key=ORG_META, value=setup.as_json()))
    return setup


def org_setup(store: Engine) -> OrgSetup:
    """The org's current setup (the defaults when none was configured)."""
    with store.connect() as conn:
        text = conn.execute(select(sandbox_meta.c.value).where(sandbox_meta.c.key == ORG_META)).scalar_one_or_none()
    return OrgSetup.from_json(text)


class OrgSalesforceApp(SalesforceApp):
    """The loopback Salesforce as the configured org answers it (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_setup = threading.local()

    @property
    def setup(self) -> OrgSetup:
        """The setup read at the start of the current request."""
        setup = getattr(self._request_setup, "value", None)
        return setup if setup is not None else org_setup(self.store)

    def dispatch(self, req: Request) -> Response:
        self._request_setup.value = org_setup(self.store)
        try:
            response = super().dispatch(req)
        finally:
            setup, self._request_setup.value = self._request_setup.value, None
        if setup.is_default or not isinstance(response.body, dict | list):
            return response
        response.body = self._renamed(response.body, setup)
        return response

    # -- names --------------------------------------------------------------------------
    def sobject(self, name: str) -> SObject | None:
        return self.setup.object_named(name)

    def field_name(self, obj: SObject, name: str, position: int | None = None) -> str:  # type: ignore[override]
        column = self.setup.column(obj, name)
        if column is None:
            raise SoqlError(_NO_SUCH_COLUMN.format(name=name, obj=self.setup.api_object(obj)), "INVALID_FIELD",
                            position)
        return column

    def _renamed(self, body: Any, setup: OrgSetup) -> Any:
        """A response body with every record's object and field names as the org calls them."""
        if isinstance(body, list):
            return [self._renamed(item, setup) for item in body]
        if not isinstance(body, dict):
            return body
        attributes = body.get("attributes")
        obj = SOBJECTS.get(str(attributes.get("type", "")).lower()) if isinstance(attributes, dict) else None
        out: dict[str, Any] = {}
        for key, value in body.items():
            if obj is not None and key == "attributes":
                value = dict(value, type=setup.api_object(obj))
                if "url" in value:
                    value["url"] = value["url"].replace(f"/sobjects/{obj.name}/", f"/sobjects/{setup.api_object(obj)}/")
            elif obj is not None and key in obj.table.c:
                renamed = setup.api_field(obj, key)
                if renamed is None:
                    continue  # a field the user cannot see is never served
                key = renamed
            if isinstance(value, dict | list):
                value = self._renamed(value, setup)
            out[key] = value
        return out

    # -- describe -----------------------------------------------------------------------
    def describe_global(self, req: Request) -> Response:
        response = super().describe_global(req)
        setup = self.setup
        objects = []
        for summary in response.body["sobjects"]:
            obj = SOBJECTS[summary["name"].lower()]
            if obj.name in setup.hidden_objects:
                continue
            objects.append(self._summary(obj, summary, setup))
        response.body = dict(response.body, sobjects=objects)
        return response

    def _summary(self, obj: SObject, summary: dict[str, Any], setup: OrgSetup) -> dict[str, Any]:
        api = setup.api_object(obj)
        out = dict(summary, name=api)
        out["urls"] = {k: v.replace(f"/sobjects/{obj.name}", f"/sobjects/{api}") for k, v in summary["urls"].items()}
        if obj.name in setup.read_only_objects:
            out |= {"createable": False, "updateable": False, "deletable": False}
        return out

    def describe(self, req: Request) -> Response:
        setup = self.setup
        obj = self.sobject(req.params["obj"])
        if obj is None:
            return self._unknown_object(req.params["obj"])
        # The base class describes the store's object under its own name: let it, then rename.
        self._request_setup.value = OrgSetup()
        try:
            req.params = dict(req.params, obj=obj.name)
            response = super().describe(req)
        finally:
            self._request_setup.value = setup
        if response.status != 200:
            return response
        fields = []
        for f in response.body["fields"]:
            column = f["name"]
            name = setup.api_field(obj, column)
            if name is None:
                continue
            f = dict(f, name=name)
            if not setup.field_writable(obj, column):
                f |= {"createable": False, "updateable": False}
            fields.append(f)
        response.body = dict(self._summary(obj, response.body, setup), fields=fields)
        return response

    # -- writes -------------------------------------------------------------------------
    def _values(self, obj: SObject, body: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        setup = self.setup
        if obj.name in setup.read_only_objects:
            raise _BadField("insufficient access rights on object id", "INSUFFICIENT_ACCESS_OR_READONLY", [])
        for key in body:
            if key == "attributes":
                continue
            column = setup.column(obj, key)
            if column is not None and not setup.field_writable(obj, column):
                raise _BadField(f"Unable to create/update fields: {key}. Please check the security settings of this "
                                "field and verify that it is read/write for your profile or permission set.",
                                "INVALID_FIELD_FOR_INSERT_UPDATE", [key])
        return super()._values(obj, body, *args, **kwargs)


__all__ = ["ORG_META", "OrgSalesforceApp", "OrgSetup", "configure_org", "org_setup"]
