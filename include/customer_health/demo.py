"""``make demo``: the whole product on the embedded defaults, from nothing, in one command.

Steps (each reuses what already exists, so a second run is fast):
1. migrate the embedded warehouse (``.local/warehouse.db``);
2. generate the synthetic company into ``.local/sandbox`` (2,000 accounts, two years);
3. start the sandbox in the background (Salesforce, Zendesk, Stripe, Slack, SMTP, marketing);
4. initialise Airflow's metadata DB in ``.local/airflow`` and register the connections;
5. build a year of score history (``customer_health_rebuild``), unless it exists;
6. run ``customer_health_daily`` for today with ``airflow dags test``;
7. print a summary a person can read.
"""

from __future__ import annotations

import argparse
import json
import os
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
    from customer_health.sandbox.__main__ import serve_background
    from customer_health.sandbox.company import CompanySpec, generate_company
    from customer_health.sandbox.connections import sandbox_connections
    from customer_health.warehouse.engine import get_engine
    from customer_health.warehouse.migrate import upgrade_to_head

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

    t0 = _step("sandbox: serving Salesforce, Zendesk, Stripe, Slack, SMTP and the marketing tool on 127.0.0.1")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--history-days", type=int, default=365, help="score history to rebuild before today")
    parser.add_argument("--prepare-only", action="store_true", help="set up but do not run the DAG")
    parser.add_argument("--skip-audit", action="store_true", help="do not audit and recalibrate the model")
    args = parser.parse_args(argv)
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
        audit(["--recalibrate", "--warehouse-url", settings.default_warehouse_url()])
        _done(t0)
    print(
        "\nNext: `make airflow` opens the Airflow UI (DAGs, runs, and the Customer health dashboard under Browse)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
