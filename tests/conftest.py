"""Shared fixtures: a small synthetic company, the running sandbox, and warehouses.

* ``company_dir`` - a small company generated once per test session (deterministic seed).
* ``sandbox`` - every external system served on loopback over that company, once per session.
* ``fresh_sandbox`` - a sandbox over a private copy of the company, for tests that write.
* ``warehouse_url`` - a migrated, empty warehouse; parametrized over SQLite and PostgreSQL.
  PostgreSQL databases get unique names and are dropped afterwards. When the server is down
  the PostgreSQL case fails in CI (``CI=true``) and is skipped only on a developer's machine.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

# Airflow reads its configuration at import: point it at a private home first. Each test
# session gets its own (never the demo's .local/airflow, never another session's: dag.test()
# clears runs of the same logical date, so two sessions sharing a metadata DB would collide).
_ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="customer-health-airflow-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, True)
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(_ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

from sqlalchemy import create_engine, text  # noqa: E402

from customer_health.warehouse.engine import engine_for  # noqa: E402
from customer_health.warehouse.migrate import upgrade_to_head  # noqa: E402

PG_ADMIN_URL = os.environ.get("CUSTOMER_HEALTH_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# The test company: small enough to generate in seconds, long enough for 90-day trends.
TEST_END_DATE = date(2026, 11, 1)
TEST_ACCOUNTS = 120
TEST_DAYS = 400
TEST_SEED = 7


def _pg_available() -> bool:
    try:
        eng = create_engine(PG_ADMIN_URL)
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
        return True
    except Exception:  # noqa: BLE001
        return False


def require_postgres() -> None:
    """Fail in CI, skip elsewhere, when the local PostgreSQL server is not reachable."""
    if _pg_available():
        return
    msg = (
        f"PostgreSQL is not reachable at {PG_ADMIN_URL}. Start it with "
        "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`."
    )
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database with a unique name; dropped afterwards."""
    require_postgres()
    name = f"ch_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        engine_for.cache_clear()
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_url(request, tmp_path) -> Iterator[str]:
    """A migrated, empty warehouse on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
        upgrade_to_head(engine_for(url))
        yield url
    else:
        url = request.getfixturevalue("postgres_url")
        upgrade_to_head(engine_for(url))
        yield url


@pytest.fixture()
def sqlite_warehouse_url(tmp_path) -> str:
    """A migrated, empty SQLite warehouse (for tests that need only one backend)."""
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    upgrade_to_head(engine_for(url))
    return url


@pytest.fixture(scope="session")
def company_dir(tmp_path_factory) -> Path:
    """A small synthetic company, generated once per test session."""
    from health_sandbox.company import CompanySpec, generate_company

    folder = tmp_path_factory.mktemp("company")
    generate_company(
        folder,
        CompanySpec(accounts=TEST_ACCOUNTS, days=TEST_DAYS, seed=TEST_SEED, end_date=TEST_END_DATE),
    )
    return folder


@pytest.fixture(scope="session")
def sandbox(company_dir):
    """The sandbox serving the session's company (read-mostly: do not write in tests using it)."""
    from health_sandbox.server import Sandbox

    sb = Sandbox.start(company_dir)
    yield sb
    sb.stop()


@pytest.fixture()
def fresh_sandbox(company_dir, tmp_path):
    """A sandbox over a private copy of the company, for tests that write or arm faults."""
    from health_sandbox.server import Sandbox

    folder = tmp_path / "sandbox"
    folder.mkdir()
    for name in ("company.db", "product.db"):
        shutil.copy(company_dir / name, folder / name)
    for cert in company_dir.glob("sandbox-*.pem"):
        shutil.copy(cert, folder / cert.name)
    sb = Sandbox.start(folder)
    yield sb
    sb.stop()


@pytest.fixture(scope="session")
def airflow_metadata() -> Path:
    """Airflow's metadata DB for the tests, migrated (idempotent, a few seconds)."""
    from tests.airflow_home import migrate_metadata

    return migrate_metadata()


@pytest.fixture(scope="session")
def dagbag(airflow_metadata):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


@pytest.fixture(scope="session")
def scored_company(company_dir, tmp_path_factory):
    """The test company extracted, scored and acted on by the real code (``tests/scored_company.py``)."""
    from tests.scored_company import score_company

    scored = score_company(company_dir, tmp_path_factory.mktemp("scored"), TEST_END_DATE)
    yield scored
    scored.sandbox.stop()
