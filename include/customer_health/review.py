"""The monthly health review: one self-contained HTML file and its figures, month after month.

The seeds: "Run monthly health score review meetings examining score distribution trends,
intervention effectiveness, and model accuracy", with "marketing teams measured on Healthy
segment growth percentage, customer success measured on At Risk recovery rate", and "a
business case ... if your health score identifies 50 at-risk accounts per quarter with average
CLV of $15,000, and intervention recovers 30% of them, that represents $225,000 in quarterly
retained revenue". ``build_review`` computes, for a month and a model version, from the
warehouse only:

* **Score distribution trend** - the zone mix at the last scored date of each of the last 12
  months (``health_score_summary``).
* **Healthy segment growth** (marketing) - the change in Healthy accounts from one month-end to
  the next, as a percentage of the earlier count, with the Healthy share beside it (the number
  of scored accounts changes too).
* **At Risk recovery rate** (customer success) - of the episodes (an account entering At Risk or
  Critical from Healthy or Neutral, ``validation.episodes``) that began in the 90 days ending
  H days before the review date, the share back in Healthy or Neutral within H days
  (``horizon_days``, default 60); and the same per month of entry.
* **Intervention effectiveness per playbook** - for each playbook (``playbook_of``: the
  ``playbook`` or ``rule`` recorded with a delivered action, else its trigger and action type)
  the recovery rate of the mature episodes of the last ``window_days`` it was delivered in,
  against episodes that got **no** delivered action, matched exactly on the month they entered
  At Risk, the plan and the 10-point band of the entry score (each stratum's untreated rate
  weighted by its treated episodes). ``METHOD`` and ``LIMITS`` are printed with it.
* **Model accuracy** - the latest audit of the version (``model_audits``) against the seed's
  targets (sensitivity 75 %, specificity 70 %).
* **Retained revenue** in the seeds' form: accounts flagged in the last quarter x the recovery
  rate x CLV, each input with where it came from. CLV is the ``clv`` given (configuration), or
  the flagged accounts' mean ARR x the expected customer lifetime in years, 1 / the annual churn
  rate observed over the last 365 days (capped at ``MAX_LIFETIME_YEARS``; revenue, not margin).
  The part the matched comparison attributes to the playbooks is shown beside it.
* **Model iteration log** (``validation.iterations``).

``write_review`` renders the figures through the dashboard's own templates (``_review.html``
inside ``review_file.html``: the dashboard's stylesheet inlined, charts as inline SVG from
``dashboard.charts``, no script, nothing fetched), writes the file under the reports folder
(``validation.report.reports_dir``: ``.local/reports`` or ``$CUSTOMER_HEALTH_REPORTS_DIR``), and
records it in ``health_reviews`` (one row per month and version, replaced on re-run). The
dashboard's ``/reviews`` page renders the same figures with the same template.

Command line: ``python -m customer_health.review --month 2026-11 [--clv 15000]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, and_, func, select

from customer_health.actions.outbox import payload_of
from customer_health.validation import episodes as ep
from customer_health.warehouse.io import as_date, upsert_rows, utcnow
from customer_health.warehouse.schema import (
    action_outbox,
    health_reviews,
    health_score_episodes,
    health_score_summary,
    model_audits,
    model_versions,
)

TEMPLATES = Path(__file__).resolve().parent / "dashboard" / "templates"
STYLESHEET = Path(__file__).resolve().parent / "dashboard" / "static" / "dashboard.css"
TREND_MONTHS = 12
RECOVERY_COHORT_DAYS = 90
DEFAULT_WINDOW_DAYS = 180
MAX_LIFETIME_YEARS = 10.0
DELIVERED = "sent"  # an action is an intervention when it reached someone (as on the interventions page)
RISK_ZONES = ("At Risk", "Critical")
# Actions fired by a recovery (a campaign resumed, rescue tasks closed) answer the end of an
# episode, not the risk: they are not interventions (another version's recovery can fall inside
# this version's episode).
NOT_INTERVENTIONS = frozenset({"recovery"})
MIN_INTERVAL_EPISODES = 5  # fewer compared episodes: no interval (the normal approximation says nothing)

METHOD = (
    "Each playbook's episodes are those it was delivered in: an account entered At Risk or "
    "Critical, and an action of the playbook reached the customer, its CSM or an executive "
    "between that day and the day before the account recovered (actions fired by a recovery "
    "are not interventions). They are compared with "
    "episodes in which no action was delivered, matched exactly on the month the account "
    "entered At Risk, its plan and the 10-point band of its entry score: each stratum's "
    "untreated recovery rate is weighted by the playbook's episodes in it. The difference is "
    "in percentage points, with a 95% interval from a normal approximation."
)
LIMITS = (
    "Not a randomized experiment: the rules and the CSMs chose who received each playbook, so "
    "treated and untreated accounts can differ in ways the match does not see (account value, "
    "owner, the reason for the drop).",
    "Episodes of a playbook with no untreated episode in their stratum cannot be compared; they "
    "are left out and counted as unmatched.",
    "An account can receive several playbooks in one episode and counts in each, so the rows "
    "do not add up.",
    "Recovery means back in Healthy or Neutral within the horizon; a later recovery, or a churn, "
    "counts as not recovered.",
    "Small groups give wide intervals: under 5 compared episodes none is shown, nor when every "
    "compared and matched episode had the same outcome (not estimable); read a difference whose "
    "interval includes zero as no evidence either way.",
)


class ReviewError(ValueError):
    """The review cannot be built; the message says what is missing and what to do."""


# --------------------------------------------------------------------------- playbooks
def _words(name: str) -> str:
    return str(name).replace("_", " ").strip()


def playbook_of(action_type: str, payload: Mapping[str, Any] | None) -> str:
    """The playbook an outbox row belongs to, as a person reads it.

    The ``playbook`` (or ``rule``) name its decision recorded when the rules record one; until
    then the trigger and the action type (``checkin task on entering at risk``). The one place
    the grouping is decided: change it here and the review follows.
    """
    payload = payload or {}
    for key in ("playbook", "rule"):
        if payload.get(key):
            return _words(payload[key])
    trigger = payload.get("trigger")
    return f"{_words(action_type)} on {_words(trigger)}" if trigger else _words(action_type)


def _scored_dates(conn: Connection, version: str) -> list[date]:
    s = health_score_summary.c
    return [as_date(d) for d in conn.execute(
        select(s.as_of_date).where(s.model_version == version).distinct().order_by(s.as_of_date)
    ).scalars()]  # fmt: skip


def default_version(conn: Connection, month: date | None = None) -> str:
    """The model a review reads when none is named.

    The active version when it scored ``month`` (or when no month is given); for an earlier
    month, the version that was live at its end: of the active or retired versions that scored
    that month, the one approved last before the month ended (the first version of a warehouse
    was never approved: it counts as live from the start). A proposal scored in the shadow is
    never picked while a live version scored the month. Else the version with the latest scores.
    """
    from customer_health.validation.registry import transition_times

    v = model_versions.c
    status = dict(conn.execute(select(v.version, v.status)).all())
    active = next((name for name, state in sorted(status.items()) if state == "active"), None)
    if month is not None:
        first, last = ep.month_start(month), ep.month_end(ep.month_start(month))
        s = health_score_summary.c
        scored = set(conn.execute(
            select(s.model_version).where(s.as_of_date >= first, s.as_of_date <= last).distinct()
        ).scalars())  # fmt: skip
        if active in scored:
            return active
        approved = {name: at.date() for name, at in transition_times(conn, "approved").items()}
        live = [name for name in scored if status.get(name) in ("active", "retired") and approved.get(name, date.min) <= last]
        if live:
            return max(live, key=lambda name: (approved.get(name, date.min), name))
    if active:
        return active
    s = health_score_summary.c
    latest = conn.execute(select(s.model_version).order_by(s.as_of_date.desc()).limit(1)).scalar()
    if latest is None:
        raise ReviewError("the warehouse has no scores yet: run customer_health_daily (or the rebuild) first")
    return latest


# --------------------------------------------------------------------------- the figures
def _zone_mix(conn: Connection, version: str, day: date) -> dict[str, int]:
    s = health_score_summary.c
    rows = conn.execute(
        select(s.zone, func.sum(s.accounts)).where(s.model_version == version, s.as_of_date == day).group_by(s.zone)
    ).all()
    return {zone: int(n) for zone, n in rows}


def _zone_names(conn: Connection, version: str) -> list[str]:
    from customer_health.dashboard.queries import model_settings

    zones, _ = model_settings(conn, version)
    return [z.name for z in zones]


def distribution_trend(conn: Connection, version: str, month: date, as_of: date) -> list[dict[str, Any]]:
    """The zone mix at the last scored date of each of the ``TREND_MONTHS`` months to ``month``."""
    dates = _scored_dates(conn, version)
    points = []
    for first in ep.months_back(month, TREND_MONTHS):
        last = min(ep.month_end(first), as_of)
        inside = [d for d in dates if first <= d <= last]
        if not inside:
            continue
        zones = _zone_mix(conn, version, inside[-1])
        total = sum(zones.values())
        points.append({"month": first.strftime("%Y-%m"), "label": first.strftime("%b %Y"), "as_of_date": inside[-1],
                       "accounts": total, "zones": zones,
                       "healthy_share": zones.get("Healthy", 0) / total if total else None})  # fmt: skip
    previous = None
    for point in points:
        healthy = point["zones"].get("Healthy", 0)
        if previous is not None:
            before = previous["zones"].get("Healthy", 0)
            point["healthy_growth"] = (healthy - before) / before if before else None
            point["healthy_share_change"] = (
                point["healthy_share"] - previous["healthy_share"]
                if point["healthy_share"] is not None and previous["healthy_share"] is not None else None
            )  # fmt: skip
        else:
            point["healthy_growth"] = point["healthy_share_change"] = None
        previous = point
    return points


def recovery_figures(conn: Connection, version: str, month: date, as_of: date, horizon_days: int) -> dict[str, Any]:
    """The At Risk recovery rate of the review, and per month of entry."""
    cohort_to = as_of - timedelta(days=horizon_days)
    cohort_from = cohort_to - timedelta(days=RECOVERY_COHORT_DAYS - 1)
    headline = ep.recovery(ep.episodes(conn, version, cohort_from, cohort_to), horizon_days, as_of)
    by_month = []
    scored = _scored_dates(conn, version)
    for first in ep.months_back(month, TREND_MONTHS):
        if not scored or ep.month_end(first) < scored[0]:
            continue  # before the version's first score: no episode could begin
        frame = ep.episodes(conn, version, first, min(ep.month_end(first), as_of))
        rec = ep.recovery(frame, horizon_days, as_of)
        by_month.append({"month": first.strftime("%Y-%m"), "label": first.strftime("%b %Y"), **rec.as_dict()})
    return {"horizon_days": horizon_days, "cohort_from": cohort_from, "cohort_to": cohort_to, **headline.as_dict(),
            "by_month": by_month}  # fmt: skip


def _delivered_actions(conn: Connection, version: str, started_from: date, started_to: date, as_of: date) -> pd.DataFrame:
    """Delivered actions during the version's episodes begun in the range (one row per action)."""
    e = health_score_episodes.c
    o = action_outbox.c
    ends = func.coalesce(e.recovered_on, as_of + timedelta(days=1))
    rows = conn.execute(
        select(e.account_key, e.started, o.action_type, o.payload)
        .select_from(health_score_episodes.join(
            action_outbox, and_(o.account_key == e.account_key, o.trigger_date >= e.started, o.trigger_date < ends)))
        .where(e.model_version == version, e.started >= started_from, e.started <= started_to, o.status == DELIVERED,
               o.trigger_date <= as_of)
    ).all()  # fmt: skip
    kept = [(key, as_date(started), playbook_of(action_type, payload))
            for key, started, action_type, raw in rows
            for payload in [payload_of(raw)] if payload.get("trigger") not in NOT_INTERVENTIONS]  # fmt: skip
    return pd.DataFrame(kept, columns=["account_key", "started", "playbook"])


def _band(score: Any) -> str:
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return "unknown"
    low = int(score) // 10 * 10
    return f"{low}-{low + 9}"


def intervention_effectiveness(
    conn: Connection, version: str, as_of: date, horizon_days: int, window_days: int
) -> dict[str, Any]:
    """Each playbook's recovery rate against matched episodes without action (module docstring)."""
    start, end = as_of - timedelta(days=window_days - 1), as_of - timedelta(days=horizon_days)
    base = {"window_days": window_days, "horizon_days": horizon_days, "started_from": start, "started_to": end,
            "method": METHOD, "limits": list(LIMITS), "playbooks": [], "no_action": None,
            "min_interval_episodes": MIN_INTERVAL_EPISODES}  # fmt: skip
    if end < start:
        return base
    frame = ep.episodes(conn, version, start, end)
    if frame.empty:
        return base
    frame["recovered"] = ep.recovered_within(frame, horizon_days, as_of)
    frame["stratum"] = [
        (s.strftime("%Y-%m"), plan, _band(score)) for s, plan, score in zip(frame["started"], frame["plan"], frame["score"], strict=True)
    ]  # fmt: skip
    actions = _delivered_actions(conn, version, start, end, as_of)
    treated: dict[str, set[tuple[str, date]]] = defaultdict(set)
    for key, started, playbook in zip(actions["account_key"], actions["started"], actions["playbook"], strict=True):
        treated[playbook].add((key, started))
    any_action = set().union(*treated.values()) if treated else set()
    keys = list(zip(frame["account_key"], frame["started"], strict=True))
    untreated = frame[[k not in any_action for k in keys]]
    control: dict[tuple, tuple[int, int]] = {}
    for stratum, group in untreated.groupby("stratum"):
        control[stratum] = (len(group), int(group["recovered"].sum()))
    base["no_action"] = {"episodes": len(untreated), "recovered": int(untreated["recovered"].sum()),
                         "rate": float(untreated["recovered"].mean()) if len(untreated) else None}  # fmt: skip
    rows = []
    for playbook in sorted(treated):
        mine = frame[[k in treated[playbook] for k in keys]]
        matched = mine[[s in control for s in mine["stratum"]]]
        row: dict[str, Any] = {"playbook": playbook, "episodes": len(mine), "matched": len(matched),
                               "unmatched": len(mine) - len(matched), "strata": int(matched["stratum"].nunique())}  # fmt: skip
        if len(matched):
            n = len(matched)
            p_t = float(matched["recovered"].mean())
            p_c = var_c = 0.0
            for stratum, group in matched.groupby("stratum"):
                weight = len(group) / n
                size, recovered = control[stratum]
                rate = recovered / size
                p_c += weight * rate
                var_c += weight**2 * rate * (1 - rate) / size
            spread = 1.96 * math.sqrt(p_t * (1 - p_t) / n + var_c)
            difference = p_t - p_c
            interval = [difference - spread, difference + spread] if n >= MIN_INTERVAL_EPISODES and spread > 0 else None
            row.update({"treated_rate": p_t, "control_rate": p_c, "difference": difference, "interval": interval,
                        "control_episodes": sum(control[s][0] for s in set(matched["stratum"]))})  # fmt: skip
        else:
            row.update({"treated_rate": float(mine["recovered"].mean()), "control_rate": None, "difference": None,
                        "interval": None, "control_episodes": 0})  # fmt: skip
        rows.append(row)
    base["playbooks"] = rows
    return base


def accuracy_figures(conn: Connection, version: str) -> dict[str, Any] | None:
    """The latest audit of ``version`` (its own scores against churn), with the seed's targets."""
    from customer_health.validation.metrics import SENSITIVITY_TARGET, SPECIFICITY_TARGET

    t = model_audits.c
    row = conn.execute(
        select(model_audits).where(t.model_version == version, t.kind == "audit").order_by(t.window_end.desc(), t.audited_at.desc())
    ).first()  # fmt: skip
    if row is None:
        return None
    return {"window_start": row.window_start, "window_end": row.window_end, "horizon_days": row.horizon_days,
            "threshold": row.threshold, "observations": row.observations, "churners": row.churners,
            "roc_auc": row.roc_auc, "sensitivity": row.sensitivity, "specificity": row.specificity,
            "precision": row.precision, "top_decile_lift": row.top_decile_lift, "audited_at": row.audited_at,
            "report_path": row.report_path, "sensitivity_target": SENSITIVITY_TARGET,
            "specificity_target": SPECIFICITY_TARGET,
            "meets_targets": (row.sensitivity or 0) >= SENSITIVITY_TARGET and (row.specificity or 0) >= SPECIFICITY_TARGET}  # fmt: skip


def _churn_rate(conn: Connection, version: str, churn: pd.DataFrame, as_of: date) -> dict[str, Any] | None:
    """Accounts churned in the 365 days to ``as_of`` over the accounts scored at its start."""
    dates = [d for d in _scored_dates(conn, version) if d <= as_of]
    if not dates:
        return None
    start = next((d for d in dates if d >= as_of - timedelta(days=364)), dates[0])
    customers = sum(_zone_mix(conn, version, start).values())
    days_ = (as_of - start).days + 1
    if not customers or days_ < 90:
        return None
    on = churn["occurred_on"].map(as_date) if len(churn) else pd.Series([], dtype=object)
    churned = churn.loc[[(d is not None and start < d <= as_of) for d in on], "account_key"].nunique() if len(churn) else 0
    annual = churned / customers * 365 / days_
    return {"from": start, "to": as_of, "customers": customers, "churned": int(churned), "annual_rate": annual}


def retained_revenue(
    conn: Connection, version: str, as_of: date, recovery: Mapping[str, Any], effectiveness: Mapping[str, Any],
    churn: pd.DataFrame, clv: float | None,
) -> dict[str, Any]:
    """The seeds' business case: flagged accounts per quarter x recovery rate x CLV, with inputs."""
    flagged_from = as_of - timedelta(days=89)
    flagged = ep.episodes(conn, version, flagged_from, as_of)
    first = flagged.sort_values("started").drop_duplicates("account_key")
    arr = pd.to_numeric(first["arr"], errors="coerce")
    figures: dict[str, Any] = {"flagged_accounts": int(first["account_key"].nunique()), "flagged_from": flagged_from,
                               "flagged_to": as_of, "recovery_rate": recovery.get("rate"),
                               "recovery_source": f"At Risk recovery rate of episodes begun {recovery['cohort_from']} to "
                                                  f"{recovery['cohort_to']}, within {recovery['horizon_days']} days"}  # fmt: skip
    if clv is not None:
        figures.update({"clv": float(clv), "clv_source": "Configured (the review's clv setting)"})
    else:
        mean_arr = float(arr.mean()) if arr.notna().any() else None
        rate = _churn_rate(conn, version, churn, as_of)
        figures["clv_inputs"] = {"mean_arr": mean_arr, "accounts_with_arr": int(arr.notna().sum()), "churn": rate}
        if mean_arr is None or rate is None or not rate["annual_rate"]:
            figures.update({"clv": None, "clv_source": "Not derivable: " + (
                "no account was flagged in the quarter" if first.empty else
                "no ARR is known for the flagged accounts" if mean_arr is None else
                "no churn was observed in the last year" if rate is not None else
                "less than 90 days of scores") + "; give the review a customer lifetime value (Param clv, or --clv)"})  # fmt: skip
        else:
            lifetime = min(MAX_LIFETIME_YEARS, 1 / rate["annual_rate"])
            figures["clv_inputs"]["lifetime_years"] = lifetime
            figures["clv_inputs"]["lifetime_capped"] = 1 / rate["annual_rate"] > MAX_LIFETIME_YEARS
            figures.update({"clv": mean_arr * lifetime, "clv_source": "Derived: mean ARR of the flagged accounts x expected "
                            "lifetime (1 / annual churn rate of the last 365 days), revenue not margin"})  # fmt: skip
    value = None
    if figures["clv"] is not None and figures["recovery_rate"] is not None:
        value = figures["flagged_accounts"] * figures["recovery_rate"] * figures["clv"]
    figures["value"] = value
    # The part the matched comparison attributes to the playbooks (their weighted difference).
    compared = [p for p in effectiveness.get("playbooks", []) if p.get("difference") is not None]
    if compared and figures["clv"] is not None:
        weight = sum(p["matched"] for p in compared)
        uplift = sum(p["difference"] * p["matched"] for p in compared) / weight
        figures["attributable"] = {"uplift": uplift, "value": figures["flagged_accounts"] * uplift * figures["clv"],
                                   "matched_episodes": weight}  # fmt: skip
    else:
        figures["attributable"] = None
    return figures


@dataclass(frozen=True)
class ReviewSettings:
    """What a review is computed with (the DAG's Params)."""

    horizon_days: int = ep.DEFAULT_HORIZON_DAYS
    window_days: int = DEFAULT_WINDOW_DAYS
    clv: float | None = None


def build_review(engine: Engine, month: date, model_version: str | None = None, settings: ReviewSettings | None = None) -> dict[str, Any]:
    """Every figure of the review of ``month`` (its first day or any day in it), JSON-ready."""
    from customer_health.validation.iterations import CAVEATS, iteration_log
    from customer_health.validation.outcomes import derive_outcomes

    settings = settings or ReviewSettings()
    month = ep.month_start(month)
    with engine.connect() as conn:
        version = model_version or default_version(conn, month)
        inside = [d for d in _scored_dates(conn, version) if month <= d <= ep.month_end(month)]
        if not inside:
            raise ReviewError(
                f"model {version} has no scores in {month:%B %Y}: run customer_health_daily for that month "
                "(or customer_health_rebuild), or review another month"
            )
    as_of = inside[-1]
    outcomes = derive_outcomes(engine, as_of)
    churn = outcomes[outcomes["outcome"] == "churn"] if len(outcomes) else pd.DataFrame(columns=["account_key", "occurred_on"])
    with engine.connect() as conn:
        zones = _zone_names(conn, version)
        trend = distribution_trend(conn, version, month, as_of)
        recovery = recovery_figures(conn, version, month, as_of, settings.horizon_days)
        effectiveness = intervention_effectiveness(conn, version, as_of, settings.horizon_days, settings.window_days)
        accuracy = accuracy_figures(conn, version)
        revenue = retained_revenue(conn, version, as_of, recovery, effectiveness, churn, settings.clv)
        iterations = iteration_log(conn, as_of, churn, horizon_days=settings.horizon_days)
    latest = trend[-1] if trend else None
    return _json_ready({
        "month": month, "month_label": month.strftime("%B %Y"), "as_of_date": as_of, "model_version": version,
        "generated_at": utcnow(), "zones": zones, "settings": vars(settings),
        "distribution": trend,
        "healthy_growth": {"month": latest["label"] if latest else None,
                           "growth": latest["healthy_growth"] if latest else None,
                           "healthy": latest["zones"].get("Healthy", 0) if latest else None,
                           "previous": trend[-2]["zones"].get("Healthy", 0) if len(trend) > 1 else None,
                           "share": latest["healthy_share"] if latest else None,
                           "share_change": latest["healthy_share_change"] if latest else None},
        "recovery": recovery, "interventions": effectiveness, "accuracy": accuracy, "retained_revenue": revenue,
        "iterations": iterations, "iteration_caveats": list(CAVEATS),
    })  # fmt: skip


def _json_ready(value: Any) -> Any:
    """Dates as ISO text, numpy numbers as Python numbers, NaN as None: what JSON stores."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------- rendering
def template_environment():
    """The Jinja environment of the dashboard's templates, outside the web app (the file)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from customer_health.dashboard import charts, formatting, tables

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))
    env.filters.update(formatting.FILTERS)
    env.globals.update(charts=charts, structured=tables.render, zone_colours=charts.ZONE_COLOURS)
    return env


def chart_points(figures: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The distribution trend in the shape ``charts.zone_history`` draws (dates as dates)."""
    return [{"as_of_date": date.fromisoformat(p["as_of_date"]), "accounts": p["accounts"], "zones": p["zones"]}
            for p in figures.get("distribution", [])]  # fmt: skip


def render_review_html(figures: Mapping[str, Any]) -> str:
    """The review as one self-contained HTML document: inline stylesheet and SVG, no script."""
    stylesheet = STYLESHEET.read_text(encoding="utf-8")
    return template_environment().get_template("review_file.html").render(
        review=figures, points=chart_points(figures), stylesheet=stylesheet
    )


def review_filename(month: date, version: str) -> str:
    """``health_review_<YYYY-MM>_<version>.html`` (safe characters only)."""
    import re

    return f"health_review_{month:%Y-%m}_{re.sub(r'[^A-Za-z0-9._-]+', '_', version)}.html"


def write_review(
    engine: Engine,
    month: date,
    model_version: str | None = None,
    settings: ReviewSettings | None = None,
    report_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Build, render, write and record the review of ``month``; a small summary for XCom."""
    from customer_health.validation.report import reports_dir

    figures = build_review(engine, month, model_version, settings)
    folder = reports_dir(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    first = date.fromisoformat(figures["month"])
    path = folder / review_filename(first, figures["model_version"])
    path.write_text(render_review_html(figures), encoding="utf-8")
    with engine.begin() as conn:
        upsert_rows(conn, health_reviews, [{
            "month": first, "model_version": figures["model_version"], "as_of_date": date.fromisoformat(figures["as_of_date"]),
            "report_path": str(path), "figures": json.dumps(figures, sort_keys=True), "generated_at": utcnow(),
        }])  # fmt: skip
    return summary(figures) | {"report_path": str(path)}


def summary(figures: Mapping[str, Any]) -> dict[str, Any]:
    """The headline figures of a review (XCom, the command line)."""
    revenue = figures["retained_revenue"]
    accuracy = figures.get("accuracy") or {}
    return {
        "month": figures["month"], "as_of_date": figures["as_of_date"], "model_version": figures["model_version"],
        "accounts": figures["distribution"][-1]["accounts"] if figures["distribution"] else 0,
        "zones": figures["distribution"][-1]["zones"] if figures["distribution"] else {},
        "healthy_growth": figures["healthy_growth"]["growth"],
        "at_risk_recovery_rate": figures["recovery"]["rate"], "recovery_mature_episodes": figures["recovery"]["mature"],
        "playbooks_compared": sum(1 for p in figures["interventions"]["playbooks"] if p.get("difference") is not None),
        "sensitivity": accuracy.get("sensitivity"), "specificity": accuracy.get("specificity"),
        "flagged_accounts": revenue["flagged_accounts"], "clv": revenue["clv"], "retained_revenue": revenue["value"],
    }  # fmt: skip


# --------------------------------------------------------------------------- stored reviews
def list_reviews(conn: Connection) -> list[dict[str, Any]]:
    """Every stored review, newest month first (without its figures)."""
    r = health_reviews.c
    rows = conn.execute(
        select(r.month, r.model_version, r.as_of_date, r.report_path, r.generated_at).order_by(r.month.desc(), r.model_version)
    ).all()  # fmt: skip
    return [row._asdict() for row in rows]


def stored_review(conn: Connection, month: date | None = None, model_version: str | None = None) -> dict[str, Any] | None:
    """A stored review's figures (the latest when ``month`` is None)."""
    r = health_reviews.c
    stmt = select(r.month, r.model_version, r.report_path, r.figures)
    if month is not None:
        stmt = stmt.where(r.month == ep.month_start(month))
    if model_version is not None:
        stmt = stmt.where(r.model_version == model_version)
    row = conn.execute(stmt.order_by(r.month.desc(), r.generated_at.desc()).limit(1)).first()
    if row is None:
        return None
    return {"month": row.month, "model_version": row.model_version, "report_path": row.report_path,
            "figures": json.loads(row.figures)}  # fmt: skip


# --------------------------------------------------------------------------- command line
def _month(text: str) -> date:
    try:
        return date.fromisoformat(text[:7] + "-01")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--month {text!r}: give a month as YYYY-MM, e.g. 2026-11") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m customer_health.review --month YYYY-MM``: write the review, print its figures."""
    from customer_health.warehouse.engine import get_engine
    from customer_health.warehouse.migrate import upgrade_to_head

    parser = argparse.ArgumentParser(description="Write the monthly health review of a month (HTML and health_reviews).")
    parser.add_argument("--month", type=_month, required=True, help="the month to review, YYYY-MM")
    parser.add_argument("--model-version", default=None, help="default: the model live at the month's end (the active one when it scored the month)")
    parser.add_argument("--clv", type=float, default=None, help="customer lifetime value in dollars (default: derived)")
    parser.add_argument("--horizon-days", type=int, default=ep.DEFAULT_HORIZON_DAYS)
    parser.add_argument("--window-days", type=int, default=DEFAULT_WINDOW_DAYS)
    parser.add_argument("--report-dir", default=None)
    args = parser.parse_args(argv)
    engine = get_engine()
    upgrade_to_head(engine)
    try:
        result = write_review(engine, args.month, args.model_version,
                              ReviewSettings(args.horizon_days, args.window_days, args.clv), args.report_dir)  # fmt: skip
    except ReviewError as exc:
        print(f"ReviewError: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
