"""Extraction of product usage from the customer's own application database.

Product events are the largest source by far (billions of rows at a large customer), so they
never leave the product database: the aggregation to one row per account and day (active
users, logins, events) and per account, day and feature runs *in the source's SQL engine*, and
only those aggregates are streamed into the warehouse, in day chunks, in bulk
(``bulk_upsert``: ``COPY`` on PostgreSQL; at 100,000 accounts a month is millions of
account-feature-days).

Incremental by day: the watermark is the last fully aggregated day. Each run re-aggregates a
short trailing window (``LATE_EVENT_DAYS``) because events can arrive late; the upsert makes
that idempotent. Only days up to ``until`` (exclusive end of the logical date) are aggregated,
so a run for date D never stores usage after D.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pandas as pd
from sqlalchemy import Engine, bindparam, text

from customer_health.warehouse.bulk import bulk_upsert
from customer_health.warehouse.io import (
    get_watermark,
    quarantine_records,
    set_watermark,
    upsert_rows,
    utcnow,
)
from customer_health.warehouse.schema import (
    raw_product_account,
    raw_product_feature,
    raw_product_feature_daily,
    raw_product_usage_daily,
)

SOURCE = "product"
LATE_EVENT_DAYS = 2
CHUNK_DAYS = 31
FETCH_ROWS = 50_000

log = logging.getLogger(__name__)

# The aggregation pushed down to the product database. ``date()`` exists in both SQLite and
# PostgreSQL; the bounds are bound parameters.
USAGE_SQL = text(
    """
    SELECT account_id,
           date(occurred_at) AS day,
           COUNT(DISTINCT user_id) AS active_users,
           SUM(CASE WHEN event_name = 'login' THEN 1 ELSE 0 END) AS logins,
           COUNT(*) AS events
    FROM events
    WHERE occurred_at >= :start AND occurred_at < :end
    GROUP BY account_id, date(occurred_at)
    """
).bindparams(bindparam("start"), bindparam("end"))

FEATURE_SQL = text(
    """
    SELECT account_id,
           date(occurred_at) AS day,
           feature_key,
           COUNT(DISTINCT user_id) AS users,
           COUNT(*) AS events
    FROM events
    WHERE event_name = 'feature_used' AND feature_key IS NOT NULL
      AND occurred_at >= :start AND occurred_at < :end
    GROUP BY account_id, date(occurred_at), feature_key
    """
).bindparams(bindparam("start"), bindparam("end"))


@dataclass
class ProductExtractReport:
    """What one product extraction did (small: safe for XCom via ``as_dict``)."""

    accounts: int = 0
    features: int = 0
    usage_rows: int = 0
    feature_rows: int = 0
    quarantined: int = 0
    days: list[str] = field(default_factory=list)
    watermark_before: str | None = None
    watermark_after: str | None = None

    def as_dict(self) -> dict:
        return {
            "source": SOURCE,
            "accounts": self.accounts,
            "features": self.features,
            "usage_rows": self.usage_rows,
            "feature_rows": self.feature_rows,
            "quarantined": self.quarantined,
            "first_day": self.days[0] if self.days else None,
            "last_day": self.days[-1] if self.days else None,
            "watermark_before": self.watermark_before,
            "watermark_after": self.watermark_after,
        }


def _as_date(value) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _as_datetime(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _aggregates(rows: list, columns: list[str], counts: tuple[str, ...], now: datetime) -> pd.DataFrame:
    """One fetched batch of aggregates as warehouse rows, converted column by column: text
    account ids, dates, integer counts (a NULL count is 0), the extraction stamp."""
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame["account_id"] = frame["account_id"].astype(str)
    frame["day"] = frame["day"].map({d: _as_date(d) for d in frame["day"].unique()})
    for name in counts:
        frame[name] = pd.to_numeric(frame[name]).fillna(0).astype("int64")
    frame["extracted_at"] = now
    return frame


def extract_product(
    product: Engine,
    warehouse: Engine,
    until: datetime,
    *,
    on_progress: Callable[[str], None] | None = None,
) -> ProductExtractReport:
    """Aggregate product usage up to ``until`` (exclusive) into the warehouse, incrementally."""
    report = ProductExtractReport()
    say = on_progress or log.info
    now = utcnow()

    with product.connect() as src, warehouse.begin() as dst:
        accounts, bad = [], []
        for row in src.execute(text("SELECT id, name, plan, created_at FROM accounts ORDER BY id")):
            try:
                created = _as_datetime(row.created_at)
            except ValueError as exc:
                bad.append((row.id, f"created_at is not a timestamp: {exc}", dict(row._mapping)))
                continue
            accounts.append(
                {
                    "id": str(row.id),
                    "name": row.name,
                    "plan": row.plan,
                    "created_at": created,
                    "source_updated_at": created,
                    "is_deleted": False,
                    "extracted_at": now,
                }
            )
        report.accounts = upsert_rows(dst, raw_product_account, accounts)
        report.quarantined += quarantine_records(dst, SOURCE, "accounts", bad)
        features = [
            {
                "feature_key": r.feature_key,
                "name": r.name,
                "is_core": bool(r.is_core),
                "source_updated_at": None,
                "is_deleted": False,
                "extracted_at": now,
            }
            for r in src.execute(text("SELECT feature_key, name, is_core FROM features ORDER BY feature_key"))
        ]
        report.features = upsert_rows(dst, raw_product_feature, features)

    with warehouse.connect() as conn:
        report.watermark_before = get_watermark(conn, SOURCE, "usage_daily")
    end_day = until.date() if until.time() == datetime.min.time() else until.date() + timedelta(days=1)
    # ``until`` is an exclusive bound: days strictly before it are complete.
    last_day = end_day - timedelta(days=1)
    if report.watermark_before:
        start_day = date.fromisoformat(report.watermark_before) - timedelta(days=LATE_EVENT_DAYS - 1)
    else:
        with product.connect() as src:
            first = src.execute(text("SELECT MIN(occurred_at) FROM events")).scalar()
        if first is None:
            return report
        start_day = _as_date(first)
    day = start_day
    while day <= last_day:
        chunk_end = min(day + timedelta(days=CHUNK_DAYS), last_day + timedelta(days=1))
        bounds = {"start": datetime.combine(day, datetime.min.time()), "end": datetime.combine(chunk_end, datetime.min.time())}
        usage_n = feature_n = 0
        # One transaction per chunk: the watermark moves with the rows it covers.
        with product.connect() as src, warehouse.begin() as dst:
            result = src.execution_options(stream_results=True).execute(USAGE_SQL, bounds)
            while batch := result.fetchmany(FETCH_ROWS):
                frame = _aggregates(batch, list(result.keys()), ("active_users", "logins", "events"), now)
                usage_n += bulk_upsert(dst, raw_product_usage_daily, frame)
            result = src.execution_options(stream_results=True).execute(FEATURE_SQL, bounds)
            while batch := result.fetchmany(FETCH_ROWS):
                frame = _aggregates(batch, list(result.keys()), ("users", "events"), now)
                feature_n += bulk_upsert(dst, raw_product_feature_daily, frame)
            covered = chunk_end - timedelta(days=1)
            # A re-run of an earlier date must not move the watermark backwards.
            previous = get_watermark(dst, SOURCE, "usage_daily")
            mark = max(covered.isoformat(), previous or "")
            set_watermark(dst, SOURCE, "usage_daily", mark, rows_added=usage_n)
        report.usage_rows += usage_n
        report.feature_rows += feature_n
        report.days.append(day.isoformat())
        say(f"product usage {day} .. {covered}: {usage_n} account-days, {feature_n} feature-days")
        day = chunk_end
    report.days = [report.days[0], last_day.isoformat()] if report.days else []
    with warehouse.connect() as conn:
        report.watermark_after = get_watermark(conn, SOURCE, "usage_daily")
    return report
