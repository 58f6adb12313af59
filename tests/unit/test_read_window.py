"""Read bounds handed to database drivers: whatever Airflow passes, the driver gets a plain datetime."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pendulum

from customer_health.pipeline import interval_end
from customer_health.sources.window import naive_utc


def test_a_pendulum_interval_end_becomes_a_plain_naive_utc_datetime_sqlite_can_bind():
    # Airflow hands tasks pendulum DateTimes; replace(tzinfo=None) keeps the pendulum type and
    # sqlite3 refuses it ("type 'DateTime' is not supported"): the stakeholder step failed on every
    # Celery worker. Tests in one process did not notice: Airflow registers a sqlite3 adapter for
    # pendulum when its own metadata DB is SQLite (airflow.settings.configure_adapters), as the test
    # session's is and the topology's Postgres one is not. So the type is what is checked here.
    end = pendulum.datetime(2026, 11, 2, 1, 30, tz="Europe/Paris")
    assert type(end.replace(tzinfo=None)) is not datetime

    bound = interval_end(end)

    assert type(bound) is datetime
    assert bound == datetime(2026, 11, 2, 0, 30)
    with sqlite3.connect(":memory:") as db:
        assert db.execute("SELECT ? < '2026-11-03'", (bound,)).fetchone() == (1,)


def test_naive_values_are_taken_as_utc_and_aware_ones_converted():
    assert naive_utc(datetime(2026, 11, 2, 9, 5, 7, 12)) == datetime(2026, 11, 2, 9, 5, 7, 12)
    assert naive_utc(datetime(2026, 11, 2, 9, tzinfo=timezone(timedelta(hours=-5)))) == datetime(2026, 11, 2, 14)
    assert naive_utc(datetime(2026, 11, 2, tzinfo=UTC)).tzinfo is None
