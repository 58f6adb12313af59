"""The action rules as pure functions: which actions an account's new score triggers.

``triggered_actions`` reads one account's health on the trigger date (zone transition,
trajectory, drivers, value tier, healthy streak, rank in the day's population, unused core
features) and returns the actions its track calls for, each with a reason a CSM can act on.
``suppression_reason`` then applies the anti-fatigue rules against the account's earlier
actions: cooldowns, one open action of a type per account, and nothing to undo on recovery.
Nothing here touches the warehouse or a target system; ``decide.py`` gathers the inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from customer_health import wording
from customer_health.actions.config import ActionRules, PlaybookSpec, TriggerSpec
from customer_health.scoring.drivers import NO_DRIVERS, Driver, ScoreDrivers, describe_drivers
from customer_health.scoring.signal_catalog import SIGNALS


@dataclass(frozen=True)
class AccountHealth:
    """One account's health on the trigger date, as the rules see it."""

    account_key: str
    as_of: date
    zone: str
    previous_zone: str | None
    score: int
    account_name: str | None = None
    delta_30: float | None = None
    slope_90: float | None = None
    arr: float | None = None
    plan: str | None = None
    explanation: str | None = None
    drivers: ScoreDrivers = NO_DRIVERS
    healthy_streak_days: int = 0  # consecutive days Healthy up to and including as_of
    share_scoring_higher: float = 1.0  # fraction of the day's population with a higher score
    unused_core_features: tuple[str, ...] = ()
    previous_score: int | None = None  # the score on the previous scored date
    previous_date: date | None = None
    readings: Mapping[str, str] = field(default_factory=dict)  # signal -> its value in words, on as_of

    @property
    def name(self) -> str:
        """The account's name, or its key when the name is unknown."""
        return self.account_name or self.account_key


FALLING_TRIGGERS = ("healthy_to_neutral", "entering_at_risk", "entering_critical")


@dataclass(frozen=True)
class DriverPick:
    """The driver a rule selected on: one stored driver of the score, with its dimension.

    ``basis`` ``shortfall``: the signal with the largest weighted shortfall (points below a
    neutral 50, ``score`` its 0-100 value against similar accounts); ``change``: the signal that
    lost most over the change window (``points`` lost). ``reading`` is the signal's value on the
    day in words (``signal_values``), when known.
    """

    basis: str
    signal: str
    points: float
    score: float | None = None
    reading: str | None = None

    @property
    def dimension(self) -> str:
        spec = SIGNALS.get(self.signal)
        return spec.dimension if spec is not None else "unknown"

    @property
    def label(self) -> str:
        return Driver(self.signal, self.points, self.score).label

    def describe(self) -> str:
        """``"feature breadth: 2 of 8 core features used; -6.1 points, 12/100 vs similar accounts"``."""
        detail = wording.points(self.points, signed=True)
        if self.basis == "change":
            detail += " over 30 days"
        if self.score is not None:
            detail += f", {round(self.score)}/100 vs similar accounts"
        head = self.reading if self.reading and not self.reading.startswith("no data") else self.label
        if not head.lower().startswith(self.label.lower()):
            head = f"{self.label}: {head}"
        return f"{head}; {detail}"

    def as_payload(self) -> dict[str, Any]:
        """What an outbox row records of it."""
        return {
            "basis": self.basis, "dimension": self.dimension, "signal": self.signal, "points": self.points,
            "score": self.score, "reading": self.describe(),
        }


def pick_driver(account: AccountHealth, basis: str) -> DriverPick | None:
    """The account's driver on ``basis``: the largest weighted shortfall (``shortfall``, the first
    of the drivers pulling the score down) or the largest fall over the change window (``change``)."""
    if basis == "shortfall":
        top = account.drivers.down[0] if account.drivers.down else None
    elif basis == "change":
        falls = [d for d in account.drivers.changes if d.points < 0]
        top = min(falls, key=lambda d: (d.points, d.signal)) if falls else None
    else:
        raise ValueError(f"unknown driver basis {basis!r}; use shortfall or change")
    if top is None:
        return None
    return DriverPick(basis, top.signal, top.points, top.score, account.readings.get(top.signal))


def playbook_driver(spec: PlaybookSpec, account: AccountHealth) -> DriverPick | None:
    """The driver that keys ``spec`` for this account (first matching basis), None when none does."""
    for basis in spec.driven_by:
        pick = pick_driver(account, basis)
        if pick is None:
            continue
        if spec.driver_signals and pick.signal not in spec.driver_signals:
            continue
        if spec.driver_dimension is not None and pick.dimension != spec.driver_dimension:
            continue
        return pick
    return None


@dataclass(frozen=True)
class TriggeredAction:
    """An action a rule calls for, before the anti-fatigue rules.

    ``trigger`` is the rule that fired it (a trigger's or a playbook's key), ``playbook`` the
    playbook's title when a playbook fired it, ``driver`` the driver the rule selected on (for
    a trigger: the largest weighted shortfall, what drove the score there).
    """

    action_type: str
    trigger: str
    reason: str
    driver: DriverPick | None = None
    playbook: str | None = None


@dataclass(frozen=True)
class PastAction:
    """An earlier outbox row of the same account."""

    idempotency_key: str
    action_type: str
    trigger_date: date
    status: str
    is_open: bool = False


@dataclass(frozen=True)
class Decision:
    """A triggered action with the verdict of the anti-fatigue rules."""

    action: TriggeredAction
    suppressed_because: str | None = None
    related_keys: tuple[str, ...] = field(default_factory=tuple)  # open rows a recovery undoes


def is_high_value(account: AccountHealth, rules: ActionRules) -> bool:
    """White-glove track (human tasks) versus the automated track."""
    return rules.is_high_value(account.arr, account.plan)


def _trajectory(account: AccountHealth) -> str:
    """The score's 30-day change and 90-day slope, in words (``"down 12 points over 30 days"``)."""
    parts = []
    if account.delta_30 is not None:
        change = round(account.delta_30)
        parts.append(
            "unchanged over 30 days" if change == 0
            else f"{'down' if change < 0 else 'up'} {wording.points(abs(change))} over 30 days"
        )
    if account.slope_90 is not None and abs(account.slope_90) >= 1:
        direction = "falling" if account.slope_90 < 0 else "rising"
        parts.append(f"{direction} {wording.points(abs(account.slope_90))} a month over 90 days")
    return ", ".join(parts)


def _move(account: AccountHealth) -> str:
    """How the score got where it is: the step from the previous score, then the 30-day trend.

    A zone change is a step across a bound, so the step is what a reader needs first; the
    30-day trend follows as context (it may point the other way: a score that dipped from 75
    to 74 today can still be a point above where it was a month ago).
    """
    head = f"score {account.score}"
    if account.previous_score is not None and account.previous_date is not None:
        step = account.score - account.previous_score
        if step:
            head += (
                f", {'down' if step < 0 else 'up'} {wording.points(abs(step))} from "
                f"{account.previous_score} on {account.previous_date.isoformat()}"
            )
    trend = _trajectory(account)
    return f"{head}; {trend}" if trend else head


def _why(account: AccountHealth) -> list[str]:
    """The explanation sentence and the drivers pulling the score down, as lines."""
    lines = []
    if account.explanation:
        lines.append(f"Why: {account.explanation.rstrip('.')}.")
    pulling = describe_drivers(account.drivers, limit=3, kind="down")
    if pulling:
        lines.append(f"Pulling the score down: {pulling}.")
    return lines


def reason_for(trigger: str, account: AccountHealth, rules: ActionRules) -> str:
    """The CSM-readable reason a trigger fired for this account (one or more lines)."""
    tier = "high-value (white-glove)" if is_high_value(account, rules) else "standard (automated)"
    who = f"{account.name} [{tier}]"
    window = wording.days(rules.feature_usage_window_days)
    unused = f"Core features not used in the last {window}: {', '.join(account.unused_core_features)}."
    if trigger == "healthy_to_neutral":
        lines = [f"{who} slipped from Healthy to Neutral: {_move(account)}.", *_why(account)]
        if account.unused_core_features:
            lines.append(unused)
        return "\n".join(lines)
    if trigger in ("entering_at_risk", "entering_critical"):
        zone = "At Risk" if trigger == "entering_at_risk" else "Critical"
        origin = f"from {account.previous_zone}" if account.previous_zone else "on its first score"
        return "\n".join([f"{who} entered {zone} {origin}: {_move(account)}.", *_why(account)])
    if trigger == "sustained_healthy":
        trend = _trajectory(account)
        return (
            f"{who} has been Healthy for {wording.days(account.healthy_streak_days)} in a row (score {account.score}"
            f"{'; ' + trend if trend else ''}): a candidate for referrals, a case study, the beta programme and reviews."
        )
    if trigger == "top_quartile_expansion":
        top = max(1, round(100 * account.share_scoring_higher + 0.5))
        return (
            f"{who} scores {account.score}, in the top {top}% of customers today.\n{unused}\n"
            "Open an expansion conversation grounded in that usage."
        )
    if trigger == "recovery":
        return (
            f"{who} recovered from {account.previous_zone} to {account.zone}: {_move(account)}.\n"
            "Resume paused campaigns and close the rescue tasks."
        )
    raise ValueError(f"unknown trigger {trigger!r}; known triggers are defined in actions/config.py TRIGGERS")


def _transition_fires(spec: TriggerSpec, account: AccountHealth) -> bool:
    return account.zone in spec.to_zones and account.previous_zone in spec.from_zones and (
        account.previous_zone != account.zone
    )


def trigger_fires(spec: TriggerSpec, account: AccountHealth) -> bool:
    """Whether the trigger ``spec`` fires for ``account`` on its as-of date."""
    if spec.name in ("healthy_to_neutral", "entering_at_risk", "entering_critical", "recovery"):
        return _transition_fires(spec, account)
    if spec.name == "sustained_healthy":
        steady = spec.min_slope_90 is None or account.slope_90 is None or account.slope_90 >= spec.min_slope_90
        return account.zone == "Healthy" and account.healthy_streak_days >= spec.min_days and steady
    if spec.name == "top_quartile_expansion":
        not_declining = spec.min_delta_30 is None or account.delta_30 is None or account.delta_30 >= spec.min_delta_30
        return (
            account.zone in spec.zones
            and account.share_scoring_higher < 1.0 - spec.min_percentile
            and bool(account.unused_core_features)
            and not_declining
        )
    return False


def playbook_fires(spec: PlaybookSpec, account: AccountHealth, rules: ActionRules) -> tuple[bool, DriverPick | None]:
    """Whether playbook ``spec`` fires for ``account`` on its as-of date, and on which driver.

    It fires the day the account enters one of ``to_zones`` (from ``from_zones`` when given),
    in the value tier and trajectory asked for, when its driver is the one the playbook is keyed
    to. A playbook without a driver selector records the largest weighted shortfall.
    """
    entered = account.zone in spec.to_zones and account.previous_zone not in spec.to_zones and (
        not spec.from_zones or account.previous_zone in spec.from_zones
    )
    if not entered:
        return False, None
    if spec.value_tier != "any" and (spec.value_tier == "high_value") != is_high_value(account, rules):
        return False, None
    if spec.trajectory and rules.trend_label(account.slope_90) not in spec.trajectory:
        return False, None
    if not spec.selects_driver:
        return True, pick_driver(account, "shortfall")
    pick = playbook_driver(spec, account)
    return pick is not None, pick


def playbook_line(title: str, driver: DriverPick | None) -> str:
    """``"Playbook: Engagement recovery - driven by engagement (feature breadth: ...; -6.1 points)."``"""
    if driver is None:
        return f"Playbook: {title} - no driver on record (the score has no stored drivers)."
    return f"Playbook: {title} - driven by {driver.dimension} ({driver.describe()})."


def playbook_reason(spec: PlaybookSpec, driver: DriverPick | None, account: AccountHealth, rules: ActionRules) -> str:
    """The CSM-readable reason a playbook fired: the playbook and its driver, then the move."""
    tier = "high-value (white-glove)" if is_high_value(account, rules) else "standard (automated)"
    origin = f"from {account.previous_zone}" if account.previous_zone else "on its first score"
    return "\n".join([
        playbook_line(spec.title, driver),
        f"{account.name} [{tier}] entered {account.zone} {origin}: {_move(account)}.",
        *_why(account),
    ])


def triggered_actions(account: AccountHealth, rules: ActionRules) -> list[TriggeredAction]:
    """Every action the rules call for on the account's as-of date (one per action type).

    Triggers first, then playbooks, in file order; an action type two rules call for is
    attributed to the first.
    """
    high_value = is_high_value(account, rules)
    actions: dict[str, TriggeredAction] = {}
    for spec in rules.triggers.values():
        if not trigger_fires(spec, account):
            continue
        reason = reason_for(spec.name, account, rules)
        # A fall into a worse zone is driven by the largest weighted shortfall; the other
        # triggers (recovery, long health, the top quartile) are not driven by a shortfall.
        driver = pick_driver(account, "shortfall") if spec.name in FALLING_TRIGGERS else None
        for action_type in spec.actions_for(high_value):
            actions.setdefault(action_type, TriggeredAction(action_type, spec.name, reason, driver))
    for play in rules.playbooks.values():
        fires, driver = playbook_fires(play, account, rules)
        if not fires:
            continue
        reason = playbook_reason(play, driver, account, rules)
        for action_type in play.actions_for(high_value):
            actions.setdefault(action_type, TriggeredAction(action_type, play.name, reason, driver, play.title))
    return list(actions.values())


def suppression_reason(
    action_type: str, as_of: date, history: Sequence[PastAction], rules: ActionRules
) -> tuple[str | None, tuple[str, ...]]:
    """Why ``action_type`` must not be created on ``as_of`` given the account's earlier actions.

    Returns ``(reason or None, related_keys)``; for recovery actions ``related_keys`` are the
    open rows they undo. ``history`` holds rows with a trigger date before ``as_of`` only, so
    re-deciding a date gives the same answer whatever was decided later.

    Shadow rows count against cooldowns only while their type is still in shadow mode (so the
    shadow record shows what live delivery would have done, once per cooldown); once the type
    is live they count for nothing, since nothing was sent.
    """
    spec = rules.action(action_type)
    earlier = [p for p in history if p.trigger_date < as_of and (p.status != "shadow" or spec.shadow)]
    if spec.kind == "campaign_status" and spec.status == "active":
        pauses = tuple(
            p.idempotency_key for p in earlier
            if p.is_open and rules.actions.get(p.action_type) is not None
            and rules.actions[p.action_type].kind == "campaign_status"
            and rules.actions[p.action_type].status == "paused"
        )
        return (None, pauses) if pauses else ("no paused campaigns to resume", ())
    if spec.kind == "salesforce_task_complete":
        rescue = tuple(
            p.idempotency_key for p in earlier
            if p.is_open and rules.actions.get(p.action_type) is not None and rules.actions[p.action_type].rescue
        )
        return (None, rescue) if rescue else ("no open rescue tasks to complete", ())
    same = [p for p in earlier if p.action_type == action_type]
    if spec.one_open_per_account:
        open_rows = [p for p in same if p.is_open]
        if open_rows:
            first = min(open_rows, key=lambda p: p.trigger_date)
            return f"an open {action_type} from {first.trigger_date.isoformat()} is still open", ()
    if spec.cooldown_days:
        since = as_of - timedelta(days=spec.cooldown_days)
        recent = [p for p in same if p.trigger_date >= since and p.status != "failed"]
        if recent:
            last = max(p.trigger_date for p in recent)
            return (
                f"cooldown: {action_type} already decided on {last.isoformat()} "
                f"(cooldown {wording.days(spec.cooldown_days)})",
                (),
            )
    return None, ()


# The zones in which a trigger's actions still make sense: a row deferred by the daily cap is
# withdrawn when its turn comes if the account is no longer in them (``actions.release``).
STILL_DUE_ZONES: dict[str, frozenset[str]] = {
    "healthy_to_neutral": frozenset({"Neutral"}),
    "entering_at_risk": frozenset({"At Risk", "Critical"}),
    "entering_critical": frozenset({"Critical"}),
    "sustained_healthy": frozenset({"Healthy"}),
    "top_quartile_expansion": frozenset({"Healthy", "Neutral"}),
    "recovery": frozenset({"Neutral", "Healthy"}),
}


def still_due(trigger: str, zone: str | None, rules: ActionRules | None = None) -> bool:
    """Whether an action ``trigger`` fired for is still worth delivering to an account now in ``zone``.

    A rescue (a check-in, an escalation) for an account that recovered meanwhile, an advocacy
    ask to one that is no longer Healthy, a resume for one that fell back: all stale. A
    playbook of ``rules`` stays due while the account is in one of its zones or a worse one. An
    unknown trigger, or an account without a score, keeps its action (nothing says otherwise).
    """
    zones = STILL_DUE_ZONES.get(trigger)
    if zones is None and rules is not None and trigger in rules.playbooks:
        order = ("Healthy", "Neutral", "At Risk", "Critical")
        best = min(order.index(z) for z in rules.playbooks[trigger].to_zones)
        zones = frozenset(order[best:])
    return zones is None or zone is None or zone in zones


def decide_for_account(
    account: AccountHealth, history: Sequence[PastAction], rules: ActionRules
) -> list[Decision]:
    """The triggered actions of one account, each with its anti-fatigue verdict."""
    decisions = []
    for action in triggered_actions(account, rules):
        reason, related = suppression_reason(action.action_type, account.as_of, history, rules)
        decisions.append(Decision(action, reason, related))
    return decisions
