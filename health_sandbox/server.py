"""Start and stop the whole sandbox: every external system on loopback, over one store.

``Sandbox.start(folder)`` serves the synthetic company found in ``folder`` (``company.db``,
``product.db``): Salesforce over HTTPS, Zendesk, Stripe, Slack and HubSpot over HTTP, and an
SMTP server. The endpoints are written to ``folder/endpoints.json`` so other processes
(the Airflow connections, the demo summary) know where everything is.

A company may have fewer systems: ``sandbox_meta['systems']`` (a JSON list, written by its
generator) names the ones it has, and only those are served. The self-serve company
(``self_serve.py``) has no Salesforce and no Zendesk, so neither is started, ``endpoints.json``
has no entry for them and no Airflow connection is made for them: they are not connected, as at
a company that does not use them, rather than connected and empty; its marketing runs on
HubSpot. A company without the key (the B2B company of ``company.py``) has every system but
HubSpot: its marketing runs on Salesforce Campaigns (the product's default campaign target), so
no ``health_hubspot`` connection is made for it. Tests of the HubSpot target serve
``hubspot_api`` over the same store themselves.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, insert, select

from health_sandbox.http import RunningServer, serve
from health_sandbox.store import sandbox_faults, sandbox_meta, store_engine
from health_sandbox.tls import ensure_certificate, server_context

# system -> (module with build_app(store, folder), served over TLS?)
HTTP_SYSTEMS: dict[str, tuple[str, bool]] = {
    "salesforce": ("health_sandbox.salesforce_api", True),
    "zendesk": ("health_sandbox.zendesk_api", False),
    "stripe": ("health_sandbox.stripe_api", False),
    "slack": ("health_sandbox.slack_api", False),
    "hubspot": ("health_sandbox.hubspot_api", False),
}

# Fixed ports for the long-running demo sandbox; tests pass ports=None to get free ones.
DEMO_PORTS: dict[str, int] = {
    "salesforce": 18443,
    "zendesk": 18480,
    "stripe": 18481,
    "slack": 18482,
    "hubspot": 18483,
    "smtp": 18025,
}

# ``python -m health_sandbox serve`` (what ``make demo`` starts) listens on DEMO_PORTS;
# CUSTOMER_HEALTH_SANDBOX_PORTS=free makes it pick free ports instead, so a second sandbox (a
# test's, another CUSTOMER_HEALTH_HOME's) can run beside a developer's demo sandbox. The ports
# chosen are in the sandbox folder's endpoints.json, which is what everything else reads.
SANDBOX_PORTS_ENV = "CUSTOMER_HEALTH_SANDBOX_PORTS"
ALL_SYSTEMS: tuple[str, ...] = (*HTTP_SYSTEMS, "smtp")
DEFAULT_SYSTEMS: tuple[str, ...] = tuple(s for s in ALL_SYSTEMS if s != "hubspot")  # a company without the key
SYSTEMS_META = "systems"  # sandbox_meta key: the JSON list of the systems a company has


def company_systems(store: Engine) -> tuple[str, ...]:
    """The systems the company in ``store`` has (``sandbox_meta['systems']``; DEFAULT_SYSTEMS when unset)."""
    with store.connect() as conn:
        value = conn.execute(
            select(sandbox_meta.c.value).where(sandbox_meta.c.key == SYSTEMS_META)
        ).scalar_one_or_none()
    if value is None:
        return DEFAULT_SYSTEMS
    named = json.loads(value)
    unknown = sorted(set(named) - set(ALL_SYSTEMS))
    if unknown:
        raise ValueError(
            f"sandbox_meta['{SYSTEMS_META}'] names unknown systems {unknown}; known: {list(ALL_SYSTEMS)}"
        )
    return tuple(s for s in ALL_SYSTEMS if s in named)


def serve_ports() -> dict[str, int] | None:
    """The ports a served sandbox listens on: DEMO_PORTS, or None (free ports) when asked."""
    choice = os.environ.get(SANDBOX_PORTS_ENV, "").strip().lower()
    if choice in ("", "demo"):
        return DEMO_PORTS
    if choice == "free":
        return None
    raise ValueError(f"{SANDBOX_PORTS_ENV}={choice!r}: expected 'demo' (the default, fixed ports) or 'free'")


@dataclass
class Sandbox:
    """A running sandbox: its folder, store engine, servers and endpoints."""

    folder: Path
    store: Engine
    servers: dict[str, RunningServer] = field(default_factory=dict)
    smtp: Any = None
    endpoints: dict[str, Any] = field(default_factory=dict)
    systems: tuple[str, ...] = DEFAULT_SYSTEMS

    @classmethod
    def start(cls, folder: Path, ports: dict[str, int] | None = None) -> Sandbox:
        """Serve every system of the company in ``folder``; ``ports=None`` picks free ports."""
        folder = Path(folder)
        store = store_engine(folder / "company.db")
        sb = cls(folder=folder, store=store, systems=company_systems(store))
        cert, _key = ensure_certificate(folder)
        tls = server_context(folder)
        for system, (module_name, use_tls) in HTTP_SYSTEMS.items():
            if system not in sb.systems:
                continue
            module = importlib.import_module(module_name)
            app = module.build_app(store, folder)
            port = (ports or {}).get(system, 0)
            sb.servers[system] = serve(app, port=port, tls=tls if use_tls else None)
        smtp: dict[str, Any] = {}
        if "smtp" in sb.systems:
            from health_sandbox.smtp_sink import start_smtp

            sb.smtp = start_smtp(store, port=(ports or {}).get("smtp", 0))
            smtp = {"smtp_host": "127.0.0.1", "smtp_port": sb.smtp.port}
        sb.endpoints = {
            system: running.base_url for system, running in sb.servers.items()
        } | smtp | {
            "ca_cert": str(cert),
            "product_db_url": f"sqlite:///{folder / 'product.db'}",
            "store_db": str(folder / "company.db"),
        }
        (folder / "endpoints.json").write_text(json.dumps(sb.endpoints, indent=2))
        return sb

    def stop(self) -> None:
        """Stop every server."""
        for running in self.servers.values():
            running.stop()
        if self.smtp is not None:
            self.smtp.stop()

    # -- faults, for tests and for trying the pipeline's resilience by hand -----------------
    def inject_fault(
        self,
        system: str,
        kind: str,
        *,
        path_regex: str = "",
        method: str = "*",
        times: int = 1,
        retry_after: float | None = None,
        skip: int = 0,
    ) -> None:
        """Arm a fault: the next ``times`` matching requests (after ``skip``) get ``kind``.

        Kinds: ``rate_limit`` (429 + Retry-After), ``server_error`` (503), ``timeout`` (the
        server hangs ``retry_after`` seconds), ``expired_session`` (401), ``malformed`` (a record
        with a broken field in the next page), ``duplicate_page`` (the next page is served twice).
        """
        with self.store.begin() as conn:
            conn.execute(
                insert(sandbox_faults).values(
                    system=system,
                    kind=kind,
                    path_regex=path_regex,
                    method=method,
                    remaining=times,
                    retry_after=retry_after,
                    skip=skip,
                )
            )

    def clear_faults(self) -> None:
        """Disarm every fault."""
        with self.store.begin() as conn:
            conn.execute(delete(sandbox_faults))
