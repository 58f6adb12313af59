"""The dashboard in a real browser, inside the real Airflow UI.

One journey, as a CSM lead would take it: log in to Airflow, open "Customer health" from the
Airflow navigation, look at the portfolio and the trending accounts, open the declining
account, enter an override, and check the model and intervention pages. Each step saves a
screenshot under ``test-output/browser/``.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import score_overrides
from tests.integration.test_dashboard_api import DECLINER

pytestmark = pytest.mark.slow


def test_a_csm_lead_reviews_the_portfolio_and_overrides_a_score_from_the_airflow_ui(airflow_ui, browser, screenshots):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)

    # Log in to Airflow with the simple auth manager's form.
    page.goto(f"{airflow_ui.base_url}/")
    page.wait_for_url(re.compile(r"/auth/login"))
    page.locator("input[name=username]").fill(airflow_ui.username)
    page.locator("input[name=password]").fill(airflow_ui.password)
    page.locator("button[type=submit]").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)

    # Open the dashboard from the Airflow navigation (Browse -> Customer health).
    page.get_by_role("button", name=re.compile("Browse", re.I)).click()
    page.get_by_role("menuitem", name="Customer health").click()
    page.wait_for_url(re.compile(r"/plugin/customer-health"))
    dashboard = page.frame_locator("iframe")
    dashboard.get_by_text("ARR at risk").first.wait_for()
    page.screenshot(path=screenshots / "01-portfolio-in-airflow.png", full_page=True)

    frame = dashboard  # every step below happens inside the Airflow UI's frame
    frame.get_by_role("link", name="Trending").click()
    frame.get_by_text("Biggest declines over 30 days").wait_for()
    assert frame.get_by_text("Acme Rockets").first.is_visible()
    page.screenshot(path=screenshots / "02-trending.png", full_page=True)

    # The declining account, and an override entered by the logged-in admin.
    frame.get_by_role("link", name="Acme Rockets").first.click()
    frame.get_by_text("Score history").wait_for()
    assert frame.get_by_role("link", name=re.compile("Open in Salesforce")).get_attribute("href") == (
        f"https://acme.my.salesforce.com/lightning/r/Account/{DECLINER}/view"
    )
    page.screenshot(path=screenshots / "03-account.png", full_page=True)
    form = frame.locator("#override-form")
    form.locator("input[name=score]").fill("78")
    form.locator("input[name=reason]").fill("Renewal signed last week; usage dip is a planned migration")
    form.locator("input[name=expires_on]").fill("2099-06-30")
    form.get_by_role("button", name=re.compile("Save override")).click()
    frame.get_by_text(re.compile(r"Override #\d+ saved")).wait_for()
    frame.get_by_role("cell", name="Renewal signed last week; usage dip is a planned migration").wait_for()
    page.screenshot(path=screenshots / "04-account-after-override.png", full_page=True)

    with engine_for(airflow_ui.warehouse_url).connect() as conn:
        [row] = conn.execute(select(score_overrides)).all()
    assert (row.account_key, row.score, row.created_by) == (DECLINER, 78, "admin")

    frame.get_by_role("link", name="Interventions").click()
    frame.get_by_text("Outcomes per action type").wait_for()
    page.screenshot(path=screenshots / "05-interventions.png", full_page=True)

    frame.get_by_role("link", name="Model").click()
    frame.get_by_text("Audit metrics").first.wait_for()
    page.screenshot(path=screenshots / "06-model.png", full_page=True)
    context.close()


def test_the_dashboard_sends_a_visitor_without_a_login_to_the_airflow_login(airflow_ui, browser, screenshots):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{airflow_ui.base_url}/customer-health/")
    page.wait_for_url(re.compile(r"/auth/login"))
    assert "ARR at risk" not in page.content()
    response = page.request.get(f"{airflow_ui.base_url}/customer-health/api/portfolio")
    assert response.status == 401
    context.close()
