"""What each dashboard page reads from the warehouse: a few indexed queries per page.

The portfolio is large (100,000 accounts x 365 days = 36.5 million score rows), so no page
scans the score history:

* Counts, ARR and the 30-day movers of one (model version, date) come from the covering index
  ``ix_health_scores_version_date_portfolio`` (model_version, as_of_date, zone, segment, arr,
  delta_30, account_key) without reading the table; the "over time" chart reads weekly points.
* A version's first and latest scored dates are one index seek each; the versions that have
  scores are found by a skip scan over the same index (one seek per version).
* Intervention analysis reads zone changes only - a few per account a year - through the
  partial index ``ix_health_scores_zone_changes`` (``WHERE zone <> previous_zone``), and the
  actions of those accounts through ``ix_action_outbox_account_trigger``.
* The account page reads one account through primary keys and ``account_key`` indexes.

Every function takes an open SQLAlchemy ``Connection`` and returns plain dicts and lists that
serialize to JSON as they are (the JSON endpoints return them unchanged).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, Integer, and_, func, literal, select, union_all

from customer_health.warehouse import schema
from customer_health.warehouse.io import utcnow
from customer_health.warehouse.schema import (
    account_crosswalk,
    action_outbox,
    health_scores,
    model_versions,
    raw_sf_account,
    score_overrides,
    signal_values,
)

HS = health_scores.c

# The zone names are fixed by the design (DESIGN.md, decision 8); their bounds come from the model.
RISK_ZONES = ("At Risk", "Critical")
SAFE_ZONES = ("Healthy", "Neutral")
DIMENSIONS = ("engagement", "support", "financial", "sentiment")


class UnknownModelVersion(LookupError):
    """The requested model version has no scores in the warehouse."""


@dataclass(frozen=True)
class Zone:
    """A health zone and its inclusive score bounds."""

    name: str
    low: int
    high: int


DEFAULT_ZONES: tuple[Zone, ...] = (
    Zone("Healthy", 75, 100),
    Zone("Neutral", 50, 74),
    Zone("At Risk", 25, 49),
    Zone("Critical", 0, 24),
)


@dataclass(frozen=True)
class ScoredVersion:
    """A model version that has scores: its registry entry (if any) and its scored dates."""

    version: str
    status: str | None
    created_at: datetime | None
    first_date: date
    latest_date: date


@dataclass(frozen=True)
class View:
    """What a page shows: one model version as of its latest scored date."""

    version: str
    as_of: date
    zones: tuple[Zone, ...]
    versions: tuple[ScoredVersion, ...]
    signal_dimensions: dict[str, str] = field(default_factory=dict)

    def zone_names(self) -> list[str]:
        """Zone names from best to worst."""
        return [z.name for z in self.zones]


# --------------------------------------------------------------------------- versions
def scored_versions(conn: Connection) -> list[ScoredVersion]:
    """Every model version with scores, with its first and latest scored date.

    A skip scan: each step seeks the next version name in the portfolio index, so the cost is
    a few index seeks per version, whatever the size of the history.
    """
    registry = {
        row.version: row
        for row in conn.execute(select(model_versions.c.version, model_versions.c.status, model_versions.c.created_at))
    }
    found: list[ScoredVersion] = []
    previous: str | None = None
    while True:
        step = select(HS.model_version).order_by(HS.model_version).limit(1)
        if previous is not None:
            step = step.where(HS.model_version > previous)
        version = conn.execute(step).scalar()
        if version is None:
            return found
        dates = select(HS.as_of_date).where(HS.model_version == version).limit(1)
        first = conn.execute(dates.order_by(HS.as_of_date)).scalar_one()
        latest = conn.execute(dates.order_by(HS.as_of_date.desc())).scalar_one()
        entry = registry.get(version)
        found.append(
            ScoredVersion(
                version=version,
                status=entry.status if entry else None,
                created_at=entry.created_at if entry else None,
                first_date=first,
                latest_date=latest,
            )
        )
        previous = version


def default_version(versions: Sequence[ScoredVersion]) -> ScoredVersion:
    """The latest model version with scores: the one that scored the most recent date.

    When several did (a proposed model scored in the shadow of the active one), the active one
    wins, then the most recently registered.
    """
    return max(
        versions,
        key=lambda v: (v.latest_date, v.status == "active", v.created_at or datetime.min, v.version),
    )


def resolve_view(conn: Connection, requested: str | None = None) -> View | None:
    """The view for ``requested`` (or the default version); None when nothing is scored yet."""
    versions = scored_versions(conn)
    if not versions:
        if requested:
            raise UnknownModelVersion(f"model version {requested!r} has no scores: the warehouse has none yet")
        return None
    if requested:
        chosen = next((v for v in versions if v.version == requested), None)
        if chosen is None:
            known = ", ".join(v.version for v in versions)
            raise UnknownModelVersion(f"model version {requested!r} has no scores; versions with scores: {known}")
    else:
        chosen = default_version(versions)
    zones, dimensions = model_settings(conn, chosen.version)
    return View(chosen.version, chosen.latest_date, zones, tuple(versions), dimensions)


def model_settings(conn: Connection, version: str) -> tuple[tuple[Zone, ...], dict[str, str]]:
    """The zone bounds and each signal's dimension of ``version`` (defaults when unregistered)."""
    row = conn.execute(
        select(model_versions.c.config_sha256, model_versions.c.config_yaml).where(model_versions.c.version == version)
    ).first()
    if row is None:
        return DEFAULT_ZONES, {}
    return _parse_model_config(row.config_sha256, row.config_yaml)


@lru_cache(maxsize=32)
def _parse_model_config(_sha256: str, config_yaml: str) -> tuple[tuple[Zone, ...], dict[str, str]]:
    """Zones and signal dimensions from a model config (cached by the config's hash)."""
    try:
        config = yaml.safe_load(config_yaml) or {}
        zones = tuple(
            Zone(str(z["name"]), int(z["min"]), int(z["max"]))
            for z in sorted(config.get("zones") or [], key=lambda z: -int(z["max"]))
        )
        dimensions = {str(k): str(v.get("dimension", "")) for k, v in (config.get("signals") or {}).items()}
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError):
        return DEFAULT_ZONES, {}
    return zones or DEFAULT_ZONES, dimensions


# --------------------------------------------------------------------------- portfolio
def _plan_of(segment: str | None) -> str:
    """The plan tier inside a segment label ``model/plan/tenure band``."""
    parts = (segment or "").split("/")
    return parts[1] if len(parts) >= 3 else "unknown"


def _zone_counts(view: View) -> dict[str, int]:
    return {name: 0 for name in view.zone_names()}


def portfolio(
    conn: Connection,
    view: View,
    *,
    points: int = 14,
    step_days: int = 28,
    segment: str | None = None,
    plan: str | None = None,
) -> dict[str, Any]:
    """Zone distribution today (overall, by segment, by plan tier), ARR at risk, and history.

    The history has ``points`` dates, ``step_days`` apart, ending today (default: every four
    weeks over a year, each point one index range of a day's scores). ``segment`` (a full
    segment label) or ``plan`` narrows the history to that part of the portfolio; today's
    breakdowns always cover everything.
    """
    today = conn.execute(
        select(HS.zone, HS.segment, func.count().label("accounts"), func.sum(HS.arr).label("arr"))
        .where(HS.model_version == view.version, HS.as_of_date == view.as_of)
        .group_by(HS.zone, HS.segment)
    ).all()
    zones = _zone_counts(view)
    zone_arr: dict[str, float] = defaultdict(float)
    by_segment: dict[str, dict[str, Any]] = {}
    by_plan: dict[str, dict[str, Any]] = {}
    for row in today:
        zones[row.zone] = zones.get(row.zone, 0) + row.accounts
        zone_arr[row.zone] += row.arr or 0.0
        for groups, key in ((by_segment, row.segment or "unknown"), (by_plan, _plan_of(row.segment))):
            group = groups.setdefault(key, {"accounts": 0, "arr": 0.0, "arr_at_risk": 0.0, "zones": _zone_counts(view)})
            group["accounts"] += row.accounts
            group["arr"] += row.arr or 0.0
            group["zones"][row.zone] = group["zones"].get(row.zone, 0) + row.accounts
            if row.zone in RISK_ZONES:
                group["arr_at_risk"] += row.arr or 0.0
    accounts = sum(zones.values())
    total_arr = sum(zone_arr.values())
    at_risk = sum(zones.get(z, 0) for z in RISK_ZONES)
    arr_at_risk = sum(zone_arr.get(z, 0.0) for z in RISK_ZONES)

    first = next(v.first_date for v in view.versions if v.version == view.version)
    dates = [d for d in (view.as_of - timedelta(days=step_days * k) for k in range(points - 1, -1, -1)) if d >= first]
    history_stmt = (
        select(HS.as_of_date, HS.zone, func.count().label("accounts"), func.sum(HS.arr).label("arr"))
        .where(HS.model_version == view.version, HS.as_of_date.in_(dates))
        .group_by(HS.as_of_date, HS.zone)
    )
    if segment:
        history_stmt = history_stmt.where(HS.segment == segment)
    if plan:
        history_stmt = history_stmt.where(HS.segment.like(f"%/{plan}/%"))
    history: dict[date, dict[str, Any]] = {}
    for row in conn.execute(history_stmt):
        point = history.setdefault(row.as_of_date, {"as_of_date": row.as_of_date, "accounts": 0, "arr_at_risk": 0.0,
                                                    "zones": _zone_counts(view)})
        point["accounts"] += row.accounts
        point["zones"][row.zone] = point["zones"].get(row.zone, 0) + row.accounts
        if row.zone in RISK_ZONES:
            point["arr_at_risk"] += row.arr or 0.0

    def rows(groups: dict[str, dict[str, Any]], label: str) -> list[dict[str, Any]]:
        return [{label: key, **groups[key]} for key in sorted(groups)]

    return {
        "model_version": view.version,
        "as_of_date": view.as_of,
        "accounts": accounts,
        "arr": round(total_arr, 2),
        "accounts_at_risk": at_risk,
        "arr_at_risk": round(arr_at_risk, 2),
        "share_at_risk": at_risk / accounts if accounts else None,
        "zones": [
            {
                "zone": z.name,
                "low": z.low,
                "high": z.high,
                "accounts": zones.get(z.name, 0),
                "share": zones.get(z.name, 0) / accounts if accounts else None,
                "arr": round(zone_arr.get(z.name, 0.0), 2),
            }
            for z in view.zones
        ],
        "by_segment": rows(by_segment, "segment"),
        "by_plan": rows(by_plan, "plan"),
        "history": [history[d] for d in sorted(history)],
        "history_filter": {"segment": segment, "plan": plan, "points": points, "step_days": step_days},
    }


# --------------------------------------------------------------------------- trending
def parse_drivers(raw: str | None) -> dict[str, list[dict[str, Any]]]:
    """The drivers JSON of a score (``down``, ``up``, ``changes``); empty lists when missing."""
    empty: dict[str, list[dict[str, Any]]] = {"down": [], "up": [], "changes": []}
    if not raw:
        return empty
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError):
        return empty
    if not isinstance(parsed, dict):
        return empty
    return {key: [d for d in parsed.get(key) or [] if isinstance(d, dict)] for key in empty}


def _mover_rows(conn: Connection, view: View, keys: Sequence[str]) -> list[dict[str, Any]]:
    if not keys:
        return []
    stmt = (
        select(
            HS.account_key, account_crosswalk.c.account_name, HS.segment, HS.score, HS.computed_score, HS.zone,
            HS.previous_zone, HS.delta_30, HS.delta_90, HS.arr, HS.override_id, HS.explanation, HS.drivers,
        )
        .select_from(health_scores.outerjoin(account_crosswalk, account_crosswalk.c.account_key == HS.account_key))
        .where(HS.model_version == view.version, HS.as_of_date == view.as_of, HS.account_key.in_(list(keys)))
    )
    found = {row.account_key: row for row in conn.execute(stmt)}
    movers = []
    for key in keys:
        row = found.get(key)
        if row is None:
            continue
        data = row._asdict()
        data["drivers"] = parse_drivers(row.drivers)
        data["plan"] = _plan_of(row.segment)
        movers.append(data)
    return movers


def trending(conn: Connection, view: View, *, limit: int = 20) -> dict[str, Any]:
    """The biggest 30-day declines and recoveries, with their drivers and explanation.

    The ranking reads only the portfolio index (``delta_30`` and ``account_key`` are in it);
    the ``limit`` winners are then fetched by primary key.
    """
    ranked = select(HS.account_key).where(HS.model_version == view.version, HS.as_of_date == view.as_of)
    declines = conn.execute(
        ranked.where(HS.delta_30 < 0).order_by(HS.delta_30.asc(), HS.account_key).limit(limit)
    ).scalars().all()
    recoveries = conn.execute(
        ranked.where(HS.delta_30 > 0).order_by(HS.delta_30.desc(), HS.account_key).limit(limit)
    ).scalars().all()
    return {
        "model_version": view.version,
        "as_of_date": view.as_of,
        "window_days": 30,
        "declines": _mover_rows(conn, view, declines),
        "recoveries": _mover_rows(conn, view, recoveries),
    }


# --------------------------------------------------------------------------- account
def _override_state(row: Any, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at <= now:
        return "expired"
    return "active"


def _json_or_text(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


def account_detail(conn: Connection, view: View | None, account_key: str, *, days: int = 365) -> dict[str, Any] | None:
    """Everything about one account: identity, score history, signals, drivers, overrides, actions.

    ``view`` None (nothing scored yet) gives the identity, overrides and actions alone. None when
    the warehouse does not know the account at all.
    """
    crosswalk = conn.execute(select(account_crosswalk).where(account_crosswalk.c.account_key == account_key)).first()
    salesforce = conn.execute(
        select(
            raw_sf_account.c.name, raw_sf_account.c.plan, raw_sf_account.c.seats, raw_sf_account.c.arr,
            raw_sf_account.c.industry, raw_sf_account.c.owner_id, raw_sf_account.c.customer_since,
            raw_sf_account.c.parent_id, raw_sf_account.c.is_deleted,
        ).where(raw_sf_account.c.id == account_key)
    ).first()
    latest = None
    if view is not None:
        latest = conn.execute(
            select(health_scores)
            .where(HS.account_key == account_key, HS.model_version == view.version, HS.as_of_date <= view.as_of)
            .order_by(HS.as_of_date.desc())
            .limit(1)
        ).first()
    if crosswalk is None and salesforce is None and latest is None:
        return None
    history = []
    if view is not None and latest is not None:
        since = view.as_of - timedelta(days=days)
        history = [
            row._asdict()
            for row in conn.execute(
                select(HS.as_of_date, HS.score, HS.computed_score, HS.zone, HS.override_id)
                .where(
                    HS.account_key == account_key,
                    HS.model_version == view.version,
                    HS.as_of_date > since,
                    HS.as_of_date <= view.as_of,
                )
                .order_by(HS.as_of_date)
            )
        ]
    score = None
    signals: list[dict[str, Any]] = []
    if view is not None and latest is not None:
        score = latest._asdict()
        score["drivers"] = parse_drivers(latest.drivers)
        score["dimensions"] = {d: score.pop(f"{d}_score", None) for d in DIMENSIONS}
        signals = _signal_breakdown(conn, view, account_key, latest.as_of_date, score["drivers"])
    now = utcnow()
    overrides = [
        {**row._asdict(), "state": _override_state(row, now)}
        for row in conn.execute(
            select(score_overrides)
            .where(score_overrides.c.account_key == account_key)
            .order_by(score_overrides.c.created_at.desc(), score_overrides.c.id.desc())
        )
    ]
    actions = [
        {**row._asdict(), "result": _json_or_text(row.result)}
        for row in conn.execute(
            select(
                action_outbox.c.idempotency_key, action_outbox.c.action_type, action_outbox.c.trigger_date,
                action_outbox.c.model_version, action_outbox.c.status, action_outbox.c.target,
                action_outbox.c.reason, action_outbox.c.external_id, action_outbox.c.attempts,
                action_outbox.c.last_error, action_outbox.c.dispatched_at, action_outbox.c.result,
                action_outbox.c.resolved_at, action_outbox.c.resolved_by,
            )
            .where(action_outbox.c.account_key == account_key)
            .order_by(action_outbox.c.trigger_date.desc(), action_outbox.c.created_at.desc())
        )
    ]
    name = (crosswalk.account_name if crosswalk else None) or (salesforce.name if salesforce else None)
    return {
        "account_key": account_key,
        "account_name": name,
        "parent_account_key": (crosswalk.parent_account_key if crosswalk else None)
        or (salesforce.parent_id if salesforce else None),
        "salesforce": salesforce._asdict() if salesforce else None,
        "model_version": view.version if view else None,
        "as_of_date": view.as_of if view else None,
        "score": score,
        "history": history,
        "signals": signals,
        "overrides": overrides,
        "active_override": next((o for o in overrides if o["state"] == "active"), None),
        "actions": actions,
    }


def _signal_breakdown(
    conn: Connection, view: View, account_key: str, as_of: date, drivers: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Each signal's raw value on ``as_of``, with its normalized score and points when a driver."""
    try:
        from customer_health.scoring.signal_catalog import SIGNALS
    except ImportError:  # pragma: no cover - the catalogue is part of the package
        SIGNALS = {}  # noqa: N806 - same name as the catalogue's constant
    described: dict[str, dict[str, Any]] = {}
    for kind in ("down", "up", "changes"):
        for d in drivers.get(kind, []):
            entry = described.setdefault(str(d.get("signal")), {})
            if kind == "changes":
                entry.setdefault("change_points", d.get("points"))
                entry.setdefault("was_score", d.get("was_score"))
                entry.setdefault("change_text", d.get("text"))
            else:
                entry.setdefault("points", d.get("points"))
                entry.setdefault("normalized", d.get("score"))
                entry.setdefault("text", d.get("text"))
                entry.setdefault("direction", kind)
    breakdown = []
    stored = conn.execute(
        select(*[signal_values.c[key] for key in SIGNALS]).where(
            signal_values.c.as_of_date == as_of, signal_values.c.account_key == account_key
        )
    ).first()
    for key, value in sorted(zip(SIGNALS, stored or (), strict=False)):
        spec = SIGNALS[key]
        entry = {
            "signal": key,
            "value": value,
            "dimension": view.signal_dimensions.get(key) or spec.dimension,
            "in_model": not view.signal_dimensions or key in view.signal_dimensions,
            "description": _describe(spec, value),
            **described.get(key, {}),
        }
        breakdown.append(entry)
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    breakdown.sort(key=lambda e: (not e["in_model"], order.get(e["dimension"] or "", 9), e["signal"]))
    return breakdown


def _describe(spec: Any, value: float | None) -> str | None:
    if spec is None:
        return None
    try:
        return spec.describe(value)
    except (TypeError, ValueError, KeyError):
        return None


def account_known(conn: Connection, account_key: str) -> bool:
    """True when the warehouse knows ``account_key`` (crosswalk, Salesforce or scores)."""
    for stmt in (
        select(account_crosswalk.c.account_key).where(account_crosswalk.c.account_key == account_key),
        select(raw_sf_account.c.id).where(raw_sf_account.c.id == account_key),
        select(HS.account_key).where(HS.account_key == account_key).limit(1),
    ):
        if conn.execute(stmt).first() is not None:
            return True
    return False


def search_accounts(conn: Connection, text: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """Accounts whose key starts with ``text`` or whose name contains it (case-insensitive)."""
    text = text.strip()
    if not text:
        return []
    cw = account_crosswalk.c
    by_key = select(cw.account_key, cw.account_name).where(cw.account_key.startswith(text, autoescape=True))
    by_name = select(cw.account_key, cw.account_name).where(func.lower(cw.account_name).contains(text.lower(), autoescape=True))
    rows = list(conn.execute(by_key.limit(limit))) + list(conn.execute(by_name.order_by(cw.account_name).limit(limit)))
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(row.account_key, row._asdict())
    return list(seen.values())[:limit]


# --------------------------------------------------------------------------- interventions
def _days_between(conn: Connection, later: Any, earlier: Any) -> Any:
    """``later - earlier`` in whole days, in the warehouse's own SQL."""
    if conn.dialect.name == "sqlite":
        return func.cast(func.julianday(later) - func.julianday(earlier), Integer)
    return later - earlier  # PostgreSQL: date - date is an integer number of days


def _episodes_cte(conn: Connection, view: View, start: date) -> Any:
    """At Risk episodes that began after ``start``, with the date each recovered (or NULL).

    An episode starts when an account enters At Risk or Critical from Healthy or Neutral and
    ends at its next change into Healthy or Neutral. Both come from the partial index of zone
    changes (``zone <> previous_zone``): the entries by one range scan, each recovery by one
    seek on (model_version, account_key, as_of_date) - no window function, no sort.
    """
    later = health_scores.alias("later")
    recovered_on = (
        select(func.min(later.c.as_of_date))
        .where(
            later.c.model_version == HS.model_version,
            later.c.account_key == HS.account_key,
            later.c.as_of_date > HS.as_of_date,
            later.c.as_of_date <= view.as_of,
            later.c.zone != later.c.previous_zone,
            later.c.zone.in_(SAFE_ZONES),
        )
        .scalar_subquery()
    )
    return (
        select(HS.account_key, HS.as_of_date.label("started"), recovered_on.label("recovered_on"))
        .where(
            HS.model_version == view.version,
            HS.zone != HS.previous_zone,
            HS.as_of_date > start,
            HS.as_of_date <= view.as_of,
            HS.zone.in_(RISK_ZONES),
            HS.previous_zone.in_(SAFE_ZONES),
        )
        .cte("episodes")
    )


def _median_from_histogram(histogram: dict[int, int]) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    ordered = sorted(histogram.items())

    def nth(n: int) -> int:
        seen = 0
        for value, count in ordered:
            seen += count
            if seen > n:
                return value
        return ordered[-1][0]

    return (nth((total - 1) // 2) + nth(total // 2)) / 2


@dataclass
class _Outcome:
    """Counts of one group of episodes, filled from grouped SQL rows."""

    episodes: int = 0
    still_at_risk: int = 0
    mature: int = 0
    recovered_in_horizon: int = 0
    days_to_recover: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, days: int | None, mature: bool, horizon_days: int, count: int) -> None:
        self.episodes += count
        if days is None:
            self.still_at_risk += count
        else:
            self.days_to_recover[int(days)] += count
        if mature:
            self.mature += count
            if days is not None and days <= horizon_days:
                self.recovered_in_horizon += count

    def as_dict(self) -> dict[str, Any]:
        recovered = sum(self.days_to_recover.values())
        total_days = sum(d * n for d, n in self.days_to_recover.items())
        return {
            "episodes": self.episodes,
            "recovered": recovered,
            "still_at_risk": self.still_at_risk,
            "mature_episodes": self.mature,
            "recovery_rate": self.recovered_in_horizon / self.mature if self.mature else None,
            "median_days_to_recover": _median_from_histogram(self.days_to_recover),
            "mean_days_to_recover": round(total_days / recovered, 1) if recovered else None,
        }


def interventions(conn: Connection, view: View, *, window_days: int = 180, horizon_days: int = 60) -> dict[str, Any]:
    """At Risk recovery: overall, per action type, and for episodes that got no action at all.

    An *episode* starts when an account enters At Risk or Critical from Healthy or Neutral in
    the last ``window_days`` and ends when it is back in Healthy or Neutral. An action counts
    for an episode when triggered between its start and its recovery (or today). Recovery rates
    compare like with like: among episodes that began at least ``horizon_days`` ago, the share
    that recovered within ``horizon_days``. Everything is aggregated in SQL; Python receives a
    histogram of days-to-recover per group.
    """
    start = view.as_of - timedelta(days=window_days)
    episodes = _episodes_cte(conn, view, start)
    oa = action_outbox.c
    during = and_(
        oa.account_key == episodes.c.account_key,
        oa.trigger_date >= episodes.c.started,
        oa.trigger_date <= func.coalesce(episodes.c.recovered_on, view.as_of),
    )
    days = _days_between(conn, episodes.c.recovered_on, episodes.c.started).label("days")
    mature = (episodes.c.started <= view.as_of - timedelta(days=horizon_days)).label("mature")
    typed = (
        select(episodes.c.account_key, episodes.c.started, episodes.c.recovered_on, oa.action_type)
        .select_from(episodes.outerjoin(action_outbox, during))
        .distinct()
        .subquery("typed")
    )
    t_days = _days_between(conn, typed.c.recovered_on, typed.c.started).label("days")
    t_mature = (typed.c.started <= view.as_of - timedelta(days=horizon_days)).label("mature")
    has_action = select(oa.idempotency_key).where(during).exists()
    # One statement, so the episodes are computed once: outcome histograms per group, and
    # (tagged "status") the delivery status counts of the actions taken during episodes.
    groups = union_all(
        select(literal("*all").label("grp"), literal(None).label("status"), days, mature, func.count().label("n"))
        .group_by(days, mature),
        select(literal("*any").label("grp"), literal(None).label("status"), days, mature, func.count().label("n"))
        .where(has_action)
        .group_by(days, mature),
        select(func.coalesce(typed.c.action_type, "*none").label("grp"), literal(None).label("status"), t_days,
               t_mature, func.count().label("n"))
        .group_by(typed.c.action_type, t_days, t_mature),
        select(oa.action_type.label("grp"), oa.status.label("status"), literal(None).label("days"),
               literal(None).label("mature"), func.count().label("n"))
        .select_from(episodes.join(action_outbox, during))
        .group_by(oa.action_type, oa.status),
    )
    outcomes: dict[str, _Outcome] = defaultdict(_Outcome)
    statuses: dict[str, dict[str, int]] = defaultdict(dict)
    for row in conn.execute(groups):
        if row.status is not None:
            statuses[row.grp][row.status] = row.n
        else:
            outcomes[row.grp].add(row.days, bool(row.mature), horizon_days, row.n)
    return {
        "model_version": view.version,
        "as_of_date": view.as_of,
        "window_days": window_days,
        "horizon_days": horizon_days,
        "overall": outcomes["*all"].as_dict(),
        "with_action": outcomes["*any"].as_dict(),
        "no_action": outcomes["*none"].as_dict(),
        "by_action_type": [
            {"action_type": group, **outcome.as_dict(), "statuses": dict(sorted(statuses[group].items()))}
            for group, outcome in sorted(outcomes.items())
            if not group.startswith("*")
        ],
    }


# --------------------------------------------------------------------------- model
def _model_audits_table() -> Any:
    """The audit results table, when the schema has one (written by the model audit)."""
    return getattr(schema, "model_audits", None)


def _report_paths(value: Any) -> list[str]:
    """File paths of HTML reports mentioned anywhere in a metrics document."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and "report" in str(key).lower() and item.lower().endswith((".html", ".htm")):
                found.append(item)
            else:
                found.extend(_report_paths(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_report_paths(item))
    return found


def model_overview(conn: Connection, view: View | None) -> dict[str, Any]:
    """Every registered or scored model version with its audit metrics and latest report."""
    scored = {v.version: v for v in (view.versions if view else ())}
    registry = list(conn.execute(select(model_versions).order_by(model_versions.c.created_at.desc())))
    audits = _latest_audits(conn)
    versions = []
    for row in registry:
        metrics = _json_or_text(row.metrics)
        versions.append(_version_entry(row.version, row._asdict(), metrics, scored.get(row.version), audits.get(row.version)))
    for version, info in scored.items():
        if all(v["version"] != version for v in versions):
            versions.append(_version_entry(version, {}, None, info, audits.get(version)))
    return {"default_version": view.version if view else None, "versions": versions}


def _version_entry(
    version: str, registry: dict[str, Any], metrics: Any, scored: ScoredVersion | None, audit: dict[str, Any] | None
) -> dict[str, Any]:
    reports = _report_paths(metrics) if isinstance(metrics, (dict, list)) else []
    if audit and audit.get("report_path"):
        reports.insert(0, audit["report_path"])
    report = next((str(p) for p in map(_existing_file, reports) if p is not None), None)
    return {
        "version": version,
        "status": registry.get("status"),
        "created_at": registry.get("created_at"),
        "created_by": registry.get("created_by"),
        "parent_version": registry.get("parent_version"),
        "decided_at": registry.get("decided_at"),
        "decided_by": registry.get("decided_by"),
        "decision_note": registry.get("decision_note"),
        "metrics": metrics,
        "audit": audit,
        "first_scored": scored.first_date if scored else None,
        "latest_scored": scored.latest_date if scored else None,
        "report_path": report or (reports[0] if reports else None),
        "report_available": report is not None,
    }


def _existing_file(path: str) -> Path | None:
    """``path`` as an existing file: absolute, or relative to the project folder."""
    from customer_health.settings import PROJECT_ROOT

    for candidate in (Path(path), PROJECT_ROOT / path):
        if candidate.is_file():
            return candidate.resolve()
    return None


def _latest_audits(conn: Connection) -> dict[str, dict[str, Any]]:
    """The most recent audit row per model version (empty when there is no audit table yet)."""
    table = _model_audits_table()
    if table is None or not conn.dialect.has_table(conn, table.name):
        return {}
    latest: dict[str, dict[str, Any]] = {}
    for row in conn.execute(select(table).order_by(table.c.audited_at)):
        data = row._asdict()
        data["metrics"] = _json_or_text(data.get("metrics"))
        latest[row.model_version] = data
    return latest


def report_file(conn: Connection, view: View | None, version: str) -> Path | None:
    """The latest HTML audit report of ``version`` when its file exists."""
    for entry in model_overview(conn, view)["versions"]:
        if entry["version"] == version and entry["report_available"]:
            return Path(entry["report_path"])
    return None

