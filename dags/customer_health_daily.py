"""
### Customer health — daily run

Scores every customer 0–100 for the logical date **D** (the start of the run's data interval)
and acts on the result.

1. **Preflight** (`python -m customer_health.preflight`): every connection reachable,
   authenticated and holding what the product needs; a missing field, object, permission or
   table fails the run at once, with the fix. Then **extract** Salesforce, Zendesk, Stripe and
   the product database into the warehouse's raw tables (incremental, watermarked; malformed
   records are quarantined and counted). A source without an Airflow connection is not
   connected: its extraction task is skipped with the reason, and without Salesforce the CRM
   writeback and Salesforce-task actions are not attempted ("no CRM connected").
2. **Crosswalk** the four identities onto the Salesforce account.
3. **Signals** as of D (point in time: nothing after D is used), **score**, zone, trend and
   drivers into `health_scores` (an Asset), keyed by (account, D, model version).
4. **Stakeholders**: each account's people as of D (`stakeholder_health`: product engagement,
   NPS and CSAT per contact, executive sponsor and champion), beside the score, not in it.
5. **Actions**: decide from zone transitions into `action_outbox`, then dispatch one task per
   action type with pending rows (shadow-mode types are recorded, never sent; daily caps hold
   the rest for the next day), then sync the health segments to campaigns. Backfill runs and
   runs with `dispatch=false` dispatch and sync nothing.

Scoring a date waits for the previous run's scoring (`depends_on_past`): trends read earlier
scores. Backfill with `airflow backfill create --dag-id customer_health_daily --from-date D1
--to-date D2 --reprocess-behavior completed` (Airflow requires a reprocess behavior for such
DAGs); to rebuild a long history fast, trigger `customer_health_rebuild` instead.

Reads: connections `health_salesforce`, `health_zendesk`, `health_stripe`, `health_product_db`.
Writes: the warehouse (`health_warehouse`, default `.local/warehouse.db`), and through the
action targets Salesforce (tasks, Campaigns), Slack, e-mail, or HubSpot lists when configured.
Owner: data engineering. Logic lives in `include/customer_health`; this file only wires it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from customer_health.alerts import notify_task_failure, scores_due_alert
from customer_health.assets import HEALTH_SCORES
from customer_health.pipeline import action_types
from customer_health.settings import SCORING_POOL

# One dispatch task per action type in the rules file (config/actions_v1.yaml).
ACTION_TYPES = action_types()

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    # A task that fails for good posts to the ops channel (customer_health.alerts).
    "on_failure_callback": notify_task_failure,
}

# The scores of D are due at CUSTOMER_HEALTH_SCORES_DUE_UTC (HH:MM, compose: 06:00) on D+1; past
# that the scheduler runs alerts.scores_late on an executor, which tells the ops channel. Unset: none.
SCORES_DUE = scores_due_alert()


@dag(
    dag_id="customer_health_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    deadline=SCORES_DUE,
    tags=["customer-health"],
    doc_md=__doc__,
    params={
        "dispatch": Param(True, type="boolean", description="Deliver actions (false: decide and record only)."),
        "shards": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="Account shards for signal computation (default: one per 25,000 accounts).",
        ),
        "model_version": Param(
            None, type=["null", "string"], description="Score with this registered model version (default: active)."
        ),
    },
)
def customer_health_daily():
    @task(retries=0)
    def preflight() -> dict:
        """Connections, objects, fields, permissions, tables: fails fast with the fix when one is missing."""
        from customer_health import pipeline

        return pipeline.preflight()

    @task
    def migrate_warehouse() -> dict:
        """Apply pending warehouse migrations."""
        from customer_health import pipeline

        return pipeline.migrate_warehouse()

    @task(retries=3)
    def extract_salesforce(data_interval_end=None) -> dict:
        """Salesforce → raw_sf_* (SystemModstamp watermark, deleted records included)."""
        from customer_health import pipeline

        return pipeline.extract_salesforce(pipeline.interval_end(data_interval_end))

    @task(retries=3)
    def extract_zendesk(data_interval_end=None) -> dict:
        """Zendesk → raw_zd_* (incremental cursor export with ticket metrics)."""
        from customer_health import pipeline

        return pipeline.extract_zendesk(pipeline.interval_end(data_interval_end))

    @task(retries=3)
    def extract_stripe(data_interval_end=None) -> dict:
        """Stripe → raw_stripe_* (created windows plus a trailing re-read of changing objects)."""
        from customer_health import pipeline

        return pipeline.extract_stripe(pipeline.interval_end(data_interval_end))

    @task(retries=3)
    def extract_product(data_interval_end=None) -> dict:
        """Product DB → daily usage aggregates, computed in the product DB's SQL."""
        from customer_health import pipeline

        return pipeline.extract_product(pipeline.interval_end(data_interval_end))

    # none_failed: an extraction skipped because its source is not connected does not skip the rest.
    @task(trigger_rule="none_failed")
    def build_crosswalk() -> dict:
        """Map Zendesk, Stripe and product identities onto Salesforce accounts."""
        from customer_health import pipeline

        return pipeline.build_crosswalk()

    @task
    def check_record_spikes(data_interval_start=None, dag_run=None) -> dict:
        """Quarantined and unmapped records per source vs their usual: a spike tells the ops channel."""
        from customer_health import alerts, pipeline

        run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
        return alerts.check_run_for_spikes(pipeline.as_of_date(data_interval_start), run_type)

    @task
    def plan_signal_shards(data_interval_start=None, params=None) -> list[dict]:
        """Clear D's stored signal input and split the accounts into shards (Param `shards`)."""
        from customer_health import pipeline

        pipeline.clear_signal_input(pipeline.as_of_date(data_interval_start))
        return pipeline.signal_shards(params.get("shards"))

    @task(max_active_tis_per_dagrun=8)
    def compute_signals(shard: dict, data_interval_start=None) -> dict:
        """Point-in-time signals as of D for one account shard → signal_values (context + one column per signal)."""
        from customer_health import pipeline

        return pipeline.compute_signals(pipeline.as_of_date(data_interval_start), shard["shard"], shard["of"])

    # depends_on_past: trends and the previous zone of D read the scores of D-1, D-30, D-60 and
    # D-90, so D is scored only after the run before it scored. Backfills run several dates at
    # once (their own max_active_runs); without this a later date could score first.
    @task(outlets=[HEALTH_SCORES], depends_on_past=True, pool=SCORING_POOL)
    def score_accounts(data_interval_start=None, params=None) -> dict:
        """Scores, zones, trends, drivers and priority as of D into health_scores."""
        from customer_health import pipeline

        return pipeline.score(pipeline.as_of_date(data_interval_start), params.get("model_version"))

    @task
    def stakeholder_health(data_interval_start=None, data_interval_end=None) -> dict:
        """Product users' activity, then each account's people as of D into stakeholder_health
        (engagement, NPS, CSAT, sponsor and champion; shown beside the score, not weighted into it)."""
        from customer_health import pipeline

        return pipeline.stakeholder_health(
            pipeline.as_of_date(data_interval_start), pipeline.interval_end(data_interval_end)
        )

    @task
    def decide_actions(data_interval_start=None, dag_run=None, params=None) -> dict:
        """Zone transitions → action_outbox rows (suppressed in backfills and with dispatch=false)."""
        from customer_health import pipeline

        # The Task SDK's run type is an enum whose str() is "DagRunType.BACKFILL": pass its value
        # ("backfill"), or a backfill would not be recognised and would dispatch.
        run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
        return pipeline.decide_actions(
            pipeline.as_of_date(data_interval_start), run_type, bool(params["dispatch"]), params.get("model_version")
        )

    @task.branch
    def route_actions(decided: dict, data_interval_start=None) -> list[str]:
        """Follow only the action types with pending rows; the rest show as skipped."""
        from customer_health import pipeline

        if not decided["deliverable"]:
            return ["dispatch_disabled"]
        pending = pipeline.action_batches(pipeline.as_of_date(data_interval_start))
        return ["crm_writeback"] + [f"plan_{action_type}" for action_type in sorted(pending)]

    @task(task_id="dispatch_disabled")
    def dispatch_disabled(dag_run=None) -> str:
        """Backfill run or dispatch=false: actions were recorded, none is sent."""
        return f"no dispatch for run type {dag_run.run_type}"

    @task(retries=3)
    def crm_writeback(data_interval_start=None, params=None) -> dict:
        """Health fields on every changed Salesforce Account (composite collections)."""
        from customer_health import pipeline

        return pipeline.crm_writeback(pipeline.as_of_date(data_interval_start), params.get("model_version"))

    @task
    def plan(action_type: str, data_interval_start=None) -> list[list[str]]:
        """This action type's pending outbox keys, in batches (one mapped dispatch each)."""
        from customer_health import pipeline

        return pipeline.action_batches(pipeline.as_of_date(data_interval_start)).get(action_type, [])

    # After every dispatch (done, failed or skipped), so a pause and the nurture segment never
    # change the same membership at once; the step itself skips backfills and dispatch=false.
    @task(retries=3, trigger_rule="all_done")
    def sync_segments(data_interval_start=None, dag_run=None, params=None) -> dict:
        """Health segments (90+ advocates, 40-60 nurture, At Risk suppression) → campaigns or lists."""
        from customer_health import pipeline

        run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
        return pipeline.sync_segments(
            pipeline.as_of_date(data_interval_start), run_type, bool(params["dispatch"]), params.get("model_version")
        )

    @task(retries=3, max_active_tis_per_dagrun=4)
    def dispatch(action_type: str, keys: list[str]) -> dict:
        """Deliver one batch exactly once (outbox claim + the target's own idempotency)."""
        from customer_health import pipeline

        return pipeline.dispatch_batch(action_type, keys)

    migrated = migrate_warehouse()
    preflight() >> migrated
    extracted = [extract_salesforce(), extract_zendesk(), extract_stripe(), extract_product()]
    crosswalk = build_crosswalk()
    shards = plan_signal_shards()
    signals = compute_signals.expand(shard=shards)
    scores = score_accounts()
    migrated >> extracted >> crosswalk >> shards
    crosswalk >> check_record_spikes()
    signals >> scores
    scores >> stakeholder_health()

    decided = decide_actions()
    scores >> decided
    route = route_actions(decided)
    route >> [dispatch_disabled(), crm_writeback()]
    segments = sync_segments()
    decided >> segments
    for action_type in ACTION_TYPES:
        batches = plan.override(task_id=f"plan_{action_type}")(action_type)
        route >> batches
        sent = dispatch.override(task_id=f"dispatch_{action_type}").partial(action_type=action_type).expand(keys=batches)
        sent >> segments


customer_health_daily()

