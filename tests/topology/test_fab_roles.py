"""Who may do what, with the production auth manager (FAB), on the production topology.

The cluster runs as ``docker-compose.yaml`` configures it: the FAB auth manager, its tables
migrated with the metadata DB, the dashboard's resources and roles registered by
``register_fab_roles`` (what the compose init service runs), users created with FAB's CLI. The
api-server reads a copy of the scored company's warehouse. Everyone logs in at ``/auth/token``
as an API client would and uses the REST API and the dashboard with that token.

* A CSM (role ``Customer Health CSM`` alone) opens the dashboard and enters an override, which
  lands in the warehouse with their name; the same token cannot trigger a DAG run or read the
  connections.
* A viewer of the dashboard (Airflow's ``Viewer`` plus ``Customer Health Viewer``) reads it and
  cannot override. An Airflow ``Viewer`` without the dashboard role does not even read it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select

from customer_health.dashboard.auth import CSM_ROLE, VIEWER_ROLE
from customer_health.warehouse import schema as s
from customer_health.warehouse.engine import engine_for
from health_sandbox.connections import as_environment, warehouse_connection
from tests.conftest import IN_CI, require_postgres
from tests.topology.cluster import AirflowCluster, redis_available

pytestmark = pytest.mark.slow

DAILY = "customer_health_daily"


@pytest.fixture()
def fab_cluster(tmp_path, scored_company) -> Iterator[tuple[AirflowCluster, str]]:
    """A FAB cluster over a private copy of the scored company's warehouse; and that copy's URL."""
    require_postgres()
    if not redis_available():
        msg = "Redis is not reachable at 127.0.0.1:6379 (start it with `redis-server --daemonize yes`)."
        pytest.fail(msg) if IN_CI else pytest.skip(msg)
    source = scored_company.warehouse_url.split("///", 1)[1]
    copy = tmp_path / "warehouse.db"
    shutil.copy(source, copy)
    url = f"sqlite:///{copy}"
    env = as_environment({"health_warehouse": warehouse_connection(url)})
    cluster = AirflowCluster(home=tmp_path / "airflow", extra_env=env, workers=0, auth_manager="fab")
    try:
        cluster.start()
        cluster.wait_for_dag(DAILY)
        yield cluster, url
    finally:
        cluster.stop()


def _call(cluster: AirflowCluster, token: str, method: str, path: str, **kw) -> requests.Response:
    return requests.request(
        method, f"{cluster.base_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=60, **kw
    )


def test_a_csm_reads_the_dashboard_and_overrides_but_runs_nothing_and_reads_no_connections(fab_cluster, scored_company):
    cluster, url = fab_cluster
    cluster.add_user("casey", "casey-password-1", CSM_ROLE)
    token = cluster.token_for("casey", "casey-password-1")
    with engine_for(url).connect() as conn:
        account = conn.execute(
            select(s.health_scores.c.account_key).where(s.health_scores.c.as_of_date == scored_company.as_of).limit(1)
        ).scalar_one()

    page = _call(cluster, token, "GET", "/customer-health/")
    assert page.status_code == 200 and "Customer health" in page.text, page.text[:300]
    assert _call(cluster, token, "GET", f"/customer-health/api/accounts/{account}").status_code == 200

    body = {"score": 20, "reason": "The sponsor told us on the QBR call they are evaluating a competitor",
            "expires_on": str(scored_company.as_of + timedelta(days=60))}  # fmt: skip
    created = _call(cluster, token, "POST", f"/customer-health/api/accounts/{account}/overrides", json=body)
    assert created.status_code == 201, created.text
    with engine_for(url).connect() as conn:
        rows = conn.execute(
            select(s.score_overrides.c.score, s.score_overrides.c.created_by).where(s.score_overrides.c.account_key == account)
        ).all()
    assert [tuple(r) for r in rows] == [(20, "casey")]

    trigger = _call(cluster, token, "POST", f"/api/v2/dags/{DAILY}/dagRuns", json={"logical_date": None})
    assert trigger.status_code == 403, trigger.text
    assert _call(cluster, token, "GET", "/api/v2/connections").status_code == 403
    assert _call(cluster, token, "GET", "/api/v2/variables").status_code == 403
    # The admin's token does all of it: the refusals above are the role's, not a broken cluster.
    assert _call(cluster, cluster.token(), "GET", "/api/v2/connections").status_code == 200


def test_a_dashboard_viewer_cannot_override_and_an_airflow_viewer_cannot_read_it(fab_cluster, scored_company):
    cluster, _ = fab_cluster
    cluster.add_user("vera", "vera-password-1", "Viewer", VIEWER_ROLE)
    cluster.add_user("otto", "otto-password-1", "Viewer")
    vera = cluster.token_for("vera", "vera-password-1")
    otto = cluster.token_for("otto", "otto-password-1")

    assert _call(cluster, vera, "GET", "/customer-health/api/portfolio").status_code == 200
    body = {"score": 90, "reason": "Looks healthy to me", "expires_on": str(scored_company.as_of + timedelta(days=30))}
    refused = _call(cluster, vera, "POST", "/customer-health/api/accounts/001000000000000AAA/overrides", json=body)
    assert refused.status_code == 403 and "may not override" in refused.text, refused.text

    assert _call(cluster, otto, "GET", "/customer-health/api/portfolio").status_code == 403
