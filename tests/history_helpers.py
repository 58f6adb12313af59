"""Helpers of the history rebuild tests: an extracted test company, copied into a warehouse.

``extracted_template`` extracts the session's test company once, with the real extraction
functions (the daily DAG's steps), into a SQLite warehouse; ``load_warehouse`` copies it into a
test's warehouse (SQLite or PostgreSQL). The warehouse is then *current* - the situation of a
backfill or rebuild in production, where the daily runs have extracted up to today.

PostgreSQL workaround: the synthetic company numbers Zendesk satisfaction ratings from
7,000,000,000, beyond ``raw_zd_satisfaction_rating.id INTEGER`` on PostgreSQL (SQLite integers
are 64-bit), so extracting Zendesk straight into PostgreSQL fails. The copy renumbers rating
ids; no signal reads a rating's id (ticket, organization, score and stamps are kept).
"""

from __future__ import annotations

import shutil
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from customer_health.warehouse import schema as s
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.migrate import upgrade_to_head

HISTORY_TABLES = (s.signal_values, s.health_scores, s.health_score_rollups)
_RATING_ID_BASE = 7_000_000_000
_templates: dict[str, Path] = {}


def extracted_template(sandbox, folder: Path, until_day: date) -> Path:
    """A SQLite warehouse holding every source of ``sandbox`` up to the end of ``until_day``
    (extracted once per session and folder) and the crosswalk."""
    from customer_health import pipeline, settings
    from customer_health.sandbox.connections import as_environment, sandbox_connections

    path = folder / f"template-{until_day.isoformat()}.db"
    if str(path) in _templates:
        return path
    url = f"sqlite:///{path}"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in as_environment(sandbox_connections(sandbox.endpoints, url)).items():
            mp.setenv(key, value)
        mp.setenv(settings.WAREHOUSE_URL_ENV, url)
        engine_for.cache_clear()
        until = datetime.combine(until_day + timedelta(days=1), time())
        pipeline.migrate_warehouse()
        for extract in (
            pipeline.extract_salesforce, pipeline.extract_zendesk, pipeline.extract_stripe, pipeline.extract_product,
        ):  # fmt: skip
            extract(until)
        pipeline.build_crosswalk()
    engine_for(url).dispose()
    engine_for.cache_clear()
    _templates[str(path)] = path
    return path


def load_warehouse(template: Path, url: str) -> None:
    """Copy the extracted ``template`` into the (migrated, empty) warehouse ``url``."""
    if url.startswith("sqlite:///"):
        engine_for(url).dispose()
        engine_for.cache_clear()
        shutil.copy(template, url.removeprefix("sqlite:///"))
        return
    from customer_health.warehouse.bulk import bulk_upsert

    upgrade_to_head(engine_for(url))
    source = engine_for(f"sqlite:///{template}")
    target = engine_for(url)
    with source.connect() as read, target.begin() as write:
        for table in s.metadata.sorted_tables:
            result = read.execute(select(table))
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
            if frame.empty:
                continue
            if table is s.raw_zd_satisfaction_rating:
                frame["id"] = frame["id"].where(frame["id"] < _RATING_ID_BASE, frame["id"] - _RATING_ID_BASE)
            bulk_upsert(write, table, frame)


def history_rows(url: str, start: date, end: date, model_version: str | None = None) -> dict[str, list[tuple]]:
    """Every row of the history tables dated ``start`` .. ``end`` (all columns but
    ``computed_at``), sorted by primary key; scores and rollups of ``model_version`` if given."""
    out = {}
    with engine_for(url).connect() as conn:
        for table in HISTORY_TABLES:
            columns = [c for c in table.columns if c.name != "computed_at"]
            stmt = select(*columns).where(table.c.as_of_date.between(start, end))
            if model_version is not None and "model_version" in table.c:
                stmt = stmt.where(table.c.model_version == model_version)
            out[table.name] = [tuple(r) for r in conn.execute(stmt.order_by(*table.primary_key.columns))]
    return out
