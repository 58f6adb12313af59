"""Extraction of the product's users and their daily activity, for stakeholder health.

The account-level product signals (``sources/product.py``) count an account's users and events
per day; stakeholder health (``customer_health.stakeholders``) needs the same events per *person*:
who has a login (``users``: e-mail, created, deactivated) and, per user and day, the logins,
uses of a core feature (``features.is_core``) and events. As for the account aggregates, the
aggregation runs in the product database's SQL and only one row per user and active day is
streamed into the warehouse (``raw_product_user``, ``raw_product_user_daily``), in day chunks, in
bulk.

* **Users** are read whole every run (the table has no modification stamp) and upserted; a user
  created at or after ``until`` is left for a later run.
* **Daily activity** is incremental by day like the account aggregates (watermark
  ``product``/``user_daily``: the last fully aggregated day; each run re-reads
  ``LATE_EVENT_DAYS`` because events arrive late; the upsert makes that idempotent; nothing at
  or after ``until``). Stakeholder health reads at most ``HISTORY_DAYS`` back, so the first run
  starts there instead of at the first event ever recorded; the first day it covered is kept as
  the watermark ``product``/``user_daily_from``, so a date before that is known to have no
  per-user history (its engagement is NULL, not zero).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd
from sqlalchemy import Engine, bindparam, text

from customer_health.sources.window import naive_utc
from customer_health.warehouse.io import as_date, get_watermark, set_watermark, upsert_rows, utcnow
from customer_health.warehouse.schema import raw_product_user, raw_product_user_daily

SOURCE = "product"
WATERMARK = "user_daily"
COVERAGE_START = "user_daily_from"
LATE_EVENT_DAYS = 2
CHUNK_DAYS = 31
FETCH_ROWS = 50_000
HISTORY_DAYS = 180
"""How far back the first extraction reads: stakeholder health looks at most 120 days back."""

log = logging.getLogger(__name__)

USERS_SQL = text(
    """
    SELECT id, account_id, email, created_at, deactivated_at
    FROM users
    WHERE created_at < :end
    ORDER BY id
    """
).bindparams(bindparam("end"))

# One row per user and active day, aggregated in the product database. ``CASE WHEN f.is_core``
# reads a boolean (PostgreSQL) and a 0/1 integer (SQLite) alike.
USER_DAILY_SQL = text(
    """
    SELECT e.account_id,
           e.user_id,
           date(e.occurred_at) AS day,
           SUM(CASE WHEN e.event_name = 'login' THEN 1 ELSE 0 END) AS logins,
           SUM(CASE WHEN e.event_name = 'feature_used' AND f.is_core THEN 1 ELSE 0 END) AS core_actions,
           COUNT(*) AS events
    FROM events e
    LEFT JOIN features f ON f.feature_key = e.feature_key
    WHERE e.occurred_at >= :start AND e.occurred_at < :end
    GROUP BY e.account_id, e.user_id, date(e.occurred_at)
    """
).bindparams(bindparam("start"), bindparam("end"))


@dataclass
class ProductUsersReport:
    """What one extraction of product users did (small: safe for XCom via ``as_dict``)."""

    users: int = 0
    user_days: int = 0
    first_day: str | None = None
    last_day: str | None = None
    watermark_before: str | None = None
    watermark_after: str | None = None

    def as_dict(self) -> dict:
        return {
            "source": SOURCE,
            "users": self.users,
            "user_days": self.user_days,
            "first_day": self.first_day,
            "last_day": self.last_day,
            "watermark_before": self.watermark_before,
            "watermark_after": self.watermark_after,
        }


def _stamps(values: pd.Series) -> pd.Series:
    """Timestamps read from either database (SQLite returns text) as datetimes, NULL kept."""
    return pd.to_datetime(values, errors="coerce", format="mixed")


def extract_product_users(
    product: Engine, warehouse: Engine, until: datetime, *, on_progress: Callable[[str], None] | None = None
) -> ProductUsersReport:
    """The product's users and their daily activity up to ``until`` (exclusive), incrementally."""
    report = ProductUsersReport()
    say = on_progress or log.info
    now = utcnow()
    with product.connect() as src, warehouse.begin() as dst:
        result = src.execution_options(stream_results=True).execute(USERS_SQL, {"end": naive_utc(until)})
        while batch := result.fetchmany(FETCH_ROWS):
            frame = pd.DataFrame.from_records(batch, columns=list(result.keys()))
            frame["id"] = frame["id"].astype(str)
            frame["account_id"] = frame["account_id"].astype(str)
            frame["created_at"] = _stamps(frame["created_at"])
            frame["deactivated_at"] = _stamps(frame["deactivated_at"])
            frame["source_updated_at"] = frame[["created_at", "deactivated_at"]].max(axis=1)
            frame["is_deleted"] = False
            frame["extracted_at"] = now
            report.users += upsert_rows(dst, raw_product_user, frame)

    with warehouse.connect() as conn:
        report.watermark_before = get_watermark(conn, SOURCE, WATERMARK)
    end_day = until.date() if until.time() == datetime.min.time() else until.date() + timedelta(days=1)
    last_day = end_day - timedelta(days=1)
    if report.watermark_before:
        start_day = date.fromisoformat(report.watermark_before) - timedelta(days=LATE_EVENT_DAYS - 1)
    else:
        with product.connect() as src:
            first = src.execute(text("SELECT MIN(occurred_at) FROM events")).scalar()
        if first is None:
            return report
        start_day = max(as_date(first), end_day - timedelta(days=HISTORY_DAYS))
    day = start_day
    while day <= last_day:
        chunk_end = min(day + timedelta(days=CHUNK_DAYS), end_day)
        bounds = {"start": datetime.combine(day, datetime.min.time()), "end": datetime.combine(chunk_end, datetime.min.time())}
        written = 0
        # One transaction per chunk: the watermark moves with the rows it covers.
        with product.connect() as src, warehouse.begin() as dst:
            result = src.execution_options(stream_results=True).execute(USER_DAILY_SQL, bounds)
            while batch := result.fetchmany(FETCH_ROWS):
                frame = pd.DataFrame.from_records(batch, columns=list(result.keys()))
                frame["account_id"] = frame["account_id"].astype(str)
                frame["user_id"] = frame["user_id"].astype(str)
                frame["day"] = frame["day"].map({d: as_date(d) for d in frame["day"].unique()})
                for name in ("logins", "core_actions", "events"):
                    frame[name] = pd.to_numeric(frame[name]).fillna(0).astype("int64")
                frame["extracted_at"] = now
                written += upsert_rows(dst, raw_product_user_daily, frame)
            covered = chunk_end - timedelta(days=1)
            if get_watermark(dst, SOURCE, COVERAGE_START) is None:
                set_watermark(dst, SOURCE, COVERAGE_START, day.isoformat())
            # A re-run of an earlier date must not move the watermark backwards.
            previous = get_watermark(dst, SOURCE, WATERMARK)
            set_watermark(dst, SOURCE, WATERMARK, max(covered.isoformat(), previous or ""), rows_added=written)
        report.user_days += written
        report.first_day = report.first_day or day.isoformat()
        report.last_day = covered.isoformat()
        say(f"product users {day} .. {covered}: {written} user-days")
        day = chunk_end
    with warehouse.connect() as conn:
        report.watermark_after = get_watermark(conn, SOURCE, WATERMARK)
    return report


def coverage_start(conn) -> date | None:
    """The first day whose per-user activity was extracted (None before the first extraction)."""
    found = get_watermark(conn, SOURCE, COVERAGE_START)
    return date.fromisoformat(found) if found else None
