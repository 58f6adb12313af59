"""The health signals, each defined once: what it measures, how a CSM reads it, how it is computed.

Every signal of the product is a ``Signal`` in ``DEFINITIONS`` below (the vocabulary is
``scoring/signal_definition.py`` and ``scoring/measures.py``). Everything else derives from
this list: the catalog the explanations, drivers and dashboard read (``signal_catalog.SIGNALS``),
the columns of ``signal_values`` (``warehouse/schema.py``), the signals a model config may weight
(``model_config``), and the computation of the daily run, the refresh and the rebuild - one
evaluation of these definitions for a date in SQL (``compute_signals``) or for a range of
dates at once (``iter_signal_chunks``), equal date for date (``scoring/signal_engine.py``).
``docs/CHANGING.md`` walks through adding a signal.

Point in time
-------------
"End of D" is ``D + 1 day 00:00`` (naive UTC). Every fact counts by its own stamps (``Known``,
``Window``, ``Pending`` in ``measures.py``): created, solved, paid, responded before the end of D;
``day``/``activity_date`` on or before D. The raw tables hold records' *current* state, so an
invoice paid after D counts as unpaid at D, a ticket solved after D as open at D, and a record
deleted after D (``is_deleted`` with ``source_updated_at`` after D) as present at D (``Present``).
Fields whose history the sources do not keep (ticket priority and reopens, task status and
outreach reply flag, the plan on the Account) are read as they are now; see "Known limits".

Identity: Zendesk organizations, Stripe customers and product accounts reach their account
through ``account_identity_map``, so several source records mapped onto one account all count.
Salesforce child records (tasks, NPS) carry the Account Id; they go through the map too when it
holds a ``salesforce`` row for that Id (merged duplicates), else they keep their own Id.

Who is a customer at D, seats and ARR (``CONTEXT``)
---------------------------------------------------
An account (a live ``raw_sf_account`` row) is a customer at D when ``customer_since <= D`` and it
has not churned by the end of D: it has churned when it has at least one Stripe subscription
that ended by the end of D and none live at the end of D. A subscription ends at
``canceled_at``, or at ``current_period_end`` when it was canceled "at period end" (Stripe's
``canceled_at`` is then the time of the request). Accounts without any Stripe subscription are
judged by ``customer_since`` alone (invoiced outside Stripe).

Seats and ARR come from the subscriptions live at D and each one's latest license invoice as
of D (billed, with a recurring part; usage-only invoices of annual contracts are skipped): the
recurring amount is ``subtotal - usage_amount``, seats ``recurring / unit_amount`` (rounded,
summed over subscriptions), ARR the recurring amount times the billing periods per year. When
Stripe has nothing, the Account's ``seats`` and ``arr`` fields are used.

Missing is missing
------------------
A signal without data is NULL, never a default that looks like data; the scoring engine moves
its weight to the present signals and coverage says so. Each definition states its rule:

* ``requires`` - engagement signals need a product account, support signals a Zendesk
  organization, financial signals a Stripe customer, mapped to the account and existing at D.
* ``needs_tenure_days`` - trends and counts whose window must lie inside the tenure (a
  baseline quarter before the contract is not the customer's; 0 failed payments in 40 days is
  not 0 in 180): ``engagement_trend``, ``resolution_time_trend``, ``usage_billing_trend``,
  ``contract_value_change``, ``payment_failures``, ``feature_breadth``. Shares and rates whose
  denominator is what actually happened (invoices due, ratings given, the days an account has
  been a customer) do not.
* ``when_quiet`` - with the system connected but nothing in the window: a real 0 for counts
  (open tickets, failed payments, logins, core features used), NULL for shares of nothing
  (severity mix without tickets, CSAT without ratings) and for ``exec_sponsor_recency`` without
  any executive touch on record.

Known limits
------------
``payment_failures`` counts an invoice unpaid and past due at D as a failure (its attempt
history at D is not kept); an invoice paid by D counts when it took more than one attempt.
An outreach reply counts only when the task was last modified by the end of D (a task edited
after D for another reason loses its reply for D: the conservative side). Ticket priority,
reopen counts, task status, the Account's plan and owner are current values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    DateTime,
    Engine,
    String,
    and_,
    case,
    cast,
    func,
    null,
    or_,
    true,
    type_coerce,
)

from customer_health.scoring.measures import (
    Known,
    Pending,
    Present,
    SinceCustomer,
    Source,
    System,
    Where,
    Window,
    calendar_day,
    fractional_change,
    latest,
    ratio,
    weekday,
)
from customer_health.scoring.signal_definition import Inputs, Signal
from customer_health.scoring.signal_engine import (
    ACCOUNT_COLUMNS,
    DEFAULT_CHUNK_DAYS,
    AccountContext,
    empty_frame,
)
from customer_health.scoring.signal_engine import iter_signal_chunks as _iter_chunks
from customer_health.scoring.signal_engine import signals_at as _signals_at
from customer_health.warehouse import raw_schema as raw

HIGH_PRIORITIES = ("high", "urgent")
INVOICE_STATUSES_NOT_BILLED = ("void", "draft")
# Salesforce task statuses that mean the activity has not happened yet.
OPEN_TASK_STATUSES = ("Not Started", "In Progress", "Waiting on someone else", "Deferred")
# A median of one or two resolution times swings with a single ticket; below this many solved
# tickets in either quarter the resolution trend is NULL.
MIN_SOLVED_TICKETS_FOR_TREND = 3
EXEC_RECENCY_CAP_DAYS = 365
_PERIODS_PER_YEAR = {"day": 365.0, "week": 52.0, "month": 12.0, "year": 1.0}


# --------------------------------------------------------------------------- how records reach accounts
def _mapped(table: Any, system: str, source_id: Any, alias: str) -> tuple[Any, Any]:
    """(records joined to their account through the identity map, the account key)."""
    m = raw.account_identity_map.alias(alias)
    return table.join(m, and_(m.c.system == system, m.c.source_id == source_id)), m.c.account_key


def _salesforce_child(table: Any, alias: str) -> tuple[Any, Any]:
    """A Salesforce child record's account: the map's for a merged duplicate, else its own."""
    m = raw.account_identity_map.alias(alias)
    joined = table.outerjoin(m, and_(m.c.system == "salesforce", m.c.source_id == table.c.account_id))
    return joined, func.coalesce(m.c.account_key, table.c.account_id)


def _identities(system: str, records: Any, source_id_as_record_id: Any = None) -> Source:
    """The account's identities in ``system`` that exist at D (a mapping to a record the
    extraction has not seen counts: its creation is unknown). ``source_id_as_record_id`` turns
    the map's text id into the record's id type, so the join probes the record's primary key."""
    m = raw.account_identity_map.alias(f"identities_{system}")
    record_id = m.c.source_id if source_id_as_record_id is None else source_id_as_record_id(m.c.source_id)
    return Source(
        f"{system} identities",
        m.outerjoin(records, records.c.id == record_id),
        m.c.account_key,
        always=(Where(m.c.system == system), Known(records.c.created_at, if_null=True)),
    )


PRODUCT = System("product", _identities("product", raw.raw_product_account).count("product_accounts"))
# Zendesk ids are integers, the map holds text.
ZENDESK = System(
    "zendesk", _identities("zendesk", raw.raw_zd_organization, lambda id_: cast(id_, BigInteger)).count("zendesk_organizations")
)
STRIPE = System("stripe", _identities("stripe", raw.raw_stripe_customer).count("stripe_customers"))


# --------------------------------------------------------------------------- Stripe: contract
def _subscription_end(subscription: Any) -> Any:
    """When a subscription stops: ``canceled_at``, or the period end when it was canceled "at
    period end" (Stripe's ``canceled_at`` is then the time of the request); NULL: not canceled."""
    s = subscription.c
    ends = case(
        (s.canceled_at.is_(None), null()),
        (and_(s.cancel_at_period_end == true(), s.current_period_end > s.canceled_at), s.current_period_end),
        else_=s.canceled_at,
    )
    return type_coerce(ends, DateTime)


_sub = raw.raw_stripe_subscription
_records, _key = _mapped(_sub, "stripe", _sub.c.customer_id, "map_subscription")
SUBSCRIPTIONS = Source("subscriptions", _records, _key, always=(Known(_sub.c.created_at), Present(_sub)))
_ends = _subscription_end(_sub)
SUBSCRIPTIONS_ENDED = SUBSCRIPTIONS.count("subscriptions_ended", Known(_ends))
SUBSCRIPTIONS_LIVE = SUBSCRIPTIONS.count("subscriptions_live", Pending(_ends, if_null=True))


def _billed(invoice: Any) -> Any:
    """The invoice was issued (not a draft, not voided); a missing status counts as issued."""
    return or_(invoice.c.status.is_(None), invoice.c.status.not_in(INVOICE_STATUSES_NOT_BILLED))


_lic, _ls = raw.raw_stripe_invoice.alias("license_invoice"), raw.raw_stripe_subscription.alias("licensed_subscription")
_recurring = _lic.c.subtotal - func.coalesce(_lic.c.usage_amount, 0)
_records, _key = _mapped(_lic.join(_ls, _ls.c.id == _lic.c.subscription_id), "stripe", _ls.c.customer_id, "map_license")
LICENSE_LINES = Source(
    "license invoices of live subscriptions",
    _records,
    _key,
    always=(
        # Usage-only invoices (metered usage billed in arrears between annual license invoices)
        # say nothing about the contract: the latest *license* invoice does.
        Known(_lic.c.created_at), Present(_lic), Where(and_(_recurring > 0, _billed(_lic))),
        Known(_ls.c.created_at), Present(_ls),
        Pending(_subscription_end(_ls), if_null=True),
    ),
)  # fmt: skip


def _line_recurring(line: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.clip(line["recurring"], 0, None)


def _line_seats(line: Mapping[str, np.ndarray]) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.round(_line_recurring(line) / np.where(line["unit"] > 0, line["unit"], np.nan))


def _line_arr(line: Mapping[str, np.ndarray]) -> np.ndarray:
    per_year = pd.Series(line["interval"], dtype=object).map(_PERIODS_PER_YEAR).to_numpy(dtype=float)
    return _line_recurring(line) * per_year / 100.0


_latest_license = {"per": _ls.c.id, "order": (_lic.c.created_at, _lic.c.id)}
CONTRACT_RECURRING = latest(LICENSE_LINES, "contract_recurring", **_latest_license, columns={"recurring": _recurring}, value=_line_recurring)  # noqa: E501
CONTRACT_SEATS = latest(LICENSE_LINES, "contract_seats", **_latest_license, columns={"recurring": _recurring, "unit": _ls.c.unit_amount}, value=_line_seats)  # noqa: E501
CONTRACT_ARR = latest(LICENSE_LINES, "contract_arr", **_latest_license, columns={"recurring": _recurring, "interval": _ls.c.interval}, value=_line_arr)  # noqa: E501
CONTRACT_RECURRING_180_DAYS_AGO = CONTRACT_RECURRING.shifted(180, "contract_recurring_180_days_ago")

CONTEXT = AccountContext(SUBSCRIPTIONS_ENDED, SUBSCRIPTIONS_LIVE, CONTRACT_SEATS, CONTRACT_ARR)
"""Who is a customer at D, with what seats and ARR (see the module docstring)."""


# --------------------------------------------------------------------------- product database
_u = raw.raw_product_usage_daily
_records, _key = _mapped(_u, "product", _u.c.account_id, "map_usage")
# Trial usage before the contract is not customer engagement.
USAGE = Source("daily product usage", _records, _key, always=(SinceCustomer(_u.c.day),))
LOGINS_28 = USAGE.sum("logins_28", _u.c.logins, Window(_u.c.day, 28))
WEEKDAY_ACTIVE_USERS_28 = USAGE.sum("weekday_active_users_28", _u.c.active_users, Window(_u.c.day, 28), Where(weekday(_u.c.day)))
ACTIVE_USER_DAYS_30 = USAGE.sum("active_user_days_30", _u.c.active_users, Window(_u.c.day, 30))
LOGINS_30 = USAGE.sum("logins_30", _u.c.logins, Window(_u.c.day, 30))
LOGINS_31_TO_90 = USAGE.sum("logins_31_to_90", _u.c.logins, Window(_u.c.day, 90, skip=30))

_fd, _f = raw.raw_product_feature_daily, raw.raw_product_feature
_records, _key = _mapped(_fd, "product", _fd.c.account_id, "map_feature_use")
CORE_FEATURE_USE = Source(
    "daily core-feature use",
    _records.join(_f, and_(_f.c.feature_key == _fd.c.feature_key, _f.c.is_core == true())),
    _key,
    always=(SinceCustomer(_fd.c.day), Present(_f)),
)
CORE_FEATURES_USED_30 = CORE_FEATURE_USE.distinct("core_features_used_30", _fd.c.feature_key, Window(_fd.c.day, 30), Where(_fd.c.events > 0))
CORE_EVENTS_30 = CORE_FEATURE_USE.sum("core_events_30", _fd.c.events, Window(_fd.c.day, 30))
_core = raw.raw_product_feature.alias("core_feature")
CORE_FEATURES = Source("core features", _core, None, always=(Where(_core.c.is_core == true()), Present(_core)))
CORE_FEATURES_EXISTING = CORE_FEATURES.count("core_features")


# --------------------------------------------------------------------------- Zendesk
_t = raw.raw_zd_ticket
_records, _key = _mapped(_t, "zendesk", cast(_t.c.organization_id, String), "map_ticket")
TICKETS = Source("tickets", _records, _key, always=(Known(_t.c.created_at), Present(_t)))
# A ticket solved or closed without a solved_at is a data gap, not a ticket open forever.
_unsolved_status = Where(or_(_t.c.status.is_(None), _t.c.status.not_in(("solved", "closed"))))
OPEN_TICKETS = TICKETS.count("open_tickets", Pending(_t.c.solved_at, if_null=_unsolved_status))
TICKETS_90 = TICKETS.count("tickets_90", Window(_t.c.created_at, 90))
HIGH_PRIORITY_TICKETS_90 = TICKETS.count("high_priority_tickets_90", Window(_t.c.created_at, 90), Where(_t.c.priority.in_(HIGH_PRIORITIES)))
HOW_TO_TICKETS_180 = TICKETS.count("how_to_tickets_180", Window(_t.c.created_at, 180), Where(_t.c.category == "how_to"))
COMPLAINT_TICKETS_180 = TICKETS.count("complaint_tickets_180", Window(_t.c.created_at, 180), Where(_t.c.category == "complaint"))
SOLVED_TICKETS_180 = TICKETS.count("solved_tickets_180", Window(_t.c.solved_at, 180))
REOPENS_OF_SOLVED_180 = TICKETS.sum("reopens_of_solved_180", _t.c.reopens, Window(_t.c.solved_at, 180))
_timed = Where(_t.c.full_resolution_minutes.is_not(None))
SOLVED_LAST_QUARTER = TICKETS.count("solved_last_quarter", Window(_t.c.solved_at, 90), _timed)
SOLVED_QUARTER_BEFORE = TICKETS.count("solved_quarter_before", Window(_t.c.solved_at, 180, skip=90), _timed)
RESOLUTION_LAST_QUARTER = TICKETS.median("resolution_minutes_last_quarter", _t.c.full_resolution_minutes, Window(_t.c.solved_at, 90))
RESOLUTION_QUARTER_BEFORE = TICKETS.median("resolution_minutes_quarter_before", _t.c.full_resolution_minutes, Window(_t.c.solved_at, 180, skip=90))  # noqa: E501

_r, _rt = raw.raw_zd_satisfaction_rating, raw.raw_zd_ticket.alias("rated_ticket")
# A rating carries no organization in Zendesk's API: it is its ticket's.
_records, _key = _mapped(
    _r.outerjoin(_rt, _rt.c.id == _r.c.ticket_id), "zendesk",
    cast(func.coalesce(_r.c.organization_id, _rt.c.organization_id), String), "map_rating",
)  # fmt: skip
RATINGS = Source("satisfaction ratings", _records, _key, always=(Present(_r),))
GOOD_RATINGS_180 = RATINGS.count("good_ratings_180", Window(_r.c.created_at, 180), Where(_r.c.score == "good"))
BAD_RATINGS_180 = RATINGS.count("bad_ratings_180", Window(_r.c.created_at, 180), Where(_r.c.score == "bad"))


# --------------------------------------------------------------------------- Stripe: payments
_i = raw.raw_stripe_invoice
_records, _key = _mapped(_i, "stripe", _i.c.customer_id, "map_invoice")
INVOICES = Source("invoices", _records, _key, always=(Known(_i.c.created_at), Present(_i), Where(_billed(_i))))
# Invoices charged automatically carry no due date: they are due when created.
_due = func.coalesce(_i.c.due_date, _i.c.created_at)
INVOICES_DUE_180 = INVOICES.count("invoices_due_180", Window(_due, 180))
INVOICES_PAID_ON_TIME_180 = INVOICES.count(
    "invoices_paid_on_time_180", Window(_due, 180), Known(_i.c.paid_at), Where(calendar_day(_i.c.paid_at) <= calendar_day(_due))
)
RETRIED_PAYMENTS_180 = INVOICES.count("retried_payments_180", Window(_i.c.created_at, 180), Known(_i.c.paid_at), Where(_i.c.attempt_count > 1))
PAST_DUE_INVOICES_180 = INVOICES.count("past_due_invoices_180", Window(_i.c.created_at, 180), Pending(_i.c.paid_at, if_null=True), Known(_due))
USAGE_BILLED_LAST_QUARTER = INVOICES.sum("usage_billed_last_quarter", _i.c.usage_amount, Window(_i.c.created_at, 90))
USAGE_BILLED_QUARTER_BEFORE = INVOICES.sum("usage_billed_quarter_before", _i.c.usage_amount, Window(_i.c.created_at, 180, skip=90))

_d, _di = raw.raw_stripe_dispute, raw.raw_stripe_invoice.alias("disputed_invoice")
_records, _key = _mapped(_d.join(_di, _di.c.charge_id == _d.c.charge_id), "stripe", _di.c.customer_id, "map_dispute")
DISPUTES = Source("disputes", _records, _key, always=(Present(_d),))
# Distinct: a charge is paid by one invoice, but a re-extracted duplicate must not double.
DISPUTES_180 = DISPUTES.distinct("disputes_180", _d.c.id, Window(_d.c.created_at, 180))


# --------------------------------------------------------------------------- Salesforce
_n = raw.raw_sf_nps_response
_records, _key = _salesforce_child(_n, "map_nps")
NPS_RESPONSES = Source("NPS responses", _records, _key, always=(Present(_n), Where(_n.c.score.is_not(None))))
# One voice per contact: each contact's latest answer of the last year.
LATEST_NPS_PER_CONTACT = latest(
    NPS_RESPONSES, "nps_per_contact", Window(_n.c.responded_at, 365),
    per=func.coalesce(_n.c.contact_id, _n.c.id), order=(_n.c.responded_at, _n.c.id),
    columns={"score": _n.c.score}, value=lambda line: line["score"], reduce="mean",
)  # fmt: skip

_tk = raw.raw_sf_task
_records, _key = _salesforce_child(_tk, "map_task")
TASKS = Source("tasks", _records, _key, always=(Known(_tk.c.activity_date), Known(_tk.c.created_at), Present(_tk)))
_happened = or_(_tk.c.status.is_(None), _tk.c.status.not_in(OPEN_TASK_STATUSES))
LAST_EXECUTIVE_TOUCH = TASKS.latest_day("last_executive_touch", _tk.c.activity_date, Where(and_(_tk.c.is_executive_touch == true(), _happened)))
_outreach = Where(_tk.c.outreach_responded.is_not(None))
OUTREACH_SENT_90 = TASKS.count("outreach_sent_90", Window(_tk.c.activity_date, 90), _outreach)
# The reply flag is current state; a reply is known at D only if the task has not been
# modified since (Salesforce stamps the task when the reply is logged).
OUTREACH_ANSWERED_90 = TASKS.count(
    "outreach_answered_90", Window(_tk.c.activity_date, 90), Where(_tk.c.outreach_responded == true()),
    Known(_tk.c.source_updated_at, if_null=True),
)  # fmt: skip


# --------------------------------------------------------------------------- the signals
def _engagement_trend(x: Inputs) -> np.ndarray:
    """Logins of the last 30 days against the mean 30 days of days 31-90."""
    return fractional_change(x.logins_30, x.logins_31_to_90 / 2.0)


def _feature_breadth(x: Inputs) -> np.ndarray:
    return ratio(x.core_features_used_30, x.core_features)


def _resolution_time_trend(x: Inputs) -> np.ndarray:
    enough = (x.solved_last_quarter >= MIN_SOLVED_TICKETS_FOR_TREND) & (x.solved_quarter_before >= MIN_SOLVED_TICKETS_FOR_TREND)
    change = fractional_change(x.resolution_minutes_last_quarter, x.resolution_minutes_quarter_before)
    return np.where(enough, change, np.nan)


def _exec_sponsor_recency(x: Inputs) -> np.ndarray:
    return np.minimum(x.day - x.last_executive_touch, EXEC_RECENCY_CAP_DAYS)


# One entry per signal, two lines: what it is (key, dimension, direction, unit, window_days,
# label, the reading a CSM sees) and how it is computed (its input measures, its missing-data
# rule, its formula); see signal_definition.Signal.
DEFINITIONS: tuple[Signal, ...] = (
    # ---------------------------------------------------------------- engagement (product DB)
    # A rate over the days of the window the account has been a customer.
    Signal("login_frequency", "engagement", "higher_is_better", "logins per seat per week", 28, "login frequency", "{value:.1f} logins per seat per week (last 28 days)",
           inputs=(LOGINS_28,), requires=PRODUCT, when_quiet=0.0, value=lambda x: ratio(x.logins_28, x.customer_days(28) / 7.0 * x.seats)),
    Signal("active_user_ratio", "engagement", "higher_is_better", "share of seats", 28, "active users vs seats", "active users {value:.0%} of seats (weekday average, last 28 days)",
           inputs=(WEEKDAY_ACTIVE_USERS_28,), requires=PRODUCT, when_quiet=0.0, value=lambda x: ratio(x.weekday_active_users_28, x.customer_weekdays(28) * x.seats)),
    Signal("feature_breadth", "engagement", "higher_is_better", "share of core features", 30, "core features used", "{value:.0%} of core features used in the last 30 days",
           inputs=(CORE_FEATURES_USED_30, CORE_FEATURES_EXISTING), requires=PRODUCT, needs_tenure_days=29, when_quiet=0.0, value=_feature_breadth),
    Signal("feature_depth", "engagement", "higher_is_better", "events per active user-day", 30, "depth of core-feature use", "{value:.1f} core-feature actions per active user per day (last 30 days)",
           inputs=(CORE_EVENTS_30, ACTIVE_USER_DAYS_30), requires=PRODUCT, value=lambda x: ratio(x.core_events_30, x.active_user_days_30)),
    Signal("engagement_trend", "engagement", "higher_is_better", "fractional change", 90, "login trend", "logins {value:+.0%} vs the two months before",
           inputs=(LOGINS_30, LOGINS_31_TO_90), requires=PRODUCT, needs_tenure_days=89, value=_engagement_trend),
    # ---------------------------------------------------------------- support (Zendesk)
    Signal("open_tickets", "support", "lower_is_better", "tickets", 0, "open support tickets", "{value:.0f} open support ticket{s}",
           inputs=(OPEN_TICKETS,), requires=ZENDESK, when_quiet=0.0, value=lambda x: x.open_tickets),
    Signal("severity_mix", "support", "lower_is_better", "share of tickets", 90, "high-severity tickets", "{value:.0%} of tickets high or urgent priority (last 90 days)",
           inputs=(HIGH_PRIORITY_TICKETS_90, TICKETS_90), requires=ZENDESK, value=lambda x: ratio(x.high_priority_tickets_90, x.tickets_90)),
    Signal("resolution_time_trend", "support", "lower_is_better", "fractional change", 180, "ticket resolution time", "ticket resolution time {value:+.0%} vs the quarter before",
           inputs=(RESOLUTION_LAST_QUARTER, RESOLUTION_QUARTER_BEFORE, SOLVED_LAST_QUARTER, SOLVED_QUARTER_BEFORE), requires=ZENDESK, needs_tenure_days=179, value=_resolution_time_trend),
    Signal("howto_complaint_ratio", "support", "higher_is_better", "share of tickets", 180, "how-to vs complaint tickets", "{value:.0%} of how-to and complaint tickets are how-to questions (last 180 days)",
           inputs=(HOW_TO_TICKETS_180, COMPLAINT_TICKETS_180), requires=ZENDESK, value=lambda x: ratio(x.how_to_tickets_180, x.how_to_tickets_180 + x.complaint_tickets_180)),
    Signal("reopen_rate", "support", "lower_is_better", "reopens per solved ticket", 180, "ticket reopen rate", "{value:.2f} reopens per solved ticket (last 180 days)",
           inputs=(REOPENS_OF_SOLVED_180, SOLVED_TICKETS_180), requires=ZENDESK, value=lambda x: ratio(x.reopens_of_solved_180, x.solved_tickets_180)),
    Signal("csat", "support", "higher_is_better", "share of ratings", 180, "CSAT", "CSAT {value:.0%} good (last 180 days)",
           inputs=(GOOD_RATINGS_180, BAD_RATINGS_180), requires=ZENDESK, value=lambda x: ratio(x.good_ratings_180, x.good_ratings_180 + x.bad_ratings_180)),
    # ---------------------------------------------------------------- financial (Stripe)
    # An invoice unpaid and past due at D counts as late.
    Signal("payment_timeliness", "financial", "higher_is_better", "share of invoices", 180, "on-time payments", "{value:.0%} of invoices due in the last 180 days paid on time",
           inputs=(INVOICES_PAID_ON_TIME_180, INVOICES_DUE_180), requires=STRIPE, value=lambda x: ratio(x.invoices_paid_on_time_180, x.invoices_due_180)),
    Signal("payment_failures", "financial", "lower_is_better", "failures", 180, "failed payments and disputes", "{value:.0f} failed payment{s} or dispute{s} (last 180 days)",
           inputs=(RETRIED_PAYMENTS_180, PAST_DUE_INVOICES_180, DISPUTES_180), requires=STRIPE, needs_tenure_days=179, when_quiet=0.0, value=lambda x: x.retried_payments_180 + x.past_due_invoices_180 + x.disputes_180),
    # No license line today but one six months ago would be churn: the account is not here.
    Signal("contract_value_change", "financial", "higher_is_better", "fractional change", 180, "contract value change", "contract value {value:+.0%} vs six months ago",
           inputs=(CONTRACT_RECURRING, CONTRACT_RECURRING_180_DAYS_AGO), requires=STRIPE, needs_tenure_days=180, value=lambda x: fractional_change(np.nan_to_num(x.contract_recurring, nan=0.0), x.contract_recurring_180_days_ago)),
    Signal("usage_billing_trend", "financial", "higher_is_better", "fractional change", 180, "usage billing trend", "usage billing {value:+.0%} vs the quarter before",
           inputs=(USAGE_BILLED_LAST_QUARTER, USAGE_BILLED_QUARTER_BEFORE), requires=STRIPE, needs_tenure_days=179, value=lambda x: fractional_change(x.usage_billed_last_quarter, x.usage_billed_quarter_before)),
    # ---------------------------------------------------------------- sentiment (Salesforce)
    Signal("nps", "sentiment", "higher_is_better", "score 0-10", 365, "NPS", "NPS responses average {value:.1f} of 10 (last 12 months)",
           inputs=(LATEST_NPS_PER_CONTACT,), value=lambda x: x.nps_per_contact),
    # Days since the last executive-sponsor touch logged by the end of D, capped at a year; NULL when no
    # touch is on record (an org that does not log them would otherwise read as neglect).
    Signal("exec_sponsor_recency", "sentiment", "lower_is_better", "days", 365, "executive-sponsor contact", "{value:.0f} day{s} since the last executive-sponsor touch",
           inputs=(LAST_EXECUTIVE_TOUCH,), value=_exec_sponsor_recency),
    Signal("outreach_response", "sentiment", "higher_is_better", "share of e-mails", 90, "outreach response rate", "{value:.0%} of outreach e-mails answered (last 90 days)",
           inputs=(OUTREACH_SENT_90, OUTREACH_ANSWERED_90), value=lambda x: ratio(x.outreach_answered_90, x.outreach_sent_90)),
)  # fmt: skip
"""Every signal of the product, in catalog order (engagement, support, financial, sentiment)."""


def signal_keys(definitions: Sequence[Signal] | None = None) -> tuple[str, ...]:
    """The signal keys, in definition order (the ``signal_values`` columns)."""
    return tuple(signal.key for signal in (DEFINITIONS if definitions is None else definitions))


SIGNAL_COLUMNS: tuple[str, ...] = signal_keys()
"""One float column per signal, in definition order, after ``ACCOUNT_COLUMNS``."""


# --------------------------------------------------------------------------- computing them
def _check_keys(account_keys: Sequence[str] | None) -> None:
    if account_keys is not None and isinstance(account_keys, str):
        raise TypeError(f"account_keys must be a sequence of account keys, not the string {account_keys!r}")


def compute_signals(
    engine: Engine,
    as_of: date,
    account_keys: Sequence[str] | None = None,
    *,
    definitions: Sequence[Signal] | None = None,
) -> pd.DataFrame:
    """Every customer's signals as of the end of ``as_of`` (point in time), pushed down to SQL.

    One row per account that is a customer at ``as_of`` (restricted to ``account_keys`` when
    given), sorted by account_key, with ``ACCOUNT_COLUMNS`` followed by one float column per
    definition (NaN: no data). ``definitions``: the signals to compute (default: all of them).
    """
    if isinstance(as_of, datetime) or not isinstance(as_of, date):
        raise TypeError(f"as_of must be a datetime.date (the as-of day), got {as_of!r}")
    _check_keys(account_keys)
    return _signals_at(engine, as_of, account_keys, CONTEXT, DEFINITIONS if definitions is None else definitions)


def iter_signal_chunks(
    engine: Engine,
    start: date,
    end: date,
    account_keys: Sequence[str] | None = None,
    *,
    chunk_days: int = DEFAULT_CHUNK_DAYS,
    definitions: Sequence[Signal] | None = None,
) -> Iterator[pd.DataFrame]:
    """The signals of every date ``start`` .. ``end`` (inclusive), ``chunk_days`` dates per frame,
    vectorized over dates: each date's rows are exactly those ``compute_signals`` returns for it;
    frames are sorted by as_of_date, then account_key."""
    _check_keys(account_keys)
    chosen = DEFINITIONS if definitions is None else definitions
    return _iter_chunks(engine, start, end, account_keys, CONTEXT, chosen, chunk_days=chunk_days)


def compute_signals_range(
    engine: Engine, start: date, end: date, account_keys: Sequence[str] | None = None, **options: Any
) -> pd.DataFrame:
    """The signals of every date ``start`` .. ``end`` in one frame; ``options`` are those of
    ``iter_signal_chunks`` (``chunk_days``, ``definitions``)."""
    frames = [frame for frame in iter_signal_chunks(engine, start, end, account_keys, **options) if len(frame)]
    if not frames:
        return empty_frame(options.get("definitions") or DEFINITIONS)
    return pd.concat(frames, ignore_index=True)


__all__ = [
    "ACCOUNT_COLUMNS",
    "CONTEXT",
    "DEFAULT_CHUNK_DAYS",
    "DEFINITIONS",
    "SIGNAL_COLUMNS",
    "compute_signals",
    "compute_signals_range",
    "iter_signal_chunks",
    "signal_keys",
]
