"""``make airflow``: the Airflow UI and the dashboard, on loopback, and stopped cleanly.

Runs the Makefile target itself (``make airflow``, in a shell whose ``PATH`` does not hold the
venv, on brand-new homes, a small company, a free port through ``AIRFLOW__API__PORT``) and
checks what a developer needs from it: the api-server answers on 127.0.0.1 only, the scheduler
heartbeats, the generated admin login works, the dashboard page opens with it, the scheduler
runs the daily DAG once it is unpaused (its tasks reach the execution API on the chosen port)
and the dashboard then shows the scored portfolio. SIGTERM to the target's process group then
stops every process it started (api-server, scheduler, dag-processor, triggerer, their
workers, the sandbox): none may survive.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.demo.harness import (
    ROOT,
    describe,
    free_port,
    fresh_env,
    kill_all,
    stop_sandbox,
    tail,
    wait_until_gone,
)

pytestmark = pytest.mark.slow

ACCOUNTS, DAYS = 200, 120
START_TIMEOUT = 300  # seconds until the api-server and the scheduler are healthy (about 1 minute on 2 cores)
DAG_RUN_TIMEOUT = 600
STOP_TIMEOUT = 120
DAG_ID = "customer_health_daily"


def wait_for(what: str, check: Callable[[], Any], timeout: float, proc: subprocess.Popen, log: Path) -> Any:
    """Poll ``check`` until it returns something truthy; fail when the target exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`make airflow` exited (code {proc.returncode}) while waiting for {what}:\n{tail(log, 80)}")
        try:
            result = check()
        except requests.RequestException:
            result = None
        if result:
            return result
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} from `make airflow`:\n{tail(log, 80)}")


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (any process)."""
    return {
        c.laddr.ip
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
    }


def test_make_airflow_serves_the_ui_and_dashboard_on_loopback_and_stops_everything(tmp_path):
    make = shutil.which("make")
    assert make, "`make` is not installed: the README's commands need it"
    port = free_port()
    env = fresh_env(
        tmp_path,
        AIRFLOW__API__PORT=str(port),
        # The scheduler's and triggerer's log servers, off a developer's running Airflow's ports.
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
    )
    airflow_home = Path(env["AIRFLOW_HOME"])
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "make-airflow.log"
    command = [make, "-s", "-o", "venv", "airflow", f"PY={sys.executable}", f"DEMO_ARGS=--accounts {ACCOUNTS} --days {DAYS}"]
    out = open(log, "wb")  # noqa: SIM115 - closed in the finally below
    t0 = time.monotonic()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # -- the api-server and the scheduler come up ---------------------------------------
        def healthy() -> dict | None:
            body = requests.get(f"{base}/api/v2/monitor/health", timeout=5).json()
            ok = (
                body["metadatabase"]["status"] == "healthy"
                and body["scheduler"]["status"] == "healthy"
                and body["scheduler"]["latest_scheduler_heartbeat"]
            )
            return body if ok else None

        wait_for("a healthy metadatabase and scheduler heartbeat", healthy, START_TIMEOUT, proc, log)
        print(f"make airflow: healthy after {time.monotonic() - t0:.0f} s")
        assert listening_addresses(port) == {"127.0.0.1"}, f"the api-server listens on {listening_addresses(port)}"
        printed = log.read_text(errors="replace")
        assert f"Airflow UI: {base}/" in printed, printed[:3000]
        password_file = airflow_home / "simple_auth_manager_passwords.json.generated"
        assert f"password in {password_file}" in printed, printed[:3000]

        # -- log in with the generated admin password, open the dashboard ---------------------
        assert requests.get(f"{base}/customer-health/", timeout=30, allow_redirects=False).status_code in (302, 303, 307)
        password = json.loads(password_file.read_text())["admin"]
        login = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        assert login.status_code == 201, login.text
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        page = session.get(f"{base}/customer-health/", timeout=60)
        assert page.status_code == 200, page.text[:2000]
        assert "<title>Portfolio · Customer health</title>" in page.text, page.text[:2000]

        # -- the scheduler runs the daily DAG once it is unpaused -----------------------------
        wait_for(f"{DAG_ID} parsed", lambda: session.get(f"{base}/api/v2/dags/{DAG_ID}", timeout=30).ok, 120, proc, log)
        unpause = session.patch(f"{base}/api/v2/dags/{DAG_ID}", json={"is_paused": False}, timeout=30)
        assert unpause.status_code == 200, unpause.text

        def finished_run() -> dict | None:
            runs = session.get(f"{base}/api/v2/dags/{DAG_ID}/dagRuns", timeout=30).json()["dag_runs"]
            done = [r for r in runs if r["state"] in ("success", "failed")]
            return done[0] if done else None

        run = wait_for(f"a finished {DAG_ID} run", finished_run, DAG_RUN_TIMEOUT, proc, log)
        if run["state"] != "success":
            tis = session.get(f"{base}/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances", timeout=30)
            failed = [t["task_id"] for t in tis.json()["task_instances"] if t["state"] not in ("success", "skipped")]
            pytest.fail(f"{DAG_ID} run {run['dag_run_id']} {run['state']}; tasks not successful: {failed}")
        print(f"make airflow: {DAG_ID} succeeded after {time.monotonic() - t0:.0f} s")
        page = session.get(f"{base}/customer-health/", timeout=60)
        assert page.status_code == 200 and "Accounts scored" in page.text, page.text[:2000]
    finally:
        # -- stop: SIGTERM to the target's process group, as a terminal or a supervisor does --
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        stopping = time.monotonic()
        try:
            code = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        stop_seconds = time.monotonic() - stopping
        left = describe(wait_until_gone(env, 10))
        sandbox = stop_sandbox(env)  # a no-op unless the target left its sandbox running
        kill_all(env)
        out.close()
    print(f"make airflow: stopped in {stop_seconds:.0f} s")
    assert code is not None, f"`make airflow` did not exit within {STOP_TIMEOUT} s of SIGTERM:\n{tail(log)}"
    assert not left, f"processes `make airflow` started survived it:\n{left}"
    assert "no sandbox was running" in sandbox, f"`make airflow` left its sandbox running: {sandbox}"
    assert not listening_addresses(port), "the api-server's port is still open"
    assert "Shutting down components" in log.read_text(errors="replace"), tail(log)
