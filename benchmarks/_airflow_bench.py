"""Shared set-up of the benchmarks that run DAGs: a private Airflow home, the sandbox, connections.

The same set-up as ``make`` and the DAG tests (``tests/conftest.py``, ``tests/dags/conftest.py``):

* ``use_private_airflow_home(home)`` - the Makefile's Airflow exports with ``AIRFLOW_HOME`` =
  ``home``. Must run before ``airflow`` is imported (Airflow reads its configuration at import);
* ``migrate_metadata()`` - ``airflow db migrate`` on that home and the scoring pool
  (``settings.SCORING_POOL``, one slot, as ``airflow pools set`` creates it);
* ``scratch_company(company, work)`` - a private copy of a synthetic company for a sandbox (the
  sandbox records every write into ``company.db``); files named in ``link`` are symlinked
  instead, for big files nothing writes (the product DB is only read);
* ``point_connections(sandbox, url)`` - every ``AIRFLOW_CONN_*`` at the sandbox and the
  warehouse ``url``, resolved through the Airflow connection as in production;
* ``task_durations(run)`` - a finished DAG run's task durations, slowest first;
  ``task_totals(run)`` - the same per task, mapped runs summed;
* ``output_to(path)`` - everything written to stdout and stderr (Airflow's task logs) into a file.

Nothing here imports Airflow at module level.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.airflow_home


def use_private_airflow_home(home: Path) -> None:
    """Point Airflow at ``home`` and the project's DAG and plugin folders (the Makefile's exports)."""
    if "airflow" in sys.modules:
        raise RuntimeError("use_private_airflow_home() must run before airflow is imported")
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"


def migrate_metadata() -> None:
    """``airflow db migrate`` on the current ``AIRFLOW_HOME``, then the scoring pool."""
    from tests.airflow_home import migrate_metadata as migrate

    migrate()


def scratch_company(company: Path, work: Path, link: Iterable[str] = ()) -> Path:
    """Copy the company in ``company`` (its databases and the sandbox's certificate) to ``work``;
    the files named in ``link`` are symlinked instead of copied."""
    linked = set(link)
    work.mkdir(parents=True)
    for f in company.iterdir():
        if f.is_file() and (f.suffix == ".db" or f.name.startswith("sandbox-")):
            if f.name in linked:
                (work / f.name).symlink_to(f.resolve())
            else:
                shutil.copy(f, work / f.name)
    return work


def point_connections(sandbox, warehouse_url: str) -> None:
    """Every connection at ``sandbox`` and the warehouse at ``warehouse_url`` (``AIRFLOW_CONN_*``);
    the warehouse is then resolved through ``health_warehouse``, as in production."""
    from customer_health import settings
    from customer_health.warehouse.engine import engine_for
    from health_sandbox.connections import as_environment, sandbox_connections

    os.environ.update(as_environment(sandbox_connections(sandbox.endpoints, warehouse_url)))
    os.environ.pop(settings.WAREHOUSE_URL_ENV, None)
    engine_for.cache_clear()


def task_durations(run) -> list[tuple[str, float]]:
    """``(task id[map index], seconds)`` of a finished DAG run's task instances, slowest first."""
    out = []
    for ti in run.get_task_instances():
        if ti.start_date and ti.end_date:
            key = ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else "")
            out.append((key, (ti.end_date - ti.start_date).total_seconds()))
    return sorted(out, key=lambda kv: -kv[1])


def task_totals(run) -> list[tuple[str, int, float]]:
    """``(task id, task runs, seconds)`` of a finished DAG run, mapped runs summed, slowest first."""
    totals: dict[str, list] = {}
    for key, seconds in task_durations(run):
        entry = totals.setdefault(key.split("[")[0], [0, 0.0])
        entry[0] += 1
        entry[1] += seconds
    return sorted(((k, n, s) for k, (n, s) in totals.items()), key=lambda t: -t[2])


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send the process's stdout and stderr (file descriptors 1 and 2, so Airflow's loggers and
    subprocesses too) to ``path`` (appended) while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "ab") as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
