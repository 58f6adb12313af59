"""The Slack, marketing and SMTP sandboxes answer the real clients like the real systems do.

Each test serves the sink on loopback over a private store and talks to it with the client the
pipeline uses (slack_sdk's WebhookClient, requests, smtplib through Airflow's SMTP hook), then
reads what the sink recorded in ``sandbox_writes``.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest
import requests
from slack_sdk.webhook import WebhookClient
from sqlalchemy import func, insert, select

from health_sandbox import marketing_api, slack_api
from health_sandbox.http import serve
from health_sandbox.marketing_api import SANDBOX_MARKETING_TOKEN
from health_sandbox.smtp_sink import start_smtp
from health_sandbox.store import mk_list, mk_membership, sandbox_faults, sandbox_writes, store_engine


@pytest.fixture()
def store(tmp_path):
    """A sandbox store with one upsell and one engagement list; ana@acme.test is in the upsell list."""
    eng = store_engine(tmp_path / "company.db")
    with eng.begin() as conn:
        conn.execute(insert(mk_list), [
            {"id": 1, "name": "Upsell: Analytics add-on", "kind": "upsell"},
            {"id": 2, "name": "Engagement sequence", "kind": "engagement"},
        ])
        conn.execute(insert(mk_membership).values(list_id=1, email="ana@acme.test", status="active"))
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


# ----------------------------------------------------------------------------- marketing
@pytest.fixture()
def marketing(store, tmp_path):
    running = serve(marketing_api.build_app(store, tmp_path))
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {SANDBOX_MARKETING_TOKEN}"
    session.base_url = running.base_url  # type: ignore[attr-defined]
    yield session
    running.stop()


def test_marketing_lists_carry_their_kind(marketing):
    lists = marketing.get(f"{marketing.base_url}/contacts/v1/lists", timeout=5).json()["lists"]
    assert {(x["listId"], x["kind"]) for x in lists} == {(1, "upsell"), (2, "engagement")}


def test_marketing_requires_a_bearer_token(marketing):
    resp = requests.get(f"{marketing.base_url}/contacts/v1/lists", timeout=5)
    assert resp.status_code == 401


def test_adding_a_member_twice_discards_the_second_add(store, marketing):
    url = f"{marketing.base_url}/contacts/v1/lists/2/add"
    first = marketing.post(url, json={"emails": ["bo@acme.test"]}, timeout=5).json()
    second = marketing.post(url, json={"emails": ["bo@acme.test"]}, timeout=5).json()
    assert first["updated"] == ["bo@acme.test"] and second["discarded"] == ["bo@acme.test"]
    assert [w.created for w in writes(store, "marketing")] == [True, False]


def test_pausing_a_membership_twice_changes_nothing_the_second_time(store, marketing):
    url = f"{marketing.base_url}/marketing/v1/lists/1/memberships/ana@acme.test"
    assert marketing.put(url, json={"status": "paused"}, timeout=5).json()["changed"] is True
    assert marketing.put(url, json={"status": "paused"}, timeout=5).json()["changed"] is False
    assert [w.created for w in writes(store, "marketing")] == [True, False]
    with store.connect() as conn:
        assert conn.execute(select(mk_membership.c.status).where(mk_membership.c.list_id == 1)).scalar() == "paused"
    found = marketing.get(f"{marketing.base_url}/marketing/v1/memberships", params={"email": "ana@acme.test"},
                          timeout=5).json()["memberships"]
    assert found == [{"listId": 1, "name": "Upsell: Analytics add-on", "kind": "upsell",
                      "email": "ana@acme.test", "status": "paused"}]


def test_pausing_with_a_bad_status_or_unknown_member_is_rejected(marketing):
    base = f"{marketing.base_url}/marketing/v1/lists/1/memberships"
    assert marketing.put(f"{base}/ana@acme.test", json={"status": "stopped"}, timeout=5).status_code == 400
    assert marketing.put(f"{base}/nobody@acme.test", json={"status": "paused"}, timeout=5).status_code == 404


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
