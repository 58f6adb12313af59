"""Product usage is aggregated in the product database and lands once per account and day."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import create_engine, func, select, text

from customer_health.sources.product import extract_product
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.io import get_watermark
from customer_health.warehouse.schema import raw_product_feature_daily, raw_product_usage_daily

DDL = [
    "CREATE TABLE accounts (id TEXT PRIMARY KEY, name TEXT, plan TEXT, created_at TIMESTAMP)",
    "CREATE TABLE users (id INTEGER PRIMARY KEY, account_id TEXT, email TEXT, created_at TIMESTAMP, deactivated_at TIMESTAMP)",
    "CREATE TABLE features (feature_key TEXT PRIMARY KEY, name TEXT, is_core BOOLEAN)",
    "CREATE TABLE events (id INTEGER PRIMARY KEY, account_id TEXT, user_id INTEGER, event_name TEXT, feature_key TEXT, occurred_at TIMESTAMP)",
]


@pytest.fixture()
def product_db(tmp_path):
    eng = create_engine(f"sqlite:///{tmp_path / 'product.db'}")
    with eng.begin() as conn:
        for ddl in DDL:
            conn.execute(text(ddl))
        conn.execute(text("INSERT INTO accounts VALUES ('acct_1', 'Acme', 'growth', '2025-01-01 00:00:00')"))
        conn.execute(text("INSERT INTO features VALUES ('reports', 'Reports', 1), ('export', 'Export', 0)"))
    return eng


def add_events(eng, rows):
    with eng.begin() as conn:
        conn.execute(
            text("INSERT INTO events (account_id, user_id, event_name, feature_key, occurred_at) VALUES (:a, :u, :n, :f, :t)"),
            [{"a": a, "u": u, "n": n, "f": f, "t": t} for a, u, n, f, t in rows],
        )


def usage(url):
    with engine_for(url).connect() as conn:
        return {
            (r.account_id, r.day): (r.active_users, r.logins, r.events)
            for r in conn.execute(select(raw_product_usage_daily))
        }


def test_usage_is_aggregated_per_account_and_day_at_the_source(product_db, warehouse_url):
    add_events(
        product_db,
        [
            ("acct_1", 1, "login", None, "2026-03-01 09:00:00"),
            ("acct_1", 1, "feature_used", "reports", "2026-03-01 09:05:00"),
            ("acct_1", 2, "login", None, "2026-03-01 10:00:00"),
            ("acct_1", 2, "feature_used", "reports", "2026-03-01 10:05:00"),
            ("acct_1", 2, "feature_used", "export", "2026-03-02 08:00:00"),
        ],
    )
    extract_product(product_db, engine_for(warehouse_url), until=datetime(2026, 3, 3))
    assert usage(warehouse_url) == {
        ("acct_1", date(2026, 3, 1)): (2, 2, 4),
        ("acct_1", date(2026, 3, 2)): (1, 0, 1),
    }
    with engine_for(warehouse_url).connect() as conn:
        features = {(r.day, r.feature_key): (r.users, r.events) for r in conn.execute(select(raw_product_feature_daily))}
    assert features == {(date(2026, 3, 1), "reports"): (2, 2), (date(2026, 3, 2), "export"): (1, 1)}


def test_nothing_after_the_interval_end_is_stored(product_db, sqlite_warehouse_url):
    add_events(
        product_db,
        [("acct_1", 1, "login", None, "2026-03-01 09:00:00"), ("acct_1", 1, "login", None, "2026-03-05 09:00:00")],
    )
    extract_product(product_db, engine_for(sqlite_warehouse_url), until=datetime(2026, 3, 2))
    assert set(usage(sqlite_warehouse_url)) == {("acct_1", date(2026, 3, 1))}
    with engine_for(sqlite_warehouse_url).connect() as conn:
        assert get_watermark(conn, "product", "usage_daily") == "2026-03-01"


def test_rerun_of_the_same_interval_changes_no_row(product_db, warehouse_url):
    start = datetime(2026, 1, 1, 9)
    add_events(product_db, [("acct_1", u, "login", None, start + timedelta(days=d)) for d in range(60) for u in (1, 2)])
    until = datetime(2026, 3, 1)
    extract_product(product_db, engine_for(warehouse_url), until=until)
    before = usage(warehouse_url)
    extract_product(product_db, engine_for(warehouse_url), until=until)
    assert usage(warehouse_url) == before
    assert len(before) == 59


def test_incremental_run_picks_up_new_days_and_late_events(product_db, sqlite_warehouse_url):
    wh = engine_for(sqlite_warehouse_url)
    add_events(product_db, [("acct_1", 1, "login", None, "2026-03-01 09:00:00")])
    extract_product(product_db, wh, until=datetime(2026, 3, 2))
    # A late event for 03-01 and a new day 03-02 arrive before the next run.
    add_events(
        product_db,
        [("acct_1", 2, "login", None, "2026-03-01 23:00:00"), ("acct_1", 1, "login", None, "2026-03-02 09:00:00")],
    )
    extract_product(product_db, wh, until=datetime(2026, 3, 3))
    got = usage(sqlite_warehouse_url)
    assert got[("acct_1", date(2026, 3, 1))] == (2, 2, 2)
    assert got[("acct_1", date(2026, 3, 2))] == (1, 1, 1)
    with wh.connect() as conn:
        assert conn.execute(select(func.count()).select_from(raw_product_usage_daily)).scalar_one() == 2


def test_an_earlier_rerun_does_not_move_the_watermark_back(product_db, sqlite_warehouse_url):
    wh = engine_for(sqlite_warehouse_url)
    add_events(product_db, [("acct_1", 1, "login", None, f"2026-03-0{d} 09:00:00") for d in range(1, 6)])
    extract_product(product_db, wh, until=datetime(2026, 3, 6))
    extract_product(product_db, wh, until=datetime(2026, 3, 3))
    with wh.connect() as conn:
        assert get_watermark(conn, "product", "usage_daily") == "2026-03-05"
