"""``customer_health_daily`` end to end with ``dag.test()`` on the sandbox.

The run extracts the four sources through the real clients, builds the crosswalk, computes
signals, scores, decides and dispatches actions. Running the same date again must change no
table and create nothing new in any external system.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from customer_health.warehouse import schema as s
from customer_health.warehouse.engine import engine_for
from health_sandbox.store import sandbox_writes
from tests.conftest import TEST_END_DATE

pytestmark = pytest.mark.slow

TABLES = [
    s.raw_sf_account,
    s.raw_sf_task,
    s.raw_zd_ticket,
    s.raw_stripe_invoice,
    s.raw_product_usage_daily,
    s.account_crosswalk,
    s.account_identity_map,
    s.signal_values,
    s.health_scores,
    s.action_outbox,
]


def _logical_date_scoring(day) -> datetime:
    """The logical date of the manual run whose data interval is [day, day + 1)."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def _counts(url: str) -> dict[str, int]:
    with engine_for(url).connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in TABLES}


def _writes(sandbox) -> int:
    with sandbox.store.connect() as conn:
        return conn.execute(select(func.count()).select_from(sandbox_writes)).scalar_one()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_daily_run_scores_every_customer_and_a_rerun_changes_nothing(
    backend, fresh_sandbox, dagbag, dag_env, tmp_path, request
):
    url = f"sqlite:///{tmp_path / 'wh.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    dag_env(fresh_sandbox, url)
    dag = dagbag.dags["customer_health_daily"]

    run = dag.test(logical_date=_logical_date_scoring(TEST_END_DATE))
    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]
    first = _counts(url)
    writes_after_first = _writes(fresh_sandbox)
    assert first["raw_sf_account"] > 0 and first["raw_zd_ticket"] > 0 and first["raw_stripe_invoice"] > 0
    assert first["raw_product_usage_daily"] > 0
    with engine_for(url).connect() as conn:
        scored = conn.execute(
            select(func.count()).select_from(s.health_scores).where(s.health_scores.c.as_of_date == TEST_END_DATE)
        ).scalar_one()
    assert scored > 0

    rerun = dag.test(logical_date=_logical_date_scoring(TEST_END_DATE))
    assert rerun.state == "success"
    assert _counts(url) == first
    assert _writes(fresh_sandbox) == writes_after_first


def _score_rows(url: str) -> list[tuple]:
    cols = [c for c in s.health_scores.columns if c.name != "computed_at"]
    with engine_for(url).connect() as conn:
        return [tuple(r) for r in conn.execute(select(*cols).order_by(s.health_scores.c.account_key))]


def test_sharded_and_unsharded_runs_produce_identical_scores(company_dir, dagbag, dag_env, tmp_path):
    from health_sandbox.server import Sandbox

    results = {}
    for shards in (1, 3):
        folder = tmp_path / f"sandbox-{shards}"
        folder.mkdir()
        for name in ("company.db", "product.db"):
            shutil.copy(company_dir / name, folder / name)
        sb = Sandbox.start(folder)
        try:
            url = f"sqlite:///{tmp_path / f'wh-{shards}.db'}"
            dag_env(sb, url)
            run = dagbag.dags["customer_health_daily"].test(
                logical_date=_logical_date_scoring(TEST_END_DATE), run_conf={"shards": shards, "dispatch": False}
            )
            assert run.state == "success"
            results[shards] = _score_rows(url)
        finally:
            sb.stop()
    assert len(results[1]) > 0
    assert results[3] == results[1]
