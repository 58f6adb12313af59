"""The sandbox serving the self-serve company: Stripe and the product database, nothing it lacks.

Salesforce and Zendesk are not connected for this company (no server, no endpoint, no Airflow
connection); Stripe serves objects that pass the Stripe contract checks; the product database
loads through the product extraction into an empty warehouse; the command-line sandbox serves it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import stripe
from sqlalchemy import func, select, text

from customer_health import settings
from customer_health.sources.product import extract_product
from customer_health.sources.stripe import STRIPE_OBJECTS, extract_stripe
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import (
    raw_product_account,
    raw_product_feature_daily,
    raw_product_usage_daily,
    raw_stripe_customer,
    raw_stripe_invoice,
    raw_stripe_subscription,
)
from health_sandbox import __main__ as sandbox_cli
from health_sandbox.connections import SANDBOX_STRIPE_KEY, sandbox_connections
from health_sandbox.product_db import product_engine
from health_sandbox.self_serve import SelfServeSpec, generate_self_serve
from health_sandbox.server import SANDBOX_PORTS_ENV, Sandbox
from tests.contracts.test_stripe_contract import LISTS, validate

SPEC = SelfServeSpec(accounts=150, days=200, seed=4, end_date=date(2026, 11, 1))
UNTIL = datetime(2026, 11, 2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("self_serve_sandbox")
    generate_self_serve(folder, SPEC)
    return folder


@pytest.fixture(scope="module")
def served(folder):
    sb = Sandbox.start(folder)
    yield sb
    sb.stop()


def _client(sb: Sandbox) -> stripe.StripeClient:
    return stripe.StripeClient(
        SANDBOX_STRIPE_KEY, base_addresses={"api": sb.servers["stripe"].base_url}, max_network_retries=0
    )


def _every(client: stripe.StripeClient, name: str, params: dict) -> list[dict]:
    out, query = [], dict(params)
    while True:
        page = client.raw_request("get", f"/v1/{name}", **query).data
        out.extend(page["data"])
        if not page["has_more"]:
            return out
        query = {**params, "starting_after": page["data"][-1]["id"]}


def test_only_the_systems_the_company_has_are_served_and_connected(served):
    assert set(served.servers) == {"stripe", "slack", "hubspot"}
    assert served.smtp is not None
    assert "salesforce" not in served.endpoints and "zendesk" not in served.endpoints
    conns = sandbox_connections(served.endpoints, "sqlite:///warehouse.db")

    assert settings.SALESFORCE_CONN_ID not in conns and settings.ZENDESK_CONN_ID not in conns
    assert {
        settings.STRIPE_CONN_ID,
        settings.PRODUCT_DB_CONN_ID,
        settings.SLACK_CONN_ID,
        settings.SMTP_CONN_ID,
        settings.HUBSPOT_CONN_ID,
        settings.WAREHOUSE_CONN_ID,
    } == set(conns)
    assert conns[settings.STRIPE_CONN_ID]["extra"]["api_base"] == served.servers["stripe"].base_url


def test_every_stripe_object_served_passes_the_stripe_contract_checks(served):
    client = _client(served)
    params = {spec.name: {**spec.list_params, "limit": 100} for spec in STRIPE_OBJECTS}
    params["prices"] = {"limit": 100}
    for name, query in params.items():
        objects = _every(client, name, query)
        assert objects or name == "disputes", f"no {name} served"  # disputes are rare: maybe none here
        problems = [p for i, obj in enumerate(objects) for p in validate(obj, LISTS[name][0], f"{name}[{i}]")]
        assert sorted(set(problems))[:20] == [], name
    invoices = _every(client, "invoices", {"limit": 100, "expand": ["data.payments"]})
    assert {i["status"] for i in invoices} >= {"paid"}
    subscriptions = _every(client, "subscriptions", {"limit": 100, "status": "all"})
    assert {s["status"] for s in subscriptions} >= {"active", "canceled"}


def test_the_product_database_loads_into_an_empty_warehouse(folder, warehouse_url):
    product, warehouse = product_engine(folder / "product.db"), engine_for(warehouse_url)
    report = extract_product(product, warehouse, until=UNTIL)

    with product.connect() as src:
        expected_accounts = src.execute(text("SELECT COUNT(*) FROM accounts")).scalar_one()
        account_days, events = src.execute(
            text("SELECT COUNT(DISTINCT account_id || date(occurred_at)), COUNT(*) FROM events")
        ).one()
        feature_days = src.execute(
            text(
                "SELECT COUNT(DISTINCT account_id || date(occurred_at) || feature_key) FROM events "
                "WHERE event_name = 'feature_used'"
            )
        ).scalar_one()
    with warehouse.connect() as conn:
        accounts = conn.execute(select(func.count()).select_from(raw_product_account)).scalar_one()
        usage = conn.execute(
            select(func.count(), func.sum(raw_product_usage_daily.c.events)).select_from(
                raw_product_usage_daily
            )
        ).one()
        features = conn.execute(select(func.count()).select_from(raw_product_feature_daily)).scalar_one()

    assert report.quarantined == 0
    assert accounts == expected_accounts == SPEC.accounts + 2
    assert tuple(usage) == (account_days, events)
    assert features == feature_days
    assert report.watermark_after == SPEC.end_date.isoformat()


def test_the_stripe_extraction_reads_it_without_quarantine(served, sqlite_warehouse_url):
    warehouse = engine_for(sqlite_warehouse_url)
    report = extract_stripe(_client(served), warehouse, UNTIL, read_started=UNTIL + timedelta(hours=1))

    with served.store.connect() as conn:
        stored = {
            t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()  # noqa: S608
            for t in ("stripe_customer", "stripe_subscription", "stripe_invoice")
        }
    with warehouse.connect() as conn:
        loaded = {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (raw_stripe_customer, raw_stripe_subscription, raw_stripe_invoice)
        }
        no_salesforce = conn.execute(
            select(func.count())
            .select_from(raw_stripe_customer)
            .where(raw_stripe_customer.c.salesforce_account_id.isnot(None))
        ).scalar_one()

    assert report.quarantined == 0
    assert list(loaded.values()) == list(stored.values())
    assert no_salesforce == 0


def test_the_command_line_sandbox_serves_the_company_without_salesforce(folder, monkeypatch):
    monkeypatch.setenv(SANDBOX_PORTS_ENV, "free")
    try:
        endpoints = sandbox_cli.serve_background(folder)
        running = sandbox_cli.running_endpoints(folder)
    finally:
        stopped = sandbox_cli.stop(folder)

    assert stopped
    assert "salesforce" not in endpoints and "zendesk" not in endpoints
    assert running == endpoints
    assert {"stripe", "slack", "hubspot", "smtp_port", "product_db_url"} <= set(endpoints)
