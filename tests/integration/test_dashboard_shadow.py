"""The dashboard's Shadow page: what the shadow-mode action types would have sent (#19, safe go-live).

The warehouse is ``test_dashboard_api``'s module company: the session's company scored by the
engine and acted on by the real decide path with the shipped action rules, whose advocacy
enrolments start in ``mode: shadow``. The page and its CSV must show those rows, read from the
payload the dispatcher would deliver, and nothing that was or will be delivered.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from sqlalchemy import select

import tests.integration.test_dashboard_api as api
from customer_health.actions.config import load_action_rules
from customer_health.actions.preview import would_send
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import action_outbox

company, airflow_metadata, tokens, warehouse = api.company, api.airflow_metadata, api.tokens, api.warehouse
client, text_of = api.client, api.text_of


def shadow_rows(url: str, since, until) -> list:
    ob = action_outbox.c
    with engine_for(url).connect() as conn:
        return conn.execute(
            select(ob.idempotency_key, ob.action_type, ob.target, ob.payload, ob.trigger_date, ob.status)
            .where(ob.status == "shadow", ob.trigger_date >= since, ob.trigger_date <= until)
        ).all()


def test_the_shipped_rules_put_some_types_in_shadow_and_the_company_has_their_rows(company):
    shadow_types = {t for t, spec in load_action_rules().actions.items() if spec.shadow}
    assert shadow_types, "the shipped rules start no action type in shadow mode"
    rows = shadow_rows(company.template_url, company.first_action_date, company.as_of)
    assert rows and {r.action_type for r in rows} <= shadow_types


def test_the_page_lists_every_shadow_row_with_what_it_would_have_sent(company, warehouse, tokens):
    days = (company.as_of - company.first_action_date).days + 1
    rows = shadow_rows(warehouse, company.first_action_date, company.as_of)
    data = client(tokens["viewer"]).get("/api/shadow", params={"days": days}).json()
    assert data["total"] == len(rows)
    assert sum(data["by_type"].values()) == len(rows)
    listed = {r["key"]: r for r in data["rows"]}
    assert set(listed) <= {r.idempotency_key for r in rows}
    assert len(listed) == min(len(rows), 200)
    for row in rows:
        if row.idempotency_key not in listed:
            continue
        shown = listed[row.idempotency_key]
        payload = json.loads(row.payload)
        # campaign enrolments: the programmes and the contacts' e-mail addresses of the stored payload
        assert shown["channel"] == "campaign" and shown["subject"].startswith("Enrol in ")
        assert all(p in shown["subject"] for p in payload["programmes"])
        emails = [c["email"] for c in payload["contacts"]][:3]
        assert all(e in shown["recipient"] for e in emails)

    page = client(tokens["viewer"]).get("/shadow", params={"days": days})
    assert page.status_code == 200
    text = text_of(page.text)
    assert "What the shadow-mode actions would have sent" in text
    first = data["rows"][0]
    assert first["subject"] in text and (first["account_name"] or first["account_key"]) in text
    assert "Shadow" in text  # in the navigation


def test_delivered_and_pending_rows_are_never_listed(company, warehouse, tokens):
    ob = action_outbox.c
    with engine_for(warehouse).connect() as conn:
        others = {k for k, in conn.execute(select(ob.idempotency_key).where(ob.status != "shadow"))}
    days = (company.as_of - company.first_action_date).days + 60
    data = client(tokens["viewer"]).get("/api/shadow", params={"days": days}).json()
    assert others and not others & {r["key"] for r in data["rows"]}


def test_the_csv_holds_every_row_and_a_type_filter_narrows_it(company, warehouse, tokens):
    days = (company.as_of - company.first_action_date).days + 1
    rows = shadow_rows(warehouse, company.first_action_date, company.as_of)
    response = client(tokens["viewer"]).get("/api/shadow", params={"days": days, "format": "csv"})
    assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
    exported = list(csv.DictReader(io.StringIO(response.text)))
    assert len(exported) == len(rows)
    kind = rows[0].action_type
    narrowed = client(tokens["viewer"]).get("/api/shadow", params={"days": days, "action_type": kind}).json()
    assert narrowed["by_type"] == {kind: sum(1 for r in rows if r.action_type == kind)}


def test_an_older_window_before_any_decision_is_empty_and_says_so(company, warehouse, tokens):
    before = (company.first_action_date - timedelta(days=1)).isoformat()
    assert before  # the window ends at the view's date: one day shows only that day
    data = client(tokens["viewer"]).get("/api/shadow", params={"days": 1, "action_type": "no_such_type"}).json()
    assert data["total"] == 0 and data["rows"] == []
    page = client(tokens["viewer"]).get("/shadow", params={"days": 1, "action_type": "no_such_type"})
    assert "No shadow-mode action was decided in these days" in text_of(page.text)


def test_every_kind_of_payload_reads_as_its_recipient_would_read_it():
    """would_send over payloads of each kind the decide path builds (shapes of actions.decide)."""
    task = would_send("salesforce", "checkin_task", {"sobject": "Task", "fields": {
        "Subject": "Health check-in", "Description": "Oakridge entered At Risk.\n\nDue 2026-12-08.",
        "ActivityDate": "2026-12-08", "OwnerId": "005A"}})
    assert (task.channel, task.subject) == ("Salesforce task", "Health check-in")
    assert "005A" in task.recipient and "due 2026-12-08" in task.recipient and "entered At Risk" in task.body
    mail = would_send("email", "executive_email", {"to": ["vp@ourco.com"], "subject": "Executive escalation",
                                                    "html": "<p>A &amp; B</p><p>line two</p>"})
    assert mail.recipient == "vp@ourco.com" and mail.body == "A & B\nline two"
    slack = would_send("slack", "executive_slack", {"text": "*Escalation*\nWhy: ..."})
    assert slack.subject == "*Escalation*" and slack.body == "Why: ..."
    pause = would_send("campaigns", "campaign_pause", {"status": "paused", "programmes": ["Upsell Q4"],
                                                        "contacts": [{"id": "003", "email": "a@x.com"}]})
    assert pause.subject == "Pause Upsell Q4" and pause.recipient == "a@x.com"
