"""Where things live and what they are called: paths, connection ids, environment variables.

Every connection id used anywhere in the project is defined here, once. Local state (the
embedded warehouse, the Airflow home, sandbox data) lives under ``<project>/.local``; the
``CUSTOMER_HEALTH_HOME`` environment variable moves it.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Airflow connection ids: the one place they are named.
WAREHOUSE_CONN_ID = "health_warehouse"
SALESFORCE_CONN_ID = "health_salesforce"
ZENDESK_CONN_ID = "health_zendesk"
STRIPE_CONN_ID = "health_stripe"
PRODUCT_DB_CONN_ID = "health_product_db"
SLACK_CONN_ID = "health_slack"
SMTP_CONN_ID = "health_smtp"
# Optional: the ops channel, a Slack incoming webhook for whoever runs the pipeline (failed tasks,
# late scores, record spikes: customer_health.alerts). Without it alerts are logged as warnings.
OPS_SLACK_CONN_ID = "health_ops_slack"
# Optional: with it, the campaign actions and segments act on HubSpot lists instead of
# Salesforce Campaigns (customer_health.actions.campaign_targets).
HUBSPOT_CONN_ID = "health_hubspot"

ALL_CONN_IDS = (
    WAREHOUSE_CONN_ID,
    SALESFORCE_CONN_ID,
    ZENDESK_CONN_ID,
    STRIPE_CONN_ID,
    PRODUCT_DB_CONN_ID,
    SLACK_CONN_ID,
    SMTP_CONN_ID,
    HUBSPOT_CONN_ID,
)

# The one-slot Airflow pool shared by the daily and the refresh scoring tasks, so they never
# write the same date's scores at once. Created by `make demo` / `make airflow`, the compose
# init service and the test fixtures (`airflow pools set customer_health_scoring 1 ...`).
SCORING_POOL = "customer_health_scoring"
SCORING_POOL_DESCRIPTION = "customer health scoring: the daily and refresh runs never overlap"

# Environment variable that, when set, overrides the warehouse URL (tests, scripts).
WAREHOUSE_URL_ENV = "CUSTOMER_HEALTH_WAREHOUSE_URL"


def local_dir() -> Path:
    """The folder for all local state (ignored by git)."""
    return Path(os.environ.get("CUSTOMER_HEALTH_HOME", PROJECT_ROOT / ".local"))


def sandbox_dir() -> Path:
    """The folder of the sandbox: the synthetic company's source data, TLS cert, endpoints file."""
    return local_dir() / "sandbox"


def default_warehouse_url() -> str:
    """The embedded default warehouse: a SQLite file under ``.local``."""
    return f"sqlite:///{local_dir() / 'warehouse.db'}"
