"""The health dashboard's pages and JSON endpoints, over a small warehouse, with real Airflow logins.

The app is the one the Airflow plugin mounts, run alone under FastAPI's ``TestClient``. Every
request carries a JWT signed by the configured Airflow auth manager (the simple auth manager
here), in the ``Authorization`` header like an API client or in the ``_token`` cookie like the
Airflow UI; nothing in the dashboard's auth is switched off.

The warehouse: four accounts scored daily for 120 days by the active model ``v1`` (and the
last 5 days by a proposed ``v2``):

* ``DECLINER`` falls from Healthy into At Risk (checkin task sent, campaign paused);
* ``RECOVERER`` went At Risk, got a check-in, and climbed back to Healthy;
* ``STEADY`` stays Healthy;
* ``UNHELPED`` slid into At Risk and recovered with no action at all.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".local" / "airflow-test"))

from sqlalchemy import select  # noqa: E402

from customer_health.scoring.history import refresh_score_summary  # noqa: E402
from customer_health.warehouse.engine import engine_for  # noqa: E402
from customer_health.warehouse.io import upsert_rows  # noqa: E402
from customer_health.warehouse.schema import (  # noqa: E402
    account_crosswalk,
    action_outbox,
    health_scores,
    model_versions,
    raw_sf_account,
    score_overrides,
    signal_values,
)

AS_OF = date(2026, 10, 31)
DAYS = 120
DECLINER, RECOVERER, STEADY, UNHELPED = (f"001A0000000{i}AAA" for i in ("0001", "0002", "0003", "0004"))
ACCOUNTS = {DECLINER: "Acme Rockets", RECOVERER: "Globex", STEADY: "Initech", UNHELPED: "Umbrella Corp"}
ARR = {DECLINER: 120_000.0, RECOVERER: 80_000.0, STEADY: 50_000.0, UNHELPED: 30_000.0}
PLAN = {DECLINER: "enterprise", RECOVERER: "growth", STEADY: "growth", UNHELPED: "starter"}
API_ENDPOINTS = [
    "/api/portfolio",
    "/api/trending",
    f"/api/accounts/{DECLINER}",
    "/api/accounts?q=acme",
    "/api/interventions",
    "/api/model",
]
PAGES = ["/", "/trending", f"/accounts/{DECLINER}", "/accounts?q=acme", "/interventions", "/model", "/model/v2/report"]


def zone_of(score: int) -> str:
    return "Healthy" if score >= 75 else "Neutral" if score >= 50 else "At Risk" if score >= 25 else "Critical"


def score_path(account: str, day: int) -> int:
    """The account's computed score ``day`` days after the first scored date (0..DAYS-1)."""
    if account == DECLINER:
        return 85 if day < 60 else max(40, 85 - (day - 60))
    if account == RECOVERER:
        return 40 if day < 70 else min(80, 40 + 2 * (day - 70))
    if account == UNHELPED:
        return 60 if day < 20 else 45 if day < 50 else 62
    return 82


def _score_rows(version: str, days: range) -> list[dict]:
    start = AS_OF - timedelta(days=DAYS - 1)
    rows = []
    for account in ACCOUNTS:
        for day in days:
            score = score_path(account, day)
            drivers = {
                "down": [{"signal": "active_user_ratio", "points": -6.5, "score": 22, "text": "active users 18% of seats"}],
                "up": [{"signal": "payment_timeliness", "points": 4.0, "score": 96, "text": "all invoices paid on time"}],
                "changes": [{"signal": "login_frequency", "points": -4.2, "score": 20, "was_score": 70,
                             "text": "0.8 logins per seat per week (was 3.1)"}],
            }
            rows.append(
                {
                    "account_key": account,
                    "as_of_date": start + timedelta(days=day),
                    "model_version": version,
                    "segment": f"established/{PLAN[account]}/mature",
                    "score": score,
                    "computed_score": score,
                    "zone": zone_of(score),
                    "previous_zone": zone_of(score_path(account, day - 1)) if day > 0 else None,
                    "coverage": 0.93,
                    "engagement_score": score - 10.0,
                    "support_score": 70.0,
                    "financial_score": 95.0,
                    "sentiment_score": 60.0,
                    "delta_30": float(score - score_path(account, day - 30)) if day >= 30 else None,
                    "delta_60": None,
                    "delta_90": float(score - score_path(account, day - 90)) if day >= 90 else None,
                    "slope_90": None,
                    "priority": 1.0,
                    "arr": ARR[account],
                    "override_id": None,
                    "drivers": json.dumps(drivers),
                    "explanation": f"Score {score} ({zone_of(score)}), held down by: active users 18% of seats",
                    "computed_at": datetime(2026, 11, 1, 6),
                }
            )
    return rows


def _action(account: str, action_type: str, day: date, status: str, **extra) -> dict:
    now = datetime(2026, 11, 1, 6)
    return {
        "idempotency_key": f"{account}:{action_type}:{day}",
        "account_key": account,
        "action_type": action_type,
        "trigger_date": day,
        "model_version": "v1",
        "status": status,
        "reason": f"entered At Risk on {day}",
        "payload": "{}",
        "target": "salesforce",
        "external_id": extra.pop("external_id", None),
        "attempts": 1,
        "last_error": extra.pop("last_error", None),
        "created_at": now,
        "updated_at": now,
        "dispatched_at": now if status == "sent" else None,
        "result": json.dumps(extra.pop("result", {})) if status == "sent" else None,
        "resolved_at": None,
        "resolved_by": None,
    }


@pytest.fixture(scope="module")
def airflow_metadata() -> Path:
    """Airflow's metadata DB (the auth manager checks revoked tokens there), migrated once."""
    from tests.airflow_home import migrate_metadata

    return migrate_metadata(scoring_pool=False)


def fill_warehouse(url: str, report_dir: Path) -> None:
    """Write the four-account story into the (migrated, empty) warehouse at ``url``."""
    engine = engine_for(url)
    report = report_dir / "audit-v2.html"
    report.write_text("<html><body><h1>Audit of model v2</h1></body></html>")
    config = (ROOT / "include/customer_health/config/model_v1.yaml").read_text()
    start = AS_OF - timedelta(days=DAYS - 1)
    day = lambda n: start + timedelta(days=n)  # noqa: E731
    with engine.begin() as conn:
        upsert_rows(conn, model_versions, [
            {"version": "v1", "status": "active", "config_yaml": config, "config_sha256": "a" * 64,
             "created_at": datetime(2026, 1, 1), "created_by": "data-eng", "metrics": json.dumps(
                 {"roc_auc": 0.79, "sensitivity": 0.77, "specificity": 0.71,
                  "churn_by_zone": [{"zone": "Healthy", "churn_rate": 0.02}, {"zone": "At Risk", "churn_rate": 0.2}]})},
            {"version": "v2", "status": "proposed", "config_yaml": config.replace("version: v1", "version: v2"),
             "config_sha256": "b" * 64, "created_at": datetime(2026, 10, 20), "created_by": "data-eng",
             "metrics": json.dumps({"roc_auc": 0.83, "report_html": str(report)})},
        ])
        upsert_rows(conn, account_crosswalk, [
            {"account_key": k, "account_name": name, "updated_at": datetime(2026, 11, 1)} for k, name in ACCOUNTS.items()
        ])
        upsert_rows(conn, raw_sf_account, [
            {"id": k, "name": name, "plan": PLAN[k], "seats": 50, "arr": ARR[k], "industry": "Software",
             "owner_id": "005A00000000001AAA", "is_deleted": False, "extracted_at": datetime(2026, 11, 1)}
            for k, name in ACCOUNTS.items()
        ])
        upsert_rows(conn, health_scores, _score_rows("v1", range(DAYS)))
        upsert_rows(conn, health_scores, _score_rows("v2", range(DAYS - 5, DAYS)))
        upsert_rows(conn, signal_values, [
            {"account_key": DECLINER, "as_of_date": AS_OF, "active_user_ratio": 0.18, "login_frequency": 0.8,
             "nps": None},
        ])
        # DECLINER entered At Risk on day 96 (score 49); RECOVERER's check-in came on day 72.
        upsert_rows(conn, action_outbox, [
            _action(DECLINER, "checkin_task", day(96), "sent", external_id="00T000000000001AAA",
                    result={"task_id": "00T000000000001AAA"}),
            _action(DECLINER, "campaign_pause", day(96), "failed", last_error="marketing API 503"),
            _action(RECOVERER, "checkin_task", day(72), "sent", external_id="00T000000000002AAA"),
        ])
    # RECOVERER entered At Risk before the history begins: give it a fresh episode inside the window.
    with engine.begin() as conn:
        conn.execute(
            health_scores.update()
            .where(health_scores.c.account_key == RECOVERER, health_scores.c.as_of_date == day(70))
            .values(previous_zone="Neutral")
        )
    # Written around write_scores (row by row, then edited): derive the dashboard's summary.
    refresh_score_summary(engine)


@pytest.fixture()
def warehouse(sqlite_warehouse_url, monkeypatch, tmp_path):
    """The four-account warehouse, selected through CUSTOMER_HEALTH_WAREHOUSE_URL."""
    from customer_health.dashboard.app import clear_caches

    monkeypatch.setenv("CUSTOMER_HEALTH_WAREHOUSE_URL", sqlite_warehouse_url)
    clear_caches()
    fill_warehouse(sqlite_warehouse_url, tmp_path)
    return sqlite_warehouse_url


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
    }


def client(token: str | None = None, *, cookie: bool = False):
    from fastapi.testclient import TestClient

    from customer_health.dashboard.app import create_app

    c = TestClient(create_app(), base_url="http://dashboard.test")
    if token and cookie:
        c.cookies.set("_token", token)
    elif token:
        c.headers["Authorization"] = f"Bearer {token}"
    return c


def override_body(**changes) -> dict:
    return {"score": 80, "reason": "Renewal signed; dip is a planned migration", "expires_on": "2099-01-01", **changes}


def overrides_in(url: str) -> list:
    with engine_for(url).connect() as conn:
        return list(conn.execute(select(score_overrides).order_by(score_overrides.c.id)))


# --------------------------------------------------------------------------- authentication
@pytest.mark.parametrize("path", API_ENDPOINTS)
def test_unauthenticated_api_requests_get_401_and_no_data(warehouse, airflow_metadata, path):
    response = client().get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert set(response.json()) == {"detail"}


@pytest.mark.parametrize("path", PAGES)
def test_unauthenticated_pages_redirect_to_the_airflow_login(warehouse, airflow_metadata, path):
    response = client().get(path, follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"].startswith("/auth/login?next=")
    assert "Acme" not in response.text


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
def test_portfolio_counts_zones_and_arr_at_risk_on_the_latest_date(warehouse, tokens):
    data = client(tokens["viewer"]).get("/api/portfolio").json()
    assert data["model_version"] == "v1"
    assert data["as_of_date"] == AS_OF.isoformat()
    zones = {z["zone"]: z["accounts"] for z in data["zones"]}
    # DECLINER ends at 40 (At Risk); RECOVERER at 80, STEADY at 82, UNHELPED at 62.
    assert zones == {"Healthy": 2, "Neutral": 1, "At Risk": 1, "Critical": 0}
    assert data["arr_at_risk"] == ARR[DECLINER]
    assert data["accounts_at_risk"] == 1
    plans = {p["plan"]: p for p in data["by_plan"]}
    assert plans["enterprise"]["arr_at_risk"] == ARR[DECLINER]
    assert plans["growth"]["zones"]["Healthy"] == 2
    assert {s["segment"] for s in data["by_segment"]} == {
        "established/enterprise/mature", "established/growth/mature", "established/starter/mature"
    }


def test_portfolio_history_shows_the_zone_mix_at_each_point(warehouse, tokens):
    data = client(tokens["viewer"]).get("/api/portfolio?points=5&step_days=28").json()
    history = data["history"]
    assert [h["as_of_date"] for h in history] == [(AS_OF - timedelta(days=28 * k)).isoformat() for k in range(4, -1, -1)]
    assert history[0]["zones"]["At Risk"] == 1  # RECOVERER, at 40 four months ago
    assert history[-1]["arr_at_risk"] == ARR[DECLINER]
    growth_only = client(tokens["viewer"]).get("/api/portfolio?plan=growth").json()["history"]
    assert all(point["accounts"] == 2 for point in growth_only)


def test_the_default_model_is_the_active_one_and_another_can_be_chosen(warehouse, tokens):
    c = client(tokens["viewer"])
    assert c.get("/api/trending").json()["model_version"] == "v1"
    assert c.get("/api/trending?model_version=v2").json()["model_version"] == "v2"
    unknown = c.get("/api/portfolio?model_version=v9")
    assert unknown.status_code == 404
    assert "v1, v2" in unknown.json()["detail"]


# --------------------------------------------------------------------------- trending
def test_trending_lists_the_biggest_declines_and_recoveries_with_their_drivers(warehouse, tokens):
    data = client(tokens["viewer"]).get("/api/trending").json()
    assert [d["account_key"] for d in data["declines"]] == [DECLINER]
    assert data["declines"][0]["delta_30"] == -16  # 40 today, 56 thirty days ago
    assert data["declines"][0]["account_name"] == "Acme Rockets"
    assert data["declines"][0]["drivers"]["changes"][0]["text"] == "0.8 logins per seat per week (was 3.1)"
    assert data["declines"][0]["explanation"].startswith("Score 40 (At Risk)")
    assert [r["account_key"] for r in data["recoveries"]] == [RECOVERER]


# --------------------------------------------------------------------------- account
def test_account_shows_history_signals_overrides_actions_and_the_salesforce_link(warehouse, tokens, monkeypatch):
    from customer_health.dashboard.app import clear_caches

    monkeypatch.setenv(
        "AIRFLOW_CONN_HEALTH_SALESFORCE",
        json.dumps({"conn_type": "salesforce", "extra": {"instance_url": "https://acme.my.salesforce.com"}}),
    )
    clear_caches()
    data = client(tokens["viewer"]).get(f"/api/accounts/{DECLINER}").json()
    assert data["account_name"] == "Acme Rockets"
    assert data["salesforce_url"] == f"https://acme.my.salesforce.com/lightning/r/Account/{DECLINER}/view"
    assert len(data["history"]) == DAYS
    assert data["history"][-1] == {"as_of_date": AS_OF.isoformat(), "score": 40, "computed_score": 40,
                                   "zone": "At Risk", "override_id": None}
    assert data["score"]["dimensions"]["financial"] == 95.0
    signals = {s["signal"]: s for s in data["signals"]}
    assert signals["active_user_ratio"]["points"] == -6.5
    assert signals["active_user_ratio"]["description"].startswith("active users 18% of seats")
    assert signals["login_frequency"]["change_text"] == "0.8 logins per seat per week (was 3.1)"
    assert signals["nps"]["value"] is None
    assert {(a["action_type"], a["status"]) for a in data["actions"]} == {("checkin_task", "sent"), ("campaign_pause", "failed")}
    assert next(a for a in data["actions"] if a["status"] == "failed")["last_error"] == "marketing API 503"
    assert data["overrides"] == []


def test_account_without_a_salesforce_instance_url_has_no_link(warehouse, tokens, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_HEALTH_SALESFORCE", raising=False)
    assert client(tokens["viewer"]).get(f"/api/accounts/{STEADY}").json()["salesforce_url"] is None


def test_an_unknown_account_is_404(warehouse, tokens):
    assert client(tokens["viewer"]).get("/api/accounts/001ZZZZZZZZZZZZZZZ").status_code == 404
    assert client(tokens["viewer"]).get("/accounts/001ZZZZZZZZZZZZZZZ").status_code == 404


def test_search_finds_accounts_by_name_or_key(warehouse, tokens):
    c = client(tokens["viewer"])
    assert [a["account_key"] for a in c.get("/api/accounts?q=umbrella").json()["accounts"]] == [UNHELPED]
    opened = c.get("/accounts?q=Acme", follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"] == f"/accounts/{DECLINER}"


# --------------------------------------------------------------------------- interventions
def test_interventions_compare_recovery_with_and_without_action(warehouse, tokens):
    data = client(tokens["viewer"]).get("/api/interventions?window_days=180&horizon_days=30").json()
    # Episodes: UNHELPED (day 20 -> 50, no action), RECOVERER (day 70 -> 75, check-in on day 72),
    # DECLINER (day 96, still open, 23 days old: too recent to count in a 30-day recovery rate).
    assert data["overall"]["episodes"] == 3
    assert data["no_action"] == {
        "episodes": 1, "recovered": 1, "still_at_risk": 0, "mature_episodes": 1, "recovery_rate": 1.0,
        "median_days_to_recover": 30.0, "mean_days_to_recover": 30.0,
    }
    assert data["with_action"]["episodes"] == 2 and data["with_action"]["mature_episodes"] == 1
    checkin = next(t for t in data["by_action_type"] if t["action_type"] == "checkin_task")
    assert checkin["episodes"] == 2
    assert checkin["recovered"] == 1 and checkin["still_at_risk"] == 1
    assert checkin["median_days_to_recover"] == 5.0
    assert checkin["recovery_rate"] == 1.0  # RECOVERER (mature) recovered within 30 days; DECLINER is too recent
    assert checkin["statuses"] == {"sent": 2}
    pause = next(t for t in data["by_action_type"] if t["action_type"] == "campaign_pause")
    assert pause["statuses"] == {"failed": 1}


@pytest.mark.parametrize("slices", [1, 2, 3, 5])
def test_interventions_sliced_by_account_equal_one_pass(warehouse, monkeypatch, slices):
    """SQLite runs the intervention statement over slices of the episodes side by side: any
    number of slices (more than there are accounts, too) adds up to the one-pass answer."""
    from customer_health.dashboard import queries
    from customer_health.warehouse.engine import engine_for

    with engine_for(warehouse).connect() as conn:
        view = queries.resolve_view(conn)
        monkeypatch.setattr(queries, "INTERVENTION_SLICES", 1)
        whole = queries.interventions(conn, view, horizon_days=30)
        monkeypatch.setattr(queries, "INTERVENTION_SLICES", slices)
        assert queries.interventions(conn, view, horizon_days=30) == whole
    assert whole["overall"]["episodes"] == 3


def test_every_query_answers_alike_on_sqlite_and_postgresql(sqlite_warehouse_url, postgres_url, tmp_path):
    """The same story on both warehouses: the same JSON from every page's queries."""
    from fastapi.encoders import jsonable_encoder

    from customer_health.dashboard import queries
    from customer_health.warehouse.migrate import upgrade_to_head

    upgrade_to_head(engine_for(postgres_url))
    answers = []
    for url in (sqlite_warehouse_url, postgres_url):
        fill_warehouse(url, tmp_path)
        with engine_for(url).connect() as conn:
            view = queries.resolve_view(conn)
            shadow = queries.resolve_view(conn, "v2")
            answers.append(jsonable_encoder({
                "portfolio": queries.portfolio(conn, view),
                "by_plan": queries.portfolio(conn, view, plan="growth", points=5, step_days=7),
                "shadow": queries.trending(conn, shadow, limit=3),
                "trending": queries.trending(conn, view),
                "account": queries.account_detail(conn, view, DECLINER),
                "interventions": [queries.interventions(conn, view, window_days=w, horizon_days=h)
                                  for w, h in ((180, 30), (60, 7), (730, 180))],
                "model": queries.model_overview(conn, view),
            }))  # fmt: skip
    sqlite, postgres = answers
    for key in sqlite:
        assert sqlite[key] == postgres[key], key
    assert sqlite["interventions"][0]["overall"]["episodes"] == 3


# --------------------------------------------------------------------------- model
def test_model_lists_versions_with_metrics_and_serves_the_latest_report(warehouse, tokens):
    c = client(tokens["viewer"])
    data = c.get("/api/model").json()
    assert data["default_version"] == "v1"
    versions = {v["version"]: v for v in data["versions"]}
    assert versions["v1"]["metrics"]["roc_auc"] == 0.79
    assert versions["v1"]["report_available"] is False
    assert versions["v2"]["report_available"] is True
    assert versions["v2"]["latest_scored"] == AS_OF.isoformat()
    report = c.get("/model/v2/report")
    assert report.status_code == 200
    assert "Audit of model v2" in report.text
    assert c.get("/model/v1/report").status_code == 404


# --------------------------------------------------------------------------- pages
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "ARR at risk"),
        ("/trending", "Acme Rockets"),
        (f"/accounts/{DECLINER}", "Score history"),
        ("/interventions", "no action"),
        ("/model", "Audit metrics"),
        ("/?model_version=v2", "Model <strong>v2</strong>"),
    ],
)
def test_every_page_renders_with_inline_svg_charts_and_no_external_assets(warehouse, tokens, path, expected):
    page = client(tokens["viewer"], cookie=True).get(path)
    assert page.status_code == 200
    assert expected in page.text
    assert "http://" not in page.text.replace("http://dashboard.test", "") and "https://" not in page.text
    if path not in ("/model", "/trending"):
        assert "<svg" in page.text


def test_pages_say_so_when_nothing_is_scored_yet(sqlite_warehouse_url, monkeypatch, tokens):
    monkeypatch.setenv("CUSTOMER_HEALTH_WAREHOUSE_URL", sqlite_warehouse_url)
    c = client(tokens["viewer"])
    assert "No health scores yet" in c.get("/").text
    assert c.get("/api/portfolio").json()["model_version"] is None


def test_only_permitted_users_see_the_override_form(warehouse, tokens):
    assert 'id="override-form"' in client(tokens["admin"], cookie=True).get(f"/accounts/{DECLINER}").text
    assert 'id="override-form"' not in client(tokens["viewer"], cookie=True).get(f"/accounts/{DECLINER}").text


# --------------------------------------------------------------------------- overrides
def test_an_admin_override_is_recorded_with_the_authenticated_username(warehouse, tokens):
    response = client(tokens["admin"]).post(f"/api/accounts/{DECLINER}/overrides", json=override_body(created_by="mallory"))
    assert response.status_code == 201, response.text
    [row] = overrides_in(warehouse)
    assert (row.account_key, row.score, row.created_by) == (DECLINER, 80, "ada.admin")
    assert row.expires_at == datetime(2099, 1, 1)
    assert row.reason == "Renewal signed; dip is a planned migration"
    shown = client(tokens["viewer"]).get(f"/api/accounts/{DECLINER}").json()["active_override"]
    assert shown["id"] == row.id and shown["state"] == "active"


def test_a_viewer_cannot_override_and_nothing_is_written(warehouse, tokens):
    response = client(tokens["viewer"]).post(f"/api/accounts/{DECLINER}/overrides", json=override_body())
    assert response.status_code == 403
    assert overrides_in(warehouse) == []


def test_an_unauthenticated_override_is_401(warehouse, airflow_metadata):
    assert client().post(f"/api/accounts/{DECLINER}/overrides", json=override_body()).status_code == 401
    assert overrides_in(warehouse) == []


def test_a_cookie_override_needs_the_same_origin_and_the_pages_csrf_token(warehouse, tokens):
    from customer_health.dashboard.auth import CSRF_HEADER, DashboardUser

    c = client(tokens["admin"], cookie=True)
    url = f"/api/accounts/{DECLINER}/overrides"
    csrf = DashboardUser("ada.admin", True, tokens["admin"], True).csrf_token
    assert csrf in c.get(f"/accounts/{DECLINER}").text  # the page embeds it for its script
    assert c.post(url, json=override_body()).status_code == 403  # no Origin
    assert c.post(url, json=override_body(), headers={"Origin": "https://evil.test", CSRF_HEADER: csrf}).status_code == 403
    assert c.post(url, json=override_body(), headers={"Origin": "http://dashboard.test"}).status_code == 403
    assert c.post(url, json=override_body(), headers={"Origin": "http://dashboard.test", CSRF_HEADER: "0" * 64}).status_code == 403
    assert overrides_in(warehouse) == []
    ok = c.post(url, json=override_body(), headers={"Origin": "http://dashboard.test", CSRF_HEADER: csrf})
    assert ok.status_code == 201, ok.text


def test_a_form_encoded_post_is_refused(warehouse, tokens):
    response = client(tokens["admin"]).post(f"/api/accounts/{DECLINER}/overrides", data={"score": "80", "reason": "x"})
    assert response.status_code == 415


def test_a_second_override_conflicts_unless_it_replaces_the_first(warehouse, tokens):
    c = client(tokens["admin"])
    url = f"/api/accounts/{DECLINER}/overrides"
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
    [override_body(score=150), override_body(reason=""), override_body(expires_on="2001-01-01"), {"score": 80}],
)
def test_an_invalid_override_is_rejected_with_the_reason(warehouse, tokens, body):
    response = client(tokens["admin"]).post(f"/api/accounts/{DECLINER}/overrides", json=body)
    assert response.status_code == 422
    assert response.json()["detail"]
    assert overrides_in(warehouse) == []


def test_an_override_for_an_unknown_account_is_404(warehouse, tokens):
    response = client(tokens["admin"]).post("/api/accounts/001ZZZZZZZZZZZZZZZ/overrides", json=override_body())
    assert response.status_code == 404
