"""Playbooks keyed to band and driver, the manager review and internal escalations (#20 items 1-3).

On the scored company (``tests/scored_company.py``: the sandbox's company extracted, its history
rebuilt by the scoring engine, its last days decided and delivered to the sandbox's Salesforce):

* each driver-keyed playbook fired for accounts whose stored drivers (written by the engine) put
  its dimension first, and never for an account whose decline another dimension drives;
* after removing one account's support trouble from its raw Zendesk tables and scoring it again
  with the engine, the support play no longer fires for it;
* the manager review of a high-value account entering At Risk is assigned up the Salesforce role
  hierarchy the extraction read (UserRole.ParentRoleId), and to the VP when there is no manager;
* executive escalations go to the VP of Customer Success and the account's internal executive
  sponsor (Account.Executive_Sponsor_User__c), never to a customer address;
* the Salesforce Tasks the playbooks created read as a CSM reads them.

Dates before the action window are decided on a private copy of the warehouse: their scores are
the engine's, only the decision is new.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import date, timedelta

import pytest
from sqlalchemy import delete, select, update

from customer_health.actions.config import ActionRulesError, load_action_rules, parse_action_rules
from customer_health.actions.decide import decide_actions
from customer_health.actions.rules import pick_driver
from customer_health.reporting import playbook_summary
from customer_health.scoring.drivers import read_drivers
from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import (
    account_identity_map,
    action_outbox,
    health_scores,
    raw_sf_account,
    raw_sf_contact,
    raw_sf_user,
    raw_zd_satisfaction_rating,
    raw_zd_ticket,
)
from health_sandbox.store import sf_task
from tests.text_checks import assert_reads_well

pytestmark = pytest.mark.slow

RULES = load_action_rules()
DRIVER_PLAYS = {p.name: p for p in RULES.playbooks.values() if p.driver_dimension}


def _payload(row) -> dict:
    return json.loads(row.payload)


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


@pytest.fixture()
def copy(scored_company, tmp_path):
    """A private copy of the scored company's warehouse (SQLite), to decide other dates on."""
    source = scored_company.warehouse_url.removeprefix("sqlite:///")
    target = tmp_path / "warehouse.db"
    shutil.copy(source, target)
    engine = engine_for(f"sqlite:///{target}")
    yield engine
    engine.dispose()


def _version(engine) -> str:
    with engine.connect() as conn:
        return conn.execute(select(health_scores.c.model_version).limit(1)).scalar_one()


# ----------------------------------------------------------------------------- item 1: driver plays
def test_each_driver_play_fires_for_accounts_its_dimension_drives_and_never_for_another(scored_company):
    engine = engine_for(scored_company.warehouse_url)
    hs = health_scores
    with engine.connect() as conn:
        rows = conn.execute(select(action_outbox).where(action_outbox.c.trigger_date >= scored_company.first_action_date))
        plays = [(r.account_key, _as_date(r.trigger_date), _payload(r)) for r in rows]
        plays = [(k, d, p) for k, d, p in plays if p.get("rule") in DRIVER_PLAYS]
        scores = {
            (r.account_key, _as_date(r.as_of_date)): r
            for r in conn.execute(
                select(hs.c.account_key, hs.c.as_of_date, hs.c.zone, hs.c.previous_zone, hs.c.drivers)
                .where(hs.c.as_of_date >= scored_company.first_action_date)
            )
        }
    fired = {p["rule"] for _, _, p in plays}
    assert {"engagement_at_risk", "support_driven", "financial_driven", "value_driven"} <= fired, fired
    for key, day, payload in plays:
        score = scores[(key, day)]
        drivers = read_drivers(score.drivers)
        play = DRIVER_PLAYS[payload["rule"]]
        # The recorded driver is the engine's: the first signal pulling the score down (or, for a
        # play that also reads changes, the one that lost most over 30 days), of the play's dimension.
        top = drivers.down[0]
        falls = sorted((d for d in drivers.changes if d.points < 0), key=lambda d: (d.points, d.signal))
        recorded = payload["driver"]
        expected = top if recorded["basis"] == "shortfall" else falls[0]
        assert (recorded["signal"], recorded["points"]) == (expected.signal, expected.points)
        assert SIGNALS[recorded["signal"]].dimension == play.driver_dimension == recorded["dimension"]
        # The billing follow-up (its task lists unpaid invoices) only for a payment driver; a fall in
        # billed usage or contract value gets the value review instead.
        assert not play.driver_signals or recorded["signal"] in play.driver_signals, (payload["rule"], recorded)
        assert score.zone in play.to_zones and score.previous_zone not in play.to_zones

    # Every account that entered At Risk in the window: no play keyed to another dimension fired.
    by_day: dict[tuple[str, date], set[str]] = {}
    for key, day, payload in plays:
        by_day.setdefault((key, day), set()).add(payload["rule"])
    entered = [(k, s) for k, s in scores.items() if s.zone == "At Risk" and s.previous_zone != "At Risk"]
    assert len(entered) >= 10
    for (key, day), score in entered:
        drivers = read_drivers(score.drivers)
        dims = {SIGNALS[drivers.down[0].signal].dimension} if drivers.down else set()
        falls = [d for d in drivers.changes if d.points < 0]
        change_dim = SIGNALS[min(falls, key=lambda d: (d.points, d.signal)).signal].dimension if falls else None
        for rule in by_day.get((key, day), set()):
            play = DRIVER_PLAYS[rule]
            allowed = dims | ({change_dim} if "change" in play.driven_by and change_dim else set())
            assert play.driver_dimension in allowed, (key, day, rule, dims, change_dim)


def test_without_its_support_trouble_an_account_no_longer_gets_the_support_play(scored_company, copy, monkeypatch):
    """Remove one support-driven account's tickets and ratings from the raw Zendesk tables, score
    its day (and the day before) again with the engine and decide it again: the support play does
    not fire for it."""
    from customer_health import pipeline, settings

    with copy.connect() as conn:
        row = next(
            r for r in conn.execute(select(action_outbox).where(action_outbox.c.action_type == "support_review_task"))
            if _payload(r).get("rule") == "support_driven"
        )
        orgs = conn.execute(
            select(account_identity_map.c.source_id)
            .where(account_identity_map.c.system == "zendesk", account_identity_map.c.account_key == row.account_key)
        ).scalars().all()
    key, day = row.account_key, _as_date(row.trigger_date)
    assert orgs, "the support-driven account has a Zendesk organization"
    with copy.begin() as conn:
        for table in (raw_zd_ticket, raw_zd_satisfaction_rating):
            conn.execute(delete(table).where(table.c.organization_id.in_([int(o) for o in orgs])))
        conn.execute(delete(action_outbox).where(action_outbox.c.trigger_date >= day))
    monkeypatch.setenv(settings.WAREHOUSE_URL_ENV, str(copy.url))
    engine_for.cache_clear()
    try:
        pipeline.rebuild_history(day - timedelta(days=1), day)
    finally:
        engine_for.cache_clear()
    decide_actions(copy, day, _version(copy), RULES, deliverable=False)
    with copy.connect() as conn:
        score = conn.execute(
            select(health_scores.c.zone, health_scores.c.previous_zone, health_scores.c.drivers)
            .where(health_scores.c.account_key == key, health_scores.c.as_of_date == day)
        ).one()
        rules = {_payload(r).get("rule") for r in conn.execute(
            select(action_outbox).where(action_outbox.c.account_key == key, action_outbox.c.trigger_date == day))}
    drivers = read_drivers(score.drivers)
    assert all(SIGNALS[d.signal].dimension != "support" for d in drivers.down), drivers.down
    assert "support_driven" not in rules
    if score.zone == "At Risk" and score.previous_zone != "At Risk" and drivers.down:
        # Still entering At Risk: the play of the dimension that now drives it fires instead.
        dimension = SIGNALS[drivers.down[0].signal].dimension
        assert any(DRIVER_PLAYS[r].driver_dimension == dimension for r in rules if r in DRIVER_PLAYS), rules


# ----------------------------------------------------------------------------- item 2: manager review
def _high_value_entering_at_risk(engine) -> tuple[str, date]:
    hs, acc = health_scores, raw_sf_account
    with engine.connect() as conn:
        rows = conn.execute(
            select(hs.c.account_key, hs.c.as_of_date, hs.c.arr, acc.c.plan)
            .select_from(hs.join(acc, acc.c.id == hs.c.account_key))
            .where(hs.c.zone == "At Risk", hs.c.previous_zone.in_(["Neutral", "Healthy"]))
            .order_by(hs.c.as_of_date, hs.c.account_key)
        ).fetchall()
    return next((r.account_key, _as_date(r.as_of_date)) for r in rows if RULES.is_high_value(r.arr, r.plan))


def _review_task(engine, key: str, day: date) -> dict:
    with engine.connect() as conn:
        row = conn.execute(select(action_outbox).where(
            action_outbox.c.account_key == key, action_outbox.c.trigger_date == day,
            action_outbox.c.action_type == "manager_review_task")).one()
    payload = _payload(row)
    assert payload["rule"] == "high_value_manager_review" and payload["playbook"] == "Manager review"
    return payload["fields"]


def _user(engine, role: str):
    with engine.connect() as conn:
        return conn.execute(select(raw_sf_user).where(raw_sf_user.c.role == role, raw_sf_user.c.is_active)).first()


def test_the_manager_review_goes_up_the_salesforce_role_hierarchy(copy):
    key, day = _high_value_entering_at_risk(copy)
    version = _version(copy)
    director, vp = _user(copy, "Director of Customer Success"), _user(copy, "VP Customer Success")
    with copy.connect() as conn:
        owner = conn.execute(select(raw_sf_user).join(raw_sf_account, raw_sf_account.c.owner_id == raw_sf_user.c.id)
                             .where(raw_sf_account.c.id == key)).one()
    # The extraction read the hierarchy: the CSM's role reports to the director's, the director's to the VP's.
    assert owner.role == "Customer Success Manager" and owner.parent_role_id == director.role_id
    assert director.parent_role_id == vp.role_id

    def decide_again() -> dict:
        with copy.begin() as conn:
            conn.execute(delete(action_outbox).where(action_outbox.c.trigger_date >= day))
        decide_actions(copy, day, version, RULES, deliverable=False)
        return _review_task(copy, key, day)

    fields = decide_again()
    assert fields["OwnerId"] == director.id and fields["WhatId"] == key
    assert f"Routed to {director.name}, the account owner's manager (Salesforce role hierarchy)." in fields["Description"]
    assert fields["Description"].startswith("Playbook: Manager review - driven by ")
    assert_reads_well(fields["Description"], "the manager review task")

    # Nobody active in the director's role: the next role up (the VP's) holds the manager.
    with copy.begin() as conn:
        conn.execute(update(raw_sf_user).where(raw_sf_user.c.id == director.id).values(is_active=False))
    fields = decide_again()
    assert fields["OwnerId"] == vp.id and f"Routed to {vp.name}, the account owner's manager" in fields["Description"]

    # An owner without a role (the integration user): no manager, so the VP, and the task says so.
    with copy.begin() as conn:
        integration = conn.execute(select(raw_sf_user.c.id).where(raw_sf_user.c.role.is_(None),
                                                                  raw_sf_user.c.is_active)).scalar_one()
        conn.execute(update(raw_sf_account).where(raw_sf_account.c.id == key).values(owner_id=integration))
    fields = decide_again()
    assert fields["OwnerId"] == vp.id
    assert ("the VP of Customer Success: no manager of the account owner was found in the Salesforce role hierarchy"
            in fields["Description"])


# ----------------------------------------------------------------------------- item 3: escalations
def test_executive_escalations_reach_the_vp_and_our_executive_sponsor_and_no_customer(copy):
    hs = health_scores
    with copy.connect() as conn:
        key, day = conn.execute(
            select(hs.c.account_key, hs.c.as_of_date).where(hs.c.zone == "Critical",
                                                          hs.c.previous_zone.in_(["At Risk", "Neutral", "Healthy"]))
            .order_by(hs.c.as_of_date, hs.c.account_key).limit(1)
        ).one()
        day = _as_date(day)
        contacts = conn.execute(select(raw_sf_contact.c.email).where(raw_sf_contact.c.account_id == key)).scalars().all()
        users = {u.role: u for u in conn.execute(select(raw_sf_user).where(raw_sf_user.c.is_active))}
    ceo, vp = users["Chief Executive Officer"], users["VP Customer Success"]
    customer_domains = {e.rsplit("@", 1)[1].lower() for e in contacts if e}
    assert customer_domains
    # Our executive sponsor of the account is the CEO (Account.Executive_Sponsor_User__c), and a
    # misconfigured recipient in the customer's own domain is listed too.
    leak = f"ceo@{sorted(customer_domains)[0]}"
    rules = replace(RULES, escalation_recipients=("cs-leadership@northpeak-saas.com", leak))
    with copy.begin() as conn:
        conn.execute(update(raw_sf_account).where(raw_sf_account.c.id == key).values(executive_sponsor_user_id=ceo.id))
        conn.execute(delete(action_outbox).where(action_outbox.c.trigger_date >= day))
    decide_actions(copy, day, _version(copy), rules, deliverable=False)
    with copy.connect() as conn:
        rows = {r.action_type: _payload(r) for r in conn.execute(
            select(action_outbox).where(action_outbox.c.account_key == key, action_outbox.c.trigger_date == day))}
    email, slack = rows["executive_email"], rows["executive_slack"]
    assert email["to"] == sorted({vp.email.lower(), ceo.email.lower(), "cs-leadership@northpeak-saas.com"})
    assert not {a.rsplit("@", 1)[1] for a in email["to"]} & customer_domains
    assert f"Our executive sponsor of the account: {ceo.name}." in email["html"]
    assert f"Our executive sponsor: {ceo.name}" in slack["text"]
    assert email["rule"] == "entering_critical" and email["driver"]["dimension"] in ("engagement", "support",
                                                                                     "financial", "sentiment")


# ----------------------------------------------------------------------------- what a CSM reads
def test_playbook_tasks_in_salesforce_name_the_playbook_and_driver_and_read_well(scored_company):
    engine = engine_for(scored_company.warehouse_url)
    with engine.connect() as conn:
        rows = [(r.idempotency_key, _payload(r)) for r in conn.execute(
            select(action_outbox).where(action_outbox.c.status == "sent", action_outbox.c.target == "salesforce"))]
    plays = {k: p for k, p in rows if p.get("playbook") and "fields" in p}
    assert plays
    with scored_company.sandbox.store.connect() as conn:
        tasks = {t.Health_Action_Key__c: t for t in conn.execute(
            select(sf_task).where(sf_task.c.Health_Action_Key__c.in_(list(plays))))}
    assert set(tasks) == set(plays)
    seen = set()
    for key, payload in plays.items():
        task = tasks[key]
        driver = payload["driver"]
        first = task.Description.splitlines()[0]
        assert first == f"Playbook: {payload['playbook']} - driven by {driver['dimension']} ({driver['reading']}).", first
        assert_reads_well(task.Description, f"the task {task.Subject!r}")
        seen.add(task.Subject)
        if task.Subject == "Enablement session":
            assert "Core features not used in the last 30 days" in task.Description
        if task.Subject == "Billing follow-up":
            assert "Overdue invoices" in task.Description or "No overdue invoice" in task.Description
            assert driver["signal"] in ("payment_timeliness", "payment_failures"), driver
        if task.Subject == "Value review":
            assert driver["signal"] in ("usage_billing_trend", "contract_value_change"), driver
            assert "billed usage or contract value is falling" in task.Description and "Overdue invoices" not in task.Description
        if task.Subject == "Support escalation review":
            assert "urgent or high-priority" in task.Description.replace("Urgent", "urgent")
    assert {"Enablement session", "Billing follow-up", "Support escalation review", "Value review"} <= seen, seen


def test_the_demo_summary_lists_the_playbooks_that_fired_with_their_drivers(scored_company):
    engine = engine_for(scored_company.warehouse_url)
    with engine.connect() as conn:
        days = sorted({_as_date(r.trigger_date) for r in conn.execute(select(action_outbox))
                       if _payload(r).get("playbook")})
    lines = playbook_summary(engine, days[0])
    text = "\n".join(lines)
    assert lines[0].startswith(f"Playbooks that fired on {days[0]}")
    assert "driven by " in text
    for line in lines:  # the playbook lines name the configuration key; the account lines are for people
        if "driven by" in line:
            assert_reads_well(line, "the demo's playbook summary")
    quiet = playbook_summary(engine, date(2000, 1, 1))
    assert quiet == ["Playbooks on 2000-01-01: none fired (no account entered a playbook's zone with its driver that day)."]


# ----------------------------------------------------------------------------- configuration
def _rules_doc() -> dict:
    import yaml

    from customer_health.actions.config import DEFAULT_RULES_PATH

    return yaml.safe_load(DEFAULT_RULES_PATH.read_text())


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["playbooks"]["support_driven"].update(driver_dimension="happiness"),
     r"playbooks.support_driven.driver_dimension: unknown dimension 'happiness'; use one of engagement"),
    (lambda d: d["playbooks"]["financial_driven"].update(driver_signal="late_invoices"),
     r"playbooks.financial_driven.driver_signal: unknown signal 'late_invoices'"),
    (lambda d: d["playbooks"]["financial_driven"].update(driver_signal="csat"),
     r"driver_signal 'csat' is a support signal, not financial"),
    (lambda d: d["playbooks"]["sentiment_driven"].update(driven_by=["mood"]),
     r"playbooks.sentiment_driven.driven_by: must be one of shortfall, change"),
    (lambda d: d["playbooks"]["engagement_at_risk"].update(white_glove=["webinar"]),
     r"action 'webinar' is not defined under actions"),
    (lambda d: d["actions"]["support_review_task"].update(route_to="team_lead"),
     r"actions.support_review_task.route_to: must be one of owner, manager"),
])  # fmt: skip
def test_a_bad_playbook_fails_on_load_naming_it(change, message):
    doc = _rules_doc()
    change(doc)
    with pytest.raises(ActionRulesError, match=message):
        parse_action_rules(doc, "x.yaml")


def test_a_play_keyed_to_a_signal_or_to_the_30_day_change(scored_company):
    """driver_signal and driven_by: change select on the engine's stored drivers as documented."""
    from customer_health.actions.decide import load_account_health

    engine = engine_for(scored_company.warehouse_url)
    with engine.connect() as conn:
        accounts = load_account_health(conn, scored_company.as_of, _version(engine), RULES)
    with_change = next(a for a in accounts if any(d.points < 0 for d in a.drivers.changes) and a.drivers.down)
    shortfall, change = pick_driver(with_change, "shortfall"), pick_driver(with_change, "change")
    assert shortfall.signal == with_change.drivers.down[0].signal
    assert change.points == min(d.points for d in with_change.drivers.changes) < 0
    assert change.describe().endswith("over 30 days" + (f", {round(change.score)}/100 vs similar accounts"
                                                        if change.score is not None else ""))



# ----------------------------------------------------------------------------- the account page
def test_the_account_page_shows_each_actions_rule_and_driver(scored_company, copy, airflow_metadata, monkeypatch):
    import html
    import re

    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from customer_health import settings
    from customer_health.dashboard.app import clear_caches, create_app
    from customer_health.dashboard.auth import auth_manager

    with copy.connect() as conn:
        row = next(r for r in conn.execute(select(action_outbox).order_by(action_outbox.c.trigger_date))
                   if _payload(r).get("rule") == "support_driven")
    payload = _payload(row)
    monkeypatch.setenv(settings.WAREHOUSE_URL_ENV, str(copy.url))
    monkeypatch.delenv("AIRFLOW_CONN_HEALTH_SALESFORCE", raising=False)
    clear_caches()
    token = auth_manager().generate_jwt(SimpleAuthManagerUser(username="victor.viewer", role="VIEWER"))
    client = TestClient(create_app(warm_cache=False), base_url="http://dashboard.test")
    client.headers["Authorization"] = f"Bearer {token}"
    api = client.get(f"/api/accounts/{row.account_key}").json()
    shown = next(a for a in api["actions"] if a["idempotency_key"] == row.idempotency_key)
    assert (shown["rule"], shown["playbook"], shown["driver"]) == ("support_driven", "Support recovery", payload["driver"])
    assert "payload" not in shown
    client.cookies.set("_token", token)
    del client.headers["Authorization"]
    page = client.get(f"/accounts/{row.account_key}").text
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    assert f"Playbook: Support recovery driven by support ({payload['driver']['reading']})" in text
    assert "Rule: entering at risk driven by " in text  # the check-in the same zone change triggered
    clear_caches()


def test_a_playbook_action_deferred_by_its_cap_is_withdrawn_once_the_account_left_the_zones():
    from customer_health.actions.rules import still_due

    assert not still_due("engagement_at_risk", "Neutral", RULES)
    assert still_due("engagement_at_risk", "At Risk", RULES) and still_due("engagement_at_risk", "Critical", RULES)
    assert not still_due("support_driven", "Healthy", RULES) and still_due("support_driven", "Critical", RULES)
    assert still_due("engagement_at_risk", "Neutral")  # without the rules nothing says otherwise


def test_the_billing_and_support_lists_read_the_warehouse_stamps_as_dates(copy):
    """An overdue invoice (Stripe's ``due_date``, a timestamp in the warehouse) and an open urgent
    ticket are listed with their age in days: the demo's first 2,000-account run crashed here,
    comparing a stored timestamp with the trigger date."""
    from datetime import datetime
    from types import SimpleNamespace

    from customer_health.actions.decide import _billing_lines, _support_ticket_lines
    from customer_health.warehouse.schema import raw_stripe_invoice

    with copy.begin() as conn:
        account_key, customer = conn.execute(
            select(account_identity_map.c.account_key, account_identity_map.c.source_id)
            .where(account_identity_map.c.system == "stripe").order_by(account_identity_map.c.account_key).limit(1)
        ).one()
        org = conn.execute(
            select(account_identity_map.c.source_id)
            .where(account_identity_map.c.system == "zendesk", account_identity_map.c.account_key == account_key)
        ).scalar()
        as_of = date(2026, 10, 20)
        conn.execute(raw_stripe_invoice.insert().values(
            id="in_test_overdue", customer_id=customer, status="open", subtotal=120_00, usage_amount=0,
            amount_due=120_00, amount_paid=0, attempt_count=2, created_at=datetime(2026, 9, 1, 9, 30),
            due_date=datetime(2026, 10, 1, 9, 30), paid_at=None, is_deleted=False, extracted_at=datetime(2026, 10, 21)))
        if org is not None:
            conn.execute(raw_zd_ticket.insert().values(
                id=990001, organization_id=int(org), subject="Exports fail", priority="urgent", status="open",
                created_at=datetime(2026, 10, 12, 8, 0),
                extracted_at=datetime(2026, 10, 21)))
        account = SimpleNamespace(account_key=account_key, as_of=as_of)
        billing = _billing_lines(conn, account, SimpleNamespace(finance_contact=None))
        support = _support_ticket_lines(conn, account) if org is not None else []
    text = "\n".join(billing)
    assert "- in_test_overdue: $120, due 2026-10-01 (19 days overdue)" in text, text
    assert "in_test_overdue: $120, 2 failed attempts" in text, text
    if org is not None:
        assert any("#990001" in line and "open since 2026-10-12, 8 days" in line for line in support), support
