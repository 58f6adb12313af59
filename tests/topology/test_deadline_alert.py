"""The late-scores deadline, end to end: Airflow's scheduler notices it, a Celery worker runs it.

The cluster runs with the scores due at 00:00 (``CUSTOMER_HEALTH_SCORES_DUE_UTC``), so a daily run
triggered for a logical date a day and a minute ago is due a minute from now: the dag-processor
stores the DAG's deadline alert, the api-server creates the run's deadline, the scheduler marks it
missed while the run is still working and queues its callback, and a Celery worker runs
``customer_health.alerts.scores_late``, which posts to the ops webhook - here the sandbox's Slack.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest

from health_sandbox.connections import as_environment, sandbox_connections
from tests.conftest import IN_CI, require_postgres
from tests.integration.test_alerts import OPS_WEBHOOK, ops_messages
from tests.topology.cluster import AirflowCluster, redis_available

pytestmark = pytest.mark.slow

DAILY = "customer_health_daily"


def test_the_scheduler_runs_the_late_scores_alert_on_a_worker_when_the_deadline_passes(
    tmp_path, fresh_sandbox, postgres_url
):
    require_postgres()
    if not redis_available():
        msg = "Redis is not reachable at 127.0.0.1:6379 (start it with `redis-server --daemonize yes`)."
        pytest.fail(msg) if IN_CI else pytest.skip(msg)
    slack = urlsplit(fresh_sandbox.endpoints["slack"])
    env = as_environment(sandbox_connections(fresh_sandbox.endpoints, postgres_url))
    env["AIRFLOW_CONN_HEALTH_OPS_SLACK"] = json.dumps(
        {"conn_type": "slackwebhook", "host": f"{slack.scheme}://{slack.netloc}/services", "password": OPS_WEBHOOK}
    )
    env["CUSTOMER_HEALTH_SCORES_DUE_UTC"] = "00:00"
    # Zendesk rate-limits the run's first request and asks for two minutes: the extraction honours
    # Retry-After, so the scores are truly late when the deadline passes a minute after the trigger
    # (without it the run scores in under a minute, and the alert rightly stays silent).
    fresh_sandbox.inject_fault("zendesk", "rate_limit", path_regex="incremental/tickets", retry_after=120)
    cluster = AirflowCluster(home=tmp_path / "airflow", extra_env=env, workers=1)
    try:
        cluster.start()
        cluster.wait_for_dag(DAILY)
        logical = (datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=60)).replace(microsecond=0)
        run_id = cluster.trigger(DAILY, logical.isoformat().replace("+00:00", "Z"))

        deadline = time.monotonic() + 200
        while not ops_messages(fresh_sandbox) and time.monotonic() < deadline:
            time.sleep(3)
        messages = ops_messages(fresh_sandbox)
        assert messages, (
            f"no late-scores alert; run {cluster.task_states(DAILY, run_id)}\n"
            f"scheduler:\n{cluster.logs('scheduler', 30)}\nworker:\n{cluster.logs('worker-0', 30)}"
        )
    finally:
        cluster.stop()
    [text] = messages
    due = logical + timedelta(days=1)
    assert f"were not written by {due:%H:%M} UTC on {due:%Y-%m-%d}" in text
    assert f"The run `{run_id}` of `{DAILY}` is running" in text
