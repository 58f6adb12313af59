"""The CSM worklist: a view's accounts by owner, zone, plan or segment, most urgent first.

One row per account scored on the view's date (``queries.View``: a model version and its
latest scored date), ranked by ``health_scores.priority`` (highest first, then account key;
an account without a priority last), with its score, zone, 30-day change, ARR, its top driver
(``scoring.drivers.read_drivers``), its owner (``raw_sf_account.owner_id`` and the owner's
name from ``raw_sf_user``) and its open actions.

Open actions. An outbox row is open exactly when ``actions.decide.is_open_action`` says so - the
definition the rules use for cooldowns and "one open per account": ``pending`` or ``sending``;
or ``sent``, not resolved, and a Salesforce Task that Salesforce does not report ``Completed``
(``raw_sf_task`` joined by ``health_action_key``) or a campaign pause not yet resumed. SQL
narrows the account's rows to the candidates (pending/sending, or sent and unresolved of an
action type that can stay open) and that function decides. The row shown is the Task due
first, else the most recent open action; its due date is the Task's ``ActivityDate`` as
Salesforce holds it now (a CSM may have moved it) and, before the Task has been read back
from Salesforce, as the outbox payload set it (``fields.ActivityDate``).

How it stays fast on a large warehouse (``benchmarks/bench_dashboard.py``):

* the ranking reads the date's rows through health_scores' primary key (model version,
  date, account) - their narrow columns only, never the drivers or explanations - and keeps
  the top ``offset + limit`` (one top-N sort); an owner filter becomes an ``IN`` list of the
  owner's accounts, probed on the same key (a few hundred descents, not the whole date);
* the counts come from ``health_score_summary`` (accounts per segment and zone of the date)
  when no owner is chosen, from the owner's rows otherwise;
* the page's rows (drivers, names, owners, actions) are then read for its accounts alone,
  by primary key and ``ix_action_outbox_account_trigger``.

All values reach the database as bound parameters.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, and_, false, func, or_, select

from customer_health.actions import outbox
from customer_health.actions.config import ActionRules, load_action_rules
from customer_health.actions.decide import is_open_action
from customer_health.dashboard.queries import _plan_of
from customer_health.scoring.drivers import read_drivers
from customer_health.warehouse.io import utcnow
from customer_health.warehouse.schema import (
    account_crosswalk,
    action_outbox,
    health_score_summary,
    health_scores,
    raw_sf_account,
    raw_sf_task,
    raw_sf_user,
)

HS = health_scores.c
SM = health_score_summary.c
SA = raw_sf_account.c
SU = raw_sf_user.c

PER_PAGE = 50
"""Rows a worklist page shows by default."""
MAX_PER_PAGE = 500
CHUNK = 500
"""Accounts whose details are read per statement (the page; the CSV export, chunk by chunk)."""


class BadFilter(ValueError):
    """A worklist filter that names nothing the view has (an unknown zone)."""


@dataclass(frozen=True)
class Owner:
    """A Salesforce User as the worklist shows an account owner."""

    owner_id: str
    name: str | None
    email: str | None
    is_active: bool | None

    def as_dict(self) -> dict[str, Any]:
        """The owner for JSON readers."""
        return {"owner_id": self.owner_id, "name": self.name, "email": self.email, "is_active": self.is_active}


@dataclass(frozen=True)
class Filters:
    """What the worklist is narrowed to (every field optional)."""

    owner_id: str | None = None  # a Salesforce User Id; None: every owner
    zones: tuple[str, ...] = ()  # none: every zone
    plan: str | None = None  # the plan tier of the score's segment (``model/plan/tenure``)
    segment: str | None = None  # a full segment label


@lru_cache(maxsize=1)
def action_rules() -> ActionRules:
    """The action rules (``config/actions_v1.yaml``): what kind each action type is."""
    return load_action_rules()


# --------------------------------------------------------------------------- owners
def salesforce_user_by_email(conn: Connection, email: str | None) -> Owner | None:
    """The Salesforce User whose e-mail is ``email`` (case-insensitive; active users first)."""
    if not email or "@" not in email:
        return None
    row = conn.execute(
        select(SU.id, SU.name, SU.email, SU.is_active)
        .where(func.lower(SU.email) == email.strip().lower(), SU.is_deleted.is_(False))
        .order_by(SU.is_active.desc(), SU.id)
        .limit(1)
    ).first()
    return Owner(row.id, row.name, row.email, row.is_active) if row else None


def owners(conn: Connection) -> list[Owner]:
    """Every Salesforce User who owns an account, by name (owners unknown to raw_sf_user last)."""
    ids = [r for r, in conn.execute(select(SA.owner_id).distinct().where(SA.owner_id.is_not(None)))]
    known: dict[str, Any] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        known.update({r.id: r for r in conn.execute(select(SU.id, SU.name, SU.email, SU.is_active).where(SU.id.in_(chunk)))})
    found = [
        Owner(i, known[i].name, known[i].email, known[i].is_active) if i in known else Owner(i, None, None, None) for i in ids
    ]
    return sorted(found, key=lambda o: (o.name is None, (o.name or "").lower(), o.owner_id))


def owner(conn: Connection, owner_id: str) -> Owner:
    """The Salesforce User ``owner_id`` (name and e-mail None when raw_sf_user does not know it)."""
    row = conn.execute(select(SU.id, SU.name, SU.email, SU.is_active).where(SU.id == owner_id)).first()
    return Owner(row.id, row.name, row.email, row.is_active) if row else Owner(owner_id, None, None, None)


# --------------------------------------------------------------------------- ranking and counts
def check_filters(view: Any, filters: Filters) -> None:
    """Raise ``BadFilter`` for a zone the view does not have."""
    unknown = [z for z in filters.zones if z not in view.zone_names()]
    if unknown:
        raise BadFilter(f"unknown zone {unknown[0]!r}; the zones of model {view.version} are {', '.join(view.zone_names())}")


def _segment_clauses(column: Any, filters: Filters) -> list[Any]:
    clauses = []
    if filters.segment:
        clauses.append(column == filters.segment)
    if filters.plan:
        clauses.append(column.contains(f"/{filters.plan}/", autoescape=True))
    return clauses


def _where(view: Any, filters: Filters, *, zones: bool = True) -> list[Any]:
    """health_scores conditions of the view's date and the filters (``zones=False``: any zone)."""
    clauses = [HS.model_version == view.version, HS.as_of_date == view.as_of, *_segment_clauses(HS.segment, filters)]
    if zones and filters.zones:
        clauses.append(HS.zone.in_(list(filters.zones)))
    if filters.owner_id is not None:
        clauses.append(HS.account_key.in_(select(SA.id).where(SA.owner_id == filters.owner_id)))
    return clauses


def zone_counts(conn: Connection, view: Any, filters: Filters) -> dict[str, int]:
    """Accounts per zone under the filters but the zone filter (every zone of the view listed)."""
    counts = {name: 0 for name in view.zone_names()}
    if filters.owner_id is None:
        # The date's summary: accounts per (segment, zone), ~50 rows, never the date's scores.
        stmt = (
            select(SM.zone, func.sum(SM.accounts))
            .where(SM.model_version == view.version, SM.as_of_date == view.as_of, *_segment_clauses(SM.segment, filters))
            .group_by(SM.zone)
        )
    else:
        stmt = select(HS.zone, func.count()).where(*_where(view, filters, zones=False)).group_by(HS.zone)
    for zone, n in conn.execute(stmt):
        counts[zone] = counts.get(zone, 0) + int(n or 0)
    return counts


def ranked_keys(conn: Connection, view: Any, filters: Filters, *, limit: int | None = None, offset: int = 0) -> list[str]:
    """The filtered accounts' keys, highest priority first (then by key), ``limit`` from ``offset``."""
    stmt = (
        select(HS.account_key)
        .where(*_where(view, filters))
        .order_by(HS.priority.desc().nulls_last(), HS.account_key)
        .offset(offset)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(conn.execute(stmt).scalars())


# --------------------------------------------------------------------------- rows
def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _payload_due(payload: str | None) -> date | None:
    """``fields.ActivityDate`` of a Salesforce Task payload (``actions.decide.build_payload``)."""
    try:
        fields = (json.loads(payload or "{}") or {}).get("fields") or {}
    except (TypeError, ValueError, AttributeError):
        return None
    return _as_date(fields.get("ActivityDate")) if isinstance(fields, dict) else None


def open_actions(conn: Connection, keys: Sequence[str], rules: ActionRules | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each account's open actions (``actions.decide.is_open_action``), the one to show first first."""
    rules = rules or action_rules()
    may_stay_open = sorted(
        t for t, spec in rules.actions.items()
        if spec.kind == "salesforce_task" or (spec.kind == "campaign_status" and spec.status == "paused")
    )  # fmt: skip
    ob, task = action_outbox.c, raw_sf_task.c
    found: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    today = utcnow().date()
    for start in range(0, len(keys), CHUNK):
        chunk = list(keys[start : start + CHUNK])
        rows = conn.execute(
            select(
                ob.idempotency_key, ob.account_key, ob.action_type, ob.status, ob.trigger_date, ob.target,
                ob.resolved_at, ob.payload, task.status.label("task_status"), task.activity_date.label("task_due"),
                task.id.label("task_id"),
            )
            .select_from(action_outbox.outerjoin(
                raw_sf_task, and_(task.health_action_key == ob.idempotency_key, task.is_deleted.is_(False))))
            .where(
                ob.account_key.in_(chunk),
                or_(
                    ob.status.in_([outbox.PENDING, outbox.SENDING]),
                    and_(ob.status == outbox.SENT, ob.resolved_at.is_(None), ob.action_type.in_(may_stay_open)
                         if may_stay_open else false()),
                ),
            )
            .order_by(ob.idempotency_key, task.id)
        )  # fmt: skip
        for row in rows:
            spec = rules.actions.get(row.action_type)
            if row.idempotency_key in found[row.account_key] or not is_open_action(row, spec):
                continue
            is_task = spec is not None and spec.kind == "salesforce_task"
            due = (_as_date(row.task_due) or _payload_due(row.payload)) if is_task else None
            found[row.account_key][row.idempotency_key] = {
                "idempotency_key": row.idempotency_key,
                "action_type": row.action_type,
                "label": (spec.subject if is_task and spec.subject else row.action_type.replace("_", " ")),
                "status": row.status,
                "target": row.target,
                "trigger_date": _as_date(row.trigger_date),
                "due_date": due,
                "overdue": due is not None and due < today,
                "salesforce_task_id": row.task_id,
                "salesforce_task_status": row.task_status,
            }
    ordered: dict[str, list[dict[str, Any]]] = {}
    for key, actions in found.items():
        ordered[key] = sorted(
            actions.values(),
            key=lambda a: (a["due_date"] is None, a["due_date"] or date.max, -a["trigger_date"].toordinal(), a["action_type"]),
        )
    return ordered


def rows_for(
    conn: Connection, view: Any, keys: Sequence[str], *, first_rank: int = 1, rules: ActionRules | None = None
) -> list[dict[str, Any]]:
    """The worklist rows of ``keys`` (in that order, ranked from ``first_rank``)."""
    cw = account_crosswalk.c
    details: dict[str, Any] = {}
    for start in range(0, len(keys), CHUNK):
        chunk = list(keys[start : start + CHUNK])
        stmt = (
            select(
                HS.account_key, HS.segment, HS.score, HS.computed_score, HS.zone, HS.previous_zone, HS.delta_30,
                HS.arr, HS.priority, HS.override_id, HS.drivers, cw.account_name, SA.name.label("salesforce_name"),
                SA.owner_id, SU.name.label("owner_name"),
            )
            .select_from(
                health_scores.outerjoin(account_crosswalk, cw.account_key == HS.account_key)
                .outerjoin(raw_sf_account, SA.id == HS.account_key)
                .outerjoin(raw_sf_user, SU.id == SA.owner_id)
            )
            .where(HS.model_version == view.version, HS.as_of_date == view.as_of, HS.account_key.in_(chunk))
        )  # fmt: skip
        details.update({r.account_key: r for r in conn.execute(stmt)})
    actions = open_actions(conn, keys, rules)
    rows = []
    for rank, key in enumerate(keys, start=first_rank):
        r = details.get(key)
        if r is None:  # not scored on the date (cannot happen for keys from ranked_keys)
            continue
        drivers = read_drivers(r.drivers)
        top = drivers.down[0] if drivers.down else drivers.up[0] if drivers.up else None
        mine = actions.get(key, [])
        rows.append({
            "rank": rank,
            "account_key": key,
            "account_name": r.account_name or r.salesforce_name,
            "owner_id": r.owner_id,
            "owner_name": r.owner_name,
            "segment": r.segment,
            "plan": _plan_of(r.segment),
            "score": r.score,
            "computed_score": r.computed_score,
            "override_id": r.override_id,
            "zone": r.zone,
            "previous_zone": r.previous_zone,
            "delta_30": r.delta_30,
            "arr": r.arr,
            "priority": r.priority,
            "top_driver": top.as_dict() if top is not None else None,
            "open_action": mine[0] if mine else None,
            "open_actions": len(mine),
        })  # fmt: skip
    return rows


# --------------------------------------------------------------------------- the list
def worklist(
    conn: Connection, view: Any, filters: Filters, *, page: int = 1, per_page: int = PER_PAGE
) -> dict[str, Any]:
    """One page of the worklist, with the counts that say how much there is.

    ``total`` counts every account under the filters, ``zone_counts`` every account under
    them but the zone filter; ``pages`` is how many pages of ``per_page`` that makes. A page
    past the last is empty, never an error.
    """
    check_filters(view, filters)
    counts = zone_counts(conn, view, filters)
    total = sum(n for z, n in counts.items() if not filters.zones or z in filters.zones)
    offset = (page - 1) * per_page
    keys = ranked_keys(conn, view, filters, limit=per_page, offset=offset) if offset < total else []
    rows = rows_for(conn, view, keys, first_rank=offset + 1)
    return {
        "model_version": view.version,
        "as_of_date": view.as_of,
        "total": total,
        "zone_counts": counts,
        "page": page,
        "per_page": per_page,
        "pages": max(1, -(-total // per_page)),
        "first_row": offset + 1 if rows else None,
        "last_row": offset + len(rows) if rows else None,
        "accounts": rows,
    }


def iter_worklist(conn: Connection, view: Any, filters: Filters) -> Iterator[dict[str, Any]]:
    """Every row of the worklist under ``filters``, in rank order (the CSV export): the ranked
    keys once, then the rows ``CHUNK`` accounts at a time."""
    check_filters(view, filters)
    keys = ranked_keys(conn, view, filters)
    for start in range(0, len(keys), CHUNK):
        yield from rows_for(conn, view, keys[start : start + CHUNK], first_rank=start + 1)


def segments(conn: Connection, view: Any) -> list[str]:
    """The segments scored on the view's date (from the summary), for the filter's choices."""
    return sorted(
        s for s, in conn.execute(
            select(SM.segment).distinct().where(SM.model_version == view.version, SM.as_of_date == view.as_of)
        ) if s
    )  # fmt: skip
