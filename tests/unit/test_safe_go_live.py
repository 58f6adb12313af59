"""Going live safely: shadow mode and the daily cap, as a specification.

Decided on a real, migrated warehouse (SQLite and PostgreSQL) seeded like extraction and
scoring leave it (``test_action_rules.Warehouse``); released by ``actions.release`` as the daily
decision does; what may be delivered read through ``outbox.pending_batches`` and ``outbox.claim``,
the only ways a dispatcher gets a row.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import update

from customer_health.actions import outbox
from customer_health.actions.config import ActionRulesError, parse_action_rules
from customer_health.actions.decide import decide_actions
from customer_health.actions.release import release_day
from customer_health.actions.rules import still_due
from customer_health.warehouse.schema import action_outbox, health_scores
from tests.unit.test_action_rules import LIVE, RULES, D, Warehouse, _doc


@pytest.fixture()
def wh(warehouse_url) -> Warehouse:
    return Warehouse(warehouse_url)


def with_type(rules, action_type: str, **changes):
    return replace(rules, actions=rules.actions | {action_type: replace(rules.actions[action_type], **changes)})


def at_risk(wh: Warehouse, n: int, day=D) -> list[str]:
    """``n`` accounts entering At Risk on ``day``; account i has priority i (the last is the highest)."""
    keys = []
    for i in range(n):
        key = wh.account(f"001R{i:02d}", f"Risky {i}")
        wh.score(key, day, "At Risk", 40, "Neutral")
        with wh.engine.begin() as conn:
            conn.execute(update(health_scores).where(health_scores.c.account_key == key).values(priority=float(i)))
        keys.append(key)
    return keys


def deliverable(wh: Warehouse, action_type: str, day=D) -> list[str]:
    return [k for batch in outbox.pending_batches(wh.engine, day).get(action_type, []) for k in batch]


# ----------------------------------------------------------------------------- the configuration
def test_the_shipped_defaults_start_advocacy_in_shadow_and_cap_human_work():
    assert {t for t, a in RULES.actions.items() if a.shadow} == {
        "advocacy_referral", "advocacy_case_study", "advocacy_beta", "advocacy_review"}
    assert RULES.action("checkin_task").daily_cap == 50 and RULES.action("executive_slack").daily_cap == 10
    uncapped = {t for t, a in RULES.actions.items() if a.daily_cap is None}
    assert uncapped == {"campaign_pause", "campaign_resume", "rescue_tasks_complete"}  # protective: never wait


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["actions"]["checkin_task"].update(mode="dry-run"), r"actions.checkin_task.mode: must be one of live, shadow"),
    (lambda d: d["actions"]["checkin_task"].update(daily_cap=0), r"actions.checkin_task.daily_cap: must be at least 1"),
    (lambda d: d["actions"]["campaign_resume"].update(mode="shadow"),
     r"actions.campaign_resume.mode: is shadow but undoes campaign_pause, which are live"),
    (lambda d: d["actions"]["rescue_tasks_complete"].update(mode="shadow"),
     r"undoes checkin_task, emergency_review_task, .*recovery_plan_task"),
    (lambda d: d["actions"]["advocacy_beta"].update(programmes=["betas"]), r"programme 'betas' is not defined"),
    (lambda d: d["segments"]["nurture"].update(min_score=70), r"segments.nurture: needs 0 <= min_score <= max_score"),
    (lambda d: d["programmes"]["upsell"].update(name="Upsell"), r"programmes.upsell: give exactly one of name"),
])  # fmt: skip
def test_a_bad_go_live_setting_fails_on_load_naming_it(change, message):
    doc = _doc()
    change(doc)
    with pytest.raises(ActionRulesError, match=message):
        parse_action_rules(doc, "x.yaml")


def test_a_pause_and_its_resume_may_both_be_shadow():
    doc = _doc()
    for action in ("campaign_pause", "campaign_resume"):
        doc["actions"][action]["mode"] = "shadow"
    assert parse_action_rules(doc, "x.yaml").action("campaign_resume").shadow


# ----------------------------------------------------------------------------- shadow
def test_a_shadow_type_records_what_it_would_send_and_nothing_can_send_it(wh):
    key = wh.account("001A", "Acme")
    for i in range(90, -1, -1):
        wh.score(key, D - timedelta(days=i), "Healthy", 85, "Healthy")
    report = decide_actions(wh.engine, D, "v1", RULES)
    assert report.shadow == {"advocacy_referral": 1, "advocacy_case_study": 1, "advocacy_beta": 1, "advocacy_review": 1}
    [row] = wh.outbox(action_type="advocacy_referral")
    assert (row.status, row.target) == ("shadow", "campaigns") and "shadow mode" in row.last_error
    payload = json.loads(row.payload)
    assert payload["programmes"] == ["referral"] and [c["email"] for c in payload["contacts"]] == [
        "ana@acme.test", "sam@acme.test"]
    assert outbox.pending_batches(wh.engine, D) == {}
    assert outbox.claim(wh.engine, row.idempotency_key, "campaigns") is False


def test_switching_a_type_from_shadow_to_live_never_sends_yesterdays_shadow_rows(wh):
    key = wh.account("001A", "Acme")
    for i in range(91, -1, -1):
        wh.score(key, D - timedelta(days=i), "Healthy", 85, "Healthy")
    decide_actions(wh.engine, D - timedelta(days=1), "v1", RULES)  # in shadow yesterday
    live = with_type(RULES, "advocacy_referral", mode="live")
    decide_actions(wh.engine, D - timedelta(days=1), "v1", live)  # a re-run of yesterday, now live
    today = decide_actions(wh.engine, D, "v1", live)
    rows = {str(r.trigger_date): r.status for r in wh.outbox(action_type="advocacy_referral")}
    assert rows == {str(D - timedelta(days=1)): "shadow", str(D): "pending"}  # yesterday's stays shadow
    assert deliverable(wh, "advocacy_referral") == [f"{key}:advocacy_referral:{D}:v1"]
    # Still in shadow, yesterday's shadow row keeps its cooldown: today would repeat nothing.
    assert "advocacy_case_study" not in today.by_type


def test_a_type_switched_to_shadow_before_delivery_sends_nothing_it_had_decided(wh):
    at_risk(wh, 2)
    decide_actions(wh.engine, D, "v1", LIVE, deliverable=True)
    with wh.engine.begin() as conn:  # decided, not yet released (as before the cap ran)
        conn.execute(update(action_outbox).values(release_date=None))
    report = release_day(wh.engine, D, with_type(LIVE, "checkin_task", mode="shadow"))
    assert report.shadowed == {"checkin_task": 2}
    assert {r.status for r in wh.outbox(action_type="checkin_task")} == {"shadow"}
    assert deliverable(wh, "checkin_task") == []


# ----------------------------------------------------------------------------- the daily cap
def test_a_cap_releases_the_highest_priority_rows_and_defers_the_rest_in_order(wh):
    keys = at_risk(wh, 5)
    rules = with_type(LIVE, "checkin_task", daily_cap=2)
    report = decide_actions(wh.engine, D, "v1", rules)
    assert report.release.released["checkin_task"] == 2 and report.release.deferred["checkin_task"] == 3
    assert deliverable(wh, "checkin_task") == sorted(f"{k}:checkin_task:{D}:v1" for k in keys[-2:])
    waiting = {r.account_key: r for r in wh.outbox(action_type="checkin_task") if r.release_date is None}
    assert set(waiting) == set(keys[:3]) and {r.status for r in waiting.values()} == {"pending"}
    assert "deferred by the daily cap (2 a day): number 1 in line" in waiting[keys[2]].last_error
    assert waiting[keys[0]].deferred_since == D
    # A deferred row cannot be claimed by a dispatcher that is handed it anyway.
    assert outbox.claim(wh.engine, f"{keys[0]}:checkin_task:{D}:v1", "salesforce") is False


def test_a_rerun_of_the_day_releases_nothing_more_and_the_next_day_takes_the_next_in_line(wh):
    keys = at_risk(wh, 5)
    rules = with_type(LIVE, "checkin_task", daily_cap=2)
    decide_actions(wh.engine, D, "v1", rules)
    again = decide_actions(wh.engine, D, "v1", rules)
    assert again.release.released == {} and again.release.deferred == {"checkin_task": 3}
    for key in keys:  # still At Risk the next day
        wh.score(key, D + timedelta(days=1), "At Risk", 40, "At Risk")
    nxt = decide_actions(wh.engine, D + timedelta(days=1), "v1", rules)
    assert nxt.inserted == 0  # the waiting rows are open: nothing decided twice
    released = [r.account_key for r in wh.outbox(action_type="checkin_task") if r.release_date == D + timedelta(days=1)]
    assert sorted(released) == sorted(keys[1:3])  # priority 2 and 1 of the three waiting
    assert deliverable(wh, "checkin_task", D + timedelta(days=1)) == sorted(
        f"{k}:checkin_task:{D}:v1" for k in [*keys[1:3], *keys[3:]])  # yesterday's released ones still deliverable
    for day in (2, 3):
        for key in keys:
            wh.score(key, D + timedelta(days=day), "At Risk", 40, "At Risk")
        decide_actions(wh.engine, D + timedelta(days=day), "v1", rules)
    assert all(r.release_date is not None for r in wh.outbox(action_type="checkin_task"))  # never dropped


def test_older_deferred_rows_go_before_a_later_days_higher_priority(wh):
    keys = at_risk(wh, 2)
    rules = with_type(LIVE, "checkin_task", daily_cap=1)
    decide_actions(wh.engine, D, "v1", rules)
    late = wh.account("001LATE", "Late")
    for key in keys:
        wh.score(key, D + timedelta(days=1), "At Risk", 40, "At Risk")
    wh.score(late, D + timedelta(days=1), "At Risk", 40, "Neutral")
    with wh.engine.begin() as conn:
        conn.execute(update(health_scores).where(health_scores.c.account_key == late).values(priority=99.0))
    decide_actions(wh.engine, D + timedelta(days=1), "v1", rules)
    [first] = [r for r in wh.outbox(action_type="checkin_task") if r.release_date == D + timedelta(days=1)]
    assert first.account_key == keys[0]  # yesterday's deferred row first, then the new one tomorrow


def test_a_deferred_row_whose_account_moved_on_is_withdrawn_instead_of_sent_late(wh):
    keys = at_risk(wh, 2)
    with wh.engine.begin() as conn:  # Critical instead: an escalation each; the cap lets one through
        conn.execute(update(health_scores).values(zone="Critical", score=20, previous_zone="At Risk"))
    rules = with_type(LIVE, "executive_slack", daily_cap=1)
    decide_actions(wh.engine, D, "v1", rules)
    [waiting] = [r for r in wh.outbox(action_type="executive_slack") if r.release_date is None]
    assert waiting.account_key == keys[0]
    wh.score(keys[0], D + timedelta(days=1), "At Risk", 30, "Critical")  # better, no longer Critical
    report = decide_actions(wh.engine, D + timedelta(days=1), "v1", rules)
    assert report.release.withdrawn == {"executive_slack": 1}
    [row] = [r for r in wh.outbox(action_type="executive_slack") if r.account_key == keys[0]]
    assert row.status == "suppressed" and row.release_date is None
    assert "the account is At Risk on 2026-10-02, so what entering critical called for is no longer due" in row.last_error


def test_a_recovery_withdraws_the_rescue_rows_still_waiting_for_their_turn(wh):
    keys = at_risk(wh, 3)
    rules = with_type(LIVE, "checkin_task", daily_cap=1)
    decide_actions(wh.engine, D, "v1", rules)
    waiting = [r.account_key for r in wh.outbox(action_type="checkin_task") if r.release_date is None]
    wh.score(waiting[0], D + timedelta(days=1), "Neutral", 60, "At Risk")
    report = decide_actions(wh.engine, D + timedelta(days=1), "v1", rules)
    assert report.withdrawn >= 1  # the recovery's own withdrawal: a pending rescue row undone before sending
    [row] = [r for r in wh.outbox(action_type="checkin_task") if r.account_key == waiting[0]]
    assert row.status == "suppressed" and "recovered" in row.last_error
    assert keys


def test_what_is_still_due_follows_the_trigger():
    assert still_due("entering_at_risk", "Critical") and not still_due("entering_at_risk", "Neutral")
    assert not still_due("sustained_healthy", "Neutral") and still_due("sustained_healthy", "Healthy")
    assert not still_due("recovery", "At Risk") and still_due("recovery", None)  # no score: nothing says otherwise
