"""
### Customer health — score history rebuild

Recomputes the score history of a date range **in bulk**: the same rows, column for column
(but `computed_at`), that running `customer_health_daily` for each date in order produces —
many times faster, and without deciding or sending a single action.

Trigger it with Params: `from_date`, `to_date` (inclusive), `model_version` (default: the
active model), `accounts` (optional: recompute only these accounts' signals; every date is
still scored over the whole population), `shards` (account shards of the signal step),
`blocks` (date blocks run in parallel; match the worker slots) and `chunk_days` (dates per
vectorized pass).

1. **Plan**: clear the range's stored signal input; cut the range into date blocks (x account
   shards when `shards` > 1 or `accounts` is set).
2. **Every account, one shard** (the default): `rebuild_blocks`, one mapped task per date
   block, computes the block's signals chunk by chunk, vectorized over dates
   (the signal definitions of `scoring/signals.py` evaluated for a range of dates at once, equal
   to the daily run's per-date SQL), bulk-writes them to
   `signal_values`, and scores the same chunk's dates in order over all accounts from the frame
   in memory - exactly what the stored input reads back - bulk-writing `health_scores` (an
   Asset) and `health_score_rollups`. Trends read earlier dates' scores: a later block also
   computes the signals of the up to 90 rebuilt dates before it and derives their scores (the
   same computed score and zone), so blocks run in parallel.
3. **Sharded** (`shards` > 1, or an account filter): **signals** (one mapped task per block
   and shard), then **scores** (one mapped task per date block) from the stored input, since
   normalization is per date over the whole population. Progress is logged as it goes.

Reads and writes the warehouse (`health_warehouse`, default `.local/warehouse.db`) only.
Owner: data engineering. Logic lives in `include/customer_health`; this file only wires it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from customer_health.alerts import notify_task_failure
from customer_health.assets import HEALTH_SCORES

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 1,
    "retry_delay": timedelta(seconds=30),
    "on_failure_callback": notify_task_failure,  # the ops channel (customer_health.alerts)
}


@dag(
    dag_id="customer_health_rebuild",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["customer-health"],
    doc_md=__doc__,
    params={
        "from_date": Param("2026-01-01", type="string", format="date", description="First as-of date (inclusive)."),
        "to_date": Param("2026-01-31", type="string", format="date", description="Last as-of date (inclusive)."),
        "model_version": Param(
            None, type=["null", "string"], description="Registered model version (default: the active model)."
        ),
        "accounts": Param(
            None,
            type=["null", "array"],
            items={"type": "string"},
            description="Recompute only these accounts' signals (default: all). Scoring stays population-wide.",
        ),
        "shards": Param(1, type="integer", minimum=1, description="Account shards of the signal step."),
        "blocks": Param(
            2,
            type="integer",
            minimum=1,
            description="Date blocks computed in parallel (signals: blocks x shards tasks; scores: one task per "
            "block, each re-deriving the up to 90 days of earlier scores its trends read). Match your worker slots.",
        ),
        "chunk_days": Param(31, type="integer", minimum=1, description="Dates per vectorized signal pass."),
    },
)
def customer_health_rebuild():
    @task
    def migrate_warehouse() -> dict:
        """Apply pending warehouse migrations."""
        from customer_health import pipeline

        return pipeline.migrate_warehouse()

    @task
    def plan(params=None) -> dict:
        """Clear the range's stored signal input; the date blocks done in one pass, or the
        (date block, account shard) signal work items (one of the two lists is empty)."""
        from customer_health import pipeline

        return pipeline.plan_rebuild(
            params["from_date"], params["to_date"], params["shards"], accounts=params.get("accounts"),
            blocks=params.get("blocks", 1), model_version=params.get("model_version"),
        )  # fmt: skip

    @task
    def one_pass_blocks(planned: dict) -> list[dict]:
        """The date blocks done in one pass (empty when sharded)."""
        return planned["blocks"]

    @task
    def signal_work(planned: dict) -> list[dict]:
        """The (date block, account shard) signal work items (empty in one pass)."""
        return planned["signals"]

    @task(outlets=[HEALTH_SCORES], max_active_tis_per_dagrun=8)
    def rebuild_blocks(block: dict, params=None) -> dict:
        """One date block's signals and scores in one pass → signal_values, health_scores, rollups."""
        from customer_health import pipeline

        return pipeline.rebuild_date_block(block, params.get("model_version"), params["chunk_days"])

    @task(max_active_tis_per_dagrun=8)
    def compute_signals(work: dict, params=None) -> dict:
        """Signals of one date block and account shard, vectorized over dates, bulk-written."""
        from customer_health import pipeline

        return pipeline.rebuild_signal_block(work, params.get("accounts"), params["chunk_days"])

    @task
    def plan_scoring(params=None) -> list[dict]:
        """Register the model version once; one date block per parallel scoring task."""
        from customer_health import pipeline

        return pipeline.plan_scoring(
            params["from_date"], params["to_date"], params.get("blocks", 1), params.get("model_version")
        )

    @task(outlets=[HEALTH_SCORES], max_active_tis_per_dagrun=8)
    def score_dates(block: dict, params=None) -> dict:
        """The block's dates in order over the whole population → health_scores, health_score_rollups."""
        from customer_health import pipeline

        return pipeline.rebuild_score_block(block, params.get("model_version"))

    work = plan()
    migrate_warehouse() >> work
    # Only one of the two paths has work; the other's mapped tasks expand to nothing (skipped).
    rebuild_blocks.expand(block=one_pass_blocks(work))
    blocks = plan_scoring()
    compute_signals.expand(work=signal_work(work)) >> blocks
    score_dates.expand(block=blocks)


customer_health_rebuild()
