"""Point-in-time health signals: each customer's raw signal values as of a date D.

``compute_signals(engine, D)`` reads only the warehouse's raw tables, the account crosswalk and
the identity map, and returns one row per account that is a customer at D with one float column
per signal of ``signal_catalog.SIGNALS`` (NaN: no data). ``signal_store.write_signal_frame`` stores
that frame in ``signal_values`` (one row per account and date, overwritten on re-run).

How the computation is shaped
-----------------------------
* **Push-down.** Every heavy aggregation is a ``GROUP BY account_key`` in SQL (SQLAlchemy Core,
  bound parameters only, the same statements on SQLite and PostgreSQL): product usage, tickets,
  invoices, NPS, tasks. Python sees one row per account per source family, and finishes the
  ratios with vectorized pandas.
* **Identity.** Zendesk organizations, Stripe customers and product accounts reach their account
  through ``account_identity_map``, so several source records mapped onto one account all count.
  Salesforce child records (tasks, NPS) carry the Account Id; they go through the map too when it
  holds a ``salesforce`` row for that Id (merged duplicates), else they keep their own Id.
* **Point in time.** "End of D" is ``D + 1 day 00:00`` (naive UTC). Every fact is filtered by its
  own stamp: ``created_at``/``solved_at``/``paid_at``/``responded_at`` before the end of D,
  ``activity_date``/``day`` on or before D. The raw tables hold records' *current* state, so an
  invoice paid after D counts as unpaid at D, a ticket solved after D as open at D, and a record
  deleted after D (``is_deleted`` with ``source_updated_at`` after D) as still present at D.
  Fields whose history the sources do not keep (ticket priority and reopens, task status and
  outreach reply flag, the plan on the Account) are read as they are now; see "Known limits".

Who is a customer at D
----------------------
An account (a live ``raw_sf_account`` row) is a customer at D when ``customer_since <= D`` and it
has not churned by the end of D. It has churned when it has at least one Stripe subscription that
ended by the end of D and none that was live at the end of D. A subscription ends at
``canceled_at``, or at ``current_period_end`` when it was canceled "at period end" (Stripe's
``canceled_at`` is then the time of the request, not the end). Accounts without any Stripe
subscription are judged by ``customer_since`` alone (invoiced outside Stripe).

Seats and ARR as of D
---------------------
From the subscriptions live at D and each one's latest license invoice as of D (not void or
draft, with a recurring part; usage-only invoices of annual contracts are skipped): the
recurring amount is ``subtotal - usage_amount`` (Stripe's subtotal includes the metered-usage
line), seats are ``recurring / unit_amount`` (rounded, summed over subscriptions) and ARR is the
recurring amount times the billing periods per year, in currency units. When Stripe has nothing,
the Account's ``seats`` and ``arr`` fields are used.

Missing data (NaN) versus zero
------------------------------
* Engagement signals are NaN for an account without a product account (existing at D) mapped to
  it; with one, no usage in the window is a real zero.
* ``open_tickets`` and ``severity_mix`` are 0 without tickets (no Zendesk organization means no
  tickets). The other support ratios are NaN when their denominator is empty.
* Financial ratios are NaN without invoices in their window; ``payment_failures`` is NaN for an
  account with no Stripe customer (existing at D), else a count.
* Every trend (fractional change ``current / baseline - 1``) is NaN when the baseline is zero or
  missing, or when the account was not yet a customer when the baseline window began.
* ``exec_sponsor_recency``: days since the last executive-sponsor touch, capped at 365. An account
  never touched scores the days it has been a customer (capped at 365): "never, in the 40 days we
  have had them" is honest, and the gap is a real relationship risk, so it is not left NaN for the
  scoring engine to reweight away.

Known limits
------------
``payment_failures`` counts an invoice unpaid and past due at D as a failure (its attempt
history at D is not kept); an invoice paid by D counts when it took more than one attempt.
An outreach reply counts only when the task was last modified by the end of D (a task edited
after D for another reason loses its reply for D: the conservative side). Ticket priority,
reopen counts, task status, the Account's plan and owner are current values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    ColumnElement,
    Date,
    Engine,
    Float,
    Integer,
    Select,
    String,
    and_,
    case,
    cast,
    distinct,
    extract,
    false,
    func,
    null,
    or_,
    select,
    true,
)
from sqlalchemy.sql.expression import CTE

from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.warehouse.schema import (
    account_crosswalk,
    account_identity_map,
    raw_product_account,
    raw_product_feature,
    raw_product_feature_daily,
    raw_product_usage_daily,
    raw_sf_account,
    raw_sf_nps_response,
    raw_sf_task,
    raw_stripe_customer,
    raw_stripe_dispute,
    raw_stripe_invoice,
    raw_stripe_subscription,
    raw_zd_satisfaction_rating,
    raw_zd_ticket,
)

ACCOUNT_COLUMNS: tuple[str, ...] = (
    "account_key",
    "as_of_date",
    "plan",
    "seats",
    "arr",
    "customer_since",
    "tenure_days",
    "parent_account_key",
    "owner_id",
)
"""The columns before the signals, in order."""

SIGNAL_COLUMNS: tuple[str, ...] = tuple(SIGNALS)
"""One float column per catalog signal, in catalog order."""

# Trend sub-windows: "current" is the most recent part of the signal's window, "baseline" the
# rest of it (engagement_trend: 30 days against days 31-90; the 180-day trends: 90 against 90).
ENGAGEMENT_TREND_CURRENT_DAYS = 30
HALF_YEAR_TREND_CURRENT_DAYS = 90
# A median of one or two resolution times swings with a single ticket; below this many solved
# tickets in either quarter the resolution trend is NaN.
MIN_SOLVED_TICKETS_FOR_TREND = 3
EXEC_RECENCY_CAP_DAYS = 365
INVOICE_STATUSES_NOT_BILLED = ("void", "draft")
HIGH_PRIORITIES = ("high", "urgent")
# Salesforce task statuses that mean the activity has not happened yet.
OPEN_TASK_STATUSES = ("Not Started", "In Progress", "Waiting on someone else", "Deferred")
# Large shards are filtered in pandas: SQLite caps bound parameters per statement at 32766.
_MAX_KEYS_IN_SQL = 10_000
_WRITE_CHUNK_ROWS = 5_000


@dataclass(frozen=True)
class _AsOf:
    """The as-of date D and the instants derived from it."""

    day: date

    @property
    def end(self) -> datetime:
        """The end of D (exclusive): D + 1 day at 00:00, naive UTC."""
        return datetime.combine(self.day + timedelta(days=1), time())

    def first_day(self, window_days: int) -> date:
        """The first day of the ``window_days``-day window ending on D (inclusive)."""
        return self.day - timedelta(days=window_days - 1)

    def start(self, window_days: int) -> datetime:
        """The first instant of the ``window_days``-day window ending at the end of D."""
        return datetime.combine(self.first_day(window_days), time())

    def shifted(self, days: int) -> _AsOf:
        """The same view, ``days`` earlier."""
        return _AsOf(self.day - timedelta(days=days))


# --------------------------------------------------------------------------- SQL building blocks
def _existed(table: Any, as_of: _AsOf) -> ColumnElement[bool]:
    """The record was present at the end of D: not deleted, or deleted only after D."""
    return or_(table.c.is_deleted == false(), table.c.source_updated_at >= as_of.end)


def _before_end(stamp: ColumnElement[Any], as_of: _AsOf) -> ColumnElement[bool]:
    """``stamp < end of D`` for filters that keep nearly a whole table ("everything created so
    far"). COALESCE hides the column from SQLite's planner, which would otherwise walk the
    timestamp index over almost every row (several times slower than a scan); NULL stays out."""
    return func.coalesce(stamp, as_of.end) < as_of.end


def _billed(invoice: Any) -> ColumnElement[bool]:
    """The invoice was issued (not a draft, not voided); a missing status counts as issued."""
    return or_(invoice.c.status.is_(None), invoice.c.status.not_in(INVOICE_STATUSES_NOT_BILLED))


def _weekday(day_column: ColumnElement[Any], dialect: str) -> ColumnElement[bool]:
    """True on Monday-Friday. Day-of-week extraction is the one dialect-specific piece."""
    if dialect == "sqlite":
        dow = cast(func.strftime("%w", day_column), Integer)
    else:
        dow = extract("dow", day_column)
    return dow.between(1, 5)


def _day_of(stamp: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """The calendar day of a timestamp (SQLite's CAST AS DATE would keep only the year)."""
    if dialect == "sqlite":
        return func.date(stamp)
    return cast(stamp, Date)


def _accounts(as_of: _AsOf, account_keys: Sequence[str] | None) -> CTE:
    """Accounts that could be customers at D (customer_since <= D): the join target of every query.

    Churn is decided afterwards, in Python, from ``_subscription_state``; aggregating a few
    churned accounts too costs less than repeating the churn rule in every statement.
    """
    sf = raw_sf_account
    stmt = select(sf.c.id.label("account_key"), sf.c.customer_since).where(
        sf.c.customer_since <= as_of.day, _existed(sf, as_of)
    )
    if account_keys is not None and len(account_keys) <= _MAX_KEYS_IN_SQL:
        stmt = stmt.where(sf.c.id.in_(list(account_keys)))
    return stmt.cte("accounts")


def _mapping(system: str) -> Any:
    """An alias of the identity map for one source system."""
    return account_identity_map.alias(f"map_{system}")


def _salesforce_owner(table: Any) -> tuple[Any, ColumnElement[str]]:
    """(map alias, account key expression) for a Salesforce child table with ``account_id``."""
    m = _mapping("salesforce")
    return m, func.coalesce(m.c.account_key, table.c.account_id)


def _sf_join(table: Any, m: Any) -> Any:
    return table.outerjoin(m, and_(m.c.system == "salesforce", m.c.source_id == table.c.account_id))


def _fractional_change(current: pd.Series, baseline: pd.Series) -> pd.Series:
    """``current / baseline - 1``; NaN where the baseline is missing or zero (no reference)."""
    base = baseline.astype(float)
    return (current.astype(float) / base.where(base > 0)) - 1.0


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """``numerator / denominator``; NaN where the denominator is missing or zero."""
    den = denominator.astype(float)
    return numerator.astype(float) / den.where(den > 0)


# --------------------------------------------------------------------------- queries, per source
def _account_attributes(as_of: _AsOf, accounts: CTE) -> Select:
    sf, cw = raw_sf_account, account_crosswalk
    return (
        select(
            sf.c.id.label("account_key"),
            sf.c.plan,
            sf.c.seats.label("sf_seats"),
            sf.c.arr.label("sf_arr"),
            sf.c.customer_since,
            func.coalesce(cw.c.parent_account_key, sf.c.parent_id).label("parent_account_key"),
            sf.c.owner_id,
        )
        .select_from(sf.join(accounts, accounts.c.account_key == sf.c.id).outerjoin(cw, cw.c.account_key == sf.c.id))
    )


def _subscription_end() -> ColumnElement[Any]:
    """When a subscription stops (NULL: not canceled); see the module docstring."""
    s = raw_stripe_subscription
    return case(
        (s.c.canceled_at.is_(None), null()),
        (
            and_(s.c.cancel_at_period_end == true(), s.c.current_period_end > s.c.canceled_at),
            s.c.current_period_end,
        ),
        else_=s.c.canceled_at,
    )


def _subscription_state(as_of: _AsOf, accounts: CTE) -> Select:
    """Per account: subscriptions ended by the end of D, and subscriptions live at the end of D."""
    s, m = raw_stripe_subscription, _mapping("stripe")
    ended_at = _subscription_end()
    return (
        select(
            m.c.account_key,
            func.sum(case((ended_at < as_of.end, 1), else_=0)).label("subs_ended"),
            func.sum(case((or_(ended_at.is_(None), ended_at >= as_of.end), 1), else_=0)).label("subs_live"),
        )
        .select_from(
            s.join(m, and_(m.c.system == "stripe", m.c.source_id == s.c.customer_id)).join(
                accounts, accounts.c.account_key == m.c.account_key
            )
        )
        .where(s.c.created_at < as_of.end, _existed(s, as_of))
        .group_by(m.c.account_key)
    )


def _contract_lines(as_of: _AsOf, accounts: CTE) -> Select:
    """One row per subscription live at the end of D, with its latest invoice as of D."""
    s, i, m = raw_stripe_subscription, raw_stripe_invoice, _mapping("stripe")
    ended_at = _subscription_end()
    latest = (
        select(
            i.c.subscription_id,
            (i.c.subtotal - func.coalesce(i.c.usage_amount, 0)).label("recurring_cents"),
            func.row_number()
            .over(partition_by=i.c.subscription_id, order_by=(i.c.created_at.desc(), i.c.id.desc()))
            .label("recency"),
        )
        .where(
            _before_end(i.c.created_at, as_of),
            i.c.subscription_id.is_not(None),
            # Usage-only invoices (metered usage billed in arrears between annual license
            # invoices) say nothing about the contract: the latest *license* invoice does.
            i.c.subtotal - func.coalesce(i.c.usage_amount, 0) > 0,
            _billed(i),
            _existed(i, as_of),
        )
        .subquery("latest_invoice")
    )
    return (
        select(
            m.c.account_key,
            latest.c.recurring_cents,
            s.c.unit_amount,
            s.c.interval,
        )
        .select_from(
            s.join(m, and_(m.c.system == "stripe", m.c.source_id == s.c.customer_id))
            .join(accounts, accounts.c.account_key == m.c.account_key)
            .join(latest, and_(latest.c.subscription_id == s.c.id, latest.c.recency == 1))
        )
        .where(
            s.c.created_at < as_of.end,
            or_(ended_at.is_(None), ended_at >= as_of.end),
            _existed(s, as_of),
        )
    )


def _product_presence(as_of: _AsOf, accounts: CTE) -> Select:
    """Accounts with at least one product account mapped to them that existed at D."""
    m, p = _mapping("product"), raw_product_account
    return (
        select(m.c.account_key)
        .distinct()
        .select_from(
            m.join(accounts, accounts.c.account_key == m.c.account_key).outerjoin(p, p.c.id == m.c.source_id)
        )
        .where(m.c.system == "product", or_(p.c.created_at.is_(None), p.c.created_at < as_of.end))
    )


def _product_usage(as_of: _AsOf, accounts: CTE, dialect: str) -> Select:
    """Logins and active users per account over the engagement windows (days on or after
    customer_since only: trial usage before the contract is not customer engagement)."""
    u, m = raw_product_usage_daily, _mapping("product")
    login_start = as_of.first_day(SIGNALS["login_frequency"].window_days)
    depth_start = as_of.first_day(SIGNALS["feature_depth"].window_days)
    current_start = as_of.first_day(ENGAGEMENT_TREND_CURRENT_DAYS)
    oldest = as_of.first_day(SIGNALS["engagement_trend"].window_days)
    recent = u.c.day >= login_start
    return (
        select(
            m.c.account_key,
            func.sum(case((recent, u.c.logins), else_=0)).label("logins_login_window"),
            func.sum(case((and_(recent, _weekday(u.c.day, dialect)), u.c.active_users), else_=0)).label(
                "weekday_active_users"
            ),
            func.sum(case((u.c.day >= depth_start, u.c.active_users), else_=0)).label("active_user_days"),
            func.sum(case((u.c.day >= current_start, u.c.logins), else_=0)).label("logins_current"),
            func.sum(case((u.c.day < current_start, u.c.logins), else_=0)).label("logins_baseline"),
        )
        .select_from(
            u.join(m, and_(m.c.system == "product", m.c.source_id == u.c.account_id)).join(
                accounts, accounts.c.account_key == m.c.account_key
            )
        )
        .where(u.c.day >= oldest, u.c.day <= as_of.day, u.c.day >= accounts.c.customer_since)
        .group_by(m.c.account_key)
    )


def _core_feature_usage(as_of: _AsOf, accounts: CTE) -> Select:
    """Distinct core features used and core-feature events per account over the feature window."""
    fd, f, m = raw_product_feature_daily, raw_product_feature, _mapping("product")
    start = as_of.first_day(SIGNALS["feature_breadth"].window_days)
    return (
        select(
            m.c.account_key,
            func.count(distinct(case((fd.c.events > 0, fd.c.feature_key)))).label("core_features_used"),
            func.sum(fd.c.events).label("core_events"),
        )
        .select_from(
            fd.join(m, and_(m.c.system == "product", m.c.source_id == fd.c.account_id))
            .join(accounts, accounts.c.account_key == m.c.account_key)
            .join(f, and_(f.c.feature_key == fd.c.feature_key, f.c.is_core == true(), _existed(f, as_of)))
        )
        .where(fd.c.day >= start, fd.c.day <= as_of.day, fd.c.day >= accounts.c.customer_since)
        .group_by(m.c.account_key)
    )


def _core_feature_count(as_of: _AsOf) -> Select:
    f = raw_product_feature
    return select(func.count()).select_from(f).where(f.c.is_core == true(), _existed(f, as_of))


def _zendesk_join(table: Any, org_column: Any, accounts: CTE) -> tuple[Any, Any]:
    """Join a Zendesk table to its account; Zendesk ids are integers, the map holds strings."""
    m = _mapping("zendesk")
    joined = table.join(m, and_(m.c.system == "zendesk", m.c.source_id == cast(org_column, String))).join(
        accounts, accounts.c.account_key == m.c.account_key
    )
    return joined, m


def _ticket_counts(as_of: _AsOf, accounts: CTE) -> Select:
    """Open tickets at D and the ticket counts behind the support ratios."""
    t = raw_zd_ticket
    joined, m = _zendesk_join(t, t.c.organization_id, accounts)
    start_sev = as_of.start(SIGNALS["severity_mix"].window_days)
    start_half = as_of.start(SIGNALS["howto_complaint_ratio"].window_days)
    solved_by_d = and_(t.c.solved_at >= start_half, t.c.solved_at < as_of.end)
    created_recent = t.c.created_at >= start_sev
    created_half = t.c.created_at >= start_half
    # A ticket solved/closed without a solved_at is a data gap, not a ticket open forever.
    open_at_d = or_(
        t.c.solved_at >= as_of.end,
        and_(t.c.solved_at.is_(None), or_(t.c.status.is_(None), t.c.status.not_in(("solved", "closed")))),
    )
    return (
        select(
            m.c.account_key,
            func.sum(case((open_at_d, 1), else_=0)).label("open_tickets"),
            func.sum(case((created_recent, 1), else_=0)).label("tickets_recent"),
            func.sum(case((and_(created_recent, t.c.priority.in_(HIGH_PRIORITIES)), 1), else_=0)).label(
                "tickets_recent_high"
            ),
            func.sum(case((and_(created_half, t.c.category == "how_to"), 1), else_=0)).label("how_to"),
            func.sum(case((and_(created_half, t.c.category == "complaint"), 1), else_=0)).label("complaint"),
            func.sum(case((solved_by_d, 1), else_=0)).label("solved_half"),
            func.sum(case((solved_by_d, func.coalesce(t.c.reopens, 0)), else_=0)).label("reopens_half"),
        )
        .select_from(joined)
        .where(
            _before_end(t.c.created_at, as_of),
            # Tickets solved before the oldest window can neither be open nor counted: skip them.
            or_(t.c.solved_at.is_(None), t.c.solved_at >= start_half),
            _existed(t, as_of),
        )
        .group_by(m.c.account_key)
    )


def _resolution_medians(as_of: _AsOf, accounts: CTE) -> Select:
    """Median full-resolution minutes of tickets solved in the current and the prior quarter.

    The median is computed in SQL with window functions (portable; no PERCENTILE_CONT on SQLite):
    rank each period's resolution times, keep the middle one or two, average them.
    """
    t = raw_zd_ticket
    joined, m = _zendesk_join(t, t.c.organization_id, accounts)
    current_start = as_of.start(HALF_YEAR_TREND_CURRENT_DAYS)
    period = case((t.c.solved_at >= current_start, "current"), else_="baseline").label("period")
    ranked = (
        select(
            m.c.account_key,
            period,
            t.c.full_resolution_minutes.label("minutes"),
            func.row_number()
            .over(partition_by=(m.c.account_key, period), order_by=(t.c.full_resolution_minutes, t.c.id))
            .label("position"),
            func.count().over(partition_by=(m.c.account_key, period)).label("solved"),
        )
        .select_from(joined)
        .where(
            t.c.solved_at >= as_of.start(SIGNALS["resolution_time_trend"].window_days),
            t.c.solved_at < as_of.end,
            t.c.full_resolution_minutes.is_not(None),
            _existed(t, as_of),
        )
        .subquery("ranked")
    )
    middle = ranked.c.position.in_([(ranked.c.solved + 1) // 2, (ranked.c.solved + 2) // 2])
    return (
        select(
            ranked.c.account_key,
            ranked.c.period,
            cast(func.avg(ranked.c.minutes), Float).label("median_minutes"),
            func.max(ranked.c.solved).label("solved"),
        )
        .where(middle)
        .group_by(ranked.c.account_key, ranked.c.period)
    )


def _satisfaction(as_of: _AsOf, accounts: CTE) -> Select:
    r, t = raw_zd_satisfaction_rating, raw_zd_ticket
    org = func.coalesce(r.c.organization_id, t.c.organization_id)
    m = _mapping("zendesk")
    joined = (
        r.outerjoin(t, t.c.id == r.c.ticket_id)
        .join(m, and_(m.c.system == "zendesk", m.c.source_id == cast(org, String)))
        .join(accounts, accounts.c.account_key == m.c.account_key)
    )
    return (
        select(
            m.c.account_key,
            func.sum(case((r.c.score == "good", 1), else_=0)).label("ratings_good"),
            func.sum(case((r.c.score == "bad", 1), else_=0)).label("ratings_bad"),
        )
        .select_from(joined)
        .where(
            r.c.created_at >= as_of.start(SIGNALS["csat"].window_days),
            r.c.created_at < as_of.end,
            _existed(r, as_of),
        )
        .group_by(m.c.account_key)
    )


def _stripe_presence(as_of: _AsOf, accounts: CTE) -> Select:
    """Accounts with a Stripe customer (existing at D) mapped to them."""
    m, c = _mapping("stripe"), raw_stripe_customer
    return (
        select(m.c.account_key)
        .distinct()
        .select_from(
            m.join(accounts, accounts.c.account_key == m.c.account_key).outerjoin(c, c.c.id == m.c.source_id)
        )
        .where(m.c.system == "stripe", or_(c.c.created_at.is_(None), c.c.created_at < as_of.end))
    )


def _invoice_facts(as_of: _AsOf, accounts: CTE, dialect: str) -> Select:
    """Invoices due, paid on time, failed, and usage billed, per account, as known at D."""
    i, m = raw_stripe_invoice, _mapping("stripe")
    # Invoices charged automatically carry no due date: they are due when created.
    due_at = func.coalesce(i.c.due_date, i.c.created_at)
    start_half = as_of.start(SIGNALS["payment_timeliness"].window_days)
    start_usage_current = as_of.start(HALF_YEAR_TREND_CURRENT_DAYS)
    paid_by_d = and_(i.c.paid_at.is_not(None), i.c.paid_at < as_of.end)
    due_in_window = and_(due_at >= start_half, due_at < as_of.end)
    on_time = and_(paid_by_d, _day_of(i.c.paid_at, dialect) <= _day_of(due_at, dialect))
    created_half = i.c.created_at >= start_half
    failed = and_(
        created_half,
        or_(
            and_(paid_by_d, i.c.attempt_count > 1),
            and_(~paid_by_d, due_at < as_of.end),
        ),
    )
    usage = func.coalesce(i.c.usage_amount, 0)
    return (
        select(
            m.c.account_key,
            func.sum(case((due_in_window, 1), else_=0)).label("invoices_due"),
            func.sum(case((and_(due_in_window, on_time), 1), else_=0)).label("invoices_on_time"),
            func.sum(case((failed, 1), else_=0)).label("invoices_failed"),
            func.sum(case((i.c.created_at >= start_usage_current, usage), else_=0)).label("usage_current"),
            func.sum(case((and_(created_half, i.c.created_at < start_usage_current), usage), else_=0)).label(
                "usage_baseline"
            ),
        )
        .select_from(
            i.join(m, and_(m.c.system == "stripe", m.c.source_id == i.c.customer_id)).join(
                accounts, accounts.c.account_key == m.c.account_key
            )
        )
        .where(
            i.c.created_at < as_of.end,
            # Everything here looks back at most half a year, by creation or by due date.
            or_(i.c.created_at >= start_half, i.c.due_date >= start_half),
            _billed(i),
            _existed(i, as_of),
        )
        .group_by(m.c.account_key)
    )


def _disputes(as_of: _AsOf, accounts: CTE) -> Select:
    """Disputes opened in the failure window, attributed through the disputed invoice's customer."""
    d, i, m = raw_stripe_dispute, raw_stripe_invoice, _mapping("stripe")
    return (
        # DISTINCT: a charge is paid by one invoice, but a re-extracted duplicate must not double.
        select(m.c.account_key, func.count(distinct(d.c.id)).label("disputes"))
        .select_from(
            d.join(i, i.c.charge_id == d.c.charge_id)
            .join(m, and_(m.c.system == "stripe", m.c.source_id == i.c.customer_id))
            .join(accounts, accounts.c.account_key == m.c.account_key)
        )
        .where(
            d.c.created_at >= as_of.start(SIGNALS["payment_failures"].window_days),
            d.c.created_at < as_of.end,
            _existed(d, as_of),
        )
        .group_by(m.c.account_key)
    )


def _nps(as_of: _AsOf, accounts: CTE) -> Select:
    """Mean of each contact's latest NPS score in the window (one voice per contact)."""
    n = raw_sf_nps_response
    m, account_key = _salesforce_owner(n)
    voice = func.coalesce(n.c.contact_id, n.c.id)
    latest = (
        select(
            account_key.label("account_key"),
            n.c.score,
            func.row_number()
            .over(partition_by=(account_key, voice), order_by=(n.c.responded_at.desc(), n.c.id.desc()))
            .label("recency"),
        )
        .select_from(_sf_join(n, m))
        .where(
            n.c.responded_at >= as_of.start(SIGNALS["nps"].window_days),
            n.c.responded_at < as_of.end,
            n.c.score.is_not(None),
            _existed(n, as_of),
        )
        .subquery("latest_nps")
    )
    return (
        select(latest.c.account_key, cast(func.avg(latest.c.score), Float).label("nps"))
        .select_from(latest.join(accounts, accounts.c.account_key == latest.c.account_key))
        .where(latest.c.recency == 1)
        .group_by(latest.c.account_key)
    )


def _task_facts(as_of: _AsOf, accounts: CTE) -> Select:
    """Last executive-sponsor touch and outreach answered, from tasks logged by the end of D."""
    t = raw_sf_task
    m, account_key = _salesforce_owner(t)
    outreach_start = as_of.first_day(SIGNALS["outreach_response"].window_days)
    happened = or_(t.c.status.is_(None), t.c.status.not_in(OPEN_TASK_STATUSES))
    outreach = and_(t.c.outreach_responded.is_not(None), t.c.activity_date >= outreach_start)
    # The reply flag is current state; a reply is known at D only if the task has not been
    # modified since (Salesforce stamps the task when the reply is logged).
    answered = and_(
        outreach,
        t.c.outreach_responded == true(),
        or_(t.c.source_updated_at.is_(None), t.c.source_updated_at < as_of.end),
    )
    tasks = (
        select(
            account_key.label("account_key"),
            case((and_(t.c.is_executive_touch == true(), happened), t.c.activity_date)).label("touch_date"),
            case((outreach, 1), else_=0).label("is_outreach"),
            case((answered, 1), else_=0).label("is_answered"),
        )
        .select_from(_sf_join(t, m))
        .where(t.c.activity_date <= as_of.day, _before_end(t.c.created_at, as_of), _existed(t, as_of))
        .subquery("tasks")
    )
    return (
        select(
            tasks.c.account_key,
            func.max(tasks.c.touch_date).label("last_exec_touch"),
            func.sum(tasks.c.is_outreach).label("outreach_sent"),
            func.sum(tasks.c.is_answered).label("outreach_answered"),
        )
        .select_from(tasks.join(accounts, accounts.c.account_key == tasks.c.account_key))
        .group_by(tasks.c.account_key)
    )


# --------------------------------------------------------------------------- assembly
def _read(conn: Any, stmt: Select) -> pd.DataFrame:
    result = conn.execute(stmt)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _merge(frame: pd.DataFrame, facts: pd.DataFrame) -> pd.DataFrame:
    return frame.merge(facts, on="account_key", how="left")


def _as_date(value: Any) -> date | None:
    """A warehouse date (SQLite hands back strings from MAX(); pandas may hand back Timestamps)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _days_between(later: date, earlier: pd.Series) -> pd.Series:
    """Days from each date of ``earlier`` to ``later`` (NaN where missing)."""
    earlier_dates = pd.to_datetime(earlier.map(_as_date), errors="coerce")
    return (pd.Timestamp(later) - earlier_dates).dt.days.astype(float)


def _empty_frame() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype=object) for column in ACCOUNT_COLUMNS})
    for key in SIGNAL_COLUMNS:
        frame[key] = pd.Series(dtype=float)
    return frame


def compute_signals(
    engine: Engine, as_of: date, account_keys: Sequence[str] | None = None
) -> pd.DataFrame:
    """Every customer's raw signal values as of the end of ``as_of`` (point in time).

    Returns one row per account that is a customer at ``as_of`` (see the module docstring),
    restricted to ``account_keys`` when given, with the columns ``ACCOUNT_COLUMNS`` followed by
    one float column per signal of ``SIGNALS`` (NaN: no data). Rows are sorted by account_key.
    """
    if isinstance(as_of, datetime) or not isinstance(as_of, date):
        raise TypeError(f"as_of must be a datetime.date (the as-of day), got {as_of!r}")
    if account_keys is not None and isinstance(account_keys, str):
        raise TypeError(f"account_keys must be a sequence of account keys, not the string {account_keys!r}")
    view = _AsOf(as_of)
    dialect = engine.dialect.name
    with engine.connect() as conn:
        accounts = _accounts(view, account_keys)
        frame = _read(conn, _account_attributes(view, accounts))
        if account_keys is not None and len(account_keys) > _MAX_KEYS_IN_SQL:
            frame = frame[frame["account_key"].isin(set(account_keys))]
        if frame.empty:
            return _empty_frame()
        subscriptions = _read(conn, _subscription_state(view, accounts))
        contract_now = _read(conn, _contract_lines(view, accounts))
        contract_before = _read(
            conn, _contract_lines(view.shifted(SIGNALS["contract_value_change"].window_days), accounts)
        )
        has_product = set(_read(conn, _product_presence(view, accounts))["account_key"])
        usage = _read(conn, _product_usage(view, accounts, dialect))
        features = _read(conn, _core_feature_usage(view, accounts))
        core_features = conn.execute(_core_feature_count(view)).scalar_one()
        tickets = _read(conn, _ticket_counts(view, accounts))
        medians = _read(conn, _resolution_medians(view, accounts))
        ratings = _read(conn, _satisfaction(view, accounts))
        has_stripe = set(_read(conn, _stripe_presence(view, accounts))["account_key"])
        invoices = _read(conn, _invoice_facts(view, accounts, dialect))
        disputes = _read(conn, _disputes(view, accounts))
        nps = _read(conn, _nps(view, accounts))
        tasks = _read(conn, _task_facts(view, accounts))

    frame = _drop_churned(frame, subscriptions)
    frame["as_of_date"] = as_of
    frame["customer_since"] = frame["customer_since"].map(_as_date)
    frame["tenure_days"] = _days_between(as_of, frame["customer_since"]).astype(int)
    frame = _with_seats_and_arr(frame, contract_now)
    frame = _with_engagement(frame, view, usage, features, core_features, has_product)
    frame = _with_support(frame, tickets, medians, ratings)
    frame = _with_financial(frame, invoices, disputes, contract_now, contract_before, has_stripe)
    frame = _with_sentiment(frame, view, nps, tasks)
    frame = frame[list(ACCOUNT_COLUMNS) + list(SIGNAL_COLUMNS)]
    frame[list(SIGNAL_COLUMNS)] = frame[list(SIGNAL_COLUMNS)].astype(float)
    return frame.sort_values("account_key").reset_index(drop=True)


def _drop_churned(frame: pd.DataFrame, subscriptions: pd.DataFrame) -> pd.DataFrame:
    """Keep accounts that still had a live subscription at D, or never ended one."""
    state = _merge(frame[["account_key"]], subscriptions).fillna({"subs_ended": 0, "subs_live": 0})
    churned = (state["subs_ended"] > 0) & (state["subs_live"] == 0)
    return frame[~churned.to_numpy()].copy()


_PERIODS_PER_YEAR = {"day": 365.0, "week": 52.0, "month": 12.0, "year": 1.0}


def _contract_totals(lines: pd.DataFrame) -> pd.DataFrame:
    """Per account: recurring cents, seats and ARR from the live subscriptions' latest invoices."""
    if lines.empty:
        return pd.DataFrame(columns=["account_key", "recurring_cents", "stripe_seats", "stripe_arr"])
    recurring = lines["recurring_cents"].astype(float).clip(lower=0)
    unit = lines["unit_amount"].astype(float)
    per_year = lines["interval"].map(_PERIODS_PER_YEAR).astype(float)
    parts = pd.DataFrame(
        {
            "account_key": lines["account_key"],
            "recurring_cents": recurring,
            "stripe_seats": (recurring / unit.where(unit > 0)).round(),
            "stripe_arr": recurring * per_year / 100.0,
        }
    )
    # min_count=1: an account whose subscriptions all lack a price has no Stripe seats (NaN), not 0.
    return parts.groupby("account_key", as_index=False).sum(min_count=1)


def _with_seats_and_arr(frame: pd.DataFrame, contract_now: pd.DataFrame) -> pd.DataFrame:
    frame = _merge(frame, _contract_totals(contract_now)[["account_key", "stripe_seats", "stripe_arr"]])
    stripe_seats = frame["stripe_seats"].astype(float)
    stripe_arr = frame["stripe_arr"].astype(float)
    frame["seats"] = stripe_seats.where(stripe_seats > 0, frame["sf_seats"].astype(float))
    frame["arr"] = stripe_arr.where(stripe_arr > 0, frame["sf_arr"].astype(float))
    return frame


def _with_engagement(
    frame: pd.DataFrame,
    view: _AsOf,
    usage: pd.DataFrame,
    features: pd.DataFrame,
    core_features: int,
    has_product: set[str],
) -> pd.DataFrame:
    frame = _merge(_merge(frame, usage), features)
    mapped = frame["account_key"].isin(has_product)
    # A mapped product account without rows in the window had no activity: a real zero.
    counts = [
        "logins_login_window",
        "weekday_active_users",
        "active_user_days",
        "logins_current",
        "logins_baseline",
        "core_features_used",
        "core_events",
    ]
    for column in counts:
        frame[column] = frame[column].astype(float).fillna(0.0).where(mapped)
    seats = frame["seats"].astype(float)

    # Rates run over the part of the window in which the account was a customer.
    since = pd.to_datetime(frame["customer_since"]).to_numpy().astype("datetime64[D]")
    window_start = np.datetime64(view.first_day(SIGNALS["login_frequency"].window_days), "D")
    rate_start = np.maximum(since, window_start)
    end_exclusive = np.datetime64(view.day + timedelta(days=1), "D")
    days = (end_exclusive - rate_start).astype(int).astype(float)
    weekdays = np.busday_count(rate_start, end_exclusive).astype(float)

    frame["login_frequency"] = _ratio(frame["logins_login_window"], pd.Series(days / 7.0, index=frame.index) * seats)
    frame["active_user_ratio"] = _ratio(
        frame["weekday_active_users"], pd.Series(weekdays, index=frame.index) * seats
    )
    frame["feature_breadth"] = (
        frame["core_features_used"] / core_features if core_features else pd.Series(np.nan, index=frame.index)
    )
    frame["feature_depth"] = _ratio(frame["core_events"], frame["active_user_days"])

    trend_days = SIGNALS["engagement_trend"].window_days
    baseline_months = (trend_days - ENGAGEMENT_TREND_CURRENT_DAYS) / ENGAGEMENT_TREND_CURRENT_DAYS
    covered = frame["tenure_days"] >= trend_days - 1
    trend = _fractional_change(frame["logins_current"], frame["logins_baseline"] / baseline_months)
    frame["engagement_trend"] = trend.where(covered)
    return frame


def _with_support(
    frame: pd.DataFrame, tickets: pd.DataFrame, medians: pd.DataFrame, ratings: pd.DataFrame
) -> pd.DataFrame:
    frame = _merge(_merge(frame, tickets), ratings)
    frame["open_tickets"] = frame["open_tickets"].astype(float).fillna(0.0)
    recent = frame["tickets_recent"].astype(float).fillna(0.0)
    frame["severity_mix"] = _ratio(frame["tickets_recent_high"], recent).fillna(0.0)
    how_to = frame["how_to"].astype(float)
    frame["howto_complaint_ratio"] = _ratio(how_to, how_to + frame["complaint"].astype(float))
    frame["reopen_rate"] = _ratio(frame["reopens_half"], frame["solved_half"])
    good = frame["ratings_good"].astype(float)
    frame["csat"] = _ratio(good, good + frame["ratings_bad"].astype(float))

    if medians.empty:
        frame["resolution_time_trend"] = np.nan
        return frame
    wide = medians.pivot(index="account_key", columns="period", values=["median_minutes", "solved"])
    wide.columns = [f"{value}_{period}" for value, period in wide.columns]
    wide = wide.reindex(
        columns=["median_minutes_current", "median_minutes_baseline", "solved_current", "solved_baseline"]
    ).reset_index()
    frame = _merge(frame, wide)
    enough = (frame["solved_current"].astype(float) >= MIN_SOLVED_TICKETS_FOR_TREND) & (
        frame["solved_baseline"].astype(float) >= MIN_SOLVED_TICKETS_FOR_TREND
    )
    trend = _fractional_change(frame["median_minutes_current"], frame["median_minutes_baseline"])
    frame["resolution_time_trend"] = trend.where(enough)
    return frame


def _with_financial(
    frame: pd.DataFrame,
    invoices: pd.DataFrame,
    disputes: pd.DataFrame,
    contract_now: pd.DataFrame,
    contract_before: pd.DataFrame,
    has_stripe: set[str],
) -> pd.DataFrame:
    frame = _merge(_merge(frame, invoices), disputes)
    billed = frame["account_key"].isin(has_stripe)
    frame["payment_timeliness"] = _ratio(frame["invoices_on_time"], frame["invoices_due"])
    failures = frame["invoices_failed"].astype(float).fillna(0.0) + frame["disputes"].astype(float).fillna(0.0)
    frame["payment_failures"] = failures.where(billed)

    now = _contract_totals(contract_now)[["account_key", "recurring_cents"]]
    before = _contract_totals(contract_before)[["account_key", "recurring_cents"]]
    values = _merge(_merge(frame[["account_key"]], now), before.rename(columns={"recurring_cents": "before"}))
    # A subscription live six months ago but none today would be churn: the account is not here.
    change = _fractional_change(values["recurring_cents"].fillna(0.0), values["before"])
    frame["contract_value_change"] = change.to_numpy()

    covered = frame["tenure_days"] >= SIGNALS["usage_billing_trend"].window_days - 1
    trend = _fractional_change(frame["usage_current"].fillna(0.0), frame["usage_baseline"])
    frame["usage_billing_trend"] = trend.where(covered & billed)
    return frame


def _with_sentiment(frame: pd.DataFrame, view: _AsOf, nps: pd.DataFrame, tasks: pd.DataFrame) -> pd.DataFrame:
    frame = _merge(_merge(frame, nps), tasks)
    since_touch = _days_between(view.day, frame["last_exec_touch"])
    never = frame["tenure_days"].astype(float)
    frame["exec_sponsor_recency"] = since_touch.fillna(never).clip(upper=EXEC_RECENCY_CAP_DAYS)
    frame["outreach_response"] = _ratio(frame["outreach_answered"], frame["outreach_sent"])
    return frame


def compute_signals_range(
    engine: Engine, start: date, end: date, account_keys: Sequence[str] | None = None
) -> pd.DataFrame:
    """Signals for every day from ``start`` to ``end`` (inclusive), for history rebuilds.

    Each day is computed exactly as ``compute_signals`` computes it, so a rebuilt day equals the
    daily run's day. Returns the days' frames concatenated, sorted by as_of_date then account_key.
    """
    if end < start:
        raise ValueError(f"compute_signals_range: end {end} is before start {start}; swap them")
    frames = []
    day = start
    while day <= end:
        frames.append(compute_signals(engine, day, account_keys))
        day += timedelta(days=1)
    non_empty = [f for f in frames if not f.empty]
    if not non_empty:
        return _empty_frame()
    return pd.concat(non_empty, ignore_index=True)
