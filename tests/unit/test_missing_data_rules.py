"""Issue #18 item 1: missing data is never scored as data (one test per rule).

Each rule is checked through the real scoring path - ``score_accounts`` (normalize, compose,
explain) or ``composite_scores`` - on a population of accounts, against what the rule says:

* a NULL signal gives its weight to the present signals of its dimension;
* a dimension without any present signal drops out and its weight goes to the present
  dimensions, and the explanation says which dimensions had no data;
* a signal constant over the scored population on the date carries no weight that day (the
  same redistribution), and the explanation says so;
* an account without any informative signal has no score (no row), not a neutral 50.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from customer_health.scoring.engine import score_accounts
from customer_health.scoring.model_config import DIMENSIONS, load_model_config
from customer_health.scoring.score import composite_scores, constant_signals

CONFIG = load_model_config()
AS_OF = date(2026, 11, 1)
N = 60  # above baselines.min_segment_size: a real population
ESTABLISHED = [m.name for m in CONFIG.models].index("established")
MODEL = CONFIG.models[ESTABLISHED]


def population(**columns) -> pd.DataFrame:
    """N established accounts of one plan; each keyword is a signal column (scalar or per account)."""
    frame = pd.DataFrame(
        {
            "account_key": [f"001{i:015d}" for i in range(N)],
            "as_of_date": AS_OF,
            "plan": "growth",
            "tenure_days": 400.0,
            "arr": 12000.0,
        }
    )
    for key, value in columns.items():
        frame[key] = value
    return frame


def spread(low: float, high: float, seed: int) -> np.ndarray:
    """Distinct values per account (shuffled), so the signal is informative."""
    return np.random.default_rng(seed).permutation(np.linspace(low, high, N))


def weight_of(key: str) -> float:
    """The signal's configured weight within its dimension (established model)."""
    return MODEL.signal_weight(key, CONFIG.signal(key).dimension)


def test_a_null_signal_gives_its_weight_to_the_present_signals_of_its_dimension():
    login = spread(0.0, 20.0, 1)
    ratio = spread(0.0, 1.0, 2)
    frame = population(login_frequency=login, active_user_ratio=ratio, nps=spread(0.0, 10.0, 3))
    frame.loc[:9, "login_frequency"] = np.nan  # ten accounts without the signal
    scored = score_accounts(frame, CONFIG).set_index("account_key")

    normalized = _normalized(frame)
    for i in (0, 5, 20):
        key = frame["account_key"][i]
        lf, aur = normalized[i, CONFIG.signal_keys.index("login_frequency")], normalized[i, CONFIG.signal_keys.index("active_user_ratio")]
        w_lf, w_aur = weight_of("login_frequency"), weight_of("active_user_ratio")
        # Without login frequency, the present active-user ratio is the whole engagement dimension.
        expected = aur if np.isnan(lf) else (w_lf * lf + w_aur * aur) / (w_lf + w_aur)
        assert scored.loc[key, "engagement_score"] == pytest.approx(expected, abs=1e-3)
    # Coverage: the missing signal's share of the configured weight is not backed by data.
    lost = MODEL.dimension_weights["engagement"] * weight_of("login_frequency")
    assert scored["coverage"].iloc[0] == pytest.approx(scored["coverage"].iloc[20] - lost, abs=1e-6)


def test_a_dimension_without_data_drops_out_and_its_weight_goes_to_the_present_dimensions():
    frame = population(active_user_ratio=spread(0.0, 1.0, 4), payment_timeliness=spread(0.5, 1.0, 5))
    scored = score_accounts(frame, CONFIG).set_index("account_key")
    row = scored.iloc[0]
    assert np.isnan(row["support_score"]) and np.isnan(row["sentiment_score"])
    w_eng, w_fin = MODEL.dimension_weights["engagement"], MODEL.dimension_weights["financial"]
    composite = (w_eng * row["engagement_score"] + w_fin * row["financial_score"]) / (w_eng + w_fin)
    assert row["computed_score"] == int(np.floor(composite + 0.5))
    assert "no support or sentiment data (weight moved to the rest)" in row["explanation"]
    # The composite of the same normalized values with the empty dimensions' signals present
    # at any value would differ: their weight really left.
    assert scored["computed_score"].nunique() > 1


def test_a_signal_constant_over_the_population_carries_no_weight_that_day():
    ratio = spread(0.0, 1.0, 6)
    varied = population(active_user_ratio=ratio, open_tickets=spread(0.0, 6.0, 7))
    constant = population(active_user_ratio=ratio, open_tickets=0.0)  # no open ticket anywhere
    without = population(active_user_ratio=ratio)

    assert not constant_signals(_normalized(varied), CONFIG.baselines.min_segment_size)[CONFIG.signal_keys.index("open_tickets")]
    assert constant_signals(_normalized(constant), CONFIG.baselines.min_segment_size)[CONFIG.signal_keys.index("open_tickets")]
    scored_constant = score_accounts(constant, CONFIG)
    scored_without = score_accounts(without, CONFIG)
    # Weighted like a missing signal: the same scores as if nobody had the signal.
    assert scored_constant["computed_score"].tolist() == scored_without["computed_score"].tolist()
    assert scored_constant["coverage"].tolist() == scored_without["coverage"].tolist()
    assert scored_constant["support_score"].isna().all()
    assert scored_constant["explanation"].str.contains("not weighted today, the same for every account: open support tickets").all()
    # While it varies, it is weighted.
    assert score_accounts(varied, CONFIG)["support_score"].notna().all()


def test_a_handful_of_equal_values_is_not_a_constant():
    few = np.full((CONFIG.baselines.min_segment_size - 1, len(CONFIG.signals)), 70.0)
    assert not constant_signals(few, CONFIG.baselines.min_segment_size).any()
    result = composite_scores(few, np.full(len(few), ESTABLISHED), CONFIG)
    assert (result.score == 70).all()


def test_an_account_without_any_data_has_no_score_not_a_neutral_50():
    frame = population(active_user_ratio=spread(0.0, 1.0, 8), nps=spread(0.0, 10.0, 9))
    frame.loc[:2, ["active_user_ratio", "nps"]] = np.nan  # three accounts with nothing at all
    scored = score_accounts(frame, CONFIG)
    assert len(scored) == N - 3
    assert not scored["account_key"].isin(frame["account_key"][:3]).any()
    assert scored["score"].notna().all()

    result = composite_scores(_normalized(frame), np.full(N, ESTABLISHED), CONFIG)
    assert np.isnan(result.score[:3]).all() and (result.coverage[:3] == 0).all()
    assert result.absent_dimensions[:3].sum() == sum(MODEL.dimension_weights[d] > 0 for d in DIMENSIONS) * 3


def test_an_account_whose_only_data_is_constant_has_no_score():
    frame = population(active_user_ratio=spread(0.0, 1.0, 10), open_tickets=0.0)
    frame.loc[:1, "active_user_ratio"] = np.nan  # these two hold only the constant signal
    scored = score_accounts(frame, CONFIG)
    assert len(scored) == N - 2


def _normalized(frame: pd.DataFrame) -> np.ndarray:
    from customer_health.scoring.normalize import normalize_signals

    return normalize_signals(frame, CONFIG).values


def test_the_daily_run_writes_no_row_for_an_account_without_data_and_reports_it(sqlite_warehouse_url):
    from sqlalchemy import select

    from customer_health.scoring.engine import score_date
    from customer_health.warehouse.engine import engine_for
    from customer_health.warehouse.schema import health_scores

    frame = population(active_user_ratio=spread(0.0, 1.0, 11), nps=spread(0.0, 10.0, 12))
    frame.loc[:1, ["active_user_ratio", "nps"]] = np.nan
    engine = engine_for(sqlite_warehouse_url)
    report = score_date(engine, AS_OF, CONFIG, frame)
    with engine.connect() as conn:
        written = {r[0] for r in conn.execute(select(health_scores.c.account_key))}
    assert written == set(frame["account_key"][2:])
    assert (report.accounts, report.unscored) == (N - 2, 2)
    assert "2 without data, not scored" in str(report)
