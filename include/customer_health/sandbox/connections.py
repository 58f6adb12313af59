"""Airflow connections that point the pipeline at the sandbox.

A real installation defines the same connection ids (``customer_health.settings``) against
the real Salesforce, Zendesk, Stripe, product database, Slack, SMTP server and marketing tool;
nothing else changes. The sandbox's credentials below are throwaway values the loopback
servers accept; real secrets live only in Airflow connections (or a secrets backend).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from customer_health import settings

SANDBOX_SF_CLIENT_ID = "sandbox-client-id"
SANDBOX_SF_CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105 - accepted only by the loopback sandbox
SANDBOX_ZENDESK_EMAIL = "pipeline@example.com"
SANDBOX_ZENDESK_TOKEN = "sandbox-zendesk-token"  # noqa: S105
SANDBOX_STRIPE_KEY = "sk_test_sandbox"
SANDBOX_MARKETING_TOKEN = "sandbox-marketing-token"  # noqa: S105
SANDBOX_SLACK_WEBHOOK_PATH = "T00000000/B00000000/sandboxwebhooktoken"


def sandbox_connections(endpoints: dict[str, Any], warehouse_url: str | None = None) -> dict[str, dict[str, Any]]:
    """Connection definitions (Airflow's JSON import format) for a running sandbox."""
    sf = endpoints["salesforce"]
    zd = urlsplit(endpoints["zendesk"])
    slack = urlsplit(endpoints["slack"])
    conns: dict[str, dict[str, Any]] = {
        settings.SALESFORCE_CONN_ID: {
            "conn_type": "salesforce",
            "login": "",
            "extra": {
                "token_url": f"{sf}/services/oauth2/token",
                "instance_url": sf,
                "consumer_key": SANDBOX_SF_CLIENT_ID,
                "consumer_secret": SANDBOX_SF_CLIENT_SECRET,
                "ca_cert": endpoints["ca_cert"],
                "version": "59.0",
            },
        },
        settings.ZENDESK_CONN_ID: {
            "conn_type": "zendesk",
            "host": zd.netloc,
            "login": SANDBOX_ZENDESK_EMAIL,
            "password": SANDBOX_ZENDESK_TOKEN,
            "extra": {"use_token": True, "scheme": zd.scheme, "netloc": zd.netloc},
        },
        settings.STRIPE_CONN_ID: {
            "conn_type": "stripe",
            "password": SANDBOX_STRIPE_KEY,
            "extra": {"api_base": endpoints["stripe"]},
        },
        settings.PRODUCT_DB_CONN_ID: {
            "conn_type": "sqlite",
            "host": endpoints["product_db_url"].split("///", 1)[1],
        },
        settings.SLACK_CONN_ID: {
            "conn_type": "slackwebhook",
            "host": f"{slack.scheme}://{slack.netloc}/services",
            "password": SANDBOX_SLACK_WEBHOOK_PATH,
        },
        settings.SMTP_CONN_ID: {
            "conn_type": "smtp",
            "host": endpoints["smtp_host"],
            "port": endpoints["smtp_port"],
            "extra": {
                "disable_tls": True,
                "disable_ssl": True,
                "from_email": "customer-health@example.com",
                "timeout": 10,
                "retry_limit": 3,
            },
        },
        settings.MARKETING_CONN_ID: {
            "conn_type": "http",
            "host": endpoints["marketing"],
            "password": SANDBOX_MARKETING_TOKEN,
        },
    }
    if warehouse_url:
        conns[settings.WAREHOUSE_CONN_ID] = warehouse_connection(warehouse_url)
    return conns


def warehouse_connection(url: str) -> dict[str, Any]:
    """The ``health_warehouse`` connection for a SQLAlchemy URL (sqlite or postgresql)."""
    if url.startswith("sqlite"):
        return {"conn_type": "sqlite", "host": url.split("///", 1)[1]}
    parts = urlsplit(url.replace("postgresql+psycopg2", "postgresql"))
    return {
        "conn_type": "postgres",
        "host": parts.hostname,
        "port": parts.port or 5432,
        "login": parts.username or "",
        "password": parts.password or "",
        "schema": parts.path.lstrip("/"),
    }


def as_environment(conns: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The same connections as ``AIRFLOW_CONN_<ID>`` environment variables (JSON form)."""
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn) for conn_id, conn in conns.items()}
