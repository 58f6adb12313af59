"""Action rules as a specification: each trigger, and what must not trigger, walked through.

The pure rules (``rules.py``) are exercised on ``AccountHealth`` values; ``decide_actions`` on a
real, migrated SQLite warehouse seeded with a few accounts and their score history.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, insert, select, update

from customer_health.actions import outbox
from customer_health.actions.config import ActionRulesError, load_action_rules, parse_action_rules
from customer_health.actions.decide import decide_actions
from customer_health.actions.rules import AccountHealth, PastAction, decide_for_account, triggered_actions
from customer_health.scoring.drivers import read_drivers
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import (
    account_crosswalk,
    action_outbox,
    health_scores,
    raw_product_feature,
    raw_product_feature_daily,
    raw_sf_account,
    raw_sf_contact,
    raw_sf_user,
)
from tests.drivers_helpers import engine_drivers

RULES = load_action_rules()
# Every action type live and uncapped: the rules' decisions without the go-live safety nets.
LIVE = replace(RULES, actions={k: replace(a, mode="live", daily_cap=None) for k, a in RULES.actions.items()})
D = date(2026, 10, 1)
NOW = datetime(2026, 10, 1, 6, 0)


def health(zone: str, previous: str | None, score: int = 60, **kw) -> AccountHealth:
    base = dict(account_key="001A", as_of=D, zone=zone, previous_zone=previous, score=score,
                account_name="Acme", arr=20000.0, plan="growth")
    return AccountHealth(**(base | kw))


def types(account: AccountHealth) -> set[str]:
    return {a.action_type for a in triggered_actions(account, RULES)}


# ----------------------------------------------------------------------------- config
def test_shipped_rules_load_and_name_their_version():
    assert RULES.version == "actions_v1"
    assert RULES.action("checkin_task").due_in_days == 2


def _doc() -> dict:
    """A fresh copy of the shipped rules document, to break one thing in."""
    return yaml.safe_load(Path(RULES.source).read_text())


def test_a_trigger_naming_an_undefined_action_fails_with_file_and_action():
    doc = _doc()
    doc["triggers"]["entering_at_risk"]["automated"].append("send_flowers")
    with pytest.raises(ActionRulesError, match=r"triggers.entering_at_risk.automated.*'send_flowers'.*actions_x.yaml"):
        parse_action_rules(doc, "actions_x.yaml")


def test_expansion_for_at_risk_accounts_is_rejected():
    doc = _doc()
    doc["triggers"]["top_quartile_expansion"]["zones"] = ["Healthy", "At Risk"]
    with pytest.raises(ActionRulesError, match="never offered to At Risk"):
        parse_action_rules(doc, "x.yaml")


def test_unknown_zone_and_negative_cooldown_are_named():
    doc = _doc()
    doc["triggers"]["recovery"]["to_zones"] = ["Green"]
    with pytest.raises(ActionRulesError, match="unknown zone 'Green'"):
        parse_action_rules(doc, "x.yaml")
    doc = _doc()
    doc["actions"]["checkin_task"]["cooldown_days"] = -1
    with pytest.raises(ActionRulesError, match=r"actions.checkin_task.cooldown_days: must be >= 0"):
        parse_action_rules(doc, "x.yaml")


def test_a_missing_rules_file_says_which(tmp_path):
    with pytest.raises(ActionRulesError, match="cannot read the action rules file .*nope.yaml"):
        load_action_rules(tmp_path / "nope.yaml")


# ----------------------------------------------------------------------------- triggers
def test_healthy_to_neutral_enrols_the_long_tail_in_the_engagement_sequence():
    assert types(health("Neutral", "Healthy")) == {"engagement_sequence"}


def test_healthy_to_neutral_gives_a_high_value_account_a_human_adoption_review():
    assert types(health("Neutral", "Healthy", arr=250000.0)) == {"adoption_review_task"}
    assert types(health("Neutral", "Healthy", plan="enterprise", arr=1.0)) == {"adoption_review_task"}


def test_staying_neutral_or_rising_to_neutral_triggers_nothing():
    assert types(health("Neutral", "Neutral")) == set()
    assert types(health("Neutral", "At Risk")) == {"campaign_resume", "rescue_tasks_complete"}  # recovery only


def test_entering_at_risk_creates_a_checkin_and_pauses_upsells():
    assert types(health("At Risk", "Neutral", 40)) == {"checkin_task", "campaign_pause"}
    assert types(health("At Risk", None, 40)) == {"checkin_task", "campaign_pause"}  # first score


def test_staying_at_risk_or_improving_from_critical_is_not_entering_at_risk():
    assert types(health("At Risk", "At Risk", 40)) == set()
    assert types(health("At Risk", "Critical", 30)) == set()


def test_critical_escalates_to_executives_with_review_and_recovery_plan():
    assert types(health("Critical", "At Risk", 20)) == {
        "executive_slack", "executive_email", "emergency_review_task", "recovery_plan_task", "campaign_pause",
    }


def test_ninety_healthy_days_trigger_advocacy_and_eighty_nine_do_not():
    asks = {"advocacy_referral", "advocacy_case_study", "advocacy_beta", "advocacy_review"}
    assert types(health("Healthy", "Healthy", 85, healthy_streak_days=90)) == asks
    assert types(health("Healthy", "Healthy", 85, healthy_streak_days=89)) == set()
    assert types(health("Healthy", "Healthy", 85, healthy_streak_days=120, slope_90=-5.0)) == set()  # sliding
    assert types(health("Healthy", "Healthy", 85, healthy_streak_days=90, arr=500000.0)) == asks | {
        "advocacy_conversation_task"
    }


def test_top_quartile_with_unused_core_features_opens_an_expansion_conversation():
    top = health("Healthy", "Healthy", 88, share_scoring_higher=0.1, unused_core_features=("Dashboards",))
    assert types(top) == {"expansion_task"}
    [action] = triggered_actions(top, RULES)
    assert "Dashboards" in action.reason and "top" in action.reason


def test_no_expansion_without_unused_features_outside_the_top_quartile_or_while_at_risk():
    assert types(health("Healthy", "Healthy", 88, share_scoring_higher=0.1)) == set()
    assert types(health("Healthy", "Healthy", 70, share_scoring_higher=0.4, unused_core_features=("X",))) == set()
    at_risk_top = health("At Risk", "At Risk", 45, share_scoring_higher=0.0, unused_core_features=("X",))
    assert types(at_risk_top) == set()
    declining = health("Healthy", "Healthy", 88, share_scoring_higher=0.1, unused_core_features=("X",), delta_30=-8.0)
    assert types(declining) == set()


def test_the_reason_tells_a_csm_why_in_words():
    drivers = read_drivers(engine_drivers(down=[("login_frequency", -22.0, 8.0), ("csat", -1.5, 31.0)]))
    account = health("At Risk", "Neutral", 41, delta_30=-18.0, explanation="Logins fell by half since August",
                     drivers=drivers, previous_score=52, previous_date=D - timedelta(days=1))
    [checkin] = [a for a in triggered_actions(account, RULES) if a.action_type == "checkin_task"]
    assert checkin.reason.splitlines() == [
        "Acme [standard (automated)] entered At Risk from Neutral: score 41, down 11 points from 52 on "
        "2026-09-30; down 18 points over 30 days.",
        "Why: Logins fell by half since August.",
        "Pulling the score down: login frequency (-22 points; 8/100 vs similar accounts); "
        "CSAT (-1.5 points; 31/100 vs similar accounts).",
    ]


def test_a_zone_drop_is_told_as_a_drop_even_when_the_month_rose():
    """74 today, 75 yesterday, 73 a month ago: the CSM reads the step down first, then the month."""
    account = health("Neutral", "Healthy", 74, delta_30=1.0, previous_score=75, previous_date=D - timedelta(days=1),
                     explanation="Score 74 (Neutral), held down by: 1 open support ticket")
    [action] = triggered_actions(account, RULES)
    first = action.reason.splitlines()[0]
    assert first == (
        "Acme [standard (automated)] slipped from Healthy to Neutral: score 74, down 1 point from 75 on "
        "2026-09-30; up 1 point over 30 days."
    )
    assert "Why: Score 74 (Neutral), held down by: 1 open support ticket." in action.reason


# ----------------------------------------------------------------------------- anti-fatigue
def past(action_type: str, days_ago: int, status: str = "sent", is_open: bool = False) -> PastAction:
    when = D - timedelta(days=days_ago)
    return PastAction(f"001A:{action_type}:{when}:v1", action_type, when, status, is_open)


def verdicts(account: AccountHealth, history: list[PastAction]) -> dict[str, str | None]:
    return {d.action.action_type: d.suppressed_because for d in decide_for_account(account, history, RULES)}


def test_a_checkin_inside_its_cooldown_is_suppressed_and_after_it_is_not():
    at_risk = health("At Risk", "Neutral", 40)
    assert "cooldown" in verdicts(at_risk, [past("checkin_task", 10)])["checkin_task"]
    assert verdicts(at_risk, [past("checkin_task", 30)])["checkin_task"] is None


def test_a_failed_action_does_not_start_a_cooldown():
    assert verdicts(health("At Risk", "Neutral", 40), [past("checkin_task", 3, "failed")])["checkin_task"] is None


def test_one_open_checkin_per_account_however_old():
    verdict = verdicts(health("At Risk", "Neutral", 40), [past("checkin_task", 60, is_open=True)])
    assert "still open" in verdict["checkin_task"]


def test_already_paused_campaigns_are_not_paused_again():
    verdict = verdicts(health("Critical", "At Risk", 20), [past("campaign_pause", 5, is_open=True)])
    assert "still open" in verdict["campaign_pause"]


def test_recovery_undoes_only_what_is_open():
    recovered = health("Neutral", "At Risk", 60)
    nothing = verdicts(recovered, [])
    assert nothing == {"campaign_resume": "no paused campaigns to resume",
                       "rescue_tasks_complete": "no open rescue tasks to complete"}
    history = [past("campaign_pause", 9, is_open=True), past("checkin_task", 9, is_open=True),
               past("engagement_sequence", 9)]
    decisions = {d.action.action_type: d for d in decide_for_account(recovered, history, RULES)}
    assert decisions["campaign_resume"].related_keys == (history[0].idempotency_key,)
    assert decisions["rescue_tasks_complete"].related_keys == (history[1].idempotency_key,)


def test_backfill_runs_and_dispatch_false_never_dispatch():
    assert outbox.dispatch_allowed("scheduled", True) is True
    assert outbox.dispatch_allowed("manual", True) is True
    assert outbox.dispatch_allowed("backfill", True) is False
    assert outbox.dispatch_allowed("scheduled", False) is False


def test_the_idempotency_key_is_account_action_date_model():
    assert outbox.idempotency_key("001A", "checkin_task", D, "v1") == "001A:checkin_task:2026-10-01:v1"
    assert outbox.email_message_id("k") == outbox.email_message_id("k") != outbox.email_message_id("k2")


# ----------------------------------------------------------------------------- decide on a warehouse
class Warehouse:
    """A migrated warehouse seeded the way extraction and scoring leave it."""

    def __init__(self, url: str) -> None:
        self.engine = engine_for(url)
        with self.engine.begin() as conn:
            conn.execute(insert(raw_sf_user), [
                {"id": "005CSM", "name": "Casey CSM", "email": "casey@vendor.test", "role": "Customer Success Manager",
                 "is_active": True, "is_deleted": False, "extracted_at": NOW},
                {"id": "005VP", "name": "Vera VP", "email": "vera@vendor.test", "role": "VP Customer Success",
                 "is_active": True, "is_deleted": False, "extracted_at": NOW},
                {"id": "005GONE", "name": "Former CSM", "email": "gone@vendor.test", "role": "Customer Success Manager",
                 "is_active": False, "is_deleted": False, "extracted_at": NOW},
            ])
            conn.execute(insert(raw_product_feature), [
                {"feature_key": k, "name": n, "is_core": core, "is_deleted": False, "extracted_at": NOW}
                for k, n, core in [("dash", "Dashboards", True), ("auto", "Automations", True),
                                   ("api", "API", True), ("theme", "Themes", False)]
            ])

    def account(self, key: str, name: str, *, owner: str = "005CSM", plan: str = "growth", arr: float = 20000.0,
                used_features: tuple[str, ...] = ("dash", "auto", "api"), sponsor: bool = True) -> str:
        product = f"p-{key}"
        with self.engine.begin() as conn:
            conn.execute(insert(raw_sf_account).values(
                id=key, name=name, owner_id=owner, plan=plan, arr=arr, product_account_id=product,
                is_deleted=False, extracted_at=NOW))
            conn.execute(insert(account_crosswalk).values(
                account_key=key, account_name=name, product_account_id=product, updated_at=NOW))
            slug = name.lower().replace(" ", "")
            conn.execute(insert(raw_sf_contact), [
                {"id": f"003{key}a", "account_id": key, "first_name": "Ana", "last_name": "Admin",
                 "email": f"ana@{slug}.test", "is_executive_sponsor": False, "is_deleted": False, "extracted_at": NOW},
                {"id": f"003{key}b", "account_id": key, "first_name": "Sam", "last_name": "Sponsor",
                 "email": f"sam@{slug}.test", "is_executive_sponsor": sponsor, "is_deleted": False,
                 "extracted_at": NOW},
            ])
            for feature in used_features:
                conn.execute(insert(raw_product_feature_daily).values(
                    account_id=product, day=D - timedelta(days=3), feature_key=feature, users=3, events=40,
                    extracted_at=NOW))
        return key

    def score(self, key: str, day: date, zone: str, score: int, previous: str | None = None, *,
              model: str = "v1", delta_30: float | None = None, slope_90: float | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(health_scores).values(
                account_key=key, as_of_date=day, model_version=model, score=score, computed_score=score, zone=zone,
                previous_zone=previous, coverage=1.0, delta_30=delta_30, slope_90=slope_90,
                explanation="Active users fell from 40 to 12 in 30 days",
                drivers=engine_drivers(down=[("active_user_ratio", -25.0, 4.0)]),
                computed_at=NOW))

    def outbox(self, **where) -> list:
        query = select(action_outbox).order_by(action_outbox.c.idempotency_key)
        for k, v in where.items():
            query = query.where(action_outbox.c[k] == v)
        with self.engine.connect() as conn:
            return conn.execute(query).fetchall()

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(action_outbox)).scalar()


@pytest.fixture()
def wh(warehouse_url) -> Warehouse:
    """A seeded warehouse, on SQLite and on PostgreSQL."""
    return Warehouse(warehouse_url)


def test_entering_at_risk_writes_a_pending_checkin_due_in_48_hours_with_the_why(wh):
    wh.score(wh.account("001A", "Acme"), D, "At Risk", 41, "Neutral", delta_30=-18.0)
    report = decide_actions(wh.engine, D, "v1", RULES)
    # The decline is driven by engagement (active users): the engagement playbook fires too.
    assert report.by_type == {"checkin_task": 1, "campaign_pause": 1, "enablement_session_task": 1, "training_invite": 1}
    [row] = wh.outbox(action_type="checkin_task")
    assert row.idempotency_key == "001A:checkin_task:2026-10-01:v1"
    assert (row.status, row.target) == ("pending", "salesforce")
    fields = json.loads(row.payload)["fields"]
    assert fields["Subject"] == "Check-in call" and fields["ActivityDate"] == "2026-10-03"
    assert fields["OwnerId"] == "005CSM" and fields["WhatId"] == "001A"
    assert "Active users fell from 40 to 12" in fields["Description"]
    assert "entered At Risk from Neutral" in row.reason
    pause = json.loads(wh.outbox(action_type="campaign_pause")[0].payload)
    assert pause["contacts"] == [{"id": "003001Aa", "email": "ana@acme.test"}, {"id": "003001Ab", "email": "sam@acme.test"}]
    assert pause["programmes"] == ["upsell", "expansion"]


def test_an_account_without_an_active_owner_goes_to_the_default_queue(wh):
    wh.score(wh.account("001B", "Bolt", owner="005GONE"), D, "At Risk", 40, "Healthy")
    decide_actions(wh.engine, D, "v1", RULES)
    fields = json.loads(wh.outbox(action_type="checkin_task")[0].payload)["fields"]
    assert fields["OwnerId"] == RULES.default_queue_user_id and "queue" in fields["Description"]


def test_deciding_the_same_date_twice_inserts_nothing_and_never_resets_a_sent_row(wh):
    wh.score(wh.account("001A", "Acme"), D, "Critical", 20, "At Risk")
    first = decide_actions(wh.engine, D, "v1", RULES)
    with wh.engine.begin() as conn:
        conn.execute(update(action_outbox).where(action_outbox.c.action_type == "executive_slack").values(status="sent"))
    second = decide_actions(wh.engine, D, "v1", RULES)
    assert first.inserted == 5 and second.inserted == 0 and second.already_decided == 5
    assert wh.count() == 5
    assert wh.outbox(action_type="executive_slack")[0].status == "sent"


def test_critical_escalates_to_the_vp_internally_and_only_names_the_customers_sponsor(wh):
    wh.score(wh.account("001A", "Acme"), D, "Critical", 18, "Neutral")
    decide_actions(wh.engine, D, "v1", RULES)
    email = json.loads(wh.outbox(action_type="executive_email")[0].payload)
    assert email["to"] == ["vera@vendor.test"]
    assert "Sam Sponsor (customer contact)" in email["html"]
    assert email["message_id"] == outbox.email_message_id("001A:executive_email:2026-10-01:v1")
    slack = json.loads(wh.outbox(action_type="executive_slack")[0].payload)["text"]
    assert "Vera VP" in slack and "Sam Sponsor" in slack and "Critical" in slack
    review = json.loads(wh.outbox(action_type="emergency_review_task")[0].payload)["fields"]
    assert review["Subject"] == "Emergency review" and review["OwnerId"] == "005VP" and review["WhoId"] == "003001Ab"
    plan = json.loads(wh.outbox(action_type="recovery_plan_task")[0].payload)["fields"]
    assert plan["Subject"] == "Recovery plan" and plan["OwnerId"] == "005CSM"


def test_engagement_sequence_names_unused_core_features_success_stories_and_webinar(wh):
    wh.score(wh.account("001A", "Acme", used_features=("dash", "theme")), D, "Neutral", 65, "Healthy")
    decide_actions(wh.engine, D, "v1", RULES)
    payload = json.loads(wh.outbox(action_type="engagement_sequence")[0].payload)
    assert payload["unused_core_features"] == ["API", "Automations"]
    assert payload["programmes"] == ["engagement"] and payload["success_stories"] and payload["webinar"]


def test_advocacy_after_ninety_healthy_days_happens_once_per_cooldown(wh):
    key = wh.account("001A", "Acme")
    for i in range(100, -1, -1):
        wh.score(key, D - timedelta(days=i), "Healthy", 85, "Healthy")
    wh.score(key, D + timedelta(days=1), "Healthy", 86, "Healthy")
    for rules in (RULES, LIVE):  # in shadow (the shipped default) as when live
        with wh.engine.begin() as conn:
            conn.execute(action_outbox.delete())
        assert decide_actions(wh.engine, D, "v1", rules).by_type == {
            "advocacy_referral": 1, "advocacy_case_study": 1, "advocacy_beta": 1, "advocacy_review": 1}
        tomorrow = decide_actions(wh.engine, D + timedelta(days=1), "v1", rules)
        assert tomorrow.inserted == 0 and all("cooldown" in why for _, _, why in tomorrow.suppressed)


def test_eighty_nine_healthy_days_after_a_neutral_day_is_not_yet_advocacy(wh):
    key = wh.account("001A", "Acme")
    wh.score(key, D - timedelta(days=89), "Neutral", 70, "Healthy")
    for i in range(88, -1, -1):
        wh.score(key, D - timedelta(days=i), "Healthy", 85, "Healthy")
    assert decide_actions(wh.engine, D, "v1", RULES).inserted == 0


def test_top_quartile_expansion_is_ranked_within_the_days_population(wh):
    wh.score(wh.account("001A", "Acme", used_features=("dash",)), D, "Healthy", 92, "Healthy")
    for i, s in enumerate([60, 65, 70, 75, 80, 85, 88]):  # 8 accounts: the top quartile is 92 and 88
        zone = "Healthy" if s >= 75 else "Neutral"
        wh.score(wh.account(f"001P{i}", f"Peer {i}", used_features=()), D, zone, s, zone)
    decide_actions(wh.engine, D, "v1", RULES)
    rows = wh.outbox(action_type="expansion_task")
    assert [r.account_key for r in rows] == ["001A", "001P6"]
    assert "API, Automations" in json.loads(rows[0].payload)["fields"]["Description"]


def test_recovery_withdraws_undelivered_rescue_tasks_and_completes_delivered_ones(wh):
    a = wh.account("001A", "Acme")
    b = wh.account("001B", "Bolt")
    day0, day1 = D - timedelta(days=5), D
    wh.score(a, day0, "At Risk", 40, "Neutral")
    wh.score(b, day0, "At Risk", 40, "Neutral")
    decide_actions(wh.engine, day0, "v1", RULES)
    with wh.engine.begin() as conn:  # Acme's actions were delivered, Bolt's not yet
        conn.execute(update(action_outbox).where(action_outbox.c.account_key == a).values(status="sent"))
    wh.score(a, day1, "Neutral", 60, "At Risk")
    wh.score(b, day1, "Neutral", 60, "At Risk")
    report = decide_actions(wh.engine, day1, "v1", RULES)
    # Bolt's check-in, pause and the engagement playbook's enablement session (a rescue task: the
    # decline is engagement-driven); its training invite is not a rescue and stays due.
    assert report.withdrawn == 3
    assert {r.status for r in wh.outbox(account_key=b, trigger_date=day0) if r.action_type != "training_invite"} == {
        "suppressed"}
    complete = json.loads(wh.outbox(action_type="rescue_tasks_complete")[0].payload)
    assert complete["complete_keys"] == [f"{a}:checkin_task:{day0}:v1", f"{a}:enablement_session_task:{day0}:v1"]
    resume = json.loads(wh.outbox(action_type="campaign_resume")[0].payload)
    assert resume["resume_keys"] == [f"{a}:campaign_pause:{day0}:v1"]
    assert [r.account_key for r in wh.outbox(action_type="campaign_resume")] == [a]


def test_a_backfill_records_its_decisions_as_suppressed(wh):
    wh.score(wh.account("001A", "Acme"), D, "At Risk", 40, "Neutral")
    decide_actions(wh.engine, D, "v1", RULES, deliverable=False)
    assert {r.status for r in wh.outbox()} == {"suppressed"}
    assert outbox.pending_batches(wh.engine, D) == {}


def test_pending_batches_group_keys_by_action_type_for_task_mapping(wh):
    for i in range(3):
        wh.score(wh.account(f"001{i}", f"Co {i}"), D, "At Risk", 40, "Neutral")
    decide_actions(wh.engine, D, "v1", RULES)
    batches = outbox.pending_batches(wh.engine, D, batch_size=2)
    assert batches["checkin_task"] == [["0010:checkin_task:2026-10-01:v1", "0011:checkin_task:2026-10-01:v1"],
                                       ["0012:checkin_task:2026-10-01:v1"]]
    assert outbox.pending_batches(wh.engine, D + timedelta(days=30)) == {}  # stale news is not sent


def test_a_different_model_version_is_decided_separately(wh):
    key = wh.account("001A", "Acme")
    wh.score(key, D, "At Risk", 40, "Neutral")
    wh.score(key, D, "At Risk", 42, "Neutral", model="v2")
    decide_actions(wh.engine, D, "v1", RULES)
    decide_actions(wh.engine, D, "v2", RULES)
    assert {r.model_version for r in wh.outbox(action_type="checkin_task")} == {"v1", "v2"}


def test_replace_keeps_account_health_immutable():
    assert replace(health("Neutral", "Healthy"), score=61).score == 61


def test_no_address_in_the_customers_domain_ever_receives_an_escalation(wh):
    """A configured list that (by mistake) names a customer address loses it; the VP keeps it."""
    rules = replace(RULES, escalation_recipients=("cs-leaders@vendor.test", "sam@acme.test", "boss@acme.test"))
    wh.score(wh.account("001A", "Acme"), D, "Critical", 18, "Neutral")
    decide_actions(wh.engine, D, "v1", rules)
    email = json.loads(wh.outbox(action_type="executive_email")[0].payload)
    assert email["to"] == ["cs-leaders@vendor.test", "vera@vendor.test"]
    assert not any(address.endswith("@acme.test") for address in email["to"])


def test_without_an_internal_recipient_the_escalation_email_is_not_sent_to_anyone_else(wh):
    with wh.engine.begin() as conn:
        conn.execute(update(raw_sf_user).where(raw_sf_user.c.id == "005VP").values(is_active=False))
    wh.score(wh.account("001A", "Acme"), D, "Critical", 18, "Neutral")
    report = decide_actions(wh.engine, D, "v1", RULES)
    assert wh.outbox(action_type="executive_email") == []
    [why] = [w for _, action, w in report.suppressed if action == "executive_email"]
    assert "no internal recipient" in why and "escalation_recipients" in why


def test_names_from_source_systems_are_escaped_in_slack_and_email(wh):
    hostile = "Evil <!channel> & <https://phish.test|Co> <script>x</script>"
    wh.score(wh.account("001A", hostile), D, "Critical", 18, "Neutral")
    decide_actions(wh.engine, D, "v1", RULES)
    slack = json.loads(wh.outbox(action_type="executive_slack")[0].payload)["text"]
    assert "<!channel>" not in slack and "<https://" not in slack and "<script>" not in slack
    assert "Evil &lt;!channel&gt; &amp; &lt;https://phish.test|Co&gt;" in slack
    html = json.loads(wh.outbox(action_type="executive_email")[0].payload)["html"]
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "Evil &lt;!channel&gt; &amp;" in html
