"""CSM overrides: audited, time-boxed, never overwritten by the next run, lapsing at expiry."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from customer_health.scoring.engine import score_accounts
from customer_health.scoring.model_config import load_model_config
from customer_health.scoring.overrides import (
    OverrideError,
    active_overrides,
    create_override,
    revoke_override,
)
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import score_overrides

CONFIG = load_model_config()
CREATED = datetime(2026, 11, 1, 14, 30)


@pytest.fixture()
def engine(sqlite_warehouse_url):
    return engine_for(sqlite_warehouse_url)


def signals(day: date) -> pd.DataFrame:
    data = pd.DataFrame({"account_key": ["A", "B"], "as_of_date": day, "plan": "growth", "tenure_days": 400, "arr": 1.0})
    for key in CONFIG.signal_keys:
        data[key] = np.nan
    data["engagement_trend"] = -0.4  # a weak account: computed score 10
    return data


def test_an_override_applies_from_the_day_it_is_created_until_the_day_before_expiry(engine):
    oid = create_override(engine, "A", 70, "renewal signed yesterday", "csm@example.com", date(2026, 11, 10), now=CREATED)
    assert active_overrides(engine, date(2026, 10, 31)).empty
    assert active_overrides(engine, date(2026, 11, 1))["override_id"].tolist() == [oid]
    assert active_overrides(engine, date(2026, 11, 9))["score"].tolist() == [70]
    assert active_overrides(engine, date(2026, 11, 10)).empty  # lapsed at expiry


def test_the_effective_score_is_the_override_and_the_computed_score_is_kept(engine):
    oid = create_override(engine, "A", 70, "renewal signed yesterday", "csm@example.com", date(2026, 11, 10), now=CREATED)
    day = date(2026, 11, 2)
    scored = score_accounts(signals(day), CONFIG, overrides=active_overrides(engine, day)).set_index("account_key")
    assert (scored.loc["A", "score"], scored.loc["A", "computed_score"], scored.loc["A", "zone"]) == (70, 10, "Neutral")
    assert scored.loc["A", "override_id"] == oid
    assert scored.loc["A", "explanation"].startswith("Score 70 set by csm@example.com until 2026-11-10: renewal signed")
    assert (scored.loc["B", "score"], pd.isna(scored.loc["B", "override_id"])) == (10, True)


def test_after_expiry_the_model_score_comes_back(engine):
    create_override(engine, "A", 70, "renewal signed", "csm@example.com", date(2026, 11, 10), now=CREATED)
    day = date(2026, 11, 12)
    scored = score_accounts(signals(day), CONFIG, overrides=active_overrides(engine, day)).set_index("account_key")
    assert scored.loc["A", "score"] == scored.loc["A", "computed_score"] == 10


def test_revoking_keeps_the_row_for_the_audit_and_stops_the_override_from_then_on(engine):
    oid = create_override(engine, "A", 70, "renewal signed", "csm@example.com", date(2026, 11, 10), now=CREATED)
    revoke_override(engine, oid, "manager@example.com", now=datetime(2026, 11, 3, 9, 0))
    assert not active_overrides(engine, date(2026, 11, 2)).empty  # a rebuild of Nov 2 still sees it
    assert active_overrides(engine, date(2026, 11, 3)).empty
    with engine.connect() as conn:
        row = conn.execute(select(score_overrides)).one()
    assert (row.score, row.revoked_by) == (70, "manager@example.com")


def test_a_second_override_needs_the_first_revoked_or_an_explicit_replace(engine):
    first = create_override(engine, "A", 70, "renewal signed", "csm@example.com", date(2026, 11, 10), now=CREATED)
    with pytest.raises(OverrideError, match=f"already has override #{first}.*revoke it first or pass replace=True"):
        create_override(engine, "A", 60, "second thoughts", "csm@example.com", date(2026, 11, 20), now=CREATED)
    later = datetime(2026, 11, 4, 8, 0)
    second = create_override(engine, "A", 60, "second thoughts", "csm@example.com", date(2026, 11, 20), replace=True, now=later)
    assert active_overrides(engine, date(2026, 11, 5))["override_id"].tolist() == [second]
    with engine.connect() as conn:
        assert len(conn.execute(select(score_overrides)).all()) == 2  # audited: nothing edited away


@pytest.mark.parametrize(
    ("score", "reason", "expires", "message"),
    [
        (101, "x", date(2026, 12, 1), "integer from 0 to 100"),
        (50, " ", date(2026, 12, 1), "needs a reason"),
        (50, "x", date(2026, 10, 1), "choose a future expiry"),
    ],
)
def test_invalid_overrides_are_refused_with_what_to_fix(engine, score, reason, expires, message):
    with pytest.raises(OverrideError, match=message):
        create_override(engine, "A", score, reason, "csm@example.com", expires, now=CREATED)


def test_revoking_twice_is_refused(engine):
    oid = create_override(engine, "A", 70, "renewal signed", "csm@example.com", date(2026, 11, 10), now=CREATED)
    revoke_override(engine, oid, "manager@example.com", now=CREATED)
    with pytest.raises(OverrideError, match="already revoked"):
        revoke_override(engine, oid, "manager@example.com", now=CREATED)
