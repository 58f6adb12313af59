"""Operational alerts, as the ops channel receives them: the sandbox's Slack sink.

The ops connection ``health_ops_slack`` points at the sandbox's Slack incoming-webhook server on a
webhook of its own, so the messages read here are exactly what Slack would have been sent, and
nothing else the pipeline posts (the CSMs' escalations) is mistaken for one.

* A task that fails for good posts one message naming the DAG, the task, the run, the try, the
  error's first line and a link to its log; a task retried before it fails still posts one.
* Without the ops connection an alert is a logged warning and the task fails once, for its own
  reason.
* The daily DAG's deadline: the callback Airflow stored for a real run, run the way an executor
  runs it, posts that D's scores are late - unless they are in the warehouse after all.
* Spikes: real extractions of successive days; quiet days post nothing, the day the source sends
  malformed records posts once, and a re-run of that check does not post again.

Identifiers (DAG, task, run ids, table names) are inline code in the messages, for the engineers
who read them; the prose around them is checked with ``assert_reads_well``.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from customer_health import alerts, settings
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.migrate import upgrade_to_head
from customer_health.warehouse.schema import record_spike_counts
from health_sandbox.connections import as_environment, sandbox_connections
from health_sandbox.store import sandbox_writes
from tests.airflow_home import forget_runs
from tests.conftest import TEST_END_DATE
from tests.text_checks import assert_reads_well

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
OPS_WEBHOOK = "T00000000/BOPS00000/opsalertstoken"
BASE_URL = "http://airflow.example.test:8080"


def _logical_date_scoring(day: date) -> datetime:
    """The logical date of the manual run whose data interval is [day, day + 1)."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def _prose(text: str) -> str:
    """The message without its inline code and links: the words a person reads."""
    return re.sub(r"<[^>|]+\|([^>]+)>", r"\1", re.sub(r"`[^`]*`", "", text))


@pytest.fixture()
def environment(monkeypatch, fresh_sandbox, tmp_path):
    """Every connection at the sandbox, a fresh SQLite warehouse, and the ops webhook on its own path."""
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    for key, value in as_environment(sandbox_connections(fresh_sandbox.endpoints, url)).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(settings.WAREHOUSE_URL_ENV, raising=False)
    slack = urlsplit(fresh_sandbox.endpoints["slack"])
    ops = {"conn_type": "slackwebhook", "host": f"{slack.scheme}://{slack.netloc}/services", "password": OPS_WEBHOOK}
    monkeypatch.setenv(f"AIRFLOW_CONN_{settings.OPS_SLACK_CONN_ID.upper()}", json.dumps(ops))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    engine_for.cache_clear()
    upgrade_to_head(engine_for(url))
    yield {"url": url, "sandbox": fresh_sandbox}
    engine_for.cache_clear()


def ops_messages(sandbox) -> list[str]:
    """The texts the sandbox's Slack received on the ops webhook, in order."""
    with sandbox.store.connect() as conn:
        rows = conn.execute(
            select(sandbox_writes.c.path, sandbox_writes.c.body)
            .where(sandbox_writes.c.system == "slack")
            .order_by(sandbox_writes.c.id)
        ).all()
    return [row.body["text"] for row in rows if row.path.endswith(OPS_WEBHOOK)]


def _zendesk_refuses_the_token(monkeypatch, sandbox) -> None:
    conns = sandbox_connections(sandbox.endpoints)
    conns[settings.ZENDESK_CONN_ID]["password"] = "a-revoked-token"
    monkeypatch.setenv(f"AIRFLOW_CONN_{settings.ZENDESK_CONN_ID.upper()}", json.dumps(conns[settings.ZENDESK_CONN_ID]))


def _zendesk_extraction(dagbag):
    """The daily DAG cut down to its Zendesk extraction (the warehouse is migrated already)."""
    return dagbag.dags["customer_health_daily"].partial_subset(
        task_ids=["extract_zendesk"], include_upstream=False, include_downstream=False
    )


# ----------------------------------------------------------------------------- late scores
# (before the task-failure tests: their runs of the cut-down daily DAG replace the stored DAG the
# deadline tests need, on the one metadata DB of the session)
@pytest.fixture()
def daily_with_deadline(airflow_metadata, monkeypatch):
    """The daily DAG parsed with a due time, stored as the dag-processor stores it; a run factory."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    monkeypatch.setenv(alerts.SCORES_DUE_ENV, "06:00")
    bag = DagBag(str(ROOT / "dags"))
    assert bag.import_errors == {}
    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    sync_bag_to_db(bag, "dags-folder", None)

    def create_run(as_of: date, run_type: DagRunType = DagRunType.SCHEDULED):
        """A run of D created as the scheduler creates it, with its deadline row."""
        start = datetime.combine(as_of, datetime.min.time(), tzinfo=UTC)
        forget_runs("customer_health_daily", start)  # an earlier test's run of that date, without a deadline
        with create_session() as session:
            dag = SerializedDagModel.get_dag("customer_health_daily", session=session)
            return dag.create_dagrun(
                run_id=f"{run_type.value}__{start.isoformat()}",
                logical_date=start,
                data_interval=(start, start + timedelta(days=1)),
                run_after=start + timedelta(days=1),
                run_type=run_type,
                triggered_by=DagRunTriggeredByType.TIMETABLE,
                state=DagRunState.RUNNING,
                session=session,
            ).id

    return create_run


def _missed_deadline_callback(dagrun_id: int):
    """What the scheduler does when the run's deadline passes: mark it missed and queue its callback."""
    from airflow.models.deadline import Deadline
    from airflow.utils.session import create_session

    with create_session() as session:
        [deadline] = session.scalars(select(Deadline).where(Deadline.dagrun_id == dagrun_id)).all()
        deadline.handle_miss(session)
        return dict(deadline.callback.data), deadline.deadline_time


def _run_like_an_executor(callback: dict) -> None:
    """Run a deadline callback through the Task SDK's own callback runner, as a worker does."""
    import structlog
    from airflow.sdk.execution_time.callback_supervisor import execute_callback

    ok, error = execute_callback(callback["path"], callback["kwargs"], "", None, structlog.get_logger("callback"))
    assert ok, error


def test_scores_not_written_by_the_deadline_post_that_they_are_late(environment, daily_with_deadline):
    sandbox = environment["sandbox"]
    d = TEST_END_DATE - timedelta(days=1)
    run_id = daily_with_deadline(d)
    callback, deadline_time = _missed_deadline_callback(run_id)
    assert callback["path"] == "customer_health.alerts.scores_late"
    assert deadline_time == datetime.combine(TEST_END_DATE, datetime.min.time(), tzinfo=UTC) + timedelta(hours=6)
    _run_like_an_executor(callback)

    [text] = ops_messages(sandbox)
    assert f"the scores for {d:%Y-%m-%d} were not written by 06:00 UTC on {TEST_END_DATE:%Y-%m-%d}" in text
    assert f"The run `scheduled__{d:%Y-%m-%d}T00:00:00+00:00` of `customer_health_daily` is running" in text
    assert f"<{BASE_URL}/dags/customer_health_daily/runs/scheduled__{d:%Y-%m-%d}T00%3A00%3A00%2B00%3A00|Open the run>" in text
    assert_reads_well(_prose(text), "the late scores alert")


def test_a_deadline_missed_by_a_date_already_scored_posts_nothing(
    environment, daily_with_deadline, scored_company, monkeypatch
):
    sandbox = environment["sandbox"]
    conns = sandbox_connections(sandbox.endpoints, scored_company.warehouse_url)
    monkeypatch.setenv("AIRFLOW_CONN_HEALTH_WAREHOUSE", json.dumps(conns[settings.WAREHOUSE_CONN_ID]))
    engine_for.cache_clear()
    callback, _ = _missed_deadline_callback(daily_with_deadline(scored_company.as_of))
    _run_like_an_executor(callback)
    assert ops_messages(sandbox) == []


def test_without_a_due_time_the_daily_dag_has_no_deadline(dagbag):
    assert not dagbag.dags["customer_health_daily"].deadline


def test_backfill_runs_never_post_late_scores(environment):
    dag_run = {"dag_run_id": "backfill__2026-10-01T00:00:00+00:00", "dag_id": "customer_health_daily",
               "run_type": "backfill", "data_interval_start": "2026-10-01T00:00:00Z", "state": "running"}  # fmt: skip
    alerts.scores_late({"dag_run": dag_run}, due="06:00")
    assert ops_messages(environment["sandbox"]) == []


# ----------------------------------------------------------------------------- task failures
def test_a_task_that_fails_for_good_posts_one_message_with_dag_task_run_try_error_and_log(
    environment, dagbag, monkeypatch
):
    sandbox = environment["sandbox"]
    _zendesk_refuses_the_token(monkeypatch, sandbox)
    run = _zendesk_extraction(dagbag).test(logical_date=_logical_date_scoring(TEST_END_DATE))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"extract_zendesk": "failed"}, states

    [text] = ops_messages(sandbox)
    assert "`customer_health_daily` › `extract_zendesk`" in text
    assert f"run `{run.run_id}`" in text
    # Bad credentials cannot be fixed by retrying: it failed on its first try of four.
    assert "try 1 of 4" in text
    error = re.search(r"Error: `([^`]*)`", text).group(1)
    assert error.startswith("AirflowFailException: ZendeskAuthenticationError") and "\n" not in error
    log_link = re.search(r"<([^|>]+)\|Open the task log>", text).group(1)
    assert log_link.startswith(f"{BASE_URL}/dags/customer_health_daily/runs/") and "/tasks/extract_zendesk" in log_link
    assert_reads_well(_prose(text), "the task failure alert")


def test_a_task_retried_before_it_fails_posts_once_for_its_last_try(environment, dagbag):
    sandbox = environment["sandbox"]
    sandbox.inject_fault("zendesk", "server_error", times=1000)  # Zendesk is down for longer than the run
    dag = _zendesk_extraction(dagbag)
    extract = dag.get_task("extract_zendesk")
    extract.retries, extract.retry_delay, extract.retry_exponential_backoff = 1, timedelta(0), False
    run = dag.test(logical_date=_logical_date_scoring(TEST_END_DATE))
    [ti] = [ti for ti in run.get_task_instances() if ti.task_id == "extract_zendesk"]
    assert ti.state == "failed" and ti.try_number == 2, (ti.state, ti.try_number)

    [text] = ops_messages(sandbox)  # the first try was retried, not alerted
    assert "`extract_zendesk`" in text and "try 2 of 2" in text
    assert_reads_well(_prose(text), "the task failure alert")


def test_without_the_ops_connection_a_failure_is_a_warning_and_the_task_fails_once(
    environment, dagbag, monkeypatch, caplog
):
    sandbox = environment["sandbox"]
    monkeypatch.delenv(f"AIRFLOW_CONN_{settings.OPS_SLACK_CONN_ID.upper()}")
    _zendesk_refuses_the_token(monkeypatch, sandbox)
    with caplog.at_level(logging.WARNING, logger="customer_health.alerts"):
        run = _zendesk_extraction(dagbag).test(logical_date=_logical_date_scoring(TEST_END_DATE))
    [ti] = [ti for ti in run.get_task_instances() if ti.task_id == "extract_zendesk"]
    assert ti.state == "failed" and ti.try_number == 1
    assert ops_messages(sandbox) == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "customer_health.alerts"]
    assert any("'health_ops_slack'" in w and "is not defined" in w for w in warnings), warnings


# ----------------------------------------------------------------------------- spikes
def _daily_extraction_and_check(day: date, spike_settings: alerts.AlertSettings) -> dict:
    from customer_health import pipeline

    until = datetime.combine(day + timedelta(days=1), datetime.min.time())
    pipeline.extract_salesforce(until)
    pipeline.build_crosswalk()
    return alerts.check_record_spikes(pipeline.warehouse(), day, spike_settings)


def test_a_quarantine_spike_posts_once_and_quiet_days_post_nothing(environment):
    sandbox = environment["sandbox"]
    spike_settings = alerts.AlertSettings(spike_factor=3, spike_min_records=2, spike_window_runs=14)
    days = [TEST_END_DATE - timedelta(days=n) for n in range(5, 0, -1)]
    for day in days[:-1]:
        report = _daily_extraction_and_check(day, spike_settings)
        assert report["spikes"] == [] and not report["posted"], report
    assert ops_messages(sandbox) == []
    assert report["history_runs"] == 3

    # The last day Salesforce sends a broken record in every page it serves.
    sandbox.inject_fault("salesforce", "malformed", times=50)
    report = _daily_extraction_and_check(days[-1], spike_settings)
    quarantined = report["counts"]["salesforce.quarantined"]
    assert quarantined >= 2 and report["spikes"] == ["salesforce.quarantined"] and report["posted"], report

    [text] = ops_messages(sandbox)
    assert f"in the customer health run for {days[-1]:%Y-%m-%d}:" in text
    assert f"• Salesforce: {quarantined} records quarantined as malformed (usually 0 records)" in text
    assert "the median of the last 4 runs" in text and "more than 3 times that and at least 2 records" in text
    assert_reads_well(_prose(text), "the spike alert")

    # A re-run of that day's check recounts the same records and posts nothing more.
    again = alerts.check_record_spikes(engine_for(environment["url"]), days[-1], spike_settings)
    assert again["counts"]["salesforce.quarantined"] == quarantined and not again["posted"]
    assert len(ops_messages(sandbox)) == 1
    with engine_for(environment["url"]).connect() as conn:
        alerted = conn.execute(
            select(record_spike_counts.c.source, record_spike_counts.c.kind).where(
                record_spike_counts.c.alerted_at.is_not(None)
            )
        ).all()
    assert alerted == [("salesforce", "quarantined")]


def test_spike_rule_needs_history_the_factor_and_the_minimum():
    s = alerts.AlertSettings(spike_factor=3, spike_min_records=20, spike_window_runs=14)
    quiet = [{("stripe", "unmapped"): n} for n in (10, 12, 11)]
    assert alerts.find_spikes({("stripe", "unmapped"): 500}, quiet[:2], s) == []  # two earlier runs: no usual yet
    assert alerts.find_spikes({("stripe", "unmapped"): 33}, quiet, s) == []  # 3x the median of 11 is 33
    assert alerts.find_spikes({("stripe", "unmapped"): 34}, quiet, s) == [alerts.Spike("stripe", "unmapped", 34, 11)]
    assert alerts.find_spikes({("zendesk", "quarantined"): 19}, quiet, s) == []  # above 3 x 0, below the minimum
    assert alerts.find_spikes({("zendesk", "quarantined"): 20}, quiet, s) == [alerts.Spike("zendesk", "quarantined", 20, 0)]


def test_alert_settings_refuse_bad_values_saying_what_to_write():
    env = {alerts.SCORES_DUE_ENV: "6am"}
    with pytest.raises(ValueError, match=r"CUSTOMER_HEALTH_SCORES_DUE_UTC='6am' is not a time of day: write HH:MM"):
        alerts.AlertSettings.from_environment(env)
    with pytest.raises(ValueError, match=r"CUSTOMER_HEALTH_SPIKE_FACTOR='0.5' is below 1"):
        alerts.AlertSettings.from_environment({alerts.SPIKE_FACTOR_ENV: "0.5"})
    configured = alerts.AlertSettings.from_environment({alerts.SCORES_DUE_ENV: "07:30", alerts.SPIKE_MIN_RECORDS_ENV: "5"})
    assert alerts.scores_deadline(configured) == timedelta(days=1, hours=7, minutes=30)
    assert alerts.scores_deadline(alerts.AlertSettings.from_environment({})) is None
    assert configured.spike_min_records == 5 and configured.spike_factor == 3
