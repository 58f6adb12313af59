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
* campaign changes (Salesforce CampaignMembers or HubSpot list memberships) are recorded in
  ``campaign_memberships`` before they are made (``actions.campaigns``), so a retry finishes what
  an interrupted delivery began and adds, pauses or resumes nothing twice.

A row the target has nothing to deliver for (no contact of the account is known to HubSpot) is
``suppressed`` with the reason: nothing failed, and nothing was sent.
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
from customer_health.actions import campaigns, outbox
from customer_health.actions.config import ActionRules, ActionSpec
from customer_health.actions.targets import (
    DispatchClients,
    PermanentDeliveryError,
    classify_delivery_error,
    classify_http,
    translated_errors,
)
from customer_health.retries import RetriesExhausted, call_with_retries
from customer_health.sources.salesforce_fields import api_name
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
    undeliverable: int = 0  # nothing to deliver at the target (suppressed with the reason)
    retries: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # key -> last error (failed or deferred)
    failed_keys: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """A small JSON-able summary (fit for XCom)."""
        return {
            "action_type": self.action_type, "sent": self.sent, "failed": self.failed, "deferred": self.deferred,
            "skipped": self.skipped, "undeliverable": self.undeliverable, "retries": self.retries,
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


class NothingToDeliver(Exception):
    """The target has nothing to deliver this row to (said in the message); the row is suppressed."""


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
    trigger_date: Any = None


# ----------------------------------------------------------------------------- deliverers
def deliver_salesforce_task(
    row: OutboxRow, spec: ActionSpec, clients: DispatchClients, engine: Engine, rules: ActionRules
) -> Delivery:
    """Upsert the Task by ``Health_Action_Key__c`` (the org's name for ``Task.health_action_key``)
    = the outbox key (a replay updates it)."""
    sf = clients.require("salesforce")
    fields = dict(row.payload["fields"])
    with translated_errors("Salesforce"):
        resp = sf.Task.upsert(f"{api_name('Task.health_action_key')}/{row.key}", fields, raw_response=True)
    task_id = None
    try:
        task_id = resp.json().get("id") if resp.content else None
    except ValueError:
        task_id = None
    return Delivery(task_id or f"{api_name('Task.health_action_key')}/{row.key}",
                    {"http_status": resp.status_code, "task_id": task_id})


def deliver_task_completion(
    row: OutboxRow, spec: ActionSpec, clients: DispatchClients, engine: Engine, rules: ActionRules
) -> Delivery:
    """Complete the account's open rescue tasks (only those that were actually delivered)."""
    sf = clients.require("salesforce")
    keys = _deliverable_related(engine, row.payload.get("complete_keys", []))
    done = set(row.progress.get("completed", []))
    for key in keys:
        if key in done:
            continue
        with translated_errors("Salesforce"):
            sf.Task.upsert(f"{api_name('Task.health_action_key')}/{key}", {"Status": "Completed"})
        done.add(key)
        outbox.save_progress(engine, row.key, {"completed": sorted(done)})
    outbox.mark_resolved(engine, sorted(done), row.key)
    return Delivery(None, {"completed": sorted(done)})


def _campaign_contacts(row: OutboxRow) -> list[campaigns.CampaignContact]:
    return [campaigns.CampaignContact(row.account_key, c["email"], c.get("id") or None) for c in row.payload["contacts"]]


def deliver_campaign_enrolment(
    row: OutboxRow, spec: ActionSpec, clients: DispatchClients, engine: Engine, rules: ActionRules
) -> Delivery:
    """Make the account's contacts members of the programme's campaigns (or HubSpot lists)."""
    target = clients.require("campaigns")
    programmes = campaigns.programmes_of(target, rules, row.payload["programmes"])
    contacts = _campaign_contacts(row)
    report = campaigns.add_members(engine, target, programmes, contacts, row.key, row.trigger_date)
    if len(report.unknown_contacts) == len(contacts):
        raise NothingToDeliver(
            f"none of the account's {len(contacts)} contacts is a {target.name} contact (looked up by e-mail): "
            "nobody to enrol"
        )
    return Delivery(f"{target.name}:{','.join(p.id for p in programmes)}"[:120], report.as_dict())


def deliver_campaign_pause(
    row: OutboxRow, spec: ActionSpec, clients: DispatchClients, engine: Engine, rules: ActionRules
) -> Delivery:
    """Pause the account's contacts in the upsell/expansion programmes, held by this row.

    Only memberships this pause changed are the product's (``campaign_memberships``); a
    membership someone else paused stays theirs, and a recovery resumes only ours.
    """
    target = clients.require("campaigns")
    programmes = campaigns.programmes_of(target, rules, row.payload["programmes"])
    report = campaigns.pause_members(
        engine, target, programmes, _campaign_contacts(row), row.key, row.trigger_date, rules.pause_status
    )
    return Delivery(f"{target.name}:paused:{report.paused}", report.as_dict())


def deliver_campaign_resume(
    row: OutboxRow, spec: ActionSpec, clients: DispatchClients, engine: Engine, rules: ActionRules
) -> Delivery:
    """Release the holds of the account's earlier pauses; resume what nobody holds any more."""
    target = clients.require("campaigns")
    pause_keys = _deliverable_related(engine, row.payload.get("resume_keys", []))
    total = campaigns.MembershipReport()
    for key in pause_keys:
        report = campaigns.release_holds(engine, target, key, row.trigger_date, row.key, rules.pause_status)
        total.resumed += report.resumed
        total.still_held += report.still_held
    outbox.mark_resolved(engine, pause_keys, row.key)
    return Delivery(f"{target.name}:resumed:{total.resumed}", total.as_dict())


def deliver_slack(
    row: OutboxRow, spec: ActionSpec, clients: DispatchClients, engine: Engine, rules: ActionRules
) -> Delivery:
    """Post the escalation through the incoming webhook."""
    slack = clients.require("slack")
    with translated_errors("Slack webhook"):
        resp = slack.send(text=row.payload["text"])
    classify_http(resp.status_code, str(resp.body), "Slack webhook", getattr(resp, "headers", None))
    return Delivery(None, {"http_status": resp.status_code, "body": str(resp.body)})


def deliver_email(
    row: OutboxRow, spec: ActionSpec, clients: DispatchClients, engine: Engine, rules: ActionRules
) -> Delivery:
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
        "campaign_enrol": deliver_campaign_enrolment,
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
            return deliver(row, spec, clients, engine, rules)

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
        except NothingToDeliver as exc:
            outbox.mark_undeliverable(engine, key, str(exc))
            report.undeliverable += 1
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
        trigger_date=r.trigger_date,
    )
