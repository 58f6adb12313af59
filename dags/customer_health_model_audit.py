"""
### Customer health — quarterly model audit and recalibration

Proves the health score predicts churn, proposes better weights from what actually happened,
and lets a person decide.

1. **Outcomes**: churn (Stripe cancellations, Closed Lost renewals), contraction and expansion
   from the raw tables into `account_outcomes` (rebuilt, known by the run date).
2. **Audit** the current model (or `model_version`): for each quarter-start snapshot T of the
   window, every account scored at T, churner = churned within (T, T + `horizon_days`].
   Sensitivity, specificity, precision (flagged = score ≤ `threshold`, default 49 = At Risk),
   ROC AUC, top-decile lift, churn by zone and by score band, false negatives with their
   drivers and false positives, into `model_audits`, `model_versions.metrics`, and a
   self-contained HTML report under `.local/reports/`, beside a plain logistic regression on
   the raw signals graded on the same held-out rows (a WARNING first when the model is worse
   or its AUC is under 0.6). The window ends where the data ends (the latest known outcome).
3. **Recalibrate**: logistic regression of churn on the normalized signals of monthly snapshots
   over `training_days`, pulled toward the current weights, with the catalogued signals the
   model does not use as candidates; an in-range fit (seeds' weight ranges) and a free fit,
   validated on later held-out snapshots scored by the engine; the proposed one (the free fit
   only when it is better by the margin in `config/recalibration.yaml`) is registered as a
   **proposed** model version.
4. **Review** (Human-in-the-loop, *Required actions* in the UI or the HITL REST API): the current
   model, the in-range and the free fit side by side on held-out periods with the baseline, every
   weight outside the seeds' ranges flagged. *Approve* makes the proposal active and retires the
   current model; *Reject* (or no answer within 14 days) rejects it with the reason given.

Reads and writes the warehouse (`health_warehouse`). Sends nothing outside it.
Owner: data engineering. Logic lives in `customer_health.validation`; this file only wires it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from customer_health.alerts import notify_task_failure

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 1,
    "retry_delay": timedelta(minutes=1),
    "on_failure_callback": notify_task_failure,  # the ops channel (customer_health.alerts)
}
REVIEW_TIMEOUT = timedelta(days=14)
RECALIBRATION = "recalibrate_model"


@dag(
    dag_id="customer_health_model_audit",
    # The first day of each quarter, for the quarter (and year) that just ended.
    schedule=CronDataIntervalTimetable("0 6 1 1,4,7,10 *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["customer-health", "model-validation"],
    doc_md=__doc__,
    params={
        "window_start": Param(None, type=["null", "string"], format="date", description="First outcome date (default: one year before the run)."),
        "window_end": Param(None, type=["null", "string"], format="date", description="Last outcome date (default: where the data ends - the latest known outcome before the run)."),
        "horizon_days": Param(90, type="integer", minimum=1, description="Churn horizon H: churned within (T, T+H]."),
        "model_version": Param(None, type=["null", "string"], description="Model version to audit (default: the active one)."),
        "threshold": Param(49, type="integer", minimum=0, maximum=100, description="Flagged = score <= threshold."),
        "training_days": Param(730, type="integer", minimum=180, description="Recalibration look-back before window_end."),
    },
)
def customer_health_model_audit():
    @task
    def migrate_warehouse() -> dict:
        """Apply pending warehouse migrations."""
        from customer_health import pipeline

        return pipeline.migrate_warehouse()

    @task
    def build_outcomes(data_interval_end=None, params=None) -> dict:
        """Churn, contraction and expansion known by the window end (default: the run) into account_outcomes."""
        from customer_health import pipeline
        from customer_health.validation.audit import resolve_window
        from customer_health.validation.outcomes import build_outcomes as run

        _, end = resolve_window(data_interval_end.date(), params["window_start"], params["window_end"])
        return run(pipeline.warehouse(), end).as_dict()

    @task
    def audit_current_model(data_interval_end=None, params=None) -> dict:
        """Grade the model's scores against churn; store the audit and write the HTML report."""
        from customer_health import pipeline
        from customer_health.validation.audit import audit_model, format_summary, resolve_window

        engine = pipeline.warehouse()
        # Without window_end the window ends where the data ends (the latest known outcome).
        start, end = resolve_window(data_interval_end.date(), params["window_start"], params["window_end"], engine)
        result = audit_model(
            engine,
            start,
            end,
            horizon_days=params["horizon_days"],
            model_version=params["model_version"],
            threshold=params["threshold"],
        )
        print(format_summary(result))
        return result.summary()

    @task(task_id=RECALIBRATION)
    def recalibrate_model(audit: dict, params=None) -> dict:
        """Fit new weights on earlier snapshots, score held-out ones, register the proposal."""
        from datetime import date

        from customer_health import pipeline
        from customer_health.validation.recalibrate import propose_recalibration

        return propose_recalibration(
            pipeline.warehouse(),
            date.fromisoformat(audit["window_end"]),
            horizon_days=params["horizon_days"],
            training_days=params["training_days"],
            parent_version=audit["model_version"],
            threshold=params["threshold"],
            audit_summary=audit,
        )

    @task.short_circuit
    def has_proposal(recalibration: dict) -> bool:
        """Ask a reviewer only when there is a new proposal (skipped: the reason is logged)."""
        if not recalibration["has_proposal"]:
            print(f"No model to review: {recalibration.get('skipped')}")
        return bool(recalibration["has_proposal"])

    review_model = HITLOperator(
        task_id="review_model",
        subject=f"Approve customer health model {{{{ ti.xcom_pull(task_ids='{RECALIBRATION}')['proposed_version'] }}}}?",
        body=f"{{{{ ti.xcom_pull(task_ids='{RECALIBRATION}')['review_markdown'] }}}}",
        options=["Approve", "Reject"],
        defaults=["Reject"],  # on timeout: never activate a model nobody approved
        params={"reason": Param("", type="string", description="Why (recorded in the model registry).")},
        response_timeout=REVIEW_TIMEOUT,
    )

    @task
    def record_decision(recalibration: dict, decision: dict) -> dict:
        """Approve -> the proposal becomes active, the old model retired; Reject -> rejected, with the reason."""
        from customer_health import pipeline
        from customer_health.validation.registry import apply_review_decision

        return apply_review_decision(pipeline.warehouse(), recalibration["proposed_version"], decision)

    migrated = migrate_warehouse()
    outcomes = build_outcomes()
    audit = audit_current_model()
    recalibration = recalibrate_model(audit)
    migrated >> outcomes >> audit
    has_proposal(recalibration) >> review_model
    record_decision(recalibration, review_model.output)


customer_health_model_audit()
