"""The monthly review DAG run with ``dag.test()`` on the scored test company: what a person receives.

The session's ``scored_company`` (150 days scored by the engine to 2026-11-01, the last 45 days'
actions delivered) on a private copy of its warehouse; the DAG's connections point at it as in
production (``AIRFLOW_CONN_*``). The run of 2026-11-01 reviews October (its data interval). The
file is read as the person opening it would: the text, and where it would fetch anything from.
Figures are recounted from ``health_scores`` here, not by the review's own functions.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import health_reviews, health_scores
from tests.integration.test_dashboard_api import copy_sqlite

pytestmark = pytest.mark.slow

OCTOBER = date(2026, 10, 1)


def run_for(dagbag, first_of_next_month: date, **params):
    """The monthly run the scheduler starts on the first of a month (it reviews the month before)."""
    moment = datetime(first_of_next_month.year, first_of_next_month.month, 1, 7, tzinfo=UTC)
    conf = {"model_version": None, "clv": None, "horizon_days": 60, "window_days": 180, **params}
    return dagbag.dags["customer_health_monthly_review"].test(logical_date=moment, run_conf=conf)


def states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def visible_text(page: str) -> str:
    body = re.sub(r"<style.*?</style>|<svg.*?</svg>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


@pytest.fixture()
def warehouse(scored_company, dagbag, dag_env, tmp_path, monkeypatch):
    """A private copy of the scored company's warehouse, the DAG's connections and reports folder."""
    from customer_health.validation.report import REPORTS_DIR_ENV

    url = copy_sqlite(scored_company.warehouse_url, tmp_path / "warehouse.db")
    dag_env(scored_company.sandbox, url)
    monkeypatch.setenv(REPORTS_DIR_ENV, str(tmp_path / "reports"))
    return url


def test_the_monthly_run_writes_an_offline_review_of_the_month_that_ended(warehouse, dagbag, tmp_path):
    run = run_for(dagbag, date(2026, 11, 1))
    assert run.state == "success", states(run)

    with engine_for(warehouse).connect() as conn:
        rows = conn.execute(select(health_reviews)).all()
        last_october = conn.execute(
            select(func.max(health_scores.c.as_of_date)).where(health_scores.c.as_of_date < date(2026, 11, 1))
        ).scalar()
        zones = Counter(conn.execute(
            select(health_scores.c.zone).where(health_scores.c.model_version == "v1", health_scores.c.as_of_date == last_october)
        ).scalars())  # fmt: skip
    assert [(r.month, r.model_version, r.as_of_date) for r in rows] == [(OCTOBER, "v1", last_october)]
    path = Path(rows[0].report_path)
    assert path.parent == tmp_path / "reports" and path.name == "health_review_2026-10_v1.html"
    page = path.read_text(encoding="utf-8")

    # Offline: nothing is fetched from anywhere - no script, stylesheet, font or image, no CDN.
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(", page, re.I)
    assert not re.search(r"""(?:src|href|srcset)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "<style>" in page and "<svg" in page  # the stylesheet inline, the chart drawn in the file

    text = visible_text(page)
    for heading in ("Health review, October 2026", "Score distribution trend", "Healthy segment growth",
                    "At Risk recovery rate", "Intervention effectiveness per playbook", "Method.", "Limits.",
                    "Not a randomized experiment", "Model accuracy", "Retained revenue, the business case",
                    "Customer lifetime value", "Model iteration log"):  # fmt: skip
        assert heading in text, heading
    # The month's zone mix, recounted from the scores of its last day, is the table's last row.
    figures = json.loads(rows[0].figures)
    assert figures["distribution"][-1]["zones"] == dict(zones)
    row = f"Oct 2026 {last_october.isoformat()} {sum(zones.values())} " + " ".join(
        str(zones.get(z, 0)) for z in figures["zones"]
    )
    assert row in text


def test_rerunning_the_month_replaces_its_review_and_never_duplicates_it(warehouse, dagbag, tmp_path):
    assert run_for(dagbag, date(2026, 11, 1)).state == "success"
    with engine_for(warehouse).connect() as conn:
        first = conn.execute(select(health_reviews)).one()
    # Re-run with another customer lifetime value: the same row and file, the new figures.
    again = run_for(dagbag, date(2026, 11, 1), clv=15000)
    assert again.state == "success", states(again)
    with engine_for(warehouse).connect() as conn:
        rows = conn.execute(select(health_reviews)).all()
    assert len(rows) == 1 and rows[0].report_path == first.report_path
    assert rows[0].generated_at >= first.generated_at
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["health_review_2026-10_v1.html"]
    revenue = json.loads(rows[0].figures)["retained_revenue"]
    assert revenue["clv"] == 15000 and revenue["clv_source"].startswith("Configured")
    text = visible_text(Path(rows[0].report_path).read_text(encoding="utf-8"))
    assert "x $15.0k lifetime value" in text


def test_a_month_without_scores_fails_with_the_reason_and_writes_nothing(warehouse, dagbag, tmp_path, capfd):
    run = run_for(dagbag, date(2026, 4, 1))  # March 2026: the company's scores begin in June
    # Failed at once (no retry would find scores), with the reason and what to do in the task log.
    assert states(run) == {"migrate_warehouse": "success", "write_review": "failed"}
    log = "".join(capfd.readouterr())
    assert ("no review written: model v1 has no scores in March 2026: run customer_health_daily for that month "
            "(or customer_health_rebuild), or review another month") in log  # fmt: skip
    with engine_for(warehouse).connect() as conn:
        assert conn.execute(select(health_reviews)).all() == []
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())
