"""``make demo-self-serve``: the whole product on the self-serve company, a business without a CRM.

``python -m health_sandbox.demo --company self-serve`` (what the make target runs) does what
``make demo`` does (``health_sandbox/demo.py``, whose steps it reuses) for the second synthetic
company (``health_sandbox/self_serve.py``: product events and monthly card billing, no
Salesforce, no Zendesk), in a home of its own so the two demos never share a warehouse, a
sandbox or Airflow's connections:

1. ``.local/self-serve/``: the warehouse, the sandbox folder, Airflow's home, and a source
   mapping with ``identity.anchor: stripe`` (the Stripe customers are the accounts; README
   "A company without a CRM"), named by ``CUSTOMER_HEALTH_SOURCES`` for every step below;
2. migrate the warehouse; generate the company (2,000 accounts, two years, ending today);
3. start its sandbox: Stripe, Slack, SMTP and the marketing tool, and the product database -
   Salesforce and Zendesk are not served, and their Airflow connections are not defined; on
   free ports unless ``CUSTOMER_HEALTH_SANDBOX_PORTS`` says otherwise, so it runs beside
   ``make demo``'s sandbox;
4. Airflow's metadata DB and the connections of what the company has;
5. a year of score history (``customer_health_daily`` for yesterday without dispatch, then
   ``customer_health_rebuild``), unless it exists;
6. ``customer_health_daily`` for today; the summary; the model audit against the company's
   real churn (90-day horizon) with the recalibrated proposal and the plain-LR baseline, last.

Today's run dispatches only when every marketing programme of the shipped action rules
(``config/actions_v1.yaml``) selects a list in the company's HubSpot: the vendor's lists are its
own (newsletter, team-plan offer, advocacy), and the health segments' lists ("Health - ...") and
an "Upsell" list do not exist there. Until someone creates them or maps the programmes, the run
records its decisions without sending (``dispatch: false``) and the demo names what is missing,
rather than failing on the first delivery.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

from customer_health import settings

HOME_NAME = "self-serve"
ANCHOR = "stripe"


def self_serve_home() -> Path:
    """The self-serve demo's own folder, inside the project's local state."""
    return settings.local_dir() / HOME_NAME


def use_self_serve_home() -> Path:
    """Point this process (and every Airflow command it starts) at the self-serve home: local
    state, warehouse, Airflow home and the Stripe-anchored source mapping. Returns the home."""
    from customer_health.sources.mapping import SOURCES_FILE_ENV
    from health_sandbox.server import SANDBOX_PORTS_ENV

    home = self_serve_home()
    home.mkdir(parents=True, exist_ok=True)
    sources = home / "sources.yaml"
    sources.write_text(
        "# The self-serve company has no CRM: its accounts are the Stripe customers.\n"
        f"version: 1\nidentity:\n  anchor: {ANCHOR}\n"
    )
    os.environ["CUSTOMER_HEALTH_HOME"] = str(home)
    os.environ["AIRFLOW_HOME"] = str(home / "airflow")
    os.environ[SOURCES_FILE_ENV] = str(sources)
    os.environ[settings.WAREHOUSE_URL_ENV] = settings.default_warehouse_url()
    os.environ.setdefault(SANDBOX_PORTS_ENV, "free")  # beside `make demo`'s sandbox on the fixed ports
    return home


def prepare(accounts: int, days: int, seed: int) -> dict:
    """Steps 1-4: home, warehouse, company, sandbox, Airflow metadata and connections."""
    from customer_health.warehouse.engine import get_engine
    from customer_health.warehouse.migrate import upgrade_to_head
    from health_sandbox.__main__ import serve_background
    from health_sandbox.connections import sandbox_connections
    from health_sandbox.demo import _done, _step, airflow, airflow_env
    from health_sandbox.self_serve import SelfServeSpec, generate_self_serve

    home = use_self_serve_home()
    t0 = _step(f"self-serve home {home}: warehouse {settings.default_warehouse_url()}, identity anchored on {ANCHOR}")
    upgrade_to_head(get_engine(settings.default_warehouse_url()))
    _done(t0)

    t0 = _step(f"self-serve company (Pinwheel): {accounts} accounts, {days} days of history (seed {seed})")
    spec = SelfServeSpec(accounts=accounts, days=days, seed=seed, end_date=datetime.now(UTC).date())
    summary = generate_self_serve(settings.sandbox_dir(), spec)
    _done(t0, summary.describe().splitlines()[0])

    t0 = _step("sandbox: serving Stripe, Slack, SMTP and the marketing tool on 127.0.0.1 (no Salesforce, no Zendesk)")
    endpoints = serve_background(settings.sandbox_dir())
    _done(t0, ", ".join(f"{k} {v}" for k, v in endpoints.items() if str(v).startswith("http")))

    airflow_home = Path(airflow_env()["AIRFLOW_HOME"])
    airflow_home.mkdir(parents=True, exist_ok=True)
    t0 = _step(f"airflow: metadata DB in {airflow_home}")
    log = home / "airflow-setup.log"
    airflow("db", "migrate", log=log)
    connections = sandbox_connections(endpoints, settings.default_warehouse_url())
    conns_file = settings.sandbox_dir() / "connections.json"
    conns_file.write_text(json.dumps(connections, indent=2))
    conns_file.chmod(0o600)
    airflow("connections", "import", "--overwrite", str(conns_file), log=log)
    for conn_id in (settings.SALESFORCE_CONN_ID, settings.ZENDESK_CONN_ID):
        if conn_id not in connections:  # never connected here; gone if an earlier setup defined it
            airflow("connections", "delete", conn_id, log=log, check=False)
    airflow("pools", "set", settings.SCORING_POOL, "1", settings.SCORING_POOL_DESCRIPTION, log=log)
    _done(t0, "connections registered: " + ", ".join(sorted(connections)))
    return endpoints


def missing_programmes(folder: Path) -> list[str]:
    """The programme groups of the shipped action rules that select no list in the sandbox's
    HubSpot (exact ``name`` or ``name_contains``, as ``actions.campaign_targets`` selects)."""
    from sqlalchemy import select

    from customer_health.actions.config import load_action_rules
    from health_sandbox.store import hs_list, store_engine

    with store_engine(folder / "company.db").connect() as conn:
        names = [n for n in conn.execute(select(hs_list.c.name)).scalars() if n]
    missing = []
    for group, selector in sorted(load_action_rules().programmes.items()):
        if selector.name is not None:
            found = any(n.lower() == selector.name.lower() for n in names)
        else:
            found = any((selector.name_contains or "").lower() in n.lower() for n in names)
        if not found:
            missing.append(f"{group} ({selector.name or 'a name containing ' + repr(selector.name_contains)})")
    return missing


def run_today(today: date) -> None:
    """Step 6: the daily DAG for today, dispatching only when every programme has its list."""
    from datetime import timedelta

    from health_sandbox.demo import _done, _step, airflow

    missing = missing_programmes(settings.sandbox_dir())
    conf = {} if not missing else {"dispatch": False}
    log = settings.local_dir() / f"demo-run-{today.isoformat()}.log"
    log.unlink(missing_ok=True)
    if missing:
        print(
            "==> the company's HubSpot has no list for these programmes of config/actions_v1.yaml: "
            + "; ".join(missing)
            + ". Today's run decides and records actions without sending them (dispatch: false); create the "
            "lists in HubSpot or map `programmes` to the company's own lists to send them.",
            flush=True,
        )
    t0 = _step(f"customer_health_daily for {today} (log: {log})")
    airflow("dags", "test", "customer_health_daily", (today + timedelta(days=1)).isoformat(), "-c", json.dumps(conf),
            log=log)
    _done(t0)


def main(accounts: int, days: int, seed: int, history_days: int, *, prepare_only: bool = False,
         skip_audit: bool = False) -> int:  # fmt: skip
    """The self-serve demo (``health_sandbox.demo --company self-serve``)."""
    from health_sandbox.demo import _done, _step, build_history

    prepare(accounts, days, seed)
    if prepare_only:
        return 0
    today = datetime.now(UTC).date()
    if history_days > 0:
        build_history(today, history_days)
    run_today(today)
    from customer_health.reporting import demo_summary
    from customer_health.warehouse.engine import get_engine

    print()
    print(demo_summary(get_engine(settings.default_warehouse_url()), today))
    if history_days >= 180 and not skip_audit:
        from customer_health.validation.audit import main as audit

        print()
        t0 = _step("model audit of the self-serve company against its real churn, and a recalibrated proposal")
        code = audit(["--recalibrate", "--warehouse-url", settings.default_warehouse_url()])
        if code:
            return code
        _done(t0)
    print(f"\nEverything of this demo is in {settings.local_dir()} (`make demo` keeps the B2B company in its parent).")
    return 0
