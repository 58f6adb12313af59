"""Scoring dates in the warehouse (SQLite and PostgreSQL): history, trends, re-runs, registration."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from customer_health.scoring.engine import ensure_model_registered, score_date
from customer_health.scoring.history import read_score_history, read_scores
from customer_health.scoring.model_config import ModelConfigError, load_model_config
from customer_health.scoring.overrides import create_override
from customer_health.scoring.signal_store import write_signal_frame
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.schema import (
    health_score_rollups,
    health_scores,
    model_versions,
)

CONFIG = load_model_config()
START = date(2026, 8, 1)


def signals(day: date, trend: float) -> pd.DataFrame:
    """Three accounts: a parent P with child C, and a stand-alone S whose engagement slides."""
    data = pd.DataFrame(
        {
            "account_key": ["P", "C", "S"],
            "as_of_date": day,
            "plan": "enterprise",
            "tenure_days": 700,
            "arr": [100_000.0, 300_000.0, 50_000.0],
            "parent_account_key": [None, "P", None],
            "owner_id": "005A",
        }
    )
    for key in CONFIG.signal_keys:
        data[key] = np.nan
    data["engagement_trend"] = [0.3, 0.1, trend]
    data["payment_timeliness"] = 0.9
    return data


def store_signals(engine, frame: pd.DataFrame) -> None:
    write_signal_frame(engine, frame)


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_rerunning_a_date_overwrites_and_never_duplicates(warehouse_url):
    engine = engine_for(warehouse_url)
    day = START
    first = score_date(engine, day, CONFIG, signals(day, 0.0))
    second = score_date(engine, day, CONFIG, signals(day, -0.4))
    assert first.written == second.written == 3
    assert count(engine, health_scores) == 3 and count(engine, health_score_rollups) == 1
    stored = read_scores(engine, day, "v1").set_index("account_key")
    assert stored.loc["S", "computed_score"] == second_score(-0.4)
    assert json.loads(stored.loc["S", "drivers"])["down"][0][0] == "engagement_trend"


def test_a_rerun_removes_the_scores_of_accounts_without_data_now(warehouse_url):
    # The first run scored all three; by the re-run the child C and the stand-alone S have no
    # informative data (deleted or quarantined at the source): their earlier scores, and P's
    # rollup over C, must not stay for the dashboard and the actions to read.
    from customer_health.warehouse.schema import health_score_summary

    engine = engine_for(warehouse_url)
    day = START
    score_date(engine, day, CONFIG, signals(day, 0.0))
    emptied = signals(day, 0.0)
    emptied.loc[emptied["account_key"].isin(["C", "S"]), ["engagement_trend", "payment_timeliness"]] = np.nan

    report = score_date(engine, day, CONFIG, emptied)

    assert report.written == 1 and report.unscored == 2
    assert list(read_scores(engine, day, "v1")["account_key"]) == ["P"]
    assert count(engine, health_score_rollups) == 0
    with engine.connect() as conn:
        summarized = conn.execute(
            select(func.sum(health_score_summary.c.accounts)).where(health_score_summary.c.as_of_date == day)
        ).scalar_one()
    assert summarized == 1
    # A re-run where no account has data is the sources failing: nothing is removed.
    nothing = signals(day, 0.0)
    nothing[["engagement_trend", "payment_timeliness"]] = np.nan
    with pytest.raises(ValueError, match="scored no account, but 1 were scored before"):
        score_date(engine, day, CONFIG, nothing)
    assert list(read_scores(engine, day, "v1")["account_key"]) == ["P"]
    # And back: a re-run with the data restored scores them again, once each.
    assert score_date(engine, day, CONFIG, signals(day, 0.0)).written == 3
    assert count(engine, health_scores) == 3 and count(engine, health_score_rollups) == 1


def second_score(trend: float) -> int:
    # engagement_trend (engagement) and payment_timeliness 0.9 -> 80 (financial), 0.40 : 0.25.
    engagement = (trend + 0.5) * 100
    return int(np.floor((0.40 * engagement + 0.25 * 80) / 0.65 + 0.5))


def test_history_gives_deltas_slope_previous_zone_and_a_change_story(warehouse_url):
    engine = engine_for(warehouse_url)
    for offset, trend in ((0, 0.4), (30, 0.2), (60, 0.0), (89, -0.15), (90, -0.2)):
        day = START + timedelta(days=offset)
        frame = signals(day, trend)
        store_signals(engine, frame)
        report = score_date(engine, day, CONFIG, frame)
    stored = read_scores(engine, START + timedelta(days=90), "v1").set_index("account_key")
    s = stored.loc["S"]
    assert s["delta_30"] == second_score(-0.2) - second_score(0.0)
    assert s["delta_90"] == second_score(-0.2) - second_score(0.4)
    assert s["slope_90"] < 0
    assert s["previous_zone"] == zone_of(second_score(-0.15))
    assert s["explanation"].startswith(f"Score {second_score(0.0)} -> {second_score(-0.2)} in 30 days: ")
    assert report.top_priority[0]["account_key"] == "S"
    rollup = pd.read_sql(select(health_score_rollups), engine.connect())
    assert rollup["parent_account_key"].tolist() == ["P"] * 5


def zone_of(score: int) -> str:
    return next(z.name for z in CONFIG.zones if z.min <= score <= z.max)


def test_history_reads_only_the_dates_the_trends_need(warehouse_url):
    engine = engine_for(warehouse_url)
    for offset in range(0, 91, 5):
        day = START + timedelta(days=offset)
        score_date(engine, day, CONFIG, signals(day, 0.0))
    as_of = START + timedelta(days=90)
    history = read_score_history(engine, as_of, CONFIG)
    days = sorted({(as_of - pd.Timestamp(d).date()).days for d in history["as_of_date"]})
    # D-30, D-60, D-90 (deltas and slope) and the latest earlier date (previous zone): not 19 dates.
    assert days == [5, 30, 60, 90]
    assert len(history) == 4 * 3


def test_an_override_survives_the_next_run_and_the_computed_score_is_kept(warehouse_url):
    engine = engine_for(warehouse_url)
    create_override(engine, "S", 90, "champion confirmed renewal", "csm@example.com", START + timedelta(days=5),
                    now=datetime(2026, 7, 31, 12, 0))  # fmt: skip
    score_date(engine, START, CONFIG, signals(START, -0.4))
    report = score_date(engine, START, CONFIG, signals(START, -0.4))
    stored = read_scores(engine, START, "v1").set_index("account_key")
    assert (stored.loc["S", "score"], stored.loc["S", "computed_score"]) == (90, second_score(-0.4))
    assert report.overrides_applied == 1
    later = START + timedelta(days=5)
    score_date(engine, later, CONFIG, signals(later, -0.4))
    assert read_scores(engine, later, "v1").set_index("account_key").loc["S", "score"] == second_score(-0.4)


def test_the_model_version_is_registered_once_and_a_changed_config_under_the_same_version_is_refused(warehouse_url):
    engine = engine_for(warehouse_url)
    assert ensure_model_registered(engine, CONFIG) is True
    assert ensure_model_registered(engine, CONFIG) is False
    with engine.connect() as conn:
        row = conn.execute(select(model_versions)).one()
    assert (row.version, row.status, row.config_sha256) == ("v1", "active", CONFIG.sha256)
    changed = load_model_config(CONFIG.yaml_text.replace("min_segment_size: 30", "min_segment_size: 25"))
    with pytest.raises(ModelConfigError, match="already registered with sha256 .*give the changed config a new version"):
        ensure_model_registered(engine, changed)


def test_bulk_write_stores_nulls_and_any_text_and_upserts_on_rewrite(warehouse_url, monkeypatch):
    from customer_health.scoring import history
    from customer_health.scoring.engine import score_accounts
    from customer_health.scoring.history import write_scores

    engine = engine_for(warehouse_url)
    frame = pd.concat([signals(START, -0.3 + i / 100).assign(account_key=lambda f, i=i: f["account_key"] + str(i))
                       for i in range(20)], ignore_index=True)  # fmt: skip
    scored = score_accounts(frame, CONFIG)
    scored.loc[0, "explanation"] = "tab\there, new\nline, back\\slash, quote \" and é"
    scored.loc[1, "slope_90"] = -0.0
    assert write_scores(engine, scored) == len(scored)
    stored = read_scores(engine, START, "v1").set_index("account_key").loc[scored["account_key"]]
    assert stored["explanation"].tolist() == scored["explanation"].tolist()
    assert stored["delta_30"].isna().all() and stored["override_id"].isna().all()  # NaN and <NA> became NULL
    assert stored["score"].tolist() == scored["score"].tolist()
    assert stored["coverage"].tolist() == scored["coverage"].tolist()
    # A rewrite upserts - also when the fast path for a new date is taken and finds the rows
    # there after all (a concurrent writer), which must fall back to the upsert, not fail.
    monkeypatch.setattr(history, "_has_rows_for", lambda *_args: False)
    scored["explanation"] = "rewritten"
    with engine.begin() as conn:
        assert write_scores(conn, scored) == len(scored)
    assert count(engine, health_scores) == len(scored)
    assert set(read_scores(engine, START, "v1")["explanation"]) == {"rewritten"}


def test_key_lists_reach_postgresql_as_one_array_literal_that_round_trips_any_text(postgres_url):
    """Account keys are bound as one text[] literal (io.text_array), not an element each."""
    from sqlalchemy import Text, cast, literal
    from sqlalchemy.dialects.postgresql import ARRAY

    from customer_health.warehouse.io import text_array

    awkward = ["001A", "a,b", "NULL", 'x"y', "b\\c", "{}", " s ", "", "é", 7]
    assert text_array([]) == "{}"
    assert text_array(["001A", "001B"]) == '{"001A","001B"}'
    engine = engine_for(postgres_url)
    with engine.connect() as conn:
        for values in ([], ["001A"], awkward, [f"001{i:015d}" for i in range(50_000)]):
            stored = conn.execute(select(cast(literal(text_array(values), Text), ARRAY(Text)))).scalar_one()
            assert stored == [str(v) for v in values]
