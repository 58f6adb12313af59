"""The steps of one daily run, as plain functions of the logical date.

The DAG files call these and nothing else: each step takes the as-of date (and, for
extraction, the exclusive upper bound of the data interval), does its work in the warehouse and
returns a small dict of counts that is safe to put in XCom. No step returns data.

The as-of date D of a run is the start of its data interval: the run for D scores the day D
using data up to the end of D (``until`` = the interval end).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine

from customer_health import settings
from customer_health.warehouse.engine import connection_to_url, engine_for, get_engine
from customer_health.warehouse.io import as_date
from customer_health.warehouse.migrate import current_revision, upgrade_to_head

log = logging.getLogger(__name__)
T = TypeVar("T")


def fail_fast(step: Callable[..., T]) -> Callable[..., T]:
    """Run ``step``; an error that says a retry cannot help (``retryable = False``: bad
    credentials, a missing permission, permanently failed deliveries) fails the Airflow task
    at once instead of being retried as if transient."""

    @functools.wraps(step)
    def run(*args: Any, **kwargs: Any) -> T:
        try:
            return step(*args, **kwargs)
        except Exception as exc:
            if getattr(exc, "retryable", True) is False:
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
            raise

    return run


def as_of_date(moment: Any) -> date:
    """The plain ``datetime.date`` of a moment (Airflow hands tasks pendulum objects)."""
    return date(moment.year, moment.month, moment.day)


def interval_end(moment: Any) -> datetime:
    """A run's interval end as a plain, naive UTC ``datetime.datetime``.

    Airflow hands tasks pendulum ``DateTime`` objects; ``replace(tzinfo=None)`` keeps the pendulum
    type, which the sqlite3 driver cannot bind ("type 'DateTime' is not supported": the
    stakeholder task failed on every Celery worker reading a SQLite product database).
    """
    from customer_health.sources.window import naive_utc

    return naive_utc(moment)


def warehouse() -> Engine:
    """The warehouse engine (connection ``health_warehouse`` or the embedded default)."""
    return get_engine()


def connection_engine(conn_id: str) -> Engine:
    """A SQLAlchemy engine for a database reached through an Airflow connection."""
    from airflow.sdk import BaseHook

    return engine_for(connection_to_url(BaseHook.get_connection(conn_id)))


# ----------------------------------------------------------------------------- warehouse
def migrate_warehouse() -> dict[str, Any]:
    """Bring the warehouse schema to the latest migration (a no-op when it is there)."""
    engine = warehouse()
    upgrade_to_head(engine)
    return {"revision": current_revision(engine), "dialect": engine.dialect.name}


# ----------------------------------------------------------------------------- preflight
def preflight() -> dict[str, Any]:
    """Every connection reachable, authenticated and holding what the product needs
    (``customer_health.preflight``); fails the task at once, without retries, listing every
    problem with its fix, when something required is missing. Sources without a connection are
    reported as not connected (optional)."""
    from customer_health.preflight import run_preflight

    report = run_preflight()
    log.info("%s\n%s", report.summary(), "\n".join(report.lines()))
    fail_fast(report.raise_for_problems)()
    return report.as_dict()


def source_connected(system: str) -> bool:
    """Whether source ``system`` (salesforce, zendesk, stripe, product_db) has an Airflow connection."""
    from customer_health.preflight import connected

    return connected(system)


def skip_unless_connected(system: str) -> None:
    """Skip the Airflow task (skipped, not failed, not silently empty) when ``system`` is not connected."""
    if not source_connected(system):
        from airflow.sdk.exceptions import AirflowSkipException

        from customer_health.preflight import not_connected_reason

        raise AirflowSkipException(not_connected_reason(system))


NO_CRM = "no CRM connected (no Airflow connection 'health_salesforce'): not attempted"


def suppress_without_crm(engine: Engine | None = None) -> int:
    """Pending Salesforce-task actions, when no CRM is connected: suppressed with ``NO_CRM`` (they
    can never be delivered; a CRM connected later must not receive stale ones). Returns how many."""
    if source_connected("salesforce"):
        return 0
    from sqlalchemy import select

    from customer_health.actions.outbox import PENDING, suppress_pending
    from customer_health.warehouse.schema import action_outbox

    with (engine or warehouse()).begin() as conn:
        keys = list(conn.execute(select(action_outbox.c.idempotency_key).where(
            action_outbox.c.status == PENDING, action_outbox.c.target == "salesforce")).scalars())  # fmt: skip
        suppressed = suppress_pending(conn, keys, NO_CRM)
    if suppressed:
        log.info("%d Salesforce action(s) suppressed: %s", suppressed, NO_CRM)
    return suppressed


# ----------------------------------------------------------------------------- extraction
@fail_fast
def extract_salesforce(until: datetime) -> dict[str, Any]:
    """Salesforce objects changed up to ``until`` into raw_sf_* tables (names from the source
    mapping); the task is skipped when Salesforce is not connected."""
    skip_unless_connected("salesforce")
    from customer_health.sources.salesforce import run_salesforce_extraction

    return run_salesforce_extraction(settings.SALESFORCE_CONN_ID, warehouse(), until)


@fail_fast
def extract_zendesk(until: datetime) -> dict[str, Any]:
    """Zendesk organizations, tickets (with metrics) and ratings into raw_zd_* tables; skipped
    when Zendesk is not connected."""
    skip_unless_connected("zendesk")
    from customer_health.sources.zendesk import run_zendesk_extraction

    return run_zendesk_extraction(settings.ZENDESK_CONN_ID, warehouse(), until)


@fail_fast
def extract_stripe(until: datetime) -> dict[str, Any]:
    """Stripe customers, subscriptions, invoices and disputes into raw_stripe_* tables; skipped
    when Stripe is not connected."""
    skip_unless_connected("stripe")
    from customer_health.sources.stripe import run_stripe_extraction

    return run_stripe_extraction(settings.STRIPE_CONN_ID, warehouse(), until)


@fail_fast
def extract_product(until: datetime) -> dict[str, Any]:
    """Daily product usage, aggregated in the product database (tables, columns and event names
    from the source mapping), into raw_product_* tables; skipped when it is not connected."""
    skip_unless_connected("product_db")
    from customer_health.sources.product import extract_product as run

    return run(connection_engine(settings.PRODUCT_DB_CONN_ID), warehouse(), until).as_dict()


def build_crosswalk() -> dict[str, Any]:
    """Resolve every system's identity onto the Salesforce account."""
    from customer_health.sources.crosswalk import build_crosswalk as run

    return run(warehouse()).as_dict()


# ----------------------------------------------------------------------------- scoring
def active_model_config(version: str | None = None):
    """The model config to score with: ``version``, else the registry's active one, else the default."""
    from customer_health.scoring.model_config import default_model_path, load_model_config

    if version:
        from sqlalchemy import select

        from customer_health.warehouse.schema import model_versions

        with warehouse().connect() as conn:
            yaml_text = conn.execute(
                select(model_versions.c.config_yaml).where(model_versions.c.version == version)
            ).scalar_one_or_none()
        if yaml_text is None:
            raise ValueError(
                f"model version {version!r} is not in the model registry (table model_versions); "
                "run without the model_version param to use the active default"
            )
        return load_model_config(yaml_text)
    from customer_health.validation.registry import active_config

    # The registry's active version (approved by a person after an audit) scores; before the
    # first run the shipped default does, and registers itself as active.
    return active_config(warehouse()) or load_model_config(default_model_path())


ACCOUNTS_PER_SHARD = 25_000


def signal_shards(requested: int | None = None) -> list[dict[str, int]]:
    """How to split signal computation: ``requested`` shards, or one per 25,000 accounts."""
    from sqlalchemy import func, select

    from customer_health.warehouse.schema import account_crosswalk

    if requested is None or requested < 1:
        with warehouse().connect() as conn:
            accounts = conn.execute(select(func.count()).select_from(account_crosswalk)).scalar_one()
        requested = max(1, -(-accounts // ACCOUNTS_PER_SHARD))
    return [{"shard": i, "of": requested} for i in range(requested)]


def shard_accounts(shard: int, of: int) -> list[str]:
    """The account keys of shard ``shard`` of ``of``: every ``of``-th key in sorted order."""
    from sqlalchemy import select

    from customer_health.warehouse.schema import account_crosswalk

    with warehouse().connect() as conn:
        keys = list(conn.execute(select(account_crosswalk.c.account_key).order_by(account_crosswalk.c.account_key)).scalars())
    return keys[shard::of]


def clear_signal_input(as_of: date) -> dict[str, Any]:
    """Remove the date's stored signal input before shards write it again (re-runs stay exact)."""
    from customer_health.scoring.signal_store import clear_signal_input as clear

    return {"as_of": as_of.isoformat(), "accounts_removed": clear(warehouse(), as_of, as_of)}


def compute_signals(as_of: date, shard: int = 0, of: int = 1) -> dict[str, Any]:
    """Point-in-time signals and account context of one account shard, stored for scoring.

    Scoring reads the whole date back, so every account is normalized against the baseline
    of the whole population whatever the shard count: sharded and unsharded runs are equal.
    """
    from customer_health.scoring.signal_store import write_signal_frame
    from customer_health.scoring.signals import compute_signals as run

    engine = warehouse()
    keys = None if of == 1 else shard_accounts(shard, of)
    frame = run(engine, as_of, keys)
    written = write_signal_frame(engine, frame)
    return {"as_of": as_of.isoformat(), "shard": shard, "of": of, "accounts": int(written)}


def score(as_of: date, model_version: str | None = None) -> dict[str, Any]:
    """Score every customer on ``as_of`` from the stored signals; write that date's history."""
    from customer_health.scoring.engine import ensure_model_registered, score_date
    from customer_health.scoring.signal_store import read_signal_frame

    config = active_model_config(model_version)
    engine = warehouse()
    ensure_model_registered(engine, config)
    signals = read_signal_frame(engine, as_of)
    report = score_date(engine, as_of, config, signals)
    return report.to_dict()


# ----------------------------------------------------------------------------- stakeholders
@fail_fast
def stakeholder_health(as_of: date, until: datetime) -> dict[str, Any]:
    """The product's users and their activity up to ``until``, then every account's stakeholders
    on ``as_of`` (``customer_health.stakeholders``): shown beside the score, not weighted into it."""
    from customer_health.sources.product_users import extract_product_users
    from customer_health.stakeholders import run_stakeholder_health

    engine = warehouse()
    extracted = extract_product_users(connection_engine(settings.PRODUCT_DB_CONN_ID), engine, until)
    return run_stakeholder_health(engine, as_of) | {"extracted": extracted.as_dict()}


# ----------------------------------------------------------------------------- actions
def action_types() -> list[str]:
    """Every action type of the rules file (the DAG creates one dispatch task per type)."""
    from customer_health.actions.config import load_action_rules

    return sorted(load_action_rules().actions)


def decide_actions(as_of: date, run_type: str, dispatch_param: bool, model_version: str | None = None) -> dict[str, Any]:
    """Decide the day's actions into the outbox; backfills and dispatch=false record them suppressed."""
    from customer_health.actions.config import load_action_rules
    from customer_health.actions.decide import decide_actions as run
    from customer_health.actions.outbox import dispatch_allowed

    version = active_model_config(model_version).version
    deliverable = dispatch_allowed(run_type, dispatch_param)
    report = run(warehouse(), as_of, version, load_action_rules(), deliverable=deliverable)
    not_attempted = suppress_without_crm()
    return report.summary() | {"deliverable": deliverable, "run_type": run_type} | (
        {"not_attempted": {"salesforce": not_attempted, "why": NO_CRM}} if not_attempted else {})


def action_batches(as_of: date) -> dict[str, list[list[str]]]:
    """Pending outbox keys per action type, in batches for dynamic task mapping."""
    from customer_health.actions.outbox import pending_batches

    return pending_batches(warehouse(), as_of)


def deliver_batch(action_type: str, keys: list[str]) -> Any:
    """Deliver one batch of one action type through its real client; the ``DispatchReport``."""
    from customer_health.actions.config import load_action_rules
    from customer_health.actions.dispatch import dispatch
    from customer_health.actions.targets import clients_from_airflow

    rules = load_action_rules()
    clients = clients_from_airflow((rules.action(action_type).target,))
    report = dispatch(warehouse(), action_type, keys, clients, rules)
    log.info("dispatch %s: %s", action_type, report.summary())
    return report


@fail_fast
def dispatch_batch(action_type: str, keys: list[str]) -> dict[str, Any]:
    """Deliver one batch; fail the task (without retries when they cannot help) unless all was sent."""
    from customer_health.actions.dispatch import raise_for_failures

    report = deliver_batch(action_type, keys)
    raise_for_failures([report])
    return report.summary()


class SegmentSyncFailed(RuntimeError):
    """The campaign target refused a segment sync (a missing campaign, a bad token): a retry cannot help."""

    retryable = False


@fail_fast
def sync_segments(as_of: date, run_type: str, dispatch_param: bool, model_version: str | None = None) -> dict[str, Any]:
    """Push the health segments of ``as_of`` to the campaign target (``actions.segments``), once
    per date; never in backfills or with dispatch=false, never for a date without scores."""
    from sqlalchemy import func, select

    from customer_health.actions.campaign_targets import campaign_target_from_airflow
    from customer_health.actions.config import load_action_rules
    from customer_health.actions.outbox import dispatch_allowed
    from customer_health.actions.segments import sync_segments as run
    from customer_health.actions.targets import PermanentDeliveryError
    from customer_health.warehouse.schema import health_scores

    if not dispatch_allowed(run_type, dispatch_param):
        return {"skipped": f"segments are not synced by a {run_type} run or with dispatch=false"}
    version = active_model_config(model_version).version
    engine = warehouse()
    with engine.connect() as conn:
        scored = conn.execute(select(func.count()).select_from(health_scores).where(
            health_scores.c.model_version == version, health_scores.c.as_of_date == as_of)).scalar_one()  # fmt: skip
    if not scored:
        return {"skipped": f"no {version} scores for {as_of.isoformat()}: nothing to sync"}
    try:
        report = run(engine, as_of, version, load_action_rules(), campaign_target_from_airflow())
    except PermanentDeliveryError as exc:
        raise SegmentSyncFailed(f"segment sync for {as_of.isoformat()} refused: {exc}") from exc
    return report.summary()


@fail_fast
def crm_writeback(as_of: date, model_version: str | None = None) -> dict[str, Any]:
    """Write score, zone, trend and drivers to every scored Salesforce Account that changed
    (field names from the source mapping); skipped - "no CRM connected" - without Salesforce."""
    if not source_connected("salesforce"):
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(NO_CRM)
    from customer_health.actions.config import load_action_rules
    from customer_health.actions.writeback import writeback_health_fields
    from customer_health.sources.salesforce import HealthSalesforceHook

    version = active_model_config(model_version).version
    sf = HealthSalesforceHook(settings.SALESFORCE_CONN_ID).get_conn()
    report = writeback_health_fields(warehouse(), sf, as_of, version, load_action_rules())
    report.raise_for_failures()
    return report.summary()


# ----------------------------------------------------------------------------- history rebuild
def plan_rebuild(
    from_date: date | str,
    to_date: date | str,
    shards: int = 1,
    block_days: int | None = None,
    accounts: list[str] | None = None,
    blocks: int = 1,
    model_version: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Clear the range's stored signal input and plan the work, cut into ``blocks`` date blocks
    (unless ``block_days`` sets their length):

    * every account in one shard: ``{"blocks": [...], "signals": []}``, one item per date block
      whose signals and scores one task computes in one pass (``rebuild_date_block``); the
      model version is registered here, once;
    * account shards or an account filter: ``{"signals": [...], "blocks": []}``, one item per
      (date block, shard) (``rebuild_signal_block``), scored afterwards (``plan_scoring``).
    """
    from customer_health.scoring.rebuild import blocks_of, clear_signal_range, date_blocks, plan_signal_work

    start, end = as_date(from_date), as_date(to_date)
    length = block_days or blocks_of(start, end, blocks)
    one_pass = shards == 1 and not accounts
    work = [] if one_pass else plan_signal_work(start, end, shards, length)
    removed = clear_signal_range(warehouse(), start, end, accounts or None)
    if one_pass:
        from customer_health.scoring.engine import ensure_model_registered

        ensure_model_registered(warehouse(), active_model_config(model_version))
        date_work = [
            {"first": a.isoformat(), "last": b.isoformat(), "range_start": start.isoformat()}
            for a, b in date_blocks(start, end, length)
        ]
        log.info("rebuild %s..%s: cleared %s; %d date blocks, signals and scores in one pass each",
                 start, end, removed, len(date_work))  # fmt: skip
        return {"blocks": date_work, "signals": []}
    log.info("rebuild %s..%s: cleared %s; %d signal work items", start, end, removed, len(work))
    return {"signals": work, "blocks": []}


def rebuild_date_block(
    block: dict[str, Any], model_version: str | None = None, chunk_days: int = 31, progress=None
) -> dict[str, Any]:
    """Signals and scores of one date block of a rebuild of every account, in one pass."""
    from customer_health.scoring.rebuild import rebuild_block

    config = active_model_config(model_version)
    return rebuild_block(
        warehouse(), as_date(block["first"]), as_date(block["last"]), config,
        range_start=as_date(block["range_start"]), chunk_days=chunk_days, progress=progress,
    )  # fmt: skip


def rebuild_signal_block(
    work: dict[str, Any], accounts: list[str] | None = None, chunk_days: int = 31, progress=None
) -> dict[str, Any]:
    """Signals of one (date block, account shard) work item, computed over dates and stored."""
    from customer_health.scoring.rebuild import rebuild_signals, shard_keys

    engine = warehouse()
    keys = shard_keys(engine, work["shard"], work["of"], accounts or None)
    report = rebuild_signals(
        engine, as_date(work["first"]), as_date(work["last"]), keys, chunk_days=chunk_days, progress=progress
    )
    return report | {"shard": work["shard"], "of": work["of"]}


def plan_scoring(
    from_date: date | str, to_date: date | str, blocks: int = 1, model_version: str | None = None
) -> list[dict[str, Any]]:
    """Register the model version once, then cut the range into date blocks scored in parallel."""
    from customer_health.scoring.engine import ensure_model_registered
    from customer_health.scoring.rebuild import plan_score_work

    ensure_model_registered(warehouse(), active_model_config(model_version))
    return plan_score_work(as_date(from_date), as_date(to_date), blocks)


def rebuild_score_block(block: dict[str, Any], model_version: str | None = None, progress=None) -> dict[str, Any]:
    """Score one date block of a rebuild (whole population per date); bulk-write its history."""
    from customer_health.scoring.rebuild import score_range

    config = active_model_config(model_version)
    return score_range(
        warehouse(), as_date(block["first"]), as_date(block["last"]), config,
        progress=progress, range_start=as_date(block["range_start"]),
    )  # fmt: skip


def rebuild_scores(
    from_date: date | str, to_date: date | str, model_version: str | None = None, progress=None
) -> dict[str, Any]:
    """Score every date of the range in order over the whole population; bulk-write history."""
    from customer_health.scoring.rebuild import score_range

    config = active_model_config(model_version)
    return score_range(warehouse(), as_date(from_date), as_date(to_date), config, progress=progress)


class _Workers:
    """``workers`` processes (as mapped tasks on worker slots) that run ``(function, *args)``
    calls, kept for several rounds of calls (the rebuild's signal then score tasks) so the
    processes start, and import the package, once."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = None

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def run(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        """Each call's result, in order (in this process when one worker or one call)."""
        if self.workers <= 1 or len(calls) <= 1:
            return [fn(*args) for fn, *args in calls]
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        futures = [self._pool.submit(fn, *args) for fn, *args in calls]
        return [f.result() for f in futures]


def _summed_phases(reports: list[dict[str, Any]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for report in reports:
        for phase, seconds in report.get("phases", {}).items():
            total[phase] = round(total.get(phase, 0.0) + seconds, 2)
    return total


def rebuild_history(
    start: date | str,
    end: date | str,
    model_version: str | None = None,
    *,
    shards: int = 1,
    chunk_days: int = 31,
    accounts: list[str] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Rebuild the score history of ``start`` .. ``end`` without Airflow, on ``workers`` processes.

    The same steps as the ``customer_health_rebuild`` DAG with ``blocks=workers`` (its mapped
    tasks run on a pool of ``workers`` processes instead of Airflow workers): the result
    equals running ``customer_health_daily`` for each date in order (every column but
    ``computed_at``), and no action is decided or sent. Returns counts and timings.
    """
    import time as clock

    began = clock.monotonic()
    plan = plan_rebuild(start, end, shards, None, accounts, blocks=workers, model_version=model_version)
    with _Workers(workers) as pool:
        if plan["blocks"]:
            done = pool.run([(rebuild_date_block, block, model_version, chunk_days) for block in plan["blocks"]])
            signals = [{"account_dates": d["signal_rows"], "rows": d["signal_rows"]} for d in done]
            scores = done
            signal_wall = None
        else:
            signals = pool.run([(rebuild_signal_block, item, accounts, chunk_days) for item in plan["signals"]])
            signal_wall = clock.monotonic() - began
            blocks = plan_scoring(start, end, workers, model_version)
            scores = pool.run([(rebuild_score_block, block, model_version) for block in blocks])
    return {
        "from_date": as_date(start).isoformat(),
        "to_date": as_date(end).isoformat(),
        "model_version": scores[0]["model_version"],
        "workers": workers,
        "one_pass": bool(plan["blocks"]),
        "account_dates": sum(s["account_dates"] for s in signals),
        "signal_rows": sum(s["rows"] for s in signals),
        "scores": sum(s["scores"] for s in scores),
        "rollups": sum(s["rollups"] for s in scores),
        # Two rounds (signals, then scores) when sharded; in one pass, the seconds each block
        # spent in each phase, summed over the blocks (they overlap in time).
        "signal_seconds": round(signal_wall, 2) if signal_wall is not None else None,
        "score_seconds": round(clock.monotonic() - began - signal_wall, 2) if signal_wall is not None else None,
        "phase_seconds": _summed_phases(scores) if signal_wall is None else None,
        "seconds": round(clock.monotonic() - began, 2),
    }
