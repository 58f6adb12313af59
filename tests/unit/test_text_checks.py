"""The checker of texts for people catches what CSMs were sent before, and passes good sentences."""

from __future__ import annotations

import pytest

from tests.text_checks import problems


@pytest.mark.parametrize(
    "text",
    [
        "Top drivers: ['exec_sponsor_recency', -2.2, 0]; ['resolution_time_trend', -1.5, 0]",
        "slipped from Healthy to Neutral: score 74, up 1 points in 30 days",
        "1 support tickets open",
        "3 open support ticket",
        "Drivers: {'down': []}",
        "coverage None",
        "{value:.0f} days since the last touch",
    ],
)
def test_texts_people_were_sent_before_are_caught(text):
    assert problems(text)


@pytest.mark.parametrize(
    "text",
    [
        ":rotating_light: *Executive escalation: Acme is Critical* (health score 12)",
        "score 74, down 1 point from 75 on 2026-09-30; up 1 point over 30 days.",
        "Pulling the score down: executive-sponsor contact (-2.2 points; 8/100 vs similar accounts).",
        "1 open support ticket, 0 open support tickets, 12 days since the last executive-sponsor touch",
        "1 status, 1 analysis",
    ],
)
def test_good_sentences_pass(text):
    assert problems(text) == []
