"""What people receive after a daily run: Task texts, CRM fields, Slack and e-mail bodies.

``customer_health_daily`` runs with ``dag.test()`` on a sandbox copy of the test company, as its
first run (every account's first score). One account carries a hostile name in Salesforce, and
a CSM has overridden its score to Critical (the customer said it is leaving), so the run also
escalates it to executives. Then the test reads what the sandbox's Salesforce, Slack and SMTP
servers received, as a CSM or an executive would see it, and checks the words: no code, no raw
structures, numbers in agreement, names escaped, and internal escalations addressed to
internal people only.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from sqlalchemy import select, update

from customer_health.scoring.overrides import create_override
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.migrate import upgrade_to_head
from health_sandbox.store import sandbox_writes, sf_account, sf_contact, sf_task, sf_user
from tests.conftest import TEST_END_DATE
from tests.dags.test_daily_dag_e2e import _logical_date_scoring
from tests.text_checks import assert_reads_well

pytestmark = pytest.mark.slow

HOSTILE = "Evil <!channel> & <https://phish.test|Co> <b>Ltd</b>"
ZONES = {"Healthy", "Neutral", "At Risk", "Critical"}


def _hostile_critical_account(sandbox, url: str) -> str:
    """Rename an account with an executive-sponsor contact, and override its score to 12."""
    with sandbox.store.begin() as conn:
        key = conn.execute(
            select(sf_contact.c.AccountId).where(sf_contact.c.Executive_Sponsor__c.is_(True)).order_by(sf_contact.c.AccountId)
        ).scalars().first()
        conn.execute(update(sf_account).where(sf_account.c.Id == key).values(Name=HOSTILE))
    engine = engine_for(url)
    upgrade_to_head(engine)
    morning = datetime.combine(TEST_END_DATE, time(8))
    create_override(engine, key, 12, "Customer told us on the QBR call that they are moving to a competitor",
                    "casey.csm", morning + timedelta(days=30), now=morning)
    return key


@pytest.fixture()
def received(fresh_sandbox, dagbag, dag_env, tmp_path):
    """The daily run's deliveries, as the sandbox's servers recorded them."""
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    dag_env(fresh_sandbox, url)
    key = _hostile_critical_account(fresh_sandbox, url)
    # The conf is explicit: dag.test() of the same logical date keeps an earlier test's conf.
    run = dagbag.dags["customer_health_daily"].test(
        logical_date=_logical_date_scoring(TEST_END_DATE), run_conf={"dispatch": True}
    )
    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]
    with fresh_sandbox.store.connect() as conn:
        tasks = conn.execute(select(sf_task).where(sf_task.c.Health_Action_Key__c.is_not(None))).fetchall()
        accounts = conn.execute(select(sf_account).where(sf_account.c.Health_Zone__c.is_not(None))).fetchall()
        writes = conn.execute(select(sandbox_writes.c.system, sandbox_writes.c.body)).fetchall()
        contact_emails = conn.execute(select(sf_contact.c.Email).where(sf_contact.c.Email.is_not(None))).scalars().all()
        user_emails = conn.execute(select(sf_user.c.Email).where(sf_user.c.Email.is_not(None))).scalars().all()
    return {
        "hostile_key": key,
        "tasks": tasks,
        "accounts": accounts,
        "slack": [w.body for w in writes if w.system == "slack"],
        "email": [w.body for w in writes if w.system == "smtp"],
        "customer_domains": {e.rsplit("@", 1)[1].lower() for e in contact_emails},
        "internal_addresses": {e.lower() for e in user_emails},
    }


def test_what_a_csm_and_an_executive_receive_reads_well_and_stays_internal(received):
    tasks, accounts = received["tasks"], received["accounts"]
    assert {t.Subject for t in tasks} >= {"Check-in call", "Emergency review", "Recovery plan"}

    # Every Task a CSM opens explains itself in words, with the drivers and their points.
    for task in tasks:
        assert_reads_well(task.Description, f"Task {task.Subject!r} of {task.WhatId}")
    checkins = [t.Description for t in tasks if t.Subject == "Check-in call"]
    assert checkins and all("Pulling the score down: " in d and " points; " in d for d in checkins)
    assert all("/100 vs similar accounts" in d for d in checkins)

    # The Account record's health fields.
    assert accounts
    for account in accounts:
        assert account.Health_Zone__c in ZONES and float(account.Health_Score__c).is_integer()
        assert account.Health_Trend__c in {"Improving", "Stable", "Declining"}
        assert_reads_well(account.Health_Drivers__c, f"Health_Drivers__c of {account.Id}")

    # The executive escalation: Slack and e-mail, escaped, to internal people only.
    [slack] = received["slack"]
    text = slack["text"]
    assert_reads_well(text.replace(HOSTILE, ""), "the Slack escalation")
    assert "<!channel>" not in text and "<https://phish.test" not in text
    assert "Evil &lt;!channel&gt; &amp; &lt;https://phish.test|Co&gt;" in text and "is Critical" in text

    [mail] = received["email"]
    recipients = {r.lower() for r in mail["rcpt_tos"]}
    assert recipients and recipients <= received["internal_addresses"]
    assert not {r.rsplit("@", 1)[1] for r in recipients} & received["customer_domains"]
    html = mail["html"]
    assert "<b>Ltd</b>" not in html and "&lt;b&gt;Ltd&lt;/b&gt;" in html and "&lt;!channel&gt;" in html
    assert "Critical" in mail["subject"] and "<" in mail["subject"]  # a header is not HTML: the name as written
