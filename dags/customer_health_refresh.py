"""
### Customer health — intraday refresh

Every 15 minutes, re-scores **only the accounts whose data just changed**, for today, and acts
on the result: an account whose executive sponsor complained on Thursday does not still show
*Neutral* on Friday.

1. **Guard**: does nothing while a `customer_health_daily` run is queued or running (the daily
   full recompute is authoritative for its date). Then the **preflight**
   (`customer_health.preflight`): a missing field, object, permission or table fails the run at
   once with the fix; sources without a connection are not connected, and the extraction below
   skips them with the reason (no CRM connected: no writeback, no Salesforce tasks).
2. **Extract** new Salesforce contacts, tasks and NPS responses, Zendesk tickets and ratings, and
   Stripe invoices and disputes up to the run's time, with the daily run's extractors and
   watermarks.
3. **Re-score** the accounts those records belong to (through `account_identity_map`) for today,
   against today's whole population (stored once per day by the first refresh), in the
   one-slot pool `customer_health_scoring` that the daily `score_accounts` also uses.
4. **Decide** today's actions for those accounts only (outbox keys carry the date: the daily run
   for the same date adds nothing), **write back** the Account health fields and **dispatch**.
5. **Advance** the refresh watermark, only when everything above succeeded.

Setup: `airflow pools set customer_health_scoring 1 "health scoring: daily and refresh never overlap"`.
Param `dispatch=false` decides without delivering. Logic: `include/customer_health/refresh.py`.
Owner: data engineering.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import CronTriggerTimetable, Param, dag, task

from customer_health.alerts import notify_task_failure
from customer_health.assets import HEALTH_SCORES

DAILY_DAG_ID = "customer_health_daily"
from customer_health.settings import SCORING_POOL  # noqa: E402

BUSY_STATES = ["queued", "running"]

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "on_failure_callback": notify_task_failure,  # the ops channel (customer_health.alerts)
}


@dag(
    dag_id="customer_health_refresh",
    schedule=CronTriggerTimetable("*/15 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    default_args=DEFAULT_ARGS,
    tags=["customer-health", "freshness"],
    doc_md=__doc__,
    params={
        "dispatch": Param(True, type="boolean", description="Deliver actions (false: decide and record only)."),
        "model_version": Param(
            None, type=["null", "string"], description="Score with this registered model version (default: active)."
        ),
    },
)
def customer_health_refresh():
    @task.short_circuit
    def daily_run_idle(ti=None) -> bool:
        """False (skip the run) while a daily run is queued or running."""
        return ti.get_dr_count(dag_id=DAILY_DAG_ID, states=BUSY_STATES) == 0

    @task(retries=0)
    def preflight() -> dict:
        """Connections, objects, fields, permissions, tables: fails fast with the fix when one is missing."""
        from customer_health import pipeline

        return pipeline.preflight()

    @task(retries=3)
    def extract_changes(logical_date=None) -> dict:
        """Intraday sources up to the run's time; returns the refresh window."""
        from customer_health import refresh

        return refresh.run_extract(logical_date)

    @task(pool=SCORING_POOL, outlets=[HEALTH_SCORES])
    def rescore_changed_accounts(extracted: dict, ti=None, params=None) -> dict:
        """Today's signals and score of the changed accounts, against today's population."""
        from airflow.sdk.exceptions import AirflowSkipException

        from customer_health import refresh

        if ti.get_dr_count(dag_id=DAILY_DAG_ID, states=BUSY_STATES):
            raise AirflowSkipException("a daily run started: its full recompute covers these accounts")
        return refresh.run_rescore(extracted["window"], params.get("model_version"))

    @task
    def decide_actions(extracted: dict, scored: dict, dag_run=None, params=None) -> dict:
        """Today's action rules for the changed accounts only (same outbox keys as the daily run)."""
        from customer_health import refresh
        from customer_health.actions.outbox import dispatch_allowed

        deliverable = dispatch_allowed(str(dag_run.run_type), bool(params["dispatch"]))
        return refresh.run_decide(extracted["window"], deliverable, params.get("model_version"))

    @task(retries=3)
    def crm_writeback(extracted: dict, decided: dict, params=None) -> dict:
        """Health fields on the Salesforce Accounts re-scored today (only what changed)."""
        from customer_health import pipeline, refresh

        if not decided["deliverable"]:
            return {"skipped": "dispatch disabled for this run"}
        if not pipeline.source_connected("salesforce"):
            return {"skipped": pipeline.NO_CRM}
        as_of = refresh.RefreshWindow.from_dict(extracted["window"]).as_of
        return pipeline.crm_writeback(as_of, params.get("model_version"))

    @task(retries=3)
    def dispatch_actions(extracted: dict, decided: dict) -> dict:
        """Deliver the changed accounts' pending actions exactly once (outbox claims)."""
        from customer_health import refresh

        if not decided["deliverable"]:
            return {"skipped": "dispatch disabled for this run"}
        return refresh.run_dispatch(extracted["window"])

    @task
    def advance_watermark(extracted: dict) -> dict:
        """The next refresh starts where this one ended (not reached when scoring was skipped)."""
        from customer_health import pipeline, refresh

        return refresh.advance_watermark(pipeline.warehouse(), refresh.RefreshWindow.from_dict(extracted["window"]))

    idle = daily_run_idle()
    extracted = extract_changes()
    idle >> preflight() >> extracted
    scored = rescore_changed_accounts(extracted)
    decided = decide_actions(extracted, scored)
    written = crm_writeback(extracted, decided)
    sent = dispatch_actions(extracted, decided)
    [written, sent] >> advance_watermark(extracted)


customer_health_refresh()
