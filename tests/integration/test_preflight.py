"""The preflight (``python -m customer_health.preflight``, the first task of the daily and refresh
DAGs) against the sandbox: a complete org passes; removing objects, fields, permissions, product
tables and credentials makes it print one line per problem with the exact fix and exit 1; a
source without a connection is optional, reported and skipped, never a failure."""

from __future__ import annotations

import json
import sqlite3

import pytest

from customer_health import settings
from customer_health.preflight import main, run_preflight
from customer_health.warehouse.engine import engine_for
from health_sandbox.connections import as_environment, sandbox_connections
from health_sandbox.salesforce_org import configure_org


def connect(monkeypatch, sandbox, warehouse_url: str, *, drop: tuple[str, ...] = (), change=None) -> None:
    """The sandbox's connections as AIRFLOW_CONN_* variables, as a deployment defines them."""
    conns = sandbox_connections(sandbox.endpoints, warehouse_url)
    for conn_id in drop:
        del conns[conn_id]
    for conn_id, fields in (change or {}).items():
        conns[conn_id] = conns[conn_id] | fields
    for conn_id in (settings.SALESFORCE_CONN_ID, settings.ZENDESK_CONN_ID, settings.STRIPE_CONN_ID,
                    settings.PRODUCT_DB_CONN_ID, settings.HUBSPOT_CONN_ID):
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id.upper()}", raising=False)
    for key, value in as_environment(conns).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(settings.WAREHOUSE_URL_ENV, warehouse_url)
    engine_for.cache_clear()


def run(capsys) -> tuple[int, list[str]]:
    code = main([])
    # the printed report (the task log's copy of each check is interleaved when logging goes to stdout)
    statuses = ("ok", "MISSING", "FAIL", "warn", "--", "preflight:")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.split(" ", 1)[0] in statuses]
    return code, lines


def line_for(lines: list[str], status: str, system: str, subject: str) -> str:
    found = [line for line in lines if line.split()[:3] == [status, system, subject.split()[0]]
             or (line.startswith(status) and f" {system} " in line and f" {subject}" in line)]
    assert found, f"no {status} line for {system} {subject} in:\n" + "\n".join(lines)
    return found[0]


def test_a_complete_org_passes_every_check(sandbox, sqlite_warehouse_url, monkeypatch, capsys):
    connect(monkeypatch, sandbox, sqlite_warehouse_url)
    code, lines = run(capsys)
    assert code == 0, "\n".join(lines)
    checks, summary = lines[:-1], lines[-1]
    assert all(line.startswith("ok ") for line in checks), "\n".join(checks)
    assert summary.endswith("no problem.")
    subjects = {line.split()[2].rstrip(":") for line in checks if line.split()[1] == "salesforce"}
    # every object the product reads or writes, the campaign target's included, is described
    assert {"Account", "Contact", "Task", "Opportunity", "User", "UserRole", "NPS_Response__c",
            "Campaign", "CampaignMember", "CampaignMemberStatus"} <= subjects
    assert any(line.startswith("ok       product_db  events:") for line in checks)
    assert "1 fields" not in "\n".join(lines)  # counts agree with their nouns


def test_removed_fields_objects_and_permissions_are_missing_with_the_fix(
    fresh_sandbox, sqlite_warehouse_url, monkeypatch, capsys
):
    configure_org(
        fresh_sandbox.store,
        hidden_fields=["Account.ARR__c"],
        read_only_fields=["Task.Health_Action_Key__c"],
        hidden_objects=["NPS_Response__c"],
        read_only_objects=["CampaignMember"],
    )
    connect(monkeypatch, fresh_sandbox, sqlite_warehouse_url)
    code, lines = run(capsys)
    assert code == 1
    arr = line_for(lines, "MISSING", "salesforce", "Account.ARR__c")
    assert "create the Currency(16, 2) field ARR__c on Account" in arr
    assert "map it: `salesforce.fields.Account.arr: <your field's API name>`" in arr
    key = line_for(lines, "MISSING", "salesforce", "Task.Health_Action_Key__c")
    assert "the product writes it, but it is not updateable" in key
    assert "Set Field-Level Security: Visible, not Read-Only" in key
    nps = line_for(lines, "MISSING", "salesforce", "NPS_Response__c")
    assert "create the custom object NPS_Response__c" in nps and "or `null`: it is optional" in nps
    member = [line for line in lines if line.startswith("MISSING") and "CampaignMember" in line]
    assert any("no Create on CampaignMember" in line and "grant Create on CampaignMember" in line
               for line in member), member
    assert lines[-1].startswith("preflight:") and "problems" in lines[-1]
    # the untouched objects still pass
    assert any(line.startswith("ok       salesforce  Contact:") for line in lines)


def test_a_product_database_without_a_column_or_an_event_is_named(
    fresh_sandbox, sqlite_warehouse_url, monkeypatch, capsys
):
    product_db = fresh_sandbox.endpoints["product_db_url"].split("///", 1)[1]
    with sqlite3.connect(product_db) as db:
        db.execute("DELETE FROM events WHERE event_name = 'login'")
        db.execute("ALTER TABLE users RENAME COLUMN email TO email_address")
    connect(monkeypatch, fresh_sandbox, sqlite_warehouse_url)
    code, lines = run(capsys)
    assert code == 1
    users = [line for line in lines if line.startswith("MISSING") and "product_db" in line and "users" in line]
    assert users and "email" in users[0], lines
    login = [line for line in lines if "event_names.login" in line]
    assert login and login[0].startswith("warn"), login


def test_sources_without_a_connection_are_optional_and_a_wrong_key_fails(
    sandbox, sqlite_warehouse_url, monkeypatch, capsys
):
    connect(monkeypatch, sandbox, sqlite_warehouse_url, drop=(settings.ZENDESK_CONN_ID,))
    code, lines = run(capsys)
    assert code == 0, "\n".join(lines)
    zendesk = line_for(lines, "--", "zendesk", "connection")
    assert "not connected (optional)" in zendesk and "support signals" in zendesk

    from airflow.sdk.exceptions import AirflowSkipException

    from customer_health import pipeline

    with pytest.raises(AirflowSkipException, match="zendesk is not connected"):
        pipeline.extract_zendesk(__import__("datetime").datetime(2026, 11, 2))

    connect(monkeypatch, sandbox, sqlite_warehouse_url, change={settings.STRIPE_CONN_ID: {"password": "sk_test_wrong"}})
    report = run_preflight()
    assert not report.ok
    stripe = [c for c in report.checks if c.system == "stripe"]
    assert stripe and stripe[0].status in ("FAIL", "MISSING"), stripe
    assert "sk_test_wrong" not in json.dumps(report.as_dict())  # a secret never reaches the output


def test_the_dag_task_fails_fast_listing_every_problem(fresh_sandbox, sqlite_warehouse_url, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from customer_health import pipeline

    configure_org(fresh_sandbox.store, hidden_fields=["Account.ARR__c", "Contact.Email"])
    connect(monkeypatch, fresh_sandbox, sqlite_warehouse_url)
    with pytest.raises(AirflowFailException) as err:
        pipeline.preflight()
    message = str(err.value)
    assert "Account.ARR__c" in message and "Contact.Email" in message
