"""Fixtures for running whole DAGs with ``dag.test()`` against the sandbox.

The root conftest points ``AIRFLOW_HOME`` at ``.local/airflow-test`` before Airflow is imported;
``airflow_metadata`` migrates that metadata DB once per session. ``dag_env`` points every
connection at a running sandbox and a given warehouse, through ``AIRFLOW_CONN_*`` variables
(the env-provided connections a production deployment would use too).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def airflow_metadata() -> Path:
    """Airflow's metadata DB for the tests, migrated (idempotent, a few seconds)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("airflow")
    proc = subprocess.run([str(exe), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    from airflow import settings as airflow_settings

    airflow_settings.configure_orm()
    return home


@pytest.fixture(scope="session")
def dagbag(airflow_metadata):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


@pytest.fixture()
def dag_env(monkeypatch):
    """A function: point the DAG's connections at ``sandbox`` and the warehouse ``url``."""
    from customer_health import settings
    from customer_health.sandbox.connections import as_environment, sandbox_connections
    from customer_health.warehouse.engine import engine_for

    def apply(sandbox, url: str) -> None:
        for key, value in as_environment(sandbox_connections(sandbox.endpoints, url)).items():
            monkeypatch.setenv(key, value)
        # Resolve the warehouse through the Airflow connection, as in production.
        monkeypatch.delenv(settings.WAREHOUSE_URL_ENV, raising=False)
        engine_for.cache_clear()

    return apply
