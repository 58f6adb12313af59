"""The audit report: one self-contained HTML file that opens without network access.

Plots are drawn with matplotlib (Agg backend, no display) and embedded as base64 PNG
``data:`` URIs; styles are inline; there is no script, font or stylesheet to fetch. The report
shows the headline metrics against the seed targets, the ROC curve, the observed churn rate per
10-point score band (calibration), the score distributions of churners and retained accounts,
churn by zone, and the tables of false negatives (with the drivers their score carried) and
false positives. With a recalibration, a side-by-side of the current and proposed model on the
held-out snapshots is added.

Reports go to ``.local/reports`` unless a folder is given (``report_dir``) or the
``CUSTOMER_HEALTH_REPORTS_DIR`` environment variable names another one.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from customer_health.validation.metrics import SENSITIVITY_TARGET, SPECIFICITY_TARGET, roc_curve

if TYPE_CHECKING:
    from customer_health.validation.audit import AuditResult

REPORTS_DIR_ENV = "CUSTOMER_HEALTH_REPORTS_DIR"


def reports_dir(report_dir: str | Path | None = None) -> Path:
    """Where reports go: ``report_dir``, else ``$CUSTOMER_HEALTH_REPORTS_DIR``, else ``.local/reports``."""
    if report_dir:
        return Path(report_dir)
    if os.environ.get(REPORTS_DIR_ENV):
        return Path(os.environ[REPORTS_DIR_ENV])
    from customer_health.settings import local_dir

    return local_dir() / "reports"


def report_filename(model_version: str, window_start: Any, window_end: Any, kind: str = "audit") -> str:
    """``model_audit_<version>_<start>_<end>.html`` (safe characters only)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_version)
    return f"model_{kind}_{safe}_{window_start}_{window_end}.html"


# --------------------------------------------------------------------------- plots
def _figure_png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def roc_plot(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], threshold_points: Sequence[tuple[str, float, float]] = ()) -> str:
    """ROC curves ``(label, scores, churned)`` as a PNG data URI, with the threshold's points."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.4))
    ax.plot([0, 1], [0, 1], linestyle=":", color="#999", label="chance")
    for label, scores, churned in curves:
        if np.any(churned) and not np.all(churned):
            fpr, tpr, _ = roc_curve(scores, churned)
            ax.step(fpr, tpr, where="post", label=label)
    for label, fpr, tpr in threshold_points:
        if not (math.isnan(fpr) or math.isnan(tpr)):
            ax.plot([fpr], [tpr], marker="o", linestyle="", label=label)
    ax.set_xlabel("false-positive rate (1 - specificity)")
    ax.set_ylabel("true-positive rate (sensitivity)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("ROC: lower score = more risk")
    return _figure_png(fig)


def calibration_plot(bands: Sequence[dict[str, Any]]) -> str:
    """Observed churn rate per score band (bars) with the number of observations (labels)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    labels = [b["band"] for b in bands]
    rates = [0.0 if b["churn_rate"] is None or math.isnan(b["churn_rate"]) else b["churn_rate"] for b in bands]
    bars = ax.bar(labels, rates, color="#c0504d")
    for bar, b in zip(bars, bands, strict=True):
        ax.annotate(f"n={b['accounts']}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7)
    ax.set_xlabel("health score band")
    ax.set_ylabel("observed churn rate")
    ax.set_title("Calibration: churn should fall as the score rises")
    ax.tick_params(axis="x", labelrotation=45)
    return _figure_png(fig)


def distribution_plot(scores: np.ndarray, churned: np.ndarray, threshold: int) -> str:
    """Score histograms of churners and retained accounts (density), with the threshold line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.arange(0, 105, 5)
    ax.hist(scores[~churned], bins=bins, density=True, alpha=0.55, label=f"retained (n={int((~churned).sum())})", color="#4f81bd")
    ax.hist(scores[churned], bins=bins, density=True, alpha=0.55, label=f"churned (n={int(churned.sum())})", color="#c0504d")
    ax.axvline(threshold + 0.5, color="#333", linestyle="--", label=f"flagged <= {threshold}")
    ax.set_xlabel("health score at the snapshot")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.set_title("Score distribution: churners vs retained")
    return _figure_png(fig)


# --------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} .ok{color:#1a7f37;font-weight:600} .bad{color:#b42318;font-weight:600}
.muted{color:#666;font-size:12px} .plots img{margin:6px 12px 6px 0;border:1px solid #eee}
.warning{background:#fef3f2;border:1px solid #b42318;color:#b42318;padding:8px 12px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _pct(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1%}"


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _target(value: Any, target: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<span class="muted">n/a</span>'
    cls = "ok" if value >= target else "bad"
    return f'<span class="{cls}">{value:.1%}</span> <span class="muted">(target {target:.0%})</span>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], raw_html: bool = False) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if raw_html else _e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _drivers_cell(items: Sequence[str] | None) -> str:
    return "<br>".join(_e(d) for d in items or []) or '<span class="muted">none stored</span>'


def _listing_table(items: Sequence[dict[str, Any]], limit: int = 100) -> str:
    if not items:
        return '<p class="muted">None.</p>'
    rows = [
        (
            _e(i["account_key"]),
            _e(i["snapshot_date"]),
            _e(i["score"]),
            _e(i["zone"]),
            _e(i.get("churned_on") or ""),
            _drivers_cell(i.get("held_down_by")),
            _drivers_cell(i.get("held_up_by")),
        )
        for i in items[:limit]
    ]
    more = f'<p class="muted">{len(items) - limit} more not shown.</p>' if len(items) > limit else ""
    headers = ["account", "snapshot", "score", "zone", "churned on", "pulled down by", "held up by"]
    return _table(headers, rows, raw_html=True) + more


def _metrics_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    cm = m["confusion"]
    return [
        ("observations (account x snapshot)", _e(m["observations"])),
        ("churners", f"{m['churners']} ({_pct(m['churn_rate'])})"),
        ("sensitivity (churners flagged)", _target(m["sensitivity"], SENSITIVITY_TARGET)),
        ("specificity (retained not flagged)", _target(m["specificity"], SPECIFICITY_TARGET)),
        ("precision (flagged that churned)", _pct(m["precision"])),
        ("ROC AUC", _num(m["roc_auc"])),
        ("top-decile lift", _num(m["top_decile_lift"], 2)),
        ("confusion (TP / FP / TN / FN)", f"{cm['tp']} / {cm['fp']} / {cm['tn']} / {cm['fn']}"),
        ("calibration monotone", "yes" if m["calibration_monotone"] else '<span class="bad">no</span>'),
    ]


def comparison_table(old: dict[str, Any], new: dict[str, Any], old_label: str, new_label: str) -> str:
    """Old vs new metrics side by side (HTML)."""
    keys = [
        ("ROC AUC", "roc_auc", _num),
        ("sensitivity", "sensitivity", _pct),
        ("specificity", "specificity", _pct),
        ("precision", "precision", _pct),
        ("top-decile lift", "top_decile_lift", lambda v: _num(v, 2)),
        ("observations", "observations", _e),
        ("churners", "churners", _e),
    ]
    rows = [(label, fmt(old.get(key)), fmt(new.get(key))) for label, key, fmt in keys]
    return _table(["metric", old_label, new_label], rows, raw_html=True)


def baseline_table(c: dict[str, Any]) -> str:
    """The model and the plain logistic regression on the raw signals, on the same held-out rows."""
    from customer_health.validation.baseline import BASELINE_NAME

    if c.get("skipped"):
        return f"<p>Baseline ({_e(BASELINE_NAME)}) not computed: {_e(c['skipped'])}</p>"
    intro = (
        f"<p>A {_e(BASELINE_NAME)} (median-imputed with missing indicators, standardized, L2), fitted for each "
        f"held-out snapshot only on snapshots whose horizon ended before it, and the model's scores, on the same "
        f"{_e(c['rows'])} rows ({_e(c['churners'])} churners; snapshots {_e(', '.join(c.get('test_dates') or []))}). "
        f"Sensitivity and specificity at the matching cut: both flag {_e(c['flagged'])} rows "
        f"(the model's score &lt;= {_e(c['threshold'])}).</p>"
    )
    rows = [
        (_e(c.get("model_label") or "model"), _num(c.get("model_auc")), _pct(c.get("model_sensitivity")), _pct(c.get("model_specificity"))),
        ("baseline", _num(c.get("baseline_auc")), _pct(c.get("baseline_sensitivity")), _pct(c.get("baseline_specificity"))),
    ]
    return intro + _table(["", "ROC AUC", "sensitivity", "specificity"], rows, raw_html=True)


def render_audit_html(result: AuditResult, recalibration: dict[str, Any] | None = None) -> str:
    """The whole report as one HTML string (no external resources)."""
    m = result.metrics
    scores = result.cohort["score"].to_numpy(dtype=float)
    churned = result.cohort["churned"].to_numpy(dtype=bool)
    cm = m["confusion"]
    fpr_at = cm["fp"] / (cm["fp"] + cm["tn"]) if (cm["fp"] + cm["tn"]) else math.nan
    roc = roc_plot(
        [(f"{result.model_version} (AUC {_num(m['roc_auc'])})", scores, churned)],
        [(f"flagged <= {result.threshold}", fpr_at, m["sensitivity"])],
    )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Model audit {_e(result.model_version)}</title><style>{_CSS}</style></head><body>",
        *[f"<p class='warning'><b>{_e(w)}</b></p>" for w in result.warnings],
        f"<h1>Customer health model audit: {_e(result.model_version)}</h1>",
        f"<p>Outcome window <b>{result.window_start}</b> to <b>{result.window_end}</b>, horizon <b>{result.horizon_days} days</b>, "
        f"{_e(result.cadence)} snapshots. An observation is an account scored at a snapshot date T; it is a churner when it "
        f"churned in (T, T+{result.horizon_days}]. Flagged = score &lt;= {result.threshold} (At Risk or Critical).</p>",
        "<h2>Headline</h2>",
        _table(["metric", "value"], _metrics_rows(m), raw_html=True),
    ]
    if result.notes:
        parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in result.notes) + "</ul>")
    if result.baseline:
        parts += ["<h2>Beside a baseline</h2>", baseline_table(result.baseline)]
    parts += [
        "<h2>Snapshots</h2>",
        _table(["snapshot date", "scores", "accounts", "churners"], [(s["snapshot_date"], s["source"], s["accounts"], s["churners"]) for s in result.snapshots]),
        "<h2>Plots</h2><div class='plots'>",
        f"<img alt='ROC curve' src='{roc}'>",
        f"<img alt='Calibration by score band' src='{calibration_plot(m['calibration'])}'>",
        f"<img alt='Score distribution of churners and retained accounts' src='{distribution_plot(scores, churned, result.threshold)}'>",
        "</div>",
        "<h2>Churn by zone</h2>",
        _table(["zone", "scores", "accounts", "churners", "churn rate"], [(z["zone"], f"{z['min']}-{z['max']}", z["accounts"], z["churners"], _pct(z["churn_rate"])) for z in m["by_zone"]]),
        "<h2>Calibration by score band</h2>",
        _table(["band", "accounts", "churners", "observed churn rate", "mean score"], [(b["band"], b["accounts"], b["churners"], _pct(b["churn_rate"]), _num(b["mean_score"], 1)) for b in m["calibration"]]),
    ]
    if recalibration:
        parts += [
            "<h2>Recalibration (held-out snapshots)</h2>",
            f"<p>Proposed version <b>{_e(recalibration.get('proposed_version'))}</b>; both models scored by the engine on the same held-out snapshots.</p>",
            comparison_table(recalibration["old"], recalibration["new"], recalibration.get("old_version", "current"), recalibration.get("proposed_version", "proposed")),
        ]
    parts += [
        f"<h2>False negatives: churned but scored above {result.threshold} ({len(result.false_negatives)})</h2>",
        "<p class='muted'>Blind spots: what held these scores up while the account was leaving.</p>",
        _listing_table(result.false_negatives),
        f"<h2>False positives: flagged but retained ({len(result.false_positives)})</h2>",
        "<p class='muted'>Intervention fatigue: what pulled these scores down although the account stayed.</p>",
        _listing_table(result.false_positives),
        "<p class='muted'>Generated by customer_health.validation.audit; self-contained, no network needed.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_audit_report(result: AuditResult, report_dir: str | Path | None = None, recalibration: dict[str, Any] | None = None) -> Path:
    """Write the report and return its path (overwritten on re-run: same name for same inputs)."""
    folder = reports_dir(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / report_filename(result.model_version, result.window_start, result.window_end, result.kind)
    path.write_text(render_audit_html(result, recalibration), encoding="utf-8")
    return path
