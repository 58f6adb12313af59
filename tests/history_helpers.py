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
    from health_sandbox.connections import as_environment, sandbox_connections

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
    from customer_health.warehouse.io import upsert_rows

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
            upsert_rows(write, table, frame)


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


def expected_derived_tables(engine, kept: int) -> tuple[dict, dict, set]:
    """Summary, movers and episodes recomputed from every stored score (pandas and Python, not
    the code under test)."""
    with engine.connect() as conn:
        rows = pd.DataFrame(
            [tuple(r) for r in conn.execute(select(
                s.health_scores.c.model_version, s.health_scores.c.as_of_date, s.health_scores.c.segment,
                s.health_scores.c.zone, s.health_scores.c.arr, s.health_scores.c.delta_30, s.health_scores.c.account_key,
                s.health_scores.c.previous_zone,
            ))],
            columns=["model_version", "as_of_date", "segment", "zone", "arr", "delta_30", "account_key",
                     "previous_zone"],
        )  # fmt: skip
    episodes = set()
    for (version, key), part in rows.groupby(["model_version", "account_key"]):
        changes = part[part["previous_zone"].notna() & (part["zone"] != part["previous_zone"])].sort_values("as_of_date")
        for row in changes.itertuples():
            if row.zone in ("At Risk", "Critical") and row.previous_zone in ("Healthy", "Neutral"):
                later = changes[(changes["as_of_date"] > row.as_of_date) & changes["zone"].isin(["Healthy", "Neutral"])]
                episodes.add((version, key, row.as_of_date, later["as_of_date"].min() if len(later) else None))
    summary = {}
    movers = {}
    for (version, day), part in rows.groupby(["model_version", "as_of_date"]):
        for (segment, zone), group in part.assign(segment=part["segment"].fillna("")).groupby(["segment", "zone"]):
            summary[(version, day, segment, zone)] = (len(group), float(group["arr"].fillna(0).sum()))
        delta = part["delta_30"].astype(float)
        for direction, chosen, sign in (("decline", part[delta < 0], 1), ("recovery", part[delta > 0], -1)):
            ordered = sorted(zip(chosen["delta_30"] * sign, chosen["account_key"], strict=True))[:kept]
            movers[(version, day, direction)] = [(key, value * sign) for value, key in ordered]
    return summary, movers, episodes


def stored_derived_tables(engine) -> tuple[dict, dict, set]:
    with engine.connect() as conn:
        summary = {
            (r.model_version, r.as_of_date, r.segment, r.zone): (r.accounts, r.arr)
            for r in conn.execute(select(s.health_score_summary))
        }
        movers: dict = {}
        mv = s.health_score_movers.c
        for r in conn.execute(select(s.health_score_movers).order_by(mv.model_version, mv.as_of_date, mv.direction, mv.rank)):
            movers.setdefault((r.model_version, r.as_of_date, r.direction), []).append((r.account_key, r.delta_30))
        episodes = {tuple(r) for r in conn.execute(select(s.health_score_episodes))}
    return summary, movers, episodes


def assert_derived_tables_match(engine, kept: int | None = None) -> None:
    """The dashboard's derived tables equal a recomputation from every stored score (``kept``:
    movers per direction, default ``history.MOVERS_KEPT``)."""
    from customer_health.scoring.history import MOVERS_KEPT

    want_summary, want_movers, want_episodes = expected_derived_tables(engine, MOVERS_KEPT if kept is None else kept)
    got_summary, got_movers, got_episodes = stored_derived_tables(engine)
    assert got_episodes == want_episodes
    assert set(got_summary) == set(want_summary)
    for key, (accounts, arr) in want_summary.items():
        assert got_summary[key][0] == accounts, key
        assert got_summary[key][1] == pytest.approx(arr, rel=1e-12, abs=1e-6), key
    assert {k: v for k, v in got_movers.items() if v} == {k: v for k, v in want_movers.items() if v}
