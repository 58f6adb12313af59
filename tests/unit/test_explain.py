"""Every score is explained: top drivers as JSON, and one sentence a CSM can act on."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd

from customer_health.scoring.engine import score_accounts
from customer_health.scoring.explain import describe_values, format_values
from customer_health.scoring.model_config import load_model_config

CONFIG = load_model_config()
AS_OF = date(2026, 11, 1)
TEMPLATES = {
    **{k: k.replace("_", " ") + " {value:.2f}" for k in CONFIG.signal_keys},
    "active_user_ratio": "active users {value:.0%} of seats",
    "open_tickets": "{value:.0f} open tickets",
    "payment_timeliness": "{value:.0%} of invoices paid on time",
    "engagement_trend": "logins {value:+.0%} vs before",
}


def frame(day: date, rows: list[dict]) -> pd.DataFrame:
    base = {"as_of_date": day, "plan": "growth", "tenure_days": 400, "arr": 20_000.0}
    data = pd.DataFrame([{**base, **r} for r in rows])
    for key in CONFIG.signal_keys:
        if key not in data:
            data[key] = np.nan
    return data


def healthy(**overrides) -> dict:
    return {
        "login_frequency": 3.0, "active_user_ratio": 0.7, "feature_breadth": 0.6, "engagement_trend": 0.1,
        "open_tickets": 1.0, "severity_mix": 0.1, "resolution_time_trend": -0.1, "howto_complaint_ratio": 0.7,
        "csat": 0.9, "payment_timeliness": 1.0, "contract_value_change": 0.05, "usage_billing_trend": 0.05,
        "nps": 8.5, "exec_sponsor_recency": 20.0, "outreach_response": 0.6, **overrides,
    }  # fmt: skip


def population(day: date, **target) -> pd.DataFrame:
    """40 healthy peers (so segment baselines exist) plus account T with ``target`` values."""
    peers = [{"account_key": f"P{i:03d}", **healthy(active_user_ratio=0.5 + i / 100)} for i in range(40)]
    return frame(day, [*peers, {"account_key": "T", **healthy(**target)}])


def explained(**target) -> pd.Series:
    scored = score_accounts(population(AS_OF, **target), CONFIG, templates=TEMPLATES)
    return scored.set_index("account_key").loc["T"]


def test_the_weakest_signals_are_named_first():
    row = explained(payment_timeliness=0.5, open_tickets=9.0)
    drivers = json.loads(row["drivers"])
    assert [d[0] for d in drivers["down"]][:2] == ["payment_timeliness", "open_tickets"]
    assert row["explanation"].startswith(f"Score {row['score']} ({row['zone']}), held down by: 50% of invoices paid on time")
    assert "9 open tickets" in row["explanation"]


def test_driver_points_add_up_to_the_distance_from_50():
    row = explained(payment_timeliness=0.5)
    drivers = json.loads(row["drivers"])
    points = [p for _s, p, _n in drivers["down"]]
    assert all(p < 0 for p in points) and points == sorted(points)
    assert all(0 <= n <= 100 for _s, _p, n in drivers["down"] + drivers["up"])


def test_an_account_with_nothing_pulling_down_is_explained_by_what_lifts_it():
    row = explained(**{k: v for k, v in healthy(active_user_ratio=0.95, login_frequency=9.0).items()})
    drivers = json.loads(row["drivers"])
    assert drivers["down"] == [] or row["explanation"].startswith(f"Score {row['score']} ({row['zone']}), held down")
    if not drivers["down"]:
        assert "lifted by:" in row["explanation"]


def test_a_score_that_fell_tells_what_changed_with_before_and_now_values():
    before = population(AS_OF - timedelta(days=30))
    today = population(AS_OF, active_user_ratio=0.34, payment_timeliness=0.6, engagement_trend=-0.4)
    past_scores = score_accounts(before, CONFIG, templates=TEMPLATES)
    history = past_scores[["account_key", "as_of_date", "computed_score", "zone"]]
    scored = score_accounts(today, CONFIG, history, previous_signals=before, templates=TEMPLATES)
    row = scored.set_index("account_key").loc["T"]
    was = int(past_scores.set_index("account_key").loc["T", "computed_score"])
    assert row["delta_30"] <= -5
    assert row["explanation"].startswith(f"Score {was} -> {row['score']} in 30 days: ")
    assert "active users 34% of seats (was 70%)" in row["explanation"]
    changes = json.loads(row["drivers"])["changes"]
    assert changes and all(points < 0 for _s, points in changes)


def test_low_coverage_is_said_in_the_sentence():
    today = frame(AS_OF, [{"account_key": "T", "nps": 9.0, "engagement_trend": 0.0}])
    row = score_accounts(today, CONFIG, templates=TEMPLATES).iloc[0]
    assert row["low_coverage"]
    assert row["explanation"].endswith("low data coverage (17% of the model's weight)")


def test_an_account_without_data_is_not_scored():
    scored = score_accounts(frame(AS_OF, [{"account_key": "T"}, {"account_key": "U", "nps": 9.0}]), CONFIG, templates=TEMPLATES)
    assert scored["account_key"].tolist() == ["U"]


def test_values_are_formatted_like_the_template_would():
    values = np.array([0.344, 0.345, np.nan, 1.0])
    assert format_values(values, ".0%").tolist() == [format(v, ".0%") for v in values[:2]] + ["n/a", "100%"]
    assert describe_values(np.array([3.0, 12.4]), "{value:.0f} open tickets").tolist() == ["3 open tickets", "12 open tickets"]


def test_drivers_are_valid_json_for_every_account():
    rng = np.random.default_rng(5)
    rows = [{"account_key": f"A{i}", **{k: rng.random() if rng.random() > 0.3 else np.nan for k in CONFIG.signal_keys}}
            for i in range(300)]  # fmt: skip
    scored = score_accounts(frame(AS_OF, rows), CONFIG, templates=TEMPLATES)
    for text in scored["drivers"]:
        assert set(json.loads(text)) == {"down", "up", "changes"}


def test_each_value_prints_with_its_own_sign():
    # Rounded to zero, a small fall and a small rise still read as they are, whatever other
    # accounts hold (a value's text must not depend on its batch or shard).
    assert describe_values(np.array([0.001, -0.001]), "logins {value:+.0%}").tolist() == ["logins +0%", "logins -0%"]
    assert describe_values(np.array([-0.001, 0.001]), "logins {value:+.0%}").tolist() == ["logins -0%", "logins +0%"]
    assert format_values(np.array([-0.001, 0.001]), ".0%").tolist() == ["-0%", "0%"]


def test_an_accounts_explanation_does_not_depend_on_row_order():
    rng = np.random.default_rng(11)
    rows = [{"account_key": f"A{i:03d}", **{k: rng.random() - 0.5 if rng.random() > 0.2 else np.nan
                                           for k in CONFIG.signal_keys}} for i in range(200)]  # fmt: skip
    today = frame(AS_OF, rows)
    before = frame(AS_OF - timedelta(days=30), rows).assign(engagement_trend=lambda f: -f["engagement_trend"])
    history = score_accounts(before, CONFIG, templates=TEMPLATES)[["account_key", "as_of_date", "computed_score", "zone"]]
    forward = score_accounts(today, CONFIG, history, previous_signals=before, templates=TEMPLATES)
    backward = score_accounts(today.iloc[::-1], CONFIG, history, previous_signals=before, templates=TEMPLATES)
    columns = ["score", "drivers", "explanation"]
    pd.testing.assert_frame_equal(
        forward.set_index("account_key")[columns], backward.set_index("account_key").loc[forward["account_key"], columns]
    )


def test_tied_drivers_go_to_the_signal_listed_first():
    from customer_health.scoring.explain import rank_drivers

    n_sig = len(CONFIG.signal_keys)
    normalized = np.asfortranarray(np.full((2, n_sig), 80.0))
    normalized[1] = 20.0
    weights = np.asfortranarray(np.full((2, n_sig), 1.0 / n_sig))
    drivers = rank_drivers(weights, normalized, None, CONFIG)
    assert drivers.up_index[0].tolist() == [0, 1, 2] and drivers.down_index[1].tolist() == [0, 1, 2]
    assert (drivers.down_index[0] == -1).all() and (drivers.up_index[1] == -1).all()


def test_rows_are_joined_even_when_a_text_holds_the_internal_separator():
    from customer_health.scoring.explain import join_rows

    parts = [(np.array(["a", "b\x00c"], dtype=object), np.array([0, 1, 1])), (np.array(["!"], dtype=object), np.zeros(3, int))]
    assert join_rows(parts, 3).tolist() == ["a!", "b\x00c!", "b\x00c!"]
