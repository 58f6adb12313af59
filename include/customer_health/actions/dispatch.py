"""Deliver pending outbox rows of one action type, exactly once.

For each row: claim it (the status is re-checked inside the UPDATE), deliver it with the
target's client, and record the outcome at once, so a fault in the middle of a batch leaves the
rows before it sent. Transient failures (429, 5xx, a dropped connection) are retried
(``customer_health.retries``: bounded backoff with jitter, the target's Retry-After honoured;
``DispatchClients.retry`` and ``.sleep``) and, if they outlive the retries, the row goes back
to pending for the next dispatch; permanent failures (400, 404, a refused recipient) leave the row failed with
the error in ``last_error``.

Exactly once, per target:
* Salesforce tasks are upserted by the external id ``Health_Action_Key__c`` = the outbox key,
  so a re-delivery updates the same Task;
* Slack and e-mail cannot de-duplicate: only a row claimed from ``pending`` is sent, and the
  e-mail's Message-ID is derived from the key;
* marketing calls are idempotent (adding a member twice, pausing a paused membership).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from customer_health import wording
from customer_health.actions import outbox
from customer_health.actions.config import ActionRules, ActionSpec
from customer_health.actions.targets import (
    DispatchClients,
    PermanentDeliveryError,
    classify_delivery_error,
    classify_http,
    translated_errors,
)
from customer_health.retries import RetriesExhausted, call_with_retries
from customer_health.warehouse.schema import action_outbox

log = logging.getLogger(__name__)


class DeliveryFailed(RuntimeError):
    """Deliveries failed permanently (their rows are ``failed``); retrying the task cannot help."""

    retryable = False


class DeliveryDeferred(RuntimeError):
    """Deliveries kept failing transiently; their rows are pending again and a retry resends them."""

    retryable = True


@dataclass
class DispatchReport:
    """What one dispatch of one action type did."""

    action_type: str
    sent: int = 0
    failed: int = 0
    deferred: int = 0  # transient failures past their retries: still pending
    skipped: int = 0  # not deliverable any more (already sent, claimed elsewhere)
    retries: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # key -> last error (failed or deferred)
    failed_keys: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """A small JSON-able summary (fit for XCom)."""
        return {
            "action_type": self.action_type, "sent": self.sent, "failed": self.failed, "deferred": self.deferred,
            "skipped": self.skipped, "retries": self.retries,
        }


def raise_for_failures(reports: Sequence[DispatchReport]) -> None:
    """Fail loudly when anything was not delivered: a green task must mean delivered.

    Permanent failures raise ``DeliveryFailed`` (not retryable: the rows are marked failed, so a
    retry would find nothing to send and turn the task green); transient ones that outlived the
    retries raise ``DeliveryDeferred`` (the task's retry resends the rows, pending again).
    """
    sent = sum(r.sent for r in reports)
    failed = [(r.action_type, r.errors[k]) for r in reports for k in r.failed_keys]
    if failed:
        listed = "; ".join(f"{n} x {kind}: {reason}" for (kind, reason), n in Counter(failed).most_common(3))
        raise DeliveryFailed(
            f"{wording.count(len(failed), 'delivery')} failed permanently ({sent} sent): {listed}. The rows are 'failed' in "
            "action_outbox with the error in last_error; fix the cause (configuration, the target system) "
            "and decide the date again."
        )
    deferred = sum(r.deferred for r in reports)
    if deferred:
        example = next(e for r in reports for k, e in r.errors.items() if k not in r.failed_keys)
        raise DeliveryDeferred(
            f"{wording.count(deferred, 'delivery')} {'is' if deferred == 1 else 'are'} still pending after transient "
            f"errors ({sent} sent), e.g. {example}; "
            "a retry of this task resends them."
        )


@dataclass
class Delivery:
    """What a target did for one row."""

    external_id: str | None
    result: dict[str, Any]


@dataclass
class OutboxRow:
    """The outbox row being delivered."""

    key: str
    account_key: str
    action_type: str
    target: str
    payload: dict[str, Any]
    progress: dict[str, Any]


# ----------------------------------------------------------------------------- deliverers
def deliver_salesforce_task(row: OutboxRow, spec: ActionSpec, clients: DispatchClients, engine: Engine) -> Delivery:
    """Upsert the Task by ``Health_Action_Key__c`` = the outbox key (a replay updates it)."""
    sf = clients.require("salesforce")
    fields = dict(row.payload["fields"])
    with translated_errors("Salesforce"):
        resp = sf.Task.upsert(f"Health_Action_Key__c/{row.key}", fields, raw_response=True)
    task_id = None
    try:
        task_id = resp.json().get("id") if resp.content else None
    except ValueError:
        task_id = None
    return Delivery(task_id or f"Health_Action_Key__c/{row.key}", {"http_status": resp.status_code, "task_id": task_id})


def deliver_task_completion(row: OutboxRow, spec: ActionSpec, clients: DispatchClients, engine: Engine) -> Delivery:
    """Complete the account's open rescue tasks (only those that were actually delivered)."""
    sf = clients.require("salesforce")
    keys = _deliverable_related(engine, row.payload.get("complete_keys", []))
    done = set(row.progress.get("completed", []))
    for key in keys:
        if key in done:
            continue
        with translated_errors("Salesforce"):
            sf.Task.upsert(f"Health_Action_Key__c/{key}", {"Status": "Completed"})
        done.add(key)
        outbox.save_progress(engine, row.key, {"completed": sorted(done)})
    outbox.mark_resolved(engine, sorted(done), row.key)
    return Delivery(None, {"completed": sorted(done)})


def deliver_marketing_enrolment(row: OutboxRow, spec: ActionSpec, clients: DispatchClients, engine: Engine) -> Delivery:
    """Add the account's contacts to every list of the configured kind (and name)."""
    mk = clients.require("marketing")
    kind, name_part = row.payload["list_kind"], row.payload.get("list_name_contains")
    lists = [
        lst for lst in mk.lists()
        if lst.get("kind") == kind and (not name_part or name_part.lower() in str(lst.get("name", "")).lower())
    ]
    if not lists:
        named = f" whose name contains {name_part!r}" if name_part else ""
        raise PermanentDeliveryError(
            f"the marketing tool has no list of kind {kind!r}{named}; create one or change {row.action_type} "
            "in config/actions_v1.yaml"
        )
    result: dict[str, Any] = {"lists": [], "added": [], "already_members": []}
    for lst in sorted(lists, key=lambda x: x["listId"]):
        answer = mk.add_to_list(lst["listId"], row.payload["emails"])
        result["lists"].append(lst["listId"])
        result["added"].extend(f"{lst['listId']}:{e}" for e in answer.get("updated", []))
        result["already_members"].extend(f"{lst['listId']}:{e}" for e in answer.get("discarded", []))
    return Delivery(",".join(f"list:{i}" for i in result["lists"]), result)


def deliver_campaign_pause(row: OutboxRow, spec: ActionSpec, clients: DispatchClients, engine: Engine) -> Delivery:
    """Pause every active upsell/expansion membership of the account's contacts.

    Only memberships this action paused are remembered (in the row's result), so a recovery
    resumes those and leaves alone a pause a marketer made by hand.
    """
    mk = clients.require("marketing")
    kinds = set(row.payload["list_kinds"])
    paused = {tuple(p) for p in row.progress.get("paused", [])}
    for email in row.payload["emails"]:
        for m in mk.memberships(email):
            pair = (m["listId"], m["email"])
            if m.get("kind") not in kinds or (m.get("status") != "active" and pair not in paused):
                continue
            mk.set_membership_status(m["listId"], m["email"], "paused")
            paused.add(pair)
            outbox.save_progress(engine, row.key, {"paused": sorted(paused)})
    return Delivery(f"paused:{len(paused)}", {"paused": sorted(paused)})


def deliver_campaign_resume(row: OutboxRow, spec: ActionSpec, clients: DispatchClients, engine: Engine) -> Delivery:
    """Resume the memberships the account's earlier pauses paused."""
    mk = clients.require("marketing")
    pause_keys = _deliverable_related(engine, row.payload.get("resume_keys", []))
    with engine.connect() as conn:
        results = conn.execute(
            select(action_outbox.c.result).where(action_outbox.c.idempotency_key.in_(pause_keys))
        ).scalars().all()
    pairs = sorted({tuple(p) for r in results if r for p in json.loads(r).get("paused", [])})
    resumed, gone = [], []
    for list_id, email in pairs:
        answer = mk.set_membership_status(list_id, email, "active")
        (resumed if answer is not None else gone).append([list_id, email])
    outbox.mark_resolved(engine, pause_keys, row.key)
    return Delivery(f"resumed:{len(resumed)}", {"resumed": resumed, "no_longer_members": gone})


def deliver_slack(row: OutboxRow, spec: ActionSpec, clients: DispatchClients, engine: Engine) -> Delivery:
    """Post the escalation through the incoming webhook."""
    slack = clients.require("slack")
    with translated_errors("Slack webhook"):
        resp = slack.send(text=row.payload["text"])
    classify_http(resp.status_code, str(resp.body), "Slack webhook", getattr(resp, "headers", None))
    return Delivery(None, {"http_status": resp.status_code, "body": str(resp.body)})


def deliver_email(row: OutboxRow, spec: ActionSpec, clients: DispatchClients, engine: Engine) -> Delivery:
    """Send the escalation e-mail with the Message-ID derived from the outbox key."""
    sender = clients.require("email")
    p = row.payload
    sender.send(from_email=p["from"], to=p["to"], subject=p["subject"], html=p["html"], message_id=p["message_id"])
    return Delivery(p["message_id"], {"to": p["to"]})


def _deliverable_related(engine: Engine, keys: Sequence[str]) -> list[str]:
    """Of ``keys``, the rows that were delivered (only those exist at the target)."""
    if not keys:
        return []
    with engine.connect() as conn:
        return sorted(
            conn.execute(
                select(action_outbox.c.idempotency_key).where(
                    action_outbox.c.idempotency_key.in_(list(keys)), action_outbox.c.status == outbox.SENT
                )
            ).scalars()
        )


def _deliverer(spec: ActionSpec):  # noqa: ANN202 - one of the deliver_* functions
    if spec.kind == "campaign_status":
        return deliver_campaign_pause if spec.status == "paused" else deliver_campaign_resume
    return {
        "salesforce_task": deliver_salesforce_task,
        "salesforce_task_complete": deliver_task_completion,
        "marketing_enrol": deliver_marketing_enrolment,
        "slack": deliver_slack,
        "email": deliver_email,
    }[spec.kind]


# ----------------------------------------------------------------------------- dispatching
def dispatch(
    engine: Engine,
    action_type: str,
    batch_keys: Sequence[str] | None,
    clients: DispatchClients,
    rules: ActionRules | None = None,
) -> DispatchReport:
    """Deliver the pending rows of ``action_type`` (only ``batch_keys`` when given)."""
    if rules is None:
        from customer_health.actions.config import load_action_rules

        rules = load_action_rules()
    spec = rules.action(action_type)
    deliver = _deliverer(spec)
    report = DispatchReport(action_type)
    claimable = (outbox.PENDING, outbox.SENDING) if spec.target in outbox.IDEMPOTENT_TARGETS else (outbox.PENDING,)
    query = select(action_outbox.c.idempotency_key).where(
        action_outbox.c.action_type == action_type, action_outbox.c.status.in_(claimable)
    )
    if batch_keys is not None:
        query = query.where(action_outbox.c.idempotency_key.in_(list(batch_keys)))
    with engine.connect() as conn:
        keys = list(conn.execute(query.order_by(action_outbox.c.idempotency_key)).scalars())
    if batch_keys is not None:
        report.skipped += len(set(batch_keys) - set(keys))
    sleep = clients.sleep or time.sleep
    for key in keys:
        if not outbox.claim(engine, key, spec.target):
            report.skipped += 1
            continue
        attempts = 0

        def attempt(key: str = key) -> Delivery:
            nonlocal attempts
            attempts += 1
            row = _load_row(engine, key)  # each attempt sees the progress an earlier one saved
            return deliver(row, spec, clients, engine)

        try:
            delivery = call_with_retries(
                attempt,
                describe=f"{action_type} {key} to {spec.target}",
                classify=classify_delivery_error,
                policy=clients.retry,
                sleep=sleep,
                logger=log,
            )
        except RetriesExhausted as exc:
            outbox.release(engine, key, f"transient, will retry at the next dispatch: {exc}")
            report.deferred += 1
            report.errors[key] = str(exc)
            continue
        except PermanentDeliveryError as exc:
            outbox.mark_failed(engine, key, str(exc))
            report.failed += 1
            report.errors[key] = str(exc)
            report.failed_keys.append(key)
            continue
        except Exception as exc:  # noqa: BLE001 - a bug must leave a visible failed row, not 'sending'
            outbox.mark_failed(engine, key, f"unexpected error while delivering: {exc!r}")
            report.failed += 1
            report.errors[key] = repr(exc)
            report.failed_keys.append(key)
            continue
        finally:
            report.retries += max(0, attempts - 1)
        outbox.mark_sent(engine, key, delivery.external_id, delivery.result)
        report.sent += 1
    return report


def _load_row(engine: Engine, key: str) -> OutboxRow:
    with engine.connect() as conn:
        r = conn.execute(select(action_outbox).where(action_outbox.c.idempotency_key == key)).one()
    return OutboxRow(
        key=r.idempotency_key,
        account_key=r.account_key,
        action_type=r.action_type,
        target=r.target,
        payload=json.loads(r.payload),
        progress=json.loads(r.result) if r.result else {},
    )
