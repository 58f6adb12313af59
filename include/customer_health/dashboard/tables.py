"""Structured data for people: JSON documents (model metrics, audit results) as HTML tables.

The model registry and the audit store JSON documents of any depth (a proposal's held-out
metrics, cross-validation folds with their fitted calibration, per-segment weights). A page
never prints such a value with ``str()`` - that shows Python's ``{'knots': [...]}`` - but
through ``render``: a mapping becomes a two-column table, a list of mappings a table with a
column per key, a list of plain values a comma-separated list, and numbers are formatted.
Large nested parts fold into a ``<details>`` element so a page stays readable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from markupsafe import Markup, escape

MAX_DEPTH = 8  # deeper than any stored document; below it a value is shown as JSON text
FOLD_VALUES = 24  # a nested part holding more plain values than this starts folded

# The headline metrics in the order people read them (the rest follow in stored order).
HEADLINE = ("roc_auc", "sensitivity", "specificity", "precision", "top_decile_lift", "observations", "churners",
            "meets_targets")  # fmt: skip

# Keys whose plain-English name is not just the key with spaces.
LABELS = {
    "roc_auc": "ROC AUC",
    "top_decile_lift": "top-decile lift",
    "meets_targets": "meets targets",
    "holdout": "held-out comparison",
    "holdout_full": "held-out metrics in full",
    "C": "regularisation (C)",
}


def label(key: Any) -> str:
    """A document key as a column or row heading."""
    text = str(key)
    return LABELS.get(text, text.replace("_", " "))


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | date)


def scalar(value: Any) -> Markup:
    """One plain value: numbers formatted, text escaped, ``None`` as a dash."""
    if value is None:
        return Markup('<span class="muted">-</span>')
    if isinstance(value, bool):
        return Markup("yes" if value else "no")
    if isinstance(value, int):
        return Markup(f"{value:,}")
    if isinstance(value, float):
        if not math.isfinite(value):
            return Markup('<span class="muted">-</span>')
        if value == int(value) and abs(value) < 1e15:
            return Markup(f"{int(value):,}")
        return Markup(f"{value:.4g}" if abs(value) < 1000 else f"{value:,.1f}")
    if isinstance(value, datetime):
        return escape(value.strftime("%Y-%m-%d %H:%M"))
    if isinstance(value, date):
        return escape(value.isoformat())
    return escape(str(value))


def _rows_table(rows: Sequence[Mapping[str, Any]], depth: int) -> Markup:
    columns: list[Any] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    head = "".join(f"<th>{escape(label(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td{_num_class(row.get(c))}>{render(row.get(c), depth + 1)}</td>' for c in columns) + "</tr>"
        for row in rows
    )
    return Markup(f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def _num_class(value: Any) -> str:
    return ' class="num"' if isinstance(value, int | float) and not isinstance(value, bool) else ""


def values_in(value: Any) -> int:
    """How many plain values a document part holds (its size on a page)."""
    if isinstance(value, Mapping):
        return sum(values_in(v) for v in value.values())
    if isinstance(value, Sequence) and not isinstance(value, str):
        return sum(values_in(v) for v in value)
    return 1


def _folded(item: Any, content: Markup) -> Markup:
    size = values_in(item)
    if size <= FOLD_VALUES:
        return content
    what = f"{len(item):,} rows" if isinstance(item, Sequence) else f"{len(item):,} entries"
    return Markup(f"<details><summary>show {what} ({size:,} values)</summary>{content}</details>")


def render(value: Any, depth: int = 0) -> Markup:
    """``value`` (a JSON document or part of one) as HTML: tables, lists and formatted values."""
    if _is_scalar(value):
        return scalar(value)
    if depth >= MAX_DEPTH:
        return Markup("<code>{}</code>").format(json.dumps(value, default=str, sort_keys=True))
    if isinstance(value, Mapping):
        if not value:
            return Markup('<span class="muted">none</span>')
        rows = []
        for key, item in value.items():
            inner = render(item, depth + 1)
            if not _is_scalar(item):
                inner = _folded(item, inner)
            rows.append(f'<tr><th scope="row">{escape(label(key))}</th><td{_num_class(item)}>{inner}</td></tr>')
        return Markup('<table class="kv">' + "".join(rows) + "</table>")
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = list(value)
        if not items:
            return Markup('<span class="muted">none</span>')
        if all(isinstance(i, Mapping) for i in items):
            return _rows_table(items, depth)
        if all(_is_scalar(i) for i in items):
            return Markup(", ").join(scalar(i) for i in items)
        return Markup("<ol>" + "".join(f"<li>{render(i, depth + 1)}</li>" for i in items) + "</ol>")
    return escape(str(value))


def comparison(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of an old-vs-new table: each metric either side holds, with both values."""
    keys = [k for k in HEADLINE if k in old or k in new]
    keys += [k for k in (*old, *new) if k not in keys]
    return [{"metric": label(k), "old": old.get(k), "new": new.get(k)} for k in keys]
