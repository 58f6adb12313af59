"""CRM writeback: the health score on every Salesforce Account record.

Each account scored on the date gets ``Health_Score__c``, ``Health_Zone__c``,
``Health_Trend__c``, ``Health_Drivers__c`` and ``Health_Score_Date__c`` (the as-of date of the
score the fields show; each under the API name the source mapping gives, ``Account.health_score``
and so on), written with Salesforce's composite sObject collections (``PATCH
composite/sobjects``, up to 200 records a call, ``allOrNone: false``). Only accounts whose
fields differ from what was last written (``crm_writeback_state``) are sent, so a re-run writes
nothing and a quiet day writes little. A record Salesforce rejects keeps its old state and is
retried by the next writeback.

Time only moves forward: ``crm_writeback_state.as_of_date`` is the newest score date whose
values the record holds (written, or found equal and confirmed), and a writeback for an older
date - a re-run of last week, a backfill, a late refresh - never replaces it: those accounts are
counted as ``newer_on_record`` and left alone.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Engine, select

from customer_health import wording
from customer_health.actions.config import ActionRules
from customer_health.actions.targets import DELIVERY_RETRY, classify_delivery_error, translated_errors
from customer_health.retries import RetryPolicy, call_with_retries
from customer_health.scoring.drivers import describe_drivers, read_drivers
from customer_health.sources.salesforce_fields import api_name
from customer_health.warehouse.io import as_date, upsert_rows, utcnow
from customer_health.warehouse.schema import crm_writeback_state, health_scores

COLLECTION_LIMIT = 200  # Salesforce's maximum records per composite sObject collection call
DRIVERS_MAX_CHARS = 1000


class WritebackRejected(RuntimeError):
    """Salesforce refused some Account records; retrying the same values cannot help."""

    retryable = False


@dataclass
class WritebackReport:
    """What one writeback did."""

    as_of: date
    model_version: str
    scored: int = 0
    unchanged: int = 0
    written: int = 0
    newer_on_record: int = 0  # the record already shows a later score date: left alone
    failed: int = 0
    calls: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A small JSON-able summary (fit for XCom)."""
        return {
            "as_of": self.as_of.isoformat(), "model_version": self.model_version, "scored": self.scored,
            "unchanged": self.unchanged, "written": self.written, "newer_on_record": self.newer_on_record,
            "failed": self.failed, "calls": self.calls,
        }

    def raise_for_failures(self) -> None:
        """``WritebackRejected`` with the count and the commonest reasons, when records were refused."""
        if not self.failed:
            return
        reasons = Counter(_reason(e) for e in self.errors.values()).most_common(3)
        raise WritebackRejected(
            f"Salesforce refused the health fields of {wording.count(self.failed, 'Account record')} ({self.written} written) for "
            f"{self.as_of}: " + "; ".join(f"{n} x {reason}" for reason, n in reasons)
            + ". Those records keep their previous values; fix the cause (a validation rule, field access) "
            "and the next writeback writes them."
        )


def health_drivers_text(explanation: str | None, drivers_json: str | None) -> str:
    """``Health_Drivers__c``: the explanation, then what pulls the score down and what holds it up.

    ``"Score 41 (At Risk), held down by: ... . Pulling it down: CSAT (-2.4 points; 0/100 vs
    similar accounts); ... Holding it up: ..."``, cut to the field's length at a sentence.
    """
    drivers = read_drivers(drivers_json)
    sentences = [(explanation or "").strip().rstrip(".")]
    for kind, lead in (("down", "Pulling it down"), ("up", "Holding it up")):
        phrase = describe_drivers(drivers, limit=3, kind=kind)
        if phrase:
            sentences.append(f"{lead}: {phrase}")
    text = ""
    for sentence in (s for s in sentences if s):
        candidate = f"{text} {sentence}." if text else f"{sentence}."
        if len(candidate) > DRIVERS_MAX_CHARS:
            break
        text = candidate
    return text or (sentences[0][: DRIVERS_MAX_CHARS - 1] + "." if sentences[0] else "")


def account_health_fields(row: Any, rules: ActionRules) -> dict[str, Any]:
    """The health fields of the Account for one health_scores row (the score date apart)."""
    return {
        api_name("Account.health_score"): float(row.score),
        api_name("Account.health_zone"): row.zone,
        api_name("Account.health_trend"): rules.trend_label(row.slope_90),
        api_name("Account.health_drivers"): health_drivers_text(row.explanation, row.drivers),
    }


def _state(key: str, fields: dict[str, Any], as_of: date, model_version: str) -> dict[str, Any]:
    return {
        "account_key": key, "health_score": fields[api_name("Account.health_score")],
        "health_zone": fields[api_name("Account.health_zone")], "health_trend": fields[api_name("Account.health_trend")],
        "health_drivers": fields[api_name("Account.health_drivers")],
        "as_of_date": as_of, "model_version": model_version, "written_at": utcnow(),
    }


def writeback_health_fields(
    engine: Engine,
    sf: Any,
    as_of: date,
    model_version: str,
    rules: ActionRules,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> WritebackReport:
    """Write changed health fields of every account scored on ``as_of`` to Salesforce.

    ``sf`` is a ``simple_salesforce.Salesforce``. Transient failures of a whole call are
    retried within ``retry`` (default ``DELIVERY_RETRY``; Retry-After honoured, ``sleep``
    waits); if they persist ``retries.RetriesExhausted`` is raised (the task retries) and the
    records of that call keep their old state.
    """
    retry = retry or DELIVERY_RETRY
    report = WritebackReport(as_of=as_of, model_version=model_version)
    with engine.connect() as conn:
        rows = conn.execute(
            select(health_scores)
            .where(health_scores.c.as_of_date == as_of, health_scores.c.model_version == model_version)
            .order_by(health_scores.c.account_key)
        ).fetchall()
        last = {r.account_key: r for r in conn.execute(select(crm_writeback_state))}
    report.scored = len(rows)
    changed: list[tuple[str, dict[str, Any]]] = []
    confirmed: list[dict[str, Any]] = []
    for row in rows:
        fields = account_health_fields(row, rules)
        prev = last.get(row.account_key)
        if prev is not None and as_date(prev.as_of_date) > as_of:
            report.newer_on_record += 1
            continue
        if prev is not None and (
            prev.health_score, prev.health_zone, prev.health_trend, prev.health_drivers
        ) == tuple(fields.values()):
            report.unchanged += 1
            if as_date(prev.as_of_date) < as_of:  # the record's values hold for this newer date too
                confirmed.append(_state(row.account_key, fields, as_of, model_version) | {"written_at": prev.written_at})
            continue
        changed.append((row.account_key, fields))
    if confirmed:
        with engine.begin() as conn:
            upsert_rows(conn, crm_writeback_state, confirmed)
    for start in range(0, len(changed), COLLECTION_LIMIT):
        chunk = changed[start : start + COLLECTION_LIMIT]
        records = [
            {"attributes": {"type": "Account"}, "Id": key, **fields, api_name("Account.health_score_date"): as_of.isoformat()}
            for key, fields in chunk
        ]
        results = _patch_collection(sf, records, retry, sleep)
        report.calls += 1
        state = []
        for (key, fields), result in zip(chunk, results, strict=False):
            if result.get("success"):
                report.written += 1
                state.append(_state(key, fields, as_of, model_version))
            else:
                report.failed += 1
                report.errors[key] = json.dumps(result.get("errors", []))
        with engine.begin() as conn:
            upsert_rows(conn, crm_writeback_state, state)
    return report


def _reason(errors_json: str) -> str:
    """Salesforce's record errors (``[{"statusCode", "message", "fields"}]``) as one line."""
    try:
        errors = json.loads(errors_json)
    except ValueError:
        return errors_json
    if not isinstance(errors, list):
        return str(errors)
    return " / ".join(f"{e.get('statusCode', '?')}: {str(e.get('message', '')).rstrip('.')}" for e in errors if isinstance(e, dict))


def _patch_collection(sf: Any, records: list[dict[str, Any]], retry: RetryPolicy, sleep: Callable[[float], None]) -> list[dict]:
    """One ``PATCH composite/sobjects`` call, retried while Salesforce fails transiently."""

    def patch() -> list[dict]:
        with translated_errors("Salesforce composite/sobjects"):
            answer = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": records})
        return list(answer or [])

    return call_with_retries(
        patch,
        describe=f"CRM writeback of {len(records)} Account record(s)",
        classify=classify_delivery_error,
        policy=retry,
        sleep=sleep,
    )
