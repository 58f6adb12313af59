"""Load and validate the action rules (``config/actions_v1.yaml``).

The rules are configuration like the scoring model, but a separate file with its own version:
a change of who gets a task or how long a cooldown lasts is not a new scoring model. A bad file
fails on load with an ``ActionRulesError`` naming the file and the problem, before any action
is decided.

Besides the action types and their triggers, the file holds how a company goes live safely
(each type's ``mode``, ``live`` or ``shadow``, and its ``daily_cap``), the marketing
*programmes* the campaign actions act on (Salesforce Campaigns or HubSpot lists, selected by
name), and the health *segments* kept in sync with programmes every day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_RULES_PATH = Path(__file__).resolve().parents[1] / "config" / "actions_v1.yaml"

ZONES = ("Healthy", "Neutral", "At Risk", "Critical")
ACTION_KINDS = (
    "salesforce_task",
    "salesforce_task_complete",
    "campaign_enrol",
    "campaign_status",
    "slack",
    "email",
)
# Which outbox ``target`` each kind is delivered to. ``campaigns`` is the campaign target:
# Salesforce Campaigns by default, HubSpot lists when configured (``actions.campaign_targets``).
KIND_TARGET = {
    "salesforce_task": "salesforce",
    "salesforce_task_complete": "salesforce",
    "campaign_enrol": "campaigns",
    "campaign_status": "campaigns",
    "slack": "slack",
    "email": "email",
}
MODES = ("live", "shadow")
TRIGGERS = (
    "healthy_to_neutral",
    "entering_at_risk",
    "entering_critical",
    "sustained_healthy",
    "top_quartile_expansion",
    "recovery",
)
TRANSITION_TRIGGERS = ("healthy_to_neutral", "entering_at_risk", "entering_critical", "recovery")
# Who a Salesforce task is assigned to (``route_to``): the account's owner (the CSM), the CSM's
# manager up the Salesforce role hierarchy, a User holding the support manager role, or the VP of
# Customer Success. Whoever cannot be found, the task falls back (manager and support manager to
# the VP of Customer Success, the VP to the owner) and says so in its description.
ROUTES = ("owner", "manager", "support_manager", "vp_customer_success")
# What a playbook task lists for the CSM (``details``), read from the warehouse on the day.
TASK_DETAILS = ("unused_features", "support_tickets", "billing", "executive_sponsor", "manager_review")
# Which of the stored drivers a playbook selects on: ``shortfall`` - the signal with the largest
# weighted shortfall (the first of the score's drivers pulling it down); ``change`` - the signal
# that lost most over the change window (30 days; the most negative of the drivers' changes).
DRIVEN_BY = ("shortfall", "change")
VALUE_TIERS = ("any", "high_value", "standard")
TRAJECTORIES = ("Improving", "Stable", "Declining")


class ActionRulesError(ValueError):
    """The action rules file is invalid; the message names the file and what to fix."""


@dataclass(frozen=True)
class ActionSpec:
    """One action type: how it is delivered, how often it may happen, and whether it is live.

    ``mode`` ``shadow``: decided and recorded with what it would send (status ``shadow``), never
    delivered. ``daily_cap``: at most this many rows of the type are released for delivery per
    day, highest priority first; the rest wait for the next day (``actions.release``). ``None``:
    no cap.
    """

    action_type: str
    kind: str
    cooldown_days: int = 0
    one_open_per_account: bool = False
    rescue: bool = False  # a rescue task is completed automatically when the account recovers
    subject: str | None = None
    task_type: str = "Other"
    priority: str = "Normal"
    due_in_days: int = 0
    programmes: tuple[str, ...] = ()  # campaign kinds: the programme groups it acts on
    status: str | None = None
    content: dict[str, Any] = field(default_factory=dict)
    mode: str = "live"
    daily_cap: int | None = None
    route_to: str = "owner"  # salesforce_task: who the task is assigned to (ROUTES)
    details: tuple[str, ...] = ()  # salesforce_task: what it lists (TASK_DETAILS)
    instructions: str | None = None  # salesforce_task: the line telling the assignee what to do

    @property
    def target(self) -> str:
        """The outbox target: salesforce, campaigns, slack or email."""
        return KIND_TARGET[self.kind]

    @property
    def shadow(self) -> bool:
        """Decided and recorded, never delivered."""
        return self.mode == "shadow"


@dataclass(frozen=True)
class ProgrammeSelector:
    """Which campaigns (Salesforce) or lists (HubSpot) a programme group stands for.

    ``name``: exactly this name; ``name_contains``: every one whose name contains this text
    (case-insensitive); ``campaign_type`` (Salesforce only): and whose ``Campaign.Type`` is this.
    Salesforce considers active campaigns only (``IsActive``).
    """

    group: str
    name: str | None = None
    name_contains: str | None = None
    campaign_type: str | None = None

    def describe(self) -> str:
        """The selector in words, for errors and pages."""
        parts = [f"named {self.name!r}" if self.name else f"whose name contains {self.name_contains!r}"]
        if self.campaign_type:
            parts.append(f"of type {self.campaign_type!r}")
        return " ".join(parts)

    def matches(self, name: str | None, campaign_type: str | None = None) -> bool:
        """Whether a campaign or list called ``name`` (of ``campaign_type``) is in the group."""
        name = name or ""
        if self.name is not None and name != self.name:
            return False
        if self.name_contains is not None and self.name_contains.lower() not in name.lower():
            return False
        return self.campaign_type is None or campaign_type == self.campaign_type


@dataclass(frozen=True)
class SegmentSpec:
    """A health segment kept in sync with a programme every day (``actions.segments``).

    An account is in the segment on a date when its score lies in ``[min_score, max_score]``
    and, if ``zones`` is given, its zone is one of them. Its contacts are members of the
    ``programme`` group while it is; ``pause`` lists programme groups its contacts' memberships
    are paused in meanwhile (the nurture segment: no upsell before nurturing).
    """

    name: str
    programme: str
    min_score: int = 0
    max_score: int = 100
    zones: tuple[str, ...] = ()
    pause: tuple[str, ...] = ()
    mode: str = "live"

    def holds(self, score: int | None, zone: str | None) -> bool:
        """Whether an account with ``score`` and ``zone`` is in the segment."""
        if score is None:
            return False
        return self.min_score <= score <= self.max_score and (not self.zones or zone in self.zones)


@dataclass(frozen=True)
class TriggerSpec:
    """One trigger's parameters and the actions of each track."""

    name: str
    white_glove: tuple[str, ...]
    automated: tuple[str, ...]
    from_zones: tuple[str | None, ...] = ()
    to_zones: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    min_days: int = 0
    min_slope_90: float | None = None
    min_percentile: float = 0.75
    min_delta_30: float | None = None

    def actions_for(self, high_value: bool) -> tuple[str, ...]:
        """The action types of the account's track."""
        return self.white_glove if high_value else self.automated


@dataclass(frozen=True)
class PlaybookSpec:
    """A play keyed to band and driver: fires the day an account enters ``to_zones`` when the
    signal driving its score is of ``driver_dimension`` (and/or is one of ``driver_signals``).

    ``driven_by`` says which drivers count: ``shortfall`` (the largest weighted shortfall) and/or
    ``change`` (the largest fall over the change window), tried in that order. Besides the zone
    entered, ``from_zones`` (empty: any other zone or the first score), ``value_tier`` and
    ``trajectory`` (the 90-day trend label) narrow who gets it. A playbook without a driver
    selector selects on band, tier and trajectory only (the high-value manager review).
    """

    name: str
    title: str
    to_zones: tuple[str, ...]
    white_glove: tuple[str, ...]
    automated: tuple[str, ...]
    from_zones: tuple[str | None, ...] = ()
    value_tier: str = "any"
    trajectory: tuple[str, ...] = ()
    driver_dimension: str | None = None
    driver_signals: tuple[str, ...] = ()  # ``driver_signal`` in the file: one key or a list
    driven_by: tuple[str, ...] = ("shortfall",)

    @property
    def selects_driver(self) -> bool:
        """Whether the playbook is keyed to a driver (dimension or signals)."""
        return self.driver_dimension is not None or bool(self.driver_signals)

    def actions_for(self, high_value: bool) -> tuple[str, ...]:
        """The action types of the account's track."""
        return self.white_glove if high_value else self.automated


@dataclass(frozen=True)
class ActionRules:
    """The validated action rules."""

    version: str
    source: str
    high_value_min_arr: float
    high_value_plans: tuple[str, ...]
    default_queue_user_id: str
    vp_customer_success_role: str
    email_from: str
    escalation_recipients: tuple[str, ...]
    improving_min_slope: float
    declining_max_slope: float
    feature_usage_window_days: int
    actions: dict[str, ActionSpec]
    triggers: dict[str, TriggerSpec]
    programmes: dict[str, ProgrammeSelector] = field(default_factory=dict)
    segments: dict[str, SegmentSpec] = field(default_factory=dict)
    pause_status: str = "Paused"  # the CampaignMember status a pause sets (Salesforce Campaigns)
    playbooks: dict[str, PlaybookSpec] = field(default_factory=dict)
    support_manager_role: str | None = None  # the Salesforce role whose holder reviews support plays
    finance_contact_titles: tuple[str, ...] = ()  # a Contact whose Title contains one is a finance contact

    def is_high_value(self, arr: float | None, plan: str | None) -> bool:
        """White-glove track: ARR at or above the threshold, or a high-value plan."""
        return (arr or 0.0) >= self.high_value_min_arr or (plan or "").lower() in self.high_value_plans

    def action(self, action_type: str) -> ActionSpec:
        """The spec of ``action_type`` (an ActionRulesError names the known types otherwise)."""
        try:
            return self.actions[action_type]
        except KeyError:
            raise ActionRulesError(
                f"unknown action type {action_type!r} ({self.source}); known: {', '.join(sorted(self.actions))}"
            ) from None

    def programme(self, group: str) -> ProgrammeSelector:
        """The selector of programme group ``group``."""
        try:
            return self.programmes[group]
        except KeyError:
            raise ActionRulesError(
                f"unknown programme {group!r} ({self.source}); known: {', '.join(sorted(self.programmes))}"
            ) from None

    def trend_label(self, slope_90: float | None) -> str:
        """Improving, Declining or Stable, from the 90-day slope (points per 30 days)."""
        if slope_90 is None:
            return "Stable"
        if slope_90 >= self.improving_min_slope:
            return "Improving"
        if slope_90 <= self.declining_max_slope:
            return "Declining"
        return "Stable"


class _Reader:
    """Typed access to a YAML mapping, with errors that name the file and the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> ActionRulesError:
        return ActionRulesError(f"{where}: {problem} ({self.source})")

    def mapping(self, data: Any, where: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(where, f"expected a mapping, got {type(data).__name__}")
        return data

    def get(self, data: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in data:
            if default is ...:
                raise self.fail(f"{where}.{key}", "is required")
            return default
        value = data[key]
        if kind in (int, float, (int, float)) and isinstance(value, bool):
            raise self.fail(f"{where}.{key}", f"expected a number, got {value!r}")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(f"{where}.{key}", f"expected {names}, got {value!r}")
        return value

    def choice(self, value: str, allowed: tuple[str, ...], where: str) -> str:
        if value not in allowed:
            raise self.fail(where, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def cap(self, value: int | None, where: str) -> int | None:
        if value is not None and value < 1:
            raise self.fail(where, f"must be at least 1 (or absent for no cap), got {value}")
        return value

    def non_negative(self, value: float, where: str) -> float:
        if value < 0:
            raise self.fail(where, f"must be >= 0, got {value}")
        return value

    def zones(self, values: Any, where: str, allow_null: bool = False) -> tuple[str | None, ...]:
        if not isinstance(values, list) or not values:
            raise self.fail(where, "expected a non-empty list of zones")
        for z in values:
            if z is None and allow_null:
                continue
            if z not in ZONES:
                extra = " or null (first score)" if allow_null else ""
                raise self.fail(where, f"unknown zone {z!r}; use one of {', '.join(ZONES)}{extra}")
        return tuple(values)


def parse_action_rules(data: Any, source: str = "<memory>") -> ActionRules:
    """Validate a parsed rules document; ``source`` names it in errors."""
    r = _Reader(source)
    doc = r.mapping(data, "rules")
    version = r.get(doc, "version", "rules", str)
    tier = r.mapping(r.get(doc, "value_tier", "rules", dict), "value_tier")
    routing = r.mapping(r.get(doc, "routing", "rules", dict), "routing")
    trend = r.mapping(r.get(doc, "trend_labels", "rules", dict), "trend_labels")

    actions: dict[str, ActionSpec] = {}
    for name, raw in r.mapping(r.get(doc, "actions", "rules", dict), "actions").items():
        where = f"actions.{name}"
        spec = r.mapping(raw, where)
        kind = r.get(spec, "kind", where, str)
        if kind not in ACTION_KINDS:
            raise r.fail(f"{where}.kind", f"unknown kind {kind!r}; use one of {', '.join(ACTION_KINDS)}")
        known = {
            "kind", "cooldown_days", "one_open_per_account", "rescue", "subject", "task_type", "priority",
            "due_in_days", "programmes", "status", "content", "mode", "daily_cap", "route_to", "details",
            "instructions",
        }
        unknown = set(spec) - known
        if unknown:
            raise r.fail(where, f"unknown keys {sorted(unknown)}; known: {sorted(known)}")
        action = ActionSpec(
            action_type=name,
            kind=kind,
            cooldown_days=int(r.non_negative(r.get(spec, "cooldown_days", where, int, 0), f"{where}.cooldown_days")),
            one_open_per_account=r.get(spec, "one_open_per_account", where, bool, False),
            rescue=r.get(spec, "rescue", where, bool, False),
            subject=r.get(spec, "subject", where, str, None),
            task_type=r.get(spec, "task_type", where, str, "Other"),
            priority=r.get(spec, "priority", where, str, "Normal"),
            due_in_days=int(r.non_negative(r.get(spec, "due_in_days", where, int, 0), f"{where}.due_in_days")),
            programmes=tuple(r.get(spec, "programmes", where, list, [])),
            status=r.get(spec, "status", where, str, None),
            content=r.get(spec, "content", where, dict, {}),
            mode=r.choice(r.get(spec, "mode", where, str, "live"), MODES, f"{where}.mode"),
            daily_cap=r.cap(r.get(spec, "daily_cap", where, (int, type(None)), None), f"{where}.daily_cap"),
            route_to=r.choice(r.get(spec, "route_to", where, str, "owner"), ROUTES, f"{where}.route_to"),
            details=tuple(
                r.choice(d, TASK_DETAILS, f"{where}.details") for d in r.get(spec, "details", where, list, [])
            ),
            instructions=r.get(spec, "instructions", where, str, None),
        )
        if kind != "salesforce_task" and (action.route_to != "owner" or action.details or action.instructions):
            raise r.fail(where, "route_to, details and instructions apply to salesforce_task actions only")
        if kind == "salesforce_task" and not action.subject:
            raise r.fail(f"{where}.subject", "a salesforce_task needs a subject (what the CSM sees)")
        if kind == "campaign_enrol" and len(action.programmes) != 1:
            raise r.fail(f"{where}.programmes", "a campaign_enrol action enrols into exactly one programme, e.g. [referral]")
        if kind == "campaign_status":
            if action.status not in ("paused", "active"):
                raise r.fail(f"{where}.status", f"must be 'paused' or 'active', got {action.status!r}")
            if action.status == "paused" and not action.programmes:
                raise r.fail(f"{where}.programmes", "pausing needs the programmes to pause, e.g. [upsell, expansion]")
        actions[name] = action

    triggers: dict[str, TriggerSpec] = {}
    raw_triggers = r.mapping(r.get(doc, "triggers", "rules", dict), "triggers")
    for name, raw in raw_triggers.items():
        where = f"triggers.{name}"
        if name not in TRIGGERS:
            raise r.fail(where, f"unknown trigger; use one of {', '.join(TRIGGERS)}")
        spec = r.mapping(raw, where)
        tracks = {}
        for track in ("white_glove", "automated"):
            listed = r.get(spec, track, where, list)
            for action_type in listed:
                if action_type not in actions:
                    raise r.fail(
                        f"{where}.{track}",
                        f"action {action_type!r} is not defined under actions; define it or remove it",
                    )
            tracks[track] = tuple(listed)
        kwargs: dict[str, Any] = {}
        if name in TRANSITION_TRIGGERS:
            kwargs["from_zones"] = r.zones(r.get(spec, "from_zones", where, list), f"{where}.from_zones", True)
            kwargs["to_zones"] = r.zones(r.get(spec, "to_zones", where, list), f"{where}.to_zones")
        if name == "sustained_healthy":
            kwargs["min_days"] = int(r.non_negative(r.get(spec, "min_days", where, int), f"{where}.min_days"))
            kwargs["min_slope_90"] = r.get(spec, "min_slope_90", where, (int, float), None)
        if name == "top_quartile_expansion":
            pct = float(r.get(spec, "min_percentile", where, (int, float)))
            if not 0 < pct < 1:
                raise r.fail(f"{where}.min_percentile", f"must be between 0 and 1, got {pct}")
            kwargs["min_percentile"] = pct
            kwargs["zones"] = r.zones(r.get(spec, "zones", where, list), f"{where}.zones")
            if set(kwargs["zones"]) & {"At Risk", "Critical"}:
                raise r.fail(f"{where}.zones", "expansion is never offered to At Risk or Critical accounts")
            kwargs["min_delta_30"] = r.get(spec, "min_delta_30", where, (int, float), None)
        triggers[name] = TriggerSpec(name=name, **tracks, **kwargs)

    playbooks = _playbooks(r, r.get(doc, "playbooks", "rules", dict, {}), actions)
    programmes = _programmes(r, r.get(doc, "programmes", "rules", dict, {}))
    for action in actions.values():
        for group in action.programmes:
            if group not in programmes:
                raise r.fail(f"actions.{action.action_type}.programmes",
                             f"programme {group!r} is not defined under programmes; define it or remove it")
    segments = _segments(r, r.get(doc, "segments", "rules", dict, {}), programmes)
    _check_undo_modes(r, actions)
    pause_status = r.get(doc, "campaign_pause_status", "rules", str, "Paused").strip()
    if not pause_status:
        raise r.fail("campaign_pause_status", "must name the CampaignMember status a pause sets, e.g. Paused")

    improving = float(r.get(trend, "improving_min_slope", "trend_labels", (int, float)))
    declining = float(r.get(trend, "declining_max_slope", "trend_labels", (int, float)))
    if declining >= improving:
        raise r.fail("trend_labels", f"declining_max_slope ({declining}) must be below improving_min_slope ({improving})")
    window = int(r.get(doc, "feature_usage_window_days", "rules", int, 30))
    if window < 1:
        raise r.fail("feature_usage_window_days", f"must be at least 1, got {window}")
    return ActionRules(
        version=version,
        source=source,
        high_value_min_arr=float(r.non_negative(r.get(tier, "high_value_min_arr", "value_tier", (int, float)),
                                                "value_tier.high_value_min_arr")),
        high_value_plans=tuple(p.lower() for p in r.get(tier, "high_value_plans", "value_tier", list, [])),
        default_queue_user_id=r.get(routing, "default_queue_user_id", "routing", str),
        vp_customer_success_role=r.get(routing, "vp_customer_success_role", "routing", str),
        email_from=r.get(routing, "email_from", "routing", str),
        escalation_recipients=_addresses(r, r.get(routing, "escalation_recipients", "routing", list, []),
                                         "routing.escalation_recipients"),
        improving_min_slope=improving,
        declining_max_slope=declining,
        feature_usage_window_days=window,
        actions=actions,
        triggers=triggers,
        programmes=programmes,
        segments=segments,
        pause_status=pause_status,
        playbooks=playbooks,
        support_manager_role=r.get(routing, "support_manager_role", "routing", str, None),
        finance_contact_titles=tuple(
            str(t).strip().lower() for t in r.get(routing, "finance_contact_titles", "routing", list, []) if str(t).strip()
        ),
    )


def _playbooks(r: _Reader, raw: dict[str, Any], actions: dict[str, ActionSpec]) -> dict[str, PlaybookSpec]:
    """The playbooks keyed to band and driver; an unknown dimension or signal fails naming it."""
    from customer_health.scoring.signal_catalog import DIMENSIONS, SIGNALS

    known = {"title", "to_zones", "from_zones", "value_tier", "trajectory", "driver_dimension", "driver_signal",
             "driven_by", "white_glove", "automated"}
    out = {}
    for name, spec in r.mapping(raw, "playbooks").items():
        where = f"playbooks.{name}"
        spec = r.mapping(spec, where)
        unknown = set(spec) - known
        if unknown:
            raise r.fail(where, f"unknown keys {sorted(unknown)}; known: {sorted(known)}")
        if name in TRIGGERS:
            raise r.fail(where, "a playbook cannot take a trigger's name; rename it")
        tracks = {}
        for track in ("white_glove", "automated"):
            listed = r.get(spec, track, where, list)
            for action_type in listed:
                if action_type not in actions:
                    raise r.fail(f"{where}.{track}",
                                 f"action {action_type!r} is not defined under actions; define it or remove it")
            tracks[track] = tuple(listed)
        dimension = r.get(spec, "driver_dimension", where, str, None)
        if dimension is not None and dimension not in DIMENSIONS:
            raise r.fail(f"{where}.driver_dimension",
                         f"unknown dimension {dimension!r}; use one of {', '.join(DIMENSIONS)}")
        named = r.get(spec, "driver_signal", where, (str, list), None)
        signals = [named] if isinstance(named, str) else list(named or [])
        if named is not None and not signals:
            raise r.fail(f"{where}.driver_signal", "expected a signal key or a non-empty list of them")
        for signal in signals:
            if not isinstance(signal, str) or signal not in SIGNALS:
                raise r.fail(f"{where}.driver_signal", f"unknown signal {signal!r}; use one of {', '.join(SIGNALS)}")
            if dimension is not None and SIGNALS[signal].dimension != dimension:
                raise r.fail(where, f"driver_signal {signal!r} is a {SIGNALS[signal].dimension} signal, "
                                    f"not {dimension}: it could never fire; fix one of them")
        driven_by = r.get(spec, "driven_by", where, list, ["shortfall"])
        if not driven_by:
            raise r.fail(f"{where}.driven_by", f"expected a non-empty list of {', '.join(DRIVEN_BY)}")
        trajectory = r.get(spec, "trajectory", where, list, [])
        to_zones = r.zones(r.get(spec, "to_zones", where, list), f"{where}.to_zones")
        out[name] = PlaybookSpec(
            name=name,
            title=r.get(spec, "title", where, str),
            to_zones=to_zones,  # type: ignore[arg-type]
            from_zones=r.zones(spec["from_zones"], f"{where}.from_zones", True) if "from_zones" in spec else (),
            value_tier=r.choice(r.get(spec, "value_tier", where, str, "any"), VALUE_TIERS, f"{where}.value_tier"),
            trajectory=tuple(r.choice(t, TRAJECTORIES, f"{where}.trajectory") for t in trajectory),
            driver_dimension=dimension,
            driver_signals=tuple(signals),
            driven_by=tuple(r.choice(d, DRIVEN_BY, f"{where}.driven_by") for d in driven_by),
            **tracks,
        )
    return out


def _programmes(r: _Reader, raw: dict[str, Any]) -> dict[str, ProgrammeSelector]:
    out = {}
    for group, spec in r.mapping(raw, "programmes").items():
        where = f"programmes.{group}"
        spec = r.mapping(spec, where)
        unknown = set(spec) - {"name", "name_contains", "type"}
        if unknown:
            raise r.fail(where, f"unknown keys {sorted(unknown)}; known: ['name', 'name_contains', 'type']")
        name = r.get(spec, "name", where, str, None)
        contains = r.get(spec, "name_contains", where, str, None)
        if (name is None) == (contains is None) or not (name or contains or "").strip():
            raise r.fail(where, "give exactly one of name (the exact campaign or list name) or name_contains")
        out[group] = ProgrammeSelector(group, name, contains, r.get(spec, "type", where, str, None))
    return out


def _segments(r: _Reader, raw: dict[str, Any], programmes: dict[str, ProgrammeSelector]) -> dict[str, SegmentSpec]:
    out = {}
    for name, spec in r.mapping(raw, "segments").items():
        where = f"segments.{name}"
        spec = r.mapping(spec, where)
        unknown = set(spec) - {"programme", "min_score", "max_score", "zones", "pause", "mode"}
        if unknown:
            raise r.fail(where, f"unknown keys {sorted(unknown)}; known: min_score, max_score, zones, programme, pause, mode")
        programme = r.get(spec, "programme", where, str)
        pause = tuple(r.get(spec, "pause", where, list, []))
        for group in (programme, *pause):
            if group not in programmes:
                raise r.fail(where, f"programme {group!r} is not defined under programmes")
        low = int(r.get(spec, "min_score", where, int, 0))
        high = int(r.get(spec, "max_score", where, int, 100))
        if not 0 <= low <= high <= 100:
            raise r.fail(where, f"needs 0 <= min_score <= max_score <= 100, got {low} and {high}")
        zones = tuple(r.zones(spec["zones"], f"{where}.zones")) if "zones" in spec else ()
        mode = r.choice(r.get(spec, "mode", where, str, "live"), MODES, f"{where}.mode")
        out[name] = SegmentSpec(name, programme, low, high, zones, pause, mode)  # type: ignore[arg-type]
    return out


def _check_undo_modes(r: _Reader, actions: dict[str, ActionSpec]) -> None:
    """An action that undoes others must be live when what it undoes is: a shadow resume would
    leave live pauses paused forever, a shadow completion live rescue tasks open."""
    for undo in actions.values():
        if undo.mode != "shadow":
            continue
        if undo.kind == "campaign_status" and undo.status == "active":
            undone = [a for a in actions.values() if a.kind == "campaign_status" and a.status == "paused"]
        elif undo.kind == "salesforce_task_complete":
            undone = [a for a in actions.values() if a.rescue]
        else:
            continue
        live = sorted(a.action_type for a in undone if a.mode == "live")
        if live:
            raise r.fail(f"actions.{undo.action_type}.mode",
                         f"is shadow but undoes {', '.join(live)}, which are live: what they do would never be "
                         "undone; make both live or both shadow")


_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


def _addresses(r: Any, values: list[Any], where: str) -> tuple[str, ...]:
    """Validated, lower-cased e-mail addresses (a typo fails at load, not at the first escalation)."""
    out = []
    for i, value in enumerate(values):
        if not isinstance(value, str) or not _ADDRESS.match(value.strip()):
            raise r.fail(f"{where}[{i}]", f"{value!r} is not an e-mail address")
        out.append(value.strip().lower())
    return tuple(dict.fromkeys(out))


def load_action_rules(path: str | Path | None = None) -> ActionRules:
    """Read and validate the action rules file (default: ``config/actions_v1.yaml``)."""
    path = Path(path) if path is not None else DEFAULT_RULES_PATH
    try:
        text = path.read_text()
    except OSError as exc:
        raise ActionRulesError(f"cannot read the action rules file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ActionRulesError(f"{path} is not valid YAML: {exc}") from exc
    return parse_action_rules(data, str(path))
