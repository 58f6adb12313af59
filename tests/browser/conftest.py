"""A real Airflow api-server on loopback with the project's plugins, and headless Chromium.

``airflow_ui`` starts ``airflow api-server`` (the process that serves the Airflow UI and mounts
plugin FastAPI apps) with a private ``AIRFLOW_HOME`` and SQLite metadata database, the simple
auth manager with two known users - an admin, and a customer-success manager whose username is
the e-mail of the Salesforce User owning the most accounts (the worklist's "my accounts") - the
project's ``plugins/`` folder and the dashboard's warehouse; it waits for the health endpoint and stops the process group it started. The
scheduler and dag-processor are not needed to serve pages and are not started.

The warehouse is a copy of the session's ``scored_company`` (``tests/scored_company.py``): the
sandbox's company scored by the real engine and acted on through the real outbox, so every
score, driver and action a page shows was written by the product's own code.

``browser`` launches the system Chromium (``/usr/bin/chromium``); Playwright never downloads
one. Without Chromium the browser tests fail in CI (``CI=true``) and are skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CUSTOMER_HEALTH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = ROOT / "test-output" / "browser"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AirflowUI:
    """The running api-server: where it is and how to log in."""

    base_url: str
    username: str
    password: str
    warehouse_url: str
    home: Path
    csm_username: str  # the e-mail of a Salesforce User who owns accounts
    csm_password: str

    def log(self, lines: int = 80) -> str:
        path = self.home / "api-server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def require_chromium() -> None:
    """Fail in CI, skip elsewhere, when the system Chromium is not installed."""
    if CHROMIUM.exists():
        return
    msg = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium, or set CUSTOMER_HEALTH_CHROMIUM)"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def copy_warehouse(source_url: str, target: Path) -> str:
    """A consistent copy of a SQLite warehouse (WAL included), through SQLite's backup API."""
    import sqlite3

    source = sqlite3.connect(source_url.removeprefix("sqlite:///"))
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    return f"sqlite:///{target}"


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory, request) -> Iterator[AirflowUI]:
    """``airflow api-server`` on loopback over a copy of the company scored by the real code."""
    require_chromium()  # before scoring the company: without Chromium there is nothing to serve it to
    scored_company = request.getfixturevalue("scored_company")

    home = tmp_path_factory.mktemp("airflow-home")
    warehouse_url = copy_warehouse(scored_company.warehouse_url, home / "warehouse.db")
    port = _free_port()
    password, csm_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    csm = busiest_owner_email(warehouse_url)
    (home / "passwords.json").write_text(json.dumps({"admin": password, csm: csm_password}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "no-dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{csm}:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
            "AIRFLOW_CONN_HEALTH_SALESFORCE": json.dumps(
                {"conn_type": "salesforce", "extra": {"instance_url": "https://acme.my.salesforce.com"}}
            ),
            "CUSTOMER_HEALTH_WAREHOUSE_URL": warehouse_url,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT)]),
        }
    )
    airflow = str(Path(sys.executable).with_name("airflow"))
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    if migrate.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-2000:]}\n{migrate.stderr[-2000:]}")
    log = open(home / "api-server.log", "ab")  # noqa: SIM115 - closed after the process stops
    proc = subprocess.Popen(
        [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    ui = AirflowUI(f"http://127.0.0.1:{port}", "admin", password, warehouse_url, home, csm, csm_password)
    try:
        _wait_for_health(ui, proc)
        yield ui
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def busiest_owner_email(warehouse_url: str) -> str:
    """The e-mail of the active Salesforce User who owns the most accounts."""
    from collections import Counter

    from sqlalchemy import select

    from customer_health.warehouse.engine import engine_for
    from customer_health.warehouse.schema import raw_sf_account, raw_sf_user

    with engine_for(warehouse_url).connect() as conn:
        owners = Counter(conn.execute(select(raw_sf_account.c.owner_id)).scalars())
        emails = dict(conn.execute(
            select(raw_sf_user.c.id, raw_sf_user.c.email).where(raw_sf_user.c.is_active.is_(True))).all())  # fmt: skip
    return next(emails[o] for o, _ in owners.most_common() if emails.get(o))


def _wait_for_health(ui: AirflowUI, proc: subprocess.Popen, timeout: float = 240) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"api-server exited with {proc.returncode}:\n{ui.log()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{ui.base_url}/api/v2/monitor/health", timeout=5) as resp:
            if resp.status == 200:
                return
        time.sleep(1)
    raise TimeoutError(f"api-server not healthy after {timeout:.0f} s:\n{ui.log()}")


@pytest.fixture(scope="module")
def browser(airflow_ui):
    """Headless system Chromium (Playwright drives it; it never downloads a browser)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def screenshots() -> Path:
    """Where the browser test saves its screenshots (``test-output/`` is ignored by git)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
