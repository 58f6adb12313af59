"""Run an Airflow backfill in the test process: the real backfill, a minimal scheduler loop.

``airflow backfill create`` only *creates* the runs (``airflow.models.backfill._create_backfill``:
run type ``backfill``, ``backfill_id``, ``sort_ordinal``, conf, reprocess behaviour, clearing
and re-using completed runs); the scheduler then starts them (``SchedulerJobRunner.
_start_queued_dagruns``, which enforces the backfill's ``max_active_runs`` in sort order) and
schedules their tasks (``DagRun.update_state``, which checks every task dependency, including
``depends_on_past``). ``drive_backfill`` calls exactly those, and runs each scheduled task
instance in-process through the Task SDK as ``dag.test()`` does (no executor, no API server).

Tasks of the runs that are running at the same time are executed newest date first within a
scheduler pass: a legitimate interleaving that a scheduler with parallel workers can produce,
and the one that would expose a date scored before the date it depends on.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from airflow import settings
from airflow.jobs.job import Job
from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
from airflow.models.backfill import ReprocessBehavior, _create_backfill
from airflow.models.dagrun import DagRun
from airflow.sdk.definitions.dag import _run_task
from airflow.utils import timezone
from airflow.utils.state import DagRunState, TaskInstanceState
from sqlalchemy import select, update

_FINISHED = (DagRunState.SUCCESS, DagRunState.FAILED)


def _serialize_dags() -> None:
    """Write the DAG folder's DAGs to the metadata DB, as the dag processor (and dag.test) do:
    ``_create_backfill`` reads the serialized DAG."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        sync_bag_to_db(bag, bundle.name, bundle.version)


def _unpause(dag_id: str) -> None:
    """``airflow dags unpause``: the scheduler starts no run, backfill or not, of a paused DAG."""
    from airflow.models.dag import DagModel

    session = settings.Session()
    try:
        session.execute(update(DagModel).where(DagModel.dag_id == dag_id).values(is_paused=False))
        session.commit()
    finally:
        session.close()


def drive_backfill(
    dag,
    from_date: datetime,
    to_date: datetime,
    *,
    max_active_runs: int = 3,
    reprocess_behavior: ReprocessBehavior = ReprocessBehavior.COMPLETED,
    conf: dict | None = None,
    max_passes: int = 100,
) -> list[DagRun]:
    """Create a backfill of ``dag`` for ``from_date`` .. ``to_date`` and run it to the end.

    Returns the backfill's runs (sorted by logical date), finished.
    """
    _serialize_dags()
    _unpause(dag.dag_id)
    backfill = _create_backfill(
        dag_id=dag.dag_id,
        from_date=from_date,
        to_date=to_date,
        max_active_runs=max_active_runs,
        reverse=False,
        dag_run_conf=conf,
        triggering_user_name="pytest",
        reprocess_behavior=reprocess_behavior,
    )
    runner = SchedulerJobRunner(job=Job())
    session = settings.Session()
    try:
        for _ in range(max_passes):
            session.expire_all()
            runner._start_queued_dagruns(session)
            session.commit()
            of_backfill = DagRun.backfill_id == backfill.id
            if not session.scalars(select(DagRun).where(of_backfill, DagRun.state.not_in(_FINISHED))).all():
                break
            runs = session.scalars(
                select(DagRun).where(of_backfill, DagRun.state == DagRunState.RUNNING).order_by(DagRun.logical_date.desc())
            ).all()
            for run in runs:
                run.dag = runner.scheduler_dag_bag.get_dag_for_run(run, session=session)
                schedulable, _ = run.update_state(session=session)
                for ti in schedulable:
                    if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                        ti.try_number += 1
                    ti.state = TaskInstanceState.SCHEDULED
                    ti.scheduled_dttm = timezone.utcnow()
                session.commit()
            for run in runs:
                for ti in run.get_task_instances(session=session):
                    if ti.state == TaskInstanceState.SCHEDULED:
                        # A failing task raises here; its state (failed / up for retry) records it.
                        with contextlib.suppress(Exception):
                            _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
        else:  # pragma: no cover - a stuck backfill: say where it is stuck
            stuck = {
                str(run.logical_date.date()): (
                    str(run.state),
                    sorted({(ti.task_id, str(ti.state)) for ti in run.get_task_instances(session=session)}),
                )
                for run in session.scalars(select(DagRun).where(DagRun.backfill_id == backfill.id))
            }
            raise AssertionError(f"backfill {backfill.id} did not finish in {max_passes} scheduler passes: {stuck}")
        runner._mark_backfills_complete(session=session)
        session.commit()
        runs = list(
            session.scalars(select(DagRun).where(DagRun.backfill_id == backfill.id).order_by(DagRun.logical_date))
        )
        session.expunge_all()
    finally:
        session.close()
    return runs
