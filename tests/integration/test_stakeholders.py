"""Stakeholder-level health, on the scored company: who the people are, what they did, and what a CSM reads.

The warehouse is a copy of the session's ``scored_company`` (``tests/scored_company.py``); the
daily run's stakeholder step (``pipeline.stakeholder_health``) extracts the sandbox product
database's users and their activity through the real product connection and computes every
account's people. Each expectation is recomputed from the sandbox's own source data - the
product database's raw event stream, the Salesforce store's contacts, NPS answers and tasks, the
Zendesk store's tickets, users and ratings - never from the rows under test.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import func, select

from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import raw_zd_ticket, stakeholder_health
from customer_health.wording import count
from tests.integration.test_dashboard_api import copy_sqlite
from tests.text_checks import assert_reads_well


def _until(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


@pytest.fixture(scope="module")
def company(scored_company, tmp_path_factory):
    """A copy of the scored company with the daily run's stakeholder step done for its last date."""
    from customer_health import pipeline, settings

    folder = tmp_path_factory.mktemp("stakeholders")
    url = copy_sqlite(scored_company.warehouse_url, folder / "warehouse.db")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in scored_company.environment.items():
            mp.setenv(key, value)
        mp.setenv(settings.WAREHOUSE_URL_ENV, url)
        engine_for.cache_clear()
        result = pipeline.stakeholder_health(scored_company.as_of, _until(scored_company.as_of))
    engine_for.cache_clear()
    return {"url": url, "as_of": scored_company.as_of, "result": result, "sandbox": scored_company.sandbox.folder,
            "environment": scored_company.environment}  # fmt: skip


def rows(url: str, day: date) -> list[dict]:
    with engine_for(url).connect() as conn:
        found = conn.execute(select(stakeholder_health).where(stakeholder_health.c.as_of_date == day)).all()
    return [r._asdict() for r in found]


def _day(value) -> date | None:
    return None if value is None else date.fromisoformat(str(value)[:10])


def source(folder, name: str) -> sqlite3.Connection:
    return sqlite3.connect(folder / name)


def account_of_product(url: str) -> dict[str, str]:
    """Product account -> its Salesforce account, as the crosswalk (tested on its own) resolved it."""
    from customer_health.warehouse.schema import account_identity_map as m

    with engine_for(url).connect() as conn:
        return dict(conn.execute(select(m.c.source_id, m.c.account_key).where(m.c.system == "product")).all())


# --------------------------------------------------------------------------- who
def test_each_contact_with_a_login_is_the_product_user_with_the_same_email_whatever_its_case(company):
    people = rows(company["url"], company["as_of"])
    folder = company["sandbox"]
    accounts = {r["account_key"] for r in people}
    with source(folder, "company.db") as db:
        contacts = [c for c in db.execute('SELECT "Id", "AccountId", "Email" FROM sf_contact WHERE NOT "IsDeleted"')
                    if c[1] in accounts]  # fmt: skip
    account_of = account_of_product(company["url"])
    end = datetime.combine(company["as_of"] + timedelta(days=1), time.min).isoformat(sep=" ")
    window = datetime.combine(company["as_of"] - timedelta(days=119), time.min).isoformat(sep=" ")
    with source(folder, "product.db") as db:
        # Logins that existed at D and were not gone before the 120-day window.
        users = db.execute(
            "SELECT id, account_id, email FROM users WHERE created_at < ? AND (deactivated_at IS NULL OR deactivated_at >= ?)",
            (end, window),
        ).fetchall()
    by_email = defaultdict(list)
    for user_id, product_account, email in users:
        by_email[(account_of.get(product_account), email.strip().lower())].append(user_id)
    expected = {}
    for contact_id, account, email in contacts:
        found = by_email.get((account, (email or "").strip().lower()), [])
        if found:
            expected[contact_id] = set(found)
    matched = {r["contact_id"]: r["product_user_id"] for r in people if r["contact_id"] and r["product_user_id"]}

    assert set(matched) == set(expected), "every contact whose e-mail has a login is matched, and only those"
    assert all(matched[c] in expected[c] for c in matched)
    user_email = {u[0]: u[2] for u in users}
    contact_email = {c[0]: c[2] for c in contacts}
    differ = [c for c, u in matched.items() if user_email[u] != contact_email[c]]
    assert differ, "some logins were typed with capitals: the match ignores case"
    assert {r["contact_id"] for r in people if r["contact_id"]} == {c[0] for c in contacts}, "every contact is a stakeholder"


def test_a_contact_without_a_login_has_no_engagement_and_a_user_without_a_contact_no_nps(company):
    people = rows(company["url"], company["as_of"])
    no_login = [r for r in people if r["product_user_id"] is None]
    unnamed = [r for r in people if r["contact_id"] is None]

    assert no_login and unnamed
    for r in no_login:
        assert (r["active_days_28"], r["active_days_90"], r["core_actions_28"], r["active_days_30"], r["last_login_on"],
                r["engagement_change_30"]) == (None,) * 6, r  # fmt: skip
    for r in unnamed:
        assert r["latest_nps"] is None and r["last_touch_on"] is None and not r["is_executive_sponsor"]
        assert r["stakeholder_key"] == f"user:{r['product_user_id']}"
    assert any(r["active_days_90"] == 0 for r in people if r["product_user_id"]), "a login with no activity is a real 0"


# --------------------------------------------------------------------------- what they did
def _events(folder, as_of: date) -> dict[str, list[tuple[date, str, bool]]]:
    """Each product user's events in the 365 days to ``as_of``: (day, event name, core feature)."""
    start = datetime.combine(as_of - timedelta(days=364), time.min).isoformat(sep=" ")
    end = datetime.combine(as_of + timedelta(days=1), time.min).isoformat(sep=" ")
    with source(folder, "product.db") as db:
        core = {k for k, is_core in db.execute("SELECT feature_key, is_core FROM features") if is_core}
        found = defaultdict(list)
        for user_id, name, feature, at in db.execute(
            "SELECT user_id, event_name, feature_key, occurred_at FROM events WHERE occurred_at >= ? AND occurred_at < ?",
            (start, end),
        ):
            found[user_id].append((_day(at), name, name == "feature_used" and feature in core))
    return found


def test_engagement_counts_the_persons_own_product_events(company):
    as_of = company["as_of"]
    events = _events(company["sandbox"], as_of)
    people = [r for r in rows(company["url"], as_of) if r["product_user_id"]]
    checked = 0
    for r in people:
        mine = events.get(r["product_user_id"], [])

        def active(lo: int, hi: int = 0, mine=mine) -> int:
            return len({d for d, _, _ in mine if as_of - timedelta(days=lo) <= d <= as_of - timedelta(days=hi)})

        def core(lo: int, mine=mine) -> int:
            return sum(1 for d, _, c in mine if c and d >= as_of - timedelta(days=lo))

        logins = [d for d, name, _ in mine if name == "login" and d > as_of - timedelta(days=180)]
        expected = {
            "active_days_28": active(27), "active_days_90": active(89), "active_days_30": active(29),
            "active_days_prev_30": active(59, 30), "core_actions_28": core(27), "core_actions_90": core(89),
            "last_login_on": max(logins) if logins else None,
        }  # fmt: skip
        got = {k: (_day(r[k]) if k == "last_login_on" else r[k]) for k in expected}
        assert got == expected, r["stakeholder_key"]
        previous = expected["active_days_prev_30"]
        if previous:
            assert r["engagement_change_30"] == pytest.approx((expected["active_days_30"] - previous) / previous)
        else:
            assert r["engagement_change_30"] is None
        checked += 1
    assert checked > 100


def test_nps_csat_and_touches_are_the_contacts_own_answers_tickets_and_activities(company):
    as_of = company["as_of"]
    end = datetime.combine(as_of + timedelta(days=1), time.min).isoformat(sep=" ")
    year_ago = datetime.combine(as_of - timedelta(days=364), time.min).isoformat(sep=" ")
    ninety = datetime.combine(as_of - timedelta(days=89), time.min).isoformat(sep=" ")
    people = [r for r in rows(company["url"], as_of) if r["contact_id"]]
    with source(company["sandbox"], "company.db") as db:
        latest_nps = {}
        for contact, score, at in db.execute(
            'SELECT "Contact__c", "Score__c", "Responded_At__c" FROM sf_nps_response WHERE "Responded_At__c" < ? '
            'ORDER BY "Responded_At__c", "Id"', (end,)
        ):
            latest_nps[contact] = (score, _day(at))
        email_of = {c: (e or "").lower() for c, e in db.execute('SELECT "Id", "Email" FROM sf_contact')}
        user_email = {u: (e or "").lower() for u, e in db.execute("SELECT id, email FROM zd_user")}
        tickets = defaultdict(int)
        for requester, created in db.execute("SELECT requester_id, created_at FROM zd_ticket WHERE created_at < ?", (end,)):
            if created >= ninety:
                tickets[user_email.get(requester)] += 1
        ratings = defaultdict(lambda: [0, 0])
        for requester, score in db.execute(
            "SELECT t.requester_id, r.score FROM zd_satisfaction_rating r JOIN zd_ticket t ON t.id = r.ticket_id "
            "WHERE r.created_at >= ? AND r.created_at < ?", (year_ago, end)
        ):
            ratings[user_email.get(requester)][1] += 1
            ratings[user_email.get(requester)][0] += score == "good"
        touches = {}
        for who, day in db.execute(
            'SELECT "WhoId", MAX("ActivityDate") FROM sf_task WHERE "Status" = \'Completed\' AND "ActivityDate" <= ? '
            'GROUP BY "WhoId"', (as_of.isoformat(),)
        ):
            touches[who] = _day(day)
    with_zendesk = [r for r in people if r["csat_rated"] is not None]
    assert with_zendesk and any(r["csat_rated"] for r in people) and any(r["latest_nps"] is not None for r in people)
    for r in people:
        nps = latest_nps.get(r["contact_id"])
        assert (r["latest_nps"], _day(r["latest_nps_on"])) == (nps if nps else (None, None)), r["contact_id"]
        assert _day(r["last_touch_on"]) == touches.get(r["contact_id"]), r["contact_id"]
    for r in with_zendesk:
        email = email_of[r["contact_id"]]
        assert (r["csat_good"], r["csat_rated"], r["tickets_90"]) == (*ratings.get(email, [0, 0]), tickets.get(email, 0))


def test_the_champion_is_the_contact_who_used_the_product_most_in_the_90_days_before_the_last_30(company):
    as_of = company["as_of"]
    events = _events(company["sandbox"], as_of)
    lo, hi = as_of - timedelta(days=119), as_of - timedelta(days=30)
    by_account = defaultdict(list)
    for r in rows(company["url"], as_of):
        by_account[r["account_key"]].append(r)
    compared = 0
    for account, people in by_account.items():
        def days_of(r) -> int:
            return len({d for d, _, _ in events.get(r["product_user_id"], []) if lo <= d <= hi})

        def core_of(r) -> int:
            return sum(1 for d, _, c in events.get(r["product_user_id"], []) if c and lo <= d <= hi)

        candidates = [r for r in people if r["product_user_id"] and not r["is_executive_sponsor"] and days_of(r) >= 5]
        named = [r for r in candidates if r["contact_id"]] or candidates
        champions = [r["stakeholder_key"] for r in people if r["is_champion"]]
        if not named:
            assert champions == [], account
            continue
        best = min(named, key=lambda r: (-days_of(r), -core_of(r), r["stakeholder_key"]))
        assert champions == [best["stakeholder_key"]], account
        compared += 1
    assert compared > 50


def test_tickets_keep_the_requesters_email_from_the_sideloaded_zendesk_users(company):
    with source(company["sandbox"], "company.db") as db:
        email_of = dict(db.execute("SELECT id, email FROM zd_user"))
        requester_of = dict(db.execute("SELECT id, requester_id FROM zd_ticket"))
    with engine_for(company["url"]).connect() as conn:
        stored = conn.execute(select(raw_zd_ticket.c.id, raw_zd_ticket.c.requester_id, raw_zd_ticket.c.requester_email)).all()
    assert stored
    for ticket, requester, email in stored:
        assert requester == requester_of[ticket]
        assert email == email_of.get(requester)


# --------------------------------------------------------------------------- re-runs and history
def test_a_rerun_of_the_date_replaces_its_rows_and_adds_none(company, tmp_path):
    from customer_health import pipeline, settings

    url = copy_sqlite(company["url"], tmp_path / "warehouse.db")
    before = {r["stakeholder_key"]: {k: v for k, v in r.items() if k != "computed_at"} for r in rows(url, company["as_of"])}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in company["environment"].items():
            mp.setenv(key, value)
        mp.setenv(settings.WAREHOUSE_URL_ENV, url)
        engine_for.cache_clear()
        pipeline.stakeholder_health(company["as_of"], _until(company["as_of"]))
    engine_for.cache_clear()
    after = {r["stakeholder_key"]: {k: v for k, v in r.items() if k != "computed_at"} for r in rows(url, company["as_of"])}
    with engine_for(url).connect() as conn:
        total = conn.execute(select(func.count()).select_from(stakeholder_health)).scalar_one()
    assert after == before and total == len(before)


def test_a_date_the_per_user_history_does_not_cover_has_no_engagement_rather_than_zeros(company):
    from customer_health.sources.product_users import coverage_start
    from customer_health.stakeholders import compute_stakeholders, history_covers

    engine = engine_for(company["url"])
    with engine.connect() as conn:
        first = coverage_start(conn)
        day = first + timedelta(days=100)  # fewer than the 120 days the windows need
        assert not history_covers(conn, day) and history_covers(conn, company["as_of"])
    frame = compute_stakeholders(engine, day)
    with_login = frame[frame["product_user_id"].notna()]
    assert len(with_login) and with_login["active_days_90"].isna().all() and with_login["active_days_30"].isna().all()
    assert not frame["is_champion"].any()


# --------------------------------------------------------------------------- what people read
def test_stakeholder_alerts_read_well_and_say_what_the_rows_say(company):
    from customer_health.stakeholders import read_stakeholders

    with engine_for(company["url"]).connect() as conn:
        accounts = sorted({r["account_key"] for r in rows(company["url"], company["as_of"])})
        found = read_stakeholders(conn, accounts, company["as_of"])
    kinds = defaultdict(int)
    for group in found.values():
        people = {p.stakeholder_key: p for p in group.people}
        for alert in group.alerts:
            kinds[alert.kind] += 1
            assert_reads_well(alert.text, f"{alert.kind} alert")
            person = people.get(alert.stakeholder_key)
            if alert.kind == "champion_drop":
                assert f"on {count(person.active_days_30, 'day')} in the last 30" in alert.text
                assert f"the {count(person.active_days_prev_30, 'day')} of the 30 days before" in alert.text
                assert f"{round(-100 * person.engagement_change_30)}% fewer" in alert.text
                assert person.is_champion and person.who in alert.text
            if alert.kind == "detractor":
                assert f"answered {person.latest_nps} out of 10" in alert.text
        page = group.page()
        for row in page["people"]:
            assert_reads_well(" ".join(str(v) for v in (row["who"], row["engagement"], row["nps"] or "", row["csat"] or "")))
    assert kinds["champion_drop"] and kinds["detractor"] and kinds["no_sponsor"]


def test_the_executive_sponsor_alert_starts_at_45_days_without_a_login(company):
    from customer_health.stakeholders import read_stakeholders, stakeholder_alerts

    as_of = company["as_of"]
    with engine_for(company["url"]).connect() as conn:
        accounts = sorted({r["account_key"] for r in rows(company["url"], as_of)})
        found = read_stakeholders(conn, accounts, as_of)
    group = next(g for g in found.values() if g.sponsor and g.sponsor.has_login and g.sponsor.last_login_on)
    people = [p for p in group.people if not p.is_executive_sponsor]

    def alerts_with_last_login(days_ago: int) -> list:
        sponsor = dataclasses.replace(group.sponsor, last_login_on=as_of - timedelta(days=days_ago))
        return [a for a in stakeholder_alerts([sponsor, *people], as_of) if a.kind == "sponsor_silent"]

    assert alerts_with_last_login(44) == []
    (alert,) = alerts_with_last_login(45)
    assert "has not logged in for 45 days" in alert.text and group.sponsor.name in alert.text
    assert_reads_well(alert.text)


def test_the_daily_dag_computes_stakeholders_after_scoring_beside_the_actions(dagbag):
    dag = dagbag.dags["customer_health_daily"]
    task = dag.get_task("stakeholder_health")
    assert "score_accounts" in task.upstream_task_ids
    assert "stakeholder_health" not in dag.get_task("decide_actions").get_flat_relative_ids(upstream=True)
