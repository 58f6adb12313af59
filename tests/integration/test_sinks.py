"""The Slack, HubSpot and SMTP sandboxes answer the real clients like the real systems do.

Each test serves the sink on loopback over a private store and talks to it with the client the
pipeline uses (slack_sdk's WebhookClient, HubSpot's official ``hubspot-api-client``, smtplib
through Airflow's SMTP hook), then reads what the sink recorded in ``sandbox_writes``.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest
import requests
from slack_sdk.webhook import WebhookClient
from sqlalchemy import func, insert, select

from health_sandbox import hubspot_api, slack_api
from health_sandbox.connections import SANDBOX_HUBSPOT_TOKEN
from health_sandbox.http import serve
from health_sandbox.smtp_sink import start_smtp
from health_sandbox.store import (
    hs_contact,
    hs_list,
    hs_list_membership,
    sandbox_faults,
    sandbox_writes,
    store_engine,
)


@pytest.fixture()
def store(tmp_path):
    """A sandbox store with HubSpot contacts and lists: ana (101) is on the upsell list (1)."""
    eng = store_engine(tmp_path / "company.db")
    with eng.begin() as conn:
        conn.execute(insert(hs_contact), [
            {"id": "101", "email": "ana@acme.test", "archived": False},
            {"id": "102", "email": "bo@acme.test", "archived": False},
        ])
        conn.execute(insert(hs_list), [
            {"listId": "1", "name": "Upsell - Analytics add-on", "processingType": "MANUAL", "objectTypeId": "0-1"},
            {"listId": "2", "name": "Product Tips Sequence", "processingType": "MANUAL", "objectTypeId": "0-1"},
            {"listId": "3", "name": "Engaged this month", "processingType": "DYNAMIC", "objectTypeId": "0-1"},
        ])
        conn.execute(insert(hs_list_membership).values(listId="1", recordId="101"))
    return eng


def writes(store, system: str) -> list:
    with store.connect() as conn:
        return conn.execute(select(sandbox_writes).where(sandbox_writes.c.system == system)).fetchall()


def arm(store, system: str, kind: str, times: int = 1, retry_after: float | None = None) -> None:
    with store.begin() as conn:
        conn.execute(insert(sandbox_faults).values(
            system=system, method="*", path_regex="", kind=kind, remaining=times, retry_after=retry_after, skip=0
        ))


# ----------------------------------------------------------------------------- Slack
@pytest.fixture()
def slack(store, tmp_path):
    running = serve(slack_api.build_app(store, tmp_path))
    yield running
    running.stop()


def test_slack_webhook_accepts_a_message_and_records_it(store, slack):
    client = WebhookClient(f"{slack.base_url}/services/T000/B000/XXXX")
    resp = client.send(text="Acme is Critical")
    assert (resp.status_code, resp.body) == (200, "ok")
    [w] = writes(store, "slack")
    assert w.object == "message" and w.body["text"] == "Acme is Critical"


def test_slack_webhook_rejects_an_unparsable_payload_without_recording(store, slack):
    resp = requests.post(f"{slack.base_url}/services/T/B/X", data=b"{not json", timeout=5,
                         headers={"Content-Type": "application/json"})
    assert (resp.status_code, resp.text) == (400, "invalid_payload")
    assert writes(store, "slack") == []


def test_slack_webhook_rate_limit_carries_retry_after(store, slack):
    arm(store, "slack", "rate_limit", retry_after=3)
    resp = requests.post(f"{slack.base_url}/services/T/B/X", json={"text": "hi"}, timeout=5)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "3"
    assert writes(store, "slack") == []


# ----------------------------------------------------------------------------- HubSpot
@pytest.fixture()
def hubspot(store, tmp_path):
    from hubspot import HubSpot
    from urllib3.util.retry import Retry

    running = serve(hubspot_api.build_app(store, tmp_path))
    yield HubSpot(access_token=SANDBOX_HUBSPOT_TOKEN, host=running.base_url, retry=Retry(total=0))
    running.stop()


def test_hubspot_finds_lists_by_name_and_says_404_for_an_unknown_one(hubspot):
    from hubspot.crm.lists import ApiException

    found = hubspot.crm.lists.lists_api.get_by_name(list_name="Product Tips Sequence", object_type_id="0-1").list
    assert (found.list_id, found.processing_type, found.size) == ("2", "MANUAL", 0)
    with pytest.raises(ApiException) as missing:
        hubspot.crm.lists.lists_api.get_by_name(list_name="No such list", object_type_id="0-1")
    assert missing.value.status == 404 and '"category": "OBJECT_NOT_FOUND"' in missing.value.body


def test_adding_a_member_twice_changes_nothing_the_second_time(store, hubspot):
    api = hubspot.crm.lists.memberships_api
    first = api.add(list_id="2", request_body=["102", "999"])
    second = api.add(list_id="2", request_body=["102"])
    assert (first.records_ids_added, first.record_ids_missing, second.records_ids_added) == (["102"], ["999"], [])
    assert [w.created for w in writes(store, "hubspot")] == [True, False]
    removed = api.remove(list_id="1", request_body=["101"])
    assert removed.record_ids_removed == ["101"]
    assert [m.list_id for m in api.get_lists(object_type_id="0-1", record_id="102").results] == ["2"]


def test_an_active_list_refuses_membership_changes(hubspot):
    from hubspot.crm.lists import ApiException

    with pytest.raises(ApiException) as refused:
        hubspot.crm.lists.memberships_api.add(list_id="3", request_body=["101"])
    assert refused.value.status == 400 and "MANUAL or SNAPSHOT" in refused.value.body


def test_contacts_are_found_by_email_and_a_missing_one_is_a_207_error(hubspot):
    from hubspot.crm.contacts import BatchReadInputSimplePublicObjectId, SimplePublicObjectId

    body = BatchReadInputSimplePublicObjectId(id_property="email", properties=["email"], properties_with_history=[],
                                              inputs=[SimplePublicObjectId(id="ANA@acme.test"),
                                                      SimplePublicObjectId(id="zed@acme.test")])
    answer = hubspot.crm.contacts.batch_api.read(batch_read_input_simple_public_object_id=body)
    assert [(c.id, c.properties["email"]) for c in answer.results] == [("101", "ana@acme.test")]
    assert answer.num_errors == 1 and answer.errors[0].context == {"ids": ["zed@acme.test"]}


def test_list_members_page_with_after(store, hubspot):
    with store.begin() as conn:
        conn.execute(insert(hs_contact), [{"id": str(200 + i), "email": f"p{i}@acme.test", "archived": False}
                                          for i in range(5)])
    api = hubspot.crm.lists.memberships_api
    api.add(list_id="2", request_body=[str(200 + i) for i in range(5)])
    first = api.get_page(list_id="2", limit=3)
    rest = api.get_page(list_id="2", limit=3, after=first.paging.next.after)
    assert [r.record_id for r in first.results + rest.results] == [str(200 + i) for i in range(5)]
    assert rest.paging is None


def test_hubspot_refuses_a_wrong_token(store, tmp_path):
    running = serve(hubspot_api.build_app(store, tmp_path))
    try:
        resp = requests.put(f"{running.base_url}/crm/v3/lists/1/memberships/add", json=["102"], timeout=5,
                            headers={"Authorization": "Bearer wrong"})
    finally:
        running.stop()
    assert resp.status_code == 401 and resp.json()["category"] == "INVALID_AUTHENTICATION"
    assert writes(store, "hubspot") == []


# ----------------------------------------------------------------------------- SMTP
@pytest.fixture()
def smtp(store):
    running = start_smtp(store)
    yield running
    running.stop()


def test_smtp_sink_records_each_message_with_its_message_id(store, smtp):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "health@vendor.test", "vp@vendor.test", "Acme is Critical"
    msg["Message-ID"] = "<3f2a9c.executive-escalation@customer-health.local>"
    msg.set_content("Usage fell 60% in 30 days.")
    for _ in range(2):
        with smtplib.SMTP("127.0.0.1", smtp.port, timeout=5) as client:
            client.send_message(msg)
    first, second = writes(store, "smtp")
    assert first.idempotency_key == "<3f2a9c.executive-escalation@customer-health.local>"
    assert first.body["subject"] == "Acme is Critical" and "Usage fell" in first.body["body"]
    assert first.body["rcpt_tos"] == ["vp@vendor.test"]
    assert (first.created, second.created) == (True, False)
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sandbox_writes)).scalar() == 2
