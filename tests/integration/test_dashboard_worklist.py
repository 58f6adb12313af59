"""The CSM worklist, CSV exports and security headers, over the company scored by the real code.

The warehouse is ``test_dashboard_api``'s module company (the session's ``scored_company`` plus a
backfill's suppressed decisions, an audit and a proposal; its fixtures and helpers are imported,
not copied), and on a copy of it what happens at a real company after that:

* in Salesforce (a private sandbox over a copy of the scored company's, through its REST API):
  a CSM completes one of the check-in Tasks the pipeline created, and an account is renamed to
  a spreadsheet formula - names come from source systems;
* the pipeline reads Salesforce again (``pipeline.extract_salesforce``, ``build_crosswalk``),
  then runs its next days - signals, scores, decisions - without dispatching, so the newest
  decisions are still ``pending``.

The worklist's expectations are recomputed from the stored rows: priorities from
``health_scores``, owners from ``raw_sf_account``/``raw_sf_user``, drivers through
``read_drivers`` and open actions through the rules' own definition (``actions.decide.is_open_action``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select, update

import tests.integration.test_dashboard_api as api
from customer_health.actions.config import load_action_rules
from customer_health.actions.decide import is_open_action
from customer_health.scoring.drivers import read_drivers
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.io import utcnow
from customer_health.warehouse.schema import (
    account_crosswalk,
    action_outbox,
    raw_sf_account,
    raw_sf_task,
    raw_sf_user,
)

# test_dashboard_api's fixtures, used here under the same names.
company, airflow_metadata, tokens = api.company, api.airflow_metadata, api.tokens
client, copy_sqlite, stored_scores, text_of, element = api.client, api.copy_sqlite, api.stored_scores, api.text_of, api.element

FORMULA_NAME = "=cmd|' /C calc'!A0 Holdings"  # what a spreadsheet would run, as an account name
EXTRA_DAYS = 5  # days the pipeline runs after the scored company, at most, until a decision is pending


# --------------------------------------------------------------------------- the warehouse
@dataclass(frozen=True)
class WorklistCompany:
    """The worklist's warehouse (a template every test copies) and what the tests look at."""

    template_url: str
    as_of: date  # the view's date: decided, not dispatched
    owner_id: str  # the Salesforce User with the most accounts
    owner_email: str
    completed_key: str  # a sent check-in whose Task a CSM completed in Salesforce
    renamed: str  # the account renamed to FORMULA_NAME


def _private_sandbox(source: Path, folder: Path):
    """A sandbox over a copy of ``source`` (the scored company's: the Tasks it was sent are in it)."""
    from health_sandbox.server import Sandbox

    folder.mkdir(parents=True)
    for name in ("company.db", "product.db"):
        copy_sqlite(f"sqlite:///{source / name}", folder / name)
    for cert in source.glob("sandbox-*.pem"):
        (folder / cert.name).write_bytes(cert.read_bytes())
    return Sandbox.start(folder)


def _busiest_owner(url: str, version: str, day: date) -> tuple[str, str]:
    scored = set(stored_scores(url, version, day))
    with engine_for(url).connect() as conn:
        owners = Counter(o for k, o in conn.execute(select(raw_sf_account.c.id, raw_sf_account.c.owner_id)) if k in scored)
        emails = dict(conn.execute(select(raw_sf_user.c.id, raw_sf_user.c.email).where(raw_sf_user.c.is_active.is_(True))).all())
    owner_id = next(o for o, _ in owners.most_common() if emails.get(o))
    return owner_id, emails[owner_id]


@pytest.fixture(scope="module")
def worklist_company(company, scored_company, tmp_path_factory) -> WorklistCompany:
    from customer_health import pipeline, settings
    from customer_health.sources.salesforce import _hook_class
    from health_sandbox.connections import as_environment, sandbox_connections
    from health_sandbox.store import sf_account, sf_task

    folder = tmp_path_factory.mktemp("worklist-company")
    url = copy_sqlite(company.template_url, folder / "warehouse.db")
    owner_id, owner_email = _busiest_owner(url, company.version, company.as_of)
    with engine_for(url).connect() as conn:
        sent_task = conn.execute(
            select(action_outbox.c.idempotency_key, action_outbox.c.external_id)
            .where(action_outbox.c.action_type == "checkin_task", action_outbox.c.status == "sent",
                   action_outbox.c.resolved_at.is_(None))
            .order_by(action_outbox.c.trigger_date.desc(), action_outbox.c.idempotency_key).limit(1)
        ).one()  # fmt: skip
        mine = conn.execute(select(raw_sf_account.c.id).where(raw_sf_account.c.owner_id == owner_id)).scalars().all()
    renamed = max(mine, key=lambda k: stored_scores(url, company.version, company.as_of).get(k, {}).get("priority") or -1)
    sandbox = _private_sandbox(Path(scored_company.sandbox.folder), folder / "sandbox")
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in as_environment(sandbox_connections(sandbox.endpoints, url)).items():
                mp.setenv(name, value)
            mp.setenv(settings.WAREHOUSE_URL_ENV, url)
            engine_for.cache_clear()
            # In Salesforce: a CSM completes a check-in Task, and an account gets a formula for a name.
            salesforce = _hook_class()(settings.SALESFORCE_CONN_ID).get_conn()
            salesforce.Task.update(sent_task.external_id, {"Status": "Completed"})
            salesforce.Account.update(renamed, {"Name": FORMULA_NAME})
            # ... ten minutes ago: beyond the extraction's safety lag (sources.window.SAFETY_LAG).
            earlier = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=10)
            with sandbox.store.begin() as store:
                store.execute(update(sf_task).where(sf_task.c.Id == sent_task.external_id).values(SystemModstamp=earlier))
                store.execute(update(sf_account).where(sf_account.c.Id == renamed).values(SystemModstamp=earlier))
            pipeline.extract_salesforce(datetime.now(UTC))
            pipeline.build_crosswalk()
            # The next days, as the daily DAG runs them, decided but not dispatched yet.
            day = company.as_of
            for _ in range(EXTRA_DAYS):
                day += timedelta(days=1)
                pipeline.clear_signal_input(day)
                pipeline.compute_signals(day)
                pipeline.score(day)
                pipeline.decide_actions(day, "scheduled", True)
                if _statuses(url, day) & {"pending"}:
                    break
    finally:
        sandbox.stop()
        engine_for.cache_clear()
    assert "pending" in _statuses(url, day), f"nothing decided in {EXTRA_DAYS} days after the scored company"
    return WorklistCompany(url, day, owner_id, owner_email, sent_task.idempotency_key, renamed)


def _statuses(url: str, day: date) -> set[str]:
    with engine_for(url).connect() as conn:
        return set(conn.execute(select(action_outbox.c.status).where(action_outbox.c.trigger_date == day)).scalars())


@pytest.fixture()
def warehouse(worklist_company, tmp_path, monkeypatch) -> str:
    """A private copy of the worklist's warehouse, selected through CUSTOMER_HEALTH_WAREHOUSE_URL."""
    from customer_health import settings
    from customer_health.dashboard.app import clear_caches

    url = copy_sqlite(worklist_company.template_url, tmp_path / "warehouse.db")
    monkeypatch.setenv(settings.WAREHOUSE_URL_ENV, url)
    monkeypatch.delenv("AIRFLOW_CONN_HEALTH_SALESFORCE", raising=False)
    clear_caches()
    return url


@pytest.fixture()
def csm_token(worklist_company, tokens) -> str:
    """A login whose username is the e-mail of the Salesforce User with the most accounts."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from customer_health.dashboard.auth import auth_manager

    return auth_manager().generate_jwt(SimpleAuthManagerUser(username=worklist_company.owner_email.upper(), role="VIEWER"))


# --------------------------------------------------------------------------- what the rows say
def expected_worklist(url: str, version: str, day: date, *, owner: str | None = None, zones=(), plan=None, segment=None):
    """The worklist recomputed from the stored rows, highest priority first."""
    scores = stored_scores(url, version, day)
    rules = load_action_rules()
    today = utcnow().date()
    with engine_for(url).connect() as conn:
        owners = dict(conn.execute(select(raw_sf_account.c.id, raw_sf_account.c.owner_id)).all())
        names = dict(conn.execute(select(raw_sf_user.c.id, raw_sf_user.c.name)).all())
        crosswalk = dict(conn.execute(select(account_crosswalk.c.account_key, account_crosswalk.c.account_name)).all())
        outbox = conn.execute(
            select(action_outbox, raw_sf_task.c.status.label("task_status"), raw_sf_task.c.activity_date.label("task_due"))
            .select_from(action_outbox.outerjoin(raw_sf_task, raw_sf_task.c.health_action_key == action_outbox.c.idempotency_key))
        ).all()  # fmt: skip
    open_by_account: dict[str, list[dict]] = {}
    for row in outbox:
        spec = rules.actions.get(row.action_type)
        if not is_open_action(row, spec):
            continue
        due = None
        if spec is not None and spec.kind == "salesforce_task":
            due = row.task_due or date.fromisoformat(json.loads(row.payload)["fields"]["ActivityDate"])
        open_by_account.setdefault(row.account_key, []).append(
            {"idempotency_key": row.idempotency_key, "action_type": row.action_type, "status": row.status,
             "trigger_date": row.trigger_date, "due_date": due, "overdue": due is not None and due < today}
        )  # fmt: skip
    wanted = [
        r for r in scores.values()
        if (owner is None or owners.get(r["account_key"]) == owner) and (not zones or r["zone"] in zones)
        and (plan is None or r["segment"].split("/")[1] == plan) and (segment is None or r["segment"] == segment)
    ]  # fmt: skip
    wanted.sort(key=lambda r: (r["priority"] is None, -(r["priority"] or 0), r["account_key"]))
    rows = []
    for rank, r in enumerate(wanted, start=1):
        drivers = read_drivers(r["drivers"])
        top = drivers.down[0] if drivers.down else drivers.up[0] if drivers.up else None
        actions = sorted(open_by_account.get(r["account_key"], []),
                         key=lambda a: (a["due_date"] is None, a["due_date"] or date.max, -a["trigger_date"].toordinal(),
                                        a["action_type"]))  # fmt: skip
        rows.append({
            "rank": rank, "account_key": r["account_key"], "account_name": crosswalk.get(r["account_key"]),
            "owner_id": owners.get(r["account_key"]), "owner_name": names.get(owners.get(r["account_key"])),
            "segment": r["segment"], "score": r["score"], "zone": r["zone"], "delta_30": r["delta_30"], "arr": r["arr"],
            "priority": r["priority"], "override_id": r["override_id"],
            "top_driver": top.as_dict() if top else None, "open_actions": actions,
        })  # fmt: skip
    return rows


def all_pages(c, query: str, per_page: int = 500) -> list[dict]:
    rows, page = [], 1
    while True:
        data = c.get(f"/api/worklist?{query}&per_page={per_page}&page={page}").json()
        rows += data["accounts"]
        if page >= data["pages"]:
            return rows
        page += 1


def assert_rows_match(shown: list[dict], expected: list[dict]) -> None:
    assert [r["account_key"] for r in shown] == [r["account_key"] for r in expected]
    for got, want in zip(shown, expected, strict=True):
        key = want["account_key"]
        for field in ("rank", "account_name", "owner_id", "owner_name", "segment", "score", "zone", "delta_30", "arr",
                      "priority", "override_id", "top_driver"):  # fmt: skip
            assert got[field] == want[field], (key, field)
        assert got["open_actions"] == len(want["open_actions"]), key
        first = want["open_actions"][0] if want["open_actions"] else None
        if first is None:
            assert got["open_action"] is None, key
        else:
            assert (got["open_action"]["idempotency_key"], got["open_action"]["status"]) == (
                first["idempotency_key"], first["status"]), key  # fmt: skip
            assert got["open_action"]["due_date"] == (first["due_date"].isoformat() if first["due_date"] else None), key
            assert got["open_action"]["overdue"] == first["overdue"], key


def owner_options(page: str) -> list[tuple[str, bool, str]]:
    """The worklist's owner picker: (value, selected, label) of each option."""
    select_html = re.search(r'<select name="owner"[^>]*>(.*?)</select>', page, re.S).group(1)
    return [(value, bool(selected.strip()), text_of(label))
            for value, selected, label in re.findall(r'<option value="([^"]*)"([^>]*)>(.*?)</option>', select_html, re.S)]


def parse_csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.content.startswith("\ufeff".encode())  # the BOM: Excel reads UTF-8 names as they are
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))


def csv_value(value) -> str:
    """How a JSON value appears in the CSV (numbers as written by Python, None as empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# --------------------------------------------------------------------------- the worklist
def test_the_worklist_ranks_every_account_of_the_view_by_priority(worklist_company, warehouse, tokens):
    c = client(tokens["viewer"])
    data = c.get("/api/worklist?per_page=500").json()
    assert (data["model_version"], data["as_of_date"]) == ("v1", worklist_company.as_of.isoformat())
    assert data["filters"]["owner"] is None and data["me"] is None  # victor.viewer is no Salesforce user
    expected = expected_worklist(warehouse, "v1", worklist_company.as_of)
    assert data["total"] == len(expected) == len(stored_scores(warehouse, "v1", worklist_company.as_of))
    assert_rows_match(data["accounts"], expected)
    assert [r["priority"] for r in data["accounts"]] == sorted((r["priority"] for r in data["accounts"]), reverse=True)
    assert all(r["account_url"] == f"http://dashboard.test/accounts/{r['account_key']}" for r in data["accounts"])
    assert any(r["top_driver"] and r["top_driver"]["points"] < 0 for r in data["accounts"])


def test_open_actions_are_the_rules_open_actions_with_the_tasks_due_date(worklist_company, warehouse, tokens):
    rows = client(tokens["viewer"]).get("/api/worklist?per_page=500").json()["accounts"]
    expected = {r["account_key"]: r for r in expected_worklist(warehouse, "v1", worklist_company.as_of)}
    shown = {r["account_key"]: r for r in rows}
    open_actions = [r["open_action"] for r in rows if r["open_action"]]
    assert {a["status"] for a in open_actions} >= {"pending", "sent"}
    due = [a for a in open_actions if a["due_date"]]
    assert due and all(a["action_type"].endswith("_task") for a in due)
    with engine_for(warehouse).connect() as conn:
        completed = conn.execute(
            select(action_outbox.c.account_key, action_outbox.c.status, action_outbox.c.resolved_at,
                   raw_sf_task.c.status.label("task_status"))
            .join(raw_sf_task, raw_sf_task.c.health_action_key == action_outbox.c.idempotency_key)
            .where(action_outbox.c.idempotency_key == worklist_company.completed_key)
        ).one()  # fmt: skip
        suppressed = set(conn.execute(
            select(action_outbox.c.idempotency_key).where(action_outbox.c.status == "suppressed")).scalars())  # fmt: skip
    # Sent and unresolved in the outbox, but the CSM completed the Task in Salesforce: not open.
    assert (completed.status, completed.resolved_at, completed.task_status) == ("sent", None, "Completed")
    keys = {a["idempotency_key"] for r in expected.values() for a in r["open_actions"]}
    assert worklist_company.completed_key not in keys and not keys & suppressed
    assert shown[completed.account_key]["open_actions"] == len(expected[completed.account_key]["open_actions"])


def test_my_accounts_are_preselected_for_a_login_with_a_salesforce_users_email(worklist_company, warehouse, csm_token):
    c = client(csm_token)
    data = c.get("/api/worklist?per_page=500").json()
    me = data["me"]
    assert (me["owner_id"], me["email"].lower()) == (worklist_company.owner_id, worklist_company.owner_email.lower())
    assert data["filters"]["owner"]["owner_id"] == worklist_company.owner_id
    expected = expected_worklist(warehouse, "v1", worklist_company.as_of, owner=worklist_company.owner_id)
    assert data["total"] == len(expected) > 1
    assert_rows_match(data["accounts"], expected)
    everyone = c.get("/api/worklist?owner=all&per_page=1").json()
    assert everyone["filters"]["owner"] is None and everyone["total"] > data["total"]
    assert c.get("/api/worklist?owner=me&per_page=1").json()["total"] == data["total"]
    options = owner_options(client(csm_token, cookie=True).get("/worklist").text)
    assert options[0] == (worklist_company.owner_id, True, f"My accounts ({me['name']})")
    assert ("all", False, "All owners") in options


def test_a_login_without_a_salesforce_user_picks_an_owner(worklist_company, warehouse, tokens):
    options = owner_options(client(tokens["viewer"], cookie=True).get("/worklist").text)
    assert options[0] == ("all", True, "All owners")
    with engine_for(warehouse).connect() as conn:
        owner_ids = set(conn.execute(select(raw_sf_account.c.owner_id).distinct()).scalars()) - {None}
        names = dict(conn.execute(select(raw_sf_user.c.id, raw_sf_user.c.name)).all())
    assert sorted(o for o, _, _ in options[1:]) == sorted(owner_ids)
    assert all(label.startswith(names.get(o) or o) for o, _, label in options[1:])
    chosen = client(tokens["viewer"]).get(f"/api/worklist?owner={worklist_company.owner_id}&per_page=500").json()
    assert_rows_match(chosen["accounts"],
                      expected_worklist(warehouse, "v1", worklist_company.as_of, owner=worklist_company.owner_id))  # fmt: skip
    refused = client(tokens["viewer"]).get("/api/worklist?owner=me")
    assert refused.status_code == 422 and "victor.viewer" in refused.json()["detail"]
    assert client(tokens["viewer"]).get("/api/worklist?owner=x'%20OR%201=1").status_code == 422


def test_filters_by_zone_plan_and_segment_count_every_match(worklist_company, warehouse, tokens):
    c = client(tokens["viewer"])
    day = worklist_company.as_of
    rows = stored_scores(warehouse, "v1", day).values()
    segment = Counter(r["segment"] for r in rows).most_common(1)[0][0]
    plan = segment.split("/")[1]
    for query, kwargs in [
        ("zone=At+Risk&zone=Critical", {"zones": ("At Risk", "Critical")}),
        (f"plan={plan}", {"plan": plan}),
        (f"segment={quote(segment)}&zone=Healthy", {"segment": segment, "zones": ("Healthy",)}),
        (f"owner={worklist_company.owner_id}&zone=Neutral&plan={plan}",
         {"owner": worklist_company.owner_id, "zones": ("Neutral",), "plan": plan}),
    ]:  # fmt: skip
        data = c.get(f"/api/worklist?{query}&per_page=500").json()
        expected = expected_worklist(warehouse, "v1", day, **kwargs)
        assert data["total"] == len(expected), query
        assert_rows_match(data["accounts"], expected)
        without_zone = expected_worklist(warehouse, "v1", day, **{**kwargs, "zones": ()})
        assert data["zone_counts"] == {z: sum(r["zone"] == z for r in without_zone)
                                       for z in ("Healthy", "Neutral", "At Risk", "Critical")}, query  # fmt: skip
    unknown = c.get("/api/worklist?zone=Doomed")
    assert unknown.status_code == 422 and "Healthy, Neutral, At Risk, Critical" in unknown.json()["detail"]
    assert c.get("/api/worklist?plan=%25").json()["total"] == 0  # a LIKE wildcard is a character, not a pattern


def test_pages_cover_every_row_once_and_say_how_many_there_are(worklist_company, warehouse, tokens):
    c = client(tokens["viewer"])
    expected = expected_worklist(warehouse, "v1", worklist_company.as_of)
    first = c.get("/api/worklist?per_page=7").json()
    assert (first["total"], first["pages"], first["first_row"], first["last_row"]) == (
        len(expected), math.ceil(len(expected) / 7), 1, 7)  # fmt: skip
    assert_rows_match(all_pages(c, "owner=all", per_page=7), expected)
    beyond = c.get(f"/api/worklist?per_page=7&page={first['pages'] + 1}").json()
    assert (beyond["accounts"], beyond["total"], beyond["first_row"]) == ([], len(expected), None)
    page = client(tokens["viewer"], cookie=True).get("/worklist?per_page=7&page=2").text
    assert f"Showing 8–14 of {len(expected)} accounts" in text_of(element(page, "p", "count"))
    assert 'href="/worklist?page=1&amp;owner=all&amp;per_page=7" rel="prev"' in page
    assert 'href="/worklist?page=3&amp;owner=all&amp;per_page=7" rel="next"' in page
    assert c.get("/api/worklist?per_page=501").status_code == 422


def test_the_worklist_page_shows_each_row_with_its_link_driver_and_open_action(worklist_company, warehouse, csm_token):
    page = client(csm_token, cookie=True).get("/worklist").text
    expected = expected_worklist(warehouse, "v1", worklist_company.as_of, owner=worklist_company.owner_id)
    table = element(page, "table", "worklist")
    rows = re.findall(r'<tr data-account="([^"]+)">(.*?)</tr>', table, re.S)
    assert [k for k, _ in rows] == [r["account_key"] for r in expected[:50]]
    for (key, row), want in zip(rows, expected, strict=False):
        assert f'<a href="/accounts/{key}">' in row
        cells = text_of(row)
        if want["top_driver"]:
            assert f"{want['top_driver']['label']} ({want['top_driver']['points']:+.1f} pts)" in cells
        if want["open_actions"] and want["open_actions"][0]["due_date"]:
            assert f"due {want['open_actions'][0]['due_date'].isoformat()}" in cells
        elif not want["open_actions"]:
            assert "none open" in cells
    # A name from Salesforce is text on the page, never markup.
    assert f'<a href="/accounts/{worklist_company.renamed}">=cmd|&#39; /C calc&#39;!A0 Holdings</a>' in page
    assert 'href="/api/worklist?format=csv&amp;owner=' in page and 'class="active">Worklist</a>' in page


def test_an_overridden_account_links_from_the_worklist_to_its_revoke_form(worklist_company, warehouse, tokens):
    from customer_health import pipeline
    from customer_health.scoring.overrides import create_override

    day = worklist_company.as_of
    key = expected_worklist(warehouse, "v1", day)[0]["account_key"]
    # Entered by a CSM on the view's date (through the one writer, as the dashboard's endpoint
    # does), then scored: an override counts from the scoring run after it.
    created = create_override(engine_for(warehouse), key, 90, "Renewal signed; the dip is a planned migration",
                              "ada.admin", utcnow().date() + timedelta(days=30), now=datetime.combine(day, datetime.min.time()))
    pipeline.score(day)
    admin = client(tokens["admin"])
    row = next(r for r in admin.get("/api/worklist?owner=all&per_page=500").json()["accounts"] if r["account_key"] == key)
    assert (row["override_id"], row["score"]) == (created, 90)
    page = client(tokens["admin"], cookie=True).get("/worklist?owner=all&per_page=500").text
    assert f'href="/accounts/{key}#override-{created}"' in page
    account = client(tokens["admin"], cookie=True).get(f"/accounts/{key}").text
    assert f'id="override-{created}"' in account and f"Revoke #{created}" in account
    revoked = admin.post(f"/api/accounts/{key}/overrides/{created}/revoke", json={"reason": "The customer is leaving after all"})
    assert revoked.status_code == 200 and revoked.json()["revoked_by"] == "ada.admin"


def test_nothing_scored_yet_is_an_empty_worklist(sqlite_warehouse_url, monkeypatch, tokens):
    monkeypatch.setenv("CUSTOMER_HEALTH_WAREHOUSE_URL", sqlite_warehouse_url)
    c = client(tokens["viewer"])
    assert c.get("/api/worklist").json()["total"] == 0
    assert "No health scores yet" in client(tokens["viewer"], cookie=True).get("/worklist").text


# --------------------------------------------------------------------------- CSV
def test_the_worklist_csv_holds_every_row_of_the_filters_as_the_json_does(worklist_company, warehouse, csm_token):
    c = client(csm_token)
    for query in ("", "owner=all", "owner=all&zone=At+Risk&zone=Critical"):
        response = c.get(f"/api/worklist?{query}&format=csv")
        rows = parse_csv(response)
        shown = all_pages(c, query)
        assert len(rows) == len(shown) == c.get(f"/api/worklist?{query}").json()["total"], query
        for line, row in zip(rows, shown, strict=True):
            assert line["account_key"] == row["account_key"] and line["rank"] == str(row["rank"])
            for field in ("account_name", "owner_id", "owner_name", "segment", "plan", "score", "zone", "delta_30",
                          "arr", "priority", "open_actions", "account_url"):  # fmt: skip
                value = row[field]
                if field == "account_name" and value.startswith("="):
                    value = "'" + value
                assert line[field] == csv_value(value), (row["account_key"], field)
            assert line["top_driver"] == csv_value((row["top_driver"] or {}).get("label"))
            assert line["open_action_due"] == csv_value((row["open_action"] or {}).get("due_date"))
            assert line["open_action_status"] == csv_value((row["open_action"] or {}).get("status"))
    disposition = c.get("/api/worklist?owner=all&zone=At+Risk&format=csv").headers["content-disposition"]
    assert disposition == f'attachment; filename="customer-health-worklist-all-owners-At-Risk-v1-{worklist_company.as_of}.csv"'


def test_a_formula_from_a_source_system_is_text_in_the_csv(worklist_company, warehouse, csm_token):
    rows = parse_csv(client(csm_token).get("/api/worklist?format=csv"))
    [line] = [r for r in rows if r["account_key"] == worklist_company.renamed]
    assert line["account_name"] == "'" + FORMULA_NAME
    search = parse_csv(client(csm_token).get(f"/api/accounts?q={quote(FORMULA_NAME[:4])}&format=csv"))
    assert [r["account_name"] for r in search] == ["'" + FORMULA_NAME]


@pytest.mark.parametrize("text", ["=1+2", "+1", "-2", "@SUM(A1)", "\tx", "\r=x", "=HYPERLINK(\"http://x\",\"y\")"])
def test_the_csv_guard_prefixes_what_a_spreadsheet_would_run(text):
    from customer_health.dashboard import export

    body = b"".join(export.lines([export.field("name"), export.field("n")], [{"name": text, "n": -12}]))
    [row] = list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))[1:]
    assert row == ["'" + text, "-12"]  # numbers stay numbers, unquoted
    assert body.decode("utf-8-sig").endswith(',-12\r\n')


def test_csv_quoting_keeps_commas_quotes_newlines_and_semicolons_in_their_cell():
    from customer_health.dashboard import export

    names = ['Smith, Jones & Co', 'The "Best" Ltd', "Line\nbreak", "a;=1+1", "Zoë Ørsted", "", None, "  =x"]
    body = b"".join(export.lines([export.field("name")], [{"name": n} for n in names]))
    text = body.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["name"] and [r[0] for r in rows[1:]] == [n or "" for n in names]
    assert '"a;=1+1"' in text  # quoted: a spreadsheet splitting on ";" keeps it in one cell
    assert text.endswith("\r\n") and "\r\n" in text


def test_search_results_export_every_match_in_the_pages_order(worklist_company, warehouse, tokens):
    c = client(tokens["viewer"])
    json_rows = c.get("/api/accounts?q=inc&limit=100").json()
    response = c.get("/api/accounts?q=inc&format=csv")
    rows = parse_csv(response)
    assert len(rows) == json_rows["total"] > 20
    assert [r["account_key"] for r in rows] == [a["account_key"] for a in json_rows["accounts"]]
    for line, a in zip(rows, json_rows["accounts"], strict=True):
        assert (line["score"], line["zone"], line["score_date"]) == (csv_value(a["score"]), csv_value(a["zone"]),
                                                                     csv_value(a["score_date"]))  # fmt: skip
    assert response.headers["content-disposition"] == (
        f'attachment; filename="customer-health-search-inc-v1-{worklist_company.as_of}.csv"')  # fmt: skip
    page = client(tokens["viewer"], cookie=True).get("/accounts?q=inc").text
    assert 'href="/api/accounts?q=inc&amp;format=csv"' in page


def test_trending_and_interventions_export_their_lists(worklist_company, warehouse, tokens):
    c = client(tokens["viewer"])
    trending = c.get("/api/trending?limit=5").json()
    rows = parse_csv(c.get("/api/trending?limit=5&format=csv"))
    movers = [("decline", m) for m in trending["declines"]] + [("recovery", m) for m in trending["recoveries"]]
    assert [(r["direction"], r["account_key"]) for r in rows] == [(d, m["account_key"]) for d, m in movers]
    for line, (_, m) in zip(rows, movers, strict=True):
        assert (line["score"], line["delta_30"], line["zone"]) == (csv_value(m["score"]), csv_value(m["delta_30"]), m["zone"])
        assert line["drivers_down"] == "; ".join(f"{d['label']} ({d['points']:+.1f} pts)" for d in m["drivers"]["down"])
    interventions = c.get("/api/interventions?window_days=180&horizon_days=30").json()
    rows = parse_csv(c.get("/api/interventions?window_days=180&horizon_days=30&format=csv"))
    by_type = {r["group"]: r for r in rows if r["kind"] == "action type"}
    assert list(by_type) == [t["action_type"] for t in interventions["by_action_type"]]
    for entry in interventions["by_action_type"]:
        line = by_type[entry["action_type"]]
        assert (line["episodes"], line["recovery_rate"]) == (csv_value(entry["episodes"]), csv_value(entry["recovery_rate"]))
    overall = next(r for r in rows if r["group"] == "all episodes")
    assert overall["episodes"] == str(interventions["overall"]["episodes"])
    for path in ("/trending", "/interventions"):
        assert "format=csv" in client(tokens["viewer"], cookie=True).get(path).text


# --------------------------------------------------------------------------- security headers
SECURITY_HEADERS = {
    "x-frame-options": "SAMEORIGIN",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def assert_secured(response, what: str) -> None:
    from customer_health.dashboard.security import CONTENT_SECURITY_POLICY

    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (what, name)
    assert response.headers.get("content-security-policy") == CONTENT_SECURITY_POLICY, what


def test_every_response_carries_the_security_headers(worklist_company, warehouse, tokens, monkeypatch):
    from customer_health.dashboard import queries
    from customer_health.dashboard.security import CONTENT_SECURITY_POLICY

    assert "frame-ancestors 'self'" in CONTENT_SECURITY_POLICY and "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "http" not in CONTENT_SECURITY_POLICY
    key = expected_worklist(warehouse, "v1", worklist_company.as_of)[0]["account_key"]
    viewer, page_viewer = client(tokens["viewer"]), client(tokens["viewer"], cookie=True)
    paths = ["/", "/worklist", "/trending", f"/accounts/{key}", "/accounts?q=inc", "/interventions", "/model",
             "/api/portfolio", "/api/worklist", "/api/trending", f"/api/accounts/{key}", "/api/accounts?q=inc",
             "/api/interventions", "/api/model", "/api/worklist?format=csv", "/api/trending?format=csv",
             "/api/accounts?q=inc&format=csv", "/api/interventions?format=csv",
             "/static/dashboard.css", "/static/dashboard.js"]  # fmt: skip
    for path in paths:
        response = page_viewer.get(path)
        assert response.status_code == 200, path
        assert_secured(response, path)
    static = page_viewer.get("/static/dashboard.js")
    assert static.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    errors = [
        (client().get("/api/worklist"), 401), (client().get("/worklist", follow_redirects=False), 302),
        (viewer.get("/api/accounts/001ZZZZZZZZZZZZZZZ"), 404), (viewer.get("/no-such-page"), 404),
        (viewer.get("/static/missing.css"), 404), (viewer.get("/api/worklist?zone=Doomed"), 422),
        (viewer.get("/api/worklist?per_page=0"), 422), (viewer.get("/api/portfolio?model_version=v9"), 404),
        (viewer.post(f"/api/accounts/{key}/overrides", json=api.override_body()), 403),
        (client(tokens["admin"]).post(f"/api/accounts/{key}/overrides", data={"x": "y"}), 415),
    ]  # fmt: skip
    for response, status in errors:
        assert response.status_code == status, (response.request.url, response.text)
        assert_secured(response, f"{response.request.url} ({status})")

    def broken(*args, **kwargs):
        raise RuntimeError("the warehouse fell over")

    monkeypatch.setattr(queries, "portfolio", broken)
    from fastapi.testclient import TestClient

    from customer_health.dashboard.app import create_app

    crashing = TestClient(create_app(warm_cache=False), base_url="http://dashboard.test", raise_server_exceptions=False)
    crashing.headers["Authorization"] = f"Bearer {tokens['viewer']}"
    crash = crashing.get("/api/portfolio")
    assert crash.status_code == 500
    assert_secured(crash, "an unhandled exception")


def test_the_audit_report_keeps_its_inline_styles_and_runs_no_script(company, worklist_company, warehouse, tokens):
    from customer_health.dashboard.security import REPORT_POLICY

    report = client(tokens["viewer"], cookie=True).get(f"/model/{company.version}/report")
    assert report.status_code == 200 and "<style>" in report.text
    assert report.headers["content-security-policy"] == REPORT_POLICY
    assert "script-src" not in REPORT_POLICY and "default-src 'none'" in REPORT_POLICY
    assert report.headers["x-frame-options"] == "SAMEORIGIN" and report.headers["x-content-type-options"] == "nosniff"


INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "an inline script"),
    (re.compile(r"<style", re.I), "an inline stylesheet"),
    (re.compile(r"\sstyle=", re.I), "a style attribute"),
    (re.compile(r"\son[a-z]+=", re.I), "an inline event handler"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


def test_no_page_needs_inline_script_or_style(company, worklist_company, warehouse, tokens):
    key = expected_worklist(warehouse, "v1", worklist_company.as_of)[0]["account_key"]
    admin = client(tokens["admin"], cookie=True)
    for path in ["/", "/worklist", "/worklist?owner=all&zone=At+Risk", "/trending", f"/accounts/{key}",
                 "/accounts?q=inc", "/interventions", "/model", f"/?model_version={company.proposal}"]:  # fmt: skip
        page = admin.get(path)
        assert page.status_code == 200, path
        for pattern, what in INLINE:
            found = pattern.search(page.text)
            assert not found, f"{path}: {what}: {page.text[max(0, found.start() - 80):found.end() + 80]}"
        assert re.findall(r"<script[^>]*src=\"([^\"]+)\"", page.text) == ["/static/dashboard.js"], path
        assert re.findall(r"<link[^>]*href=\"([^\"]+)\"", page.text) == ["/static/dashboard.css"], path


# --------------------------------------------------------------------------- PostgreSQL
def test_the_worklist_answers_alike_on_sqlite_and_postgresql(worklist_company, warehouse, postgres_url):
    from fastapi.encoders import jsonable_encoder

    from customer_health.dashboard import queries, worklist
    from customer_health.warehouse.migrate import upgrade_to_head

    upgrade_to_head(engine_for(postgres_url))
    api.copy_to(warehouse, postgres_url)
    rows = stored_scores(warehouse, "v1", worklist_company.as_of).values()
    segment = Counter(r["segment"] for r in rows).most_common(1)[0][0]
    answers = []
    for url in (warehouse, postgres_url):
        with engine_for(url).connect() as conn:
            view = queries.resolve_view(conn)
            answers.append(jsonable_encoder({
                "all": worklist.worklist(conn, view, worklist.Filters(), per_page=500),
                "page": worklist.worklist(conn, view, worklist.Filters(), page=3, per_page=9),
                "owner": worklist.worklist(conn, view, worklist.Filters(owner_id=worklist_company.owner_id, zones=("Neutral",))),
                "segment": worklist.worklist(conn, view, worklist.Filters(segment=segment, plan=segment.split("/")[1])),
                "owners": [o.as_dict() for o in worklist.owners(conn)],
                "me": worklist.salesforce_user_by_email(conn, worklist_company.owner_email.upper()).as_dict(),
                "search": list(queries.iter_search_accounts(conn, "inc", view)),
            }))  # fmt: skip
    sqlite_answer, postgres_answer = answers
    for key in sqlite_answer:
        assert sqlite_answer[key] == postgres_answer[key], key
    assert sqlite_answer["all"]["total"] == len(rows)


def test_queries_take_their_values_as_bound_parameters(worklist_company, warehouse):
    """No filter value is ever spliced into the SQL text."""
    from sqlalchemy import event

    from customer_health.dashboard import queries, worklist

    hostile = "x'); DROP TABLE health_scores; --"
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    engine = engine_for(warehouse)
    event.listen(engine, "before_cursor_execute", record)
    try:
        with engine.connect() as conn:
            view = queries.resolve_view(conn)
            filters = worklist.Filters(owner_id=hostile, plan=hostile, segment=hostile)
            assert worklist.worklist(conn, view, filters)["total"] == 0
            worklist.salesforce_user_by_email(conn, hostile + "@example.com")
            list(queries.iter_search_accounts(conn, hostile, view))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements and not [s for s in statements if "DROP TABLE" in s or "x')" in s]
    with sqlite3.connect(warehouse.removeprefix("sqlite:///")) as raw:
        assert raw.execute("SELECT count(*) FROM health_scores").fetchone()[0] > 0

