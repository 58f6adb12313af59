"""The campaign targets: Salesforce Campaigns (the default) and HubSpot lists, behind one interface.

The campaign actions (advocacy, nurture and engagement enrolments, pausing upsell) and the
health segments act on marketing *programmes* through a ``CampaignTarget``:

* ``SalesforceCampaigns`` - the system the product already requires. A programme is an active
  ``Campaign``; a member is a ``CampaignMember`` (CampaignId + ContactId) created through the
  sObject collections, 200 at a time. Salesforce refuses a second member for the same contact
  with ``DUPLICATE_VALUE`` ("Already a campaign member."): that contact is a member, not an
  error. Pausing sets the member's ``Status`` to the configured pause status (which each paused
  campaign must define as a ``CampaignMemberStatus``, checked before anything changes), resuming
  puts back the status it had. Contacts are addressed by their Salesforce Contact Id.
* ``HubSpotLists`` - through HubSpot's official client (``hubspot-api-client``): a programme is
  a contact list (``processingType`` MANUAL: only those take membership changes through the
  API), members are added and removed with the lists API's membership calls (members already
  on the list are ignored by HubSpot), and contacts are found by e-mail address (batch read by
  ``idProperty=email``; a contact HubSpot does not know is reported, never created). A static
  list has no member status, so pausing takes the contact off the list and resuming puts it
  back.

Which target: ``CUSTOMER_HEALTH_CAMPAIGN_TARGET`` (``salesforce`` or ``hubspot``) when set,
else HubSpot when the Airflow connection ``health_hubspot`` exists, else Salesforce
(``campaign_target_from_airflow``). What the product changed is recorded by
``actions.campaigns``, not here: these classes only speak to the target.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from customer_health import settings
from customer_health.actions.config import ProgrammeSelector
from customer_health.actions.targets import (
    PermanentDeliveryError,
    TransientDeliveryError,
    classify_http,
    translated_errors,
)
from customer_health.retries import retry_after_from

CAMPAIGN_TARGET_ENV = "CUSTOMER_HEALTH_CAMPAIGN_TARGET"
TARGETS = ("salesforce", "hubspot")
SOQL_IDS_PER_QUERY = 200  # Ids per IN (...) list: well inside SOQL's 100,000-character limit
COLLECTION_SIZE = 200  # records per sObject collection call (Salesforce's maximum)
HUBSPOT_CONTACTS_OBJECT = "0-1"  # HubSpot's object type id of contacts
HUBSPOT_BATCH_READ = 100  # inputs per contacts batch read (HubSpot's limit)
HUBSPOT_MEMBERSHIP_BATCH = 100_000  # record ids per membership add/remove call (HubSpot's limit)


@dataclass(frozen=True)
class Programme:
    """One campaign (Salesforce) or list (HubSpot) of a programme group."""

    id: str
    name: str
    group: str


@dataclass(frozen=True)
class Member:
    """One contact's membership of one programme, as the target holds it now."""

    programme_id: str
    contact_ref: str  # Contact Id (Salesforce) or HubSpot contact id
    member_id: str | None = None  # CampaignMember Id (Salesforce)
    status: str | None = None  # CampaignMember Status (Salesforce); HubSpot lists have none


class CampaignTarget(Protocol):
    """What the product needs from a marketing system's campaigns or lists."""

    name: str  # "salesforce" | "hubspot", recorded with every managed membership
    pause_by_status: bool  # True: a pause changes the member's status; False: it removes the member

    def programmes(self, selector: ProgrammeSelector) -> list[Programme]:
        """The programmes the selector names (a PermanentDeliveryError when there is none)."""

    def contact_refs(self, contacts: Sequence[dict[str, str]]) -> dict[str, str]:
        """The target's contact reference for each contact it knows, by e-mail address."""

    def members(self, programme_ids: Sequence[str], refs: Iterable[str]) -> list[Member]:
        """The current memberships of these contacts in these programmes."""

    def add(self, programme_id: str, refs: Sequence[str]) -> dict[str, str | None]:
        """Make the contacts members (idempotent); their member ids (None where the target has none)."""

    def remove(self, members: Sequence[Member]) -> int:
        """End these memberships; how many existed."""

    def check_pausable(self, programmes: Sequence[Programme], pause_status: str) -> None:
        """Fail (before any change) when a pause cannot be made in one of these programmes."""

    def pause(self, members: Sequence[Member], pause_status: str) -> None:
        """Pause these memberships."""

    def resume(self, members: Sequence[tuple[Member, str | None]], pause_status: str) -> list[Member]:
        """Resume paused memberships ``(member, previous status)``; returns those resumed (a
        membership that is gone, or whose status someone changed since, is left alone)."""


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _soql_list(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)


# ----------------------------------------------------------------------------- Salesforce
class SalesforceCampaigns:
    """Salesforce Campaigns and CampaignMembers through simple-salesforce."""

    name = "salesforce"
    pause_by_status = True

    def __init__(self, sf: Any) -> None:
        self.sf = sf
        self._campaigns: list[dict[str, Any]] | None = None

    def _query(self, soql: str) -> list[dict[str, Any]]:
        with translated_errors("Salesforce"):
            return self.sf.query_all(soql)["records"]

    def programmes(self, selector: ProgrammeSelector) -> list[Programme]:
        if self._campaigns is None:
            self._campaigns = self._query("SELECT Id, Name, Type, Status, IsActive FROM Campaign WHERE IsActive = true")
        found = [
            Programme(c["Id"], c["Name"], selector.group)
            for c in self._campaigns
            if selector.matches(c.get("Name"), c.get("Type"))
        ]
        if not found:
            raise PermanentDeliveryError(
                f"Salesforce has no active Campaign {selector.describe()} (programme {selector.group!r}); create it, "
                "activate it, or change programmes in config/actions_v1.yaml"
            )
        return sorted(found, key=lambda p: (p.name, p.id))

    def contact_refs(self, contacts: Sequence[dict[str, str]]) -> dict[str, str]:
        return {c["email"]: c["id"] for c in contacts if c.get("id") and c.get("email")}

    def members(self, programme_ids: Sequence[str], refs: Iterable[str]) -> list[Member]:
        refs = sorted(set(refs))
        if not refs or not programme_ids:
            return []
        out = []
        for chunk in _chunks(refs, SOQL_IDS_PER_QUERY):
            out += [
                Member(r["CampaignId"], r["ContactId"], r["Id"], r["Status"])
                for r in self._query(
                    "SELECT Id, CampaignId, ContactId, Status FROM CampaignMember "
                    f"WHERE CampaignId IN ({_soql_list(programme_ids)}) AND ContactId IN ({_soql_list(chunk)})"
                )
            ]
        return out

    def add(self, programme_id: str, refs: Sequence[str]) -> dict[str, str | None]:
        added: dict[str, str | None] = {}
        duplicates: list[str] = []
        refused: list[str] = []
        for chunk in _chunks(sorted(set(refs)), COLLECTION_SIZE):
            records = [{"attributes": {"type": "CampaignMember"}, "CampaignId": programme_id, "ContactId": ref}
                       for ref in chunk]  # fmt: skip
            with translated_errors("Salesforce"):
                results = self.sf.restful("composite/sobjects", method="POST",
                                          json={"allOrNone": False, "records": records})  # fmt: skip
            for ref, result in zip(chunk, results, strict=True):
                if result.get("success"):
                    added[ref] = result.get("id")
                    continue
                codes = {e.get("statusCode") for e in result.get("errors", [])}
                if codes == {"DUPLICATE_VALUE"}:
                    duplicates.append(ref)  # "Already a campaign member.": it is one
                else:
                    refused.append(f"{ref}: {'; '.join(e.get('message', '') for e in result.get('errors', []))}")
        if duplicates:
            added |= {m.contact_ref: m.member_id for m in self.members([programme_id], duplicates)}
        if refused:
            raise PermanentDeliveryError(
                f"Salesforce refused {len(refused)} CampaignMember(s) for Campaign {programme_id}: {'; '.join(refused[:3])}"
            )
        return added

    def remove(self, members: Sequence[Member]) -> int:
        gone = 0
        for m in members:
            if not m.member_id:
                continue
            try:
                with translated_errors("Salesforce"):
                    self.sf.CampaignMember.delete(m.member_id)
                gone += 1
            except PermanentDeliveryError as exc:
                if "404" not in str(exc) and "ENTITY_IS_DELETED" not in str(exc):
                    raise
        return gone

    def check_pausable(self, programmes: Sequence[Programme], pause_status: str) -> None:
        if not programmes:
            return
        rows = self._query(
            "SELECT CampaignId, Label FROM CampaignMemberStatus "
            f"WHERE CampaignId IN ({_soql_list(sorted({p.id for p in programmes}))})"
        )
        having = {r["CampaignId"] for r in rows if r["Label"] == pause_status}
        lacking = [p for p in programmes if p.id not in having]
        if lacking:
            names = ", ".join(f"'{p.name}' ({p.id})" for p in lacking)
            raise PermanentDeliveryError(
                f"Salesforce Campaign {names} has no member status {pause_status!r}, so nothing was paused: add it "
                "(the campaign's Advanced Setup, Responded unchecked) or change campaign_pause_status in "
                "config/actions_v1.yaml"
            )

    def _set_statuses(self, updates: Sequence[tuple[str, str]]) -> set[str]:
        """Set CampaignMember Status by Id; the Ids Salesforce updated (a deleted member is not)."""
        done: set[str] = set()
        for chunk in _chunks(list(updates), COLLECTION_SIZE):
            records = [{"attributes": {"type": "CampaignMember"}, "Id": member_id, "Status": status}
                       for member_id, status in chunk]  # fmt: skip
            with translated_errors("Salesforce"):
                results = self.sf.restful("composite/sobjects", method="PATCH",
                                          json={"allOrNone": False, "records": records})  # fmt: skip
            refused = []
            for (member_id, _), result in zip(chunk, results, strict=True):
                if result.get("success"):
                    done.add(member_id)
                elif not {e.get("statusCode") for e in result.get("errors", [])} <= {"ENTITY_IS_DELETED"}:
                    refused.append(f"{member_id}: {'; '.join(e.get('message', '') for e in result.get('errors', []))}")
            if refused:
                raise PermanentDeliveryError(f"Salesforce refused a CampaignMember status change: {'; '.join(refused[:3])}")
        return done

    def pause(self, members: Sequence[Member], pause_status: str) -> None:
        self._set_statuses([(m.member_id, pause_status) for m in members if m.member_id])

    def resume(self, members: Sequence[tuple[Member, str | None]], pause_status: str) -> list[Member]:
        if not members:
            return []
        now = {m.member_id: m for m in self.members(sorted({m.programme_id for m, _ in members}),
                                                     {m.contact_ref for m, _ in members})}  # fmt: skip
        wanted = [(m, prev) for m, prev in members
                  if m.member_id in now and now[m.member_id].status == pause_status and prev]  # fmt: skip
        done = self._set_statuses([(m.member_id, prev) for m, prev in wanted])
        return [m for m, _ in wanted if m.member_id in done]


# ----------------------------------------------------------------------------- HubSpot
@contextmanager
def _hubspot_errors(what: str) -> Iterator[None]:
    """HubSpot's ApiException (and urllib3's network errors) as DeliveryErrors."""
    try:
        with translated_errors(what):
            yield
    except (PermanentDeliveryError, TransientDeliveryError):
        raise
    except Exception as exc:
        status = getattr(exc, "status", None)
        if not isinstance(status, int):
            raise
        body = getattr(exc, "body", "") or ""
        body = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        if status in (401, 403):
            raise PermanentDeliveryError(
                f"{what} refused the token (HTTP {status}): {body[:300]}; check the password (a private app "
                f"access token with the crm.lists and crm.objects.contacts scopes) of the Airflow connection "
                f"{settings.HUBSPOT_CONN_ID!r}"
            ) from exc
        if status == 429 or status >= 500:
            raise TransientDeliveryError(f"{what} answered HTTP {status}: {body[:300]}",
                                         retry_after_from(getattr(exc, "headers", None))) from exc
        classify_http(status, body, what)
        raise


class HubSpotLists:
    """HubSpot contact lists through ``hubspot-api-client`` (``hubspot.HubSpot``)."""

    name = "hubspot"
    pause_by_status = False

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def connect(cls, access_token: str, host: str | None = None) -> HubSpotLists:
        """A client for the private app ``access_token`` (``host``: another API base URL)."""
        from hubspot import HubSpot
        from urllib3.util.retry import Retry

        config: dict[str, Any] = {"access_token": access_token, "retry": Retry(total=0, raise_on_status=False)}
        if host:
            config["host"] = host.rstrip("/")
        return cls(HubSpot(**config))

    def programmes(self, selector: ProgrammeSelector) -> list[Programme]:
        if selector.campaign_type:
            raise PermanentDeliveryError(
                f"programme {selector.group!r} selects by Campaign type, which HubSpot lists do not have; select it "
                "by name in config/actions_v1.yaml"
            )
        lists = self._lists_named(selector)
        found = [Programme(str(x.list_id), x.name, selector.group) for x in lists
                 if x.processing_type in ("MANUAL", "SNAPSHOT") and selector.matches(x.name)]  # fmt: skip
        if not found:
            dynamic = [x.name for x in lists if selector.matches(x.name)]
            why = f" ({', '.join(dynamic)} is an active list: its members follow its filters)" if dynamic else ""
            raise PermanentDeliveryError(
                f"HubSpot has no static (MANUAL) contact list {selector.describe()} (programme {selector.group!r}){why}; "
                "create one or change programmes in config/actions_v1.yaml"
            )
        return sorted(found, key=lambda p: (p.name, p.id))

    def _lists_named(self, selector: ProgrammeSelector) -> list[Any]:
        lists_api = self.client.crm.lists.lists_api
        if selector.name is not None:
            with _hubspot_errors("HubSpot lists API"):
                try:
                    return [lists_api.get_by_name(list_name=selector.name, object_type_id=HUBSPOT_CONTACTS_OBJECT).list]
                except Exception as exc:
                    if getattr(exc, "status", None) == 404:
                        return []
                    raise
        from hubspot.crm.lists import ListSearchRequest

        found, offset = [], 0
        while True:
            with _hubspot_errors("HubSpot lists API"):
                page = lists_api.do_search(ListSearchRequest(query=selector.name_contains, offset=offset, count=100))
            found += [x for x in page.lists if x.object_type_id == HUBSPOT_CONTACTS_OBJECT]
            if not page.has_more:
                return found
            offset = page.offset

    def contact_refs(self, contacts: Sequence[dict[str, str]]) -> dict[str, str]:
        from hubspot.crm.contacts import BatchReadInputSimplePublicObjectId, SimplePublicObjectId

        emails = sorted({c["email"] for c in contacts if c.get("email")})
        out: dict[str, str] = {}
        for chunk in _chunks(emails, HUBSPOT_BATCH_READ):
            body = BatchReadInputSimplePublicObjectId(
                id_property="email", properties=["email"], inputs=[SimplePublicObjectId(id=e) for e in chunk],
                properties_with_history=[],
            )
            with _hubspot_errors("HubSpot contacts API"):
                answer = self.client.crm.contacts.batch_api.read(batch_read_input_simple_public_object_id=body)
            for contact in answer.results:
                email = ((contact.properties or {}).get("email") or "").strip().lower()
                if email:
                    out[email] = str(contact.id)
        return out

    def members(self, programme_ids: Sequence[str], refs: Iterable[str]) -> list[Member]:
        refs = set(refs)
        if not refs or not programme_ids:
            return []
        api = self.client.crm.lists.memberships_api
        out = []
        if len(refs) <= 20:  # a few contacts: ask each which lists it is on
            wanted = set(programme_ids)
            for ref in sorted(refs):
                with _hubspot_errors("HubSpot lists API"):
                    answer = api.get_lists(object_type_id=HUBSPOT_CONTACTS_OBJECT, record_id=ref)
                out += [Member(str(x.list_id), ref) for x in answer.results if str(x.list_id) in wanted]
            return out
        for list_id in programme_ids:  # many contacts: page through the lists' members once
            after = None
            while True:
                with _hubspot_errors("HubSpot lists API"):
                    page = api.get_page(list_id=list_id, after=after, limit=250) if after else api.get_page(
                        list_id=list_id, limit=250)
                out += [Member(list_id, str(r.record_id)) for r in page.results if str(r.record_id) in refs]
                nxt = page.paging.next if page.paging else None
                if not nxt or not nxt.after:
                    break
                after = nxt.after
        return out

    def add(self, programme_id: str, refs: Sequence[str]) -> dict[str, str | None]:
        api = self.client.crm.lists.memberships_api
        missing: list[str] = []
        for chunk in _chunks(sorted(set(refs)), HUBSPOT_MEMBERSHIP_BATCH):
            with _hubspot_errors("HubSpot lists API"):
                answer = api.add(list_id=programme_id, request_body=list(chunk))
            missing += list(answer.record_ids_missing or [])
        if missing:
            raise PermanentDeliveryError(
                f"HubSpot list {programme_id}: contacts {', '.join(missing[:5])} do not exist (deleted or merged since "
                "they were looked up)"
            )
        return {ref: None for ref in refs}

    def remove(self, members: Sequence[Member]) -> int:
        api = self.client.crm.lists.memberships_api
        removed = 0
        by_list: dict[str, list[str]] = {}
        for m in members:
            by_list.setdefault(m.programme_id, []).append(m.contact_ref)
        for list_id, refs in sorted(by_list.items()):
            with _hubspot_errors("HubSpot lists API"):
                answer = api.remove(list_id=list_id, request_body=sorted(set(refs)))
            removed += len(answer.record_ids_removed or [])
        return removed

    def check_pausable(self, programmes: Sequence[Programme], pause_status: str) -> None:
        return None  # a static list takes removals; programmes() admitted only MANUAL/SNAPSHOT lists

    def pause(self, members: Sequence[Member], pause_status: str) -> None:
        self.remove(members)

    def resume(self, members: Sequence[tuple[Member, str | None]], pause_status: str) -> list[Member]:
        by_list: dict[str, list[Member]] = {}
        for m, _ in members:
            by_list.setdefault(m.programme_id, []).append(m)
        for list_id, ms in sorted(by_list.items()):
            self.add(list_id, [m.contact_ref for m in ms])
        return [m for m, _ in members]


# ----------------------------------------------------------------------------- choosing one
def chosen_target() -> str | None:
    """The target forced by ``CUSTOMER_HEALTH_CAMPAIGN_TARGET``, or None (decided by connections)."""
    value = os.environ.get(CAMPAIGN_TARGET_ENV, "").strip().lower()
    if not value:
        return None
    if value not in TARGETS:
        raise ValueError(f"{CAMPAIGN_TARGET_ENV}={value!r}: expected one of {', '.join(TARGETS)}")
    return value


def hubspot_from_airflow(conn_id: str = settings.HUBSPOT_CONN_ID) -> HubSpotLists:
    """HubSpot lists from the Airflow connection (password = private app access token; host:
    another API base URL, default HubSpot's)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    if not conn.password:
        raise PermanentDeliveryError(
            f"the Airflow connection {conn_id!r} has no password: set it to a HubSpot private app access token"
        )
    host = conn.host or None
    if host and "://" not in host:
        host = f"{conn.schema or 'https'}://{host}" + (f":{conn.port}" if conn.port else "")
    return HubSpotLists.connect(conn.password, host)


def _hubspot_connection_exists(conn_id: str = settings.HUBSPOT_CONN_ID) -> bool:
    from airflow.sdk import BaseHook

    try:
        BaseHook.get_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - the SDK raises AirflowNotFoundException (or a lookup error)
        if "not defined" in str(exc) or type(exc).__name__ in ("AirflowNotFoundException", "ConnectionNotFound"):
            return False
        raise
    return True


def campaign_target_from_airflow(salesforce: Any = None) -> CampaignTarget:
    """The configured campaign target (inside a task): HubSpot when forced or connected, else
    Salesforce Campaigns through ``salesforce`` (a simple-salesforce client, made from the
    ``health_salesforce`` connection when not given)."""
    choice = chosen_target()
    if choice == "hubspot" or (choice is None and _hubspot_connection_exists()):
        return hubspot_from_airflow()
    if salesforce is None:
        from customer_health.sources.salesforce import HealthSalesforceHook

        salesforce = HealthSalesforceHook(settings.SALESFORCE_CONN_ID).get_conn()
    return SalesforceCampaigns(salesforce)
