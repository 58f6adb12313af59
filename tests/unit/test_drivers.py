"""Drivers: one documented shape, written by the engine and read through ``read_drivers`` only."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from customer_health.scoring.drivers import DriversFormatError, describe_drivers, read_drivers
from customer_health.scoring.engine import score_accounts
from customer_health.scoring.model_config import load_model_config
from customer_health.scoring.signal_catalog import SIGNALS

CONFIG = load_model_config()


def scored_population(seed: int, n: int = 60) -> pd.DataFrame:
    """The engine's own output for a random population (some signals missing)."""
    rng = np.random.default_rng(seed)
    data = {
        "account_key": [f"A{i:03d}" for i in range(n)],
        "as_of_date": date(2026, 11, 1),
        "plan": rng.choice(["starter", "growth", "enterprise"], n),
        "tenure_days": rng.integers(30, 900, n),
        "arr": rng.uniform(5_000, 200_000, n),
    }
    for key in CONFIG.signal_keys:
        values = rng.uniform(0, 1, n) * (30 if key in ("open_tickets", "exec_sponsor_recency") else 1)
        values[rng.random(n) < 0.2] = np.nan
        data[key] = values
    return score_accounts(pd.DataFrame(data), CONFIG)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_every_document_the_engine_writes_reads_back_in_the_documented_shape(seed):
    for raw in scored_population(seed)["drivers"]:
        drivers = read_drivers(raw)
        assert all(d.points < 0 and 0 <= d.score <= 100 for d in drivers.down)
        assert all(d.points > 0 and 0 <= d.score <= 100 for d in drivers.up)
        assert all(d.score is None and d.points != 0 for d in drivers.changes)
        assert all(d.signal in SIGNALS for d in (*drivers.down, *drivers.up, *drivers.changes))


def test_a_driver_reads_as_its_label_points_and_standing_among_similar_accounts():
    raw = json.dumps({"down": [["exec_sponsor_recency", -2.2, 8.4], ["csat", -1.0, 31.0]], "up": [], "changes": []})
    drivers = read_drivers(raw)
    assert describe_drivers(drivers) == (
        "executive-sponsor contact (-2.2 points; 8/100 vs similar accounts); "
        "CSAT (-1 point; 31/100 vs similar accounts)"
    )
    assert drivers.as_dict()["down"][0] == {
        "signal": "exec_sponsor_recency", "label": "executive-sponsor contact", "points": -2.2, "score": 8.4,
    }


def test_no_drivers_is_empty_not_an_error():
    for raw in (None, ""):
        assert not read_drivers(raw) and describe_drivers(read_drivers(raw)) == ""


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ('{"negative": [{"signal": "login_frequency", "impact": -22}]}', "unknown keys ['negative']"),
        ('{"down": [{"signal": "login_frequency", "points": -2}]}', "drivers['down'][0] must be a list of 3"),
        ('{"down": [["login_frequency", 2.0, 10]]}', "wrong sign"),
        ('{"down": [["login_frequency", "-2", 10]]}', "points must be a finite number"),
        ('{"up": [["login_frequency", 2.0, 140]]}', "outside 0-100"),
        ('{"changes": [["csat", -1.0, 20]]}', "drivers['changes'][0] must be a list of 2"),
        ("[1, 2]", "must be a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_document_in_any_other_shape_is_an_error_naming_the_entry(raw, names):
    with pytest.raises(DriversFormatError, match=None) as caught:
        read_drivers(raw)
    assert names in str(caught.value)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000))
def test_every_explanation_the_engine_writes_reads_well(seed):
    """Counts of 0, 1 and many (tickets, failed payments, days) agree; nothing raw leaks."""
    from tests.text_checks import assert_reads_well

    scored = scored_population(seed)
    for text in scored["explanation"]:
        assert_reads_well(text, "an explanation")
