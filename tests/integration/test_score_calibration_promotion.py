"""A promoted recalibration scores exactly as audited: the daily scoring task applies its calibration.

A proposal with a ``score_calibration`` is registered, approved by a person, and then the daily
DAG's scoring step (``pipeline.score``) scores a date from the stored signals: the written scores
are the engine's calibrated scores of that config, and v1's scores stay the plain composite.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import yaml
from sqlalchemy import select

from customer_health import pipeline, settings
from customer_health.scoring.engine import ensure_model_registered, score_accounts
from customer_health.scoring.model_config import load_model_config
from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.scoring.signal_store import read_signal_frame, write_signal_frame
from customer_health.validation import registry
from customer_health.warehouse import schema as s
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.io import upsert_rows

V1 = load_model_config()
DAY = date(2026, 5, 1)


def _proposal() -> object:
    raw = yaml.safe_load(V1.yaml_text)
    raw["version"] = "v1-r20260501"
    raw["score_calibration"] = {
        "knots": [{"composite": 0.0, "score": 0.0}, {"composite": 62.0, "score": 49.5}, {"composite": 100.0, "score": 100.0}],
        "fitted": {"method": "balanced_targets"},
    }
    return load_model_config(yaml.safe_dump(raw, sort_keys=False))


def _seed(engine, n: int = 120) -> None:
    rng = np.random.default_rng(7)
    keys = [f"001{i:015d}" for i in range(n)]
    accounts = [
        {"id": k, "name": f"Account {i}", "plan": ("starter", "pro")[i % 2], "seats": 10, "arr": 12000.0,
         "customer_since": date(2024, 1, 1), "is_deleted": False, "extracted_at": pd.Timestamp("2026-05-02").to_pydatetime()}
        for i, k in enumerate(keys)
    ]  # fmt: skip
    with engine.begin() as conn:
        upsert_rows(conn, s.raw_sf_account, accounts)
    frame = pd.DataFrame(
        {"account_key": keys, "as_of_date": DAY, "plan": [a["plan"] for a in accounts], "tenure_days": float((DAY - date(2024, 1, 1)).days), "arr": 12000.0}
    )
    for key in SIGNALS:
        frame[key] = rng.uniform(0, 1, n)
    frame["login_frequency"] = rng.uniform(0, 10, n)
    frame["nps"] = rng.uniform(0, 10, n)
    frame["open_tickets"] = rng.poisson(2, n).astype(float)
    write_signal_frame(engine, frame)


def _written(engine, version: str) -> pd.Series:
    t = s.health_scores.c
    with engine.connect() as conn:
        rows = conn.execute(select(t.account_key, t.score).where(t.model_version == version, t.as_of_date == DAY)).all()
    return pd.Series({r.account_key: int(r.score) for r in rows}).sort_index()


def test_an_approved_calibrated_version_scores_the_daily_run_as_it_was_audited(sqlite_warehouse_url, monkeypatch):
    monkeypatch.setenv(settings.WAREHOUSE_URL_ENV, sqlite_warehouse_url)
    engine_for.cache_clear()
    engine = engine_for(sqlite_warehouse_url)
    _seed(engine)
    ensure_model_registered(engine, V1)
    pipeline.score(DAY)
    v1_scores = _written(engine, "v1")

    proposal = _proposal()
    registry.propose(engine, proposal, parent_version="v1", created_by="test")
    registry.approve(engine, proposal.version, decided_by="ana@example.com")
    assert pipeline.active_model_config().score_calibration == proposal.score_calibration
    pipeline.score(DAY)
    promoted = _written(engine, proposal.version)

    signals = read_signal_frame(engine, DAY)
    audited = score_accounts(signals, proposal).set_index("account_key")["score"].astype(int).sort_index()
    assert promoted.to_dict() == audited.to_dict()
    # v1 is the plain composite; the proposal maps it through its knots (0 -> 0, 62 -> 49.5, 100 -> 100).
    plain = score_accounts(signals, V1).set_index("account_key")["score"].astype(int).sort_index()
    assert v1_scores.to_dict() == plain.to_dict()
    assert (promoted <= v1_scores + 1).all() and (promoted < v1_scores).any()
    engine_for.cache_clear()
