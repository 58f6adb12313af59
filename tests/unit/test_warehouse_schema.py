"""The warehouse is built by migrations, and the migrations match the schema module."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.io import get_watermark, set_watermark, upsert_rows
from customer_health.warehouse.migrate import current_revision, upgrade_to_head
from customer_health.warehouse.schema import metadata, raw_sf_account


def test_migrations_create_every_table_of_the_schema(warehouse_url):
    engine = engine_for(warehouse_url)
    tables = set(inspect(engine).get_table_names())
    assert set(metadata.tables) <= tables
    assert current_revision(engine) is not None


def test_migrations_and_schema_module_agree(warehouse_url):
    engine = engine_for(warehouse_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), metadata)
    assert diff == [], f"schema.py and the migrations differ: {diff}"


def test_upgrade_is_idempotent(warehouse_url):
    engine = engine_for(warehouse_url)
    before = current_revision(engine)
    upgrade_to_head(engine)
    assert current_revision(engine) == before


def test_upsert_overwrites_instead_of_duplicating(warehouse_url):
    from datetime import datetime

    engine = engine_for(warehouse_url)
    row = {"id": "001000000000001AAA", "name": "Acme", "extracted_at": datetime(2026, 1, 1), "is_deleted": False}
    with engine.begin() as conn:
        upsert_rows(conn, raw_sf_account, [row])
        upsert_rows(conn, raw_sf_account, [row | {"name": "Acme Corp"}])
    with engine.connect() as conn:
        rows = conn.execute(raw_sf_account.select()).fetchall()
    assert [(r.id, r.name) for r in rows] == [("001000000000001AAA", "Acme Corp")]


def test_watermark_advances_and_counts_rows(warehouse_url):
    engine = engine_for(warehouse_url)
    with engine.begin() as conn:
        assert get_watermark(conn, "salesforce", "Account") is None
        set_watermark(conn, "salesforce", "Account", "2026-01-01T00:00:00", rows_added=5)
        set_watermark(conn, "salesforce", "Account", "2026-01-02T00:00:00", rows_added=2)
        assert get_watermark(conn, "salesforce", "Account") == "2026-01-02T00:00:00"


def test_signal_value_columns_are_the_signal_catalog():
    from customer_health.scoring.signal_catalog import SIGNALS
    from customer_health.warehouse.schema import SIGNAL_VALUE_COLUMNS, signal_values

    assert tuple(SIGNALS) == SIGNAL_VALUE_COLUMNS
    assert [c.name for c in signal_values.columns][-len(SIGNALS):] == list(SIGNALS)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_0002_carries_long_signal_values_into_the_wide_table_and_back(backend, request, tmp_path):
    """A warehouse at 0001 (long signal_values + signal_context) keeps every stored value."""
    from alembic import command
    from sqlalchemy import text

    from customer_health.warehouse.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    engine = engine_for(url)
    command.upgrade(alembic_config(engine), "0001")
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO signal_context (account_key, as_of_date, plan, seats, arr, customer_since, tenure_days) "
            "VALUES ('A1', '2026-11-01', 'pro', 10, 1200.5, '2025-01-02', 668), "
            "('A2', '2026-11-01', 'starter', 3, 300, NULL, NULL), ('A1', '2026-11-02', 'pro', 10, 1200.5, '2025-01-02', 669)"
        ))
        conn.execute(text(
            "INSERT INTO signal_values (account_key, as_of_date, signal, value) VALUES "
            "('A1', '2026-11-01', 'nps', 7.5), ('A1', '2026-11-01', 'csat', NULL), "
            "('A1', '2026-11-01', 'open_tickets', 2), ('A2', '2026-11-01', 'nps', 3), ('A1', '2026-11-02', 'nps', 8)"
        ))
    upgrade_to_head(engine)
    assert "signal_context" not in inspect(engine).get_table_names()
    with engine.connect() as conn:
        rows = {
            (str(r.account_key), str(r.as_of_date)): r
            for r in conn.execute(text("SELECT * FROM signal_values"))
        }
    assert set(rows) == {("A1", "2026-11-01"), ("A2", "2026-11-01"), ("A1", "2026-11-02")}
    first = rows[("A1", "2026-11-01")]
    assert (first.plan, first.arr, first.tenure_days, first.nps, first.csat, first.open_tickets) == (
        "pro", 1200.5, 668, 7.5, None, 2.0,
    )
    assert rows[("A2", "2026-11-01")].nps == 3.0 and rows[("A2", "2026-11-01")].login_frequency is None
    assert rows[("A1", "2026-11-02")].nps == 8.0

    command.downgrade(alembic_config(engine), "0001")
    with engine.connect() as conn:
        values = {
            (r.account_key, str(r.as_of_date), r.signal): r.value
            for r in conn.execute(text("SELECT * FROM signal_values"))
        }
        context = conn.execute(text("SELECT count(*) FROM signal_context")).scalar_one()
    assert context == 3
    assert values[("A1", "2026-11-01", "nps")] == 7.5 and values[("A2", "2026-11-01", "nps")] == 3.0
    assert values[("A1", "2026-11-01", "csat")] is None
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_0004_keys_scores_by_version_and_date_and_keeps_every_row(backend, request, tmp_path):
    """A warehouse at 0003 keeps its scores; the key becomes (version, date, account), one index less."""
    from alembic import command
    from sqlalchemy import text

    from customer_health.warehouse.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    engine = engine_for(url)
    command.upgrade(alembic_config(engine), "0003")
    rows = [("A1", "2026-11-01", "v1", 70, "Healthy"), ("A1", "2026-11-02", "v1", 40, "At Risk"),
            ("A2", "2026-11-01", "v1", 55, "Neutral"), ("A1", "2026-11-01", "v2", 65, "Neutral")]  # fmt: skip
    with engine.begin() as conn:
        for key, day, version, score, zone in rows:
            conn.execute(
                text(
                    "INSERT INTO health_scores (account_key, as_of_date, model_version, score, computed_score, zone, "
                    "previous_zone, coverage, computed_at) VALUES (:k, :d, :v, :s, :s, :z, 'Neutral', 1.0, :t)"
                ),
                {"k": key, "d": day, "v": version, "s": score, "z": zone, "t": "2026-11-02 06:00:00"},
            )
    upgrade_to_head(engine)
    inspector = inspect(engine)
    assert inspector.get_pk_constraint("health_scores")["constrained_columns"] == ["model_version", "as_of_date", "account_key"]
    assert "ix_health_scores_as_of_date_model" not in {i["name"] for i in inspector.get_indexes("health_scores")}
    with engine.connect() as conn:
        stored = {(r[0], str(r[1]), r[2], r[3], r[4]) for r in conn.execute(
            text("SELECT account_key, as_of_date, model_version, score, zone FROM health_scores"))}  # fmt: skip
    assert stored == set(rows)
    command.downgrade(alembic_config(engine), "0003")
    inspector = inspect(engine)
    assert inspector.get_pk_constraint("health_scores")["constrained_columns"] == ["account_key", "as_of_date", "model_version"]
    assert "ix_health_scores_as_of_date_model" in {i["name"] for i in inspector.get_indexes("health_scores")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM health_scores")).scalar_one() == len(rows)
    engine.dispose()
