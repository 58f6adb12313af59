"""The monthly health review and the model iteration log, over a company scored by the real code.

The warehouse is the session's ``scored_company`` (``tests/scored_company.py``: 150 days scored to
2026-11-01, the last 45 days' actions decided and delivered). On a copy of it, this module adds
what the product adds over a few months, through the same code and the registry:

* outcomes and an audit of ``v1`` (``validation.audit``);
* ``v2``: v1's configuration with more weight on billing for established accounts, proposed as
  v1's child and approved on 2026-08-01 (v1 retired), its history rebuilt from that day, and
  audited too.

Then the review of October 2026 is written (``customer_health.review.write_review``) and every
figure a person reads is recounted here from the warehouse's own rows - ``health_scores``
(zones, and At Risk episodes from each day's zone and previous zone), ``action_outbox`` and
``account_outcomes`` - never by calling the review's functions. The dashboard's review pages and
the model page's iteration log are read through the app with real Airflow logins.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import (
    account_outcomes,
    action_outbox,
    health_reviews,
    health_scores,
    model_audits,
)
from tests.integration.test_dashboard_api import client, copy_sqlite, derived_episodes, text_of
from tests.text_checks import assert_reads_well

pytestmark = pytest.mark.slow

OCTOBER = date(2026, 10, 1)
PROMOTED = date(2026, 8, 1)
HORIZON = 21  # recovery within three weeks: the delivered actions (from mid-September) have mature episodes
WINDOW = 180
CLV = 15000.0
V2_ESTABLISHED = {  # what v2 changes for established accounts: (v1 weight, v2 weight)
    "engagement (dimension)": (0.40, 0.35),
    "financial (dimension)": (0.25, 0.30),
    "on-time payments (within financial)": (0.40, 0.50),
    "contract value change (within financial)": (0.30, 0.25),
    "usage billing trend (within financial)": (0.30, 0.25),
}


@dataclass(frozen=True)
class Company:
    template_url: str
    as_of: date  # the last scored date
    report_dir: Path


def v2_config(v1_yaml: str):
    from customer_health.scoring.model_config import load_model_config

    text = v1_yaml.replace("version: v1", "version: v2", 1)
    for old, new in (
        ("dimension_weights: {engagement: 0.40, financial: 0.25, support: 0.20, sentiment: 0.15}",
         "dimension_weights: {engagement: 0.35, financial: 0.30, support: 0.20, sentiment: 0.15}"),
        ("financial: {payment_timeliness: 0.40, contract_value_change: 0.30, usage_billing_trend: 0.30}",
         "financial: {payment_timeliness: 0.50, contract_value_change: 0.25, usage_billing_trend: 0.25}"),
    ):  # fmt: skip
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return load_model_config(text)


@pytest.fixture(scope="module")
def company(scored_company, tmp_path_factory) -> Company:
    """The scored company, an audit of v1, v2 approved on 2026-08-01 and rebuilt, and October's review."""
    from customer_health import pipeline, settings
    from customer_health.review import ReviewSettings, write_review
    from customer_health.validation import registry
    from customer_health.validation.audit import audit_model
    from customer_health.validation.outcomes import build_outcomes

    folder = tmp_path_factory.mktemp("review-company")
    url = copy_sqlite(scored_company.warehouse_url, folder / "warehouse.db")
    engine = engine_for(url)
    as_of = scored_company.as_of
    reports = folder / "reports"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(settings.WAREHOUSE_URL_ENV, url)
        build_outcomes(engine, as_of)
        audit_model(engine, as_of - timedelta(days=149), as_of, horizon_days=30, cadence="monthly", report_dir=reports)
        registry.propose(engine, v2_config(registry.get_version(engine, "v1").config_yaml), parent_version="v1",
                         created_by="casey.analyst")  # fmt: skip
        registry.approve(engine, "v2", decided_by="ada.admin", note="More weight on billing for established accounts",
                         at=datetime.combine(PROMOTED, datetime.min.time(), UTC).replace(hour=9))  # fmt: skip
        pipeline.rebuild_history(PROMOTED, as_of, model_version="v2")
        audit_model(engine, PROMOTED, as_of, horizon_days=30, cadence="monthly", model_version="v2", report_dir=reports)
        write_review(engine, OCTOBER, settings=ReviewSettings(horizon_days=HORIZON, window_days=WINDOW), report_dir=reports)
    engine.dispose()
    return Company(url, as_of, reports)


@pytest.fixture()
def warehouse(company, tmp_path, monkeypatch) -> str:
    """A private copy of the company's warehouse, selected through CUSTOMER_HEALTH_WAREHOUSE_URL."""
    from customer_health import settings
    from customer_health.dashboard.app import clear_caches

    url = copy_sqlite(company.template_url, tmp_path / "warehouse.db")
    monkeypatch.setenv(settings.WAREHOUSE_URL_ENV, url)
    clear_caches()
    return url


@pytest.fixture()
def tokens(airflow_metadata):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from customer_health.dashboard.auth import auth_manager

    return {"viewer": auth_manager().generate_jwt(SimpleAuthManagerUser(username="victor.viewer", role="VIEWER"))}


def stored(url: str, month: date = OCTOBER):
    with engine_for(url).connect() as conn:
        return conn.execute(select(health_reviews).where(health_reviews.c.month == month)).all()


def visible_text(page: str) -> str:
    return text_of(re.sub(r"<style.*?</style>|<svg.*?</svg>", " ", page, flags=re.S))


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


# --------------------------------------------------------------------------- recounts from the rows
def scores_by_day(url: str, version: str) -> dict[date, dict[str, dict]]:
    with engine_for(url).connect() as conn:
        rows = conn.execute(
            select(health_scores.c.as_of_date, health_scores.c.account_key, health_scores.c.zone, health_scores.c.score,
                   health_scores.c.segment, health_scores.c.arr).where(health_scores.c.model_version == version)
        ).all()  # fmt: skip
    days: dict[date, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        days[r.as_of_date][r.account_key] = r._asdict()
    return days


def recovered(started: date, back: date | None, as_of: date, horizon: int) -> bool:
    return back is not None and back <= as_of and (back - started).days <= horizon


def playbook(action_type: str, payload: dict) -> str:
    """The playbook as the review names it (the recorded playbook or rule, else type and trigger)."""
    name = payload.get("playbook") or payload.get("rule")
    if name:
        return name.replace("_", " ")
    return f"{action_type} on {payload['trigger']}".replace("_", " ")


def recount_interventions(url: str, version: str, as_of: date) -> dict[str, dict]:
    """Each playbook's episodes and recovery against matched untreated episodes, from the rows."""
    days = scores_by_day(url, version)
    with engine_for(url).connect() as conn:
        sent = conn.execute(
            select(action_outbox.c.account_key, action_outbox.c.action_type, action_outbox.c.trigger_date,
                   action_outbox.c.payload).where(action_outbox.c.status == "sent")
        ).all()  # fmt: skip
    start, end = as_of - timedelta(days=WINDOW - 1), as_of - timedelta(days=HORIZON)
    episodes = []
    for key, began, back in derived_episodes(url, version):
        if not start <= began <= end:
            continue
        entry = days[began][key]
        band = int(entry["score"]) // 10
        stratum = (began.strftime("%Y-%m"), entry["segment"].split("/")[1], band)
        until = back or as_of + timedelta(days=1)
        books = {
            playbook(a.action_type, json.loads(a.payload)) for a in sent
            if a.account_key == key and began <= a.trigger_date < until and a.trigger_date <= as_of
            and json.loads(a.payload).get("trigger") != "recovery"
        }  # fmt: skip
        episodes.append((stratum, recovered(began, back, as_of, HORIZON), books))
    control: dict[tuple, list[bool]] = defaultdict(list)
    for stratum, ok, books in episodes:
        if not books:
            control[stratum].append(ok)
    found = {}
    for name in sorted({b for _, _, books in episodes for b in books}):
        mine = [(s, ok) for s, ok, books in episodes if name in books]
        matched = [(s, ok) for s, ok in mine if s in control]
        row = {"episodes": len(mine), "matched": len(matched)}
        if matched:
            row["treated_rate"] = sum(ok for _, ok in matched) / len(matched)
            row["control_rate"] = sum(sum(control[s]) / len(control[s]) for s, _ in matched) / len(matched)
        found[name] = row
    return found


# --------------------------------------------------------------------------- the file a person opens
def test_the_review_file_is_self_contained_and_has_every_section(company):
    (row,) = stored(company.template_url)
    assert row.model_version == "v2"  # the active model, which scored October
    page = Path(row.report_path).read_text(encoding="utf-8")
    assert Path(row.report_path).parent == company.report_dir
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(", page, re.I)
    assert not re.search(r"""(?:src|href|srcset)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    text = visible_text(page)
    for section in ("Score distribution trend", "Healthy segment growth", "At Risk recovery rate",
                    "Intervention effectiveness per playbook", "Method.", "matched exactly on the month",
                    "Limits.", "Not a randomized experiment", "Model accuracy", "Retained revenue, the business case",
                    "flagged in the last quarter", "Customer lifetime value", "Model iteration log"):  # fmt: skip
        assert section in text, section
    assert_reads_well(text, "the review file")


def test_distribution_and_healthy_growth_are_the_zone_counts_of_each_months_last_day(company):
    (row,) = stored(company.template_url)
    figures = json.loads(row.figures)
    days = scores_by_day(company.template_url, "v2")
    expected = []
    for month in ("2026-08", "2026-09", "2026-10"):  # v2 scored from 2026-08-01
        last = max(d for d in days if d.strftime("%Y-%m") == month)
        expected.append((month, last.isoformat(), dict(Counter(r["zone"] for r in days[last].values()))))
    assert [(p["month"], p["as_of_date"], p["zones"]) for p in figures["distribution"]] == expected
    september, october = expected[-2][2]["Healthy"], expected[-1][2]["Healthy"]
    growth = (october - september) / september
    assert figures["healthy_growth"]["growth"] == pytest.approx(growth)
    text = visible_text(Path(row.report_path).read_text(encoding="utf-8"))
    assert f"Healthy segment growth {100 * growth:+.1f}% {september} to {october} Healthy accounts" in text


def test_at_risk_recovery_rate_is_recounted_from_the_score_history(company):
    (row,) = stored(company.template_url)
    figures, as_of = json.loads(row.figures), date.fromisoformat(json.loads(row.figures)["as_of_date"])
    cohort_to = as_of - timedelta(days=HORIZON)
    cohort = [(b, back) for _, b, back in derived_episodes(company.template_url, "v2")
              if cohort_to - timedelta(days=89) <= b <= cohort_to]  # fmt: skip
    back_in_time = sum(recovered(b, back, as_of, HORIZON) for b, back in cohort)
    rec = figures["recovery"]
    assert cohort and (rec["mature"], rec["recovered"]) == (len(cohort), back_in_time)
    assert rec["rate"] == pytest.approx(back_in_time / len(cohort))
    text = visible_text(Path(row.report_path).read_text(encoding="utf-8"))
    assert f"At Risk recovery rate {pct(rec['rate'])} {back_in_time} of {len(cohort)} episodes recovered" in text


def test_intervention_effectiveness_per_playbook_is_recounted_from_the_outbox(company):
    (row,) = stored(company.template_url)
    figures = json.loads(row.figures)
    as_of = date.fromisoformat(figures["as_of_date"])
    expected = recount_interventions(company.template_url, "v2", as_of)
    shown = {p["playbook"]: p for p in figures["interventions"]["playbooks"]}
    assert set(shown) == set(expected) and any(e["matched"] for e in expected.values())
    for name, want in expected.items():
        got = shown[name]
        assert (got["episodes"], got["matched"]) == (want["episodes"], want["matched"]), name
        if want["matched"]:
            assert got["treated_rate"] == pytest.approx(want["treated_rate"]), name
            assert got["control_rate"] == pytest.approx(want["control_rate"]), name
            assert got["difference"] == pytest.approx(want["treated_rate"] - want["control_rate"]), name
    assert not any("on recovery" in name for name in shown)  # a recovery's follow-up is not an intervention
    text = visible_text(Path(row.report_path).read_text(encoding="utf-8"))
    for name, got in shown.items():
        assert f"{name} {got['episodes']} {got['matched']} {got['unmatched']} {pct(got['treated_rate'])}" in text


def test_model_accuracy_is_the_latest_audit_of_the_reviewed_model(company):
    (row,) = stored(company.template_url)
    accuracy = json.loads(row.figures)["accuracy"]
    with engine_for(company.template_url).connect() as conn:
        audit = conn.execute(select(model_audits).where(model_audits.c.model_version == "v2",
                                                        model_audits.c.kind == "audit")).one()  # fmt: skip
    assert (accuracy["sensitivity"], accuracy["specificity"], accuracy["roc_auc"]) == (
        audit.sensitivity, audit.specificity, audit.roc_auc)  # fmt: skip
    text = visible_text(Path(row.report_path).read_text(encoding="utf-8"))
    assert f"Sensitivity: churners flagged {100 * audit.sensitivity:.1f}% 75%" in text


def test_retained_revenue_is_flagged_accounts_times_recovery_rate_times_clv(company, warehouse, tmp_path):
    from customer_health.review import ReviewSettings, render_review_html, write_review

    engine = engine_for(warehouse)
    as_of = date.fromisoformat(json.loads(stored(warehouse)[0].figures)["as_of_date"])
    flagged = {key for key, b, _ in derived_episodes(warehouse, "v2") if as_of - timedelta(days=89) <= b <= as_of}

    # Derived lifetime value: the flagged accounts' mean ARR at entry x 1 / the annual churn rate (capped at 10 years).
    revenue = json.loads(stored(warehouse)[0].figures)["retained_revenue"]
    days = scores_by_day(warehouse, "v2")
    first_entry: dict[str, float | None] = {}
    for key, b, _ in sorted(derived_episodes(warehouse, "v2"), key=lambda e: e[1]):
        if as_of - timedelta(days=89) <= b <= as_of:
            first_entry.setdefault(key, days[b][key]["arr"])  # the ARR on the day of its first entry in the quarter
    known = [arr for arr in first_entry.values() if arr is not None]
    mean_arr = sum(known) / len(known)
    start = min(days)
    with engine_for(warehouse).connect() as conn:
        churned = {k for k, on in conn.execute(select(account_outcomes.c.account_key, account_outcomes.c.occurred_on)
                                               .where(account_outcomes.c.outcome == "churn")) if start < on <= as_of}  # fmt: skip
    annual = len(churned) / len(days[start]) * 365 / ((as_of - start).days + 1)
    assert revenue["flagged_accounts"] == len(flagged)
    assert revenue["clv_inputs"]["mean_arr"] == pytest.approx(mean_arr)
    assert revenue["clv_inputs"]["churn"]["churned"] == len(churned)
    assert revenue["clv"] == pytest.approx(mean_arr * min(10.0, 1 / annual))
    assert revenue["value"] == pytest.approx(len(flagged) * revenue["recovery_rate"] * revenue["clv"])

    # A configured lifetime value: the seeds' arithmetic, every input on the page with its source.
    summary = write_review(engine, OCTOBER, settings=ReviewSettings(HORIZON, WINDOW, CLV), report_dir=tmp_path / "reports")
    figures = json.loads(stored(warehouse)[0].figures)
    rate = figures["recovery"]["rate"]
    assert summary["retained_revenue"] == pytest.approx(len(flagged) * rate * CLV)
    text = visible_text(render_review_html(figures))
    value = len(flagged) * rate * CLV
    money = f"${value / 1e6:,.1f}M" if value >= 1e6 else f"${value / 1e3:,.1f}k"
    assert (f"{len(flagged)} accounts flagged in the last quarter x {pct(rate)} recovered x $15.0k lifetime value "
            f"= {money} of revenue retained") in text  # fmt: skip
    assert f"Flagged accounts {len(flagged)} Accounts whose score entered At Risk or Critical" in text
    assert "Customer lifetime value $15.0k Configured" in text


def test_rewriting_a_month_replaces_its_row_and_file(company, warehouse, tmp_path):
    from customer_health.review import ReviewSettings, write_review

    engine, folder = engine_for(warehouse), tmp_path / "reports"
    first = write_review(engine, OCTOBER, settings=ReviewSettings(HORIZON, WINDOW), report_dir=folder)
    again = write_review(engine, date(2026, 10, 17), settings=ReviewSettings(HORIZON, WINDOW), report_dir=folder)
    assert first["report_path"] == again["report_path"]
    assert [r.report_path for r in stored(warehouse)] == [again["report_path"]]
    assert [p.name for p in folder.iterdir()] == ["health_review_2026-10_v2.html"]


def test_a_month_before_a_promotion_is_reviewed_on_the_model_live_then(company, warehouse):
    from customer_health.review import build_review

    engine = engine_for(warehouse)
    assert build_review(engine, date(2026, 7, 1))["model_version"] == "v1"  # v2 scored nothing in July
    assert build_review(engine, date(2026, 9, 1))["model_version"] == "v2"


def test_a_month_without_scores_says_what_to_do(company, warehouse, capsys):
    from customer_health.review import ReviewError, build_review, main

    with pytest.raises(ReviewError, match="model v2 has no scores in March 2026: run customer_health_daily"):
        build_review(engine_for(warehouse), date(2026, 3, 1))
    assert main(["--month", "2026-03"]) == 2
    assert "ReviewError: model v2 has no scores in March 2026" in capsys.readouterr().err
    assert stored(warehouse, date(2026, 3, 1)) == []


# --------------------------------------------------------------------------- the dashboard
def test_the_reviews_page_lists_and_shows_the_stored_review(company, warehouse, tokens):
    c = client(tokens["viewer"])
    (row,) = stored(warehouse)
    figures = json.loads(row.figures)
    data = c.get("/api/reviews").json()
    assert [(r["month"], r["model_version"]) for r in data["reviews"]] == [("2026-10-01", "v2")]
    assert data["shown"]["figures"]["recovery"] == figures["recovery"]

    text = visible_text(c.get("/reviews").text)
    assert "Monthly health reviews" in text and "October 2026 v2" in text
    assert "Health review, October 2026" in text
    rec = figures["recovery"]
    assert f"At Risk recovery rate {pct(rec['rate'])} {rec['recovered']} of {rec['mature']} episodes recovered" in text
    assert "Intervention effectiveness per playbook" in text and "Not a randomized experiment" in text

    served = c.get("/reviews/2026-10/file")
    assert served.status_code == 200 and served.text == Path(row.report_path).read_text(encoding="utf-8")
    assert served.headers["content-security-policy"].startswith("default-src 'none'")  # the browser fetches nothing either

    missing = c.get("/reviews?month=2026-03")
    assert missing.status_code == 404 and "no review of 2026-03: trigger customer_health_monthly_review" in missing.text
    assert c.get("/reviews/2026-03/file").status_code == 404
    assert client().get("/api/reviews").status_code == 401


def test_the_reviews_page_before_any_review_says_how_to_get_one(company, warehouse, tokens):
    with engine_for(warehouse).begin() as conn:
        conn.execute(health_reviews.delete())
    text = visible_text(client(tokens["viewer"]).get("/reviews").text)
    assert "No review yet: the monthly DAG writes the first one" in text


def test_the_model_page_logs_each_iteration_with_changes_accuracy_and_impact(company, warehouse, tokens):
    c = client(tokens["viewer"])
    log = {v["version"]: v for v in c.get("/api/model").json()["iterations"]}
    assert list(log) == ["v1", "v2"]
    v1, v2 = log["v1"], log["v2"]

    # Weight changes against the parent: exactly what v2 changed.
    assert (v2["parent_version"], v2["promoted_on"], v2["promotion"]) == ("v1", PROMOTED.isoformat(), "approved")
    changed = {w["weight"]: (round(w["parent"], 6), round(w["new"], 6)) for w in v2["changes"]["weights"]}
    assert all(w["segment_model"] == "established" for w in v2["changes"]["weights"])
    assert changed == V2_ESTABLISHED
    assert v1["changes"] is None and v1["promotion"] == "first version"

    # Accuracy: each version's own audit.
    with engine_for(warehouse).connect() as conn:
        audits = {a.model_version: a for a in conn.execute(select(model_audits).where(model_audits.c.kind == "audit"))}
    for version in ("v1", "v2"):
        assert log[version]["audit"]["sensitivity"] == audits[version].sensitivity
        assert log[version]["audit"]["roc_auc"] == audits[version].roc_auc

    # Business impact since promotion: v2's episodes from 2026-08-01, v1's before (from its first score).
    horizon, as_of = v2["impact"]["horizon_days"], company.as_of
    after = [(b, back) for _, b, back in derived_episodes(warehouse, "v2") if b >= PROMOTED]
    before = [(b, back) for _, b, back in derived_episodes(warehouse, "v1") if b < PROMOTED]
    for side, episodes in (("after", after), ("before", before)):
        mature = [(b, back) for b, back in episodes if b <= as_of - timedelta(days=horizon)]
        got = v2["impact"][side]
        assert (got["episodes"], got["mature"]) == (len(episodes), len(mature)), side
        assert got["recovered"] == sum(recovered(b, back, as_of, horizon) for b, back in mature), side
    assert v2["impact"]["before"]["from"] == min(scores_by_day(warehouse, "v1")).isoformat()
    assert v1["impact"]["after"]["to"] == (PROMOTED - timedelta(days=1)).isoformat()  # v1 retired on promotion

    page = c.get("/model").text
    log_html = page[page.index('id="iteration-log"'):]
    assert_reads_well(visible_text(log_html[: log_html.index("</section>")]), "the model iteration log")
    text = visible_text(page)
    assert "Model iteration log" in text
    assert "v2 active from v1 · registered" in text and "promoted 2026-08-01 by ada.admin" in text
    assert "Decision: More weight on billing for established accounts" in text
    assert "established financial (dimension) 0.250 0.300 +0.050" in text
    assert "established on-time payments (within financial) 0.400 0.500 +0.100" in text
    assert f"At Risk recovery rate {pct(v2['impact']['before']['recovery_rate'])} {pct(v2['impact']['after']['recovery_rate'])}" in text
    assert "v1 retired" in text and "the first version, active since its first score on" in text


def test_a_proposal_not_yet_promoted_shows_its_changes_and_no_business_impact(company, warehouse, tokens):
    from customer_health.scoring.model_config import load_model_config
    from customer_health.validation import registry

    engine = engine_for(warehouse)
    old = "engagement: {login_frequency: 0.25, active_user_ratio: 0.35, feature_breadth: 0.30, engagement_trend: 0.10}"
    text = registry.get_version(engine, "v2").config_yaml.replace("version: v2", "version: v3", 1)
    assert text.count(old) == 1
    text = text.replace(old, old.replace("login_frequency: 0.25", "login_frequency: 0.30").replace(
        "feature_breadth: 0.30", "feature_breadth: 0.25"))  # fmt: skip
    registry.propose(engine, load_model_config(text), parent_version="v2", created_by="casey.analyst")

    c = client(tokens["viewer"])
    v3 = c.get("/api/model").json()["iterations"][-1]
    assert (v3["version"], v3["status"], v3["parent_version"], v3["promotion"]) == ("v3", "proposed", "v2", "not promoted")
    assert v3["impact"] is None and v3["audit"] is None
    changed = {(w["segment_model"], w["weight"]): round(w["change"], 6) for w in v3["changes"]["weights"]}
    assert changed == {("new", "login frequency (within engagement)"): 0.05,
                       ("new", "core features used (within engagement)"): -0.05}  # fmt: skip
    page = visible_text(c.get("/model").text)
    assert "v3 proposed from v2 · registered" in page and "not promoted" in page
    assert "Not promoted: it has changed nothing for customers yet." in page
