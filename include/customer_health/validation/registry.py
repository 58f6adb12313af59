"""The model registry: which model versions exist, which one scores, and who decided.

Versions live in ``model_versions`` with a status:

    proposed --approve--> active --(another version approved)--> retired
    proposed --reject---> rejected

* ``propose`` registers a config (its exact YAML text and sha256) as *proposed*, with its audit
  metrics. Proposing the same version again refreshes a still-proposed row (a recalibration
  re-run on late data); a version already decided is never rewritten.
* ``approve`` makes a proposed version *active* and retires the previous active one, in one
  transaction, stamping ``decided_by``/``decided_at``/``decision_note``.
* ``reject`` marks a proposed version *rejected* with the reviewer's reason.

Every transition is idempotent (approving the active version or rejecting a rejected one
changes nothing) and audited: each change adds one row to ``model_version_events``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from customer_health.scoring.model_config import ModelConfig, load_model_config
from customer_health.warehouse.io import utcnow
from customer_health.warehouse.schema import model_version_events, model_versions

PROPOSED, ACTIVE, RETIRED, REJECTED = "proposed", "active", "retired", "rejected"
STATUSES = (PROPOSED, ACTIVE, RETIRED, REJECTED)


class RegistryError(ValueError):
    """A registry request cannot be done; the message says why and what to do instead."""


@dataclass(frozen=True)
class ModelVersion:
    """One row of ``model_versions``."""

    version: str
    status: str
    config_yaml: str
    config_sha256: str
    parent_version: str | None
    created_at: datetime
    created_by: str | None
    decided_at: datetime | None
    decided_by: str | None
    decision_note: str | None
    metrics: dict[str, Any] | None

    @property
    def config(self) -> ModelConfig:
        """The validated model configuration of this version."""
        return load_model_config(self.config_yaml)


def _row_to_version(row: Any) -> ModelVersion:
    metrics = json.loads(row.metrics) if row.metrics else None
    return ModelVersion(
        version=row.version,
        status=row.status,
        config_yaml=row.config_yaml,
        config_sha256=row.config_sha256,
        parent_version=row.parent_version,
        created_at=row.created_at,
        created_by=row.created_by,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        decision_note=row.decision_note,
        metrics=metrics,
    )


def _get(conn: Connection, version: str) -> ModelVersion | None:
    row = conn.execute(select(model_versions).where(model_versions.c.version == version)).first()
    return _row_to_version(row) if row is not None else None


def _event(conn: Connection, version: str, event: str, before: str | None, after: str, actor: str, note: str | None, at: datetime) -> None:
    conn.execute(
        model_version_events.insert().values(
            version=version, event=event, from_status=before, to_status=after, actor=actor, note=note, occurred_at=at
        )
    )


def list_versions(engine: Engine, status: str | None = None) -> list[ModelVersion]:
    """Every registered version (optionally only those with ``status``), newest first."""
    if status is not None and status not in STATUSES:
        raise RegistryError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    stmt = select(model_versions).order_by(model_versions.c.created_at.desc(), model_versions.c.version.desc())
    if status is not None:
        stmt = stmt.where(model_versions.c.status == status)
    with engine.connect() as conn:
        return [_row_to_version(r) for r in conn.execute(stmt).all()]


def get_version(engine: Engine, version: str) -> ModelVersion:
    """The registered version ``version``; RegistryError naming the known versions if absent."""
    with engine.connect() as conn:
        found = _get(conn, version)
    if found is None:
        known = ", ".join(v.version for v in list_versions(engine)) or "none"
        raise RegistryError(f"model version {version!r} is not registered (known: {known}); propose it first")
    return found


def get_config(engine: Engine, version: str) -> ModelConfig:
    """The validated config of a registered version."""
    return get_version(engine, version).config


def active_version(engine: Engine) -> str | None:
    """The version that scores now (status active), or None before any was registered.

    Should several rows say active (registered by hand), the newest wins.
    """
    active = list_versions(engine, ACTIVE)
    return active[0].version if active else None


def active_config(engine: Engine) -> ModelConfig | None:
    """The config of the active version, or None when the registry holds none."""
    version = active_version(engine)
    return get_config(engine, version) if version else None


def propose(
    engine: Engine,
    config: ModelConfig,
    *,
    parent_version: str | None,
    created_by: str,
    metrics: dict[str, Any] | None = None,
) -> ModelVersion:
    """Register ``config`` as a proposed version (idempotent; see the module docstring).

    Raises RegistryError when the version is already decided (active, retired, rejected) with a
    different configuration: a changed model needs a new version string.
    """
    now = utcnow()
    metrics_json = json.dumps(metrics, sort_keys=True, default=str) if metrics is not None else None
    with engine.begin() as conn:
        existing = _get(conn, config.version)
        if existing is None:
            conn.execute(
                model_versions.insert().values(
                    version=config.version,
                    status=PROPOSED,
                    config_yaml=config.yaml_text,
                    config_sha256=config.sha256,
                    parent_version=parent_version,
                    created_at=now,
                    created_by=created_by,
                    metrics=metrics_json,
                )
            )
            _event(conn, config.version, "proposed", None, PROPOSED, created_by, f"parent {parent_version}", now)
        elif existing.status == PROPOSED:
            new_metrics = json.loads(metrics_json) if metrics_json is not None else existing.metrics
            changed = existing.config_sha256 != config.sha256 or existing.metrics != new_metrics
            if changed:
                conn.execute(
                    update(model_versions)
                    .where(model_versions.c.version == config.version)
                    .values(
                        config_yaml=config.yaml_text,
                        config_sha256=config.sha256,
                        parent_version=parent_version,
                        metrics=metrics_json if metrics is not None else model_versions.c.metrics,
                    )
                )
                _event(conn, config.version, "proposed", PROPOSED, PROPOSED, created_by, "proposal refreshed", now)
        elif existing.config_sha256 != config.sha256:
            raise RegistryError(
                f"model version {config.version} is already {existing.status} with another configuration "
                f"(sha256 {existing.config_sha256[:12]}…); propose the new weights under a new version"
            )
        return _get(conn, config.version)  # type: ignore[return-value]


def approve(
    engine: Engine, version: str, *, decided_by: str, note: str | None = None, at: datetime | None = None
) -> ModelVersion:
    """Make a proposed ``version`` active and retire the previously active one (one transaction).

    Idempotent: approving the version that is already active changes nothing. A rejected or
    retired version cannot be approved (propose it again under a new version).
    """
    if not decided_by:
        raise RegistryError("approve needs decided_by: the person or system that approved the model")
    at = at or utcnow()
    with engine.begin() as conn:
        current = _get(conn, version)
        if current is None:
            raise RegistryError(f"model version {version!r} is not registered; propose it before approving it")
        if current.status == ACTIVE:
            return current
        if current.status != PROPOSED:
            raise RegistryError(
                f"model version {version} is {current.status}, only a proposed version can be approved; "
                "propose the config again under a new version"
            )
        previous = conn.execute(
            select(model_versions.c.version).where(model_versions.c.status == ACTIVE, model_versions.c.version != version)
        ).scalars().all()
        for old in previous:
            conn.execute(
                update(model_versions)
                .where(model_versions.c.version == old)
                .values(status=RETIRED, decided_at=at, decided_by=decided_by, decision_note=f"retired: {version} approved")
            )
            _event(conn, old, "retired", ACTIVE, RETIRED, decided_by, f"{version} approved", at)
        conn.execute(
            update(model_versions)
            .where(model_versions.c.version == version)
            .values(status=ACTIVE, decided_at=at, decided_by=decided_by, decision_note=note)
        )
        _event(conn, version, "approved", PROPOSED, ACTIVE, decided_by, note, at)
        return _get(conn, version)  # type: ignore[return-value]


def reject(engine: Engine, version: str, *, decided_by: str, reason: str, at: datetime | None = None) -> ModelVersion:
    """Mark a proposed ``version`` rejected with the reviewer's ``reason``.

    Idempotent: rejecting a rejected version changes nothing. The active or a retired version
    cannot be rejected (approve another version to replace the active one).
    """
    if not decided_by:
        raise RegistryError("reject needs decided_by: the person or system that rejected the model")
    if not reason or not reason.strip():
        raise RegistryError(f"rejecting model version {version} needs a reason the next recalibration can learn from")
    at = at or utcnow()
    with engine.begin() as conn:
        current = _get(conn, version)
        if current is None:
            raise RegistryError(f"model version {version!r} is not registered; nothing to reject")
        if current.status == REJECTED:
            return current
        if current.status != PROPOSED:
            raise RegistryError(
                f"model version {version} is {current.status}, only a proposed version can be rejected; "
                "to replace the active model, approve another version"
            )
        conn.execute(
            update(model_versions)
            .where(model_versions.c.version == version)
            .values(status=REJECTED, decided_at=at, decided_by=decided_by, decision_note=reason)
        )
        _event(conn, version, "rejected", PROPOSED, REJECTED, decided_by, reason, at)
        return _get(conn, version)  # type: ignore[return-value]


def record_metrics(engine: Engine, version: str, metrics: dict[str, Any]) -> None:
    """Store ``metrics`` (JSON) on a registered version, merged over what it holds.

    Used by the audit for versions it grades (e.g. ``{"audit": {...}}``); keys not given are kept.
    """
    with engine.begin() as conn:
        current = _get(conn, version)
        if current is None:
            raise RegistryError(f"model version {version!r} is not registered; score with it or propose it first")
        merged = {**(current.metrics or {}), **metrics}
        conn.execute(
            update(model_versions)
            .where(model_versions.c.version == version)
            .values(metrics=json.dumps(merged, sort_keys=True, default=str))
        )


def version_events(engine: Engine, version: str | None = None) -> list[dict[str, Any]]:
    """The audit trail, oldest first (of one version, or of all)."""
    t = model_version_events.c
    stmt = select(model_version_events).order_by(t.id)
    if version is not None:
        stmt = stmt.where(t.version == version)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt).all()]


def transition_times(conn: Connection, event: str) -> dict[str, datetime]:
    """When each version last went through ``event`` (``approved``: made active; ``retired``),
    from the audit trail. The first version a warehouse saw became active without an approval
    (``scoring.engine.ensure_model_registered``) and has no ``approved`` entry."""
    ev = model_version_events.c
    found: dict[str, datetime] = {}
    for version, occurred_at in conn.execute(
        select(ev.version, ev.occurred_at).where(ev.event == event).order_by(ev.occurred_at, ev.id)
    ):
        found[version] = occurred_at
    return found


def registered_versions(conn: Connection) -> list[ModelVersion]:
    """Every registered version on an open connection, oldest first (the iteration log's order)."""
    stmt = select(model_versions).order_by(model_versions.c.created_at, model_versions.c.version)
    return [_row_to_version(r) for r in conn.execute(stmt).all()]


APPROVE_OPTION, REJECT_OPTION = "Approve", "Reject"


def reviewer_name(responded_by_user: Mapping[str, Any] | None) -> str:
    """Who answered a review (the HITL response's user), or ``timeout`` when nobody did."""
    if not responded_by_user:
        return "timeout (no response)"
    return str(responded_by_user.get("name") or responded_by_user.get("id") or "unknown reviewer")


def apply_review_decision(engine: Engine, version: str, decision: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a human review of a proposed ``version`` to the registry.

    ``decision`` is the Human-in-the-loop response (``chosen_options``, ``params_input`` with an
    optional ``reason``, ``responded_by_user``). *Approve* makes the version active (the previous
    active version is retired); *Reject* rejects it with the reason (a timeout rejects it too,
    saying nobody answered). Idempotent, like the transitions it calls. Returns a small dict.
    """
    chosen = list(decision.get("chosen_options") or [])
    if len(chosen) != 1 or chosen[0] not in (APPROVE_OPTION, REJECT_OPTION):
        raise RegistryError(
            f"review of {version} answered {chosen!r}; expected exactly one of {APPROVE_OPTION!r} or {REJECT_OPTION!r}"
        )
    reason = str((decision.get("params_input") or {}).get("reason") or "").strip()
    who = reviewer_name(decision.get("responded_by_user"))
    if chosen[0] == APPROVE_OPTION:
        row = approve(engine, version, decided_by=who, note=reason or None)
    else:
        if not reason:
            reason = "no response before the review timed out" if who.startswith("timeout") else "rejected in review, no reason given"
        row = reject(engine, version, decided_by=who, reason=reason)
    return {"version": row.version, "status": row.status, "decided_by": row.decided_by, "note": row.decision_note}
