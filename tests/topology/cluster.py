"""Airflow's production topology, as processes on loopback: no Docker needed.

``AirflowCluster`` starts what ``docker-compose.yaml`` runs as containers — the api-server,
the scheduler, the dag-processor and Celery workers — against the local PostgreSQL (a fresh
metadata database with a unique name) and Redis (a private database index), with the same
environment variables the compose file sets (``AIRFLOW__CORE__EXECUTION_API_SERVER_URL`` and
friends). It talks to Airflow only through the public REST API, authenticated with a JWT from
the auth manager - the simple one by default, or FAB's as in the compose file
(``auth_manager="fab"``: its tables migrated with the metadata DB, the admin and ``add_user``'s
users created with FAB's own CLI, the dashboard's roles registered as the compose init service
registers them) - and stops and removes everything it started.
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
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN = os.environ.get("CUSTOMER_HEALTH_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
REDIS = ("127.0.0.1", 6379)
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_command(*args: str) -> bytes:
    """One RESP command to the local Redis (no client library needed)."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(REDIS, timeout=5) as s:
        s.sendall(payload.encode())
        return s.recv(4096)


def redis_available() -> bool:
    try:
        return redis_command("PING").startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class AirflowCluster:
    """api-server + scheduler + dag-processor + N Celery workers on loopback."""

    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    heartbeat_timeout: int = 20
    # Airflow pools created (``airflow pools set``, an upsert) right after the metadata migration.
    pools: dict[str, int] = field(default_factory=lambda: {"customer_health_scoring": 1})
    # "simple" (development) or "fab" (the compose file's auth manager).
    auth_manager: str = "simple"

    def __post_init__(self) -> None:
        self.name = f"ch_topo_{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.redis_db = 1 + int(uuid.uuid4().int % 15)
        self.password = secrets.token_urlsafe(12)
        self.procs: dict[str, subprocess.Popen] = {}
        self._token: str | None = None
        self.meta_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{self.name}"

    # ----------------------------------------------------------------------- environment
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        if not hasattr(self, "_fernet"):
            self._fernet = Fernet.generate_key().decode()
            self._jwt = secrets.token_urlsafe(32)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.meta_url,
                "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{self.redis_db}",
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.meta_url,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt,
                "AIRFLOW__CORE__FERNET_KEY": self._fernet,
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                **(
                    {
                        "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
                        "AIRFLOW__FAB__CONFIG_FILE": str(self.home / "webserver_config.py"),
                        "AIRFLOW__API__SECRET_KEY": self._jwt,
                    }
                    if self.auth_manager == "fab"
                    else {}
                ),
                # Only runs we trigger: no scheduled catch-up run competing with the test's.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(self.heartbeat_timeout),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT)]),
            }
        )
        env.update(self.extra_env)
        return env

    # ----------------------------------------------------------------------- lifecycle
    def start(self) -> AirflowCluster:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({"admin": self.password}))
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        admin.dispose()
        self._run_cli("db", "migrate")
        if self.auth_manager == "fab":
            self.add_user("admin", self.password, "Admin")
            self._run_python("from customer_health.dashboard.auth import register_fab_roles; register_fab_roles()")
        for pool, slots in self.pools.items():
            self._run_cli("pools", "set", pool, str(slots), f"created by the test cluster {self.name}")
        self._spawn("api-server", "api-server", "--port", str(self.port), "--host", "127.0.0.1")
        self._spawn("scheduler", "scheduler")
        self._spawn("dag-processor", "dag-processor")
        for i in range(self.workers):
            self.start_worker(i)
        self._wait_for(lambda: self._get("/api/v2/monitor/health", auth=False).ok, 120, "api-server health")
        return self

    def add_user(self, username: str, password: str, *roles: str) -> None:
        """A FAB user with these roles (FAB's CLI, as an admin would); auth_manager="fab" only."""
        first, *more = roles
        self._run_cli(
            "users", "create", "--username", username, "--password", password, "--role", first,
            "--email", f"{username}@example.com", "--firstname", username, "--lastname", "Test",
        )  # fmt: skip
        for role in more:
            self._run_cli("users", "add-role", "--username", username, "--role", role)

    def token_for(self, username: str, password: str) -> str:
        """A JWT for ``username`` from the auth manager's token endpoint, as an API client gets one."""
        resp = requests.post(f"{self.base_url}/auth/token", json={"username": username, "password": password}, timeout=30)
        resp.raise_for_status()
        return resp.json()["access_token"]

    def start_worker(self, index: int) -> None:
        self._spawn(
            f"worker-{index}",
            "celery",
            "worker",
            "--celery-hostname",
            f"{self.name}-w{index}-{uuid.uuid4().hex[:4]}@%h",
            "--concurrency",
            "2",
            "--without-mingle",
            "--without-gossip",
            "--skip-serve-logs",
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run, as the REST API returns them (mapped ones included)."""
        return self.api(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 500}
        )["task_instances"]

    def wait_for_task_state(
        self, dag_id: str, run_id: str, task_prefix: str, state: str = "running", timeout: float = 300
    ) -> str:
        """Wait until a task whose id starts with ``task_prefix`` is in ``state``; its display key."""
        found: list[str] = []

        def hit() -> bool:
            found[:] = [k for k, v in self.task_states(dag_id, run_id).items() if k.startswith(task_prefix) and v == state]
            return bool(found)

        self._wait_for(hit, timeout, f"{task_prefix} to be {state} in {run_id}")
        return found[0]

    def kill_worker(self, index: int) -> None:
        """SIGKILL a worker and its task processes: a crashed machine, not a graceful stop."""
        proc = self.procs.pop(f"worker-{index}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": self.name}
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}"'))
        admin.dispose()
        try:
            # FLUSHDB must run on the same connection as SELECT: send both at once.
            payload = f"*2\r\n$6\r\nSELECT\r\n${len(str(self.redis_db))}\r\n{self.redis_db}\r\n*1\r\n$7\r\nFLUSHDB\r\n"
            with socket.create_connection(REDIS, timeout=5) as s:
                s.sendall(payload.encode())
                s.recv(1024)
        except OSError:
            pass

    def logs(self, name: str, lines: int = 60) -> str:
        path = self.home / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _run_cli(self, *args: str) -> None:
        exe = Path(sys.executable).with_name("airflow")
        proc = subprocess.run([str(exe), *args], env=self.env(), capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")

    def _run_python(self, code: str) -> None:
        proc = subprocess.run([sys.executable, "-c", code], env=self.env(), capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"python -c {code!r} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")

    def _spawn(self, name: str, *args: str) -> None:
        exe = Path(sys.executable).with_name("airflow")
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[name] = subprocess.Popen(
            [str(exe), *args], env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    # ----------------------------------------------------------------------- REST API
    def token(self) -> str:
        if self._token is None:
            self._token = self.token_for("admin", self.password)
        return self._token

    def _get(self, path: str, auth: bool = True, **kw: Any) -> requests.Response:
        try:
            headers = {"Authorization": f"Bearer {self.token()}"} if auth else {}
            return requests.get(f"{self.base_url}{path}", headers=headers, timeout=30, **kw)
        except requests.ConnectionError:
            resp = requests.Response()
            resp.status_code = 599
            return resp

    def api(self, method: str, path: str, **kw: Any) -> Any:
        resp = requests.request(
            method, f"{self.base_url}{path}", headers={"Authorization": f"Bearer {self.token()}"}, timeout=30, **kw
        )
        if not resp.ok:
            raise RuntimeError(f"{method} {path} -> {resp.status_code}: {resp.text[:500]}")
        return resp.json() if resp.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        self._wait_for(lambda: self._get(f"/api/v2/dags/{dag_id}").ok, timeout, f"DAG {dag_id} to be parsed")
        self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, logical_date: str, conf: dict | None = None) -> str:
        run = self.api(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": logical_date, "conf": conf or {}}
        )
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 500})
        return {
            ti["task_id"] + (f"[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else ""): ti["state"]
            for ti in tis["task_instances"]
        }

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 900) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            time.sleep(3)
        raise TimeoutError(
            f"run {run_id} of {dag_id} not finished after {timeout:.0f} s: {self.task_states(dag_id, run_id)}\n"
            f"scheduler log:\n{self.logs('scheduler')}"
        )

    def _wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.logs(name)}")
            time.sleep(1)
        raise TimeoutError(f"waited {timeout:.0f} s for {what}\napi-server log:\n{self.logs('api-server')}")
