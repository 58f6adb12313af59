"""The self-serve company (no CRM, no help desk) through the daily DAG, anchored on Stripe.

The source mapping says ``identity.anchor: stripe``; only Stripe and the product database are
connected (the sandbox serves nothing else for this company). ``customer_health_daily`` runs
end to end with ``dag.test()``: every paying Stripe customer gets a score, nothing asks
Salesforce or Zendesk for anything, and coverage says the CRM and support dimensions are absent.
The product anchor is checked on the same extracted data through the crosswalk and the signals.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from sqlalchemy import func, select

from customer_health.sources.crosswalk import build_crosswalk
from customer_health.sources.mapping import SOURCES_FILE_ENV, SourceMappingError, load_mapping
from customer_health.warehouse import schema as s
from customer_health.warehouse.engine import engine_for
from health_sandbox.connections import as_environment, sandbox_connections
from health_sandbox.self_serve import SelfServeSpec, generate_self_serve
from health_sandbox.server import Sandbox
from tests.airflow_home import forget_runs

pytestmark = pytest.mark.slow

END = date(2026, 11, 1)
SPEC = SelfServeSpec(accounts=160, days=240, seed=7, end_date=END)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("self_serve_e2e")
    generate_self_serve(folder, SPEC)
    sb = Sandbox.start(folder)
    yield sb
    sb.stop()


def _anchor_file(tmp_path, anchor: str):
    path = tmp_path / f"sources-{anchor}.yaml"
    path.write_text(f"version: 1\nidentity:\n  anchor: {anchor}\n")
    return path


def test_the_identity_anchor_is_read_and_checked(tmp_path):
    assert load_mapping().identity_anchor == "salesforce"
    assert load_mapping(_anchor_file(tmp_path, "stripe")).identity_anchor == "stripe"
    assert load_mapping(_anchor_file(tmp_path, "stripe")).changed_from_defaults() == {"identity.anchor": "stripe"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nidentity:\n  anchor: hubspot\n")
    with pytest.raises(SourceMappingError, match="identity.anchor is 'hubspot'; write one of salesforce, stripe"):
        load_mapping(bad)


@pytest.fixture(scope="module")
def daily_run(served, dagbag, tmp_path_factory):
    """``customer_health_daily`` for END on the self-serve company, Stripe-anchored."""
    tmp = tmp_path_factory.mktemp("self_serve_run")
    url = f"sqlite:///{tmp / 'wh.db'}"
    env = as_environment(sandbox_connections(served.endpoints, url))
    env[SOURCES_FILE_ENV] = str(_anchor_file(tmp, "stripe"))
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    from customer_health import settings

    mp.delenv(settings.WAREHOUSE_URL_ENV, raising=False)
    engine_for.cache_clear()
    try:
        logical = datetime.combine(END + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        # Other modules run this DAG for the same date on the session's metadata DB (and some change
        # their DAG objects, a deadline, a subset): start from no run of that date and a DAG parsed anew.
        forget_runs("customer_health_daily", logical, and_earlier=True)
        dag = DagBag(str(Path(__file__).resolve().parents[2] / "dags")).dags["customer_health_daily"]
        run = dag.test(logical_date=logical, run_conf={"dispatch": False})
        yield run, url
    finally:
        mp.undo()
        engine_for.cache_clear()


def test_the_daily_dag_scores_every_paying_stripe_customer(daily_run, served):
    run, url = daily_run
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert states["extract_salesforce"] == "skipped" and states["extract_zendesk"] == "skipped"

    with engine_for(url).connect() as conn:
        roster = conn.execute(select(s.anchor_account)).mappings().all()
        scores = conn.execute(
            select(s.health_scores).where(s.health_scores.c.as_of_date == END)
        ).mappings().all()
        assert conn.execute(select(func.count()).select_from(s.raw_sf_account)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(s.raw_zd_ticket)).scalar_one() == 0
        customers = set(conn.execute(select(s.raw_stripe_customer.c.id)).scalars())
        live = set(
            conn.execute(
                select(s.raw_stripe_subscription.c.customer_id).where(
                    s.raw_stripe_subscription.c.status.in_(("active", "past_due"))
                )
            ).scalars()
        )

    # The accounts are the Stripe customers (duplicates of one product account merged).
    assert roster and {r["anchor"] for r in roster} == {"stripe"}
    assert {r["id"] for r in roster} <= customers
    assert all(r["id"].startswith("cus_") and r["owner_id"] is None and r["parent_id"] is None for r in roster)
    assert {r["plan"] for r in roster if r["plan"]} <= {"personal", "team"}
    assert any(r["arr"] for r in roster) and any(r["name"] for r in roster)

    # Every customer paying at END (a live, non-trial subscription) has a score.
    scored = {r["account_key"] for r in scores}
    paying = {r["id"] for r in roster if r["customer_since"] is not None and r["id"] in live}
    assert paying and paying <= scored
    assert scored <= {r["id"] for r in roster if r["customer_since"] is not None}

    # Coverage says what is absent: the CRM (relationship) and support dimensions.
    assert all(r["support_score"] is None and r["sentiment_score"] is None for r in scores)
    assert all(r["engagement_score"] is not None and r["coverage"] < 1 for r in scores)
    # Nothing called Salesforce or Zendesk: the sandbox does not even serve them.
    assert "salesforce" not in served.endpoints and "zendesk" not in served.endpoints


def test_the_product_anchor_makes_the_product_accounts_the_accounts(daily_run):
    _, url = daily_run
    engine = engine_for(url)
    try:
        report = build_crosswalk(engine, "product")
        with engine.connect() as conn:
            roster = conn.execute(select(s.anchor_account)).mappings().all()
            unmapped = conn.execute(select(s.crosswalk_unmapped)).mappings().all()
            products = set(conn.execute(select(s.raw_product_account.c.id)).scalars())
        assert {r["id"] for r in roster} == products
        assert {r["anchor"] for r in roster} == {"product"}
        assert report.accounts == len(products)
        # Stripe customers without metadata (older checkout) and card tests are reported, not guessed.
        assert all(u["source"] == "stripe" for u in unmapped)
        assert any("metadata.product_account_id" in u["reason"] for u in unmapped)
    finally:
        build_crosswalk(engine, "stripe")


def test_the_preflight_checks_the_anchor_is_connected(served, tmp_path, monkeypatch):
    from customer_health import settings
    from customer_health.preflight import run_preflight

    url = f"sqlite:///{tmp_path / 'wh.db'}"
    connections = as_environment(sandbox_connections(served.endpoints, url))
    for key, value in connections.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(settings.WAREHOUSE_URL_ENV, url)
    engine_for.cache_clear()

    def anchor_check(anchor: str | None):
        if anchor is None:
            monkeypatch.delenv(SOURCES_FILE_ENV, raising=False)
        else:
            monkeypatch.setenv(SOURCES_FILE_ENV, str(_anchor_file(tmp_path, anchor)))
        report = run_preflight()
        return next(c for c in report.checks if c.subject == "identity.anchor"), report

    check, _ = anchor_check("stripe")
    assert check.status == "ok" and "every account is a Stripe customer" in check.detail
    # The default anchor on a company without Salesforce: no account would exist; a warning naming the fix.
    check, _ = anchor_check(None)
    assert check.status == "warn" and "salesforce is not connected" in check.detail
    assert "set identity.anchor to stripe or product" in check.fix
    # A Stripe anchor without Stripe: blocking.
    monkeypatch.delenv(f"AIRFLOW_CONN_{settings.STRIPE_CONN_ID.upper()}")
    check, report = anchor_check("stripe")
    assert check.status == "MISSING" and not report.ok
    assert "set identity.anchor to product" in check.fix
    engine_for.cache_clear()


def test_the_account_page_and_the_actions_read_the_anchored_accounts_plan_and_arr(daily_run, airflow_metadata):
    """A company without a CRM: the account page shows the Stripe customer's plan and seats (not
    a blank where a Salesforce company's Account would be), and the actions see its plan and ARR."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from customer_health import settings
    from customer_health.actions.config import load_action_rules
    from customer_health.actions.decide import load_account_health
    from customer_health.dashboard.app import clear_caches
    from customer_health.dashboard.auth import auth_manager
    from tests.integration.test_dashboard_api import client, element, text_of

    run, url = daily_run
    with engine_for(url).connect() as conn:
        record = conn.execute(
            select(s.anchor_account).where(s.anchor_account.c.plan == "team", s.anchor_account.c.seats > 1)
            .where(s.anchor_account.c.id.in_(select(s.health_scores.c.account_key).where(s.health_scores.c.as_of_date == END)))
            .order_by(s.anchor_account.c.id)
        ).mappings().first()  # fmt: skip
        version = conn.execute(select(s.health_scores.c.model_version).limit(1)).scalar_one()
        seen = {a.account_key: a for a in load_account_health(conn, END, version, load_action_rules())}
    assert record is not None
    assert (seen[record["id"]].plan, seen[record["id"]].name) == ("team", record["name"])

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(settings.WAREHOUSE_URL_ENV, url)
        clear_caches()
        token = auth_manager().generate_jwt(SimpleAuthManagerUser(username="victor.viewer", role="VIEWER"))
        page = client(token, cookie=True).get(f"/accounts/{record['id']}")
        api = client(token).get(f"/api/accounts/{record['id']}").json()
        clear_caches()
    assert page.status_code == 200
    head = text_of(element(page.text, "section", "card account-head"))
    assert f"team plan · {record['seats']} seats" in head, head
    assert "No CRM record: this company's accounts are its Stripe customers" in head and "Salesforce" not in head
    assert api["salesforce_url"] is None and api["identity_anchor"] == "stripe"
    assert api["record"]["plan"] == "team" and api["record"]["arr"] == pytest.approx(record["arr"])
    assert api["record"]["industry"] is None and api["account_name"] == record["name"]
