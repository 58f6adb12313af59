"""Score history rebuilds: a native Airflow backfill of the daily DAG, and the bulk rebuild DAG.

The warehouse starts *current* (the test company extracted up to its last day, as after the
daily runs up to today). Then:

* a real Airflow backfill of ``customer_health_daily`` over five dates (``tests/dags/
  backfill_driver.py``: ``_create_backfill`` plus the scheduler's own run-starting and
  task-scheduling calls, three runs active at once, later dates' tasks run first in each pass)
  scores every date, sends nothing, and re-running it (``--reprocess-behavior completed``)
  changes no row;
* ``customer_health_rebuild`` over the same dates leaves the history tables identical, row for
  row, to the backfill's - on SQLite and on PostgreSQL - and running it again changes nothing;
* a rebuild under a new model version writes its history beside the old version's.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import yaml
from sqlalchemy import func, select

from customer_health.warehouse import schema as s
from customer_health.warehouse.engine import engine_for
from health_sandbox.store import sandbox_writes
from tests.conftest import TEST_END_DATE
from tests.dags.backfill_driver import drive_backfill
from tests.history_helpers import (
    assert_derived_tables_match,
    extracted_template,
    history_rows,
    load_warehouse,
)

pytestmark = pytest.mark.slow

FIRST = TEST_END_DATE - timedelta(days=12)
LAST = FIRST + timedelta(days=4)


def _midnight(day: date) -> datetime:
    """The backfill's logical date for as-of date ``day`` (the start of its data interval)."""
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def _writes(sandbox) -> int:
    with sandbox.store.connect() as conn:
        return conn.execute(select(func.count()).select_from(sandbox_writes)).scalar_one()


def _outbox(url: str) -> list[tuple]:
    o = s.action_outbox.c
    with engine_for(url).connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(o.idempotency_key, o.status).where(o.trigger_date.between(FIRST, LAST)).order_by(o.idempotency_key)
            )
        ]


@pytest.fixture(scope="module")
def template(sandbox, tmp_path_factory):
    """The test company extracted up to its last day (once for the module)."""
    return extracted_template(sandbox, tmp_path_factory.mktemp("extracted"), TEST_END_DATE)


def _rebuild(dagbag, **conf) -> None:
    run = dagbag.dags["customer_health_rebuild"].test(
        logical_date=datetime.now(UTC), run_conf={"from_date": FIRST.isoformat(), "to_date": LAST.isoformat()} | conf
    )
    assert run.state == "success", [(ti.task_id, ti.map_index, ti.state) for ti in run.get_task_instances()]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_backfill_and_a_rebuild_leave_the_same_history_and_reruns_change_nothing(
    backend, template, fresh_sandbox, dagbag, dag_env, tmp_path, request
):
    url = f"sqlite:///{tmp_path / 'wh.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    load_warehouse(template, url)
    dag_env(fresh_sandbox, url)
    writes_before = _writes(fresh_sandbox)

    runs = drive_backfill(dagbag.dags["customer_health_daily"], _midnight(FIRST), _midnight(LAST))

    assert [(r.run_type, r.state) for r in runs] == [("backfill", "success")] * 5
    backfilled = history_rows(url, FIRST, LAST)
    scored_dates = {row[1] for row in backfilled["health_scores"]}
    assert scored_dates == {FIRST + timedelta(days=k) for k in range(5)}
    assert {status for _, status in _outbox(url)} <= {"suppressed"}  # decided, recorded, never sent
    assert _writes(fresh_sandbox) == writes_before

    rerun = drive_backfill(dagbag.dags["customer_health_daily"], _midnight(FIRST), _midnight(LAST))
    assert [r.state for r in rerun] == ["success"] * 5
    assert history_rows(url, FIRST, LAST) == backfilled
    assert _writes(fresh_sandbox) == writes_before

    # The daily runs kept the dashboard's derived tables date by date (write_scores); the
    # rebuilds recompute them from the rows they bulk-write: both equal a recomputation.
    assert_derived_tables_match(engine_for(url))
    _rebuild(dagbag)
    assert history_rows(url, FIRST, LAST) == backfilled
    assert_derived_tables_match(engine_for(url))

    # Again, sharded, in other chunks and in three date blocks scored in parallel (the later
    # blocks derive the earlier dates' scores their trends read): no duplicate, no difference.
    _rebuild(dagbag, shards=2, chunk_days=2, blocks=3)
    assert history_rows(url, FIRST, LAST) == backfilled
    assert_derived_tables_match(engine_for(url))
    assert _writes(fresh_sandbox) == writes_before


def test_a_rebuild_under_a_new_model_version_keeps_the_old_versions_history(
    template, sqlite_warehouse_url, monkeypatch
):
    from customer_health import pipeline, settings
    from customer_health.scoring.model_config import default_model_path, load_model_config
    from customer_health.validation.registry import propose

    load_warehouse(template, sqlite_warehouse_url)
    monkeypatch.setenv(settings.WAREHOUSE_URL_ENV, sqlite_warehouse_url)
    engine_for.cache_clear()
    engine = engine_for(sqlite_warehouse_url)
    v1 = pipeline.active_model_config()

    first = pipeline.rebuild_history(FIRST, LAST)  # the active model
    v1_history = history_rows(sqlite_warehouse_url, FIRST, LAST, v1.version)
    spec = yaml.safe_load(default_model_path().read_text())
    spec["version"] = "v1-recalibrated"
    propose(engine, load_model_config(yaml.safe_dump(spec, sort_keys=False)), parent_version=v1.version, created_by="pytest")
    second = pipeline.rebuild_history(FIRST, LAST, model_version="v1-recalibrated")

    assert first["model_version"] == v1.version and second["model_version"] == "v1-recalibrated"
    assert first["scores"] == second["scores"] > 0
    assert history_rows(sqlite_warehouse_url, FIRST, LAST, v1.version) == v1_history
    with engine.connect() as conn:
        versions = dict(
            conn.execute(
                select(s.health_scores.c.model_version, func.count())
                .where(s.health_scores.c.as_of_date.between(FIRST, LAST))
                .group_by(s.health_scores.c.model_version)
            ).all()
        )
    assert versions == {v1.version: first["scores"], "v1-recalibrated": second["scores"]}

    # The same rebuild on two worker processes (two date blocks at once) changes nothing.
    parallel = pipeline.rebuild_history(FIRST, LAST, workers=2)
    assert parallel["scores"] == first["scores"] and parallel["workers"] == 2
    assert history_rows(sqlite_warehouse_url, FIRST, LAST, v1.version) == v1_history
