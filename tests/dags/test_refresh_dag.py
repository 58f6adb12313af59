"""``customer_health_refresh``: bad news logged during the day moves the score the same day.

The daily run scores day D. On D+1 morning an account's contacts answer the NPS survey with 0,
its users open urgent complaint tickets and an invoice fails. The refresh at D+1 12:00 picks
those records up through the real clients, re-scores only that account for D+1 against the
population, decides today's actions for it and delivers them: the account's zone drops and the
CSM gets exactly one check-in task. A second refresh adds nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from customer_health.warehouse import schema as s
from customer_health.warehouse.engine import engine_for
from health_sandbox.ids import salesforce_id, stripe_id
from health_sandbox.store import (
    sandbox_writes,
    sf_account,
    sf_contact,
    sf_nps_response,
    sf_task,
    stripe_invoice,
    zd_ticket,
)
from tests.conftest import TEST_END_DATE

pytestmark = pytest.mark.slow

D = TEST_END_DATE
NEXT = D + timedelta(days=1)
EVENTS_AT = datetime.combine(NEXT, datetime.min.time()) + timedelta(hours=9)  # naive UTC, D+1 09:00


def _daily_logical_date(day) -> datetime:
    """The manual daily run whose data interval is [day, day + 1)."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def _refresh_at(hour: int, minute: int = 0) -> datetime:
    return datetime.combine(NEXT, datetime.min.time(), tzinfo=UTC) + timedelta(hours=hour, minutes=minute)


def _pick_neutral_account(url: str) -> tuple[str, int, str, int, str]:
    """The lowest-scored Neutral account of D that has a Zendesk org and a Stripe customer."""
    with engine_for(url).connect() as conn:
        row = conn.execute(
            select(
                s.health_scores.c.account_key,
                s.health_scores.c.score,
                s.account_crosswalk.c.zendesk_org_id,
                s.account_crosswalk.c.stripe_customer_id,
            )
            .join(s.account_crosswalk, s.account_crosswalk.c.account_key == s.health_scores.c.account_key)
            .where(
                s.health_scores.c.as_of_date == D,
                s.health_scores.c.zone == "Neutral",
                s.account_crosswalk.c.zendesk_org_id.is_not(None),
                s.account_crosswalk.c.stripe_customer_id.is_not(None),
            )
            .order_by(s.health_scores.c.score, s.health_scores.c.account_key)
            .limit(1)
        ).one()
    return row.account_key, row.score, "Neutral", row.zendesk_org_id, row.stripe_customer_id


def _write_bad_news(store, account_key: str, org_id: int, customer_id: str) -> None:
    """NPS 0 from every contact, four urgent open complaints, a failed invoice: all on D+1 morning."""
    unix = int(EVENTS_AT.replace(tzinfo=UTC).timestamp())
    with store.begin() as conn:
        contacts = list(conn.execute(select(sf_contact.c.Id).where(sf_contact.c.AccountId == account_key)).scalars())
        assert contacts, "the chosen account has no contacts to answer the survey"
        for i, contact in enumerate(contacts):
            conn.execute(
                insert(sf_nps_response).values(
                    Id=salesforce_id("NPS_Response__c", 900_000 + i), Account__c=account_key, Contact__c=contact,
                    Score__c=0, Comment__c="Seriously considering alternatives.", Responded_At__c=EVENTS_AT,
                    CreatedDate=EVENTS_AT, SystemModstamp=EVENTS_AT, IsDeleted=False,
                )
            )  # fmt: skip
        conn.execute(
            insert(sf_task).values(
                Id=salesforce_id("Task", 900_000), AccountId=account_key, WhoId=contacts[0], Subject="Sponsor call",
                Type="Call", Status="Completed", ActivityDate=NEXT, Description="Sponsor expressed serious concerns.",
                Executive_Touch__c=True, CreatedDate=EVENTS_AT, SystemModstamp=EVENTS_AT, IsDeleted=False,
            )
        )  # fmt: skip
        next_ticket = conn.execute(select(func.max(zd_ticket.c.id))).scalar_one() + 1
        for i in range(4):
            conn.execute(
                insert(zd_ticket).values(
                    id=next_ticket + i, organization_id=org_id, subject="Outage again - unacceptable",
                    type="problem", priority="urgent", status="open", tags=["complaint"],
                    created_at=EVENTS_AT - timedelta(minutes=30 - i), updated_at=EVENTS_AT - timedelta(minutes=30 - i),
                    reopens=0, replies=1,
                )
            )  # fmt: skip
        conn.execute(
            insert(stripe_invoice).values(
                id=stripe_id("in", 900_000), customer=customer_id, status="open", subtotal=120_000, usage_amount=0,
                amount_due=120_000, amount_paid=0, attempt_count=2, created=unix - 3600, due_date=unix - 3600,
                paid_at=None, period_start=unix - 3600, period_end=unix + 30 * 86400,
            )
        )  # fmt: skip


def _outbox(url: str, account_key: str) -> list[tuple]:
    with engine_for(url).connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(s.action_outbox.c.idempotency_key, s.action_outbox.c.action_type, s.action_outbox.c.status)
                .where(s.action_outbox.c.account_key == account_key, s.action_outbox.c.trigger_date == NEXT)
                .order_by(s.action_outbox.c.idempotency_key)
            )
        ]


def _score(url: str, account_key: str, day) -> tuple[int, str] | None:
    with engine_for(url).connect() as conn:
        row = conn.execute(
            select(s.health_scores.c.score, s.health_scores.c.zone).where(
                s.health_scores.c.account_key == account_key, s.health_scores.c.as_of_date == day
            )
        ).first()
    return None if row is None else (row.score, row.zone)


def _writes(store) -> int:
    with store.connect() as conn:
        return conn.execute(select(func.count()).select_from(sandbox_writes)).scalar_one()


def test_intraday_bad_news_moves_the_zone_and_acts_once(fresh_sandbox, dagbag, dag_env, tmp_path):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    dag_env(fresh_sandbox, url)
    daily = dagbag.dags["customer_health_daily"]
    refresh = dagbag.dags["customer_health_refresh"]
    assert daily.test(logical_date=_daily_logical_date(D)).state == "success"
    account, before, zone_before, org_id, customer_id = _pick_neutral_account(url)

    # A quiet morning: the refresh scores nobody and sends nothing.
    quiet = refresh.test(logical_date=_refresh_at(8))
    assert quiet.state == "success", [(ti.task_id, ti.state) for ti in quiet.get_task_instances()]
    assert _score(url, account, NEXT) is None

    _write_bad_news(fresh_sandbox.store, account, org_id, customer_id)
    writes_before = _writes(fresh_sandbox.store)
    run = refresh.test(logical_date=_refresh_at(12))
    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]

    after, zone_after = _score(url, account, NEXT)
    assert after < before
    assert zone_after != zone_before and zone_after in ("At Risk", "Critical")
    with engine_for(url).connect() as conn:
        refreshed = conn.execute(
            select(func.count()).select_from(s.health_scores).where(s.health_scores.c.as_of_date == NEXT)
        ).scalar_one()
    assert refreshed == 1, "only the account whose data changed is re-scored for D+1"

    actions = _outbox(url, account)
    checkin = [key for key, action_type, _ in actions if action_type == "checkin_task"]
    assert checkin, actions
    assert all(status == "sent" for _, _, status in actions), actions
    with fresh_sandbox.store.connect() as conn:
        tasks = conn.execute(
            select(func.count()).select_from(sf_task).where(sf_task.c.Health_Action_Key__c == checkin[0])
        ).scalar_one()
        crm_zone = conn.execute(select(sf_account.c.Health_Zone__c).where(sf_account.c.Id == account)).scalar_one()
    assert tasks == 1
    assert crm_zone == zone_after, "the Account record in Salesforce shows the new zone the same day"
    assert _writes(fresh_sandbox.store) > writes_before

    # Running the refresh again changes nothing anywhere.
    outbox_once, writes_once = actions, _writes(fresh_sandbox.store)
    again = refresh.test(logical_date=_refresh_at(12, 15))
    assert again.state == "success"
    assert _outbox(url, account) == outbox_once
    assert _writes(fresh_sandbox.store) == writes_once

    # That night the daily run for D+1 recomputes everyone, overwriting the intraday row (same
    # key), and re-decides the account's check-in under the same outbox key: nothing twice.
    assert daily.test(logical_date=_daily_logical_date(NEXT)).state == "success"
    with engine_for(url).connect() as conn:
        per_day = dict(
            conn.execute(
                select(s.health_scores.c.as_of_date, func.count())
                .where(s.health_scores.c.as_of_date.in_([D, NEXT]))
                .group_by(s.health_scores.c.as_of_date)
            ).all()
        )
    assert per_day[NEXT] >= per_day[D] - 2 and per_day[NEXT] > 1
    assert _score(url, account, NEXT) == (after, zone_after), "the intraday score is the daily engine's score"
    assert checkin[0] in [key for key, _, _ in _outbox(url, account)]
    with fresh_sandbox.store.connect() as conn:
        assert conn.execute(
            select(func.count()).select_from(sf_task).where(sf_task.c.Health_Action_Key__c == checkin[0])
        ).scalar_one() == 1
