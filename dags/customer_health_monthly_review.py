"""
### Customer health — monthly health review

The review the seeds ask a monthly meeting to hold, written for the month that just ended
(the run's data interval): one **self-contained HTML file** (inline styles and SVG charts, no
script, nothing fetched: it opens offline and can be e-mailed) under `.local/reports`
(`CUSTOMER_HEALTH_REPORTS_DIR` moves it), recorded in `health_reviews` and shown on the
dashboard's **Reviews** page.

1. **Score distribution trend**: the zone mix at each month's last scored day, a year back.
2. **Team metrics**: marketing's *Healthy segment growth* and customer success's *At Risk
   recovery rate* (back in Healthy or Neutral within `horizon_days` of entering At Risk).
3. **Intervention effectiveness per playbook**, against episodes that got no action, matched
   on the month of entry, plan and entry score band; the method and its limits are printed.
4. **Model accuracy** (the latest audit) and the **model iteration log** (weight changes,
   accuracy, business impact since promotion).
5. **Retained revenue** in the seeds' form: flagged accounts x recovery rate x CLV, each input
   with its source (Param `clv`, or derived from ARR and the observed churn rate).

A re-run for the same month replaces its file and its row; a month without scores fails
with the reason (run the daily DAG or the rebuild for it first) and writes nothing. Params: `model_version` (default:
the model live at the month's end), `clv`, `horizon_days`, `window_days`.

Reads and writes the warehouse (`health_warehouse`); writes the HTML file. Sends nothing.
Owner: data engineering. Logic lives in `customer_health.review`; this file only wires it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 1,
    "retry_delay": timedelta(minutes=1),
}


@dag(
    dag_id="customer_health_monthly_review",
    # The first day of each month, for the month that just ended.
    schedule=CronDataIntervalTimetable("0 7 1 * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["customer-health", "review"],
    doc_md=__doc__,
    params={
        "model_version": Param(None, type=["null", "string"], description="Review this model version (default: the one live at the month's end)."),
        "clv": Param(
            None,
            type=["null", "number"],
            minimum=0,
            description="Customer lifetime value in dollars (default: derived from ARR and the observed churn rate).",
        ),
        "horizon_days": Param(60, type="integer", minimum=7, maximum=180, description="Recovery within this many days."),
        "window_days": Param(180, type="integer", minimum=30, maximum=730, description="Episodes compared per playbook."),
    },
)
def customer_health_monthly_review():
    @task
    def migrate_warehouse() -> dict:
        """Apply pending warehouse migrations."""
        from customer_health import pipeline

        return pipeline.migrate_warehouse()

    @task
    def write_review(data_interval_start=None, params=None) -> dict:
        """Compute the month's figures, write the HTML file, record it in health_reviews.

        A month without scores fails at once with the reason (no retry: it would find the same).
        """
        from airflow.sdk.exceptions import AirflowFailException

        from customer_health import pipeline
        from customer_health.review import ReviewError, ReviewSettings, write_review

        settings = ReviewSettings(params["horizon_days"], params["window_days"], params["clv"])
        try:
            return write_review(
                pipeline.warehouse(), pipeline.as_of_date(data_interval_start), params["model_version"], settings
            )
        except ReviewError as exc:
            raise AirflowFailException(f"no review written: {exc}") from exc

    migrate_warehouse() >> write_review()


customer_health_monthly_review()
