"""A small company scored end to end by the real code: the fixture of tests that read what people see.

Tests of the dashboard, the CRM fields, Task descriptions, Slack and e-mail bodies take their
rows from here, never from hand-built dicts shaped like what the code is expected to write:
the sandbox's company is extracted by the real clients, its history rebuilt by the scoring
engine, and its last ``ACTION_DAYS`` days decided and dispatched through the outbox to the
sandbox's Salesforce, Slack, SMTP and marketing servers, as the daily DAG does (without
Airflow's scheduler: the same ``pipeline`` functions the DAG tasks call).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

HISTORY_DAYS = 150
ACTION_DAYS = 45


@dataclass
class ScoredCompany:
    """A warehouse holding a scored company, and the sandbox its actions were delivered to."""

    warehouse_url: str
    sandbox: Any
    as_of: date  # the last scored (and decided) date
    first_action_date: date
    environment: dict[str, str]  # the AIRFLOW_CONN_* variables pointing at the sandbox

    @contextmanager
    def connections(self):
        """The sandbox's env-provided Airflow connections and the warehouse, set for a block."""
        from customer_health import settings
        from customer_health.warehouse.engine import engine_for

        wanted = {**self.environment, settings.WAREHOUSE_URL_ENV: self.warehouse_url}
        saved = {k: os.environ.get(k) for k in wanted}
        os.environ.update(wanted)
        engine_for.cache_clear()
        try:
            yield self
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            engine_for.cache_clear()


def copy_company(company_dir: Path, folder: Path) -> Path:
    """A private copy of a generated company (the sandbox records writes in it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("company.db", "product.db"):
        shutil.copy(company_dir / name, folder / name)
    for cert in company_dir.glob("sandbox-*.pem"):
        shutil.copy(cert, folder / cert.name)
    return folder


def score_company(company_dir: Path, workdir: Path, end: date) -> ScoredCompany:
    """Extract, rebuild ``HISTORY_DAYS`` of scores up to ``end`` and act on the last ``ACTION_DAYS``."""
    from customer_health import pipeline
    from customer_health.warehouse.engine import engine_for
    from customer_health.warehouse.migrate import upgrade_to_head
    from health_sandbox.connections import as_environment, sandbox_connections
    from health_sandbox.server import Sandbox

    sandbox = Sandbox.start(copy_company(company_dir, workdir / "sandbox"))
    url = f"sqlite:///{workdir / 'warehouse.db'}"
    upgrade_to_head(engine_for(url))
    scored = ScoredCompany(
        warehouse_url=url,
        sandbox=sandbox,
        as_of=end,
        first_action_date=end - timedelta(days=ACTION_DAYS - 1),
        environment=as_environment(sandbox_connections(sandbox.endpoints, url)),
    )
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    with scored.connections():
        pipeline.migrate_warehouse()
        for extract in (pipeline.extract_salesforce, pipeline.extract_zendesk, pipeline.extract_stripe,
                        pipeline.extract_product):
            extract(until)
        pipeline.build_crosswalk()
        pipeline.rebuild_history(end - timedelta(days=HISTORY_DAYS - 1), end)
        day = scored.first_action_date
        while day <= end:
            pipeline.decide_actions(day, "scheduled", True)
            for action_type, batches in pipeline.action_batches(day).items():
                for keys in batches:
                    pipeline.dispatch_batch(action_type, keys)
            day += timedelta(days=1)
        pipeline.crm_writeback(end)
    return scored
