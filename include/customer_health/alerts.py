"""Operational alerts: the people who run the pipeline hear when something goes wrong.

Three alerts, all posted to one Slack incoming webhook, the Airflow connection
``health_ops_slack`` (``settings.OPS_SLACK_CONN_ID``; a channel for the data engineers, not the
CSMs' escalation channel ``health_slack``). Without that connection each alert is logged as a
warning and nothing else happens: an alert never fails a task, let alone twice.

* **A task failed** (``notify_task_failure``, every product DAG's ``on_failure_callback``): the
  DAG, the task, the run, the try (``try 3 of 3``), the first line of the error and a link to the
  task's log in the Airflow UI (``[api] base_url``). It fires once per task that fails for good:
  a try that Airflow will retry is not a failure yet (no ``on_retry_callback``), so a task that
  recovers on its second try stays quiet, and one that exhausts its retries posts one message.
* **Today's scores are late** (``scores_late``, the daily DAG's deadline alert): the run for D
  has not finished by ``CUSTOMER_HEALTH_SCORES_DUE_UTC`` (HH:MM) on D+1. Airflow's scheduler
  evaluates the deadline (``DeadlineReference.DAGRUN_LOGICAL_DATE`` + 1 day + that time,
  ``scores_deadline``) and runs this callback on an executor once it passes. It posts unless D's
  scores are in the warehouse after all (a manual re-run of a date already scored) or the run is
  a backfill (history, not today's scores). The deadline exists only when the due time is set
  (``docker-compose.yaml`` sets 06:00): Airflow 3.3.2's ``dag.test()`` - and so ``airflow dags
  test``, which the demo and the DAG tests use - crashes when a run of a DAG with a deadline
  succeeds (apache/airflow#73428: its in-memory DAG holds the encoded alerts where the prune
  step expects their ids), so a DAG without the setting carries none.
* **A spike of quarantined or unmapped records** (``check_record_spikes``, a task after the
  crosswalk): per source, the records quarantined since the previous date's check and the
  identities the crosswalk could not map, compared with the median of the previous
  ``CUSTOMER_HEALTH_SPIKE_WINDOW_RUNS`` checks (default 14). Above ``CUSTOMER_HEALTH_SPIKE_FACTOR``
  times that median (default 3) *and* at least ``CUSTOMER_HEALTH_SPIKE_MIN_RECORDS`` (default
  20) is a spike; fewer than ``MIN_HISTORY_RUNS`` earlier checks judge nothing. The counts are
  kept per date in ``record_spike_counts`` (its median is the trailing history), and a spike is
  posted once per date, source and kind: a re-run of the check recounts but does not post again.

The settings are environment variables (``deploy/.env``), read when used; a bad value is an
error naming the variable and the expected form.
"""

from __future__ import annotations

import logging
import os
import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, func, select

from customer_health import settings, wording

log = logging.getLogger(__name__)

SCORES_DUE_ENV = "CUSTOMER_HEALTH_SCORES_DUE_UTC"
SPIKE_FACTOR_ENV = "CUSTOMER_HEALTH_SPIKE_FACTOR"
SPIKE_MIN_RECORDS_ENV = "CUSTOMER_HEALTH_SPIKE_MIN_RECORDS"
SPIKE_WINDOW_ENV = "CUSTOMER_HEALTH_SPIKE_WINDOW_RUNS"
# Fewer earlier checks than this and there is no "usual" to compare with: nothing is judged.
MIN_HISTORY_RUNS = 3

QUARANTINED = "quarantined"
UNMAPPED = "unmapped"


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class AlertSettings:
    """When scores are due and what counts as a spike."""

    scores_due: time | None = None  # None: no deadline alert (see the module docstring)
    spike_factor: float = 3.0
    spike_min_records: int = 20
    spike_window_runs: int = 14

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> AlertSettings:
        """The settings from ``CUSTOMER_HEALTH_*`` variables; defaults where unset."""
        env = os.environ if env is None else env
        default = cls()
        return cls(
            scores_due=_due_time(env.get(SCORES_DUE_ENV), default.scores_due),
            spike_factor=_number(env, SPIKE_FACTOR_ENV, default.spike_factor, float, minimum=1.0),
            spike_min_records=_number(env, SPIKE_MIN_RECORDS_ENV, default.spike_min_records, int, minimum=1),
            spike_window_runs=_number(env, SPIKE_WINDOW_ENV, default.spike_window_runs, int, minimum=MIN_HISTORY_RUNS),
        )


def _due_time(raw: str | None, default: time | None) -> time | None:
    if raw is None or not raw.strip():
        return default
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", raw.strip())
    if not match:
        raise ValueError(f"{SCORES_DUE_ENV}={raw!r} is not a time of day: write HH:MM in UTC, e.g. 06:00")
    return time(int(match.group(1)), int(match.group(2)))


def _number(env: Mapping[str, str], name: str, default: Any, kind: type, minimum: float) -> Any:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number (default {default})") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} is below {minimum:g}; set it to {minimum:g} or more (default {default})")
    return value


def scores_deadline(alert_settings: AlertSettings | None = None) -> timedelta | None:
    """How long after a daily run's logical date D its scores are due: 1 day + the due time.

    A scheduled run of D has logical date D 00:00 UTC, so the deadline is the due time on D+1
    (a manual run for logical date T scores T - 1 day and is due a day later). None when no due
    time is configured.
    """
    due = (alert_settings or AlertSettings.from_environment()).scores_due
    return None if due is None else timedelta(days=1, hours=due.hour, minutes=due.minute)


def scores_due_alert(alert_settings: AlertSettings | None = None) -> Any:
    """The daily DAG's ``DeadlineAlert`` (``scores_late`` past the due time), or None when unset."""
    from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback

    alert_settings = alert_settings or AlertSettings.from_environment()
    interval = scores_deadline(alert_settings)
    if interval is None:
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=interval,
        callback=SyncCallback(scores_late, kwargs={"due": f"{alert_settings.scores_due:%H:%M}"}),
        name="scores_due",
    )


# ----------------------------------------------------------------------------- posting
def post_to_ops(text: str, *, what: str) -> bool:
    """Post ``text`` to the ops channel; False (and a warning) when ``health_ops_slack`` is absent.

    Uses the Slack provider's own notifier (``SlackWebhookNotifier``: the incoming-webhook hook).
    An error from Slack is raised: the caller decides whether it matters.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(settings.OPS_SLACK_CONN_ID)
    except AirflowNotFoundException:
        log.warning(
            "No %s alert was sent: the Airflow connection %r (a Slack incoming webhook for the ops "
            "channel) is not defined. Define it to be told; the alert was:\n%s",
            what,
            settings.OPS_SLACK_CONN_ID,
            text,
        )
        return False
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    SlackWebhookNotifier(slack_webhook_conn_id=settings.OPS_SLACK_CONN_ID, text=text).notify({})
    log.info("%s alert posted to %s", what, settings.OPS_SLACK_CONN_ID)
    return True


def _code(text: object) -> str:
    """``text`` as inline code in a Slack message (identifiers, errors): escaped, no backticks."""
    return f"`{wording.slack(str(text).replace('`', chr(39)))}`"


def _link(url: str, label: str) -> str:
    """A Slack link; ``|`` and ``>`` cannot appear inside it."""
    return f"<{url.replace('>', '%3E').replace('|', '%7C')}|{wording.slack(label)}>"


def _ui_base() -> str:
    from airflow.configuration import conf

    return (conf.get("api", "base_url", fallback="") or "http://localhost:8080").rstrip("/")


# ----------------------------------------------------------------------------- task failures
def first_line(error: object) -> str:
    """The first non-blank line of an error, with its type: what the alert quotes."""
    if error is None:
        return "no error was recorded (the task was stopped or its worker died)"
    text = str(error).strip()
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    kind = type(error).__name__ if isinstance(error, BaseException) else ""
    line = f"{kind}: {line}" if kind and line else (kind or line)
    return line if len(line) <= 300 else line[:299] + "…"


def task_failure_message(context: Mapping[str, Any]) -> str:
    """The ops message for a task that failed for good (from its Airflow context)."""
    ti = context["ti"]
    tries = getattr(ti, "try_number", None)
    task = context.get("task")
    retries = getattr(task, "retries", None)
    attempt = f"try {tries} of {retries + 1}" if isinstance(tries, int) and isinstance(retries, int) else f"try {tries}"
    mapped = getattr(ti, "map_index", -1)
    task_name = ti.task_id + (f"[{mapped}]" if isinstance(mapped, int) and mapped >= 0 else "")
    return (
        f":rotating_light: A customer health task failed: {_code(ti.dag_id)} › {_code(task_name)}, "
        f"run {_code(ti.run_id)}, {attempt}.\n"
        f"Error: {_code(first_line(context.get('exception')))}\n"
        f"{_link(ti.log_url, 'Open the task log')} to see what happened; clear the task to run it again."
    )


def notify_task_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` of every product task: post the failure, never raise."""
    try:
        post_to_ops(task_failure_message(context), what="task failure")
    except Exception:  # noqa: BLE001 - an alert must not fail the task a second time
        log.exception("The task failure alert could not be posted to %s", settings.OPS_SLACK_CONN_ID)


# ----------------------------------------------------------------------------- late scores
def scores_written(engine: Engine, as_of: date) -> bool:
    """Whether any score for ``as_of`` is in the warehouse (any model version)."""
    from customer_health.warehouse.schema import health_score_summary

    with engine.connect() as conn:
        found = conn.execute(
            select(func.count()).select_from(health_score_summary).where(health_score_summary.c.as_of_date == as_of)
        ).scalar_one()
    return found > 0


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def late_scores_message(dag_run: Mapping[str, Any], due: time, deadline_time: Any = None) -> str:
    """The ops message for a daily run whose scores missed their deadline.

    The due moment is the deadline the scheduler fired on when it is known (a manual run's is
    its own logical date + 1 day + the due time), else the due time on D+1.
    """
    as_of = _day(dag_run.get("data_interval_start") or dag_run["logical_date"])
    due_at = _moment(deadline_time) or datetime.combine(as_of + timedelta(days=1), due)
    run_id = dag_run.get("dag_run_id") or dag_run.get("run_id")
    dag_id = dag_run.get("dag_id", "customer_health_daily")
    state = str(dag_run.get("state") or "unknown")
    url = f"{_ui_base()}/dags/{quote(dag_id)}/runs/{quote(str(run_id), safe='')}"
    return (
        f":hourglass: Late health scores: the scores for {as_of:%Y-%m-%d} were not written by "
        f"{due_at:%H:%M} UTC on {due_at:%Y-%m-%d}. The run {_code(run_id)} of {_code(dag_id)} is {state}; "
        f"until it finishes, Salesforce and the dashboard show the previous day's scores and no action "
        f"goes out for {as_of:%Y-%m-%d}.\n{_link(url, 'Open the run')}"
    )


def scores_late(context: Mapping[str, Any], due: str) -> None:
    """The daily DAG's deadline callback (``SyncCallback``): post that D's scores are late.

    ``context`` is what Airflow hands a deadline callback: the run (``dag_run``, as the REST API
    shows it) and the deadline. ``due`` is the configured HH:MM, for the message.
    """
    dag_run = context.get("dag_run") or {}
    if str(dag_run.get("run_type", "")).lower() == "backfill":
        log.info("Backfill run %s missed its deadline: history, not today's scores; no alert.", dag_run.get("dag_run_id"))
        return
    as_of = _day(dag_run.get("data_interval_start") or dag_run["logical_date"])
    try:
        from customer_health.pipeline import warehouse

        if scores_written(warehouse(), as_of):
            log.info("The scores for %s are in the warehouse: the deadline concerns a re-run; no alert.", as_of)
            return
    except Exception:  # noqa: BLE001 - a warehouse we cannot read is no reason to stay quiet
        log.exception("Could not check the warehouse for the scores of %s; alerting anyway", as_of)
    deadline_time = (context.get("deadline") or {}).get("deadline_time")
    post_to_ops(late_scores_message(dag_run, _due_time(due, time(0, 0)), deadline_time), what="late scores")


# ----------------------------------------------------------------------------- record spikes
@dataclass(frozen=True)
class Spike:
    """A source whose count of problem records is far above its usual."""

    source: str
    kind: str  # quarantined | unmapped
    records: int
    usual: float  # the median of the previous checks


def record_counts(engine: Engine, since: datetime | None) -> dict[tuple[str, str], int]:
    """Per (source, kind): records quarantined since ``since`` (all when None), and unmapped now."""
    from customer_health.warehouse.schema import crosswalk_unmapped, quarantine

    q = select(quarantine.c.source, func.count()).group_by(quarantine.c.source)
    if since is not None:
        q = q.where(quarantine.c.last_seen_at > since)
    with engine.connect() as conn:
        counts = {(source, QUARANTINED): n for source, n in conn.execute(q)}
        counts |= {
            (source, UNMAPPED): n
            for source, n in conn.execute(
                select(crosswalk_unmapped.c.source, func.count()).group_by(crosswalk_unmapped.c.source)
            )
        }
    return counts


def find_spikes(
    today: Mapping[tuple[str, str], int], history: list[Mapping[tuple[str, str], int]], alert_settings: AlertSettings
) -> list[Spike]:
    """The (source, kind) pairs of ``today`` above factor x the median of ``history`` and the minimum.

    ``history`` holds one mapping per earlier check, most recent first; a pair missing from a
    check counted 0 there. With fewer than ``MIN_HISTORY_RUNS`` checks nothing is a spike.
    """
    if len(history) < MIN_HISTORY_RUNS:
        return []
    spikes = []
    for pair, records in sorted(today.items()):
        usual = statistics.median(h.get(pair, 0) for h in history)
        if records >= alert_settings.spike_min_records and records > alert_settings.spike_factor * usual:
            spikes.append(Spike(pair[0], pair[1], records, usual))
    return spikes


def spike_message(as_of: date, spikes: list[Spike], alert_settings: AlertSettings, runs: int) -> str:
    """The ops message for the spikes of one date."""
    lines = [f":warning: Unusual number of problem records in the customer health run for {as_of:%Y-%m-%d}:"]
    for spike in spikes:
        usual = wording.count(round(spike.usual, 1), "record")
        if spike.kind == QUARANTINED:
            what = (
                f"{wording.count(spike.records, 'record')} quarantined as malformed (usually {usual}); "
                f"they are in the warehouse table {_code('quarantine')} with the reason, and the rest loaded"
            )
        else:
            what = (
                f"{wording.count(spike.records, 'record')} not mapped to a Salesforce account (usually {usual}); "
                f"see the warehouse table {_code('crosswalk_unmapped')} for why"
            )
        lines.append(f"• {wording.slack(spike.source.capitalize())}: {what}.")
    lines.append(
        f"\"Usually\" is the median of the last {wording.count(runs, 'run')}; an alert needs more than "
        f"{alert_settings.spike_factor:g} times that and at least {wording.count(alert_settings.spike_min_records, 'record')}."
    )
    return "\n".join(lines)


def _known_pairs() -> list[tuple[str, str]]:
    """Every (source, kind) a check records: each extracted system's quarantine, and the
    crosswalk's unmapped identities of every system but Salesforce (the accounts themselves)."""
    from customer_health.sources import product, salesforce, stripe, zendesk

    systems = [salesforce.SOURCE, zendesk.SOURCE, stripe.SOURCE, product.SOURCE]
    return [(s, QUARANTINED) for s in systems] + [(s, UNMAPPED) for s in systems if s != salesforce.SOURCE]


def check_record_spikes(
    engine: Engine, as_of: date, alert_settings: AlertSettings | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Count D's quarantined and unmapped records, keep the counts, and post a spike once.

    Quarantined records count from the previous date's check (``checked_at`` of the latest
    earlier row) to now, so a re-run of D counts the same records again and never fewer. The
    counts are upserted per (D, source, kind), every known pair included (0 when quiet) so the
    medians see quiet days. Posting happens after the counts are committed; ``alerted_at`` is
    set only once Slack accepted the message, so a failed post is retried by the task's retry
    and a re-run after a post sends nothing.
    """
    from customer_health.warehouse.io import upsert_rows, utcnow
    from customer_health.warehouse.schema import record_spike_counts as t

    alert_settings = alert_settings or AlertSettings.from_environment()
    now = now or utcnow()
    with engine.connect() as conn:
        since = conn.execute(select(func.max(t.c.checked_at)).where(t.c.as_of_date < as_of)).scalar_one_or_none()
        earlier = list(
            conn.execute(
                select(t.c.as_of_date).where(t.c.as_of_date < as_of).group_by(t.c.as_of_date)
                .order_by(t.c.as_of_date.desc()).limit(alert_settings.spike_window_runs)
            ).scalars()
        )  # fmt: skip
        rows = conn.execute(
            select(t.c.as_of_date, t.c.source, t.c.kind, t.c.records).where(t.c.as_of_date.in_(earlier))
        ).all() if earlier else []  # fmt: skip
        already = {
            (r.source, r.kind)
            for r in conn.execute(select(t.c.source, t.c.kind).where(t.c.as_of_date == as_of, t.c.alerted_at.is_not(None)))
        }
    history = [{(r.source, r.kind): r.records for r in rows if r.as_of_date == day} for day in earlier]
    today = record_counts(engine, since)
    for pair in {pair for check in history for pair in check} | set(_known_pairs()):
        today.setdefault(pair, 0)  # a quiet source is a 0 in the history, not a gap
    with engine.begin() as conn:
        upsert_rows(
            conn,
            t,
            [
                {"as_of_date": as_of, "source": source, "kind": kind, "records": n, "checked_at": now}
                for (source, kind), n in sorted(today.items())
            ],
        )
    spikes = find_spikes(today, history, alert_settings)
    new = [s for s in spikes if (s.source, s.kind) not in already]
    posted = False
    if new:
        posted = post_to_ops(spike_message(as_of, new, alert_settings, len(history)), what="record spike")
        if posted:
            with engine.begin() as conn:
                for spike in new:
                    conn.execute(
                        t.update()
                        .where(t.c.as_of_date == as_of, t.c.source == spike.source, t.c.kind == spike.kind)
                        .values(alerted_at=now)
                    )
    return {
        "as_of_date": as_of.isoformat(),
        "counts": {f"{source}.{kind}": n for (source, kind), n in sorted(today.items())},
        "history_runs": len(history),
        "spikes": [f"{s.source}.{s.kind}" for s in spikes],
        "posted": posted,
    }


def check_run_for_spikes(as_of: date, run_type: str) -> dict[str, Any]:
    """The daily DAG's spike check for the run of ``as_of`` (a backfill checks nothing).

    A backfill re-runs history: it extracts nothing new, and its dates lie before the checks
    already made, so it neither counts nor alerts.
    """
    if run_type == "backfill":
        return {"as_of_date": as_of.isoformat(), "skipped": "backfill run: history is not checked for spikes"}
    from customer_health.pipeline import warehouse

    return check_record_spikes(warehouse(), as_of)
