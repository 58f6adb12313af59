"""Sentences people read agree in number, and source text cannot break out of HTML or Slack."""

from __future__ import annotations

import pytest

from customer_health import wording
from customer_health.scoring.signal_catalog import SIGNALS, fill_template


@pytest.mark.parametrize(
    ("n", "noun", "text"),
    [(0, "ticket", "0 tickets"), (1, "ticket", "1 ticket"), (2, "ticket", "2 tickets"), (1.0, "day", "1 day"),
     (1.5, "day", "1.5 days"), (1, "reply", "1 reply"), (3, "reply", "3 replies"), (12000, "account", "12,000 accounts")],
)
def test_counts_agree_with_their_nouns(n, noun, text):
    assert wording.count(n, noun) == text


@pytest.mark.parametrize(
    ("value", "signed", "text"),
    [(1, False, "1 point"), (-1.0, True, "-1 point"), (12, False, "12 points"), (-2.24, True, "-2.2 points"),
     (0.04, True, "0 points"), (-0.04, False, "0 points"), (1.04, True, "+1 point"), (0.96, False, "1 point")],
)
def test_points_print_as_people_read_them(value, signed, text):
    assert wording.points(value, signed=signed) == text


def test_every_signal_reading_agrees_with_its_value():
    """0, 1 and 2 of every counted thing: "1 open support ticket", "2 open support tickets"."""
    readings = {key: [fill_template(spec.description, v) for v in (0.0, 1.0, 2.0)] for key, spec in SIGNALS.items()}
    assert readings["open_tickets"] == ["0 open support tickets", "1 open support ticket", "2 open support tickets"]
    assert readings["exec_sponsor_recency"][1] == "1 day since the last executive-sponsor touch"
    assert readings["payment_failures"][1] == "1 failed payment or dispute (last 180 days)"
    assert readings["payment_failures"][2] == "2 failed payments or disputes (last 180 days)"
    for key, texts in readings.items():
        for text in texts:
            assert "{" not in text and "}" not in text, (key, text)


def test_slack_control_sequences_and_html_are_escaped():
    assert wording.slack("<!channel> A&B <https://x.test|y>") == "&lt;!channel&gt; A&amp;B &lt;https://x.test|y&gt;"
    assert wording.html('<script>alert("x")</script> & co') == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co"
