"""Model validation end to end on hand-made warehouse rows.

The synthetic book: 150 accounts, each with a latent health; the weaker ones cancel their Stripe
subscription with a high monthly hazard. The active-user ratio follows the latent health, every
other signal is noise. Signals are stored monthly (as the daily run stores them) and v1's
scores at the four quarter starts the audit looks at.

Covered here: outcome derivation (churn, contraction, expansion; point in time; idempotent), the
audit (cohort, labels, FN/FP with drivers, storage, the offline HTML report, the CLI), the
registry transitions, and the DAG run with ``dag.test()`` where the Human-in-the-loop review is
answered from a second thread through the HITL REST API's handler (approve and reject).
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from customer_health.scoring.engine import ensure_model_registered, score_accounts
from customer_health.scoring.history import write_scores
from customer_health.scoring.model_config import load_model_config
from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.scoring.signal_store import write_signal_frame
from customer_health.validation import registry
from customer_health.validation.audit import (
    audit_model,
    data_end,
    format_summary,
    latest_audit,
    main,
    resolve_window,
    snapshot_dates,
)
from customer_health.validation.outcomes import build_outcomes, derive_outcomes, read_outcomes
from customer_health.validation.report import render_audit_html
from customer_health.warehouse import schema as s
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.io import upsert_rows

V1 = load_model_config()
ACCOUNTS = 150
MONTHS = [date(2024 + (9 + i) // 12, (9 + i) % 12 + 1, 1) for i in range(24)]  # 2024-10-01 .. 2026-09-01
AUDIT_QUARTERS = [date(2025, 10, 1), date(2026, 1, 1), date(2026, 4, 1), date(2026, 7, 1)]
RUN_DATE = date(2026, 10, 1)
STAMP = datetime(2026, 10, 1)


def _key(i: int) -> str:
    return f"001{i:015d}"


def seed_book(engine, seed: int = 11) -> dict[str, date]:
    """Accounts, Stripe subscriptions, stored signals and v1 scores; returns churn dates."""
    rng = np.random.default_rng(seed)
    health = rng.uniform(0, 1, ACCOUNTS)
    since = [date(2023, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 480, ACCOUNTS)]
    churned_on: dict[str, date] = {}
    for i in range(ACCOUNTS):
        for month in MONTHS:
            hazard = 0.012 + (0.14 if health[i] < 0.3 else 0.0)
            if rng.random() < hazard:
                churned_on[_key(i)] = month + timedelta(days=int(rng.integers(1, 28)))
                break
    accounts, identities, subscriptions = [], [], []
    for i in range(ACCOUNTS):
        key = _key(i)
        accounts.append(
            {"id": key, "name": f"Account {i}", "plan": ("starter", "pro", "enterprise")[i % 3], "seats": 20,
             "arr": 12000.0, "customer_since": since[i], "is_deleted": False, "extracted_at": STAMP}
        )  # fmt: skip
        identities.append({"system": "stripe", "source_id": f"cus_{i}", "account_key": key, "match_method": "metadata", "updated_at": STAMP})
        end = churned_on.get(key)
        subscriptions.append(
            {"id": f"sub_{i}", "customer_id": f"cus_{i}", "status": "canceled" if end else "active", "quantity": 20,
             "unit_amount": 5000, "interval": "month", "created_at": datetime.combine(since[i], datetime.min.time()),
             "canceled_at": datetime.combine(end, datetime.min.time()) + timedelta(hours=9) if end else None,
             "cancel_at_period_end": False, "current_period_end": None, "is_deleted": False, "extracted_at": STAMP}
        )  # fmt: skip
    with engine.begin() as conn:
        upsert_rows(conn, s.raw_sf_account, accounts)
        upsert_rows(conn, s.account_identity_map, identities)
        upsert_rows(conn, s.raw_stripe_subscription, subscriptions)
    ensure_model_registered(engine, V1)
    for month in MONTHS:
        alive = [i for i in range(ACCOUNTS) if since[i] <= month and churned_on.get(_key(i), date.max) > month]
        n = len(alive)
        frame = pd.DataFrame(
            {
                "account_key": [_key(i) for i in alive],
                "as_of_date": month,
                "plan": [("starter", "pro", "enterprise")[i % 3] for i in alive],
                "tenure_days": [(month - since[i]).days for i in alive],
                "arr": 12000.0,
            }
        )
        for signal in SIGNALS:
            frame[signal] = rng.uniform(0, 1, n)
        frame["login_frequency"] = rng.uniform(0, 10, n)
        frame["open_tickets"] = rng.poisson(2, n).astype(float)
        frame["nps"] = rng.uniform(0, 10, n)
        frame["exec_sponsor_recency"] = rng.uniform(0, 365, n)
        frame["engagement_trend"] = rng.uniform(-0.5, 0.5, n)
        frame["active_user_ratio"] = np.clip(health[alive] + rng.normal(0, 0.08, n), 0, 1)
        write_signal_frame(engine, frame)
        if month in AUDIT_QUARTERS:
            write_scores(engine, score_accounts(frame, V1))
    return churned_on


@pytest.fixture()
def book(sqlite_warehouse_url):
    engine = engine_for(sqlite_warehouse_url)
    churned_on = seed_book(engine)
    return sqlite_warehouse_url, engine, churned_on


# --------------------------------------------------------------------------- outcomes
def _opportunity(oid: str, account: str, kind: str, won: bool, closed_on: date) -> dict:
    return {"id": oid, "account_id": account, "name": f"{kind} {oid}", "opportunity_type": kind,
            "stage": "Closed Won" if won else "Closed Lost", "amount": 10000.0, "close_date": closed_on,
            "is_closed": True, "is_won": won, "is_deleted": False, "extracted_at": STAMP}  # fmt: skip


def _invoice(iid: str, customer: str, sub: str, subtotal: int, usage: int, created: datetime, status: str = "paid") -> dict:
    return {"id": iid, "customer_id": customer, "subscription_id": sub, "status": status, "subtotal": subtotal,
            "usage_amount": usage, "amount_due": subtotal, "amount_paid": subtotal, "created_at": created,
            "is_deleted": False, "extracted_at": STAMP}  # fmt: skip


def test_outcomes_are_derived_from_stripe_and_salesforce_and_known_from_their_own_date(warehouse_url):
    engine = engine_for(warehouse_url)  # SQLite and PostgreSQL: the invoice LAG runs in SQL
    a, b, c = _key(1), _key(2), _key(3)
    with engine.begin() as conn:
        upsert_rows(conn, s.account_identity_map, [
            {"system": "stripe", "source_id": cus, "account_key": key, "match_method": "metadata", "updated_at": STAMP}
            for cus, key in (("cus_a", a), ("cus_b", b), ("cus_b2", b), ("cus_c", c))
        ])  # fmt: skip
        upsert_rows(conn, s.raw_stripe_subscription, [
            # a: canceled at period end -> churn on the period end, not on the request.
            {"id": "sub_a", "customer_id": "cus_a", "status": "canceled", "created_at": datetime(2025, 1, 1),
             "canceled_at": datetime(2026, 2, 10), "cancel_at_period_end": True, "current_period_end": datetime(2026, 3, 1),
             "is_deleted": False, "extracted_at": STAMP},
            # b: one subscription replaced by another three days later (plan change): not churn.
            {"id": "sub_b", "customer_id": "cus_b", "status": "canceled", "created_at": datetime(2025, 1, 1),
             "canceled_at": datetime(2026, 4, 1), "cancel_at_period_end": False, "current_period_end": None,
             "is_deleted": False, "extracted_at": STAMP},
            {"id": "sub_b2", "customer_id": "cus_b2", "status": "active", "created_at": datetime(2026, 4, 4), "canceled_at": None,
             "cancel_at_period_end": False, "current_period_end": None, "is_deleted": False, "extracted_at": STAMP},
        ])  # fmt: skip
        upsert_rows(conn, s.raw_sf_opportunity, [
            _opportunity("006000000000000001", c, "Renewal", False, date(2026, 5, 15)),
            _opportunity("006000000000000002", a, "Expansion", True, date(2025, 6, 1)),
            _opportunity("006000000000000003", c, "Renewal", True, date(2025, 5, 15)),  # renewed: nothing
        ])  # fmt: skip
        upsert_rows(conn, s.raw_stripe_invoice, [
            _invoice("in_1", "cus_c", "sub_c", 100_000, 5_000, datetime(2026, 1, 1)),
            _invoice("in_2", "cus_c", "sub_c", 60_000, 9_000, datetime(2026, 2, 1)),  # recurring 95k -> 51k
            _invoice("in_3", "cus_c", "sub_c", 75_000, 0, datetime(2026, 3, 1)),  # 51k -> 75k
            _invoice("in_4", "cus_c", "sub_c", 10_000, 0, datetime(2026, 3, 15), status="void"),  # not billed
        ])  # fmt: skip

    frame = derive_outcomes(engine, date(2026, 12, 31))
    found = {(r.account_key, r.outcome, r.source, r.occurred_on) for r in frame.itertuples()}
    assert found == {
        (a, "churn", "stripe_subscription", date(2026, 3, 1)),
        (a, "expansion", "sf_opportunity", date(2025, 6, 1)),
        (c, "churn", "sf_opportunity", date(2026, 5, 15)),
        (c, "contraction", "stripe_invoice", date(2026, 2, 1)),
        (c, "expansion", "stripe_invoice", date(2026, 3, 1)),
    }
    contraction = json.loads(frame[frame["outcome"] == "contraction"].iloc[0]["detail"])
    assert contraction["previous_recurring_cents"] == 95_000 and contraction["recurring_cents"] == 51_000

    # Point in time: on 2026-02-28, a's cancellation has not happened yet.
    early = derive_outcomes(engine, date(2026, 2, 28))
    assert not ((early["account_key"] == a) & (early["outcome"] == "churn")).any()

    first = build_outcomes(engine, date(2026, 12, 31))
    again = build_outcomes(engine, date(2026, 12, 31))
    assert first == again and first.churn == 2 and first.churned_accounts == 2
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.account_outcomes)).scalar_one() == 5


# --------------------------------------------------------------------------- audit
def test_quarterly_snapshots_fit_their_horizon_inside_the_window():
    assert snapshot_dates(date(2025, 10, 1), date(2026, 9, 30), 90) == AUDIT_QUARTERS
    assert snapshot_dates(date(2025, 1, 1), date(2026, 12, 31), 90, "quarterly")[-1] == date(2026, 10, 1)


def test_audit_grades_stored_scores_against_churn_and_writes_an_offline_report(book, tmp_path):
    url, engine, churned_on = book
    build_outcomes(engine, RUN_DATE - timedelta(days=1))
    result = audit_model(engine, date(2025, 10, 1), date(2026, 9, 30), report_dir=tmp_path)

    cohort = result.cohort
    assert sorted(cohort["snapshot_date"].unique()) == AUDIT_QUARTERS
    assert set(cohort["score_source"]) == {"stored"}
    # Labels: churned within (T, T + 90] by the hand-made cancellations.
    for r in cohort.sample(40, random_state=0).itertuples():
        churn = churned_on.get(r.account_key)
        assert r.churned == (churn is not None and r.snapshot_date < churn <= r.snapshot_date + timedelta(days=90))
    m = result.metrics
    assert m["observations"] == len(cohort) and m["churners"] == int(cohort["churned"].sum()) > 10
    assert 0.5 < m["roc_auc"] <= 1.0  # the score carries the active-user signal: better than chance

    fn = result.false_negatives
    assert fn and all(i["score"] >= 50 for i in fn) and all(i["churned_on"] for i in fn)
    assert any(i["held_up_by"] or i["held_down_by"] for i in fn)  # drivers from health_scores.drivers
    assert all(i["score"] <= 49 for i in result.false_positives)

    html = Path(result.report_path).read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "http://" not in html and "https://" not in html and "<script" not in html and "<link" not in html
    assert "False negatives" in html

    stored = latest_audit(engine, "v1")
    assert stored["roc_auc"] == pytest.approx(m["roc_auc"]) and stored["report_path"] == result.report_path
    assert registry.get_version(engine, "v1").metrics["audit"]["observations"] == m["observations"]
    # Re-running the audit overwrites, never appends.
    audit_model(engine, date(2025, 10, 1), date(2026, 9, 30), report_dir=tmp_path)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.model_audits)).scalar_one() == 1


def test_a_version_without_stored_scores_is_rescored_through_the_engine(book, tmp_path):
    _, engine, _ = book
    build_outcomes(engine, RUN_DATE - timedelta(days=1))
    result = audit_model(engine, date(2025, 10, 1), date(2026, 9, 30), config=V1, report_dir=tmp_path, store=False,
                         tolerance_days=0, cadence="monthly")  # fmt: skip
    sources = {sn["snapshot_date"]: sn["source"] for sn in result.snapshots}
    assert sources["2026-01-01"] == "stored" and sources["2026-02-01"] == "rescored"


def test_the_command_line_prints_the_metrics(book, tmp_path, capsys):
    url, _, _ = book
    code = main(["--warehouse-url", url, "--start", "2025-10-01", "--end", "2026-09-30", "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "ROC AUC" in out and "sensitivity" in out and "report:" in out


def test_the_command_line_explains_a_window_too_short_for_the_horizon(book, capsys):
    url, _, _ = book
    assert main(["--warehouse-url", url, "--start", "2026-09-01", "--end", "2026-09-30", "--skip-outcomes"]) == 2
    assert "widen the window" in capsys.readouterr().err


# --------------------------------------------------------------------------- registry
def test_registry_approve_retires_the_previous_active_and_reject_keeps_the_reason(book):
    _, engine, _ = book
    proposal = load_model_config(V1.yaml_text.replace("version: v1\n", "version: v1-r20261001\n"))
    registry.propose(engine, proposal, parent_version="v1", created_by="test", metrics={"holdout": {"new": {"roc_auc": 0.8}}})
    assert registry.get_version(engine, "v1-r20261001").status == "proposed"

    events = len(registry.version_events(engine))
    registry.propose(engine, proposal, parent_version="v1", created_by="test", metrics={"holdout": {"new": {"roc_auc": 0.8}}})
    assert len(registry.version_events(engine)) == events  # the same proposal again changes nothing

    approved = registry.approve(engine, "v1-r20261001", decided_by="ana@example.com", note="better AUC")
    assert approved.status == "active" and approved.decided_by == "ana@example.com"
    assert registry.get_version(engine, "v1").status == "retired"
    assert registry.active_version(engine) == "v1-r20261001"
    events = len(registry.version_events(engine))
    registry.approve(engine, "v1-r20261001", decided_by="ana@example.com")  # idempotent
    assert len(registry.version_events(engine)) == events
    with pytest.raises(registry.RegistryError, match="only a proposed version can be rejected"):
        registry.reject(engine, "v1-r20261001", decided_by="bob", reason="no")

    other = load_model_config(V1.yaml_text.replace("version: v1\n", "version: v2\n"))
    registry.propose(engine, other, parent_version="v1-r20261001", created_by="test")
    rejected = registry.reject(engine, "v2", decided_by="bob", reason="support weight too low for enterprise")
    assert rejected.status == "rejected" and rejected.decision_note == "support weight too low for enterprise"
    registry.reject(engine, "v2", decided_by="bob", reason="again")  # idempotent: the first reason stays
    assert registry.get_version(engine, "v2").decision_note == "support weight too low for enterprise"
    with pytest.raises(registry.RegistryError, match="only a proposed version can be approved"):
        registry.approve(engine, "v2", decided_by="bob")
    changed = load_model_config(other.yaml_text.replace("level_weight: 1.0", "level_weight: 2.0"))
    with pytest.raises(registry.RegistryError, match="already rejected with another configuration"):
        registry.propose(engine, changed, parent_version="v1", created_by="test")
    trail = [(e["version"], e["event"]) for e in registry.version_events(engine)]
    assert trail[-5:] == [("v1-r20261001", "proposed"), ("v1", "retired"), ("v1-r20261001", "approved"), ("v2", "proposed"), ("v2", "rejected")]


# --------------------------------------------------------------------------- the DAG, with its human review
DAG_ID = "customer_health_model_audit"
DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "customer_health_model_audit.py"


def _answer_review(choice: str, reason: str, reviewer: str, seen: dict, timeout: float = 240.0) -> None:
    """Wait for the review task to park in awaiting_input, then answer it as the REST API does."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy.orm import joinedload

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with create_session() as session:
                ti = session.scalar(
                    select(TaskInstance)
                    .where(
                        TaskInstance.dag_id == DAG_ID,
                        TaskInstance.task_id == "review_model",
                        TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                    )
                    .options(joinedload(TaskInstance.hitl_detail))
                )
                if ti is not None and ti.hitl_detail is not None and not ti.hitl_detail.response_received:
                    seen["subject"], seen["body"] = ti.hitl_detail.subject, ti.hitl_detail.body
                    update_hitl_detail(
                        dag_id=DAG_ID,
                        dag_run_id=ti.run_id,
                        task_id="review_model",
                        update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[choice], params_input={"reason": reason}),
                        user=SimpleAuthManagerUser(username=reviewer, role="admin"),
                        session=session,
                        map_index=-1,
                    )
                    seen["answered"] = True
                    return
        except Exception as exc:  # noqa: BLE001 - SQLite busy while the run writes: try again
            seen["last_error"] = repr(exc)
        time.sleep(0.5)


@pytest.fixture()
def audit_dag(request):
    from airflow.dag_processing.dagbag import DagBag

    request.getfixturevalue("airflow_metadata")  # imported from tests/dags/conftest.py

    bag = DagBag(str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("choice", "reason", "status", "v1_status"),
    [("Approve", "held-out AUC is better", "active", "retired"), ("Reject", "wait for another quarter of data", "rejected", "active")],
)
def test_quarterly_run_asks_a_human_and_records_the_decision(audit_dag, book, monkeypatch, tmp_path, choice, reason, status, v1_status):
    from customer_health import settings

    url, engine, _ = book
    monkeypatch.setenv(settings.WAREHOUSE_URL_ENV, url)
    monkeypatch.setenv("CUSTOMER_HEALTH_REPORTS_DIR", str(tmp_path / "reports"))
    engine_for.cache_clear()
    seen: dict = {}
    responder = threading.Thread(target=_answer_review, args=(choice, reason, "ana", seen), daemon=True)
    responder.start()

    run = audit_dag.test(logical_date=datetime.combine(RUN_DATE, datetime.min.time(), tzinfo=UTC).replace(hour=6))
    responder.join(timeout=5)

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", (states, seen)
    assert seen.get("answered"), seen
    # The window ends where the data ends (the latest churn known by the run), and names the proposal.
    version = f"v1-r{data_end(engine, RUN_DATE) + timedelta(days=1):%Y%m%d}"
    assert seen["subject"] == f"Approve customer health model {version}?"
    header = next(line for line in seen["body"].splitlines() if line.startswith("| Metric |"))
    assert header.startswith("| Metric | v1 (current) | in-range fit") and "free fit" in header and "ROC AUC" in seen["body"]
    assert "plain logistic regression on the raw signals" in seen["body"]

    proposal = registry.get_version(engine, version)
    assert proposal.status == status and proposal.decided_by == "ana"
    assert registry.get_version(engine, "v1").status == v1_status
    if choice == "Reject":
        assert proposal.decision_note == reason
    assert proposal.metrics["holdout"]["new"]["observations"] > 0
    assert latest_audit(engine, "v1") is not None
    assert list((tmp_path / "reports").glob("model_audit_v1_*.html"))
    assert len(read_outcomes(engine, outcomes=["churn"])) > 0


# --------------------------------------------------------------------------- #18 items 4 and 6
def test_every_audit_grades_a_plain_regression_on_the_raw_signals_on_the_same_held_out_rows(book, tmp_path):
    _, engine, _ = book
    build_outcomes(engine, RUN_DATE - timedelta(days=1))
    result = audit_model(engine, date(2025, 10, 1), date(2026, 9, 30), report_dir=tmp_path)
    b = result.baseline
    # Every quarter has monthly snapshots at least 90 days before it to train on: all are held out.
    assert b["test_dates"] == [d.isoformat() for d in AUDIT_QUARTERS] and b["rows"] == len(result.cohort)
    assert b["model_auc"] == pytest.approx(result.metrics["roc_auc"])
    assert 0.5 < b["baseline_auc"] <= 1.0 and "active_user_ratio" in b["features"]
    model_cm_flagged = int((result.cohort["score"] <= 49).sum())
    assert b["flagged"] == model_cm_flagged  # the matching cut: the same workload
    text = format_summary(result)
    assert "baseline (plain logistic regression on the raw signals)" in text
    worse = b["model_auc"] < b["baseline_auc"]
    assert text.splitlines()[0].startswith("WARNING: model v1 ranks worse than a plain logistic regression") == worse
    assert latest_audit(engine, "v1")["metrics"]["baseline"]["baseline_auc"] == pytest.approx(b["baseline_auc"])


def test_a_model_worse_than_the_baseline_is_said_plainly_in_the_first_lines_of_the_text_and_the_report(book, tmp_path):
    _, engine, _ = book
    build_outcomes(engine, RUN_DATE - timedelta(days=1))
    result = audit_model(engine, date(2025, 10, 1), date(2026, 9, 30), report_dir=tmp_path, store=False, write_report=False)
    result.baseline = {**result.baseline, "model_auc": 0.46, "baseline_auc": 0.73}
    first = format_summary(result).splitlines()
    assert first[0].startswith("WARNING: model v1 ranks worse than a plain logistic regression on the raw signals (AUC 0.460 vs 0.730")
    assert first[1].startswith("WARNING: model v1's ROC AUC is 0.460, under 0.6")
    html = render_audit_html(result)
    body = html.split("<body>", 1)[1].lstrip()
    assert body.startswith("<p class='warning'><b>WARNING: model v1 ranks worse than a plain logistic regression")
    assert "Beside a baseline" in html and "0.730" in html


def test_the_default_window_ends_where_the_known_outcomes_end_not_yesterday(book, tmp_path, capsys):
    url, engine, churned_on = book
    build_outcomes(engine, RUN_DATE - timedelta(days=1))
    latest = max(d for d in churned_on.values() if d < RUN_DATE)
    much_later = date(2027, 3, 15)  # the data stopped months before this run
    assert data_end(engine, much_later) == latest
    assert resolve_window(much_later, engine=engine) == (latest - timedelta(days=364), latest)
    assert resolve_window(much_later) == (much_later - timedelta(days=365), much_later - timedelta(days=1))
    assert resolve_window(much_later, window_end="2026-06-30", engine=engine)[1] == date(2026, 6, 30)
    code = main(["--warehouse-url", url, "--skip-outcomes", "--report-dir", str(tmp_path), "--no-store"])
    out = capsys.readouterr().out
    assert code == 0 and f"outcomes {latest - timedelta(days=364)}..{latest}" in out


def test_a_window_without_churn_says_so_naming_the_dates_instead_of_printing_nan(book, tmp_path):
    _, engine, _ = book
    build_outcomes(engine, date(2024, 1, 1))  # nothing had churned yet: no outcome at all
    result = audit_model(engine, date(2025, 10, 1), date(2026, 9, 30), report_dir=tmp_path, store=False)
    text = format_summary(result)
    assert text.splitlines()[0].startswith("NOTE: No churn outcome in the window 2025-10-01..2026-09-30")
    assert "2025-10-01, 2026-01-01, 2026-04-01, 2026-07-01" in text and "churn dates 2025-10-02..2026-09-29" in text
    assert not re.search(r"\bnan\b", text.lower()) and not any(line.startswith("  ROC AUC") for line in text.splitlines())
    assert result.summary()["roc_auc"] is None and result.baseline is None
