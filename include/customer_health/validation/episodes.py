"""At Risk episodes and what followed them: recovery and churn, for business measurements.

An *episode* starts when an account enters At Risk or Critical from Healthy or Neutral and
ends when it is back in Healthy or Neutral (``health_score_episodes``, kept by the scoring
step; the dashboard's intervention page reads the same table). Two questions are asked of a
set of episodes, always with a horizon H and only of *mature* episodes (begun at least H days
before the date the question is asked on, so every one had the same time to recover):

* **recovery rate** - the share back in Healthy or Neutral within H days of entering (the
  customer-success team's metric in the seeds: "At Risk recovery rate");
* **churn after flagging** - the share of the flagged accounts that churned within H days of
  entering (``validation.outcomes``: a cancelled subscription, a lost renewal).

The monthly review (``customer_health.review``) and the model iteration log
(``validation.iterations``) read these; nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, and_, select

from customer_health.warehouse.io import as_date
from customer_health.warehouse.schema import health_score_episodes, health_scores

DEFAULT_HORIZON_DAYS = 60


def plan_of(segment: str | None) -> str:
    """The plan tier inside a segment label ``model/plan/tenure band`` (``unknown`` without one)."""
    parts = (segment or "").split("/")
    return parts[1] if len(parts) >= 3 else "unknown"


def episodes(conn: Connection, version: str, started_from: date, started_to: date) -> pd.DataFrame:
    """The version's episodes begun in ``[started_from, started_to]``, with the entry score,
    segment, plan and ARR of their first day: columns ``account_key``, ``started``,
    ``recovered_on`` (None while it lasts), ``score``, ``segment``, ``plan``, ``arr``."""
    e = health_score_episodes.c
    h = health_scores.c
    stmt = (
        select(e.account_key, e.started, e.recovered_on, h.score, h.segment, h.arr)
        .select_from(
            health_score_episodes.outerjoin(
                health_scores,
                and_(h.model_version == e.model_version, h.as_of_date == e.started, h.account_key == e.account_key),
            )
        )
        .where(e.model_version == version, e.started >= started_from, e.started <= started_to)
        .order_by(e.started, e.account_key)
    )
    frame = pd.DataFrame(conn.execute(stmt).all(), columns=["account_key", "started", "recovered_on", "score", "segment", "arr"])
    frame["started"] = frame["started"].map(as_date)
    frame["recovered_on"] = frame["recovered_on"].map(as_date)
    frame["plan"] = frame["segment"].map(plan_of)
    return frame


@dataclass(frozen=True)
class Recovery:
    """Recovery of a set of episodes within a horizon, counted over the mature ones."""

    episodes: int  # all episodes of the set
    mature: int  # begun at least ``horizon_days`` before the date asked
    recovered: int  # mature ones back in Healthy or Neutral within the horizon
    horizon_days: int

    @property
    def rate(self) -> float | None:
        """The recovery rate (None without a mature episode)."""
        return self.recovered / self.mature if self.mature else None

    def as_dict(self) -> dict[str, Any]:
        return {"episodes": self.episodes, "mature": self.mature, "recovered": self.recovered,
                "horizon_days": self.horizon_days, "rate": self.rate}  # fmt: skip


def recovered_within(frame: pd.DataFrame, horizon_days: int, as_of: date) -> pd.Series:
    """For each episode: True when it ended within ``horizon_days`` of its start and by ``as_of``."""
    limit = timedelta(days=horizon_days)
    return pd.Series(
        [r is not None and r <= as_of and (r - s) <= limit for s, r in zip(frame["started"], frame["recovered_on"], strict=True)],
        index=frame.index, dtype=bool,
    )  # fmt: skip


def mature_mask(frame: pd.DataFrame, horizon_days: int, as_of: date) -> pd.Series:
    """For each episode: True when it began at least ``horizon_days`` before ``as_of``."""
    cut = as_of - timedelta(days=horizon_days)
    return pd.Series([s <= cut for s in frame["started"]], index=frame.index, dtype=bool)


def recovery(frame: pd.DataFrame, horizon_days: int, as_of: date) -> Recovery:
    """Recovery of the episodes of ``frame`` within ``horizon_days``, as known on ``as_of``."""
    if frame.empty:
        return Recovery(0, 0, 0, horizon_days)
    mature = mature_mask(frame, horizon_days, as_of)
    recovered = recovered_within(frame, horizon_days, as_of) & mature
    return Recovery(len(frame), int(mature.sum()), int(recovered.sum()), horizon_days)


@dataclass(frozen=True)
class ChurnAfterFlag:
    """Accounts flagged (an episode began) and how many churned within the horizon after."""

    flagged: int  # distinct accounts with a mature episode
    churned: int
    horizon_days: int

    @property
    def rate(self) -> float | None:
        return self.churned / self.flagged if self.flagged else None

    def as_dict(self) -> dict[str, Any]:
        return {"flagged": self.flagged, "churned": self.churned, "horizon_days": self.horizon_days, "rate": self.rate}


def churn_after_flag(frame: pd.DataFrame, churn_events: pd.DataFrame, horizon_days: int, as_of: date) -> ChurnAfterFlag:
    """Of the accounts with a mature episode in ``frame``, how many churned in (start, start + H].

    An account flagged twice counts once, from its first mature episode. ``churn_events`` has
    ``account_key`` and ``occurred_on`` (``validation.outcomes``).
    """
    if frame.empty:
        return ChurnAfterFlag(0, 0, horizon_days)
    mature = frame[mature_mask(frame, horizon_days, as_of)]
    first = mature.sort_values("started").drop_duplicates("account_key")
    churn_days: dict[str, list[date]] = {}
    for key, on in zip(churn_events.get("account_key", []), churn_events.get("occurred_on", []), strict=True):
        day = as_date(on)
        if day is not None:
            churn_days.setdefault(key, []).append(day)
    limit = timedelta(days=horizon_days)
    churned = sum(
        1 for key, started in zip(first["account_key"], first["started"], strict=True)
        if any(started < d <= started + limit for d in churn_days.get(key, ()))
    )  # fmt: skip
    return ChurnAfterFlag(len(first), churned, horizon_days)


def month_start(day: date) -> date:
    """The first day of ``day``'s month."""
    return day.replace(day=1)


def month_end(first: date) -> date:
    """The last day of the month that starts on ``first``."""
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def months_back(last: date, count: int) -> list[date]:
    """The first days of ``count`` months ending with ``last``'s month, oldest first."""
    months = [month_start(last)]
    while len(months) < count:
        months.append(month_start(months[-1] - timedelta(days=1)))
    return months[::-1]


def distinct_accounts(frames: Iterable[pd.DataFrame]) -> int:
    """How many accounts appear in any of ``frames``."""
    return len(set().union(*(set(f["account_key"]) for f in frames)))
