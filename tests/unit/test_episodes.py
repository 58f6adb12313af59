"""At Risk episodes: recovery rate and churn after flagging on small frames checked by hand."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from customer_health.validation import episodes as ep

AS_OF = date(2026, 10, 31)
H = 30  # horizon: mature means begun on or before 2026-10-01


def frame(*rows: tuple[str, date, date | None]) -> pd.DataFrame:
    """Episodes as ``episodes()`` returns them (only the columns the measures read)."""
    return pd.DataFrame(rows, columns=["account_key", "started", "recovered_on"])


# A: begun 09-01, back 09-20 (19 days)            mature, recovered
# B: begun 09-01, back 10-15 (44 days > 30)       mature, not recovered within the horizon
# C: begun 09-10, still at risk                   mature, not recovered
# D: begun 10-01, back 10-31 (exactly 30 days)    mature (on the cut day), recovered
# E: begun 10-10, back 10-12                      NOT mature (21 days before AS_OF): not counted
# F: begun 09-05, back 11-02 (after AS_OF)        mature, not recovered (unknown on AS_OF)
EPISODES = frame(
    ("A", date(2026, 9, 1), date(2026, 9, 20)),
    ("B", date(2026, 9, 1), date(2026, 10, 15)),
    ("C", date(2026, 9, 10), None),
    ("D", date(2026, 10, 1), date(2026, 10, 31)),
    ("E", date(2026, 10, 10), date(2026, 10, 12)),
    ("F", date(2026, 9, 5), date(2026, 11, 2)),
)


def test_recovery_counts_only_mature_episodes_back_within_the_horizon():
    rec = ep.recovery(EPISODES, H, AS_OF)
    assert (rec.episodes, rec.mature, rec.recovered) == (6, 5, 2)  # A and D of A, B, C, D, F
    assert rec.rate == pytest.approx(2 / 5)
    assert rec.as_dict() == {"episodes": 6, "mature": 5, "recovered": 2, "horizon_days": H, "rate": pytest.approx(0.4)}


def test_recovered_within_and_mature_mask_per_episode():
    assert list(ep.recovered_within(EPISODES, H, AS_OF)) == [True, False, False, True, True, False]
    assert list(ep.mature_mask(EPISODES, H, AS_OF)) == [True, True, True, True, False, True]


def test_a_longer_horizon_counts_the_slow_recovery_and_fewer_mature_episodes():
    rec = ep.recovery(EPISODES, 45, AS_OF)  # mature: begun on or before 09-16 -> A, B, C, F
    assert (rec.mature, rec.recovered) == (4, 2)  # A (19 days) and B (44 days)


def test_no_episode_or_none_mature_has_no_rate_not_zero():
    assert ep.recovery(frame(), H, AS_OF).rate is None
    young = ep.recovery(frame(("E", date(2026, 10, 20), None)), H, AS_OF)
    assert (young.episodes, young.mature, young.rate) == (1, 0, None)


CHURN = pd.DataFrame(
    [
        ("A", date(2026, 9, 25)),  # 24 days after A's start: within 30 -> churned
        ("B", date(2026, 9, 1)),  # on the day B was flagged: not after it
        ("C", date(2026, 10, 11)),  # 31 days after C's start: outside the horizon
        ("D", date(2026, 10, 31)),  # 30 days after D's start: the last day counts
        ("E", date(2026, 10, 15)),  # E is not mature: not counted at all
        ("Z", date(2026, 9, 15)),  # never flagged
    ],
    columns=["account_key", "occurred_on"],
)


def test_churn_after_flag_counts_churn_in_the_horizon_after_the_start():
    result = ep.churn_after_flag(EPISODES, CHURN, H, AS_OF)
    assert (result.flagged, result.churned) == (5, 2)  # A, B, C, D, F flagged; A and D churned
    assert result.rate == pytest.approx(2 / 5)


def test_an_account_flagged_twice_counts_once_from_its_first_mature_episode():
    twice = frame(("A", date(2026, 8, 1), date(2026, 8, 10)), ("A", date(2026, 9, 1), None))
    churn = pd.DataFrame([("A", date(2026, 9, 10))], columns=["account_key", "occurred_on"])
    # From 08-01 the horizon ends 08-31: the churn on 09-10 is outside it.
    assert ep.churn_after_flag(twice, churn, H, AS_OF).as_dict() == {
        "flagged": 1, "churned": 0, "horizon_days": H, "rate": 0.0,
    }  # fmt: skip


def test_churn_after_flag_without_churn_events_or_episodes():
    empty = pd.DataFrame(columns=["account_key", "occurred_on"])
    assert ep.churn_after_flag(EPISODES, empty, H, AS_OF).as_dict()["churned"] == 0
    assert ep.churn_after_flag(frame(), CHURN, H, AS_OF).rate is None


def test_churn_dates_given_as_timestamps_or_text_are_read_as_days():
    churn = pd.DataFrame(
        [("A", pd.Timestamp("2026-09-25 13:00")), ("D", "2026-10-31")], columns=["account_key", "occurred_on"]
    )
    assert ep.churn_after_flag(EPISODES, churn, H, AS_OF).churned == 2


def test_months_and_plans():
    assert ep.month_start(date(2026, 2, 17)) == date(2026, 2, 1)
    assert ep.month_end(date(2026, 2, 1)) == date(2026, 2, 28)
    assert ep.month_end(date(2028, 2, 1)) == date(2028, 2, 29)
    assert ep.month_end(date(2026, 12, 1)) == date(2026, 12, 31)
    assert ep.months_back(date(2026, 2, 10), 3) == [date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 1)]
    assert ep.plan_of("smb/growth/1-2y") == "growth"
    assert ep.plan_of(None) == "unknown"
    assert ep.plan_of("growth") == "unknown"
