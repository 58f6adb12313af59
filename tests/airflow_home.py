"""Airflow's metadata DB for tests and benchmarks: migrated on the current ``AIRFLOW_HOME``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def migrate_metadata(*, scoring_pool: bool = True) -> Path:
    """``airflow db migrate`` on ``AIRFLOW_HOME`` (idempotent), then the scoring pool (one slot)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("airflow")
    proc = subprocess.run([str(exe), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if scoring_pool:
        from airflow import settings as airflow_settings
        from airflow.models.pool import Pool

        from customer_health.settings import SCORING_POOL, SCORING_POOL_DESCRIPTION

        airflow_settings.configure_orm()
        Pool.create_or_update_pool(SCORING_POOL, 1, SCORING_POOL_DESCRIPTION, include_deferred=False)
    return home
