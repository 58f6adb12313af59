"""The dashboard in a real browser, inside the real Airflow UI, over a company scored by the real code.

One journey, as a CSM lead would take it: log in to Airflow, open "Customer health" from the
Airflow navigation, look at the portfolio and the trending accounts, search for accounts, open
an At Risk account and read why it is At Risk (its drivers with their points, the signals
behind them), enter an override and revoke it, and check the model and intervention pages.
Each step saves a screenshot under ``test-output/browser/``.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from customer_health.scoring.drivers import read_drivers
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import account_crosswalk, health_scores, score_overrides

pytestmark = pytest.mark.slow


def at_risk_account(warehouse_url: str) -> tuple[str, str, dict]:
    """The lowest-scored At Risk account of the latest date: key, name and its stored score row."""
    hs = health_scores.c
    with engine_for(warehouse_url).connect() as conn:
        latest = conn.execute(select(hs.as_of_date).order_by(hs.as_of_date.desc()).limit(1)).scalar_one()
        row = conn.execute(
            select(health_scores, account_crosswalk.c.account_name)
            .join(account_crosswalk, account_crosswalk.c.account_key == hs.account_key)
            .where(hs.as_of_date == latest, hs.zone == "At Risk", hs.drivers.is_not(None))
            .order_by(hs.score, hs.account_key)
            .limit(1)
        ).one()
    return row.account_key, row.account_name, row._asdict()


def test_a_csm_lead_reads_why_an_account_is_at_risk_and_overrides_its_score_from_the_airflow_ui(
    airflow_ui, browser, screenshots
):
    key, name, stored = at_risk_account(airflow_ui.warehouse_url)
    drivers = read_drivers(stored["drivers"])
    assert drivers.down, f"At Risk account {key} has no drivers pulling it down"
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
    frame = page.frame_locator("iframe")  # every step below happens inside the Airflow UI's frame
    frame.get_by_text("ARR at risk").first.wait_for()
    page.screenshot(path=screenshots / "01-portfolio-in-airflow.png", full_page=True)

    frame.get_by_role("link", name="Trending").click()
    frame.get_by_text("Biggest declines over 30 days").wait_for()
    page.screenshot(path=screenshots / "02-trending.png", full_page=True)

    # A broad search says where it stops and shows each account's score and zone.
    search = frame.get_by_role("searchbox", name="find an account")
    search.fill("Inc")
    search.press("Enter")
    frame.get_by_text(re.compile(r"Showing 20 of \d+ matching accounts — refine the search")).wait_for()
    first = frame.locator("table.results tbody tr").first
    assert re.fullmatch(r"\d+", first.locator("td.num").inner_text().strip())
    assert re.search(r"Healthy|Neutral|At Risk|Critical", first.inner_text())
    page.screenshot(path=screenshots / "03-search.png", full_page=True)

    # The At Risk account: its drivers with their points, and the signals behind them.
    search = frame.get_by_role("searchbox", name="find an account")
    search.fill(key)
    search.press("Enter")
    frame.get_by_text("Score history").wait_for()
    assert frame.get_by_role("heading", level=1).inner_text() == name
    assert frame.locator(".score-card .zone-name").inner_text() == "At Risk"
    assert frame.get_by_role("link", name=re.compile("Open in Salesforce")).get_attribute("href") == (
        f"https://acme.my.salesforce.com/lightning/r/Account/{key}/view"
    )
    listed = [t.strip() for t in frame.locator("ul.drivers li.down").all_inner_texts()]
    assert listed == [f"▼ {d.label} ({d.points:+.1f} pts, {d.score:.0f}/100 vs similar accounts)" for d in drivers.down]
    assert all(re.search(r"\(-\d+\.\d pts", text) for text in listed)
    signals = frame.locator("table.signals tbody tr")
    for d in (*drivers.down, *drivers.up):
        row = signals.filter(has=frame.locator("td:first-child", has_text=d.label)).first
        cells = row.locator("td")
        assert cells.nth(3).inner_text().strip() == f"{d.points:+.1f}", d.label  # Points
        assert cells.nth(2).locator("svg.meter").get_attribute("aria-label") == f"{d.score:.0f} of 100", d.label  # vs segment
    names = [n.split("\n")[0] for n in signals.locator("td:first-child").all_inner_texts()]
    assert names and not [n for n in names if "_" in n]  # the catalog's labels, never raw signal keys
    page.screenshot(path=screenshots / "04-account.png", full_page=True)

    # An override entered by the logged-in admin (expiry: the form's default, 30 days ahead) ...
    form = frame.locator("#override-form")
    form.locator("input[name=score]").fill("78")
    form.locator("input[name=reason]").fill("Renewal signed last week; usage dip is a planned migration")
    form.get_by_role("button", name=re.compile("Save override")).click()
    frame.get_by_text(re.compile(r"Override #\d+ saved")).wait_for()
    frame.get_by_role("cell", name="Renewal signed last week; usage dip is a planned migration").wait_for()
    page.screenshot(path=screenshots / "05-account-after-override.png", full_page=True)
    with engine_for(airflow_ui.warehouse_url).connect() as conn:
        [row] = conn.execute(select(score_overrides)).all()
    assert (row.account_key, row.score, row.created_by, row.revoked_at) == (key, 78, "admin", None)

    # ... and revoked again, with why.
    revoke = frame.locator("form.revoke")
    revoke.locator("input[name=reason]").fill("Customer confirmed they will not renew")
    revoke.get_by_role("button", name=f"Revoke #{row.id}").click()
    frame.get_by_text(re.compile(rf"Override #{row.id} revoked by admin")).wait_for()
    frame.locator(f"#override-{row.id} .state.revoked").wait_for()
    assert frame.locator("form.revoke").count() == 0
    page.screenshot(path=screenshots / "06-account-after-revocation.png", full_page=True)
    with engine_for(airflow_ui.warehouse_url).connect() as conn:
        [row] = conn.execute(select(score_overrides)).all()
    assert row.revoked_by == "admin" and row.revoked_at is not None

    frame.get_by_role("link", name="Interventions").click()
    frame.get_by_text("Outcomes per action type").wait_for()
    assert frame.get_by_text(re.compile("What counts as an intervention")).is_visible()
    page.screenshot(path=screenshots / "07-interventions.png", full_page=True)

    frame.get_by_role("link", name="Model").click()
    frame.get_by_text("Audit metrics").first.wait_for()
    page.screenshot(path=screenshots / "08-model.png", full_page=True)
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
