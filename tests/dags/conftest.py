"""Fixtures for running whole DAGs with ``dag.test()`` against the sandbox.

The root conftest gives each test session a private ``AIRFLOW_HOME`` before Airflow is imported;
``airflow_metadata`` migrates that metadata DB once per session. ``dag_env`` points every
connection at a running sandbox and a given warehouse, through ``AIRFLOW_CONN_*`` variables
(the env-provided connections a production deployment would use too).
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def dag_env(monkeypatch):
    """A function: point the DAG's connections at ``sandbox`` and the warehouse ``url``."""
    from customer_health import settings
    from customer_health.warehouse.engine import engine_for
    from health_sandbox.connections import as_environment, sandbox_connections

    def apply(sandbox, url: str) -> None:
        for key, value in as_environment(sandbox_connections(sandbox.endpoints, url)).items():
            monkeypatch.setenv(key, value)
        # Resolve the warehouse through the Airflow connection, as in production.
        monkeypatch.delenv(settings.WAREHOUSE_URL_ENV, raising=False)
        engine_for.cache_clear()

    return apply
