"""Airflow Assets the DAGs produce and consume (defined once, imported by the DAG files)."""

from __future__ import annotations

from airflow.sdk import Asset

# The score history table: downstream DAGs (audits, dashboards, exports) can be scheduled on it.
HEALTH_SCORES = Asset(name="health_scores", uri="customer-health://warehouse/health_scores", group="customer_health")
ACTION_OUTBOX = Asset(name="action_outbox", uri="customer-health://warehouse/action_outbox", group="customer_health")
