"""Nothing at import (DESIGN.md decision 14): importing the dashboard plugin does no I/O.

Airflow imports ``plugins/`` inside its own work (the dag-processor's DAG sync, every
``airflow`` command): a plugin that looks a connection up or touches the metadata DB then runs
inside Airflow's ORM session and broke ``make demo`` on every fresh clone (issue #15:
``DetachedInstanceError ... 'schedule_asset_references'``). The import runs in a fresh
interpreter, with Airflow's two connection lookups, every SQLAlchemy connection and statement,
and every network connection recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.demo.harness import ROOT, fresh_env

PLUGIN = ROOT / "plugins" / "customer_health_dashboard.py"

PROBE = r"""
import importlib.util, json, socket, sys

import airflow.models.connection
import airflow.sdk
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

calls = []


def refuse(what):
    def lookup(*args, **kwargs):
        calls.append(f"{what}{args[1:]!r}")
        raise RuntimeError(f"{what} at import")
    return classmethod(lookup)


airflow.models.connection.Connection.get_connection_from_secrets = refuse("Connection.get_connection_from_secrets")
airflow.sdk.BaseHook.get_connection = refuse("BaseHook.get_connection")
event.listen(Pool, "connect", lambda dbapi_conn, record: calls.append("database connection opened"))
event.listen(Engine, "before_cursor_execute", lambda conn, cursor, sql, *a: calls.append(f"SQL: {sql[:80]}"))
_connect = socket.socket.connect


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        calls.append(f"network connection to {address!r}")
    return _connect(self, address)


socket.socket.connect = connect

spec = importlib.util.spec_from_file_location("customer_health_dashboard", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
apps = module.CustomerHealthDashboardPlugin.fastapi_apps
print(json.dumps({"calls": calls, "apps": [a["url_prefix"] for a in apps]}))
"""


def test_importing_the_dashboard_plugin_looks_nothing_up(tmp_path):
    env = fresh_env(tmp_path, AIRFLOW__CORE__PLUGINS_FOLDER=str(PLUGIN.parent))
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(PLUGIN)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, f"importing the plugin failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["apps"] == ["/customer-health"], result
    assert result["calls"] == [], (
        "importing plugins/customer_health_dashboard.py did I/O (DESIGN.md 14, nothing at import): "
        + "; ".join(result["calls"])
    )
