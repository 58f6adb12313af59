"""Intraday freshness: re-score only the accounts whose CRM, support or billing data just changed.

The daily run scores everyone once per day. Relationship, support and payment events arrive all
day, and a CSM must not see "Neutral" on Friday for an account whose executive sponsor said on
Thursday that they are unhappy. The ``customer_health_refresh`` DAG (every 15 minutes) calls the
steps below, as plain functions of the refresh window:

1. ``extract_changes`` - the incremental extractions the daily run uses (of the sources that
   are connected), bounded by ``until`` = the run's time: Salesforce ``Contact``, ``Task`` and ``NPS_Response__c``;
   Zendesk tickets (with metrics) and satisfaction ratings; Stripe invoices and disputes (new
   ones, plus a re-read of the last three days' instead of the daily run's 120). They share the
   daily run's per-object watermarks, so neither run reads anything twice or skips anything:
   the daily run simply starts where the last refresh stopped.
2. ``affected_accounts`` - which accounts changed in the window ``(since, until]``, by each
   record's *own* change stamp (``SystemModstamp``, Zendesk ``updated_at``, Stripe ``created`` or
   ``paid_at``), mapped through ``account_identity_map``. Stamps, not extraction times, make the
   answer the same whichever run extracted a record and however often a task is retried.
   ``since`` is the refresh watermark (``extraction_watermarks``, source ``refresh``), advanced
   to ``until`` only by the run's last task, after everything else succeeded.
3. ``rescore`` - recompute today's signals of those accounts and score them **against today's
   full population**. Normalization is relative (segment percentiles of the date), so an account
   can only be scored fairly against a population whose signals were computed the same way, at
   the same time of day. The first refresh of a day therefore stores today's whole signal input
   (``compute_signals`` for every account, as-of today with the data up to now: the cost of one
   daily signals pass, once a day); each refresh then overwrites the changed accounts' input and
   scores the whole in-memory frame with the daily engine (``score_accounts``), writing only the
   changed accounts' rows. The alternative - yesterday's stored baselines held fixed - is cheaper
   but mixes two data cut-offs (intraday windows lack today's product usage, yesterday's do not),
   which biases every intraday score; this way an intraday score is exactly what the daily
   engine gives that account with the data known now. Rollups are left to the daily run.
4. ``decide_for_accounts`` - the daily action rules for today, restricted to the changed
   accounts (outbox keys carry the trigger date, so the daily run for the same date re-decides
   the same keys and inserts nothing). The population rank some rules use is taken over every
   account's latest score.
5. ``dispatch_for_accounts`` and the CRM writeback deliver them (never in backfills or with
   ``dispatch=false``, as in the daily run).

Never in conflict with the daily run: the refresh does nothing while a daily run is queued or
running (checked before extracting and again inside the scoring slot), and its scoring task
shares the one-slot Airflow pool ``customer_health_scoring`` with the daily ``score_accounts``.
The daily run's full recompute of a date clears and rewrites that date's signal input and
overwrites the refresh's score rows (same key: account, date, model version).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, String, and_, cast, func, or_, select, union

from customer_health.sources.window import naive_utc
from customer_health.warehouse.io import get_watermark, set_watermark, utcnow
from customer_health.warehouse.schema import (
    account_crosswalk,
    account_identity_map,
    health_scores,
    raw_sf_nps_response,
    raw_sf_task,
    raw_stripe_dispute,
    raw_stripe_invoice,
    raw_zd_satisfaction_rating,
    raw_zd_ticket,
    signal_values,
)

log = logging.getLogger(__name__)

DAILY_DAG_ID = "customer_health_daily"

REFRESH_SOURCE = "refresh"
REFRESH_OBJECT = "changes"
SALESFORCE_OBJECTS: tuple[str, ...] = ("Contact", "Task", "NPS_Response__c")
STRIPE_OBJECTS: tuple[str, ...] = ("invoices", "disputes")
# The daily run re-reads 120 days of invoices and disputes for status changes; intraday that
# re-read would dominate every refresh (all invoices of the company, every 15 minutes), so the
# refresh re-reads only the last few days' and leaves older objects' changes to the daily run.
STRIPE_INTRADAY_LOOKBACK = timedelta(days=3)


# ----------------------------------------------------------------------------- the window
@dataclass(frozen=True)
class RefreshWindow:
    """What one refresh covers: changes in ``(since, until]``, scored for day ``as_of``."""

    since: datetime
    until: datetime

    @property
    def as_of(self) -> date:
        """The day being refreshed: the day of the window's last instant (00:00 belongs to the day before)."""
        return (self.until - timedelta(microseconds=1)).date()

    @property
    def empty(self) -> bool:
        """True when the window holds no time (a run older than the last refresh)."""
        return self.until <= self.since

    def to_dict(self) -> dict[str, str]:
        """JSON form, for XCom."""
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "as_of": self.as_of.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> RefreshWindow:
        """Inverse of ``to_dict``."""
        return cls(datetime.fromisoformat(data["since"]), datetime.fromisoformat(data["until"]))


def refresh_window(engine: Engine, run_time: datetime, now: datetime | None = None) -> RefreshWindow:
    """The window of a refresh run at ``run_time``: never past ``now`` minus the extraction's
    safety lag (``sources.window.read_bound``), so the window ends where the reads end.

    ``since`` is the last completed refresh's ``until``; before the first refresh it is the start
    of the day being refreshed.
    """
    from customer_health.sources.window import read_bound

    until = read_bound(run_time, now or utcnow())
    with engine.connect() as conn:
        mark = get_watermark(conn, REFRESH_SOURCE, REFRESH_OBJECT)
    since = datetime.fromisoformat(mark) if mark else datetime.combine((until - timedelta(microseconds=1)).date(), time())
    return RefreshWindow(since=since, until=until)


def advance_watermark(engine: Engine, window: RefreshWindow) -> dict[str, Any]:
    """Move the refresh watermark to ``until`` (never backwards); the run's last step."""
    with engine.begin() as conn:
        mark = get_watermark(conn, REFRESH_SOURCE, REFRESH_OBJECT)
        if mark is not None and datetime.fromisoformat(mark) >= window.until:
            return {"watermark": mark, "moved": False}
        set_watermark(conn, REFRESH_SOURCE, REFRESH_OBJECT, window.until.isoformat())
    return {"watermark": window.until.isoformat(), "moved": True}


# ----------------------------------------------------------------------------- extraction
def extract_changes(engine: Engine, until: datetime) -> dict[str, Any]:
    """Extract the intraday sources up to ``until`` with the daily run's extractors and watermarks.

    Zendesk organizations are not re-listed here (the daily run lists all of them, a new
    organization is rare intraday); tickets and ratings use the daily run's own page readers.
    A source that is not connected (no Airflow connection) is not read: its entry says why.
    """
    from customer_health import settings
    from customer_health.preflight import connected, not_connected_reason
    from customer_health.sources import stripe as stripe_source
    from customer_health.sources.salesforce import HealthSalesforceHook, extract_salesforce

    until = naive_utc(until)
    out: dict[str, Any] = {}
    if connected("salesforce"):
        hook = HealthSalesforceHook(settings.SALESFORCE_CONN_ID)
        out["salesforce"] = extract_salesforce(hook.connect, engine, until, SALESFORCE_OBJECTS, log=hook.log).as_dict()
    else:
        out["salesforce"] = {"skipped": not_connected_reason("salesforce")}
    if connected("zendesk"):
        out["zendesk"] = _extract_zendesk_changes(engine, until)
    else:
        out["zendesk"] = {"skipped": not_connected_reason("zendesk")}
    if connected("stripe"):
        specs = tuple(
            replace(spec, refresh_lookback=STRIPE_INTRADAY_LOOKBACK)
            for spec in stripe_source.STRIPE_OBJECTS
            if spec.name in STRIPE_OBJECTS
        )
        client = stripe_source.StripeHook(settings.STRIPE_CONN_ID).get_conn()
        out["stripe"] = stripe_source.extract_stripe(client, engine, until, objects=specs).as_dict()
    else:
        out["stripe"] = {"skipped": not_connected_reason("stripe")}
    for skipped in (v["skipped"] for v in out.values() if "skipped" in v):
        log.info("refresh: %s", skipped)
    return out


def _extract_zendesk_changes(engine: Engine, until: datetime) -> dict[str, Any]:
    """Zendesk tickets and ratings up to ``until`` with the daily run's page readers and watermarks."""
    from customer_health import settings
    from customer_health.sources import zendesk as zd
    from customer_health.sources.report import ExtractReport

    pages = zd.ZendeskPages(
        zd.zendesk_client(settings.ZENDESK_CONN_ID),
        policy=zd.RetryPolicy(),
        ratelimit_budget=300,
        request_timeout=60.0,
        logger=log,
    )
    report = ExtractReport(zd.SOURCE)
    extracted_at = utcnow()
    zd._extract_tickets(pages, engine, until, report.object("tickets"), extracted_at, zd.EPOCH, 1000, log)  # noqa: SLF001
    zd._extract_satisfaction_ratings(  # noqa: SLF001
        pages, engine, until, report.object("satisfaction_ratings"), extracted_at, zd.EPOCH, 100, log
    )
    return report.as_dict()


# ----------------------------------------------------------------------------- affected accounts
def affected_accounts(engine: Engine, window: RefreshWindow) -> list[str]:
    """Accounts with a task, NPS response, ticket, rating, invoice or dispute changed in the window.

    Each record is judged by its own change stamp, so the answer does not depend on which run
    extracted it. Source identities go through ``account_identity_map``; only accounts in the
    crosswalk count. Stripe invoices whose status changes without a stamp (a failed retry of an
    old invoice) are left to the daily run.
    """
    if window.empty:
        return []
    since, until = window.since, window.until
    m = account_identity_map

    def via(system: str, source_id: Any, stamp_filter: Any, table: Any) -> Any:
        """Accounts of changed records of another system (Zendesk ids are integers, the map holds strings)."""
        return (
            select(m.c.account_key)
            .select_from(table.join(m, and_(m.c.system == system, m.c.source_id == cast(source_id, String))))
            .where(stamp_filter)
        )

    def salesforce(table: Any) -> Any:
        sf_map = m.alias(f"sfm_{table.name}")
        owner = func.coalesce(sf_map.c.account_key, table.c.account_id)
        return (
            select(owner.label("account_key"))
            .select_from(
                table.outerjoin(sf_map, and_(sf_map.c.system == "salesforce", sf_map.c.source_id == table.c.account_id))
            )
            .where(table.c.source_updated_at > since, table.c.source_updated_at <= until)
        )

    inv, dsp = raw_stripe_invoice, raw_stripe_dispute
    rating, rated = raw_zd_satisfaction_rating, raw_zd_ticket.alias("rated_ticket")
    parts = [
        salesforce(raw_sf_task),
        salesforce(raw_sf_nps_response),
        via("zendesk", raw_zd_ticket.c.organization_id,
            and_(raw_zd_ticket.c.source_updated_at > since, raw_zd_ticket.c.source_updated_at <= until), raw_zd_ticket),
        # A rating carries no organization in Zendesk's API: it is its ticket's.
        via("zendesk", func.coalesce(rating.c.organization_id, rated.c.organization_id),
            or_(and_(rating.c.created_at > since, rating.c.created_at <= until),
                and_(rating.c.source_updated_at > since, rating.c.source_updated_at <= until)),
            rating.outerjoin(rated, rated.c.id == rating.c.ticket_id)),
        via("stripe", inv.c.customer_id,
            or_(and_(inv.c.created_at > since, inv.c.created_at <= until), and_(inv.c.paid_at > since, inv.c.paid_at <= until)),
            inv),
        select(m.c.account_key)
        .select_from(
            dsp.join(inv, inv.c.charge_id == dsp.c.charge_id).join(
                m, and_(m.c.system == "stripe", m.c.source_id == inv.c.customer_id)
            )
        )
        .where(dsp.c.created_at > since, dsp.c.created_at <= until),
    ]  # fmt: skip
    changed = union(*parts).subquery("changed")
    stmt = (
        select(account_crosswalk.c.account_key)
        .where(account_crosswalk.c.account_key.in_(select(changed.c.account_key)))
        .order_by(account_crosswalk.c.account_key)
    )
    with engine.connect() as conn:
        return list(conn.execute(stmt).scalars())


# ----------------------------------------------------------------------------- scoring
def _stored_accounts(engine: Engine, as_of: date) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(signal_values).where(signal_values.c.as_of_date == as_of)
        ).scalar_one()


def ensure_population_input(engine: Engine, as_of: date) -> int:
    """Store ``as_of``'s signal input for every account unless it is there; returns accounts computed.

    The first refresh of a day pays one full signals pass; later refreshes reuse it.
    """
    from customer_health.scoring.signal_store import write_signal_frame
    from customer_health.scoring.signals import compute_signals

    if _stored_accounts(engine, as_of):
        return 0
    frame = compute_signals(engine, as_of)
    write_signal_frame(engine, frame, replace_date=True)
    log.info("refresh: stored the whole population's signal input for %s (%d accounts)", as_of, len(frame))
    return int(len(frame))


def rescore_accounts(engine: Engine, as_of: date, account_keys: Sequence[str], config: Any) -> dict[str, Any]:
    """Re-score ``account_keys`` for ``as_of`` against that date's whole population.

    Recomputes the accounts' signals (point in time, up to now), stores them over the date's
    input, scores the date's whole input with the daily engine and writes only these accounts'
    ``health_scores`` rows. The date's input of every account is stored first if it is not
    there yet (the day's first refresh, with or without changes). Returns counts and the zone
    moves, for XCom.
    """
    from customer_health.scoring.engine import ensure_model_registered, score_accounts
    from customer_health.scoring.history import read_score_history, read_signal_snapshot, write_scores
    from customer_health.scoring.overrides import active_overrides
    from customer_health.scoring.signal_store import read_signal_frame, write_signal_frame
    from customer_health.scoring.signals import compute_signals

    keys = sorted(set(account_keys))
    result: dict[str, Any] = {"as_of": as_of.isoformat(), "affected": len(keys), "population_computed": 0,
                              "scored": 0, "zone_changes": []}  # fmt: skip
    # The day's first refresh stores the whole population's input even when nothing changed, so
    # the refresh that carries the day's first event pays only for its own accounts.
    result["population_computed"] = ensure_population_input(engine, as_of)
    if not keys:
        return result
    ensure_model_registered(engine, config)
    if not result["population_computed"]:
        write_signal_frame(engine, compute_signals(engine, as_of, keys))
    signals = read_signal_frame(engine, as_of)
    wanted = set(keys)
    history = read_score_history(engine, as_of, config)
    history = history[history["account_key"].isin(wanted)]
    previous = read_signal_snapshot(
        engine, as_of - timedelta(days=config.explanations.change_window_days), config.signal_keys
    )
    if previous is not None:
        previous = previous[previous["account_key"].isin(wanted)]
    before = _current_zones(engine, as_of, config.version, keys)
    scored = score_accounts(signals, config, history, active_overrides(engine, as_of), previous_signals=previous)
    scored = scored[scored["account_key"].isin(wanted)]
    with engine.begin() as conn:
        result["scored"] = write_scores(conn, scored)
    result["zone_changes"] = [
        {"account_key": r.account_key, "from": before.get(r.account_key), "to": r.zone, "score": int(r.score)}
        for r in scored.itertuples(index=False)
        if before.get(r.account_key) != r.zone
    ]
    return result


def _current_zones(engine: Engine, as_of: date, version: str, keys: Sequence[str]) -> dict[str, str]:
    """Each account's zone as last scored on or before ``as_of`` (what a CSM sees now)."""
    from customer_health.scoring.history import latest_account_scores

    hs = health_scores.c
    with engine.connect() as conn:
        latest = latest_account_scores(conn, version, keys, as_of, [hs.account_key, hs.as_of_date, hs.zone])
    return {key: row.zone for key, row in latest.items()}


# ----------------------------------------------------------------------------- actions
def population_scores(engine: Engine, as_of: date, version: str) -> list[int]:
    """Every account's latest score on or before ``as_of``: today's where refreshed, else the last full day's."""
    hs = health_scores.c
    with engine.connect() as conn:
        last_full = conn.execute(
            select(func.max(hs.as_of_date)).where(hs.model_version == version, hs.as_of_date < as_of)
        ).scalar_one_or_none()
        today = dict(
            conn.execute(select(hs.account_key, hs.score).where(hs.model_version == version, hs.as_of_date == as_of)).all()
        )
        earlier = (
            dict(conn.execute(
                select(hs.account_key, hs.score).where(hs.model_version == version, hs.as_of_date == last_full)
            ).all())
            if last_full is not None
            else {}
        )  # fmt: skip
    return sorted((earlier | today).values())


def decide_for_accounts(
    engine: Engine,
    as_of: date,
    model_version: str,
    rules: Any,
    account_keys: Sequence[str],
    *,
    deliverable: bool = True,
) -> Any:
    """``actions.decide.decide_actions`` for ``as_of``, restricted to ``account_keys``.

    Same rules, payloads, anti-fatigue history and outbox keys as the daily decision, so the
    daily run for the same date re-decides these keys and inserts nothing. The population
    rank (``share_scoring_higher``) is over every account's latest score, since today's
    stored rows are only the refreshed accounts'.
    """
    from customer_health.actions.decide import decide_actions

    return decide_actions(
        engine,
        as_of,
        model_version,
        rules,
        deliverable=deliverable,
        account_keys=account_keys,
        population=population_scores(engine, as_of, model_version),
    )


def pending_for_accounts(engine: Engine, as_of: date, account_keys: Sequence[str]) -> dict[str, list[list[str]]]:
    """The outbox's deliverable batches (``outbox.pending_batches``) of these accounts only."""
    from customer_health.actions.outbox import DEFAULT_BATCH_SIZE, pending_batches

    wanted = set(account_keys)
    out: dict[str, list[list[str]]] = {}
    for action_type, batches in pending_batches(engine, as_of).items():
        keys = [k for batch in batches for k in batch if k.split(":", 1)[0] in wanted]
        if keys:
            out[action_type] = [keys[i : i + DEFAULT_BATCH_SIZE] for i in range(0, len(keys), DEFAULT_BATCH_SIZE)]
    return out


# ----------------------------------------------------------------------------- the DAG's steps
def run_extract(run_time: datetime) -> dict[str, Any]:
    """DAG step: migrate if needed, fix the window, extract the intraday sources."""
    from customer_health import pipeline

    engine = pipeline.warehouse()
    pipeline.migrate_warehouse()
    window = refresh_window(engine, run_time)
    extracted = {} if window.empty else pipeline.fail_fast(extract_changes)(engine, window.until)
    return {"window": window.to_dict(), "extracted": extracted}


def run_rescore(window: dict[str, str], model_version: str | None = None) -> dict[str, Any]:
    """DAG step: re-score the window's affected accounts for its day."""
    from customer_health import pipeline

    w = RefreshWindow.from_dict(window)
    engine = pipeline.warehouse()
    keys = affected_accounts(engine, w)
    return rescore_accounts(engine, w.as_of, keys, pipeline.active_model_config(model_version))


def run_decide(window: dict[str, str], deliverable: bool, model_version: str | None = None) -> dict[str, Any]:
    """DAG step: decide today's actions for the window's affected accounts."""
    from customer_health import pipeline
    from customer_health.actions.config import load_action_rules

    w = RefreshWindow.from_dict(window)
    engine = pipeline.warehouse()
    version = pipeline.active_model_config(model_version).version
    report = decide_for_accounts(
        engine, w.as_of, version, load_action_rules(), affected_accounts(engine, w), deliverable=deliverable
    )
    not_attempted = pipeline.suppress_without_crm(engine)
    return report.summary() | {"deliverable": deliverable} | (
        {"not_attempted": {"salesforce": not_attempted, "why": pipeline.NO_CRM}} if not_attempted else {})


def run_dispatch(window: dict[str, str]) -> dict[str, Any]:
    """DAG step: deliver the affected accounts' pending actions, one batch at a time."""
    from customer_health import pipeline

    w = RefreshWindow.from_dict(window)
    engine = pipeline.warehouse()
    from customer_health.actions.dispatch import raise_for_failures

    reports = [
        pipeline.deliver_batch(action_type, keys)
        for action_type, batches in pending_for_accounts(engine, w.as_of, affected_accounts(engine, w)).items()
        for keys in batches
    ]
    pipeline.fail_fast(raise_for_failures)(reports)  # every batch first; then what failed fails the task
    totals: dict[str, Any] = {}
    for report in reports:
        totals.setdefault(report.action_type, []).append(report.summary())
    return totals

