"""Extraction of product usage from the customer's own application database.

Product events are the largest source by far (billions of rows at a large customer), so they
never leave the product database: the aggregation to one row per account and day (active
users, logins, events), per account, day and feature, and per account, day and event name runs
*in the source's SQL engine*, and only those aggregates are streamed into the warehouse, in day
chunks, in bulk (``warehouse.io.upsert_rows``: ``COPY`` on PostgreSQL; at 100,000 accounts a month is
millions of account-feature-days).

The tables, columns and event names are the ones the source mapping gives
(``sources.mapping``, keys listed in ``sources.product_fields``): ``ProductSql`` writes each
statement with those names as quoted identifiers (validated when the mapping was loaded) and
the event names as bound parameters. Without a feature catalogue (``tables.features: null``)
no feature aggregates are read.

Incremental by day: the watermark is the last fully aggregated day, one per aggregate family
(``usage_daily`` for the usage and feature aggregates, ``event_daily`` for the per-event-name
one, which a warehouse upgraded to it fills from the first event on its first run). Each run
re-aggregates a short trailing window (``LATE_EVENT_DAYS``) because events can arrive late; the
upsert makes that idempotent. Only days up to ``until`` (exclusive end of the logical date) are
aggregated, so a run for date D never stores usage after D.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, TextClause, text
from sqlalchemy.engine import Dialect

from customer_health.sources.mapping import SourceMapping, active_mapping
from customer_health.warehouse.io import (
    as_date,
    get_watermark,
    quarantine_records,
    set_watermark,
    upsert_rows,
    utcnow,
)
from customer_health.warehouse.schema import (
    raw_product_account,
    raw_product_event_daily,
    raw_product_feature,
    raw_product_feature_daily,
    raw_product_usage_daily,
)

SOURCE = "product"
USAGE_WATERMARK = "usage_daily"
EVENT_WATERMARK = "event_daily"
LATE_EVENT_DAYS = 2
CHUNK_DAYS = 31
FETCH_ROWS = 50_000
EVENT_NAME_LENGTH = raw_product_event_daily.c.event_name.type.length

log = logging.getLogger(__name__)


class ProductSql:
    """The product database's statements, with the names of ``mapping`` quoted for ``dialect``.

    ``date()`` exists in both SQLite and PostgreSQL; bounds and event names are bound parameters.
    ``table(key)`` and ``column(key)`` give any mapped name quoted, for other readers of the
    product database (``None`` for an unmapped optional one).
    """

    def __init__(self, mapping: SourceMapping, dialect: Dialect) -> None:
        self.mapping = mapping
        self._quote = dialect.identifier_preparer.quote

    def table(self, key: str) -> str | None:
        """Table ``key`` (``events``) as SQL: quoted, schema-qualified if mapped so."""
        name = self.mapping.product_table(key)
        return None if name is None else ".".join(self._quote(part) for part in name.split("."))

    def column(self, key: str) -> str | None:
        """Column ``key`` (``events.occurred_at``) as SQL, quoted."""
        name = self.mapping.product_column(key)
        return None if name is None else self._quote(name)

    def _col_or_null(self, key: str, label: str) -> str:
        col = self.column(key)
        return f"{col} AS {label}" if col is not None else f"NULL AS {label}"

    @property
    def accounts(self) -> TextClause:
        """Every product account: id, name, plan, created_at (NULL name or plan when unmapped)."""
        c = self.column
        return text(
            f"SELECT {c('accounts.id')} AS id, {self._col_or_null('accounts.name', 'name')}, "
            f"{self._col_or_null('accounts.plan', 'plan')}, {c('accounts.created_at')} AS created_at "
            f"FROM {self.table('accounts')} ORDER BY {c('accounts.id')}"
        )

    @property
    def features(self) -> TextClause | None:
        """The feature catalogue (None without one)."""
        if not self.mapping.has_features:
            return None
        c = self.column
        return text(
            f"SELECT {c('features.feature_key')} AS feature_key, {self._col_or_null('features.name', 'name')}, "
            f"{c('features.is_core')} AS is_core FROM {self.table('features')} ORDER BY {c('features.feature_key')}"
        )

    @property
    def first_event(self) -> TextClause:
        """When the first event happened."""
        return text(f"SELECT MIN({self.column('events.occurred_at')}) FROM {self.table('events')}")

    def _events(self, select: str, where: str, group: str) -> TextClause:
        at = self.column("events.occurred_at")
        return text(
            f"SELECT {select} FROM {self.table('events')} "
            f"WHERE {where}{at} >= :start AND {at} < :end GROUP BY {group}"
        )

    @property
    def usage(self) -> TextClause:
        """Per account and day: active users, logins, events."""
        acct, user, name = self.column("events.account_id"), self.column("events.user_id"), self.column("events.event_name")
        day = f"date({self.column('events.occurred_at')})"
        return self._events(
            f"{acct} AS account_id, {day} AS day, COUNT(DISTINCT {user}) AS active_users, "
            f"SUM(CASE WHEN {name} = :login THEN 1 ELSE 0 END) AS logins, COUNT(*) AS events",
            "", f"{acct}, {day}",
        )

    @property
    def feature_use(self) -> TextClause | None:
        """Per account, day and feature: users and uses (None without a feature catalogue)."""
        if not self.mapping.has_features:
            return None
        acct, user = self.column("events.account_id"), self.column("events.user_id")
        name, feature = self.column("events.event_name"), self.column("events.feature_key")
        day = f"date({self.column('events.occurred_at')})"
        return self._events(
            f"{acct} AS account_id, {day} AS day, {feature} AS feature_key, COUNT(DISTINCT {user}) AS users, "
            "COUNT(*) AS events",
            f"{name} = :feature_used AND {feature} IS NOT NULL AND ", f"{acct}, {day}, {feature}",
        )

    @property
    def event_use(self) -> TextClause:
        """Per account, day and event name: users and events."""
        acct, user, name = self.column("events.account_id"), self.column("events.user_id"), self.column("events.event_name")
        day = f"date({self.column('events.occurred_at')})"
        return self._events(
            f"{acct} AS account_id, {day} AS day, {name} AS event_name, COUNT(DISTINCT {user}) AS users, "
            "COUNT(*) AS events",
            f"{name} IS NOT NULL AND ", f"{acct}, {day}, {name}",
        )

    def params(self) -> dict[str, Any]:
        """The event names the statements bind."""
        return {"login": self.mapping.event_name("login"), "feature_used": self.mapping.event_name("feature_used")}


@dataclass
class ProductExtractReport:
    """What one product extraction did (small: safe for XCom via ``as_dict``)."""

    accounts: int = 0
    features: int = 0
    usage_rows: int = 0
    feature_rows: int = 0
    event_rows: int = 0
    quarantined: int = 0
    days: list[str] = field(default_factory=list)
    watermark_before: str | None = None
    watermark_after: str | None = None
    event_watermark_before: str | None = None
    event_watermark_after: str | None = None

    def as_dict(self) -> dict:
        return {
            "source": SOURCE,
            "accounts": self.accounts,
            "features": self.features,
            "usage_rows": self.usage_rows,
            "feature_rows": self.feature_rows,
            "event_rows": self.event_rows,
            "quarantined": self.quarantined,
            "first_day": self.days[0] if self.days else None,
            "last_day": self.days[-1] if self.days else None,
            "watermark_before": self.watermark_before,
            "watermark_after": self.watermark_after,
            "event_watermark_before": self.event_watermark_before,
            "event_watermark_after": self.event_watermark_after,
        }


def _as_datetime(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _aggregates(rows: list, columns: list[str], counts: tuple[str, ...], now: datetime) -> pd.DataFrame:
    """One fetched batch of aggregates as warehouse rows, converted column by column: text
    account ids, dates, integer counts (a NULL count is 0), the extraction stamp."""
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame["account_id"] = frame["account_id"].astype(str)
    frame["day"] = frame["day"].map({d: as_date(d) for d in frame["day"].unique()})
    for name in counts:
        frame[name] = pd.to_numeric(frame[name]).fillna(0).astype("int64")
    frame["extracted_at"] = now
    return frame


def _long_event_names(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str, Any]]]:
    """Rows whose event name is longer than the warehouse keeps, taken out for quarantine."""
    frame["event_name"] = frame["event_name"].astype(str)
    long = frame["event_name"].str.len() > EVENT_NAME_LENGTH
    if not long.any():
        return frame, []
    bad = [
        (f"{r.account_id}:{r.day}:{r.event_name[:40]}",
         f"event name of {len(r.event_name)} characters; the warehouse keeps event names of up to "
         f"{EVENT_NAME_LENGTH}", {"account_id": r.account_id, "day": str(r.day), "event_name": r.event_name})
        for r in frame[long].itertuples(index=False)
    ]  # fmt: skip
    return frame[~long], bad


def _bound_watermark(dst: Any, name: str, covered: date, rows: int) -> None:
    """Move watermark ``name`` to ``covered`` (only forward: a re-run of an earlier date never
    moves it back), in the transaction that committed the rows."""
    previous = get_watermark(dst, SOURCE, name)
    set_watermark(dst, SOURCE, name, max(covered.isoformat(), previous or ""), rows_added=rows)


def extract_product(
    product: Engine,
    warehouse: Engine,
    until: datetime,
    *,
    on_progress: Callable[[str], None] | None = None,
    mapping: SourceMapping | None = None,
) -> ProductExtractReport:
    """Aggregate product usage up to ``until`` (exclusive) into the warehouse, incrementally.

    Tables, columns and event names come from ``mapping`` (default: the active source mapping).
    """
    report = ProductExtractReport()
    say = on_progress or log.info
    now = utcnow()
    sql = ProductSql(mapping or active_mapping(), product.dialect)
    names = sql.params()

    with product.connect() as src, warehouse.begin() as dst:
        accounts, bad = [], []
        for row in src.execute(sql.accounts):
            try:
                created = _as_datetime(row.created_at)
            except ValueError as exc:
                bad.append((str(row.id), f"created_at is not a timestamp: {exc}", dict(row._mapping)))
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
            for r in (src.execute(sql.features) if sql.features is not None else ())
        ]
        report.features = upsert_rows(dst, raw_product_feature, features)

    with warehouse.connect() as conn:
        report.watermark_before = get_watermark(conn, SOURCE, USAGE_WATERMARK)
        report.event_watermark_before = get_watermark(conn, SOURCE, EVENT_WATERMARK)
    end_day = until.date() if until.time() == datetime.min.time() else until.date() + timedelta(days=1)
    # ``until`` is an exclusive bound: days strictly before it are complete.
    last_day = end_day - timedelta(days=1)
    first_day: date | None = None

    def start_of(watermark: str | None) -> date | None:
        nonlocal first_day
        if watermark:
            return date.fromisoformat(watermark) - timedelta(days=LATE_EVENT_DAYS - 1)
        if first_day is None:
            with product.connect() as src:
                first = src.execute(sql.first_event).scalar()
            if first is None:
                return None
            first_day = as_date(first)
        return first_day

    usage_start, event_start = start_of(report.watermark_before), start_of(report.event_watermark_before)
    if usage_start is None or event_start is None:
        return report  # no event at all yet
    day = min(usage_start, event_start)
    usage_sql, feature_sql, event_sql = sql.usage, sql.feature_use, sql.event_use
    while day <= last_day:
        chunk_end = min(day + timedelta(days=CHUNK_DAYS), last_day + timedelta(days=1))
        end = datetime.combine(chunk_end, datetime.min.time())
        covered = chunk_end - timedelta(days=1)
        usage_n = feature_n = event_n = 0
        # One transaction per chunk: each watermark moves with the rows it covers.
        with product.connect() as src, warehouse.begin() as dst:
            stream = src.execution_options(stream_results=True)
            if usage_start < chunk_end:  # a warehouse upgraded to the event aggregate re-reads only for it
                bounds = names | {"start": datetime.combine(max(day, usage_start), datetime.min.time()), "end": end}
                result = stream.execute(usage_sql, bounds)
                while batch := result.fetchmany(FETCH_ROWS):
                    frame = _aggregates(batch, list(result.keys()), ("active_users", "logins", "events"), now)
                    usage_n += upsert_rows(dst, raw_product_usage_daily, frame)
                if feature_sql is not None:
                    result = stream.execute(feature_sql, bounds)
                    while batch := result.fetchmany(FETCH_ROWS):
                        frame = _aggregates(batch, list(result.keys()), ("users", "events"), now)
                        feature_n += upsert_rows(dst, raw_product_feature_daily, frame)
                _bound_watermark(dst, USAGE_WATERMARK, covered, usage_n)
            if event_start < chunk_end:
                bounds = {"start": datetime.combine(max(day, event_start), datetime.min.time()), "end": end}
                result = stream.execute(event_sql, bounds)
                while batch := result.fetchmany(FETCH_ROWS):
                    frame, bad = _long_event_names(_aggregates(batch, list(result.keys()), ("users", "events"), now))
                    event_n += upsert_rows(dst, raw_product_event_daily, frame)
                    report.quarantined += quarantine_records(dst, SOURCE, "event_daily", bad)
                _bound_watermark(dst, EVENT_WATERMARK, covered, event_n)
        report.usage_rows += usage_n
        report.feature_rows += feature_n
        report.event_rows += event_n
        report.days.append(day.isoformat())
        say(f"product usage {day} .. {covered}: {usage_n} account-days, {feature_n} feature-days, "
            f"{event_n} event-days")
        day = chunk_end
    report.days = [report.days[0], last_day.isoformat()] if report.days else []
    with warehouse.connect() as conn:
        report.watermark_after = get_watermark(conn, SOURCE, USAGE_WATERMARK)
        report.event_watermark_after = get_watermark(conn, SOURCE, EVENT_WATERMARK)
    return report
