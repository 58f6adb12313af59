"""Airflow's metadata DB for tests and benchmarks: migrated on the current ``AIRFLOW_HOME``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def migrate_metadata(*, scoring_pool: bool = True) -> Path:
    """``airflow db migrate`` on ``AIRFLOW_HOME`` (idempotent), then the scoring pool (one slot)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("airflow")
    proc = subprocess.run([str(exe), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if scoring_pool:
        from airflow import settings as airflow_settings
        from airflow.models.pool import Pool

        from customer_health.settings import SCORING_POOL, SCORING_POOL_DESCRIPTION

        airflow_settings.configure_orm()
        Pool.create_or_update_pool(SCORING_POOL, 1, SCORING_POOL_DESCRIPTION, include_deferred=False)
    return home


def forget_runs(dag_id: str, logical_date, *, and_earlier: bool = False) -> None:
    """Delete the test metadata DB's runs of ``dag_id`` for ``logical_date`` and their task instances
    and deadlines: tests of several modules run the daily DAG for the same date on one session's
    metadata DB, and a test that needs a run of its own must not inherit another test's."""
    from airflow.models.dagrun import DagRun
    from airflow.models.deadline import Deadline
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        # and_earlier: also every earlier run (the scoring task depends on its past: a run another test
        # left unscored before this date would hold this run's scoring back for ever)
        of_date = DagRun.logical_date <= logical_date if and_earlier else DagRun.logical_date == logical_date
        runs = session.query(DagRun.id, DagRun.run_id).filter(DagRun.dag_id == dag_id, of_date).all()
        if not runs:
            return
        ids, run_ids = [r.id for r in runs], [r.run_id for r in runs]
        session.query(Deadline).filter(Deadline.dagrun_id.in_(ids)).delete(synchronize_session=False)
        session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id.in_(run_ids)).delete(
            synchronize_session=False)
        session.query(DagRun).filter(DagRun.id.in_(ids)).delete(synchronize_session=False)
