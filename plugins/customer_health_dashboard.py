"""Airflow plugin: the customer-health dashboard inside the Airflow UI.

Registers the dashboard's FastAPI app on the api-server at ``/customer-health`` and adds
"Customer health" to the Airflow navigation (Browse menu) as an external view, which the UI
shows in a frame at ``/plugin/customer-health``. The dashboard reuses the Airflow login: see
``customer_health.dashboard.auth``. All logic lives in ``include/customer_health/dashboard``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from customer_health.dashboard.app import app as dashboard_app

URL_PREFIX = "/customer-health"


def _href() -> str:
    """The dashboard's address under the api-server's base URL (which may carry a path)."""
    from urllib.parse import urlsplit

    from airflow.configuration import conf

    root = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    return f"{root}{URL_PREFIX}/"


class CustomerHealthDashboardPlugin(AirflowPlugin):
    """The dashboard app and its navigation entry."""

    name = "customer_health_dashboard"
    fastapi_apps = [{"app": dashboard_app, "url_prefix": URL_PREFIX, "name": "Customer health dashboard"}]
    external_views = [
        {
            "name": "Customer health",
            "href": _href(),
            "url_route": "customer-health",
            "destination": "nav",
            "category": "browse",
        }
    ]
