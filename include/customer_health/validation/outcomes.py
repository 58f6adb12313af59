"""What actually happened to each account: churn, contraction and expansion, from the raw tables.

The score is graded against these outcomes, so they are derived from the systems of record,
never from the score itself, and stored in ``account_outcomes`` (one row per source event):

* **churn**
  - ``stripe_subscription``: a subscription ended (``canceled_at``, or ``current_period_end``
    when it was canceled at period end - the same rule as the signals' "who is a customer") and
    no other subscription of the account was live just after it, nor started within
    ``replacement_grace_days`` (a plan change or re-subscription is not churn).
  - ``sf_opportunity``: a *Renewal* opportunity closed and not won (Closed Lost), on its
    ``close_date``.
* **contraction** / **expansion**
  - ``stripe_invoice``: the recurring amount (``subtotal - usage_amount``: seats x price,
    without metered usage) of a subscription's invoice fell / rose by at least ``min_change``
    (default 5 %) against the subscription's previous billed invoice. The subscription row only
    holds its *current* quantity, so seat changes are read from the invoices, which keep history.
  - ``sf_opportunity``: an *Expansion* opportunity won, on its ``close_date``.

Every event maps to ``account_key`` through ``account_identity_map`` (Stripe customers; Salesforce
accounts merged into another go through their ``salesforce`` row, else keep their own Id).

Point in time: an outcome is known from its own date (``occurred_on``) on. ``build_outcomes``
keeps only events on or before its ``as_of`` date and replaces the whole table in one
transaction, so a re-run for the same date and data writes exactly the same rows. Deleted
source records (``is_deleted``) are not outcomes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, false, func, or_, select

from customer_health.warehouse.io import as_date
from customer_health.warehouse.schema import (
    account_identity_map,
    account_outcomes,
    raw_sf_opportunity,
    raw_stripe_invoice,
    raw_stripe_subscription,
)

OUTCOMES: tuple[str, ...] = ("churn", "contraction", "expansion")
OUTCOME_COLUMNS = ["account_key", "outcome", "source", "source_id", "occurred_on", "detail"]

DEFAULT_MIN_CHANGE = 0.05
DEFAULT_REPLACEMENT_GRACE_DAYS = 7
# Subscriptions that never started billing cannot churn.
NEVER_STARTED_STATUSES = ("incomplete", "incomplete_expired")
NOT_BILLED_STATUSES = ("void", "draft")


class OutcomeError(ValueError):
    """Outcomes cannot be derived or read with the arguments given."""


def _not_deleted(table) -> Any:
    return or_(table.c.is_deleted.is_(None), table.c.is_deleted == false())


def _json(detail: dict[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, default=str)


# --------------------------------------------------------------------------- churn from Stripe
def _subscriptions(engine: Engine) -> pd.DataFrame:
    s, m = raw_stripe_subscription, account_identity_map
    stmt = (
        select(
            m.c.account_key,
            s.c.id,
            s.c.status,
            s.c.created_at,
            s.c.canceled_at,
            s.c.cancel_at_period_end,
            s.c.current_period_end,
        )
        .select_from(s.join(m, and_(m.c.system == "stripe", m.c.source_id == s.c.customer_id)))
        .where(_not_deleted(s), or_(s.c.status.is_(None), s.c.status.not_in(NEVER_STARTED_STATUSES)))
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    frame = pd.DataFrame(
        [tuple(r) for r in rows],
        columns=["account_key", "id", "status", "created_at", "canceled_at", "cancel_at_period_end", "current_period_end"],
    )
    for col in ("created_at", "canceled_at", "current_period_end"):
        frame[col] = pd.to_datetime(frame[col])
    at_period_end = frame["cancel_at_period_end"].fillna(False).astype(bool) & (
        frame["current_period_end"] > frame["canceled_at"]
    )
    frame["ended_at"] = frame["current_period_end"].where(at_period_end, frame["canceled_at"])
    return frame


def stripe_churn(subscriptions: pd.DataFrame, as_of: date, replacement_grace_days: int) -> list[dict[str, Any]]:
    """Churn events from subscription ends (see the module docstring), known by ``as_of``."""
    events = []
    grace = pd.Timedelta(days=replacement_grace_days)
    for account_key, subs in subscriptions.groupby("account_key", sort=True):
        for sub in subs.itertuples(index=False):
            if pd.isna(sub.ended_at) or sub.ended_at.date() > as_of:
                continue
            others = subs[subs["id"] != sub.id]
            carried_on = others[
                (others["created_at"].isna() | (others["created_at"] <= sub.ended_at + grace))
                & (others["ended_at"].isna() | (others["ended_at"] > sub.ended_at))
            ]
            if len(carried_on):
                continue
            events.append(
                {
                    "account_key": account_key,
                    "outcome": "churn",
                    "source": "stripe_subscription",
                    "source_id": sub.id,
                    "occurred_on": sub.ended_at.date(),
                    "detail": _json(
                        {
                            "status": sub.status,
                            "canceled_at": sub.canceled_at,
                            "ended_at": sub.ended_at,
                            "cancel_at_period_end": bool(sub.cancel_at_period_end) if sub.cancel_at_period_end is not None else None,
                        }
                    ),
                }
            )
    return events


# --------------------------------------------------------------------------- Salesforce opportunities
def _opportunity_outcomes(engine: Engine, as_of: date) -> list[dict[str, Any]]:
    o, m = raw_sf_opportunity, account_identity_map.alias("sf_map")
    account_key = func.coalesce(m.c.account_key, o.c.account_id)
    stmt = (
        select(account_key.label("account_key"), o.c.id, o.c.name, o.c.opportunity_type, o.c.stage, o.c.amount, o.c.close_date, o.c.is_won)
        .select_from(o.outerjoin(m, and_(m.c.system == "salesforce", m.c.source_id == o.c.account_id)))
        .where(
            _not_deleted(o),
            o.c.is_closed.is_(True),
            o.c.close_date.is_not(None),
            o.c.close_date <= as_of,
            or_(
                and_(o.c.opportunity_type == "Renewal", or_(o.c.is_won.is_(None), o.c.is_won == false())),
                and_(o.c.opportunity_type == "Expansion", o.c.is_won.is_(True)),
            ),
        )
        .order_by(o.c.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    events = []
    for r in rows:
        if r.account_key is None:
            continue
        events.append(
            {
                "account_key": r.account_key,
                "outcome": "churn" if r.opportunity_type == "Renewal" else "expansion",
                "source": "sf_opportunity",
                "source_id": r.id,
                "occurred_on": as_date(r.close_date),
                "detail": _json({"name": r.name, "type": r.opportunity_type, "stage": r.stage, "amount": r.amount}),
            }
        )
    return events


# --------------------------------------------------------------------------- Stripe invoices
def _invoice_changes(engine: Engine, as_of: date, min_change: float) -> list[dict[str, Any]]:
    """Contraction/expansion from consecutive billed invoices of each subscription (LAG in SQL)."""
    i, m = raw_stripe_invoice, account_identity_map
    end_of_day = datetime.combine(as_of + timedelta(days=1), datetime.min.time())
    recurring = (i.c.subtotal - func.coalesce(i.c.usage_amount, 0)).label("recurring")
    ordered = (
        select(
            m.c.account_key,
            i.c.id,
            i.c.subscription_id,
            i.c.created_at,
            recurring,
            func.lag(i.c.subtotal - func.coalesce(i.c.usage_amount, 0))
            .over(partition_by=i.c.subscription_id, order_by=(i.c.created_at, i.c.id))
            .label("previous"),
            func.lag(i.c.id).over(partition_by=i.c.subscription_id, order_by=(i.c.created_at, i.c.id)).label("previous_id"),
        )
        .select_from(i.join(m, and_(m.c.system == "stripe", m.c.source_id == i.c.customer_id)))
        .where(
            _not_deleted(i),
            i.c.subscription_id.is_not(None),
            i.c.subtotal.is_not(None),
            or_(i.c.status.is_(None), i.c.status.not_in(NOT_BILLED_STATUSES)),
            i.c.created_at < end_of_day,
        )
        .subquery("ordered")
    )
    stmt = select(ordered).where(ordered.c.previous > 0, ordered.c.recurring > 0).order_by(ordered.c.id)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    events = []
    for r in rows:
        change = r.recurring / r.previous - 1.0
        if abs(change) < min_change:
            continue
        events.append(
            {
                "account_key": r.account_key,
                "outcome": "contraction" if change < 0 else "expansion",
                "source": "stripe_invoice",
                "source_id": r.id,
                "occurred_on": as_date(r.created_at),
                "detail": _json(
                    {
                        "subscription_id": r.subscription_id,
                        "previous_invoice_id": r.previous_id,
                        "previous_recurring_cents": int(r.previous),
                        "recurring_cents": int(r.recurring),
                        "change": round(change, 4),
                    }
                ),
            }
        )
    return events


# --------------------------------------------------------------------------- public API
def derive_outcomes(
    engine: Engine,
    as_of: date,
    *,
    min_change: float = DEFAULT_MIN_CHANGE,
    replacement_grace_days: int = DEFAULT_REPLACEMENT_GRACE_DAYS,
) -> pd.DataFrame:
    """Every outcome known by the end of ``as_of``, as a frame of ``OUTCOME_COLUMNS`` (no writes).

    Sorted by (occurred_on, account_key, outcome, source, source_id): deterministic.
    """
    if isinstance(as_of, datetime) or not isinstance(as_of, date):
        raise OutcomeError(f"as_of must be a datetime.date (the day outcomes are known by), got {as_of!r}")
    if not 0 < min_change < 1:
        raise OutcomeError(f"min_change is {min_change!r}; pass a fraction such as 0.05 (5 %)")
    if replacement_grace_days < 0:
        raise OutcomeError(f"replacement_grace_days is {replacement_grace_days!r}; pass 0 or more days")
    events = [
        *stripe_churn(_subscriptions(engine), as_of, replacement_grace_days),
        *_opportunity_outcomes(engine, as_of),
        *_invoice_changes(engine, as_of, min_change),
    ]
    frame = pd.DataFrame(events, columns=OUTCOME_COLUMNS)
    if frame.empty:
        return frame
    return frame.sort_values(["occurred_on", "account_key", "outcome", "source", "source_id"]).reset_index(drop=True)


@dataclass(frozen=True)
class OutcomeReport:
    """What ``build_outcomes`` wrote: small enough for XCom."""

    as_of: str
    rows: int
    churn: int
    contraction: int
    expansion: int
    churned_accounts: int

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for XCom and logs)."""
        return asdict(self)


def build_outcomes(
    engine: Engine,
    as_of: date,
    *,
    min_change: float = DEFAULT_MIN_CHANGE,
    replacement_grace_days: int = DEFAULT_REPLACEMENT_GRACE_DAYS,
) -> OutcomeReport:
    """Derive the outcomes known by ``as_of`` and replace ``account_outcomes`` with them.

    Idempotent: the table is deleted and rewritten in one transaction, so a re-run with the same
    data writes the same rows, and an outcome that disappeared from the source (a deleted
    opportunity, a re-activated subscription) disappears here too.
    """
    frame = derive_outcomes(engine, as_of, min_change=min_change, replacement_grace_days=replacement_grace_days)
    rows = frame.to_dict("records")
    with engine.begin() as conn:
        conn.execute(account_outcomes.delete())
        if rows:
            conn.execute(account_outcomes.insert(), rows)
    counts = frame["outcome"].value_counts() if len(frame) else pd.Series(dtype=int)
    churned = frame.loc[frame["outcome"] == "churn", "account_key"].nunique() if len(frame) else 0
    return OutcomeReport(
        as_of=as_of.isoformat(),
        rows=len(frame),
        churn=int(counts.get("churn", 0)),
        contraction=int(counts.get("contraction", 0)),
        expansion=int(counts.get("expansion", 0)),
        churned_accounts=int(churned),
    )


def read_outcomes(
    engine: Engine,
    start: date | None = None,
    end: date | None = None,
    outcomes: Iterable[str] = OUTCOMES,
) -> pd.DataFrame:
    """Stored outcomes with ``start <= occurred_on <= end`` (either bound optional)."""
    wanted = list(outcomes)
    unknown = set(wanted) - set(OUTCOMES)
    if unknown:
        raise OutcomeError(f"unknown outcome(s) {sorted(unknown)}; expected some of {list(OUTCOMES)}")
    t = account_outcomes.c
    stmt = select(t.account_key, t.outcome, t.source, t.source_id, t.occurred_on, t.detail).where(t.outcome.in_(wanted))
    if start is not None:
        stmt = stmt.where(t.occurred_on >= start)
    if end is not None:
        stmt = stmt.where(t.occurred_on <= end)
    with engine.connect() as conn:
        rows = conn.execute(stmt.order_by(t.occurred_on, t.account_key, t.outcome, t.source, t.source_id)).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=OUTCOME_COLUMNS)
    frame["occurred_on"] = frame["occurred_on"].map(as_date)
    return frame


def churned_within(
    account_keys: Iterable[str], snapshot: date, horizon_days: int, churn_events: pd.DataFrame
) -> np.ndarray:
    """For each account: True when it has a churn event in ``(snapshot, snapshot + horizon]``.

    ``churn_events`` has ``account_key`` and ``occurred_on`` (e.g. ``read_outcomes(...,
    outcomes=["churn"])``). The window is open at the snapshot date: the score of day T is
    computed from data up to the end of T, so a churn on T itself is not a prediction.
    """
    keys = list(account_keys)
    if churn_events.empty:
        return np.zeros(len(keys), dtype=bool)
    on = churn_events["occurred_on"].map(as_date)
    inside = (on > snapshot) & (on <= snapshot + timedelta(days=horizon_days))
    churners = set(churn_events.loc[inside.to_numpy(), "account_key"])
    return np.array([k in churners for k in keys], dtype=bool)
