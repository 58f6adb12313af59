"""Degenerate segments: the open end of a signal's range moves, never the good end."""

from __future__ import annotations

import numpy as np

from customer_health.scoring.normalize import normalize_signals
from tests.unit.test_normalize import CONFIG, accounts, column


def test_no_open_tickets_is_the_best_even_when_most_of_the_segment_has_none():
    # 95 % of the segment has no open ticket: p25 = p95 = 0, a degenerate range.
    counts = [0.0] * 95 + [1.0, 2.0, 3.0, 4.0, 6.0]
    result = normalize_signals(accounts(len(counts), open_tickets=counts), CONFIG)
    scores = column(result, "open_tickets")
    assert np.all(scores[:95] == 100.0)
    assert scores[-1] < scores[95] < 100.0


def test_a_lower_is_better_signal_never_scores_zero_at_its_best_value():
    result = normalize_signals(accounts(50, open_tickets=[0.0] * 50), CONFIG)
    assert np.all(column(result, "open_tickets") == 100.0)
