"""Hand-written SVG charts, rendered on the server: no chart library, no CDN, no script.

Each function returns an ``<svg>`` element as ``Markup`` for the templates. Every mark has a
``<title>`` (the browser's tooltip, and the text a screen reader reads), every chart a
``role="img"`` and an ``aria-label``. Colours are the zone colours of the dashboard's CSS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from markupsafe import Markup, escape

ZONE_COLOURS = {"Healthy": "#2f9e62", "Neutral": "#d9b221", "At Risk": "#ef8a2c", "Critical": "#d64541"}
BAND_COLOURS = {"Healthy": "#e3f4ea", "Neutral": "#fbf3d6", "At Risk": "#fde8d4", "Critical": "#f9dcdb"}
OTHER = "#9aa5b1"


def _c(zone: str) -> str:
    return ZONE_COLOURS.get(zone, OTHER)


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def zone_bar(zones: Sequence[Mapping[str, Any]], *, width: int = 640, height: int = 34, label: bool = True) -> Markup:
    """One horizontal bar split by zone (``zones``: dicts with ``zone`` and ``accounts``)."""
    total = sum(z["accounts"] for z in zones)
    parts = [f'<svg class="chart zone-bar" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="accounts by zone" preserveAspectRatio="none">']
    x = 0.0
    for z in zones:
        if not total or not z["accounts"]:
            continue
        w = width * z["accounts"] / total
        tip = escape(f'{z["zone"]}: {z["accounts"]:,} accounts ({_pct(z["accounts"], total)})')
        parts.append(f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="{height}" fill="{_c(z["zone"])}"><title>{tip}</title></rect>')
        if label and w > 70:
            parts.append(f'<text x="{x + 6:.2f}" y="{height / 2 + 4:.1f}" class="bar-label">{escape(z["zone"])} '
                         f'{_pct(z["accounts"], total)}</text>')
        x += w
    if not total:
        parts.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#eef1f4"><title>no accounts</title></rect>')
    parts.append("</svg>")
    return Markup("".join(parts))


def mini_zone_bar(counts: Mapping[str, int], zone_names: Sequence[str], *, width: int = 220, height: int = 12) -> Markup:
    """A small inline bar for a table row (``counts``: zone name -> accounts)."""
    return zone_bar([{"zone": z, "accounts": counts.get(z, 0)} for z in zone_names], width=width, height=height, label=False)


def zone_history(history: Sequence[Mapping[str, Any]], zone_names: Sequence[str], *, width: int = 720, height: int = 240) -> Markup:
    """Stacked columns: the share of accounts in each zone at each history point."""
    left, bottom, top = 40, 26, 8
    plot_w, plot_h = width - left - 8, height - bottom - top
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="zone distribution over time">']
    for pct in (0, 25, 50, 75, 100):
        y = top + plot_h * (1 - pct / 100)
        parts.append(f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">{pct}%</text>')
    n = len(history)
    if n:
        slot = plot_w / n
        bar = max(2.0, slot * 0.72)
        for i, point in enumerate(history):
            total = point["accounts"] or 0
            x = left + i * slot + (slot - bar) / 2
            y = top + plot_h
            for zone in reversed(list(zone_names)):
                count = point["zones"].get(zone, 0)
                if not total or not count:
                    continue
                h = plot_h * count / total
                y -= h
                tip = escape(f'{point["as_of_date"]}: {zone} {count:,} ({_pct(count, total)})')
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{_c(zone)}"><title>{tip}</title></rect>')
            if i % max(1, n // 7) == 0 or i == n - 1:
                parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - 8}" class="axis" text-anchor="middle">'
                             f'{escape(_short_date(point["as_of_date"]))}</text>')
    else:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" class="axis" text-anchor="middle">no history yet</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _short_date(value: Any) -> str:
    return value.strftime("%d %b") if isinstance(value, date) else str(value)


def score_history(
    history: Sequence[Mapping[str, Any]],
    zones: Sequence[Any],
    *,
    actions: Sequence[Mapping[str, Any]] = (),
    width: int = 760,
    height: int = 260,
) -> Markup:
    """An account's score over time on the zone bands; dashed: the model's score under an override.

    Action trigger dates are ticks along the bottom, each with the action in its tooltip.
    """
    left, right, top, bottom = 34, 10, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="score history">']

    def y_of(score: float) -> float:
        return top + plot_h * (1 - score / 100)

    for zone in zones:
        y1, y2 = y_of(zone.high + (1 if zone.high < 100 else 0)), y_of(zone.low)
        parts.append(f'<rect x="{left}" y="{y1:.1f}" width="{plot_w}" height="{y2 - y1:.1f}" fill="{BAND_COLOURS.get(zone.name, "#f2f4f6")}">'
                     f'<title>{escape(zone.name)} {zone.low}-{zone.high}</title></rect>'
                     f'<text x="{left + 6}" y="{y1 + 13:.1f}" class="band-label">{escape(zone.name)} {zone.low}-{zone.high}</text>')
    for tick in (0, 25, 50, 75, 100):
        parts.append(f'<text x="{left - 5}" y="{y_of(tick) + 4:.1f}" class="axis" text-anchor="end">{tick}</text>')
    if not history:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" class="axis" text-anchor="middle">no scores yet</text></svg>')
        return Markup("".join(parts))
    first, last = history[0]["as_of_date"], history[-1]["as_of_date"]
    span = max(1, (last - first).days)

    def x_of(day: date) -> float:
        return left + plot_w * (day - first).days / span

    effective = " ".join(f"{x_of(p['as_of_date']):.1f},{y_of(p['score']):.1f}" for p in history)
    overridden = [p for p in history if p.get("override_id") is not None]
    if overridden:
        model = " ".join(f"{x_of(p['as_of_date']):.1f},{y_of(p['computed_score']):.1f}" for p in history)
        parts.append(f'<polyline points="{model}" class="line-model"><title>model score (before overrides)</title></polyline>')
    parts.append(f'<polyline points="{effective}" class="line-score"><title>health score</title></polyline>')
    latest = history[-1]
    latest_tip = escape(f"{latest['as_of_date']}: {latest['score']} ({latest['zone']})")
    parts.append(f'<circle cx="{x_of(latest["as_of_date"]):.1f}" cy="{y_of(latest["score"]):.1f}" r="4" fill="{_c(latest["zone"])}" '
                 f'stroke="#1f2933"><title>{latest_tip}</title></circle>')
    for action in actions:
        day = action.get("trigger_date")
        if not isinstance(day, date) or not first <= day <= last:
            continue
        x = x_of(day)
        tip = escape(f'{day}: {action["action_type"]} ({action["status"]})')
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 8}" class="action-tick">'
                     f'<title>{tip}</title></line>')
    for day in (first, last):
        parts.append(f'<text x="{x_of(day):.1f}" y="{height - 6}" class="axis" text-anchor="{"start" if day == first else "end"}">'
                     f'{escape(day.isoformat())}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def rate_bars(rows: Sequence[Mapping[str, Any]], *, baseline: float | None = None, width: int = 640) -> Markup:
    """Horizontal bars of a rate per group (``rows``: ``label``, ``rate``, ``n``); a dashed baseline."""
    row_h, label_w = 26, 170
    height = row_h * max(1, len(rows)) + 8
    plot_w = width - label_w - 120
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" role="img" aria-label="recovery rate by group">']
    for i, row in enumerate(rows):
        y = 4 + i * row_h
        rate = row.get("rate")
        parts.append(f'<text x="{label_w - 8}" y="{y + 16}" class="axis" text-anchor="end">{escape(row["label"])}</text>')
        if rate is None:
            parts.append(f'<text x="{label_w + 4}" y="{y + 16}" class="axis">not enough history</text>')
            continue
        w = plot_w * rate
        tip = escape(f'{row["label"]}: {rate:.0%} recovered (of {row["n"]:,} episodes)')
        parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 10}" class="rate-bar {escape(row.get("kind", ""))}">'
                     f'<title>{tip}</title></rect>'
                     f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" class="axis">{rate:.0%} (n={row["n"]:,})</text>')
    if baseline is not None:
        x = label_w + plot_w * baseline
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height}" class="baseline"><title>'
                     f'{escape(f"no action: {baseline:.0%}")}</title></line>')
    parts.append("</svg>")
    return Markup("".join(parts))


def meter(value: float | None, *, width: int = 160, height: int = 10) -> Markup:
    """A 0-100 meter for a dimension or signal score."""
    if value is None:
        return Markup('<span class="muted">no data</span>')
    v = max(0.0, min(100.0, float(value)))
    zone = "Healthy" if v >= 75 else "Neutral" if v >= 50 else "At Risk" if v >= 25 else "Critical"
    return Markup(f'<svg class="meter" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
                  f'aria-label="{v:.0f} of 100"><rect width="{width}" height="{height}" rx="3" fill="#eef1f4"/>'
                  f'<rect width="{width * v / 100:.1f}" height="{height}" rx="3" fill="{_c(zone)}"/>'
                  f'<title>{v:.0f} / 100</title></svg>')
