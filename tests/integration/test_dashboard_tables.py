"""Structured documents on the dashboard's pages (``dashboard.tables``): tables, never Python reprs.

The documents here are the registry's and the audit's own (``Recalibration.metrics_for_registry``
and ``AuditResult.summary`` shapes are exercised end to end in ``test_dashboard_api``); these
cases pin the edges: nesting, empty parts, non-finite numbers, markup in values.
"""

from __future__ import annotations

import re

from customer_health.dashboard.tables import FOLD_VALUES, comparison, render
from tests.text_checks import problems


def visible(markup: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", str(markup)).split())


def test_nested_documents_become_tables_and_lists_never_reprs():
    document = {
        "folds": [{"train_dates": ["2026-07-01", "2026-08-01"], "score_calibration": {"knots": [[0, 0], [55.6661, 49.5]]}}],
        "notes": [],
        "weights": {"smb": {"pooled_fit": True, "fit": None}},
        "lift": float("nan"),
    }
    text = visible(render(document))
    assert "2026-07-01, 2026-08-01" in text
    assert "55.67, 49.5" in text  # a list of lists: one item per line, each a plain list
    assert "pooled fit yes" in text and "notes none" in text
    raw = [p for p in problems(text) if p.startswith(("a raw list", "a raw dict", "a Python or NumPy value"))]
    assert raw == [] and "True" not in text and "[" not in text and "{" not in text


def test_values_are_escaped():
    html = str(render({"note": "<script>alert(1)</script>", "<b>key</b>": 1}))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>" not in html


def test_a_large_part_is_folded_and_a_small_one_is_not():
    small = str(render({"holdout": {"old": {"roc_auc": 0.8}, "new": {"roc_auc": 0.83}}}))
    big = str(render({"folds": [{"test_rows": i} for i in range(FOLD_VALUES + 1)]}))
    assert "<details>" not in small
    assert f"<details><summary>show {FOLD_VALUES + 1} rows" in big


def test_an_old_versus_new_comparison_leads_with_the_headline_metrics():
    rows = comparison({"churners": 2, "roc_auc": 0.79, "extra": 1}, {"roc_auc": 0.83, "churners": 2})
    assert [r["metric"] for r in rows] == ["ROC AUC", "churners", "extra"]
    assert rows[0] == {"metric": "ROC AUC", "old": 0.79, "new": 0.83}
    assert rows[2]["new"] is None
