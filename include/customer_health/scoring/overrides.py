"""CSM score overrides: a person's judgement over the model's, audited and time-boxed.

An override (account, score, reason, who, until when) lives in ``score_overrides``. Rows are
never edited in place except to record their revocation: changing an override means
revoking it and creating a new one, so the table is its own audit trail.

An override applies to scoring date D when it was created before the end of D, expires at or
after the end of D, and was not revoked before the end of D (expiry given as midnight of a
day means "valid through the day before"). The decision uses only timestamps, so a history
rebuild for D sees exactly the overrides the daily run for D saw. The model's
``computed_score`` is always kept beside the effective ``score``; the next run never
overwrites an override, and it lapses by itself at expiry.

Every override is time-boxed: its expiry is in the future and at most
``MAX_OVERRIDE_DAYS`` ahead, so a person's judgement never silently outlives the situation
it was made for (renew it with a new override, and a new reason, if it still holds).
Revoking one (``revoke_override``) stamps ``revoked_at``, ``revoked_by`` and ``revoked_reason``
on its row and writes an audit record on the ``customer_health.audit`` logger; the scores
follow from the next scoring run on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import pandas as pd
from sqlalchemy import Engine, and_, or_, select, update

from customer_health.warehouse.io import utcnow
from customer_health.warehouse.schema import score_overrides

MAX_OVERRIDE_DAYS = 365
"""The furthest an override's expiry may lie ahead of its creation (days): a judgement is
reviewed at least yearly, never entered "for ever"."""

audit_log = logging.getLogger("customer_health.audit")

OVERRIDE_COLUMNS = ["override_id", "account_key", "score", "reason", "created_by", "created_at", "expires_at"]


class OverrideError(ValueError):
    """An override request is invalid; the message says which input and what to do."""


def end_of_day(day: date) -> datetime:
    """The instant a scoring date ends (naive UTC midnight of the next day)."""
    return datetime.combine(day + timedelta(days=1), time.min)


def _active_clause(at: datetime):
    return and_(
        score_overrides.c.created_at < at,
        score_overrides.c.expires_at >= at,
        or_(score_overrides.c.revoked_at.is_(None), score_overrides.c.revoked_at >= at),
    )


def create_override(
    engine: Engine,
    account_key: str,
    score: int,
    reason: str,
    created_by: str,
    expires_at: datetime | date,
    *,
    replace: bool = False,
    now: datetime | None = None,
) -> int:
    """Record a CSM override and return its id.

    ``score`` is an integer 0-100 (not a bool, not a float or text). ``expires_at`` may be a
    date (the override lapses at the start of that day); it must be after ``now`` and at most
    ``MAX_OVERRIDE_DAYS`` ahead. An account holds at most one active override: pass
    ``replace=True`` to revoke the current one in the same transaction, or revoke it first.
    """
    now = now or utcnow()
    if isinstance(expires_at, date) and not isinstance(expires_at, datetime):
        expires_at = datetime.combine(expires_at, time.min)
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 100:
        raise OverrideError(f"override score for {account_key} is {score!r}; give an integer from 0 to 100")
    if not reason or not reason.strip():
        raise OverrideError(f"override for {account_key} needs a reason a colleague can read")
    if not created_by or not created_by.strip():
        raise OverrideError(f"override for {account_key} needs created_by (who is accountable for it)")
    if expires_at <= now:
        raise OverrideError(
            f"override for {account_key} expires at {expires_at:%Y-%m-%d %H:%M}, which is not after now "
            f"({now:%Y-%m-%d %H:%M}); choose a future expiry"
        )
    latest = now + timedelta(days=MAX_OVERRIDE_DAYS)
    if expires_at > latest:
        raise OverrideError(
            f"override for {account_key} expires at {expires_at:%Y-%m-%d}, more than {MAX_OVERRIDE_DAYS} days ahead; "
            f"choose an expiry on or before {latest:%Y-%m-%d} and renew the override then if it still holds"
        )
    with engine.begin() as conn:
        current = conn.execute(
            select(score_overrides.c.id, score_overrides.c.score, score_overrides.c.expires_at).where(
                score_overrides.c.account_key == account_key,
                score_overrides.c.revoked_at.is_(None),
                score_overrides.c.expires_at > now,
            )
        ).all()
        if current and not replace:
            existing = current[0]
            raise OverrideError(
                f"account {account_key} already has override #{existing.id} (score {existing.score}, expires "
                f"{existing.expires_at:%Y-%m-%d}); revoke it first or pass replace=True"
            )
        for row in current:
            conn.execute(
                update(score_overrides)
                .where(score_overrides.c.id == row.id)
                .values(revoked_at=now, revoked_by=created_by)
            )
        result = conn.execute(
            score_overrides.insert().values(
                account_key=account_key,
                score=score,
                reason=reason.strip(),
                created_by=created_by,
                created_at=now,
                expires_at=expires_at,
            )
        )
        return int(result.inserted_primary_key[0])


@dataclass(frozen=True)
class Revocation:
    """What ``revoke_override`` recorded."""

    override_id: int
    account_key: str
    revoked_at: datetime
    revoked_by: str
    reason: str | None


def revoke_override(
    engine: Engine,
    override_id: int,
    revoked_by: str,
    *,
    reason: str | None = None,
    account_key: str | None = None,
    now: datetime | None = None,
) -> Revocation:
    """Revoke override ``override_id`` from now on (the row stays, stamped, for the audit).

    ``reason`` (why it no longer holds) goes to the audit record with who and when.
    ``account_key``, when given, must be the override's account (a page revoking "this
    account's override" never revokes another's). An override already revoked or already
    expired is refused: there is nothing left to revoke.
    """
    now = now or utcnow()
    if not revoked_by or not revoked_by.strip():
        raise OverrideError(f"revoking override #{override_id} needs revoked_by (who decided)")
    if reason is not None and not reason.strip():
        raise OverrideError(f"revoking override #{override_id} needs a reason a colleague can read")
    with engine.begin() as conn:
        row = conn.execute(
            select(score_overrides.c.account_key, score_overrides.c.expires_at, score_overrides.c.revoked_at).where(
                score_overrides.c.id == override_id
            )
        ).first()
        if row is None or (account_key is not None and row.account_key != account_key):
            where = f" for account {account_key}" if account_key is not None else ""
            raise OverrideError(f"override #{override_id} does not exist{where}; list them with active_overrides()")
        if row.revoked_at is not None:
            raise OverrideError(f"override #{override_id} was already revoked at {row.revoked_at:%Y-%m-%d %H:%M}")
        if row.expires_at <= now:
            raise OverrideError(f"override #{override_id} already expired at {row.expires_at:%Y-%m-%d %H:%M}; nothing to revoke")
        conn.execute(
            update(score_overrides)
            .where(score_overrides.c.id == override_id)
            .values(revoked_at=now, revoked_by=revoked_by, revoked_reason=reason.strip() if reason else None)
        )
    revocation = Revocation(override_id, row.account_key, now, revoked_by, reason.strip() if reason else None)
    audit_log.info(
        "override #%s of account %s revoked at %s by %s: %s",
        override_id, row.account_key, f"{now:%Y-%m-%d %H:%M:%S}", revoked_by, revocation.reason or "(no reason given)",
        extra={"override_revocation": revocation.__dict__},
    )  # fmt: skip
    return revocation


def active_overrides(engine: Engine, as_of: date) -> pd.DataFrame:
    """Overrides in force for scoring date ``as_of``: one row per account (the newest wins).

    Columns: override_id, account_key, score, reason, created_by, created_at, expires_at.
    """
    at = end_of_day(as_of)
    t = score_overrides.c
    stmt = (
        select(
            t.id.label("override_id"), t.account_key, t.score, t.reason, t.created_by, t.created_at, t.expires_at
        )
        .where(_active_clause(at))
        .order_by(t.account_key, t.created_at.desc(), t.id.desc())
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=OVERRIDE_COLUMNS)
    return frame.drop_duplicates("account_key", keep="first").reset_index(drop=True)
