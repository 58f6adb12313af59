"""Load and validate the action rules (``config/actions_v1.yaml``).

The rules are configuration like the scoring model, but a separate file with its own version:
a change of who gets a task or how long a cooldown lasts is not a new scoring model. A bad file
fails on load with an ``ActionRulesError`` naming the file and the problem, before any action
is decided.
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
    "marketing_enrol",
    "campaign_status",
    "slack",
    "email",
)
# Which outbox ``target`` each kind is delivered to.
KIND_TARGET = {
    "salesforce_task": "salesforce",
    "salesforce_task_complete": "salesforce",
    "marketing_enrol": "marketing",
    "campaign_status": "marketing",
    "slack": "slack",
    "email": "email",
}
TRIGGERS = (
    "healthy_to_neutral",
    "entering_at_risk",
    "entering_critical",
    "sustained_healthy",
    "top_quartile_expansion",
    "recovery",
)
TRANSITION_TRIGGERS = ("healthy_to_neutral", "entering_at_risk", "entering_critical", "recovery")


class ActionRulesError(ValueError):
    """The action rules file is invalid; the message names the file and what to fix."""


@dataclass(frozen=True)
class ActionSpec:
    """One action type: how it is delivered and how often it may happen."""

    action_type: str
    kind: str
    cooldown_days: int = 0
    one_open_per_account: bool = False
    rescue: bool = False  # a rescue task is completed automatically when the account recovers
    subject: str | None = None
    task_type: str = "Other"
    priority: str = "Normal"
    due_in_days: int = 0
    list_kind: str | None = None
    list_kinds: tuple[str, ...] = ()
    list_name_contains: str | None = None
    status: str | None = None
    content: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """The outbox target: salesforce, marketing, slack or email."""
        return KIND_TARGET[self.kind]


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
            "due_in_days", "list_kind", "list_kinds", "list_name_contains", "status", "content",
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
            list_kind=r.get(spec, "list_kind", where, str, None),
            list_kinds=tuple(r.get(spec, "list_kinds", where, list, [])),
            list_name_contains=r.get(spec, "list_name_contains", where, str, None),
            status=r.get(spec, "status", where, str, None),
            content=r.get(spec, "content", where, dict, {}),
        )
        if kind == "salesforce_task" and not action.subject:
            raise r.fail(f"{where}.subject", "a salesforce_task needs a subject (what the CSM sees)")
        if kind == "marketing_enrol" and not action.list_kind:
            raise r.fail(f"{where}.list_kind", "a marketing_enrol action needs the list kind to enrol into")
        if kind == "campaign_status":
            if action.status not in ("paused", "active"):
                raise r.fail(f"{where}.status", f"must be 'paused' or 'active', got {action.status!r}")
            if action.status == "paused" and not action.list_kinds:
                raise r.fail(f"{where}.list_kinds", "pausing needs the campaign list kinds to pause, e.g. [upsell]")
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
    )


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
