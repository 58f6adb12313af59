"""Health segments kept in sync with Salesforce Campaigns across two days of a scored company.

A private copy of the scored company (``tests/scored_company.py``: extracted, scored and acted on
by the real code) and of its sandbox. Its segments are synced for two real dates 44 days apart,
through ``pipeline.sync_segments`` as the daily DAG's task runs it, and the test reads what
marketing sees in Salesforce: the CampaignMembers of the segment campaigns and the Status of
the upsell offers' members.
"""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from customer_health import pipeline
from customer_health.actions.config import load_action_rules
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import health_scores, raw_sf_contact, segment_syncs
from health_sandbox.connections import as_environment, sandbox_connections
from health_sandbox.server import Sandbox
from health_sandbox.store import sandbox_writes, sf_campaign, sf_campaign_member, sf_contact

RULES = load_action_rules()


@pytest.fixture()
def company(scored_company, tmp_path, monkeypatch):
    folder = tmp_path / "sandbox"
    folder.mkdir()
    for item in scored_company.sandbox.folder.iterdir():
        if item.name in ("company.db", "product.db") or item.name.startswith("sandbox-"):
            shutil.copy(item, folder / item.name)
    shutil.copy(scored_company.warehouse_url.removeprefix("sqlite:///"), tmp_path / "warehouse.db")
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    sandbox = Sandbox.start(folder)
    for key, value in as_environment(sandbox_connections(sandbox.endpoints, url)).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CUSTOMER_HEALTH_WAREHOUSE_URL", url)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    engine_for.cache_clear()
    yield sandbox, engine_for(url), scored_company
    sandbox.stop()
    engine_for.cache_clear()


def members(sandbox, campaign: str) -> set[str]:
    """The contact Ids that are members of the named campaign, as Salesforce holds them."""
    with sandbox.store.connect() as conn:
        cid = conn.execute(select(sf_campaign.c.Id).where(sf_campaign.c.Name == campaign)).scalar_one()
        return set(conn.execute(select(sf_campaign_member.c.ContactId).where(
            sf_campaign_member.c.CampaignId == cid, sf_campaign_member.c.IsDeleted.isnot(True))).scalars())


def expected(engine, day, version: str, holds) -> set[str]:
    """The contacts (with an e-mail) of the accounts whose score and zone on ``day`` satisfy ``holds``."""
    with engine.connect() as conn:
        accounts = {r.account_key for r in conn.execute(select(health_scores).where(
            health_scores.c.as_of_date == day, health_scores.c.model_version == version)) if holds(r.score, r.zone)}
        return {r.id for r in conn.execute(select(raw_sf_contact).where(
            raw_sf_contact.c.account_id.in_(accounts), raw_sf_contact.c.is_deleted.is_(False),
            raw_sf_contact.c.email.is_not(None)))}  # fmt: skip


def test_segments_follow_the_scores_day_by_day_and_a_rerun_changes_nothing(company):
    sandbox, engine, scored = company
    version = pipeline.active_model_config().version
    day1, day2 = scored.first_action_date, scored.as_of
    advocates, nurture, suppression = (RULES.segments[n] for n in ("advocates", "nurture", "suppression"))

    first = pipeline.sync_segments(day1, "scheduled", True)
    assert set(first["segments"]) == {"advocates", "nurture", "suppression"}
    assert members(sandbox, "Health - Referral and case study candidates") == expected(engine, day1, version, advocates.holds)
    assert members(sandbox, "Health - Engagement nurture") == expected(engine, day1, version, nurture.holds)
    assert members(sandbox, "Health - Suppression (At Risk)") == expected(engine, day1, version, suppression.holds)
    assert expected(engine, day1, version, advocates.holds), "no 90+ account on the first day: the test proves nothing"

    # A marketer adds someone to the suppression campaign by hand: the product must never remove them.
    with engine.connect() as conn:
        outsider = conn.execute(select(raw_sf_contact.c.id).where(
            raw_sf_contact.c.id.not_in(expected(engine, day2, version, suppression.holds)),
            raw_sf_contact.c.email.is_not(None)).order_by(raw_sf_contact.c.id)).scalars().first()  # fmt: skip
    with sandbox.store.begin() as conn:
        cid = conn.execute(select(sf_campaign.c.Id).where(sf_campaign.c.Name == "Health - Suppression (At Risk)")).scalar()
        conn.execute(insert(sf_campaign_member).values(Id="00vMARKETER000001AAA"[:18], CampaignId=cid,
                                                       ContactId=outsider, Status="Sent", HasResponded=False,
                                                       IsDeleted=False))  # fmt: skip

    second = pipeline.sync_segments(day2, "scheduled", True)
    changes = {n: (c["added"], c["removed"]) for n, c in second["segments"].items()}
    assert any(added or removed for added, removed in changes.values()), changes
    assert members(sandbox, "Health - Referral and case study candidates") == expected(engine, day2, version, advocates.holds)
    assert members(sandbox, "Health - Engagement nurture") == expected(engine, day2, version, nurture.holds)
    assert members(sandbox, "Health - Suppression (At Risk)") == expected(engine, day2, version, suppression.holds) | {outsider}

    # No upsell while nurtured: every nurtured contact's upsell membership is paused, and only theirs
    # (or one an At Risk pause of the daily actions holds).
    with sandbox.store.connect() as conn:
        cid = conn.execute(select(sf_campaign.c.Id).where(sf_campaign.c.Name == "Upsell - Seat Add-on Offer")).scalar()
        upsell = {r.ContactId: r.Status for r in conn.execute(select(sf_campaign_member).where(
            sf_campaign_member.c.CampaignId == cid, sf_campaign_member.c.IsDeleted.isnot(True)))}  # fmt: skip
    nurtured = expected(engine, day2, version, nurture.holds)
    assert all(upsell[c] == "Paused" for c in nurtured if c in upsell)
    assert any(c in upsell for c in nurtured), "no nurtured contact is on the upsell offer: the test proves nothing"

    # Once per date: a re-run of day 2 and a late run of day 1 change nothing.
    with sandbox.store.connect() as conn:
        writes = conn.execute(select(sandbox_writes)).fetchall()
    again = pipeline.sync_segments(day2, "scheduled", True)
    older = pipeline.sync_segments(day1, "scheduled", True)
    assert all("already synced" in s["skipped"] for s in [*again["segments"].values(), *older["segments"].values()])
    with sandbox.store.connect() as conn:
        assert conn.execute(select(sandbox_writes)).fetchall() == writes
    with engine.connect() as conn:
        assert {(r.segment, r.status) for r in conn.execute(select(segment_syncs).where(segment_syncs.c.as_of_date == day2))} == {
            ("advocates", "done"), ("nurture", "done"), ("suppression", "done")}
    with sandbox.store.connect() as conn:
        assert conn.execute(select(sf_contact.c.Id).where(sf_contact.c.Id == outsider)).scalar() == outsider


def test_backfills_and_dates_without_scores_sync_nothing(company):
    sandbox, engine, scored = company
    assert "skipped" in pipeline.sync_segments(scored.as_of, "backfill", True)
    assert "skipped" in pipeline.sync_segments(scored.as_of, "scheduled", False)
    assert "no v1 scores" in pipeline.sync_segments(scored.as_of + timedelta(days=30), "scheduled", True)["skipped"]
    with engine.connect() as conn:
        assert conn.execute(select(segment_syncs)).fetchall() == []
