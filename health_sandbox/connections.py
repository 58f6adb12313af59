"""Airflow connections that point the pipeline at the sandbox.

A real installation defines the same connection ids (``customer_health.settings``) against
the real Salesforce, Zendesk, Stripe, product database, Slack and SMTP server (and, to act on
HubSpot lists instead of Salesforce Campaigns, HubSpot); nothing else changes. The sandbox's credentials below are throwaway values the loopback
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
SANDBOX_HUBSPOT_TOKEN = "pat-na1-sandbox-hubspot-token"  # noqa: S105 - a private app token's shape
SANDBOX_SLACK_WEBHOOK_PATH = "T00000000/B00000000/sandboxwebhooktoken"


def sandbox_connections(endpoints: dict[str, Any], warehouse_url: str | None = None) -> dict[str, dict[str, Any]]:
    """Connection definitions (Airflow's JSON import format) for a running sandbox.

    Only the systems the sandbox serves get a connection: a company without Salesforce or
    Zendesk (the self-serve company) has no ``health_salesforce`` or ``health_zendesk``
    connection at all, as at a real company that does not use them.
    """
    conns = {
        conn_id: conn
        for conn_id, conn in _all_connections(endpoints).items()
        if _SERVED_BY[conn_id] in endpoints
    }
    if warehouse_url:
        conns[settings.WAREHOUSE_CONN_ID] = warehouse_connection(warehouse_url)
    return conns


# The endpoints.json key each connection needs.
_SERVED_BY = {
    settings.SALESFORCE_CONN_ID: "salesforce",
    settings.ZENDESK_CONN_ID: "zendesk",
    settings.STRIPE_CONN_ID: "stripe",
    settings.PRODUCT_DB_CONN_ID: "product_db_url",
    settings.SLACK_CONN_ID: "slack",
    settings.SMTP_CONN_ID: "smtp_host",
    settings.HUBSPOT_CONN_ID: "hubspot",
}


def _all_connections(endpoints: dict[str, Any]) -> dict[str, dict[str, Any]]:
    sf = endpoints.get("salesforce", "")
    zd = urlsplit(endpoints.get("zendesk", ""))
    slack = urlsplit(endpoints.get("slack", ""))
    return {
        settings.SALESFORCE_CONN_ID: {
            "conn_type": "salesforce",
            "login": "",
            "extra": {
                "token_url": f"{sf}/services/oauth2/token",
                "instance_url": sf,
                "consumer_key": SANDBOX_SF_CLIENT_ID,
                "consumer_secret": SANDBOX_SF_CLIENT_SECRET,
                "ca_cert": endpoints.get("ca_cert"),
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
            "extra": {"api_base": endpoints.get("stripe")},
        },
        settings.PRODUCT_DB_CONN_ID: {
            "conn_type": "sqlite",
            "host": endpoints.get("product_db_url", "///").split("///", 1)[1],
        },
        settings.SLACK_CONN_ID: {
            "conn_type": "slackwebhook",
            "host": f"{slack.scheme}://{slack.netloc}/services",
            "password": SANDBOX_SLACK_WEBHOOK_PATH,
        },
        settings.SMTP_CONN_ID: {
            "conn_type": "smtp",
            "host": endpoints.get("smtp_host"),
            "port": endpoints.get("smtp_port"),
            "extra": {
                "disable_tls": True,
                "disable_ssl": True,
                "from_email": "customer-health@example.com",
                "timeout": 10,
                "retry_limit": 3,
            },
        },
        settings.HUBSPOT_CONN_ID: {  # no Airflow provider for HubSpot: an http connection
            "conn_type": "http",
            "host": endpoints.get("hubspot"),
            "password": SANDBOX_HUBSPOT_TOKEN,
        },
    }


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
