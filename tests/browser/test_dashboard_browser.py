"""The dashboard in a real browser, inside the real Airflow UI, over a company scored by the real code.

Two journeys. A CSM lead's: log in to Airflow, open "Customer health" from the Airflow
navigation, look at the portfolio and the trending accounts, search for accounts, open an At
Risk account and read why it is At Risk (its drivers with their points, the signals behind
them), enter an override and revoke it, and check the model and intervention pages. A CSM's:
log in with their e-mail, open the worklist on their own accounts by priority, narrow it by
zone, look at everyone's, download it as CSV and open an account from it.

Both run with the dashboard's Content-Security-Policy enforced by the browser: every document
the frame loads carries it, and no violation is reported (a listener for
``securitypolicyviolation`` in every frame writes each one to the console). Each step saves a
screenshot under ``test-output/browser/``.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter

import pytest
from sqlalchemy import select

from customer_health.scoring.drivers import read_drivers
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import (
    account_crosswalk,
    health_scores,
    raw_sf_account,
    raw_sf_user,
    score_overrides,
)

pytestmark = pytest.mark.slow

REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation in ${e.documentURI}: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`
                + ` (${e.sourceFile}:${e.lineNumber})`);
});
"""


class CSPWatch:
    """Console messages about the Content-Security-Policy, and the dashboard documents' headers."""

    def __init__(self, context) -> None:
        self.violations: list[str] = []
        self.documents: dict[str, dict[str, str]] = {}
        context.add_init_script(REPORT_VIOLATIONS)
        context.on("console", self._console)
        context.on("response", self._response)

    def _console(self, message) -> None:
        text = message.text
        if "CSP violation" in text or "Content Security Policy" in text:
            self.violations.append(text)

    def _response(self, response) -> None:
        if "/customer-health/" in response.url and response.request.resource_type == "document":
            self.documents[response.url] = response.headers

    def assert_enforced_and_clean(self) -> None:
        from customer_health.dashboard.security import CONTENT_SECURITY_POLICY

        assert self.documents, "no dashboard document was loaded"
        for url, headers in self.documents.items():
            assert headers.get("content-security-policy") == CONTENT_SECURITY_POLICY, url
            assert headers.get("x-frame-options") == "SAMEORIGIN", url
            assert headers.get("x-content-type-options") == "nosniff", url
        assert self.violations == []


def log_in(page, base_url: str, username: str, password: str) -> None:
    """Sign in with the simple auth manager's form."""
    page.goto(f"{base_url}/")
    page.wait_for_url(re.compile(r"/auth/login"))
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(password)
    page.locator("button[type=submit]").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)


def open_dashboard(page):
    """Browse -> Customer health; the dashboard's frame."""
    page.get_by_role("button", name=re.compile("Browse", re.I)).click()
    page.get_by_role("menuitem", name="Customer health").click()
    page.wait_for_url(re.compile(r"/plugin/customer-health"))
    return page.frame_locator("iframe")


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
    csp = CSPWatch(context)
    page = context.new_page()
    page.set_default_timeout(60_000)

    # Log in to Airflow, open the dashboard from the Airflow navigation (Browse -> Customer health).
    log_in(page, airflow_ui.base_url, airflow_ui.username, airflow_ui.password)
    frame = open_dashboard(page)  # every step below happens inside the Airflow UI's frame
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
    # The override and revoke forms ran their script under the policy, and nothing was blocked.
    assert any(f"/customer-health/accounts/{key}" in url for url in csp.documents)
    csp.assert_enforced_and_clean()
    context.close()


def owned_accounts(warehouse_url: str, email: str) -> tuple[str, str, int]:
    """The Salesforce User with ``email``: id, name, and how many accounts the latest scores have."""
    hs = health_scores.c
    with engine_for(warehouse_url).connect() as conn:
        user = conn.execute(select(raw_sf_user.c.id, raw_sf_user.c.name).where(raw_sf_user.c.email == email)).one()
        latest = conn.execute(select(hs.as_of_date).where(hs.model_version == "v1").order_by(hs.as_of_date.desc()).limit(1)).scalar_one()
        scored = set(conn.execute(select(hs.account_key).where(hs.model_version == "v1", hs.as_of_date == latest)).scalars())
        owners = Counter(o for k, o in conn.execute(select(raw_sf_account.c.id, raw_sf_account.c.owner_id)) if k in scored)
    return user.id, user.name, owners[user.id]


def test_a_csm_works_through_their_accounts_from_the_worklist_under_the_csp(airflow_ui, browser, screenshots):
    from playwright.sync_api import expect

    owner_id, owner_name, mine = owned_accounts(airflow_ui.warehouse_url, airflow_ui.csm_username)
    assert mine > 1
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    csp = CSPWatch(context)
    page = context.new_page()
    page.set_default_timeout(60_000)
    log_in(page, airflow_ui.base_url, airflow_ui.csm_username, airflow_ui.csm_password)
    frame = open_dashboard(page)
    frame.get_by_role("link", name="Worklist").click()

    # Their own accounts, highest priority first: the Airflow login's e-mail is their Salesforce User's.
    owner = frame.get_by_label("Owner")
    expect(owner).to_have_value(owner_id)
    assert owner.locator("option:checked").inner_text() == f"My accounts ({owner_name})"
    rows = frame.locator("table.worklist tbody tr[data-account]")
    assert rows.count() == min(mine, 50)
    assert frame.get_by_role("status").first.inner_text().startswith(f"Showing 1–{min(mine, 50)} of {mine} account")
    first = rows.first.locator("td").nth(1).locator("a")
    first_name, first_key = first.inner_text(), rows.first.get_attribute("data-account")
    page.screenshot(path=screenshots / "09-worklist-mine.png", full_page=True)

    # Narrowed to At Risk and Critical with the form (no script needed) ...
    frame.get_by_role("checkbox", name=re.compile("At Risk")).check()
    frame.get_by_role("checkbox", name=re.compile("Critical")).check()
    with page.expect_event("framenavigated"):
        frame.get_by_role("button", name="Apply").click()
    frame.locator("table.worklist").wait_for()
    for zone in frame.locator("table.worklist tbody tr[data-account] td:nth-child(5) .zone").all_inner_texts():
        assert zone in ("At Risk", "Critical")
    page.screenshot(path=screenshots / "10-worklist-at-risk.png", full_page=True)

    # ... everyone's accounts, by choosing the owner (the page's script submits the form) ...
    with page.expect_event("framenavigated"):
        frame.get_by_label("Owner").select_option("all")
    expect(frame.get_by_label("Owner")).to_have_value("all")
    assert frame.get_by_role("status").first.inner_text().startswith("Showing 1–")

    # ... downloaded as CSV: every row under the filters, with a header.
    with page.expect_download() as download:
        frame.get_by_role("link", name="Download CSV").click()
    path = download.value.path()
    lines = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))
    assert download.value.suggested_filename.startswith("customer-health-worklist-all-owners-At-Risk-Critical-v1-")
    status = frame.get_by_role("status").first.inner_text()
    assert len(lines) == int(re.search(r"of ([\d,]+) account", status).group(1).replace(",", ""))
    assert {line["zone"] for line in lines} <= {"At Risk", "Critical"}
    assert all(line["account_url"] == f"{airflow_ui.base_url}/customer-health/accounts/{line['account_key']}" for line in lines)

    # Back to their own list, and into its most urgent account.
    frame.get_by_role("link", name="Worklist").click()
    expect(frame.get_by_label("Owner")).to_have_value(owner_id)
    frame.locator(f'tr[data-account="{first_key}"]').wait_for()
    frame.get_by_role("link", name=first_name, exact=True).first.click()
    frame.get_by_text("Score history").wait_for()
    assert frame.get_by_role("heading", level=1).inner_text() == first_name
    page.screenshot(path=screenshots / "11-worklist-account.png", full_page=True)
    csp.assert_enforced_and_clean()
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
