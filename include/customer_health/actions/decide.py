"""Decide actions for a date: health_scores -> rules -> action_outbox rows (status pending).

``decide_actions`` reads the day's scores of one model version, the account's context (owner,
contacts, executive sponsor, the VP of Customer Success, unused core features, healthy streak,
rank in the day's population) and the account's earlier actions, applies the rules
(``rules.py``) and writes one outbox row per action with the key
``{account_key}:{action_type}:{trigger_date}:{model_version}``. Deciding a date twice inserts
nothing new, and never touches a row already written. A type in shadow mode is recorded with
status ``shadow`` (its payload is what would have been sent); a deliverable decision then
releases what the day may deliver under the daily caps (``release.release_day``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, func, or_, select

from customer_health import wording
from customer_health.actions import outbox
from customer_health.actions.config import ActionRules, ActionSpec
from customer_health.actions.release import ReleaseReport, release_day
from customer_health.actions.rules import AccountHealth, PastAction, TriggeredAction, decide_for_account
from customer_health.scoring.drivers import read_drivers
from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.sources.roster import roster_column, roster_table
from customer_health.sources.salesforce_fields import api_name
from customer_health.warehouse.io import as_date
from customer_health.warehouse.schema import (
    account_crosswalk,
    account_identity_map,
    action_outbox,
    health_scores,
    raw_product_feature,
    raw_product_feature_daily,
    raw_sf_contact,
    raw_sf_task,
    raw_sf_user,
    raw_stripe_invoice,
    raw_zd_ticket,
    signal_values,
)

BACKFILL_NOTE = "decided by a run that does not dispatch (backfill or dispatch=false); not delivered"
SHADOW_NOTE = "shadow mode: what would have been sent, recorded and never delivered"


@dataclass
class DecideReport:
    """What deciding one date did."""

    as_of: date
    model_version: str
    rules_version: str
    accounts: int = 0
    inserted: int = 0
    already_decided: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    suppressed: list[tuple[str, str, str]] = field(default_factory=list)  # (account, action, why)
    withdrawn: int = 0  # pending rescue rows suppressed because the account recovered first
    shadow: dict[str, int] = field(default_factory=dict)  # new rows recorded in shadow mode, per type
    release: ReleaseReport | None = None  # what the daily caps released (deliverable runs)

    def summary(self) -> dict[str, Any]:
        """A small JSON-able summary (fit for XCom)."""
        return {
            "shadow": dict(self.shadow),
            "release": self.release.summary() if self.release else None,
            "as_of": self.as_of.isoformat(),
            "model_version": self.model_version,
            "rules_version": self.rules_version,
            "accounts": self.accounts,
            "inserted": self.inserted,
            "already_decided": self.already_decided,
            "by_type": dict(self.by_type),
            "suppressed": len(self.suppressed),
            "withdrawn": self.withdrawn,
        }


@dataclass(frozen=True)
class Person:
    """Someone an action is addressed to."""

    id: str | None
    name: str
    email: str | None


@dataclass
class AccountContext:
    """Who and what the account's actions address."""

    owner_id: str
    owner_is_queue: bool
    contact_emails: list[str]
    sponsor: Person | None  # the customer's executive sponsor (a Contact): named, never written to
    contacts: list[dict[str, str]] = field(default_factory=list)  # {"id": Contact Id, "email": ...}
    finance_contact: Person | None = None  # the customer's finance contact (a Contact, by title)
    owner_name: str | None = None
    # The owner's manager up the Salesforce role hierarchy (UserRole.ParentRoleId), or None.
    manager: Person | None = None
    support_manager: Person | None = None  # an active User holding routing.support_manager_role
    # The account's internal executive sponsor: a Salesforce User (Account.Executive_Sponsor_User__c).
    executive_sponsor_user: Person | None = None

    @property
    def customer_domains(self) -> set[str]:
        """The e-mail domains of the account's contacts: the customer's own, never internal."""
        return {email.rsplit("@", 1)[1] for email in self.contact_emails if "@" in email}


# ----------------------------------------------------------------------------- reading
def load_account_health(conn: Connection, as_of: date, model_version: str, rules: ActionRules) -> list[AccountHealth]:
    """Every account scored on ``as_of`` by ``model_version``, as the rules see it."""
    hs = health_scores
    roster = roster_table()  # the Salesforce Accounts, or a CRM-less company's anchored accounts
    rows = conn.execute(
        select(
            hs.c.account_key, hs.c.zone, hs.c.previous_zone, hs.c.score, hs.c.delta_30, hs.c.slope_90,
            hs.c.arr, hs.c.explanation, hs.c.drivers,
            roster.c.name, roster.c.plan, roster.c.arr.label("account_arr"),
            account_crosswalk.c.account_name, account_crosswalk.c.product_account_id,
        )
        .select_from(
            hs.outerjoin(roster, roster.c.id == hs.c.account_key).outerjoin(
                account_crosswalk, account_crosswalk.c.account_key == hs.c.account_key
            )
        )
        .where(hs.c.as_of_date == as_of, hs.c.model_version == model_version)
        .order_by(hs.c.account_key)
    ).fetchall()
    if not rows:
        return []
    scores = sorted(r.score for r in rows)
    n = len(scores)
    previous_date, previous = _previous_scores(conn, as_of, model_version)
    streaks = _healthy_streaks(conn, as_of, model_version)
    unused = _unused_core_features(conn, as_of, rules.feature_usage_window_days)
    # The drivers' values in words, for the accounts whose zone changed (the rules that name a
    # driver - the transitions and the playbooks - fire on a zone change only).
    readings = _driver_readings(conn, as_of, [r for r in rows if r.zone != r.previous_zone])
    accounts = []
    for r in rows:
        higher = n - _count_at_or_below(scores, r.score)
        accounts.append(
            AccountHealth(
                account_key=r.account_key,
                as_of=as_of,
                zone=r.zone,
                previous_zone=r.previous_zone,
                score=r.score,
                account_name=r.name or r.account_name,
                delta_30=r.delta_30,
                slope_90=r.slope_90,
                arr=r.arr if r.arr is not None else r.account_arr,
                plan=r.plan,
                explanation=r.explanation,
                drivers=read_drivers(r.drivers),
                healthy_streak_days=streaks.get(r.account_key, 0) if r.zone == "Healthy" else 0,
                share_scoring_higher=higher / n,
                unused_core_features=unused.get(r.product_account_id, ()) if r.product_account_id else (),
                previous_score=previous.get(r.account_key),
                previous_date=previous_date if r.account_key in previous else None,
                readings=readings.get(r.account_key, {}),
            )
        )
    return accounts


def _driver_readings(conn: Connection, as_of: date, rows: Sequence[Any]) -> dict[str, dict[str, str]]:
    """Per account, its drivers' signal values on ``as_of`` in words (``signal_values``)."""
    wanted: dict[str, set[str]] = {}
    for r in rows:
        drivers = read_drivers(r.drivers)
        signals = {d.signal for d in (*drivers.down[:1], *drivers.changes) if d.signal in SIGNALS}
        if signals:
            wanted[r.account_key] = signals
    if not wanted:
        return {}
    columns = sorted({s for signals in wanted.values() for s in signals} & set(signal_values.c.keys()))
    out: dict[str, dict[str, str]] = {}
    keys = sorted(wanted)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        for row in conn.execute(
            select(signal_values.c.account_key, *(signal_values.c[c] for c in columns))
            .where(signal_values.c.as_of_date == as_of, signal_values.c.account_key.in_(chunk))
        ):
            m = row._mapping
            out[row.account_key] = {
                s: SIGNALS[s].describe(m[s]) for s in wanted[row.account_key] if s in columns
            }
    return out


def _previous_scores(conn: Connection, as_of: date, model_version: str) -> tuple[date | None, dict[str, int]]:
    """The scores of the last scored date before ``as_of`` (what a zone change stepped from)."""
    hs = health_scores
    day = conn.execute(
        select(func.max(hs.c.as_of_date)).where(hs.c.model_version == model_version, hs.c.as_of_date < as_of)
    ).scalar_one_or_none()
    if day is None:
        return None, {}
    rows = conn.execute(
        select(hs.c.account_key, hs.c.score).where(hs.c.model_version == model_version, hs.c.as_of_date == day)
    )
    return as_date(day), {key: score for key, score in rows}


def _count_at_or_below(sorted_scores: list[int], score: int) -> int:
    from bisect import bisect_right

    return bisect_right(sorted_scores, score)


def _healthy_streaks(conn: Connection, as_of: date, model_version: str) -> dict[str, int]:
    """Days each account has been Healthy without a break, up to and including ``as_of``."""
    hs = health_scores
    last_not_healthy = func.max(case((hs.c.zone != "Healthy", hs.c.as_of_date), else_=None))
    rows = conn.execute(
        select(hs.c.account_key, last_not_healthy.label("broken"), func.min(hs.c.as_of_date).label("first"))
        .where(hs.c.model_version == model_version, hs.c.as_of_date <= as_of)
        .group_by(hs.c.account_key)
    ).fetchall()
    streaks = {}
    for key, broken, first in rows:
        start = (as_date(broken) + timedelta(days=1)) if broken is not None else as_date(first)
        streaks[key] = max(0, (as_of - start).days + 1)
    return streaks


def _unused_core_features(conn: Connection, as_of: date, window_days: int) -> dict[str, tuple[str, ...]]:
    """Per product account: core features (by name) with no use in the window ending ``as_of``."""
    core = conn.execute(
        select(raw_product_feature.c.feature_key, raw_product_feature.c.name)
        .where(raw_product_feature.c.is_core.is_(True), raw_product_feature.c.is_deleted.is_(False))
        .order_by(raw_product_feature.c.feature_key)
    ).fetchall()
    if not core:
        return {}
    fd = raw_product_feature_daily
    used = conn.execute(
        select(fd.c.account_id, fd.c.feature_key)
        .where(fd.c.day > as_of - timedelta(days=window_days), fd.c.day <= as_of, or_(fd.c.users > 0, fd.c.events > 0))
        .group_by(fd.c.account_id, fd.c.feature_key)
    ).fetchall()
    used_by: dict[str, set[str]] = defaultdict(set)
    for account_id, feature_key in used:
        used_by[account_id].add(feature_key)
    accounts = {r[0] for r in conn.execute(select(account_crosswalk.c.product_account_id)).fetchall() if r[0]}
    return {
        a: tuple(name or key for key, name in core if key not in used_by.get(a, set())) for a in accounts
    }


def load_history(conn: Connection, account_keys: list[str], as_of: date, rules: ActionRules) -> dict[str, list[PastAction]]:
    """Earlier outbox rows per account, with whether each is still open."""
    if not account_keys:
        return {}
    longest = max((a.cooldown_days for a in rules.actions.values()), default=0)
    ob = action_outbox
    rows = conn.execute(
        select(ob.c.idempotency_key, ob.c.account_key, ob.c.action_type, ob.c.trigger_date, ob.c.status,
               ob.c.resolved_at, raw_sf_task.c.status.label("task_status"))
        .select_from(ob.outerjoin(raw_sf_task, raw_sf_task.c.health_action_key == ob.c.idempotency_key))
        .where(
            ob.c.trigger_date < as_of,
            or_(
                ob.c.trigger_date >= as_of - timedelta(days=longest),
                and_(ob.c.status.in_([outbox.PENDING, outbox.SENDING, outbox.SENT]), ob.c.resolved_at.is_(None)),
            ),
        )
    ).fetchall()
    wanted = set(account_keys)
    history: dict[str, list[PastAction]] = defaultdict(list)
    for r in rows:
        if r.account_key not in wanted:
            continue
        spec = rules.actions.get(r.action_type)
        history[r.account_key].append(
            PastAction(r.idempotency_key, r.action_type, as_date(r.trigger_date), r.status, is_open_action(r, spec))
        )
    return history


def is_open_action(row: Any, spec: ActionSpec | None) -> bool:
    """Whether an outbox row still asks something of someone: pending or being sent, or sent and
    not resolved yet - a Salesforce task not Completed (``row.task_status``), a campaign pause
    not resumed. The rules' anti-fatigue checks and the dashboard's worklist both use this."""
    if row.status in (outbox.PENDING, outbox.SENDING):
        return True
    if row.status != outbox.SENT or row.resolved_at is not None or spec is None:
        return False
    if spec.kind == "salesforce_task":
        return (row.task_status or "") != "Completed"
    return spec.kind == "campaign_status" and spec.status == "paused"


def load_contexts(conn: Connection, account_keys: list[str], rules: ActionRules) -> dict[str, AccountContext]:
    """Owner (or the default queue), contact e-mails and executive sponsor per account."""
    users = conn.execute(
        select(raw_sf_user.c.id, raw_sf_user.c.name, raw_sf_user.c.email, raw_sf_user.c.role,
               raw_sf_user.c.role_id, raw_sf_user.c.parent_role_id, raw_sf_user.c.is_active)
        .where(raw_sf_user.c.is_deleted.is_(False))
        .order_by(raw_sf_user.c.id)
    ).fetchall()
    hierarchy = RoleHierarchy(users)
    active_users = {u.id: u.name for u in users if u.is_active}
    roster = roster_table()
    accounts = {
        r.id: r
        for r in conn.execute(
            select(roster.c.id, roster.c.owner_id, roster_column(roster, "executive_sponsor_user_id"))
            .where(roster.c.id.in_(account_keys))
        )
    }
    owners = {key: r.owner_id for key, r in accounts.items()}
    support = next(
        (hierarchy.person(u) for u in users if u.is_active and rules.support_manager_role
         and u.role == rules.support_manager_role),
        None,
    )
    contacts: dict[str, list[Any]] = defaultdict(list)
    for c in conn.execute(
        select(raw_sf_contact)
        .where(raw_sf_contact.c.account_id.in_(account_keys), raw_sf_contact.c.is_deleted.is_(False))
        .order_by(raw_sf_contact.c.id)
    ):
        contacts[c.account_id].append(c)
    contexts = {}
    for key in account_keys:
        owner = owners.get(key)
        people = contacts.get(key, [])
        sponsor = next((c for c in people if c.is_executive_sponsor), None)
        finance = finance_contact(people, rules.finance_contact_titles)
        contexts[key] = AccountContext(
            owner_id=owner if owner in active_users else rules.default_queue_user_id,
            owner_is_queue=owner not in active_users,
            contact_emails=sorted({c.email.strip().lower() for c in people if c.email}),
            contacts=campaign_contacts(people),
            sponsor=Person(sponsor.id, f"{sponsor.first_name or ''} {sponsor.last_name or ''}".strip(), sponsor.email)
            if sponsor is not None
            else None,
            finance_contact=_person(finance) if finance is not None else None,
            owner_name=active_users.get(owner) if owner in active_users else None,
            manager=hierarchy.manager_of(owner) if owner in active_users else None,
            support_manager=support,
            executive_sponsor_user=hierarchy.active(accounts[key].executive_sponsor_user_id) if key in accounts else None,
        )
    return contexts


class RoleHierarchy:
    """The Salesforce role hierarchy as extracted: each user's role (``UserRoleId``) and the role
    above it (``UserRole.ParentRoleId``)."""

    def __init__(self, users: Sequence[Any]) -> None:
        self.users = {u.id: u for u in users}
        self.parent: dict[str, str | None] = {}
        self.holders: dict[str, list[Any]] = defaultdict(list)
        for u in users:
            if u.role_id:
                self.parent.setdefault(u.role_id, u.parent_role_id)
                if u.is_active:
                    self.holders[u.role_id].append(u)

    @staticmethod
    def person(user: Any) -> Person:
        return Person(user.id, user.name or user.id, user.email)

    def active(self, user_id: str | None) -> Person | None:
        """The active User ``user_id`` as a Person, None when unknown or inactive."""
        user = self.users.get(user_id) if user_id else None
        return self.person(user) if user is not None and user.is_active else None

    def manager_of(self, user_id: str | None) -> Person | None:
        """The user's manager: an active User in the role above the user's, going further up while
        a role has nobody active in it; None when the user has no role or nobody is found."""
        user = self.users.get(user_id) if user_id else None
        role = user.parent_role_id if user is not None else None
        seen: set[str] = set()
        while role and role not in seen:
            seen.add(role)
            holders = [u for u in self.holders.get(role, []) if u.id != user_id]
            if holders:
                return self.person(holders[0])
            role = self.parent.get(role)
        return None


def _person(contact: Any) -> Person:
    return Person(contact.id, f"{contact.first_name or ''} {contact.last_name or ''}".strip(), contact.email)


def finance_contact(people: Sequence[Any], titles: Sequence[str]) -> Any | None:
    """The account's finance contact: the first Contact (by Id) whose Title contains one of
    ``titles`` (``routing.finance_contact_titles``, case-insensitive); None when none does."""
    for c in sorted(people, key=lambda c: c.id):
        title = (c.title or "").lower()
        if title and any(t in title for t in titles):
            return c
    return None


def campaign_contacts(people: Sequence[Any]) -> list[dict[str, str]]:
    """The contacts a campaign action addresses: each Salesforce Contact with an e-mail address,
    by Id (Salesforce Campaigns) and address (HubSpot finds its contact by it), one per address."""
    seen: dict[str, dict[str, str]] = {}
    for c in sorted(people, key=lambda c: c.id):
        email = (c.email or "").strip().lower()
        if email and email not in seen:
            seen[email] = {"id": c.id, "email": email}
    return sorted(seen.values(), key=lambda c: c["email"])


def load_vps_customer_success(conn: Connection, rules: ActionRules) -> list[Person]:
    """Every active Salesforce User holding the VP of Customer Success role (first: the task owner)."""
    rows = conn.execute(
        select(raw_sf_user.c.id, raw_sf_user.c.name, raw_sf_user.c.email)
        .where(
            raw_sf_user.c.role == rules.vp_customer_success_role,
            raw_sf_user.c.is_active.is_(True),
            raw_sf_user.c.is_deleted.is_(False),
        )
        .order_by(raw_sf_user.c.id)
    )
    return [Person(r.id, r.name, r.email) for r in rows]


def escalation_recipients(vps: Sequence[Person], ctx: AccountContext, rules: ActionRules) -> list[str]:
    """Who receives an internal escalation: the VPs of Customer Success, the account's internal
    executive sponsor (the Salesforce User on ``Account.Executive_Sponsor_User__c``) and the
    configured addresses.

    Internal people only. The customer's contacts (their executive sponsor included) are never
    addressed, and any address in a domain of the account's contacts is dropped, configured or
    not: an internal message with internal drivers must not reach the customer.
    """
    customer = ctx.customer_domains
    internal = [*vps, *([ctx.executive_sponsor_user] if ctx.executive_sponsor_user else [])]
    wanted = [p.email.strip().lower() for p in internal if p.email] + list(rules.escalation_recipients)
    return sorted({a for a in wanted if a.rsplit("@", 1)[-1] not in customer})


# ----------------------------------------------------------------------------- playbook tasks
def _as_of_end(as_of: date) -> Any:
    from datetime import datetime, time

    return datetime.combine(as_of + timedelta(days=1), time(0))


def task_details(
    conn: Connection, spec: ActionSpec, account: AccountHealth, ctx: AccountContext, rules: ActionRules
) -> list[str]:
    """The lines a playbook task lists (``details`` of its action type), read as of the trigger date."""
    lines: list[str] = []
    for detail in spec.details:
        if detail == "unused_features":
            window = wording.days(rules.feature_usage_window_days)
            lines.append(
                f"Core features not used in the last {window}: {', '.join(account.unused_core_features)}."
                if account.unused_core_features
                else f"Every core feature was used in the last {window}: review depth of use instead."
            )
        elif detail == "support_tickets":
            lines += _support_ticket_lines(conn, account)
        elif detail == "billing":
            lines += _billing_lines(conn, account, ctx)
        elif detail == "executive_sponsor":
            sponsor = f"{ctx.sponsor.name} ({ctx.sponsor.email or 'no e-mail on record'})" if ctx.sponsor else "none on record"
            lines.append(f"Customer's executive sponsor: {sponsor}.")
            if ctx.executive_sponsor_user is not None:
                lines.append(f"Our executive sponsor for the account: {ctx.executive_sponsor_user.name}.")
        elif detail == "manager_review":
            owner = ctx.owner_name or ("the customer-success queue" if ctx.owner_is_queue else "the account owner")
            lines.append(f"Account owner: {owner}. ARR: {_money(account.arr)}. Plan: {account.plan or 'unknown'}.")
    return lines


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.0f}"


def _identities(conn: Connection, system: str, account_key: str) -> list[str]:
    """Every source id of ``system`` mapped to the account (duplicates in the source included)."""
    rows = conn.execute(
        select(account_identity_map.c.source_id)
        .where(account_identity_map.c.system == system, account_identity_map.c.account_key == account_key)
        .order_by(account_identity_map.c.source_id)
    ).scalars().all()
    return list(rows)


HIGH_SEVERITY = ("urgent", "high")
RECENT_TICKET_DAYS = 90  # solved high-severity tickets listed as context (the severity signal's window)


def _support_ticket_lines(conn: Connection, account: AccountHealth) -> list[str]:
    """The account's high-severity Zendesk tickets open at the end of the trigger date."""
    orgs = [int(o) for o in _identities(conn, "zendesk", account.account_key) if str(o).isdigit()]
    if not orgs:
        return ["No Zendesk organization is mapped to the account: no tickets to list."]
    end = _as_of_end(account.as_of)
    t = raw_zd_ticket
    rows = conn.execute(
        select(t.c.id, t.c.subject, t.c.priority, t.c.created_at, t.c.solved_at)
        .where(
            t.c.organization_id.in_(orgs), t.c.is_deleted.is_(False), t.c.priority.in_(HIGH_SEVERITY),
            t.c.created_at < end,
            or_(t.c.solved_at.is_(None), t.c.solved_at >= end - timedelta(days=RECENT_TICKET_DAYS)),
        )
        .order_by(case((t.c.priority == "urgent", 0), else_=1), t.c.created_at, t.c.id)
    ).fetchall()
    still_open = [r for r in rows if r.solved_at is None or r.solved_at >= end]
    solved = [r for r in rows if r not in still_open]
    lines = []
    if still_open:
        lines.append(f"Open urgent and high-priority tickets ({len(still_open)}):")
        for r in still_open[:10]:
            opened = as_date(r.created_at)
            lines.append(f"- #{r.id} [{r.priority}] {_subject(r.subject)} "
                         f"(open since {opened.isoformat()}, {wording.days((account.as_of - opened).days)})")
        if len(still_open) > 10:
            lines.append(f"- and {wording.count(len(still_open) - 10, 'more open ticket')}")
    else:
        lines.append("No urgent or high-priority ticket was open on the day.")
    if solved:
        lines.append(f"Urgent and high-priority tickets solved in the last {wording.days(RECENT_TICKET_DAYS)} "
                     f"({len(solved)}):")
        lines += [f"- #{r.id} [{r.priority}] {_subject(r.subject)} (opened {as_date(r.created_at).isoformat()}, "
                  f"solved {as_date(r.solved_at).isoformat()})" for r in solved[-5:]]
    return lines


def _subject(text: str | None) -> str:
    return " ".join((text or "(no subject)").split())


def _billing_lines(conn: Connection, account: AccountHealth, ctx: AccountContext) -> list[str]:
    """Overdue invoices and failed payments on the trigger date (Stripe), and who to contact."""
    customers = _identities(conn, "stripe", account.account_key)
    lines: list[str] = []
    if ctx.finance_contact is not None:
        lines.append(f"Customer's finance contact: {ctx.finance_contact.name} "
                     f"({ctx.finance_contact.email or 'no e-mail on record'}).")
    else:
        lines.append("No finance contact on record (no contact whose title names finance or billing): "
                     "ask the customer's main contact who handles invoices.")
    if not customers:
        return [*lines, "No Stripe customer is mapped to the account: no invoices to list."]
    end = _as_of_end(account.as_of)
    i = raw_stripe_invoice
    unpaid = and_(
        i.c.customer_id.in_(customers), i.c.is_deleted.is_(False), i.c.created_at < end,
        i.c.status.in_(("open", "uncollectible", "paid")), or_(i.c.paid_at.is_(None), i.c.paid_at >= end),
        i.c.amount_due > 0,
    )
    rows = conn.execute(
        select(i.c.id, i.c.amount_due, i.c.due_date, i.c.attempt_count, i.c.status).where(unpaid)
        .order_by(i.c.due_date, i.c.id)
    ).fetchall()
    overdue = [r for r in rows if r.due_date is not None and as_date(r.due_date) < account.as_of]
    failed = [r for r in rows if (r.attempt_count or 0) > 0]
    if overdue:
        lines.append(f"Overdue invoices ({len(overdue)}, {_money(sum(r.amount_due for r in overdue) / 100)} due):")
        lines += [f"- {r.id}: {_money(r.amount_due / 100)}, due {as_date(r.due_date).isoformat()} "
                  f"({wording.days((account.as_of - as_date(r.due_date)).days)} overdue)" for r in overdue[:10]]
    else:
        lines.append("No overdue invoice on the day.")
    if failed:
        lines.append(f"Failed payments ({wording.count(len(failed), 'unpaid invoice')} with a failed charge):")
        lines += [f"- {r.id}: {_money(r.amount_due / 100)}, {wording.count(r.attempt_count, 'failed attempt')}"
                  for r in failed[:10]]
    else:
        lines.append("No failed payment on the day.")
    return lines


def route_task(spec: ActionSpec, ctx: AccountContext, vps: Sequence[Person], rules: ActionRules) -> tuple[str, str | None]:
    """Who a task is assigned to (``spec.route_to``), and a line saying so when it fell back."""
    vp = vps[0] if vps else None
    if spec.route_to == "manager":
        if ctx.manager is not None and ctx.manager.id:
            return ctx.manager.id, f"Routed to {ctx.manager.name}, the account owner's manager (Salesforce role hierarchy)."
        if vp is not None and vp.id:
            return vp.id, (f"Routed to {vp.name}, the VP of Customer Success: no manager of the account owner "
                           "was found in the Salesforce role hierarchy.")
        return ctx.owner_id, "No manager and no VP of Customer Success found: assigned to the account owner."
    if spec.route_to == "support_manager":
        if ctx.support_manager is not None and ctx.support_manager.id:
            return ctx.support_manager.id, f"Routed to {ctx.support_manager.name}, the support manager."
        role = rules.support_manager_role or "support manager"
        if vp is not None and vp.id:
            return vp.id, (f"Routed to {vp.name}, the VP of Customer Success: no active Salesforce User holds "
                           f"the role {role!r}.")
        return ctx.owner_id, f"No active Salesforce User holds the role {role!r}: assigned to the account owner."
    if spec.route_to == "vp_customer_success":
        if vp is not None and vp.id:
            return vp.id, None
        return ctx.owner_id, "No VP of Customer Success found: assigned to the account owner."
    return ctx.owner_id, None


def rule_line(action: TriggeredAction) -> str:
    """``"Rule: entering at risk - driven by engagement (...)."``: the rule and the driver, for a
    trigger's task (a playbook's reason already opens with its ``Playbook:`` line)."""
    rule = action.trigger.replace("_", " ")
    if action.driver is None:
        return f"Rule: {rule}."
    return f"Rule: {rule} - driven by {action.driver.dimension} ({action.driver.describe()})."


# ----------------------------------------------------------------------------- payloads
def build_payload(
    spec: ActionSpec,
    account: AccountHealth,
    reason: str,
    key: str,
    ctx: AccountContext,
    vps: Sequence[Person],
    related: tuple[str, ...],
    rules: ActionRules,
    *,
    details: Sequence[str] = (),
    rule: str | None = None,
) -> tuple[dict[str, Any] | None, str | None]:
    """The payload the dispatcher delivers, or ``(None, why)`` when there is nobody to address.

    ``details`` are the lines a playbook task lists (``task_details``); ``rule`` the line naming
    the rule and driver of a trigger's task (``rule_line``).
    """
    features = list(account.unused_core_features)
    vp = vps[0] if vps else None
    if spec.kind == "salesforce_task":
        due = account.as_of + timedelta(days=spec.due_in_days)
        owner, routed = route_task(spec, ctx, vps, rules)
        if spec.action_type == "emergency_review_task" and vp and vp.id:
            owner = vp.id
        lines = [reason, "", *details, *([""] if details else []), f"Due {due.isoformat()}."]
        if spec.instructions:
            lines.append(spec.instructions)
        if routed:
            lines.append(routed)
        if spec.action_type == "checkin_task":
            lines.append("Call the customer within 48 hours: confirm what changed and agree next steps.")
        if spec.action_type == "emergency_review_task":
            sponsor = ctx.sponsor.name if ctx.sponsor else "none on record"
            vp_name = vp.name if vp else "the VP of Customer Success"
            lines.append(f"Emergency review with {vp_name} and the account team. Customer's executive sponsor: {sponsor}.")
        if spec.action_type == "recovery_plan_task":
            lines.append("Prepare a custom recovery plan: potential concessions or service adjustments.")
        if features and spec.action_type == "adoption_review_task" and "Core features not used" not in reason:
            window = wording.days(rules.feature_usage_window_days)
            lines.append(f"Core features not used in the last {window}: {', '.join(features)}.")
        if ctx.owner_is_queue and owner == ctx.owner_id:
            lines.append("The account has no active owner: assigned to the customer-success queue.")
        if rule:
            lines.append(rule)
        fields = {
            "Subject": spec.subject,
            "Description": "\n".join(lines),
            "ActivityDate": due.isoformat(),
            "Status": "Not Started",
            "Priority": spec.priority,
            "Type": spec.task_type,
            "OwnerId": owner,
            "WhatId": account.account_key,
        }
        if spec.action_type in ("emergency_review_task", "advocacy_conversation_task") and ctx.sponsor and ctx.sponsor.id:
            fields["WhoId"] = ctx.sponsor.id
        elif "billing" in spec.details and ctx.finance_contact and ctx.finance_contact.id:
            fields["WhoId"] = ctx.finance_contact.id
        elif "executive_sponsor" in spec.details and ctx.sponsor and ctx.sponsor.id:
            fields["WhoId"] = ctx.sponsor.id
        return {"sobject": "Task", "external_id_field": api_name("Task.health_action_key"), "fields": fields}, None
    if spec.kind == "salesforce_task_complete":
        return {"complete_keys": list(related)}, None
    if spec.kind == "campaign_status":
        if spec.status == "active":
            return {"status": "active", "resume_keys": list(related)}, None
        if not ctx.contacts:
            return None, "no contacts with an e-mail address to pause campaigns for"
        return {"status": "paused", "programmes": list(spec.programmes), "contacts": ctx.contacts}, None
    if spec.kind == "campaign_enrol":
        if not ctx.contacts:
            return None, "no contacts with an e-mail address to enrol"
        payload = {
            "programmes": list(spec.programmes),
            "contacts": ctx.contacts,
            "unused_core_features": features,
        }
        payload.update(spec.content)
        return payload, None
    sponsor = f"{ctx.sponsor.name} (customer contact)" if ctx.sponsor else "none on record"
    ours = ctx.executive_sponsor_user.name if ctx.executive_sponsor_user else "none on record"
    vp_names = ", ".join(p.name for p in vps) or f"no active Salesforce User with the role {rules.vp_customer_success_role!r}"
    if spec.kind == "slack":
        lines = [
            f":rotating_light: *Executive escalation: {wording.slack(account.name)} is Critical* "
            f"(health score {account.score})",
            *(wording.slack(line) for line in reason.splitlines()),
            f"VP of Customer Success: {wording.slack(vp_names)} | Our executive sponsor: {wording.slack(ours)} "
            f"| Customer's executive sponsor: {wording.slack(sponsor)}",
        ]
        return {"text": "\n".join(lines), "account_key": account.account_key}, None
    if spec.kind == "email":
        to = escalation_recipients(vps, ctx, rules)
        if not to:
            return None, (
                f"no internal recipient for the escalation: no active Salesforce User with the role "
                f"{rules.vp_customer_success_role!r} has an e-mail address and routing.escalation_recipients is empty"
            )
        paragraphs = [
            f"{wording.html(account.name)} has entered the Critical health zone (health score {account.score}).",
            "<br>".join(wording.html(line) for line in reason.splitlines()),
            f"Our executive sponsor of the account: {wording.html(ours)}. "
            f"Customer's executive sponsor: {wording.html(sponsor)}.",
            "An emergency review and a recovery plan have been scheduled with the account team.",
            "<small>Internal: customer-health escalation. Do not forward to the customer.</small>",
        ]
        return {
            "from": rules.email_from,
            "to": to,
            "subject": f"Executive escalation: {' '.join(account.name.split())} is Critical (health score {account.score})",
            "html": "".join(f"<p>{p}</p>" for p in paragraphs),
            "message_id": outbox.email_message_id(key),
        }, None
    raise ValueError(f"no payload builder for action kind {spec.kind!r} ({spec.action_type})")


# ----------------------------------------------------------------------------- deciding
def decide_actions(
    engine: Engine,
    as_of: date,
    model_version: str,
    rules: ActionRules,
    *,
    deliverable: bool = True,
    account_keys: Collection[str] | None = None,
    population: Sequence[int] | None = None,
) -> DecideReport:
    """Decide the actions of ``as_of`` from ``model_version``'s scores into the outbox.

    ``deliverable=False`` (backfills, dispatch=false) records the decisions as ``suppressed``
    so they are visible but never delivered, and releases nothing. A deliverable decision
    records shadow-mode types as ``shadow`` and then releases the day's deliveries under the
    daily caps (``release.release_day``, for every account, not only ``account_keys``). ``account_keys`` restricts the decision to those
    accounts (the intraday refresh); ``population`` (sorted scores) replaces the date's stored
    scores as the ranking population, for a date whose stored rows are only some accounts'.
    """
    report = DecideReport(as_of=as_of, model_version=model_version, rules_version=rules.version)
    if account_keys is not None and not account_keys:
        return report
    with engine.begin() as conn:
        accounts = load_account_health(conn, as_of, model_version, rules)
        if account_keys is not None:
            wanted = set(account_keys)
            accounts = [a for a in accounts if a.account_key in wanted]
        if population is not None:
            n = max(1, len(population))
            accounts = [replace(a, share_scoring_higher=(n - bisect_right(population, a.score)) / n) for a in accounts]
        report.accounts = len(accounts)
        keys = [a.account_key for a in accounts]
        history = load_history(conn, keys, as_of, rules)
        contexts = load_contexts(conn, keys, rules)
        vps = load_vps_customer_success(conn, rules)
        pending_by_key = {p.idempotency_key: p for ps in history.values() for p in ps if p.status == outbox.PENDING}
        rows = []
        withdrawn: list[str] = []
        for account in accounts:
            for decision in decide_for_account(account, history.get(account.account_key, []), rules):
                action_type = decision.action.action_type
                if decision.suppressed_because:
                    report.suppressed.append((account.account_key, action_type, decision.suppressed_because))
                    continue
                related = decision.related_keys
                if related:
                    # Undo only what was delivered; what was never sent is simply withdrawn.
                    withdrawn.extend(k for k in related if k in pending_by_key)
                    related = tuple(k for k in related if k not in pending_by_key)
                    if not related:
                        report.suppressed.append(
                            (account.account_key, action_type, "the rows it would undo were never delivered; withdrawn")
                        )
                        continue
                spec = rules.action(action_type)
                key = outbox.idempotency_key(account.account_key, action_type, as_of, model_version)
                ctx = contexts[account.account_key]
                payload, why_not = build_payload(
                    spec, account, decision.action.reason, key, ctx, vps, related, rules,
                    details=task_details(conn, spec, account, ctx, rules) if spec.details else (),
                    rule=rule_line(decision.action) if decision.action.playbook is None else None,
                )
                if payload is None:
                    report.suppressed.append((account.account_key, action_type, why_not or "nothing to deliver"))
                    continue
                payload["rules_version"] = rules.version
                payload["trigger"] = decision.action.trigger
                # Which rule fired the action and on which driver (the dashboard and the demo read these).
                payload["rule"] = decision.action.trigger
                payload["playbook"] = decision.action.playbook
                payload["driver"] = decision.action.driver.as_payload() if decision.action.driver else None
                status = outbox.SUPPRESSED if not deliverable else outbox.SHADOW if spec.shadow else outbox.PENDING
                rows.append(
                    {
                        "idempotency_key": key,
                        "account_key": account.account_key,
                        "action_type": action_type,
                        "trigger_date": as_of,
                        "model_version": model_version,
                        "status": status,
                        "last_error": BACKFILL_NOTE if not deliverable else SHADOW_NOTE if spec.shadow else None,
                        "reason": decision.action.reason,
                        "payload": payload,
                        "target": spec.target,
                    }
                )
        if deliverable and withdrawn:
            report.withdrawn = outbox.suppress_pending(
                conn, sorted(set(withdrawn)), f"account recovered on {as_of.isoformat()} before delivery"
            )
        for row in rows:
            new = outbox.add_actions(conn, [row])
            report.inserted += new
            report.already_decided += 1 - new
            if new:
                report.by_type[row["action_type"]] = report.by_type.get(row["action_type"], 0) + 1
                if row["status"] == outbox.SHADOW:
                    report.shadow[row["action_type"]] = report.shadow.get(row["action_type"], 0) + 1
    if deliverable:
        report.release = release_day(engine, as_of, rules)
    return report
