"""``make demo``: the whole product on the embedded defaults, from nothing, in one command.

Steps (each reuses what already exists, so a second run is fast):
1. migrate the embedded warehouse (``.local/warehouse.db``);
2. generate the synthetic company into ``.local/sandbox`` (2,000 accounts, two years);
3. start the sandbox in the background (Salesforce with its Campaigns, Zendesk, Stripe, Slack, SMTP);
4. initialise Airflow's metadata DB in ``.local/airflow`` and register the connections;
5. build a year of score history (``customer_health_rebuild``), unless it exists;
6. run ``customer_health_daily`` for today with ``airflow dags test``;
7. print a summary a person can read.

``--airflow`` (what ``make airflow`` runs) does steps 1-4, then serves the Airflow UI with
``airflow standalone`` until Ctrl-C or SIGTERM (see ``serve_airflow``).
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from customer_health import settings


def _step(msg: str) -> float:
    print(f"==> {msg}", flush=True)
    return time.monotonic()


def _done(t0: float, extra: str = "") -> None:
    print(f"    done in {time.monotonic() - t0:.1f} s{(' — ' + extra) if extra else ''}", flush=True)


def airflow_env() -> dict[str, str]:
    """The environment Airflow commands run with (project folders, no examples)."""
    env = os.environ.copy()
    env.setdefault("AIRFLOW_HOME", str(settings.local_dir() / "airflow"))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(settings.PROJECT_ROOT / "dags"))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(settings.PROJECT_ROOT / "plugins"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    paths = [str(settings.PROJECT_ROOT / "include"), str(settings.PROJECT_ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def airflow(*args: str, log: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the venv's ``airflow`` CLI with the project environment."""
    exe = Path(sys.executable).with_name("airflow")
    out = open(log, "ab") if log else subprocess.PIPE  # noqa: SIM115
    try:
        proc = subprocess.run([str(exe), *args], env=airflow_env(), stdout=out, stderr=subprocess.STDOUT, check=False)
    finally:
        if log:
            out.close()
    if check and proc.returncode != 0:
        tail = "" if log is None else "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise SystemExit(f"`airflow {' '.join(args)}` failed (exit {proc.returncode}).\n{tail}\nFull log: {log}")
    return proc


def prepare(accounts: int, days: int, seed: int) -> dict:
    """Steps 1-4: warehouse, company, sandbox, Airflow metadata and connections."""
    from customer_health.warehouse.engine import get_engine
    from customer_health.warehouse.migrate import upgrade_to_head
    from health_sandbox.__main__ import serve_background
    from health_sandbox.company import CompanySpec, generate_company
    from health_sandbox.connections import sandbox_connections

    local = settings.local_dir()
    local.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(settings.WAREHOUSE_URL_ENV, settings.default_warehouse_url())

    t0 = _step(f"warehouse: migrating {settings.default_warehouse_url()}")
    upgrade_to_head(get_engine(settings.default_warehouse_url()))
    _done(t0)

    t0 = _step(f"synthetic company: {accounts} accounts, {days} days of history (seed {seed})")
    summary = generate_company(
        settings.sandbox_dir(), CompanySpec(accounts=accounts, days=days, seed=seed, end_date=datetime.now(UTC).date())
    )
    _done(t0, summary.describe().splitlines()[0] if hasattr(summary, "describe") else "")

    t0 = _step("sandbox: serving Salesforce (with its Campaigns), Zendesk, Stripe, Slack and SMTP on 127.0.0.1")
    endpoints = serve_background(settings.sandbox_dir())
    _done(t0, ", ".join(f"{k} {v}" for k, v in endpoints.items() if str(v).startswith("http")))

    airflow_home = Path(airflow_env()["AIRFLOW_HOME"])
    airflow_home.mkdir(parents=True, exist_ok=True)
    t0 = _step(f"airflow: metadata DB in {airflow_home}")
    airflow("db", "migrate", log=local / "airflow-setup.log")
    conns_file = local / "sandbox" / "connections.json"
    conns_file.write_text(json.dumps(sandbox_connections(endpoints, settings.default_warehouse_url()), indent=2))
    conns_file.chmod(0o600)
    airflow("connections", "import", "--overwrite", str(conns_file), log=local / "airflow-setup.log")
    airflow("pools", "set", settings.SCORING_POOL, "1", settings.SCORING_POOL_DESCRIPTION, log=local / "airflow-setup.log")
    _done(t0, "connections registered: " + ", ".join(settings.ALL_CONN_IDS))
    return endpoints


def run_daily(as_of: date) -> None:
    """Step 5: the daily DAG for ``as_of``.

    The run whose data interval is [as_of, as_of + 1 day): a manual run's interval ends at its
    logical date, so the logical date is the day after ``as_of``.
    """
    log = settings.local_dir() / f"demo-run-{as_of.isoformat()}.log"
    log.unlink(missing_ok=True)
    t0 = _step(f"customer_health_daily for {as_of} (log: {log})")
    airflow("dags", "test", "customer_health_daily", (as_of + timedelta(days=1)).isoformat(), log=log)
    _done(t0)


def has_history(as_of: date) -> bool:
    """True when the warehouse already holds scores for ``as_of`` (a previous demo built them)."""
    from sqlalchemy import func, select

    from customer_health.warehouse.engine import get_engine
    from customer_health.warehouse.schema import health_scores

    with get_engine(settings.default_warehouse_url()).connect() as conn:
        n = conn.execute(
            select(func.count()).select_from(health_scores).where(health_scores.c.as_of_date == as_of)
        ).scalar_one()
    return n > 0


def build_history(today: date, days: int) -> None:
    """Give the demo a year of score history before today's run.

    The daily DAG runs once for yesterday without dispatching (it extracts every source and
    records yesterday's decisions as suppressed: history never sends anything), then
    ``customer_health_rebuild`` recomputes the ``days`` days up to yesterday in bulk. Today's
    run then sees real zone transitions, trends and 90-day Healthy streaks.
    """
    yesterday = today - timedelta(days=1)
    if has_history(yesterday) and has_history(today - timedelta(days=days)):
        print(f"==> score history up to {yesterday}: already built", flush=True)
        return
    log = settings.local_dir() / "demo-history.log"
    log.unlink(missing_ok=True)
    t0 = _step(f"extract everything with the daily DAG for {yesterday} (no dispatch; log: {log})")
    airflow("dags", "test", "customer_health_daily", today.isoformat(), "-c", json.dumps({"dispatch": False}), log=log)
    _done(t0)
    start = today - timedelta(days=days)
    t0 = _step(f"customer_health_rebuild: {days} days of score history, {start} .. {yesterday} (log: {log})")
    # `dags test` runs one task at a time: one date block, so no block re-derives earlier scores.
    conf = {"from_date": start.isoformat(), "to_date": yesterday.isoformat(), "blocks": 1}
    airflow("dags", "test", "customer_health_rebuild", today.isoformat(), "-c", json.dumps(conf), log=log)
    _done(t0)


# --------------------------------------------------------------------------- make airflow
UI_HOST = "127.0.0.1"  # the development UI listens on loopback unless AIRFLOW__API__HOST says otherwise
UI_PORT = "8080"
STOP_GRACE_SECONDS = 30.0  # after Ctrl-C, how long the components get to stop before SIGTERM, then SIGKILL


class _Stopped(Exception):
    """Ctrl-C (SIGINT), SIGTERM or SIGHUP arrived."""


class _StopSignals:
    """Turns the first stop signal into ``_Stopped``; later ones (make forwards its own SIGTERM,
    a second Ctrl-C) are no-ops, so they cannot cut the clean-up short."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.stopping = False
        # Installing a handler also undoes an inherited SIG_IGN (a shell's background job starts
        # with SIGINT ignored): the children exec'd below then get SIGINT's default back.
        for sig in self.SIGNALS:
            signal.signal(sig, self)

    def __call__(self, signum: int, _frame: object) -> None:
        if not self.stopping:
            self.stopping = True
            raise _Stopped(signal.Signals(signum).name)


def airflow_setting(env: dict[str, str], section: str, key: str, airflow_default: str = "") -> str | None:
    """A value the user chose for ``[section] key``: its environment variable, else ``airflow.cfg``.

    Airflow writes its defaults into a new ``airflow.cfg``, so a value there equal to
    ``airflow_default`` is not a choice (to insist on Airflow's default, use the variable).
    """
    value = env.get(f"AIRFLOW__{section.upper()}__{key.upper()}", "").strip()
    if value:
        return value
    cfg = Path(env.get("AIRFLOW_CONFIG") or Path(env["AIRFLOW_HOME"]) / "airflow.cfg")
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(cfg)
    except configparser.Error:
        return None
    value = parser.get(section, key, fallback="").strip()
    return value if value and value != airflow_default else None


def standalone_env() -> dict[str, str]:
    """``airflow_env()`` for ``airflow standalone``, which starts its components as ``airflow``
    from ``PATH``: this interpreter's bin directory (the venv's) first on ``PATH``; the api-server
    on 127.0.0.1 and port 8080 unless ``AIRFLOW__API__HOST`` / ``AIRFLOW__API__PORT`` (or
    ``airflow.cfg``) say otherwise; and the tasks' execution API at that address.
    """
    env = airflow_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), *filter(None, [env.get("PATH")])])
    host = airflow_setting(env, "api", "host", airflow_default="0.0.0.0") or UI_HOST
    port = airflow_setting(env, "api", "port") or UI_PORT
    env["AIRFLOW__API__HOST"], env["AIRFLOW__API__PORT"] = host, port
    # Without a full [api] base_url, tasks call the execution API at http://localhost:8080: follow
    # the host and port chosen here.
    base_url = airflow_setting(env, "api", "base_url") or "/"
    chosen = [airflow_setting(env, section, "execution_api_server_url") for section in ("core", "workers")]
    if not any(chosen) and base_url.startswith("/"):
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"{ui_url(env)}/execution/"
    return env


def ui_url(env: dict[str, str]) -> str:
    """Where a browser on this machine reaches the api-server started with ``env``."""
    base = airflow_setting(env, "api", "base_url")
    if base and not base.startswith("/"):
        return base.rstrip("/")
    host = env.get("AIRFLOW__API__HOST") or UI_HOST
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{env.get('AIRFLOW__API__PORT') or UI_PORT}{base or ''}".rstrip("/")


def _login_hint(env: dict[str, str]) -> str:
    if (airflow_setting(env, "core", "simple_auth_manager_all_admins", "False") or "").lower() == "true":
        return "no login needed (simple_auth_manager_all_admins)"
    users = airflow_setting(env, "core", "simple_auth_manager_users", "admin:admin") or "admin:admin"
    if users != "admin:admin":
        return f"users from [core] simple_auth_manager_users ({users}); passwords as you set them"
    passwords = airflow_setting(env, "core", "simple_auth_manager_passwords_file") or str(
        Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    )
    return f"user admin, password in {passwords} (generated at the first start)"


def _track(root: int, seen: dict[int, float]) -> None:
    """Add the live descendants of ``root`` to ``seen`` (pid -> create time)."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(root).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                seen.setdefault(child.pid, child.create_time())


def _alive(seen: dict[int, float]) -> list[int]:
    """The processes of ``seen`` still running (same pid and start time, not a zombie)."""
    import psutil

    alive = []
    for pid, created in seen.items():
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
    return alive


def stop_process_tree(proc: subprocess.Popen, seen: dict[int, float], grace: float = STOP_GRACE_SECONDS) -> None:
    """Stop ``proc`` (``airflow standalone``, a process-group leader) and every process it started.

    SIGINT to the leader first: standalone then stops each component with SIGTERM, and they shut
    down cleanly (a component that gets SIGINT and SIGTERM at once may hang). After ``grace``
    seconds, SIGTERM to the whole group and to every process seen that left it (task processes
    get groups of their own); SIGKILL ten seconds later.
    """
    _track(proc.pid, seen)
    stages = ((signal.SIGINT, grace), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0))
    for sig, wait in stages:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if sig == signal.SIGINT:
                os.kill(proc.pid, sig)
            else:
                os.killpg(proc.pid, sig)
        if sig != signal.SIGINT:
            for pid in _alive(seen):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _track(proc.pid, seen)
            if proc.poll() is not None and not _alive(seen):
                return
            time.sleep(0.2)
        print(f"==> still running {wait:.0f} s after {sig.name}: {_names(proc, seen)}", flush=True)
    proc.poll()


def _names(proc: subprocess.Popen, seen: dict[int, float]) -> str:
    """``"airflow scheduler (pid 12), ..."`` for the processes still running."""
    import psutil

    alive = ([proc.pid] if proc.poll() is None else []) + _alive(seen)
    names = []
    for pid in dict.fromkeys(alive):
        with contextlib.suppress(psutil.Error):
            names.append(f"{' '.join(psutil.Process(pid).cmdline()[1:3])[:60]} (pid {pid})")
    return ", ".join(names) or "none"


def serve_airflow(accounts: int, days: int, seed: int) -> int:
    """``make airflow``: prepare (as ``--prepare-only``), then ``airflow standalone`` until stopped.

    Ctrl-C, SIGTERM or SIGHUP stop every process it started: the standalone command's process
    group, the task processes that left it, and the sandbox if this command started it.
    """
    from health_sandbox.__main__ import running_endpoints
    from health_sandbox.__main__ import stop as stop_sandbox

    stop_signals = _StopSignals()
    started_sandbox = running_endpoints(settings.sandbox_dir()) is None
    proc: subprocess.Popen | None = None
    seen: dict[int, float] = {}
    try:
        prepare(accounts, days, seed)
        env = standalone_env()
        url = ui_url(env)
        print(
            f"\nAirflow UI: {url}/  (Customer health: {url}/customer-health/, or Browse -> Customer health)\n"
            f"Login: {_login_hint(env)}\n"
            f"Stop with Ctrl-C.{' The sandbox stops with it.' if started_sandbox else ''}\n",
            flush=True,
        )
        exe = Path(sys.executable).with_name("airflow")
        proc = subprocess.Popen([str(exe), "standalone"], env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        while proc.poll() is None:
            _track(proc.pid, seen)
            time.sleep(1.0)
        print(f"airflow standalone exited (code {proc.returncode})", file=sys.stderr, flush=True)
        return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    except (KeyboardInterrupt, _Stopped):
        print("\n==> stopping Airflow", flush=True)
        return 0
    finally:
        stop_signals.stopping = True
        if proc is not None:
            stop_process_tree(proc, seen)
        if started_sandbox and stop_sandbox(settings.sandbox_dir()):
            print("==> sandbox stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--history-days", type=int, default=365, help="score history to rebuild before today")
    parser.add_argument("--prepare-only", action="store_true", help="set up but do not run the DAG")
    parser.add_argument("--skip-audit", action="store_true", help="do not audit and recalibrate the model")
    parser.add_argument(
        "--airflow", action="store_true", help="set up, then serve the Airflow UI (airflow standalone) until Ctrl-C"
    )
    parser.add_argument(
        "--company", choices=("b2b", "self-serve"), default="b2b",
        help="b2b: the default company (CRM, help desk, contracts); self-serve: the company without a CRM "
        "(health_sandbox/demo_self_serve.py, in .local/self-serve)",
    )
    args = parser.parse_args(argv)
    if args.company == "self-serve":
        if args.airflow:
            parser.error("--airflow serves the default company's demo; run the self-serve demo without it")
        from health_sandbox.demo_self_serve import main as self_serve

        return self_serve(args.accounts, args.days, args.seed, args.history_days,
                          prepare_only=args.prepare_only, skip_audit=args.skip_audit)
    if args.airflow:
        return serve_airflow(args.accounts, args.days, args.seed)
    prepare(args.accounts, args.days, args.seed)
    if args.prepare_only:
        return 0
    today = datetime.now(UTC).date()
    if args.history_days > 0:
        build_history(today, args.history_days)
    run_daily(today)
    from customer_health.reporting import demo_summary
    from customer_health.warehouse.engine import get_engine

    print()
    print(demo_summary(get_engine(settings.default_warehouse_url()), today))
    if args.history_days >= 180 and not args.skip_audit:
        from customer_health.validation.audit import main as audit

        print()
        t0 = _step("model audit against real churn, and a recalibrated proposal (python -m customer_health.validation.audit --recalibrate)")
        code = audit(["--recalibrate", "--warehouse-url", settings.default_warehouse_url()])
        if code:
            return code
        _done(t0)
    print(
        "\nNext: `make airflow` opens the Airflow UI (DAGs, runs, and the Customer health dashboard under Browse)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
