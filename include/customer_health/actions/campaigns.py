"""Campaign memberships the product manages: enrolments, pauses and segment members, exactly once.

Everything the product does in a campaign target (``actions.campaign_targets``) is recorded in
``campaign_memberships``, keyed by (target, programme, contact, kind), with who did it
(``started_by``: an outbox key, or ``segment:<name>``):

* ``add_members`` - make contacts members of programmes. A contact already a member that the
  product did not add is left alone and not recorded (so nothing the product does later ever
  removes it). The intent is written (state ``pending``) before the target is asked and made
  ``active`` after; a retry that finds the contact a member with our pending intent knows the
  earlier call landed, so nothing is added twice and nothing is disowned.
* ``remove_members`` - end memberships the product added (a segment's leavers).
* ``pause_members`` / ``release_holds`` - pause memberships and resume them exactly: the
  status a member had is kept, and a pause is *held* by whoever asked for it (a campaign_pause
  outbox row, a segment); the membership is resumed when its last hold is released, so an
  At Risk pause and the nurture segment's "no upsell" never undo each other. A membership
  someone else paused is not the product's and is never resumed by it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from customer_health.actions.campaign_targets import CampaignTarget, Member, Programme
from customer_health.warehouse.io import utcnow
from customer_health.warehouse.schema import campaign_holds, campaign_memberships

MEMBER, PAUSE = "member", "pause"
PENDING, ACTIVE, ENDED = "pending", "active", "ended"


@dataclass(frozen=True)
class CampaignContact:
    """A contact a campaign action or segment addresses."""

    account_key: str
    email: str
    id: str | None = None  # the Salesforce Contact Id

    def as_payload(self) -> dict[str, str]:
        return {"id": self.id or "", "email": self.email}


@dataclass
class MembershipReport:
    """What one call changed in the target (counts of contact-programme pairs)."""

    added: int = 0
    already_members: int = 0  # members the product did not add: left alone
    removed: int = 0
    paused: int = 0
    already_paused: int = 0  # paused by someone else: left alone
    resumed: int = 0
    still_held: int = 0  # released by this holder, still paused for another
    unknown_contacts: list[str] = field(default_factory=list)  # e-mails the target does not know
    programmes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v not in (0, [], None)}
        return out or {"changed": 0}


def _upsert(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or overwrite managed-membership rows by their key."""
    if not rows:
        return
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(campaign_memberships)
    keys = ["target", "programme_id", "contact_ref", "kind"]
    stmt = ins.on_conflict_do_update(
        index_elements=keys, set_={c: ins.excluded[c] for c in rows[0] if c not in keys}
    )
    for row in rows:
        conn.execute(stmt, [row])


def _managed(conn: Connection, target: str, kind: str, programme_ids: Sequence[str], refs: Sequence[str]) -> dict[tuple[str, str], Any]:
    cm = campaign_memberships
    out = {}
    for i in range(0, len(refs), 500):
        chunk = list(refs[i : i + 500])
        for r in conn.execute(select(cm).where(
            cm.c.target == target, cm.c.kind == kind, cm.c.programme_id.in_(list(programme_ids)),
            cm.c.contact_ref.in_(chunk),
        )):  # fmt: skip
            out[(r.programme_id, r.contact_ref)] = r
    return out


def _refs(target: CampaignTarget, contacts: Sequence[CampaignContact], report: MembershipReport) -> dict[str, CampaignContact]:
    """The target's contact reference -> the contact, for the contacts it knows."""
    by_email = {c.email: c for c in contacts}
    refs = target.contact_refs([c.as_payload() for c in contacts])
    report.unknown_contacts = sorted(set(by_email) - set(refs))
    return {ref: by_email[email] for email, ref in refs.items()}


def add_members(
    engine: Engine,
    target: CampaignTarget,
    programmes: Sequence[Programme],
    contacts: Sequence[CampaignContact],
    started_by: str,
    on: date,
) -> MembershipReport:
    """Make ``contacts`` members of ``programmes``, recording the ones the product added."""
    report = MembershipReport(programmes=[p.name for p in programmes])
    by_ref = _refs(target, contacts, report)
    refs = sorted(by_ref)
    for p in programmes:
        existing = {m.contact_ref: m for m in target.members([p.id], refs)}
        with engine.connect() as conn:
            managed = _managed(conn, target.name, MEMBER, [p.id], refs)
        confirm, to_add = {}, []
        for ref in refs:
            row = managed.get((p.id, ref))
            ours = row is not None and row.state in (PENDING, ACTIVE)
            if ref in existing:
                if ours and row.state == PENDING:
                    confirm[ref] = existing[ref].member_id  # our earlier call landed
                elif not ours:
                    report.already_members += 1
            else:
                to_add.append(ref)  # new, or ours and gone (someone removed it): add it again
        now = utcnow()
        with engine.begin() as conn:
            _upsert(conn, [
                _row(target.name, p, by_ref[ref], ref, MEMBER, PENDING, on, managed.get((p.id, ref)), started_by, now)
                for ref in to_add
            ])  # fmt: skip
        ids = target.add(p.id, to_add) if to_add else {}
        report.added += len(to_add) + len(confirm)
        with engine.begin() as conn:
            for ref, member_id in {**confirm, **ids}.items():
                conn.execute(
                    update(campaign_memberships)
                    .where(*_key(target.name, p.id, ref, MEMBER))
                    .values(state=ACTIVE, member_id=member_id, updated_at=now)
                )
    return report


def _row(target: str, p: Programme, contact: CampaignContact, ref: str, kind: str, state: str, on: date,
         existing: Any, started_by: str, now: Any, **extra: Any) -> dict[str, Any]:
    keep = existing is not None and existing.state in (PENDING, ACTIVE)
    return {
        "target": target, "programme_id": p.id, "contact_ref": ref, "kind": kind, "programme_name": p.name,
        "programme_group": p.group, "account_key": contact.account_key, "email": contact.email,
        "member_id": extra.get("member_id", existing.member_id if keep else None),
        "previous_status": extra.get("previous_status", existing.previous_status if keep else None),
        "state": state, "started_on": existing.started_on if keep else on,
        "started_by": existing.started_by if keep else started_by,
        "ended_on": None, "ended_by": None, "updated_at": now,
    }  # fmt: skip


def _key(target: str, programme_id: str, ref: str, kind: str) -> tuple[Any, ...]:
    cm = campaign_memberships.c
    return (cm.target == target, cm.programme_id == programme_id, cm.contact_ref == ref, cm.kind == kind)


def remove_members(engine: Engine, target: CampaignTarget, rows: Sequence[Any], on: date, ended_by: str) -> int:
    """End memberships the product added (``campaign_memberships`` rows of kind member)."""
    if not rows:
        return 0
    present = {(m.programme_id, m.contact_ref): m for m in target.members(
        sorted({r.programme_id for r in rows}), {r.contact_ref for r in rows})}  # fmt: skip
    target.remove([present[(r.programme_id, r.contact_ref)] for r in rows if (r.programme_id, r.contact_ref) in present])
    now = utcnow()
    with engine.begin() as conn:
        for r in rows:
            conn.execute(update(campaign_memberships).where(*_key(r.target, r.programme_id, r.contact_ref, MEMBER))
                         .values(state=ENDED, ended_on=on, ended_by=ended_by, updated_at=now))  # fmt: skip
    return len(rows)


def pause_members(
    engine: Engine,
    target: CampaignTarget,
    programmes: Sequence[Programme],
    contacts: Sequence[CampaignContact],
    holder: str,
    on: date,
    pause_status: str,
) -> MembershipReport:
    """Pause the contacts' memberships in ``programmes`` and hold them paused for ``holder``."""
    report = MembershipReport(programmes=[p.name for p in programmes])
    by_ref = _refs(target, contacts, report)
    refs = sorted(by_ref)
    if not refs or not programmes:
        return report
    target.check_pausable(programmes, pause_status)
    ids = [p.id for p in programmes]
    members = {(m.programme_id, m.contact_ref): m for m in target.members(ids, refs)}
    by_id = {p.id: p for p in programmes}
    with engine.connect() as conn:
        managed = _managed(conn, target.name, PAUSE, ids, refs)
    now = utcnow()
    to_pause, holds, settled = [], [], []
    for (pid, ref), row in managed.items():
        if row.state == PENDING and (pid, ref) not in members:
            settled.append((pid, ref, ENDED if target.pause_by_status else ACTIVE))  # gone, or our removal landed
            if not target.pause_by_status:
                holds.append((pid, ref))
    for (pid, ref), m in sorted(members.items()):
        row = managed.get((pid, ref))
        if row is not None and row.state in (PENDING, ACTIVE):
            holds.append((pid, ref))
            if row.state == PENDING:
                to_pause.append(m)  # an interrupted pause: finish it
            continue
        if target.pause_by_status and m.status == pause_status:
            report.already_paused += 1  # paused by someone else: theirs to resume
            continue
        to_pause.append(m)
        holds.append((pid, ref))
    with engine.begin() as conn:
        _upsert(conn, [
            _row(target.name, by_id[m.programme_id], by_ref[m.contact_ref], m.contact_ref, PAUSE, PENDING, on,
                 managed.get((m.programme_id, m.contact_ref)), holder, now, member_id=m.member_id,
                 previous_status=(managed[(m.programme_id, m.contact_ref)].previous_status
                                  if (m.programme_id, m.contact_ref) in managed
                                  and managed[(m.programme_id, m.contact_ref)].state == PENDING else m.status))
            for m in to_pause
        ])  # fmt: skip
        _add_holds(conn, target.name, holds, holder, on)
    target.pause(to_pause, pause_status)
    report.paused += len(to_pause)
    with engine.begin() as conn:
        for m in to_pause:
            conn.execute(update(campaign_memberships).where(*_key(target.name, m.programme_id, m.contact_ref, PAUSE))
                         .values(state=ACTIVE, updated_at=now))  # fmt: skip
        for pid, ref, state in settled:
            conn.execute(update(campaign_memberships).where(*_key(target.name, pid, ref, PAUSE))
                         .values(state=state, updated_at=now, **({"ended_on": on, "ended_by": holder}
                                                                  if state == ENDED else {})))  # fmt: skip
    return report


def _add_holds(conn: Connection, target: str, pairs: Sequence[tuple[str, str]], holder: str, on: date) -> None:
    if not pairs:
        return
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(campaign_holds)
    stmt = ins.on_conflict_do_nothing(index_elements=["target", "programme_id", "contact_ref", "holder"])
    for pid, ref in sorted(set(pairs)):
        conn.execute(stmt, [{"target": target, "programme_id": pid, "contact_ref": ref, "holder": holder, "since": on}])


def release_holds(
    engine: Engine,
    target: CampaignTarget,
    holder: str,
    on: date,
    released_by: str,
    pause_status: str,
    keep_refs: set[str] | None = None,
) -> MembershipReport:
    """Release ``holder``'s holds (all, or those of contacts not in ``keep_refs``); resume the
    memberships no one holds any more, exactly as they were before the product paused them."""
    report = MembershipReport()
    h, cm = campaign_holds, campaign_memberships
    with engine.connect() as conn:
        mine = [(r.programme_id, r.contact_ref) for r in conn.execute(
            select(h.c.programme_id, h.c.contact_ref).where(h.c.target == target.name, h.c.holder == holder))
            if keep_refs is None or r.contact_ref not in keep_refs]  # fmt: skip
        if not mine:
            return report
        others = defaultdict(int)
        for pid, ref, n in conn.execute(
            select(h.c.programme_id, h.c.contact_ref, func.count()).where(
                h.c.target == target.name, h.c.holder != holder,
                tuple_(h.c.programme_id, h.c.contact_ref).in_(mine),
            ).group_by(h.c.programme_id, h.c.contact_ref)
        ):
            others[(pid, ref)] = n
        free = [pair for pair in mine if not others.get(pair)]
        rows = conn.execute(select(cm).where(
            cm.c.target == target.name, cm.c.kind == PAUSE, cm.c.state == ACTIVE,
            tuple_(cm.c.programme_id, cm.c.contact_ref).in_(free) if free else and_(False),
        )).fetchall() if free else []  # fmt: skip
    report.still_held = len(mine) - len(free)
    resumed = target.resume(
        [(Member(r.programme_id, r.contact_ref, r.member_id, pause_status), r.previous_status) for r in rows],
        pause_status,
    )
    report.resumed = len(resumed)
    now = utcnow()
    with engine.begin() as conn:
        for pid, ref in mine:
            conn.execute(delete(h).where(h.c.target == target.name, h.c.programme_id == pid, h.c.contact_ref == ref,
                                         h.c.holder == holder))  # fmt: skip
        for r in rows:
            conn.execute(update(cm).where(*_key(target.name, r.programme_id, r.contact_ref, PAUSE))
                         .values(state=ENDED, ended_on=on, ended_by=released_by, updated_at=now))  # fmt: skip
    return report


def programmes_of(target: CampaignTarget, rules: Any, groups: Sequence[str]) -> list[Programme]:
    """Every programme of the named groups (``rules.programmes``), each once."""
    seen: dict[str, Programme] = {}
    for group in groups:
        for p in target.programmes(rules.programme(group)):
            seen.setdefault(p.id, p)
    return list(seen.values())


def account_memberships(conn: Connection, account_key: str) -> list[Any]:
    """The memberships the product manages for one account (the dashboard's account page)."""
    cm = campaign_memberships
    return conn.execute(
        select(cm).where(cm.c.account_key == account_key)
        .order_by(cm.c.state, cm.c.programme_group, cm.c.programme_name, cm.c.email)
    ).fetchall()  # fmt: skip
