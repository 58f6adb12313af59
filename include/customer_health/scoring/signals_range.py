"""Point-in-time signals for many as-of dates at once: the vectorized path of history rebuilds.

``compute_signals(engine, D)`` (``signals.py``) answers one date with about fifteen SQL
aggregations. Rebuilding a year of history that way costs a year of those round trips. This
module returns, for every date of a range, **exactly** the frame ``compute_signals`` returns for
that date (same rows, same columns, the same floats), with a handful of SQL reads per range:

* **Facts are read once per range** (per account shard), already joined to their account
  through ``account_identity_map`` in SQL, with the very join expressions of ``signals.py``.
  Daily product usage and core-feature usage are read for the range plus its 90-day look-back.
* **Every point-in-time rule becomes a day interval.** Each rule of ``signals.py`` compares a
  record's stamp with a midnight derived from D (the end of D, the start of a window), so on
  whole days it reads ``day(stamp) <= D`` or ``day(stamp) >= D - W + 1``; a record counts for D
  exactly when D lies in an interval computed from its own stamps. Counts and integer sums over
  (date, account) are then additions over those intervals (``numpy.bincount``), and the window
  sums of daily usage are differences of per-account prefix sums.
* **Order statistics** (the latest NPS answer per contact, the latest license invoice per
  subscription, the median resolution time, the last executive touch) are computed per
  (date, account) from the records valid on that date, as the SQL does.
* **Chunks.** Dates are processed ``chunk_days`` at a time (memory stays bounded: a chunk's
  dense arrays are accounts x chunk days); ``iter_signal_chunks`` yields one frame per chunk.

Assembly (seats and ARR, rates over customer days, trends, NaN-versus-zero) repeats the formulas
of ``signals.py`` operation for operation, vectorized over (date, account) pairs.
``tests/integration/test_signals_range.py`` holds the two paths equal on every date of a range,
on SQLite and PostgreSQL.

Known difference: when two records tie on their ordering stamp (two invoices of one subscription
created in the same microsecond, two NPS answers of one contact at the same instant), SQL breaks
the tie by ``id`` in the database's collation and this module by ``id`` in code-point order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Date, DateTime, Engine, Select, String, and_, cast, func, select, true, type_coerce

from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.scoring.signals import (
    ACCOUNT_COLUMNS,
    ENGAGEMENT_TREND_CURRENT_DAYS,
    EXEC_RECENCY_CAP_DAYS,
    HALF_YEAR_TREND_CURRENT_DAYS,
    HIGH_PRIORITIES,
    INVOICE_STATUSES_NOT_BILLED,
    MIN_SOLVED_TICKETS_FOR_TREND,
    OPEN_TASK_STATUSES,
    SIGNAL_COLUMNS,
    _empty_frame,
)
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

DEFAULT_CHUNK_DAYS = 31
_EPOCH = np.datetime64("1970-01-01", "D")
_NEVER = np.iinfo(np.int64).max // 4  # an interval bound "forever"
_SQL_KEY_LIMIT = 10_000  # above this many shard keys, filter in pandas (SQLite parameter cap)
_PERIODS_PER_YEAR = {"day": 365.0, "week": 52.0, "month": 12.0, "year": 1.0}

W_LOGIN = SIGNALS["login_frequency"].window_days
W_DEPTH = SIGNALS["feature_depth"].window_days
W_BREADTH = SIGNALS["feature_breadth"].window_days
W_ENGAGEMENT = SIGNALS["engagement_trend"].window_days
W_SEVERITY = SIGNALS["severity_mix"].window_days
W_HALF = SIGNALS["howto_complaint_ratio"].window_days
W_RESOLUTION = SIGNALS["resolution_time_trend"].window_days
W_CSAT = SIGNALS["csat"].window_days
W_PAYMENT = SIGNALS["payment_timeliness"].window_days
W_FAILURES = SIGNALS["payment_failures"].window_days
W_CONTRACT = SIGNALS["contract_value_change"].window_days
W_USAGE_BILLING = SIGNALS["usage_billing_trend"].window_days
W_NPS = SIGNALS["nps"].window_days
W_OUTREACH = SIGNALS["outreach_response"].window_days


# --------------------------------------------------------------------------- day numbers
def day_number(value: date) -> int:
    """Days since 1970-01-01 (the integer day axis every interval here lives on)."""
    return int((np.datetime64(value, "D") - _EPOCH).astype(np.int64))


def _day_of(value: int) -> date:
    return (_EPOCH + np.timedelta64(int(value), "D")).astype(object)


def _days(column: pd.Series) -> np.ndarray:
    """The calendar day of each stamp as a day number (float; NaN where the stamp is NULL).

    Every point-in-time rule compares a stamp with a midnight: ``stamp < midnight(X)`` holds
    exactly when ``day(stamp) < X``, so whole days are all the rules need.
    """
    stamps = pd.to_datetime(column, errors="coerce")
    days = stamps.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    out = (days - _EPOCH).astype(np.int64).astype(float)
    out[pd.isna(stamps).to_numpy()] = np.nan
    return out


def _nanos(column: pd.Series) -> np.ndarray:
    """Stamps as int64 nanoseconds (ordering only; NULL sorts first)."""
    stamps = pd.to_datetime(column, errors="coerce")
    values = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return values


def _alive_until(is_deleted: pd.Series, updated_at: pd.Series) -> np.ndarray:
    """The last day D at which a record still existed (``signals._existed``): forever when not
    deleted; when deleted, the day before its deletion stamp (it is present at D when the
    deletion came after the end of D). NULL ``is_deleted`` only counts through the stamp."""
    flag = is_deleted.astype(object)
    not_deleted = np.array([v is not None and not pd.isna(v) and not bool(v) for v in flag], dtype=bool)
    updated = _days(updated_at)
    until = np.where(np.isnan(updated), -np.inf, updated - 1)
    return np.where(not_deleted, np.inf, until)


def _truthy(column: pd.Series) -> np.ndarray:
    """SQL ``col = true``: NULL is not true."""
    return np.array([v is not None and not (isinstance(v, float) and np.isnan(v)) and bool(v) for v in column], dtype=bool)


def _weekday(days: np.ndarray) -> np.ndarray:
    """Monday-Friday on the day-number axis (1970-01-01 was a Thursday)."""
    return ((days.astype(np.int64) + 3) % 7) < 5


# --------------------------------------------------------------------------- SQL reads
def _read(conn: Any, stmt: Select) -> pd.DataFrame:
    """Run ``stmt`` into a frame, column by column.

    On SQLite, dates and timestamps come back as their stored ISO text (SQLAlchemy would parse
    each value in Python; pandas parses whole columns at once). Stamps are only ever turned into
    day numbers and orderings here, which the text gives exactly.
    """
    if conn.dialect.name == "sqlite":
        stmt = stmt.with_only_columns(
            *[
                type_coerce(c, String).label(c.name) if isinstance(c.type, Date | DateTime) else c
                for c in stmt.selected_columns
            ]
        )
    result = conn.execute(stmt)
    keys = list(result.keys())
    # The driver's own rows: SQLAlchemy's per-row processing is skipped (dates arrive as text on
    # SQLite, booleans as 0/1; every reader below converts whole columns itself).
    rows = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in keys]
    return pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in zip(keys, columns, strict=True)})


def _m(system: str) -> Any:
    return account_identity_map.alias(f"map_{system}")


def _restrict(stmt: Select, key_column: Any, keys: Sequence[str] | None) -> Select:
    if keys is not None and len(keys) <= _SQL_KEY_LIMIT:
        return stmt.where(key_column.in_(list(keys)))
    return stmt


@dataclass
class _Facts:
    """Every fact the range needs, read once, one row per source record (joined to its account)."""

    accounts: pd.DataFrame
    subscriptions: pd.DataFrame
    license_invoices: pd.DataFrame
    product_presence: pd.DataFrame
    stripe_presence: pd.DataFrame
    usage: pd.DataFrame
    feature_use: pd.DataFrame
    features: pd.DataFrame
    tickets: pd.DataFrame
    ratings: pd.DataFrame
    invoices: pd.DataFrame
    disputes: pd.DataFrame
    nps: pd.DataFrame
    tasks: pd.DataFrame


def _load_facts(engine: Engine, first: int, last: int, keys: Sequence[str] | None) -> _Facts:
    """Read the facts of the days ``first`` .. ``last`` (day numbers) and their look-backs."""
    oldest_usage = _day_of(first - max(W_ENGAGEMENT, W_BREADTH, W_LOGIN) + 1)
    newest = _day_of(last)
    sf, cw = raw_sf_account, account_crosswalk
    accounts = _restrict(
        select(
            sf.c.id.label("account_key"),
            sf.c.plan,
            sf.c.seats.label("sf_seats"),
            sf.c.arr.label("sf_arr"),
            sf.c.customer_since,
            func.coalesce(cw.c.parent_account_key, sf.c.parent_id).label("parent_account_key"),
            sf.c.owner_id,
            sf.c.is_deleted,
            sf.c.source_updated_at,
        )
        .select_from(sf.outerjoin(cw, cw.c.account_key == sf.c.id))
        .where(sf.c.customer_since.is_not(None), sf.c.customer_since <= newest),
        sf.c.id,
        keys,
    )
    s, ms = raw_stripe_subscription, _m("stripe")
    subscriptions = _restrict(
        select(
            ms.c.account_key,
            s.c.id.label("subscription_id"),
            s.c.unit_amount,
            s.c.interval,
            s.c.created_at,
            s.c.canceled_at,
            s.c.cancel_at_period_end,
            s.c.current_period_end,
            s.c.is_deleted,
            s.c.source_updated_at,
        ).select_from(s.join(ms, and_(ms.c.system == "stripe", ms.c.source_id == s.c.customer_id))),
        ms.c.account_key,
        keys,
    )
    i = raw_stripe_invoice
    recurring = i.c.subtotal - func.coalesce(i.c.usage_amount, 0)
    license_invoices = select(
        i.c.id, i.c.subscription_id, recurring.label("recurring_cents"), i.c.created_at, i.c.is_deleted,
        i.c.source_updated_at,
    ).where(
        i.c.created_at.is_not(None),
        i.c.subscription_id.is_not(None),
        recurring > 0,
        func.coalesce(i.c.status, "") .not_in(INVOICE_STATUSES_NOT_BILLED),
    )  # fmt: skip
    mp, p = _m("product"), raw_product_account
    product_presence = _restrict(
        select(mp.c.account_key, p.c.created_at)
        .select_from(mp.outerjoin(p, p.c.id == mp.c.source_id))
        .where(mp.c.system == "product"),
        mp.c.account_key,
        keys,
    )
    mc, c = _m("stripe"), raw_stripe_customer
    stripe_presence = _restrict(
        select(mc.c.account_key, c.c.created_at)
        .select_from(mc.outerjoin(c, c.c.id == mc.c.source_id))
        .where(mc.c.system == "stripe"),
        mc.c.account_key,
        keys,
    )
    u, mu = raw_product_usage_daily, _m("product")
    usage = _restrict(
        select(mu.c.account_key, u.c.day, u.c.logins, u.c.active_users)
        .select_from(u.join(mu, and_(mu.c.system == "product", mu.c.source_id == u.c.account_id)))
        .where(u.c.day >= oldest_usage, u.c.day <= newest),
        mu.c.account_key,
        keys,
    )
    fd, f, mf = raw_product_feature_daily, raw_product_feature, _m("product")
    feature_use = _restrict(
        select(mf.c.account_key, fd.c.feature_key, fd.c.day, fd.c.events)
        .select_from(
            fd.join(mf, and_(mf.c.system == "product", mf.c.source_id == fd.c.account_id)).join(
                f, and_(f.c.feature_key == fd.c.feature_key, f.c.is_core == true())
            )
        )
        .where(fd.c.day >= _day_of(first - W_BREADTH + 1), fd.c.day <= newest),
        mf.c.account_key,
        keys,
    )
    features = select(f.c.feature_key, f.c.is_core, f.c.is_deleted, f.c.source_updated_at)
    t, mz = raw_zd_ticket, _m("zendesk")
    tickets = _restrict(
        select(
            mz.c.account_key, t.c.id, t.c.priority, t.c.status, t.c.category, t.c.created_at, t.c.solved_at,
            t.c.reopens, t.c.full_resolution_minutes, t.c.is_deleted, t.c.source_updated_at,
        ).select_from(t.join(mz, and_(mz.c.system == "zendesk", mz.c.source_id == cast(t.c.organization_id, String)))),
        mz.c.account_key,
        keys,
    )  # fmt: skip
    r, tr, mr = raw_zd_satisfaction_rating, raw_zd_ticket.alias("rated_ticket"), _m("zendesk")
    org = func.coalesce(r.c.organization_id, tr.c.organization_id)
    ratings = _restrict(
        select(mr.c.account_key, r.c.score, r.c.created_at, r.c.is_deleted, r.c.source_updated_at).select_from(
            r.outerjoin(tr, tr.c.id == r.c.ticket_id).join(
                mr, and_(mr.c.system == "zendesk", mr.c.source_id == cast(org, String))
            )
        ),
        mr.c.account_key,
        keys,
    )
    mi = _m("stripe")
    invoices = _restrict(
        select(
            mi.c.account_key, i.c.usage_amount, i.c.attempt_count, i.c.created_at, i.c.due_date, i.c.paid_at,
            i.c.is_deleted, i.c.source_updated_at,
        )
        .select_from(i.join(mi, and_(mi.c.system == "stripe", mi.c.source_id == i.c.customer_id)))
        .where(func.coalesce(i.c.status, "").not_in(INVOICE_STATUSES_NOT_BILLED)),
        mi.c.account_key,
        keys,
    )  # fmt: skip
    d, di, md = raw_stripe_dispute, raw_stripe_invoice.alias("disputed_invoice"), _m("stripe")
    disputes = _restrict(
        select(md.c.account_key, d.c.id, d.c.created_at, d.c.is_deleted, d.c.source_updated_at).select_from(
            d.join(di, di.c.charge_id == d.c.charge_id).join(
                md, and_(md.c.system == "stripe", md.c.source_id == di.c.customer_id)
            )
        ),
        md.c.account_key,
        keys,
    )
    n, mn = raw_sf_nps_response, _m("salesforce")
    nps_key = func.coalesce(mn.c.account_key, n.c.account_id)
    nps = _restrict(
        select(
            nps_key.label("account_key"), func.coalesce(n.c.contact_id, n.c.id).label("voice"), n.c.id, n.c.score,
            n.c.responded_at, n.c.is_deleted, n.c.source_updated_at,
        )
        .select_from(n.outerjoin(mn, and_(mn.c.system == "salesforce", mn.c.source_id == n.c.account_id)))
        .where(n.c.score.is_not(None), n.c.responded_at >= datetime.combine(_day_of(first - W_NPS + 1), time())),
        nps_key,
        keys,
    )  # fmt: skip
    tk, mt = raw_sf_task, _m("salesforce")
    task_key = func.coalesce(mt.c.account_key, tk.c.account_id)
    tasks = _restrict(
        select(
            task_key.label("account_key"), tk.c.status, tk.c.activity_date, tk.c.is_executive_touch,
            tk.c.outreach_responded, tk.c.created_at, tk.c.is_deleted, tk.c.source_updated_at,
        )
        .select_from(tk.outerjoin(mt, and_(mt.c.system == "salesforce", mt.c.source_id == tk.c.account_id)))
        .where(tk.c.created_at.is_not(None), tk.c.activity_date <= newest),
        task_key,
        keys,
    )  # fmt: skip
    with engine.connect() as conn:
        loaded = {
            name: _read(conn, stmt)
            for name, stmt in {
                "accounts": accounts, "subscriptions": subscriptions, "license_invoices": license_invoices,
                "product_presence": product_presence, "stripe_presence": stripe_presence, "usage": usage,
                "feature_use": feature_use, "features": features, "tickets": tickets, "ratings": ratings,
                "invoices": invoices, "disputes": disputes, "nps": nps, "tasks": tasks,
            }.items()
        }  # fmt: skip
    if keys is not None and len(keys) > _SQL_KEY_LIMIT:
        wanted = set(keys)
        for name, frame in loaded.items():
            if "account_key" in frame.columns:
                loaded[name] = frame[frame["account_key"].isin(wanted)].reset_index(drop=True)
    return _Facts(**loaded)


# --------------------------------------------------------------------------- the (account, day) grid
@dataclass
class _Grid:
    """Accounts x chunk days: dense per-(account, date) sums live on it."""

    keys: np.ndarray  # account keys, sorted
    first: int  # day number of the chunk's first date
    n_days: int

    def __post_init__(self) -> None:
        self.index = pd.Index(self.keys)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.keys), self.n_days

    def rows(self, account_keys: pd.Series) -> np.ndarray:
        return self.index.get_indexer(account_keys.to_numpy(dtype=object))

    def total(self, rows: np.ndarray, days: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Sum ``weights`` (default 1) into the (account, date) cells ``rows`` x ``days``."""
        flat = rows * self.n_days + (days - self.first)
        size = len(self.keys) * self.n_days
        return np.bincount(flat, weights=weights, minlength=size).reshape(self.shape)

    def intervals(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expand facts valid on days ``lo .. hi`` (inclusive) clipped to the chunk: (fact, day)."""
        lo = np.maximum(np.nan_to_num(lo, nan=np.inf, posinf=np.inf), self.first)
        hi = np.minimum(np.nan_to_num(hi, nan=-np.inf, neginf=-np.inf), self.first + self.n_days - 1)
        length = np.where(hi >= lo, hi - lo + 1, 0).astype(np.int64)
        fact = np.repeat(np.arange(len(lo)), length)
        if not len(fact):
            return fact, np.zeros(0, dtype=np.int64)
        starts = np.repeat(np.where(length > 0, lo, 0).astype(np.int64), length)
        offsets = np.arange(len(fact)) - np.repeat(np.cumsum(length) - length, length)
        return fact, starts + offsets


_STAMPS = (
    "customer_since", "source_updated_at", "created_at", "canceled_at", "current_period_end", "solved_at",
    "due_date", "paid_at", "responded_at", "activity_date", "day",
)  # fmt: skip


def _prepare(facts: _Facts) -> _Facts:
    """Derive, once per range, each record's account row (in sorted account order), the day
    number of each stamp (``d_<column>``) and the last day it existed (``alive``)."""
    facts.accounts = facts.accounts.sort_values("account_key", kind="stable").reset_index(drop=True)
    index = pd.Index(facts.accounts["account_key"].to_numpy(dtype=object))
    for name in facts.__dataclass_fields__:
        frame = getattr(facts, name)
        extra: dict[str, np.ndarray] = {}
        if "account_key" in frame.columns:
            extra["row"] = index.get_indexer(frame["account_key"].to_numpy(dtype=object))
        for column in _STAMPS:
            if column in frame.columns:
                extra[f"d_{column}"] = _days(frame[column])
        if "is_deleted" in frame.columns:
            extra["alive"] = _alive_until(frame["is_deleted"], frame["source_updated_at"])
        frame = frame.assign(**extra)
        if "row" in frame.columns:
            frame = frame[frame["row"] >= 0].reset_index(drop=True)
        setattr(facts, name, frame)
    return facts


def _keyed(frame: pd.DataFrame, grid: _Grid) -> tuple[pd.DataFrame, np.ndarray]:
    """The records of the grid's accounts (all of them: rows were resolved in ``_prepare``)."""
    return frame, frame["row"].to_numpy(dtype=np.int64)


# --------------------------------------------------------------------------- one chunk
def _chunk(facts: _Facts, first: int, last: int) -> pd.DataFrame:
    """The signal frame of every date ``first`` .. ``last`` (day numbers), sorted by date, account."""
    acc = facts.accounts
    if acc.empty:
        return _empty_frame()
    acc = acc.sort_values("account_key", kind="stable").reset_index(drop=True)
    grid = _Grid(acc["account_key"].to_numpy(dtype=object), first, last - first + 1)
    day_axis = np.arange(first, last + 1)

    # Who could be a customer at D (the `accounts` CTE), then churn from the subscriptions.
    since = acc["d_customer_since"].to_numpy()
    alive = acc["alive"].to_numpy()
    candidate = (since[:, None] <= day_axis[None, :]) & (day_axis[None, :] <= alive[:, None])
    subs_ended, subs_live = _subscription_state(facts.subscriptions, grid)
    churned = (subs_ended > 0) & (subs_live == 0)
    a_idx, d_idx = np.nonzero(candidate & ~churned)
    if not len(a_idx):
        return _empty_frame()
    order = np.lexsort((a_idx, d_idx))  # by date, then account (keys are sorted)
    a_idx, d_idx = a_idx[order], d_idx[order]
    day = d_idx + first

    def at(matrix: np.ndarray) -> np.ndarray:
        return matrix[a_idx, d_idx]

    out = pd.DataFrame(
        {
            "account_key": grid.keys[a_idx],
            "as_of_date": [_day_of(v) for v in day] if len(day) < 64 else _dates(day),
            "plan": acc["plan"].to_numpy(dtype=object)[a_idx],
            "customer_since": acc["customer_since"].map(_as_date).to_numpy(dtype=object)[a_idx],
            "parent_account_key": acc["parent_account_key"].to_numpy(dtype=object)[a_idx],
            "owner_id": acc["owner_id"].to_numpy(dtype=object)[a_idx],
        }
    )
    tenure = (day - since[a_idx]).astype(int)
    out["tenure_days"] = tenure

    # Seats and ARR from the live subscriptions' latest license invoices, else the Account.
    lines_now = _contract_lines(facts, grid, day_axis)
    seats_now, arr_now, recurring_now, has_lines_now = lines_now
    _, _, recurring_before, has_before = _contract_lines(facts, grid, day_axis - W_CONTRACT)
    stripe_seats = np.where(at(has_lines_now), at(seats_now), np.nan)
    stripe_arr = np.where(at(has_lines_now), at(arr_now), np.nan)
    sf_seats = pd.to_numeric(acc["sf_seats"], errors="coerce").to_numpy(dtype=float)[a_idx]
    sf_arr = pd.to_numeric(acc["sf_arr"], errors="coerce").to_numpy(dtype=float)[a_idx]
    seats = np.where(stripe_seats > 0, stripe_seats, sf_seats)
    out["seats"] = seats
    out["arr"] = np.where(stripe_arr > 0, stripe_arr, sf_arr)

    signals: dict[str, np.ndarray] = {}
    _engagement(signals, facts, grid, at, a_idx, day, since, tenure, seats)
    _support(signals, facts, grid, at)
    _financial(signals, facts, grid, at, tenure, recurring_now, has_lines_now, recurring_before, has_before)
    _sentiment(signals, facts, grid, at, day, tenure)
    for key in SIGNAL_COLUMNS:
        out[key] = signals[key].astype(float)
    return out[list(ACCOUNT_COLUMNS) + list(SIGNAL_COLUMNS)]


def _dates(days: np.ndarray) -> np.ndarray:
    """Day numbers as ``datetime.date`` objects (one conversion per distinct day)."""
    distinct, inverse = np.unique(days, return_inverse=True)
    values = np.array([_day_of(v) for v in distinct], dtype=object)
    return values[inverse]


def _as_date(value: Any) -> date | None:
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    den = np.asarray(denominator, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(numerator, dtype=float) / np.where(den > 0, den, np.nan)


def _fractional_change(current: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    base = np.asarray(baseline, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.asarray(current, dtype=float) / np.where(base > 0, base, np.nan)) - 1.0


# --------------------------------------------------------------------------- subscriptions, contracts
def _subscription_end(subs: pd.DataFrame) -> np.ndarray:
    """Day of ``signals._subscription_end`` (NaN: not canceled)."""
    canceled = _nanos(subs["canceled_at"])
    period_end = _nanos(subs["current_period_end"])
    canceled_null = pd.to_datetime(subs["canceled_at"]).isna().to_numpy()
    period_null = pd.to_datetime(subs["current_period_end"]).isna().to_numpy()
    at_period_end = _truthy(subs["cancel_at_period_end"]) & ~period_null & (period_end > canceled)
    ended = np.where(at_period_end, subs["d_current_period_end"].to_numpy(), subs["d_canceled_at"].to_numpy())
    return np.where(canceled_null, np.nan, ended)


def _subscription_state(subs: pd.DataFrame, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    subs, rows = _keyed(subs, grid)
    created = subs["d_created_at"].to_numpy()
    alive = subs["alive"].to_numpy()
    ended = _subscription_end(subs)
    fact, day = grid.intervals(created, alive)  # created by the end of D, still present at D
    e = ended[fact]
    ended_by_d = ~np.isnan(e) & (e <= day)
    return (
        grid.total(rows[fact], day, ended_by_d.astype(float)),
        grid.total(rows[fact], day, (~ended_by_d).astype(float)),
    )


def _contract_lines(
    facts: _Facts, grid: _Grid, days: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (account, chunk date) for the view dates ``days``: summed Stripe seats, ARR and
    recurring cents of the subscriptions live at the view date, each from its latest license
    invoice as of that date; and whether the account had any such line."""
    shape = grid.shape
    subs, rows = _keyed(facts.subscriptions, grid)
    seats = np.full(shape, np.nan)
    arr = np.full(shape, np.nan)
    recurring = np.full(shape, np.nan)
    has = np.zeros(shape, dtype=bool)
    if subs.empty:
        return seats, arr, recurring, has
    inv = facts.license_invoices
    sub_index = pd.Index(subs["subscription_id"].to_numpy(dtype=object).tolist())
    inv = inv[inv["subscription_id"].isin(set(sub_index))].reset_index(drop=True)
    # Every (subscription, view date) pair of the chunk.
    n_sub, n_day = len(subs), len(days)
    s_idx = np.repeat(np.arange(n_sub), n_day)
    view = np.tile(days, n_sub)
    col = np.tile(np.arange(n_day), n_sub)
    created = subs["d_created_at"].to_numpy()[s_idx]
    alive = subs["alive"].to_numpy()[s_idx]
    ended = _subscription_end(subs)[s_idx]
    live = (created <= view) & (view <= alive) & (np.isnan(ended) | (ended > view))
    s_idx, view, col = s_idx[live], view[live], col[live]
    if not len(s_idx) or inv.empty:
        return seats, arr, recurring, has
    # The latest license invoice of the subscription as of the view date, skipping deleted ones.
    inv_sub = pd.Index(subs["subscription_id"].to_numpy(dtype=object)).get_indexer(
        inv["subscription_id"].to_numpy(dtype=object)
    )
    order = np.lexsort((inv["id"].astype(str).to_numpy(), _nanos(inv["created_at"]), inv_sub))
    inv_sub = inv_sub[order]
    inv_day = inv["d_created_at"].to_numpy()[order]
    inv_alive = inv["alive"].to_numpy()[order]
    inv_recurring = inv["recurring_cents"].to_numpy(dtype=float)[order]
    span = np.int64(1 << 32)
    keys = inv_sub.astype(np.int64) * span + inv_day.astype(np.int64)
    pos = np.searchsorted(keys, s_idx.astype(np.int64) * span + view.astype(np.int64), side="right") - 1
    found = np.full(len(s_idx), -1, dtype=np.int64)
    pending = np.arange(len(s_idx))
    while len(pending):
        p = pos[pending]
        ok = (p >= 0) & (inv_sub[np.clip(p, 0, None)] == s_idx[pending])
        pending, p = pending[ok], p[ok]
        good = inv_alive[p] >= view[pending]
        found[pending[good]] = p[good]
        pending = pending[~good]
        pos[pending] -= 1
    has_line = found >= 0
    s_idx, col, found = s_idx[has_line], col[has_line], found[has_line]
    recurring_cents = np.clip(inv_recurring[found], 0, None)
    unit = pd.to_numeric(subs["unit_amount"], errors="coerce").to_numpy(dtype=float)[s_idx]
    per_year = subs["interval"].map(_PERIODS_PER_YEAR).to_numpy(dtype=float)[s_idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        line_seats = np.round(recurring_cents / np.where(unit > 0, unit, np.nan))
    line_arr = recurring_cents * per_year / 100.0
    parts = pd.DataFrame(
        {"row": rows[s_idx], "col": col, "seats": line_seats, "arr": line_arr, "recurring": recurring_cents}
    )
    sums = parts.groupby(["row", "col"], sort=False).sum(min_count=1)
    r = sums.index.get_level_values(0).to_numpy()
    c = sums.index.get_level_values(1).to_numpy()
    seats[r, c] = sums["seats"].to_numpy()
    arr[r, c] = sums["arr"].to_numpy()
    recurring[r, c] = sums["recurring"].to_numpy()
    has[r, c] = True
    return seats, arr, recurring, has


# --------------------------------------------------------------------------- engagement
def _presence(frame: pd.DataFrame, grid: _Grid) -> np.ndarray:
    """(account, date): a mapped record existed by the end of D (NULL creation: always)."""
    frame, rows = _keyed(frame, grid)
    created = frame["d_created_at"].to_numpy()
    created = np.where(np.isnan(created), -np.inf, created)
    fact, day = grid.intervals(created, np.full(len(frame), np.inf))
    return grid.total(rows[fact], day) > 0


def _engagement(signals, facts, grid, at, a_idx, day, since_grid, tenure, seats) -> None:
    """Login frequency, active-user ratio, feature breadth and depth, engagement trend."""
    since = since_grid[a_idx]
    n_acc, n_days = grid.shape
    first = grid.first
    mapped = at(_presence(facts.product_presence, grid))

    # Daily usage on a dense (account, day) axis from the oldest look-back day; prefix sums.
    lookback = W_ENGAGEMENT - 1
    origin = first - lookback
    width = n_days + lookback
    usage, rows = _keyed(facts.usage, grid)
    u_day = np.nan_to_num(usage["d_day"].to_numpy(), nan=-1e9).astype(np.int64) - origin
    keep = (u_day >= 0) & (u_day < width) & (u_day + origin >= since_grid[rows])
    rows, u_day = rows[keep], u_day[keep]
    logins = pd.to_numeric(usage["logins"], errors="coerce").fillna(0).to_numpy(dtype=float)[keep]
    active = pd.to_numeric(usage["active_users"], errors="coerce").fillna(0).to_numpy(dtype=float)[keep]
    weekday_active = np.where(_weekday(u_day + origin), active, 0.0)

    def prefix(values: np.ndarray) -> np.ndarray:
        dense = np.bincount(rows * width + u_day, weights=values, minlength=n_acc * width).reshape(n_acc, width)
        return np.concatenate([np.zeros((n_acc, 1)), np.cumsum(dense, axis=1)], axis=1)

    p_logins, p_active, p_weekday = prefix(logins), prefix(active), prefix(weekday_active)

    def window(p: np.ndarray, start_offset: int, end_offset: int) -> np.ndarray:
        """Sum over days D - start_offset .. D - end_offset (inclusive), per (account, date)."""
        lo = day - start_offset - origin
        hi = day - end_offset - origin
        return p[a_idx, hi + 1] - p[a_idx, np.maximum(lo, 0)]

    logins_login_window = window(p_logins, W_LOGIN - 1, 0)
    weekday_active_users = window(p_weekday, W_LOGIN - 1, 0)
    active_user_days = window(p_active, W_DEPTH - 1, 0)
    logins_current = window(p_logins, ENGAGEMENT_TREND_CURRENT_DAYS - 1, 0)
    logins_baseline = window(p_logins, W_ENGAGEMENT - 1, ENGAGEMENT_TREND_CURRENT_DAYS)

    core_used, core_events, core_count = _core_features(facts, grid, since_grid)
    core_used, core_events = at(core_used), at(core_events)
    nan_unless_mapped = np.where(mapped, 1.0, np.nan)
    logins_login_window = logins_login_window * nan_unless_mapped
    weekday_active_users = weekday_active_users * nan_unless_mapped
    active_user_days = active_user_days * nan_unless_mapped
    logins_current = logins_current * nan_unless_mapped
    logins_baseline = logins_baseline * nan_unless_mapped
    core_used = core_used * nan_unless_mapped
    core_events = core_events * nan_unless_mapped

    rate_start = np.maximum(since, day - (W_LOGIN - 1))
    end_exclusive = day + 1
    n_rate_days = (end_exclusive - rate_start).astype(int).astype(float)
    weekdays = np.busday_count(
        (_EPOCH + rate_start.astype(np.int64)).astype("datetime64[D]"),
        (_EPOCH + end_exclusive.astype(np.int64)).astype("datetime64[D]"),
    ).astype(float)
    signals["login_frequency"] = _ratio(logins_login_window, (n_rate_days / 7.0) * seats)
    signals["active_user_ratio"] = _ratio(weekday_active_users, weekdays * seats)
    per_date_core = core_count[day - first]
    with np.errstate(divide="ignore", invalid="ignore"):
        signals["feature_breadth"] = np.where(per_date_core > 0, core_used / per_date_core, np.nan)
    signals["feature_depth"] = _ratio(core_events, active_user_days)
    baseline_months = (W_ENGAGEMENT - ENGAGEMENT_TREND_CURRENT_DAYS) / ENGAGEMENT_TREND_CURRENT_DAYS
    trend = _fractional_change(logins_current, logins_baseline / baseline_months)
    signals["engagement_trend"] = np.where(tenure >= W_ENGAGEMENT - 1, trend, np.nan)


def _core_features(facts: _Facts, grid: _Grid, since: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(account, date) distinct core features used and core events over the feature window, and
    per date the number of core features existing at D."""
    n_acc, n_days = grid.shape
    first = grid.first
    feats = facts.features
    core = feats[_truthy(feats["is_core"])].reset_index(drop=True)
    day_axis = np.arange(first, first + n_days)
    f_alive = core["alive"].to_numpy()
    exists = day_axis[None, :] <= f_alive[:, None]  # (feature, date)
    core_count = exists.sum(axis=0)
    used = np.zeros(grid.shape)
    events_sum = np.zeros(grid.shape)
    use, rows = _keyed(facts.feature_use, grid)
    if use.empty or core.empty:
        return used, events_sum, core_count
    f_idx = pd.Index(core["feature_key"].to_numpy(dtype=object)).get_indexer(use["feature_key"].to_numpy(dtype=object))
    origin = first - (W_BREADTH - 1)
    width = n_days + W_BREADTH - 1
    u_day = np.nan_to_num(use["d_day"].to_numpy(), nan=-1e9).astype(np.int64)
    keep = (f_idx >= 0) & (u_day >= origin) & (u_day - origin < width) & (u_day >= since[rows])
    rows, f_idx, u_day = rows[keep], f_idx[keep], u_day[keep] - origin
    events = pd.to_numeric(use["events"], errors="coerce").to_numpy(dtype=float)[keep]
    positive = (np.nan_to_num(events, nan=0.0) > 0).astype(float)
    events = np.nan_to_num(events, nan=0.0)
    n_feat = len(core)
    cells = n_acc * n_feat * width
    flat = (rows * n_feat + f_idx) * width + u_day
    for values, target in ((events, "events"), (positive, "positive")):
        dense = np.bincount(flat, weights=values, minlength=cells).reshape(n_acc, n_feat, width)
        prefix = np.concatenate([np.zeros((n_acc, n_feat, 1)), np.cumsum(dense, axis=2)], axis=2)
        del dense
        # Window D-29 .. D: prefix index (D - origin + 1) minus (D - origin - 29).
        hi = np.arange(n_days) + W_BREADTH
        win = prefix[:, :, hi] - prefix[:, :, hi - W_BREADTH]  # (acc, feat, date)
        win = np.where(exists[None, :, :], win, 0.0)
        if target == "events":
            events_sum = win.sum(axis=1)
        else:
            used = (win > 0).sum(axis=1).astype(float)
    return used, events_sum, core_count


# --------------------------------------------------------------------------- support
def _support(signals, facts, grid, at) -> None:
    t, rows = _keyed(facts.tickets, grid)
    created = t["d_created_at"].to_numpy()
    solved = t["d_solved_at"].to_numpy()
    alive = t["alive"].to_numpy()
    solved_null = np.isnan(solved)
    # Counted while created by the end of D, present at D, and not solved before the 180-day window.
    hi = np.where(solved_null, np.inf, solved + W_HALF - 1)
    fact, day = grid.intervals(created, np.minimum(hi, alive))
    r = rows[fact]
    c_day, s_day, s_null = created[fact], solved[fact], solved_null[fact]
    status = t["status"].to_numpy(dtype=object)[fact]
    status_open = np.array([s is None or s not in ("solved", "closed") for s in status], dtype=bool)
    open_at_d = (~s_null & (s_day > day)) | (s_null & status_open)
    recent = c_day >= day - (W_SEVERITY - 1)
    high = np.isin(t["priority"].to_numpy(dtype=object), list(HIGH_PRIORITIES))[fact]
    half = c_day >= day - (W_HALF - 1)
    category = t["category"].to_numpy(dtype=object)[fact]
    solved_by_d = ~s_null & (s_day >= day - (W_HALF - 1)) & (s_day <= day)
    reopens = pd.to_numeric(t["reopens"], errors="coerce").fillna(0).to_numpy(dtype=float)[fact]

    def total(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        w = mask.astype(float) if weights is None else np.where(mask, weights, 0.0)
        return at(grid.total(r, day, w))

    open_tickets = total(open_at_d)
    tickets_recent = total(recent)
    tickets_recent_high = total(recent & high)
    how_to = total(half & (category == "how_to"))
    complaint = total(half & (category == "complaint"))
    solved_half = total(solved_by_d)
    reopens_half = total(solved_by_d, reopens)
    signals["open_tickets"] = open_tickets
    severity = _ratio(tickets_recent_high, tickets_recent)
    signals["severity_mix"] = np.where(np.isnan(severity), 0.0, severity)
    signals["howto_complaint_ratio"] = _ratio(how_to, how_to + complaint)
    signals["reopen_rate"] = _ratio(reopens_half, solved_half)

    ratings, r_rows = _keyed(facts.ratings, grid)
    r_created = ratings["d_created_at"].to_numpy()
    r_alive = ratings["alive"].to_numpy()
    fact, day_r = grid.intervals(r_created, np.minimum(r_created + W_CSAT - 1, r_alive))
    score = ratings["score"].to_numpy(dtype=object)[fact]
    good = at(grid.total(r_rows[fact], day_r, (score == "good").astype(float)))
    bad = at(grid.total(r_rows[fact], day_r, (score == "bad").astype(float)))
    signals["csat"] = _ratio(good, good + bad)

    signals["resolution_time_trend"] = _resolution_trend(t, rows, solved, alive, grid, at)


def _resolution_trend(t, rows, solved, alive, grid, at) -> np.ndarray:
    """Median resolution minutes of the current and prior quarter per (account, date)."""
    minutes = pd.to_numeric(t["full_resolution_minutes"], errors="coerce").to_numpy(dtype=float)
    has = ~np.isnan(minutes) & ~np.isnan(solved)
    idx = np.nonzero(has)[0]
    fact, day = grid.intervals(solved[idx], np.minimum(solved[idx] + W_RESOLUTION - 1, alive[idx]))
    n_days = grid.n_days
    trend = np.full(grid.shape, np.nan)
    result = at(trend)
    if not len(fact):
        # No ticket solved in any window: the per-date SQL returns no medians (NaN everywhere).
        return result
    f = idx[fact]
    current = solved[f] >= day - (HALF_YEAR_TREND_CURRENT_DAYS - 1)
    cell = rows[f] * n_days + (day - grid.first)
    frame = pd.DataFrame({"cell": cell, "current": current, "minutes": minutes[f]})
    stats = frame.groupby(["cell", "current"], sort=False)["minutes"].agg(["median", "size"])
    cur = stats.xs(True, level="current") if True in stats.index.get_level_values(1) else stats.iloc[0:0]
    base = stats.xs(False, level="current") if False in stats.index.get_level_values(1) else stats.iloc[0:0]
    both = cur.join(base, lsuffix="_cur", rsuffix="_base", how="inner")
    enough = (both["size_cur"] >= MIN_SOLVED_TICKETS_FOR_TREND) & (both["size_base"] >= MIN_SOLVED_TICKETS_FOR_TREND)
    both = both[enough]
    values = _fractional_change(both["median_cur"].to_numpy(), both["median_base"].to_numpy())
    flat = trend.reshape(-1)
    flat[both.index.to_numpy(dtype=np.int64)] = values
    return at(flat.reshape(grid.shape))


# --------------------------------------------------------------------------- financial
def _financial(signals, facts, grid, at, tenure, recurring_now, has_now, recurring_before, has_before) -> None:
    inv, rows = _keyed(facts.invoices, grid)
    created = inv["d_created_at"].to_numpy()
    due_date = inv["d_due_date"].to_numpy()
    due = np.where(np.isnan(due_date), created, due_date)
    paid = inv["d_paid_at"].to_numpy()
    alive = inv["alive"].to_numpy()
    # Relevant while created by the end of D and created or due within the last 180 days.
    last_relevant = np.fmax(created, due_date) + W_PAYMENT - 1
    fact, day = grid.intervals(created, np.minimum(last_relevant, alive))
    c, d, p = created[fact], due[fact], paid[fact]
    in_window = (c >= day - (W_PAYMENT - 1)) | (due_date[fact] >= day - (W_PAYMENT - 1))
    r, day = rows[fact][in_window], day[in_window]
    c, d, p, f = c[in_window], d[in_window], p[in_window], fact[in_window]
    paid_by_d = ~np.isnan(p) & (p <= day)
    due_in_window = (d >= day - (W_PAYMENT - 1)) & (d <= day)
    on_time = paid_by_d & (p <= d)
    created_half = c >= day - (W_FAILURES - 1)
    attempts = pd.to_numeric(inv["attempt_count"], errors="coerce").to_numpy(dtype=float)[f]
    failed = created_half & ((paid_by_d & (attempts > 1)) | (~paid_by_d & (d <= day)))
    usage = pd.to_numeric(inv["usage_amount"], errors="coerce").fillna(0).to_numpy(dtype=float)[f]
    usage_current_start = day - (HALF_YEAR_TREND_CURRENT_DAYS - 1)

    def total(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        w = mask.astype(float) if weights is None else np.where(mask, weights, 0.0)
        return at(grid.total(r, day, w))

    invoices_due = total(due_in_window)
    invoices_on_time = total(due_in_window & on_time)
    invoices_failed = total(failed)
    usage_current = total(c >= usage_current_start, usage)
    usage_baseline = total(created_half & (c < usage_current_start), usage)

    disputes, d_rows = _keyed(facts.disputes, grid)
    disputes = disputes.assign(row=d_rows).drop_duplicates(["row", "id"])
    d_created = disputes["d_created_at"].to_numpy()
    d_alive = disputes["alive"].to_numpy()
    fact_d, day_d = grid.intervals(d_created, np.minimum(d_created + W_FAILURES - 1, d_alive))
    n_disputes = at(grid.total(disputes["row"].to_numpy()[fact_d], day_d))

    billed = at(_presence(facts.stripe_presence, grid))
    signals["payment_timeliness"] = _ratio(invoices_on_time, invoices_due)
    signals["payment_failures"] = np.where(billed, invoices_failed + n_disputes, np.nan)
    now = np.where(at(has_now), at(recurring_now), np.nan)
    before = np.where(at(has_before), at(recurring_before), np.nan)
    signals["contract_value_change"] = _fractional_change(np.nan_to_num(now, nan=0.0), before)
    covered = tenure >= W_USAGE_BILLING - 1
    trend = _fractional_change(usage_current, usage_baseline)
    signals["usage_billing_trend"] = np.where(covered & billed, trend, np.nan)


# --------------------------------------------------------------------------- sentiment
def _sentiment(signals, facts, grid, at, day, tenure) -> None:
    n_acc, n_days = grid.shape
    nps, rows = _keyed(facts.nps, grid)
    responded = nps["d_responded_at"].to_numpy()
    alive = nps["alive"].to_numpy()
    fact, nday = grid.intervals(responded, np.minimum(responded + W_NPS - 1, alive))
    if len(fact):
        # Each contact's latest answer valid at D: rank answers by (responded_at, id) per voice.
        rank = np.lexsort((nps["id"].astype(str).to_numpy(), _nanos(nps["responded_at"])))
        order = np.empty(len(nps), dtype=np.int64)
        order[rank] = np.arange(len(nps))
        voice = pd.factorize(nps["voice"].astype(str))[0]
        frame = pd.DataFrame(
            {"cell": rows[fact] * n_days + (nday - grid.first), "voice": voice[fact], "order": order[fact]}
        )
        latest = frame.groupby(["cell", "voice"], sort=False)["order"].max().to_numpy()
        cells = frame.groupby(["cell", "voice"], sort=False)["order"].max().index.get_level_values(0).to_numpy()
        score = pd.to_numeric(nps["score"], errors="coerce").to_numpy(dtype=float)[rank][latest]
        means = pd.Series(score).groupby(cells).mean()
        mean_grid = np.full(n_acc * n_days, np.nan)
        mean_grid[means.index.to_numpy()] = means.to_numpy()
        signals["nps"] = at(mean_grid.reshape(grid.shape))
    else:
        signals["nps"] = np.full(len(day), np.nan)

    tasks, t_rows = _keyed(facts.tasks, grid)
    activity = tasks["d_activity_date"].to_numpy()
    created = tasks["d_created_at"].to_numpy()
    valid_from = np.fmax(activity, created)  # activity_date <= D and created by the end of D
    alive = tasks["alive"].to_numpy()
    status = tasks["status"].to_numpy(dtype=object)
    happened = np.array([s is None or s not in OPEN_TASK_STATUSES for s in status], dtype=bool)
    executive = _truthy(tasks["is_executive_touch"]) & happened & ~np.isnan(activity)
    signals["exec_sponsor_recency"] = _exec_recency(
        executive, t_rows, activity, valid_from, alive, grid, at, day, tenure
    )

    responded_flag = tasks["outreach_responded"].astype(object)
    is_outreach = np.array([v is not None and not (isinstance(v, float) and np.isnan(v)) for v in responded_flag])
    answered_flag = _truthy(responded_flag)
    updated = tasks["d_source_updated_at"].to_numpy()
    idx = np.nonzero(is_outreach & ~np.isnan(activity))[0]
    fact, oday = grid.intervals(valid_from[idx], np.minimum(activity[idx] + W_OUTREACH - 1, alive[idx]))
    f = idx[fact]
    answered = answered_flag[f] & (np.isnan(updated[f]) | (updated[f] <= oday))
    sent = at(grid.total(t_rows[f], oday))
    replied = at(grid.total(t_rows[f], oday, answered.astype(float)))
    signals["outreach_response"] = _ratio(replied, sent)


def _exec_recency(executive, rows, activity, valid_from, alive, grid, at, day, tenure) -> np.ndarray:
    """Days since the last executive touch valid at D (capped), else tenure (capped)."""
    n_acc, n_days = grid.shape
    last_day = grid.first + n_days - 1
    last = np.full(grid.shape, -np.inf)
    idx = np.nonzero(executive & (valid_from <= last_day) & (alive >= grid.first))[0]
    # Records deleted inside the chunk are expanded day by day; the rest hold from valid_from on.
    ends_inside = alive[idx] < last_day
    lasting, ending = idx[~ends_inside], idx[ends_inside]
    if len(lasting):
        order = np.lexsort((valid_from[lasting], rows[lasting]))
        r, v, a = rows[lasting][order], valid_from[lasting][order], activity[lasting][order]
        running = pd.Series(a).groupby(r).cummax().to_numpy()
        span = np.int64(1 << 32)
        keys = r.astype(np.int64) * span + v.astype(np.int64)
        grid_rows = np.repeat(np.arange(n_acc), n_days)
        grid_days = np.tile(np.arange(grid.first, last_day + 1), n_acc)
        pos = np.searchsorted(keys, grid_rows.astype(np.int64) * span + grid_days, side="right") - 1
        ok = (pos >= 0) & (r[np.clip(pos, 0, None)] == grid_rows)
        flat = last.reshape(-1)
        flat[ok] = running[pos[ok]]
        last = flat.reshape(grid.shape)
    if len(ending):
        fact, eday = grid.intervals(valid_from[ending], alive[ending])
        cells = rows[ending][fact] * n_days + (eday - grid.first)
        flat = last.reshape(-1)
        np.maximum.at(flat, cells, activity[ending][fact])
        last = flat.reshape(grid.shape)
    touch = at(last)
    since_touch = np.where(np.isfinite(touch), day - touch, np.nan)
    recency = np.where(np.isnan(since_touch), tenure.astype(float), since_touch)
    return np.minimum(recency, float(EXEC_RECENCY_CAP_DAYS))


# --------------------------------------------------------------------------- public API
def iter_signal_chunks(
    engine: Engine,
    start: date,
    end: date,
    account_keys: Sequence[str] | None = None,
    *,
    chunk_days: int = DEFAULT_CHUNK_DAYS,
) -> Iterator[pd.DataFrame]:
    """Yield the signal frames of ``start`` .. ``end`` (inclusive), ``chunk_days`` dates at a time.

    Each frame holds, for each of its dates, exactly the rows ``compute_signals(engine, D,
    account_keys)`` returns, sorted by as_of_date then account_key.
    """
    if end < start:
        raise ValueError(f"signals range: end {end} is before start {start}; swap them")
    if chunk_days < 1:
        raise ValueError(f"chunk_days must be at least 1, got {chunk_days}")
    if account_keys is not None and isinstance(account_keys, str):
        raise TypeError(f"account_keys must be a sequence of account keys, not the string {account_keys!r}")
    first, last = day_number(start), day_number(end)
    facts = _load_facts(engine, first, last, None if account_keys is None else list(account_keys))
    facts = _prepare(facts)
    for chunk_first in range(first, last + 1, chunk_days):
        chunk_last = min(last, chunk_first + chunk_days - 1)
        yield _chunk(facts, chunk_first, chunk_last)


def compute_signals_range(
    engine: Engine,
    start: date,
    end: date,
    account_keys: Sequence[str] | None = None,
    *,
    chunk_days: int = DEFAULT_CHUNK_DAYS,
) -> pd.DataFrame:
    """Signals of every date ``start`` .. ``end`` in one frame (see ``iter_signal_chunks``)."""
    frames = [f for f in iter_signal_chunks(engine, start, end, account_keys, chunk_days=chunk_days) if len(f)]
    if not frames:
        return _empty_frame()
    return pd.concat(frames, ignore_index=True)


__all__ = ["DEFAULT_CHUNK_DAYS", "compute_signals_range", "day_number", "iter_signal_chunks"]
