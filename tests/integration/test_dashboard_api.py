"""The health dashboard's pages and JSON endpoints, over a company scored by the real code, with real Airflow logins.

The app is the one the Airflow plugin mounts, run alone under FastAPI's ``TestClient``. Every
request carries a JWT signed by the configured Airflow auth manager (the simple auth manager
here), in the ``Authorization`` header like an API client or in the ``_token`` cookie like the
Airflow UI; nothing in the dashboard's auth is switched off.

The warehouse is the session's ``scored_company`` (``tests/scored_company.py``): the sandbox's
company extracted by the real clients, 150 days scored by the engine, the last 45 days' actions
decided and delivered through the outbox. On a copy of it, this module adds what the real
product adds over time, through the same code:

* the 60 days before that decided by a backfill (``pipeline.decide_actions`` with run type
  ``backfill``: outbox rows ``suppressed``, never delivered), as ``make demo`` records history;
* outcomes, an audit of ``v1`` (with its HTML report) and a recalibrated proposal registered by
  ``validation.recalibrate`` - which also scores the last five days in the shadow of ``v1``.

No score, driver, explanation or outbox row is written by hand: what a test expects is
recomputed from the stored rows, independently of the dashboard's queries.
"""

from __future__ import annotations

import html
import json
import logging
import re
import sqlite3
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select

from customer_health.scoring.drivers import read_drivers
from customer_health.scoring.overrides import MAX_OVERRIDE_DAYS
from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.io import utcnow
from customer_health.warehouse.schema import (
    action_outbox,
    health_score_episodes,
    health_scores,
    score_overrides,
)
from tests.text_checks import assert_reads_well, problems

BACKFILL_DAYS = 60  # decided by a backfill before the delivered window: suppressed rows
SHADOW_DAYS = 5  # the proposal's scores, beside v1's
RISK, SAFE = ("At Risk", "Critical"), ("Healthy", "Neutral")


# --------------------------------------------------------------------------- the warehouse
def copy_sqlite(source_url: str, target: Path) -> str:
    """A consistent copy of a SQLite warehouse (WAL included) through SQLite's backup API."""
    target.unlink(missing_ok=True)
    source = sqlite3.connect(source_url.removeprefix("sqlite:///"))
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    return f"sqlite:///{target}"


@dataclass(frozen=True)
class Company:
    """The module's warehouse (a template every test copies) and what the tests look at."""

    template_url: str
    as_of: date
    first_action_date: date
    version: str  # the active model, the default view
    proposal: str  # the recalibrated proposal, scored in the shadow for the last SHADOW_DAYS
    report_dir: Path
    at_risk: str  # an At Risk account with drivers and delivered actions
    healthy: str  # a Healthy account


def _pick_accounts(url: str, version: str, as_of: date) -> tuple[str, str]:
    with engine_for(url).connect() as conn:
        rows = conn.execute(
            select(health_scores.c.account_key, health_scores.c.zone, health_scores.c.score, health_scores.c.drivers)
            .where(health_scores.c.model_version == version, health_scores.c.as_of_date == as_of)
            .order_by(health_scores.c.account_key)
        ).all()
        sent = {
            key for key, in conn.execute(select(action_outbox.c.account_key).where(action_outbox.c.status == "sent"))
        }
    at_risk = [r for r in rows if r.zone == "At Risk" and read_drivers(r.drivers).down and r.account_key in sent]
    healthy = [r for r in rows if r.zone == "Healthy"]
    assert at_risk and healthy, "the scored company has no At Risk account with delivered actions"
    return min(at_risk, key=lambda r: (r.score, r.account_key)).account_key, healthy[0].account_key


@pytest.fixture(scope="module")
def company(scored_company, tmp_path_factory) -> Company:
    """The scored company, plus a backfill's suppressed decisions, an audit and a proposal."""
    from customer_health import pipeline, settings
    from customer_health.validation.audit import audit_model
    from customer_health.validation.outcomes import build_outcomes
    from customer_health.validation.recalibrate import recalibrate

    folder = tmp_path_factory.mktemp("dashboard-company")
    url = copy_sqlite(scored_company.warehouse_url, folder / "warehouse.db")
    engine = engine_for(url)
    as_of, first_action = scored_company.as_of, scored_company.first_action_date
    history_start = as_of - timedelta(days=149)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(settings.WAREHOUSE_URL_ENV, url)
        for k in range(BACKFILL_DAYS, 0, -1):
            pipeline.decide_actions(first_action - timedelta(days=k), "backfill", True)
        build_outcomes(engine, as_of)
        audit_model(engine, history_start, as_of, horizon_days=30, cadence="monthly", report_dir=folder / "reports")
        proposal = recalibrate(
            engine, history_start, as_of, horizon_days=30, cadence="monthly", min_train_churners=1, min_segment_churners=1
        ).version
        for k in range(SHADOW_DAYS - 1, -1, -1):
            pipeline.score(as_of - timedelta(days=k), model_version=proposal)
    engine.dispose()
    at_risk, healthy = _pick_accounts(url, "v1", as_of)
    return Company(url, as_of, first_action, "v1", proposal, folder / "reports", at_risk, healthy)


@pytest.fixture()
def warehouse(company, tmp_path, monkeypatch) -> str:
    """A private copy of the company's warehouse, selected through CUSTOMER_HEALTH_WAREHOUSE_URL."""
    from customer_health import settings
    from customer_health.dashboard.app import clear_caches

    url = copy_sqlite(company.template_url, tmp_path / "warehouse.db")
    monkeypatch.setenv(settings.WAREHOUSE_URL_ENV, url)
    monkeypatch.delenv("AIRFLOW_CONN_HEALTH_SALESFORCE", raising=False)
    clear_caches()
    return url


@pytest.fixture(scope="module")
def airflow_metadata() -> Path:
    """Airflow's metadata DB (the auth manager checks revoked tokens there), migrated once."""
    from tests.airflow_home import migrate_metadata

    return migrate_metadata(scoring_pool=False)


@pytest.fixture()
def tokens(airflow_metadata):
    """JWTs from the Airflow auth manager: an admin (may override) and a viewer (may not)."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from customer_health.dashboard.auth import auth_manager

    manager = auth_manager()
    return {
        "admin": manager.generate_jwt(SimpleAuthManagerUser(username="ada.admin", role="ADMIN")),
        "viewer": manager.generate_jwt(SimpleAuthManagerUser(username="victor.viewer", role="VIEWER")),
        "expired": manager.generate_jwt(SimpleAuthManagerUser(username="ada.admin", role="ADMIN"),
                                        expiration_time_in_seconds=-60),
    }  # fmt: skip


def client(token: str | None = None, *, cookie: bool = False):
    from fastapi.testclient import TestClient

    from customer_health.dashboard.app import create_app

    c = TestClient(create_app(warm_cache=False), base_url="http://dashboard.test")
    if token and cookie:
        c.cookies.set("_token", token)
    elif token:
        c.headers["Authorization"] = f"Bearer {token}"
    return c


def in_days(days: int) -> str:
    return (utcnow().date() + timedelta(days=days)).isoformat()


def override_body(**changes) -> dict:
    return {"score": 80, "reason": "Renewal signed; dip is a planned migration", "expires_on": in_days(30), **changes}


def overrides_in(url: str) -> list:
    with engine_for(url).connect() as conn:
        return list(conn.execute(select(score_overrides).order_by(score_overrides.c.id)))


def text_of(fragment: str) -> str:
    """The visible text of an HTML fragment, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def element(page: str, tag: str, css_class: str) -> str:
    """The first ``<tag class="css_class ...">...</tag>`` of a page (no nesting of the same tag)."""
    found = re.search(rf'<{tag} class="{css_class}[^"]*"[^>]*>(.*?)</{tag}>', page, re.S)
    assert found, f"no <{tag} class={css_class!r}> on the page"
    return found.group(1)


# --------------------------------------------------------------------------- what the rows say
def stored_scores(url: str, version: str, day: date) -> dict[str, dict]:
    with engine_for(url).connect() as conn:
        rows = conn.execute(
            select(health_scores).where(health_scores.c.model_version == version, health_scores.c.as_of_date == day)
        ).all()
    return {r.account_key: r._asdict() for r in rows}


def derived_episodes(url: str, version: str) -> list[tuple[str, date, date | None]]:
    """At Risk episodes from the score history itself: entered from a safe zone, ended back in one."""
    with engine_for(url).connect() as conn:
        rows = conn.execute(
            select(health_scores.c.account_key, health_scores.c.as_of_date, health_scores.c.zone, health_scores.c.previous_zone)
            .where(health_scores.c.model_version == version)
            .order_by(health_scores.c.account_key, health_scores.c.as_of_date)
        ).all()
    episodes, open_since = [], {}
    for key, day, zone, previous in rows:
        if previous is None or zone == previous:
            continue
        if zone in RISK and previous in SAFE:
            open_since.setdefault(key, day)
        elif zone in SAFE and key in open_since:
            episodes.append((key, open_since.pop(key), day))
    episodes.extend((key, started, None) for key, started in open_since.items())
    return sorted(episodes)


def expected_interventions(url: str, version: str, as_of: date, window_days: int, horizon_days: int) -> dict:
    """The intervention analysis recomputed from scores and outbox rows (DESIGN: only delivered
    actions, triggered from an episode's first day to the day before its recovery, count)."""
    with engine_for(url).connect() as conn:
        actions = conn.execute(
            select(action_outbox.c.account_key, action_outbox.c.action_type, action_outbox.c.status,
                   action_outbox.c.trigger_date)
        ).all()  # fmt: skip
    by_account = defaultdict(list)
    for a in actions:
        by_account[a.account_key].append(a)
    groups: dict[str, list[tuple[int | None, bool]]] = defaultdict(list)
    statuses: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for key, started, recovered in derived_episodes(url, version):
        if not as_of - timedelta(days=window_days) < started <= as_of:
            continue
        end = recovered or as_of + timedelta(days=1)
        during = [a for a in by_account[key] if started <= a.trigger_date < end]
        delivered = {a.action_type for a in during if a.status == "sent"}
        outcome = ((recovered - started).days if recovered else None, started <= as_of - timedelta(days=horizon_days))
        for group in ["*all", "*any" if delivered else "*none", *delivered] + (["*undelivered"] if during and not delivered else []):
            groups[group].append(outcome)
        for a in during:
            statuses[a.action_type][a.status] += 1

    def summary(outcomes: list[tuple[int | None, bool]]) -> dict:
        days = [d for d, _ in outcomes if d is not None]
        mature = [d for d, m in outcomes if m]
        return {
            "episodes": len(outcomes),
            "recovered": len(days),
            "still_at_risk": len(outcomes) - len(days),
            "mature_episodes": len(mature),
            "recovery_rate": sum(d is not None and d <= horizon_days for d in mature) / len(mature) if mature else None,
            "median_days_to_recover": float(statistics.median(days)) if days else None,
            "mean_days_to_recover": round(sum(days) / len(days), 1) if days else None,
        }

    types = sorted({g for g in groups if not g.startswith("*")} | set(statuses))
    return {
        "overall": summary(groups["*all"]),
        "with_action": summary(groups["*any"]),
        "no_action": summary(groups["*none"]),
        "decided_not_delivered": summary(groups["*undelivered"]),
        "by_action_type": [
            {"action_type": t, **summary(groups[t]), "statuses": dict(sorted(statuses[t].items()))} for t in types
        ],
    }


# --------------------------------------------------------------------------- authentication
def api_endpoints(company: Company) -> list[str]:
    return ["/api/portfolio", "/api/trending", f"/api/accounts/{company.at_risk}", "/api/accounts?q=inc",
            "/api/interventions", "/api/model"]  # fmt: skip


def pages(company: Company) -> list[str]:
    return ["/", "/trending", f"/accounts/{company.at_risk}", "/accounts?q=inc", "/interventions", "/model",
            "/model/v1/report"]  # fmt: skip


def test_unauthenticated_api_requests_get_401_and_no_data(company, warehouse, airflow_metadata):
    for path in api_endpoints(company):
        response = client().get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert set(response.json()) == {"detail"}
    response = client().post(f"/api/accounts/{company.at_risk}/overrides/1/revoke", json={"reason": "no longer holds"})
    assert response.status_code == 401


def test_unauthenticated_pages_redirect_to_the_airflow_login(company, warehouse, airflow_metadata):
    for path in pages(company):
        response = client().get(path, follow_redirects=False)
        assert response.status_code == 302, path
        assert response.headers["location"].startswith("/auth/login?next=")
        assert "Score history" not in response.text


def test_an_expired_or_forged_token_counts_as_no_login(warehouse, tokens):
    assert client(tokens["expired"]).get("/api/portfolio").status_code == 401
    forged = tokens["admin"][:-4] + ("AAAA" if not tokens["admin"].endswith("AAAA") else "BBBB")
    assert client(forged).get("/api/portfolio").status_code == 401
    assert client(forged, cookie=True).get("/", follow_redirects=False).status_code == 302


def test_the_airflow_ui_cookie_logs_in_like_the_bearer_header(warehouse, tokens):
    page = client(tokens["viewer"], cookie=True).get("/")
    assert page.status_code == 200
    assert "victor.viewer" in page.text


# --------------------------------------------------------------------------- portfolio
def test_portfolio_counts_zones_and_arr_at_risk_on_the_latest_date(company, warehouse, tokens):
    data = client(tokens["viewer"]).get("/api/portfolio").json()
    assert data["model_version"] == company.version
    assert data["as_of_date"] == company.as_of.isoformat()
    today = stored_scores(warehouse, company.version, company.as_of).values()
    zones = {z["zone"]: z["accounts"] for z in data["zones"]}
    assert zones == {z: sum(r["zone"] == z for r in today) for z in ("Healthy", "Neutral", "At Risk", "Critical")}
    assert zones["At Risk"] > 0
    assert data["accounts"] == len(today)
    assert data["arr_at_risk"] == pytest.approx(sum(r["arr"] or 0 for r in today if r["zone"] in RISK))
    plans = {p["plan"]: p for p in data["by_plan"]}
    for plan, entry in plans.items():
        mine = [r for r in today if r["segment"].split("/")[1] == plan]
        assert entry["accounts"] == len(mine)
        assert entry["arr_at_risk"] == pytest.approx(sum(r["arr"] or 0 for r in mine if r["zone"] in RISK))
    assert {s["segment"] for s in data["by_segment"]} == {r["segment"] for r in today}


def test_portfolio_history_shows_the_zone_mix_at_each_point(company, warehouse, tokens):
    data = client(tokens["viewer"]).get("/api/portfolio?points=5&step_days=28").json()
    dates = [company.as_of - timedelta(days=28 * k) for k in range(4, -1, -1)]
    assert [h["as_of_date"] for h in data["history"]] == [d.isoformat() for d in dates]
    for point, day in zip(data["history"], dates, strict=True):
        rows = stored_scores(warehouse, company.version, day).values()
        assert point["zones"] == {z: sum(r["zone"] == z for r in rows) for z in ("Healthy", "Neutral", "At Risk", "Critical")}
    starter = client(tokens["viewer"]).get("/api/portfolio?plan=starter&points=5&step_days=28").json()["history"]
    for point, day in zip(starter, dates, strict=True):
        rows = stored_scores(warehouse, company.version, day).values()
        assert point["accounts"] == sum(r["segment"].split("/")[1] == "starter" for r in rows)


def test_the_default_model_is_the_active_one_and_another_can_be_chosen(company, warehouse, tokens):
    c = client(tokens["viewer"])
    assert c.get("/api/trending").json()["model_version"] == company.version
    shadow = c.get(f"/api/trending?model_version={company.proposal}").json()
    assert (shadow["model_version"], shadow["as_of_date"]) == (company.proposal, company.as_of.isoformat())
    unknown = c.get("/api/portfolio?model_version=v9")
    assert unknown.status_code == 404
    assert f"{company.version}, {company.proposal}" in unknown.json()["detail"]


# --------------------------------------------------------------------------- trending
def test_trending_lists_the_biggest_declines_and_recoveries_with_their_drivers(company, warehouse, tokens):
    data = client(tokens["viewer"]).get("/api/trending?limit=10").json()
    today = stored_scores(warehouse, company.version, company.as_of)
    declines = sorted((r for r in today.values() if (r["delta_30"] or 0) < 0), key=lambda r: (r["delta_30"], r["account_key"]))
    recoveries = sorted((r for r in today.values() if (r["delta_30"] or 0) > 0), key=lambda r: (-r["delta_30"], r["account_key"]))
    assert declines and recoveries
    assert [d["account_key"] for d in data["declines"]] == [r["account_key"] for r in declines[:10]]
    assert [d["account_key"] for d in data["recoveries"]] == [r["account_key"] for r in recoveries[:10]]
    for shown in data["declines"] + data["recoveries"]:
        stored = today[shown["account_key"]]
        assert shown["drivers"] == json.loads(json.dumps(read_drivers(stored["drivers"]).as_dict()))
        assert shown["explanation"] == stored["explanation"]
    first = data["declines"][0]["drivers"]
    assert first["down"] and all(d["label"] == SIGNALS[d["signal"]].label and d["points"] < 0 for d in first["down"])


# --------------------------------------------------------------------------- account
def test_account_shows_history_signals_overrides_actions_and_the_salesforce_link(company, warehouse, tokens, monkeypatch):
    from customer_health.dashboard.app import clear_caches

    monkeypatch.setenv(
        "AIRFLOW_CONN_HEALTH_SALESFORCE",
        json.dumps({"conn_type": "salesforce", "extra": {"instance_url": "https://acme.my.salesforce.com"}}),
    )
    clear_caches()
    key = company.at_risk
    data = client(tokens["viewer"]).get(f"/api/accounts/{key}").json()
    stored = stored_scores(warehouse, company.version, company.as_of)[key]
    assert data["salesforce_url"] == f"https://acme.my.salesforce.com/lightning/r/Account/{key}/view"
    assert len(data["history"]) == 150
    assert data["history"][-1] == {"as_of_date": company.as_of.isoformat(), "score": stored["score"],
                                   "computed_score": stored["computed_score"], "zone": "At Risk", "override_id": None}
    assert data["score"]["explanation"] == stored["explanation"]
    drivers = read_drivers(stored["drivers"])
    signals = {s["signal"]: s for s in data["signals"]}
    for driver in (*drivers.down, *drivers.up):
        assert (signals[driver.signal]["points"], signals[driver.signal]["normalized"]) == (driver.points, driver.score)
    assert all(s["label"] == SIGNALS[s["signal"]].label for s in data["signals"])
    with engine_for(warehouse).connect() as conn:
        outbox_rows = conn.execute(
            select(action_outbox.c.action_type, action_outbox.c.status).where(action_outbox.c.account_key == key)
        ).all()
    assert sorted((a["action_type"], a["status"]) for a in data["actions"]) == sorted(tuple(r) for r in outbox_rows)
    assert data["overrides"] == [] and data["active_override"] is None


def test_the_account_page_shows_drivers_with_points_and_signals_by_their_catalog_label(company, warehouse, tokens):
    key = company.at_risk
    page = client(tokens["viewer"], cookie=True).get(f"/accounts/{key}").text
    drivers = read_drivers(stored_scores(warehouse, company.version, company.as_of)[key]["drivers"])
    listed = text_of(element(page, "ul", "drivers"))
    for d in drivers.down:
        assert f"{d.label} ({d.points:+.1f} pts, {d.score:.0f}/100 vs similar accounts)" in listed
    assert_reads_well(listed, "the account page's drivers")
    signals = element(page, "table", "signals")
    rows = re.findall(r"<tr[^>]*>.*?</tr>", signals, re.S)
    for d in drivers.down:
        row = next(r for r in rows if f"<td>{html.escape(d.label)}<div" in r)
        assert f"{d.points:+.1f}" in text_of(row)  # the Points cell
        assert f'aria-label="{d.score:.0f} of 100"' in row  # the vs segment meter
    raw_keys = [k for k, spec in SIGNALS.items() if spec.label != k.replace("_", " ")]
    for raw in raw_keys:
        assert f"<td>{raw.replace('_', ' ')}<div" not in signals
        assert f"<td>{html.escape(SIGNALS[raw].label)}<div" in signals


def test_account_without_a_salesforce_instance_url_has_no_link(company, warehouse, tokens):
    assert client(tokens["viewer"]).get(f"/api/accounts/{company.healthy}").json()["salesforce_url"] is None


def test_an_unknown_account_is_404(warehouse, tokens):
    assert client(tokens["viewer"]).get("/api/accounts/001ZZZZZZZZZZZZZZZ").status_code == 404
    assert client(tokens["viewer"]).get("/accounts/001ZZZZZZZZZZZZZZZ").status_code == 404


# --------------------------------------------------------------------------- search
def crosswalk_names(url: str) -> dict[str, str]:
    from customer_health.warehouse.schema import account_crosswalk

    with engine_for(url).connect() as conn:
        return dict(conn.execute(select(account_crosswalk.c.account_key, account_crosswalk.c.account_name)).all())


def test_search_finds_accounts_by_name_or_key(company, warehouse, tokens):
    c = client(tokens["viewer"])
    name = crosswalk_names(warehouse)[company.at_risk]
    found = c.get(f"/api/accounts?q={quote(name.lower())}").json()
    assert company.at_risk in [a["account_key"] for a in found["accounts"]]
    assert [a["account_key"] for a in c.get(f"/api/accounts?q={company.at_risk}").json()["accounts"]] == [company.at_risk]
    opened = c.get(f"/accounts?q={company.at_risk}", follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"] == f"/accounts/{company.at_risk}"


def test_search_results_show_each_accounts_score_and_zone_of_the_chosen_model(company, warehouse, tokens):
    c = client(tokens["viewer"])
    names = crosswalk_names(warehouse)
    name = names[company.at_risk]
    for version in (company.version, company.proposal):
        data = c.get(f"/api/accounts?q={quote(name)}&model_version={version}").json()
        assert (data["model_version"], data["as_of_date"]) == (version, company.as_of.isoformat())
        stored = stored_scores(warehouse, version, company.as_of)
        shown = {a["account_key"]: a for a in data["accounts"]}
        assert (shown[company.at_risk]["score"], shown[company.at_risk]["zone"]) == (
            stored[company.at_risk]["score"], stored[company.at_risk]["zone"])  # fmt: skip
    word = name.split()[0]
    page = c.get(f"/accounts?q={quote(word)}").text
    results = element(page, "table", "results")
    stored = stored_scores(warehouse, company.version, company.as_of)[company.at_risk]
    row = next(r for r in re.findall(r"<tr>.*?</tr>", results, re.S) if company.at_risk in r)
    assert f'<td class="num">{stored["score"]}</td>' in row and "At Risk" in text_of(row)


def test_a_search_cut_off_at_the_limit_says_how_many_matched(warehouse, tokens):
    names = crosswalk_names(warehouse)
    matching = [k for k, n in names.items() if "inc" in n.lower() or k.lower().startswith("inc")]
    assert len(matching) > 20, "the company needs more than 20 accounts named '... Inc'"
    c = client(tokens["viewer"])
    data = c.get("/api/accounts?q=inc").json()
    assert (len(data["accounts"]), data["total"], data["limit"], data["truncated"]) == (20, len(matching), 20, True)
    assert set(a["account_key"] for a in data["accounts"]) <= set(matching)
    everything = c.get("/api/accounts?q=inc&limit=100").json()
    assert (len(everything["accounts"]), everything["truncated"]) == (len(matching), False)
    notice = text_of(element(c.get("/accounts?q=inc").text, "p", "notice"))
    assert notice == f"Showing 20 of {len(matching)} matching accounts — refine the search to see the others."
    assert_reads_well(notice, "the search notice")


# --------------------------------------------------------------------------- interventions
def test_interventions_count_only_delivered_actions_as_interventions(company, warehouse, tokens):
    expected = expected_interventions(warehouse, company.version, company.as_of, 180, 30)
    # The backfill's decisions reached nobody: episodes whose only actions were suppressed exist.
    assert expected["decided_not_delivered"]["episodes"] > 0
    assert expected["with_action"]["episodes"] > 0
    data = client(tokens["viewer"]).get("/api/interventions?window_days=180&horizon_days=30").json()
    assert data["delivered_statuses"] == ["sent"]
    for group in ("overall", "with_action", "no_action", "decided_not_delivered"):
        assert data[group] == expected[group], group
    assert data["by_action_type"] == expected["by_action_type"]
    with engine_for(warehouse).connect() as conn:
        statuses = {s for s, in conn.execute(select(action_outbox.c.status).distinct())}
    # delivered, backfill-suppressed, and the shipped shadow-mode types' rows (recorded, never sent)
    assert statuses == {"sent", "suppressed", "shadow"}


def test_actions_the_recovery_itself_triggers_are_not_interventions(company, warehouse, tokens):
    data = client(tokens["viewer"]).get("/api/interventions?window_days=180&horizon_days=30").json()
    with engine_for(warehouse).connect() as conn:
        recovery_actions = {t for t, in conn.execute(
            select(action_outbox.c.action_type).distinct().where(action_outbox.c.action_type.in_(
                ["campaign_resume", "rescue_tasks_complete"])))}  # fmt: skip
    assert recovery_actions, "the company's recoveries triggered no campaign_resume / rescue_tasks_complete"
    shown = {t["action_type"] for t in data["by_action_type"]}
    assert not shown & recovery_actions


def test_the_interventions_page_says_what_counts_as_an_intervention(warehouse, tokens):
    html_page = client(tokens["viewer"], cookie=True).get("/interventions").text
    what_counts = text_of(element(html_page, "p", "what-counts"))
    assert_reads_well(what_counts, "the interventions page's definition")
    page = text_of(html_page)
    assert "What counts as an intervention: an action that was delivered (outbox status sent)" in page
    assert "suppressed (decided by a backfill or withdrawn), failed or are still pending never reached anyone" in page
    assert "With a delivered action" in page and "No action delivered" in page


def test_interventions_sliced_by_account_equal_one_pass(warehouse, monkeypatch):
    """SQLite runs the intervention statement over slices of the episodes side by side: any
    number of slices (more than there are accounts, too) adds up to the one-pass answer."""
    from customer_health.dashboard import queries

    with engine_for(warehouse).connect() as conn:
        view = queries.resolve_view(conn)
        monkeypatch.setattr(queries, "INTERVENTION_SLICES", 1)
        whole = queries.interventions(conn, view, horizon_days=30)
        for slices in (2, 3, 5, 500):
            monkeypatch.setattr(queries, "INTERVENTION_SLICES", slices)
            assert queries.interventions(conn, view, horizon_days=30) == whole, slices
    assert whole["overall"]["episodes"] > 0


def test_the_episodes_the_dashboard_reads_are_the_score_historys(company, warehouse):
    with engine_for(warehouse).connect() as conn:
        stored = conn.execute(
            select(health_score_episodes.c.account_key, health_score_episodes.c.started, health_score_episodes.c.recovered_on)
            .where(health_score_episodes.c.model_version == company.version)
        ).all()
    assert sorted(tuple(r) for r in stored) == derived_episodes(warehouse, company.version)


def copy_to(url: str, target_url: str) -> None:
    """Every table of the warehouse at ``url`` into the migrated, empty warehouse ``target_url``."""
    from customer_health.warehouse.schema import metadata

    source, target = engine_for(url), engine_for(target_url)
    with source.connect() as read, target.begin() as write:
        for table in metadata.sorted_tables:
            rows = [r._asdict() for r in read.execute(select(table))]
            for start in range(0, len(rows), 5000):
                write.execute(table.insert(), rows[start : start + 5000])


def test_every_query_answers_alike_on_sqlite_and_postgresql(company, warehouse, postgres_url):
    """The same company on both warehouses: the same JSON from every page's queries."""
    from fastapi.encoders import jsonable_encoder

    from customer_health.dashboard import queries
    from customer_health.warehouse.migrate import upgrade_to_head

    upgrade_to_head(engine_for(postgres_url))
    copy_to(warehouse, postgres_url)
    answers = []
    for url in (warehouse, postgres_url):
        with engine_for(url).connect() as conn:
            view = queries.resolve_view(conn)
            shadow = queries.resolve_view(conn, company.proposal)
            answers.append(jsonable_encoder({
                "portfolio": queries.portfolio(conn, view),
                "by_plan": queries.portfolio(conn, view, plan="growth", points=5, step_days=7),
                "shadow": queries.trending(conn, shadow, limit=3),
                "trending": queries.trending(conn, view),
                "account": queries.account_detail(conn, view, company.at_risk),
                "search": queries.search_accounts(conn, "inc", view),
                "interventions": [queries.interventions(conn, view, window_days=w, horizon_days=h)
                                  for w, h in ((180, 30), (60, 7), (730, 180))],
                "model": queries.model_overview(conn, view),
            }))  # fmt: skip
    sqlite_answer, postgres_answer = answers
    for key in sqlite_answer:
        assert sqlite_answer[key] == postgres_answer[key], key
    assert sqlite_answer["interventions"][0] == jsonable_encoder(
        {"model_version": company.version, "as_of_date": company.as_of, "window_days": 180, "horizon_days": 30,
         "delivered_statuses": ["sent"], **expected_interventions(warehouse, company.version, company.as_of, 180, 30)}
    )  # fmt: skip


# --------------------------------------------------------------------------- model
def test_model_lists_versions_with_metrics_and_serves_the_latest_report(company, warehouse, tokens):
    c = client(tokens["viewer"])
    data = c.get("/api/model").json()
    assert data["default_version"] == company.version
    versions = {v["version"]: v for v in data["versions"]}
    assert versions[company.version]["report_available"] is True
    assert versions[company.version]["audit"]["horizon_days"] == 30
    proposal = versions[company.proposal]
    assert (proposal["status"], proposal["parent_version"]) == ("proposed", company.version)
    assert proposal["latest_scored"] == company.as_of.isoformat()
    held_out = proposal["metrics"]["holdout"]
    assert {r["metric"]: (r["old"], r["new"]) for r in proposal["holdout_comparison"]}["ROC AUC"] == (
        held_out["old"]["roc_auc"], held_out["new"]["roc_auc"])  # fmt: skip
    assert [e["event"] for e in proposal["events"]] == ["proposed"]
    report = c.get(f"/model/{company.version}/report")
    assert report.status_code == 200
    assert "<html" in report.text.lower() and company.version in report.text
    assert c.get(f"/model/{company.proposal}/report").status_code == 404


PYTHON_REPR = re.compile(r"[{\[]'|'[}\]]|': |', '|\bTrue\b|\bFalse\b")


def test_the_model_page_shows_a_proposal_as_tables_never_as_python_reprs(company, warehouse, tokens):
    page = client(tokens["viewer"], cookie=True).get("/model")
    assert page.status_code == 200
    visible = text_of(page.text)
    raw = [p for p in problems(visible) if p.startswith(("a raw list", "a raw dict", "a Python or NumPy value"))]
    assert not raw, raw
    assert not PYTHON_REPR.search(visible), PYTHON_REPR.search(visible).group(0)
    with engine_for(warehouse).connect() as conn:
        from customer_health.warehouse.schema import model_versions

        metrics = json.loads(conn.execute(
            select(model_versions.c.metrics).where(model_versions.c.version == company.proposal)).scalar_one())  # fmt: skip
    section = page.text[page.text.index(f"<h2>{company.proposal} "):]
    comparison = text_of(element(section, "table", "data comparison"))
    old, new = metrics["holdout"]["old"], metrics["holdout"]["new"]
    assert f"ROC AUC {old['roc_auc']:.4g} {new['roc_auc']:.4g}" in comparison
    fold = metrics["folds"][-1]
    assert ", ".join(fold["train_dates"]) in visible  # a list as text, not ['2026-07-01', ...]
    knot = fold["score_calibration"]["knots"][1]  # a table inside the folds table
    assert f"composite score 0 0 {knot['composite']:.4g} {knot['score']:.4g}" in text_of(section)
    assert "Registry trail" in visible and "proposed" in visible


# --------------------------------------------------------------------------- pages
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "ARR at risk"),
        ("/trending", "Biggest declines"),
        ("/accounts/{at_risk}", "Score history"),
        ("/interventions", "No action delivered"),
        ("/model", "Audit metrics"),
        ("/?model_version={proposal}", "Model <strong>{proposal}</strong>"),
    ],
)
def test_every_page_renders_with_inline_svg_charts_and_no_external_assets(company, warehouse, tokens, path, expected):
    fill = {"at_risk": company.at_risk, "proposal": company.proposal}
    page = client(tokens["viewer"], cookie=True).get(path.format(**fill))
    assert page.status_code == 200
    assert expected.format(**fill) in page.text
    assert "http://" not in page.text.replace("http://dashboard.test", "") and "https://" not in page.text
    if path not in ("/model", "/trending"):
        assert "<svg" in page.text


def test_pages_say_so_when_nothing_is_scored_yet(sqlite_warehouse_url, monkeypatch, tokens):
    monkeypatch.setenv("CUSTOMER_HEALTH_WAREHOUSE_URL", sqlite_warehouse_url)
    c = client(tokens["viewer"])
    assert "No health scores yet" in c.get("/").text
    assert c.get("/api/portfolio").json()["model_version"] is None


def test_only_permitted_users_see_the_override_form(company, warehouse, tokens):
    assert 'id="override-form"' in client(tokens["admin"], cookie=True).get(f"/accounts/{company.at_risk}").text
    assert 'id="override-form"' not in client(tokens["viewer"], cookie=True).get(f"/accounts/{company.at_risk}").text


# --------------------------------------------------------------------------- overrides
def test_an_admin_override_is_recorded_with_the_authenticated_username(company, warehouse, tokens):
    key = company.at_risk
    response = client(tokens["admin"]).post(f"/api/accounts/{key}/overrides", json=override_body(created_by="mallory"))
    assert response.status_code == 201, response.text
    [row] = overrides_in(warehouse)
    assert (row.account_key, row.score, row.created_by) == (key, 80, "ada.admin")
    assert row.expires_at == datetime.fromisoformat(in_days(30))
    assert row.reason == "Renewal signed; dip is a planned migration"
    shown = client(tokens["viewer"]).get(f"/api/accounts/{key}").json()["active_override"]
    assert shown["id"] == row.id and shown["state"] == "active"


def test_a_viewer_cannot_override_and_nothing_is_written(company, warehouse, tokens):
    response = client(tokens["viewer"]).post(f"/api/accounts/{company.at_risk}/overrides", json=override_body())
    assert response.status_code == 403
    assert overrides_in(warehouse) == []


def test_an_unauthenticated_override_is_401(company, warehouse, airflow_metadata):
    assert client().post(f"/api/accounts/{company.at_risk}/overrides", json=override_body()).status_code == 401
    assert overrides_in(warehouse) == []


def test_a_cookie_override_needs_the_same_origin_and_the_pages_csrf_token(company, warehouse, tokens):
    from customer_health.dashboard.auth import CSRF_HEADER, DashboardUser

    c = client(tokens["admin"], cookie=True)
    url = f"/api/accounts/{company.at_risk}/overrides"
    csrf = DashboardUser("ada.admin", True, tokens["admin"], True).csrf_token
    assert csrf in c.get(f"/accounts/{company.at_risk}").text  # the page embeds it for its script
    assert c.post(url, json=override_body()).status_code == 403  # no Origin
    assert c.post(url, json=override_body(), headers={"Origin": "https://evil.test", CSRF_HEADER: csrf}).status_code == 403
    assert c.post(url, json=override_body(), headers={"Origin": "http://dashboard.test"}).status_code == 403
    assert c.post(url, json=override_body(), headers={"Origin": "http://dashboard.test", CSRF_HEADER: "0" * 64}).status_code == 403
    assert overrides_in(warehouse) == []
    ok = c.post(url, json=override_body(), headers={"Origin": "http://dashboard.test", CSRF_HEADER: csrf})
    assert ok.status_code == 201, ok.text


def test_a_form_encoded_post_is_refused(company, warehouse, tokens):
    response = client(tokens["admin"]).post(f"/api/accounts/{company.at_risk}/overrides", data={"score": "80", "reason": "x"})
    assert response.status_code == 415


def test_a_second_override_conflicts_unless_it_replaces_the_first(company, warehouse, tokens):
    c = client(tokens["admin"])
    url = f"/api/accounts/{company.at_risk}/overrides"
    assert c.post(url, json=override_body()).status_code == 201
    conflict = c.post(url, json=override_body(score=30))
    assert conflict.status_code == 409
    assert "already has override" in conflict.json()["detail"]
    assert c.post(url, json=override_body(score=30, replace=True)).status_code == 201
    first, second = overrides_in(warehouse)
    # The audit trail: the first row keeps its values and only gets its revocation stamped.
    assert (first.score, first.revoked_by) == (80, "ada.admin") and first.revoked_at is not None
    assert (second.score, second.revoked_at) == (30, None)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(override_body(score=150), id="score above 100"),
        pytest.param(override_body(reason=""), id="no reason"),
        pytest.param(override_body(expires_on="2001-01-01"), id="expired"),
        pytest.param({"score": 80}, id="missing fields"),
        pytest.param(override_body(score=True), id="score true"),
        pytest.param(override_body(score="55"), id="score as text"),
        pytest.param(override_body(score=55.5), id="fractional score"),
        pytest.param(override_body(score=55.0), id="score as float"),
        pytest.param(override_body(replace="yes"), id="replace as text"),
        pytest.param(override_body(expires_on=in_days(0)), id="expires today"),
        pytest.param(override_body(expires_on=in_days(MAX_OVERRIDE_DAYS + 1)), id="beyond the horizon"),
        pytest.param(override_body(expires_on="9999-12-31"), id="permanent"),
    ],
)
def test_an_invalid_override_is_rejected_with_the_reason(company, warehouse, tokens, body):
    response = client(tokens["admin"]).post(f"/api/accounts/{company.at_risk}/overrides", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert overrides_in(warehouse) == []


def test_an_override_may_run_up_to_the_horizon_and_says_so(company, warehouse, tokens):
    c = client(tokens["admin"])
    response = c.post(f"/api/accounts/{company.at_risk}/overrides", json=override_body(expires_on=in_days(MAX_OVERRIDE_DAYS)))
    assert response.status_code == 201, response.text
    too_far = c.post(f"/api/accounts/{company.healthy}/overrides", json=override_body(expires_on=in_days(MAX_OVERRIDE_DAYS + 1)))
    assert f"more than {MAX_OVERRIDE_DAYS} days ahead" in too_far.json()["detail"]
    form = client(tokens["admin"], cookie=True).get(f"/accounts/{company.healthy}").text
    assert f'max="{in_days(MAX_OVERRIDE_DAYS)}"' in form and f'min="{in_days(1)}"' in form


def test_an_override_for_an_unknown_account_is_404(warehouse, tokens):
    response = client(tokens["admin"]).post("/api/accounts/001ZZZZZZZZZZZZZZZ/overrides", json=override_body())
    assert response.status_code == 404


# --------------------------------------------------------------------------- revoking an override
def revoke_url(account: str, override_id: int) -> str:
    return f"/api/accounts/{account}/overrides/{override_id}/revoke"


def test_an_admin_revokes_an_override_with_a_reason_and_it_is_audited(company, warehouse, tokens, caplog):
    c = client(tokens["admin"])
    created = c.post(f"/api/accounts/{company.at_risk}/overrides", json=override_body()).json()["override_id"]
    with caplog.at_level(logging.INFO, logger="customer_health.audit"):
        response = c.post(revoke_url(company.at_risk, created), json={"reason": "Customer confirmed they are leaving"})
    assert response.status_code == 200, response.text
    assert response.json()["revoked_by"] == "ada.admin"
    [row] = overrides_in(warehouse)
    # The row keeps its values; only the revocation is stamped on it.
    assert (row.score, row.reason, row.revoked_by) == (80, "Renewal signed; dip is a planned migration", "ada.admin")
    assert row.revoked_reason == "Customer confirmed they are leaving"
    assert abs(row.revoked_at - utcnow()) < timedelta(minutes=1)
    [record] = [r for r in caplog.records if r.name == "customer_health.audit"]
    assert record.override_revocation == {
        "override_id": created, "account_key": company.at_risk, "revoked_at": row.revoked_at,
        "revoked_by": "ada.admin", "reason": "Customer confirmed they are leaving",
    }  # fmt: skip
    shown = client(tokens["viewer"]).get(f"/api/accounts/{company.at_risk}").json()
    assert shown["active_override"] is None and shown["overrides"][0]["state"] == "revoked"
    # A new override needs no replace any more.
    assert c.post(f"/api/accounts/{company.at_risk}/overrides", json=override_body(score=20)).status_code == 201


def test_a_revocation_is_refused_for_viewers_strangers_and_twice(company, warehouse, tokens):
    from customer_health.dashboard.auth import CSRF_HEADER, DashboardUser

    admin = client(tokens["admin"])
    created = admin.post(f"/api/accounts/{company.at_risk}/overrides", json=override_body()).json()["override_id"]
    why = {"reason": "Customer confirmed they are leaving"}
    assert client(tokens["viewer"]).post(revoke_url(company.at_risk, created), json=why).status_code == 403
    cookie = client(tokens["admin"], cookie=True)
    assert cookie.post(revoke_url(company.at_risk, created), json=why, headers={"Origin": "http://dashboard.test"}).status_code == 403
    assert admin.post(revoke_url(company.healthy, created), json=why).status_code == 404  # another account's override
    assert admin.post(revoke_url(company.at_risk, created + 1), json=why).status_code == 404
    assert admin.post(revoke_url(company.at_risk, created), json={"reason": ""}).status_code == 422
    assert admin.post(revoke_url(company.at_risk, created), json={"reason": "     "}).status_code == 422
    assert admin.post(revoke_url(company.at_risk, created), json={"reason": 42}).status_code == 422
    assert overrides_in(warehouse)[0].revoked_at is None
    csrf = DashboardUser("ada.admin", True, tokens["admin"], True).csrf_token
    ok = cookie.post(revoke_url(company.at_risk, created), json=why, headers={"Origin": "http://dashboard.test", CSRF_HEADER: csrf})
    assert ok.status_code == 200, ok.text
    again = admin.post(revoke_url(company.at_risk, created), json=why)
    assert again.status_code == 409 and "already revoked" in again.json()["detail"]


def test_the_account_page_offers_permitted_users_a_revoke_button_for_the_active_override(company, warehouse, tokens):
    created = client(tokens["admin"]).post(f"/api/accounts/{company.at_risk}/overrides", json=override_body()).json()["override_id"]
    endpoint = f'data-endpoint="{revoke_url(company.at_risk, created)}"'
    admin_page = client(tokens["admin"], cookie=True).get(f"/accounts/{company.at_risk}").text
    assert endpoint in admin_page and f"Revoke #{created}" in admin_page
    assert endpoint not in client(tokens["viewer"], cookie=True).get(f"/accounts/{company.at_risk}").text
