"""The warehouse is built by migrations, and the migrations match the schema module."""

from __future__ import annotations

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
