"""What an outbox row would send, in the words of the person who would receive it.

Shadow-mode action types (``mode: shadow`` in the action rules) are decided and recorded with
exactly the payload a live type would deliver, and never delivered. Before switching a type to
``live`` a team reads what it would have sent: the dashboard's *Shadow* page and its CSV list
these rows through :func:`would_send`, which reads the payload the dispatcher would deliver
(``actions.decide.build_payload``) - never a second rendering of the message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from html import unescape
from typing import Any

from customer_health import wording
from customer_health.actions.outbox import payload_of

_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Preview:
    """One outbox row as its recipient would get it."""

    channel: str  # "Salesforce task", "e-mail", "Slack", "campaign"
    recipient: str  # who, or where
    subject: str  # the first line a person reads
    body: str  # the rest, as plain text

    def as_dict(self) -> dict[str, str]:
        return {"channel": self.channel, "recipient": self.recipient, "subject": self.subject, "body": self.body}


def _plain(html: str) -> str:
    text = re.sub(r"</p>\s*<p>|<br\s*/?>", "\n", html or "")
    return unescape(_TAG.sub("", text)).strip()


def _contacts(payload: Mapping[str, Any]) -> str:
    contacts = payload.get("contacts") or []
    emails = [c.get("email") or c.get("id") for c in contacts if isinstance(c, Mapping)]
    emails = [e for e in emails if e]
    if not emails:
        return wording.count(len(contacts), "contact")
    shown = ", ".join(emails[:3])
    return shown + (f" and {wording.count(len(emails) - 3, 'more contact')}" if len(emails) > 3 else "")


def would_send(target: str, action_type: str, payload: Any) -> Preview:
    """The message or change an outbox row's payload makes, as its recipient reads it."""
    p = payload_of(payload)
    kind = action_type.replace("_", " ")
    if target == "salesforce" and "fields" in p:
        f = p["fields"]
        owner = f.get("OwnerId") or "the account owner"
        due = f" (due {f['ActivityDate']})" if f.get("ActivityDate") else ""
        return Preview("Salesforce task", f"Task for User {owner}{due}", str(f.get("Subject") or kind),
                       str(f.get("Description") or ""))
    if target == "salesforce" and "complete_keys" in p:
        n = len(p["complete_keys"])
        return Preview("Salesforce task", "the open health tasks", f"Mark {wording.count(n, 'task')} completed", "")
    if target == "email":
        to = ", ".join(p.get("to") or []) or "nobody"
        return Preview("e-mail", to, str(p.get("subject") or kind), _plain(str(p.get("html") or "")))
    if target == "slack":
        lines = str(p.get("text") or "").splitlines()
        return Preview("Slack", "the escalation channel", lines[0] if lines else kind, "\n".join(lines[1:]))
    if target == "campaigns":
        programmes = ", ".join(p.get("programmes") or []) or "the configured programmes"
        if p.get("status") == "active":
            return Preview("campaign", "the members it paused", "Resume the paused campaign memberships", "")
        if p.get("status") == "paused":
            return Preview("campaign", _contacts(p), f"Pause {programmes}", "")
        extra = {k: v for k, v in p.items() if k not in ("programmes", "contacts")}
        body = "; ".join(f"{k.replace('_', ' ')}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in extra.items() if v not in (None, "", []))
        return Preview("campaign", _contacts(p), f"Enrol in {programmes}", body)
    return Preview(target, "", kind, json.dumps(p, sort_keys=True)[:500])
