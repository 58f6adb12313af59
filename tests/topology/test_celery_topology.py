"""The daily DAG on Airflow's production topology: api-server, scheduler, dag-processor and Celery.

Everything runs as processes on loopback (``AirflowCluster``) against a fresh PostgreSQL metadata
database and Redis, with the sandbox and a PostgreSQL warehouse handed to every process through
``AIRFLOW_CONN_*`` variables, the way a deployment supplies connections. Runs are triggered and
watched only through the REST API.

1. A triggered daily run succeeds and leaves the warehouse and the sandbox as ``dag.test()``
   would: a score for every customer, every decided action delivered, exactly once.
2. The Celery worker is SIGKILLed while a dispatch task is half-way through its batch (one
   Salesforce Task created, the next request in flight). A new worker takes over; Airflow's
   heartbeat timeout and retries finish the run, and nothing is duplicated: one score per
   account, one Salesforce Task per outbox key.

When PostgreSQL or Redis is down these tests fail in CI (``CI=true``) and are skipped elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from customer_health.warehouse import schema as s
from customer_health.warehouse.engine import engine_for
from health_sandbox.connections import as_environment, sandbox_connections
from health_sandbox.store import sandbox_faults, sandbox_writes, sf_task
from tests.conftest import IN_CI, TEST_END_DATE, require_postgres
from tests.topology.cluster import AirflowCluster, redis_available

pytestmark = pytest.mark.slow

DAILY = "customer_health_daily"
# The manual run whose data interval is [TEST_END_DATE, +1 day): it scores TEST_END_DATE.
LOGICAL_DATE = f"{TEST_END_DATE + timedelta(days=1)}T00:00:00Z"
RUN_TIMEOUT = 270


def _require_services() -> None:
    require_postgres()
    if not redis_available():
        msg = "Redis is not reachable at 127.0.0.1:6379 (start it with `redis-server --daemonize yes`)."
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture()
def cluster_for(tmp_path) -> Iterator[Callable[..., AirflowCluster]]:
    """A function: start an AirflowCluster pointed at ``sandbox`` and warehouse ``url``; stopped after."""
    _require_services()
    started: list[AirflowCluster] = []

    def start(sandbox, url: str) -> AirflowCluster:
        env = as_environment(sandbox_connections(sandbox.endpoints, url))
        cluster = AirflowCluster(home=tmp_path / "airflow", extra_env=env)
        started.append(cluster)
        cluster.start()
        cluster.wait_for_dag(DAILY)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


def _wait(cluster: AirflowCluster, run_id: str) -> None:
    state = cluster.wait_for_run(DAILY, run_id, timeout=RUN_TIMEOUT)
    assert state == "success", (cluster.task_states(DAILY, run_id), cluster.logs("scheduler", 40))


def _assert_scored_and_delivered_once(url: str, sandbox) -> dict[str, int]:
    """Every customer scored once; every action delivered; one Salesforce Task per outbox key."""
    with engine_for(url).connect() as conn:
        customers = conn.execute(
            select(func.count()).select_from(s.signal_values).where(s.signal_values.c.as_of_date == TEST_END_DATE)
        ).scalar_one()
        scored = conn.execute(
            select(func.count()).select_from(s.health_scores).where(s.health_scores.c.as_of_date == TEST_END_DATE)
        ).scalar_one()
        by_status = dict(
            conn.execute(
                select(s.action_outbox.c.status, func.count())
                .where(s.action_outbox.c.trigger_date == TEST_END_DATE)
                .group_by(s.action_outbox.c.status)
            ).all()
        )
        task_keys = list(
            conn.execute(
                select(s.action_outbox.c.idempotency_key).where(
                    s.action_outbox.c.trigger_date == TEST_END_DATE,
                    s.action_outbox.c.action_type.in_(["checkin_task", "adoption_review_task", "emergency_review_task",
                                                       "expansion_task"]),
                )
            ).scalars()
        )  # fmt: skip
    assert customers > 0 and scored == customers, (scored, customers)
    assert by_status.get("sent", 0) > 0 and set(by_status) <= {"sent", "suppressed"}, by_status
    assert task_keys, "the test company always triggers Salesforce tasks"
    with sandbox.store.connect() as conn:
        tasks = dict(
            conn.execute(
                select(sf_task.c.Health_Action_Key__c, func.count())
                .where(sf_task.c.Health_Action_Key__c.in_(task_keys))
                .group_by(sf_task.c.Health_Action_Key__c)
            ).all()
        )
        created_twice = conn.execute(
            select(sandbox_writes.c.external_id)
            .where(sandbox_writes.c.created.is_(True), sandbox_writes.c.external_id.is_not(None))
            .group_by(sandbox_writes.c.system, sandbox_writes.c.object, sandbox_writes.c.external_id)
            .having(func.count() > 1)
        ).all()
    assert tasks == dict.fromkeys(task_keys, 1), "exactly one Salesforce Task per outbox key"
    assert created_twice == []
    return {"customers": customers, "sent": by_status["sent"], "tasks": len(task_keys)}


def test_daily_run_on_celery_scores_everyone_and_delivers_once(cluster_for, fresh_sandbox, postgres_url):
    cluster = cluster_for(fresh_sandbox, postgres_url)
    run_id = cluster.trigger(DAILY, LOGICAL_DATE)
    _wait(cluster, run_id)
    states = cluster.task_states(DAILY, run_id)
    assert states["score_accounts"] == "success" and states["crm_writeback"] == "success"
    _assert_scored_and_delivered_once(postgres_url, fresh_sandbox)


def test_a_worker_killed_mid_dispatch_is_replaced_and_nothing_is_duplicated(cluster_for, fresh_sandbox, postgres_url):
    # The second Salesforce Task upsert hangs: the dispatch task is caught half-way through.
    fresh_sandbox.inject_fault(
        "salesforce", "timeout", path_regex="sobjects/Task/Health_Action_Key__c/", skip=1, retry_after=90
    )
    cluster = cluster_for(fresh_sandbox, postgres_url)
    run_id = cluster.trigger(DAILY, LOGICAL_DATE)

    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:  # the hanging request is in flight once the fault is consumed
        with fresh_sandbox.store.connect() as conn:
            if conn.execute(select(func.sum(sandbox_faults.c.remaining))).scalar_one() == 0:
                break
        assert cluster.run_state(DAILY, run_id) in ("queued", "running"), cluster.task_states(DAILY, run_id)
        time.sleep(1)
    else:
        pytest.fail(f"no dispatch reached Salesforce: {cluster.task_states(DAILY, run_id)}")
    victim = [k for k, v in cluster.task_states(DAILY, run_id).items() if k.startswith("dispatch_") and v == "running"]
    assert victim, cluster.task_states(DAILY, run_id)

    cluster.kill_worker(0)
    cluster.start_worker(1)
    _wait(cluster, run_id)

    tries: dict[str, int] = {}
    for ti in cluster.task_instances(DAILY, run_id):
        tries[ti["task_id"]] = max(tries.get(ti["task_id"], 0), ti["try_number"])
    assert any(tries[k.split("[")[0]] > 1 for k in victim), ("the killed task was retried", tries)
    _assert_scored_and_delivered_once(postgres_url, fresh_sandbox)
