"""Properties of the model that hold for any input (hypothesis).

Monotonicity is stated with the baselines held fixed. With population baselines an account's
yardstick is its peers' percentiles on the same date, so improving one account can move the
percentile itself, and it does lower its peers' normalized values - that is what "relative to
the segment" means. Held fixed (``normalize_signals(..., baselines=...)``), every signal's
0-100 value is a clipped linear map rising in its good direction, and the weights depend only
on which signals are present, so improving any one present signal never lowers the score.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customer_health.scoring.engine import score_accounts
from customer_health.scoring.model_config import load_model_config
from customer_health.scoring.normalize import normalize_signals, segment_model_index
from customer_health.scoring.score import composite_scores

CONFIG = load_model_config()
AS_OF = date(2026, 11, 1)
KEYS = CONFIG.signal_keys

value = st.one_of(
    st.none(),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0]),
)
account = st.fixed_dictionaries(
    {
        "plan": st.sampled_from(["starter", "growth", "enterprise", None]),
        "tenure_days": st.one_of(st.none(), st.integers(0, 5000)),
        "arr": st.one_of(st.none(), st.floats(0, 1e7)),
        **{k: value for k in KEYS},
    }
)


def to_frame(rows: list[dict], day: date = AS_OF) -> pd.DataFrame:
    frame = pd.DataFrame(rows).astype({k: float for k in KEYS})
    frame.insert(0, "account_key", [f"A{i:05d}" for i in range(len(rows))])
    frame.insert(1, "as_of_date", day)
    return frame


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.lists(account, min_size=1, max_size=40))
def test_score_is_always_an_integer_from_0_to_100_with_a_zone(rows):
    scored = score_accounts(to_frame(rows), CONFIG)
    assert scored["score"].between(0, 100).all() and scored["computed_score"].between(0, 100).all()
    assert scored["zone"].notna().all()
    assert scored["coverage"].between(0, 1).all()


@SETTINGS
@given(
    st.lists(account, min_size=1, max_size=30),
    st.data(),
)
def test_improving_one_signal_never_lowers_the_score_with_baselines_held_fixed(rows, data):
    frame = to_frame(rows)
    held = normalize_signals(frame, CONFIG)
    row = data.draw(st.integers(0, len(rows) - 1))
    key = data.draw(st.sampled_from(KEYS))
    current = frame.loc[row, key]
    if not np.isfinite(current):
        return  # from "no data" to a value is not an improvement but new evidence
    step = data.draw(st.floats(min_value=0.0, max_value=1e6))
    better = frame.copy()
    better.loc[row, key] = current + (step if CONFIG.signal(key).higher_is_better else -step)
    again = normalize_signals(better, CONFIG, baselines=held.baselines)
    models = segment_model_index(frame["tenure_days"].to_numpy(dtype=float, na_value=np.nan), CONFIG)
    before = composite_scores(held.values, models, CONFIG)
    after = composite_scores(again.values, models, CONFIG)
    assert after.raw_score[row] >= before.raw_score[row] - 1e-9
    assert after.score[row] >= before.score[row]


@SETTINGS
@given(
    st.lists(account, min_size=1, max_size=20),
    st.lists(st.tuples(st.integers(0, 19), st.integers(-120, 120), st.integers(0, 100)), max_size=60),
)
def test_adding_future_history_does_not_change_todays_result(rows, past):
    frame = to_frame(rows)
    keys = frame["account_key"].tolist()
    history = pd.DataFrame(
        [(keys[i % len(keys)], AS_OF - timedelta(days=d), s, "Neutral") for i, d, s in past if d > 0],
        columns=["account_key", "as_of_date", "computed_score", "zone"],
    )
    future = pd.DataFrame(
        [(keys[i % len(keys)], AS_OF + timedelta(days=-d), s, "Critical") for i, d, s in past if d <= 0],
        columns=["account_key", "as_of_date", "computed_score", "zone"],
    )
    without = score_accounts(frame, CONFIG, history)
    with_future = score_accounts(frame, CONFIG, pd.concat([history, future], ignore_index=True))
    pd.testing.assert_frame_equal(without, with_future)


@SETTINGS
@given(st.lists(account, min_size=1, max_size=30))
def test_scoring_is_deterministic(rows):
    frame = to_frame(rows)
    pd.testing.assert_frame_equal(score_accounts(frame, CONFIG), score_accounts(frame.copy(), CONFIG))
