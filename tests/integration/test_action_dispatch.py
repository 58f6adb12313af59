"""Dispatch delivers every action exactly once, through the real clients, to the loopback sinks.

The sinks (Salesforce over HTTPS, Slack, SMTP) run on loopback over a private sandbox store;
the clients come from the project's Airflow connections (``clients_from_airflow``: the
Salesforce hook's simple-salesforce client, also the campaign target - Salesforce Campaigns by
default -, the Slack webhook hook's WebhookClient, the SMTP hook). Every assertion reads what
the sandbox recorded (``sandbox_writes``, ``sf_task``, ``sf_campaign_member``, ``sf_account``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from slack_sdk.webhook import WebhookResponse
from sqlalchemy import delete, insert, select, update

from customer_health.actions.decide import decide_actions
from customer_health.actions.dispatch import dispatch
from customer_health.actions.targets import DispatchClients, clients_from_airflow
from customer_health.actions.writeback import writeback_health_fields
from customer_health.retries import RetriesExhausted, RetryPolicy
from customer_health.warehouse.schema import action_outbox, crm_writeback_state, health_scores
from health_sandbox import salesforce_api, slack_api
from health_sandbox.connections import as_environment, sandbox_connections
from health_sandbox.http import serve
from health_sandbox.smtp_sink import start_smtp
from health_sandbox.store import (
    sandbox_faults,
    sandbox_writes,
    sf_account,
    sf_campaign,
    sf_campaign_member,
    sf_campaign_member_status,
    sf_contact,
    sf_task,
    store_engine,
)
from health_sandbox.tls import ensure_certificate, server_context
from tests.unit.test_action_rules import LIVE, D, Warehouse

RULES = LIVE  # every action type live and uncapped: delivery itself is under test here
# Salesforce Campaigns named as the shipped programmes select them (config/actions_v1.yaml).
CAMPAIGNS = {"UP": "Upsell - Analytics add-on", "EX": "Expansion - more seats", "EN": "Product Tips Sequence",
             "RF": "Advocacy - Referral Program", "CS": "Advocacy - Case Study Candidates",
             "BT": "Advocacy - Beta Program", "RV": "Advocacy - Review Site Prompts", "NL": "Monthly newsletter"}


def campaign_id(code: str) -> str:
    return f"701{code}0000000000AAA"


class Sinks:
    """The target systems on loopback, and what they recorded."""

    def __init__(self, folder, monkeypatch) -> None:
        self.store = store_engine(folder / "company.db")
        cert, _ = ensure_certificate(folder)
        self.servers = {
            "salesforce": serve(salesforce_api.build_app(self.store, folder), tls=server_context(folder)),
            "slack": serve(slack_api.build_app(self.store, folder)),
        }
        self.smtp = start_smtp(self.store)
        endpoints = {name: s.base_url for name, s in self.servers.items()} | {
            "zendesk": "http://127.0.0.1:9", "stripe": "http://127.0.0.1:9", "smtp_host": "127.0.0.1",
            "smtp_port": self.smtp.port, "ca_cert": str(cert), "product_db_url": "sqlite:///unused.db"}
        for name, value in as_environment(sandbox_connections(endpoints)).items():
            monkeypatch.setenv(name, value)
        # requests lets these override a session's own CA bundle; the sandbox's certificate must win.
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        with self.store.begin() as conn:
            conn.execute(insert(sf_campaign), [{"Id": campaign_id(c), "Name": n, "Type": "Email", "IsActive": True,
                                                "IsDeleted": False} for c, n in CAMPAIGNS.items()])
            conn.execute(insert(sf_campaign_member_status), [
                {"Id": f"01Y{c}{i:013d}AAA", "CampaignId": campaign_id(c), "Label": label, "HasResponded": label == "Responded",
                 "IsDefault": label == "Sent", "SortOrder": i, "IsDeleted": False}
                for c in CAMPAIGNS for i, label in enumerate(["Sent", "Responded", *(["Paused"] if c in ("UP", "EX") else [])])
            ])

    def stop(self) -> None:
        for s in self.servers.values():
            s.stop()
        self.smtp.stop()

    def writes(self, system: str) -> list:
        with self.store.connect() as conn:
            return conn.execute(
                select(sandbox_writes).where(sandbox_writes.c.system == system).order_by(sandbox_writes.c.id)
            ).fetchall()

    def contacts(self, wh: Warehouse) -> None:
        """The warehouse's contacts as Salesforce Contacts (a CampaignMember needs a real one)."""
        from customer_health.warehouse.schema import raw_sf_contact

        with wh.engine.connect() as conn:
            rows = conn.execute(select(raw_sf_contact)).fetchall()
        with self.store.begin() as conn:
            conn.execute(insert(sf_contact).prefix_with("OR IGNORE"), [
                {"Id": r.id, "AccountId": r.account_id, "LastName": r.last_name, "Email": r.email, "IsDeleted": False}
                for r in rows])  # fmt: skip

    def member(self, code: str, contact_id: str, status: str = "Sent") -> None:
        with self.store.begin() as conn:
            conn.execute(insert(sf_campaign_member).values(
                Id=f"00v{code}{contact_id[-6:]}{status[:3]}", CampaignId=campaign_id(code), ContactId=contact_id,
                Status=status, HasResponded=False, IsDeleted=False))  # fmt: skip

    def membership_status(self) -> dict[tuple[str, str], str]:
        """(campaign code, contact id) -> Status of every current CampaignMember."""
        codes = {campaign_id(c): c for c in CAMPAIGNS}
        with self.store.connect() as conn:
            return {(codes[r.CampaignId], r.ContactId): r.Status for r in conn.execute(
                select(sf_campaign_member).where(sf_campaign_member.c.IsDeleted.isnot(True)))}

    def tasks(self) -> list:
        with self.store.connect() as conn:
            return conn.execute(select(sf_task).order_by(sf_task.c.Health_Action_Key__c)).fetchall()

    def fault(self, system: str, kind: str, times: int, skip: int = 0, retry_after: float | None = None) -> None:
        with self.store.begin() as conn:
            conn.execute(insert(sandbox_faults).values(system=system, method="*", path_regex="", kind=kind,
                                                       remaining=times, retry_after=retry_after, skip=skip))

    def clear_faults(self) -> None:
        with self.store.begin() as conn:
            conn.execute(delete(sandbox_faults))


@pytest.fixture()
def sinks(tmp_path, monkeypatch):
    s = Sinks(tmp_path / "sandbox", monkeypatch)
    yield s
    s.stop()


@pytest.fixture()
def wh(sqlite_warehouse_url) -> Warehouse:
    return Warehouse(sqlite_warehouse_url)


@pytest.fixture()
def clients(sinks):
    c = clients_from_airflow()
    c.retry = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
    c.waits = []
    c.sleep = c.waits.append  # count the backoff instead of sleeping through it
    return c


def statuses(wh: Warehouse, action_type: str) -> list[str]:
    return [r.status for r in wh.outbox(action_type=action_type)]


# ----------------------------------------------------------------------------- Salesforce tasks
def test_checkin_tasks_are_upserted_by_health_action_key_and_a_redispatch_writes_nothing(wh, sinks, clients):
    for key, name in [("001A", "Acme"), ("001B", "Bolt")]:
        wh.score(wh.account(key, name), D, "At Risk", 41, "Neutral")
    decide_actions(wh.engine, D, "v1", RULES)
    report = dispatch(wh.engine, "checkin_task", None, clients, RULES)
    assert (report.sent, report.failed) == (2, 0)
    tasks = sinks.tasks()
    assert [t.Health_Action_Key__c for t in tasks] == ["001A:checkin_task:2026-10-01:v1", "001B:checkin_task:2026-10-01:v1"]
    assert {(t.Subject, str(t.ActivityDate), t.OwnerId, t.Status) for t in tasks} == {
        ("Check-in call", "2026-10-03", "005CSM", "Not Started")}
    assert "Active users fell from 40 to 12" in tasks[0].Description
    assert [r.external_id for r in wh.outbox(action_type="checkin_task")] == [t.Id for t in tasks]

    writes = len(sinks.writes("salesforce"))
    assert dispatch(wh.engine, "checkin_task", None, clients, RULES).sent == 0
    assert len(sinks.writes("salesforce")) == writes


def test_a_task_delivered_twice_after_a_lost_acknowledgement_is_still_one_task(wh, sinks, clients):
    wh.score(wh.account("001A", "Acme"), D, "At Risk", 41, "Neutral")
    decide_actions(wh.engine, D, "v1", RULES)
    dispatch(wh.engine, "checkin_task", None, clients, RULES)
    with wh.engine.begin() as conn:  # the dispatcher died after Salesforce answered, before recording it
        conn.execute(update(action_outbox).values(status="sending"))
    dispatch(wh.engine, "checkin_task", None, clients, RULES)
    assert len(sinks.tasks()) == 1
    assert [w.created for w in sinks.writes("salesforce") if w.object == "Task"] == [True, False]


def test_a_permanent_salesforce_rejection_is_left_failed_with_its_error(wh, sinks, clients):
    wh.score(wh.account("001A", "Acme"), D, "At Risk", 41, "Neutral")
    decide_actions(wh.engine, D, "v1", RULES)
    [row] = wh.outbox(action_type="checkin_task")
    payload = json.loads(row.payload)
    payload["fields"]["Bogus__c"] = "x"
    with wh.engine.begin() as conn:
        conn.execute(update(action_outbox).where(action_outbox.c.idempotency_key == row.idempotency_key)
                     .values(payload=json.dumps(payload)))
    report = dispatch(wh.engine, "checkin_task", None, clients, RULES)
    assert (report.sent, report.failed) == (0, 1)
    [row] = wh.outbox(action_type="checkin_task")
    assert row.status == "failed" and "400" in row.last_error and "Bogus__c" in row.last_error
    assert sinks.tasks() == []
    assert dispatch(wh.engine, "checkin_task", None, clients, RULES).failed == 0  # not retried blindly


# ----------------------------------------------------------------------------- escalations
def test_executive_escalation_reaches_slack_and_email_exactly_once(wh, sinks, clients):
    wh.score(wh.account("001A", "Acme"), D, "Critical", 18, "At Risk")
    decide_actions(wh.engine, D, "v1", RULES)
    for _ in range(2):
        dispatch(wh.engine, "executive_slack", None, clients, RULES)
        dispatch(wh.engine, "executive_email", None, clients, RULES)
    [slack] = sinks.writes("slack")
    assert "Acme is Critical" in slack.body["text"] and "Vera VP" in slack.body["text"]
    [mail] = sinks.writes("smtp")
    assert mail.body["rcpt_tos"] == ["vera@vendor.test"]  # internal only: never the customer's sponsor
    assert mail.idempotency_key == json.loads(wh.outbox(action_type="executive_email")[0].payload)["message_id"]
    assert "Executive escalation: Acme is Critical" in mail.body["subject"]
    for action_type in ("emergency_review_task", "recovery_plan_task"):
        dispatch(wh.engine, action_type, None, clients, RULES)
    assert {t.Subject for t in sinks.tasks()} == {"Emergency review", "Recovery plan"}


def test_a_5xx_mid_batch_then_a_redispatch_delivers_every_message_exactly_once(wh, sinks, clients):
    for key, name in [("001A", "Acme"), ("001B", "Bolt"), ("001C", "Cogs")]:
        wh.score(wh.account(key, name), D, "Critical", 18, "At Risk")
    decide_actions(wh.engine, D, "v1", RULES)
    sinks.fault("slack", "server_error", times=100, skip=1)  # the first message passes, then an outage
    first = dispatch(wh.engine, "executive_slack", None, clients, RULES)
    assert (first.sent, first.deferred) == (1, 2)
    assert statuses(wh, "executive_slack") == ["sent", "pending", "pending"]
    assert "503" in wh.outbox(action_type="executive_slack")[1].last_error
    sinks.clear_faults()
    second = dispatch(wh.engine, "executive_slack", None, clients, RULES)
    assert (second.sent, second.deferred) == (2, 0)
    texts = [w.body["text"] for w in sinks.writes("slack")]
    assert len(texts) == 3 and all(any(n in t for t in texts) for n in ("Acme", "Bolt", "Cogs"))


def test_a_429_is_retried_after_retry_after_within_the_same_dispatch(wh, sinks, clients):
    wh.score(wh.account("001A", "Acme"), D, "Critical", 18, "At Risk")
    decide_actions(wh.engine, D, "v1", RULES)
    sinks.fault("slack", "rate_limit", times=1, retry_after=1)
    report = dispatch(wh.engine, "executive_slack", None, clients, RULES)
    assert (report.sent, report.retries) == (1, 1)
    assert clients.waits == [1.0]  # the server's Retry-After (1 s), not the 0.01 s backoff
    assert len(sinks.writes("slack")) == 1


class FlakySlack:
    """A Slack webhook client answering with ``answers`` in turn (slack_sdk's own response type)."""

    def __init__(self, *answers: tuple[int, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.sent: list[str] = []

    def send(self, *, text: str) -> WebhookResponse:
        status, headers = self.answers.pop(0)
        if status < 300:
            self.sent.append(text)
        return WebhookResponse(url="https://hooks.slack.test/x", status_code=status,
                               body="ok" if status < 300 else "rate_limited", headers=headers)


def test_a_retry_after_given_as_an_http_date_is_honoured(wh):
    """RFC 9110 allows Retry-After as an HTTP date; the wait is the time until that date."""
    wh.score(wh.account("001A", "Acme"), D, "Critical", 18, "At Risk")
    decide_actions(wh.engine, D, "v1", RULES)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=40), usegmt=True)
    slack = FlakySlack((429, {"Retry-After": later}), (200, {}))
    waits: list[float] = []
    clients = DispatchClients(slack=slack, retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05),
                              sleep=waits.append)
    report = dispatch(wh.engine, "executive_slack", None, clients, RULES)
    assert (report.sent, report.retries, len(slack.sent)) == (1, 1, 1)
    assert len(waits) == 1 and 37 <= waits[0] <= 40  # until the date (1 s resolution), not the backoff


def test_a_retry_after_beyond_the_policy_defers_the_row_instead_of_waiting_or_hammering(wh):
    wh.score(wh.account("001A", "Acme"), D, "Critical", 18, "At Risk")
    decide_actions(wh.engine, D, "v1", RULES)
    slack = FlakySlack((429, {"retry-after": "3600"}))
    waits: list[float] = []
    clients = DispatchClients(slack=slack, retry=RetryPolicy(attempts=3, max_retry_after=120), sleep=waits.append)
    report = dispatch(wh.engine, "executive_slack", None, clients, RULES)
    assert (report.sent, report.deferred, waits) == (0, 1, [])
    assert statuses(wh, "executive_slack") == ["pending"]
    assert "asked to wait 3600s" in wh.outbox(action_type="executive_slack")[0].last_error


def test_an_smtp_outage_leaves_the_email_pending_and_it_is_sent_once_later(wh, sinks, clients):
    wh.score(wh.account("001A", "Acme"), D, "Critical", 18, "At Risk")
    decide_actions(wh.engine, D, "v1", RULES)
    sinks.smtp.stop()
    assert dispatch(wh.engine, "executive_email", None, clients, RULES).deferred == 1
    assert statuses(wh, "executive_email") == ["pending"]
    sinks.smtp = start_smtp(sinks.store, port=sinks.smtp.port)
    assert dispatch(wh.engine, "executive_email", None, clients, RULES).sent == 1
    assert len(sinks.writes("smtp")) == 1


# ----------------------------------------------------------------------------- campaigns
def test_at_risk_pauses_upsell_and_expansion_and_recovery_resumes_only_those(wh, sinks, clients):
    a = wh.account("001A", "Acme")
    ana, sam = "003001Aa", "003001Ab"
    sinks.contacts(wh)
    sinks.member("UP", ana)
    sinks.member("EX", sam, status="Responded")
    sinks.member("NL", ana)  # the newsletter is not an upsell
    sinks.member("UP", sam, status="Paused")  # paused by a marketer: theirs to resume, not ours
    day0 = D - timedelta(days=5)
    wh.score(a, day0, "At Risk", 41, "Neutral")
    decide_actions(wh.engine, day0, "v1", RULES)
    dispatch(wh.engine, "checkin_task", None, clients, RULES)
    assert dispatch(wh.engine, "campaign_pause", None, clients, RULES).sent == 1
    assert sinks.membership_status() == {("UP", ana): "Paused", ("EX", sam): "Paused", ("NL", ana): "Sent",
                                         ("UP", sam): "Paused"}
    [pause] = wh.outbox(action_type="campaign_pause")
    assert json.loads(pause.result) == {"paused": 2, "already_paused": 1,
                                        "programmes": ["Upsell - Analytics add-on", "Expansion - more seats"]}
    wh.score(a, D, "Neutral", 62, "At Risk")
    decide_actions(wh.engine, D, "v1", RULES)
    assert dispatch(wh.engine, "campaign_resume", None, clients, RULES).sent == 1
    assert dispatch(wh.engine, "rescue_tasks_complete", None, clients, RULES).sent == 1
    assert sinks.membership_status() == {("UP", ana): "Sent", ("EX", sam): "Responded", ("NL", ana): "Sent",
                                         ("UP", sam): "Paused"}  # each back to what it was; the marketer's stays
    [task] = sinks.tasks()
    assert task.Status == "Completed"
    [pause] = wh.outbox(action_type="campaign_pause")
    assert pause.resolved_by == f"{a}:campaign_resume:{D}:v1"
    assert decide_actions(wh.engine, D + timedelta(days=1), "v1", RULES).inserted == 0  # nothing left open


def test_a_resume_leaves_a_status_a_marketer_changed_since_the_pause(wh, sinks, clients):
    a = wh.account("001A", "Acme")
    sinks.contacts(wh)
    sinks.member("UP", "003001Aa")
    wh.score(a, D - timedelta(days=5), "At Risk", 41, "Neutral")
    decide_actions(wh.engine, D - timedelta(days=5), "v1", RULES)
    dispatch(wh.engine, "campaign_pause", None, clients, RULES)
    with sinks.store.begin() as conn:  # marketing took the contact out of the offer meanwhile
        conn.execute(update(sf_campaign_member).values(Status="Responded"))
    wh.score(a, D, "Neutral", 62, "At Risk")
    decide_actions(wh.engine, D, "v1", RULES)
    dispatch(wh.engine, "campaign_resume", None, clients, RULES)
    assert sinks.membership_status() == {("UP", "003001Aa"): "Responded"}


def test_a_pause_in_a_campaign_without_the_pause_status_changes_nothing_and_says_what_to_add(wh, sinks, clients):
    a = wh.account("001A", "Acme")
    sinks.contacts(wh)
    sinks.member("UP", "003001Aa")
    with sinks.store.begin() as conn:
        conn.execute(delete(sf_campaign_member_status).where(sf_campaign_member_status.c.Label == "Paused",
                                                             sf_campaign_member_status.c.CampaignId == campaign_id("EX")))
    wh.score(a, D, "At Risk", 41, "Neutral")
    decide_actions(wh.engine, D, "v1", RULES)
    assert dispatch(wh.engine, "campaign_pause", None, clients, RULES).failed == 1
    [row] = wh.outbox(action_type="campaign_pause")
    assert "Campaign 'Expansion - more seats'" in row.last_error and "no member status 'Paused'" in row.last_error
    assert sinks.membership_status() == {("UP", "003001Aa"): "Sent"}


def test_a_pause_interrupted_by_an_outage_resumes_where_it_stopped(wh, sinks, clients):
    a = wh.account("001A", "Acme")
    sinks.contacts(wh)
    sinks.member("UP", "003001Aa")
    sinks.member("EX", "003001Aa")
    wh.score(a, D, "At Risk", 41, "Neutral")
    decide_actions(wh.engine, D, "v1", RULES)
    sinks.fault("salesforce", "server_error", times=100, skip=3)  # campaigns, statuses, members; then the update
    assert dispatch(wh.engine, "campaign_pause", None, clients, RULES).deferred == 1
    sinks.clear_faults()
    assert dispatch(wh.engine, "campaign_pause", None, clients, RULES).sent == 1
    assert sinks.membership_status() == {("UP", "003001Aa"): "Paused", ("EX", "003001Aa"): "Paused"}
    # The second attempt knew the statuses from before its own first try: a resume restores "Sent".
    wh.score(a, D + timedelta(days=1), "Neutral", 62, "At Risk")
    decide_actions(wh.engine, D + timedelta(days=1), "v1", RULES)
    dispatch(wh.engine, "campaign_resume", None, clients, RULES)
    assert sinks.membership_status() == {("UP", "003001Aa"): "Sent", ("EX", "003001Aa"): "Sent"}


def test_engagement_and_advocacy_enrolments_are_idempotent(wh, sinks, clients):
    wh.score(wh.account("001A", "Acme", used_features=("dash",)), D, "Neutral", 66, "Healthy")
    sinks.contacts(wh)
    sinks.member("EN", "003001Ab")  # already in the sequence, added by marketing
    decide_actions(wh.engine, D, "v1", RULES)
    assert dispatch(wh.engine, "engagement_sequence", None, clients, RULES).sent == 1
    [row] = wh.outbox(action_type="engagement_sequence")
    assert json.loads(row.result) == {"added": 1, "already_members": 1, "programmes": ["Product Tips Sequence"]}
    with wh.engine.begin() as conn:
        conn.execute(update(action_outbox).values(status="pending"))  # a replay after a lost acknowledgement
    dispatch(wh.engine, "engagement_sequence", None, clients, RULES)
    assert sinks.membership_status() == {("EN", "003001Aa"): "Sent", ("EN", "003001Ab"): "Sent"}
    created = [w for w in sinks.writes("salesforce") if w.object == "CampaignMember" and w.created]
    assert len(created) == 1


def test_a_duplicate_campaign_member_is_a_member_not_an_error(wh, sinks, clients):
    """The insert landed but its answer was lost: Salesforce answers DUPLICATE_VALUE to the retry."""
    from customer_health.actions.campaign_targets import SalesforceCampaigns

    wh.account("001A", "Acme")
    sinks.contacts(wh)
    sinks.member("RF", "003001Aa")
    target = SalesforceCampaigns(clients.salesforce)
    added = target.add(campaign_id("RF"), ["003001Aa"])
    assert list(added) == ["003001Aa"] and added["003001Aa"].startswith("00v")
    assert sinks.membership_status() == {("RF", "003001Aa"): "Sent"}


def test_an_enrolment_into_a_missing_campaign_fails_visibly(wh, sinks, clients):
    key = wh.account("001A", "Acme")
    sinks.contacts(wh)
    for i in range(90, -1, -1):
        wh.score(key, D - timedelta(days=i), "Healthy", 85, "Healthy")
    decide_actions(wh.engine, D, "v1", RULES)
    with sinks.store.begin() as conn:
        conn.execute(update(sf_campaign).where(sf_campaign.c.Id == campaign_id("RF")).values(IsActive=False))
    report = dispatch(wh.engine, "advocacy_referral", None, clients, RULES)
    assert report.failed == 1
    [row] = wh.outbox(action_type="advocacy_referral")
    assert row.status == "failed" and "no active Campaign named 'Advocacy - Referral Program'" in row.last_error
    assert dispatch(wh.engine, "advocacy_beta", None, clients, RULES).sent == 1


def test_only_the_batch_given_is_dispatched(wh, sinks, clients):
    for key, name in [("001A", "Acme"), ("001B", "Bolt")]:
        wh.score(wh.account(key, name), D, "At Risk", 41, "Neutral")
    decide_actions(wh.engine, D, "v1", RULES)
    report = dispatch(wh.engine, "checkin_task", ["001B:checkin_task:2026-10-01:v1"], clients, RULES)
    assert report.sent == 1 and [t.Health_Action_Key__c for t in sinks.tasks()] == ["001B:checkin_task:2026-10-01:v1"]


# ----------------------------------------------------------------------------- CRM writeback
def test_writeback_sets_health_fields_and_rewrites_only_what_changed(wh, sinks):
    keys = [wh.account(f"001W{i:02d}", f"Co {i}") for i in range(3)]
    with sinks.store.begin() as conn:
        conn.execute(insert(sf_account), [{"Id": k, "Name": k} for k in keys])
    for i, k in enumerate(keys):
        wh.score(k, D, "Healthy", 80 + i, "Healthy", slope_90=3.0)
    sf = clients_from_airflow(("salesforce",)).salesforce
    first = writeback_health_fields(wh.engine, sf, D, "v1", RULES)
    assert (first.written, first.calls) == (3, 1)
    with sinks.store.connect() as conn:
        row = conn.execute(select(sf_account).where(sf_account.c.Id == keys[2])).one()
    assert (row.Health_Score__c, row.Health_Zone__c, row.Health_Trend__c) == (82.0, "Healthy", "Improving")
    assert row.Health_Drivers__c == (
        "Active users fell from 40 to 12 in 30 days. "
        "Pulling it down: active users vs seats (-25 points; 4/100 vs similar accounts)."
    )

    again = writeback_health_fields(wh.engine, sf, D, "v1", RULES)
    assert (again.written, again.unchanged, again.calls) == (0, 3, 0)
    with wh.engine.begin() as conn:
        conn.execute(update(health_scores).where(health_scores.c.account_key == keys[0]).values(score=70, zone="Neutral"))
    changed = writeback_health_fields(wh.engine, sf, D, "v1", RULES)
    assert (changed.written, changed.unchanged) == (1, 2)
    assert len([w for w in sinks.writes("salesforce") if w.object == "Account"]) == 4


# ----------------------------------------------------------------------------- failures are loud
def _break_payload(wh, key: str) -> None:
    """A Task payload Salesforce will refuse (an unknown field): a permanent failure."""
    [row] = [r for r in wh.outbox() if r.idempotency_key == key]
    payload = json.loads(row.payload)
    payload["fields"]["Bogus__c"] = "x"
    with wh.engine.begin() as conn:
        conn.execute(update(action_outbox).where(action_outbox.c.idempotency_key == key).values(payload=json.dumps(payload)))


def test_a_batch_with_permanent_failures_fails_its_task_at_once_with_the_count_and_reason(wh, sinks, monkeypatch):
    """The DAG's dispatch task (pipeline.dispatch_batch) delivers the rest, then fails without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from customer_health import pipeline, settings

    monkeypatch.setenv(settings.WAREHOUSE_URL_ENV, wh.engine.url.render_as_string(hide_password=False))
    for key, name in [("001A", "Acme"), ("001B", "Bolt")]:
        wh.score(wh.account(key, name), D, "At Risk", 41, "Neutral")
    decide_actions(wh.engine, D, "v1", RULES)
    keys = [r.idempotency_key for r in wh.outbox(action_type="checkin_task")]
    _break_payload(wh, keys[0])
    with pytest.raises(AirflowFailException) as failed:
        pipeline.dispatch_batch("checkin_task", keys)
    message = str(failed.value)
    assert message.startswith("DeliveryFailed: 1 delivery failed permanently (1 sent): 1 x checkin_task:")
    assert "Bogus__c" in message and "last_error" in message
    assert [t.Health_Action_Key__c for t in sinks.tasks()] == [keys[1]]


def test_deliveries_still_failing_transiently_fail_the_task_so_that_its_retry_resends_them(wh, sinks, monkeypatch):
    from customer_health import pipeline, settings
    from customer_health.actions.dispatch import DeliveryDeferred

    monkeypatch.setenv(settings.WAREHOUSE_URL_ENV, wh.engine.url.render_as_string(hide_password=False))
    wh.score(wh.account("001A", "Acme"), D, "At Risk", 41, "Neutral")
    decide_actions(wh.engine, D, "v1", RULES)
    keys = [r.idempotency_key for r in wh.outbox(action_type="checkin_task")]
    with sinks.store.begin() as conn:  # the Task upserts (not the login) keep failing
        conn.execute(insert(sandbox_faults).values(system="salesforce", method="*", path_regex="sobjects/Task",
                                                   kind="server_error", remaining=1000, skip=0))
    with pytest.raises(DeliveryDeferred, match="1 delivery is still pending after transient errors"):
        pipeline.dispatch_batch("checkin_task", keys)
    sinks.clear_faults()
    assert pipeline.dispatch_batch("checkin_task", keys)["sent"] == 1  # the task's retry


def test_a_writeback_for_an_older_date_never_replaces_a_newer_score_on_the_record(wh, sinks):
    key = wh.account("001W01", "Co 1")
    with sinks.store.begin() as conn:
        conn.execute(insert(sf_account), [{"Id": key, "Name": key}])
    wh.score(key, D, "Healthy", 80, "Healthy")
    wh.score(key, D + timedelta(days=1), "Neutral", 70, "Healthy")
    sf = clients_from_airflow(("salesforce",)).salesforce
    assert writeback_health_fields(wh.engine, sf, D + timedelta(days=1), "v1", RULES).written == 1
    rerun = writeback_health_fields(wh.engine, sf, D, "v1", RULES)  # a re-run of the day before
    assert (rerun.written, rerun.newer_on_record, rerun.calls) == (0, 1, 0)
    with sinks.store.connect() as conn:
        row = conn.execute(select(sf_account).where(sf_account.c.Id == key)).one()
    assert (row.Health_Score__c, row.Health_Zone__c, str(row.Health_Score_Date__c)) == (70.0, "Neutral", "2026-10-02")


def test_an_unchanged_account_confirms_the_newer_date_so_an_older_rerun_cannot_write(wh, sinks):
    """D+1 equals D-1 and is not written; a re-run of D (different values) still may not overwrite it."""
    key = wh.account("001W01", "Co 1")
    with sinks.store.begin() as conn:
        conn.execute(insert(sf_account), [{"Id": key, "Name": key}])
    for day, score in ((D - timedelta(days=1), 80), (D, 60), (D + timedelta(days=1), 80)):
        wh.score(key, day, "Healthy" if score >= 75 else "Neutral", score, "Healthy")
    sf = clients_from_airflow(("salesforce",)).salesforce
    writeback_health_fields(wh.engine, sf, D - timedelta(days=1), "v1", RULES)
    newer = writeback_health_fields(wh.engine, sf, D + timedelta(days=1), "v1", RULES)
    assert (newer.written, newer.unchanged) == (0, 1)
    assert writeback_health_fields(wh.engine, sf, D, "v1", RULES).newer_on_record == 1
    with sinks.store.connect() as conn:
        assert conn.execute(select(sf_account.c.Health_Score__c).where(sf_account.c.Id == key)).scalar_one() == 80.0


def test_salesforce_refusing_health_fields_fails_the_writeback_task_with_the_reason(wh, sinks, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from customer_health import pipeline, settings

    monkeypatch.setenv(settings.WAREHOUSE_URL_ENV, wh.engine.url.render_as_string(hide_password=False))
    keys = [wh.account(f"001W{i:02d}", f"Co {i}") for i in range(2)]
    with sinks.store.begin() as conn:  # only the first Account exists in Salesforce
        conn.execute(insert(sf_account), [{"Id": keys[0], "Name": keys[0]}])
    for k in keys:
        wh.score(k, D, "Healthy", 80, "Healthy")
    with pytest.raises(AirflowFailException, match=r"WritebackRejected: Salesforce refused the health fields of 1 Account record \(1 written\)"):
        pipeline.crm_writeback(D)


class FlakySalesforce:
    """``restful`` fails with ``failures`` (exceptions) first, then accepts every record."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    def restful(self, path: str, method: str, json: dict) -> list[dict]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return [{"id": r["Id"], "success": True, "errors": []} for r in json["records"]]


def _http_error(status: int, headers: dict[str, str]) -> requests.HTTPError:
    response = requests.Response()
    response.status_code, response._content = status, b"busy"
    response.headers.update(headers)
    return requests.HTTPError(f"{status}", response=response)


def test_the_writeback_retries_a_transient_failure_honouring_an_http_date_retry_after(wh):
    key = wh.account("001W01", "Co 1")
    wh.score(key, D, "Healthy", 80, "Healthy")
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    sf = FlakySalesforce(_http_error(503, {"Retry-After": later}), requests.ConnectionError("reset"))
    waits: list[float] = []
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
    report = writeback_health_fields(wh.engine, sf, D, "v1", RULES, retry=policy, sleep=waits.append)
    assert (report.written, sf.calls) == (1, 3)
    assert 17 <= waits[0] <= 20 and 0.02 <= waits[1] <= 0.05  # the date, then the backoff with jitter


def test_a_writeback_still_failing_after_its_retries_raises_and_records_nothing(wh):
    key = wh.account("001W01", "Co 1")
    wh.score(key, D, "Healthy", 80, "Healthy")
    sf = FlakySalesforce(*[_http_error(503, {}) for _ in range(3)])
    waits: list[float] = []
    with pytest.raises(RetriesExhausted, match=r"CRM writeback of 1 Account record\(s\) failed after 3 attempt\(s\)"):
        writeback_health_fields(wh.engine, sf, D, "v1", RULES, retry=RetryPolicy(attempts=3, base_delay=0.01),
                                sleep=waits.append)
    assert len(waits) == 2
    with wh.engine.connect() as conn:
        assert conn.execute(select(crm_writeback_state)).fetchall() == []
