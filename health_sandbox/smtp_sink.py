"""The SMTP sandbox: an aiosmtpd server on 127.0.0.1 that records every message it receives.

Each message is recorded in ``sandbox_writes`` as system ``smtp``, object ``email``, with the
``Message-ID`` header as ``idempotency_key`` and the sender, recipients, subject and body in
``body``. A second message with a Message-ID already seen is still accepted (SMTP servers do not
de-duplicate) but recorded with ``created=False``, so a test can see a duplicate send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import Engine, insert, select

from health_sandbox.http import LOOPBACK, free_port
from health_sandbox.store import sandbox_writes

SYSTEM = "smtp"


def _body_text(msg: EmailMessage, preference: tuple[str, ...] = ("plain", "html")) -> str:
    part = msg.get_body(preferencelist=preference)
    if part is None:
        return ""
    try:
        return part.get_content()
    except (KeyError, LookupError):
        return str(part.get_payload())


class RecordingHandler:
    """aiosmtpd handler: accept every message and record it in the sandbox store."""

    def __init__(self, store: Engine) -> None:
        self.store = store

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook name
        raw = envelope.original_content or envelope.content
        raw = raw if isinstance(raw, bytes) else raw.encode()
        msg = message_from_bytes(raw, policy=policy.default)
        # Header values as sent: the structured parser would trim a Message-ID it finds unusual.
        headers = message_from_bytes(raw, policy=policy.compat32)
        message_id = str(headers.get("Message-ID") or "").strip()
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "from": str(headers.get("From") or ""),
            "to": str(headers.get("To") or ""),
            "subject": str(msg.get("Subject") or ""),
            "message_id": message_id,
            "body": _body_text(msg),
            "html": _body_text(msg, ("html",)) or None,
        }
        with self.store.begin() as conn:
            seen = message_id and conn.execute(
                select(sandbox_writes.c.id).where(
                    sandbox_writes.c.system == SYSTEM, sandbox_writes.c.idempotency_key == message_id
                )
            ).first()
            conn.execute(
                insert(sandbox_writes).values(
                    system=SYSTEM,
                    method="DATA",
                    path="smtp",
                    object="email",
                    record_id=message_id or None,
                    idempotency_key=message_id or None,
                    created=not seen,
                    body=record,
                    at=datetime.now(UTC).replace(tzinfo=None),
                )
            )
        return "250 Message accepted for delivery"


@dataclass
class RunningSmtp:
    """The SMTP sandbox being served on loopback."""

    controller: Controller
    port: int
    host: str = LOOPBACK

    def stop(self) -> None:
        """Stop the server."""
        self.controller.stop()


def start_smtp(store: Engine, port: int = 0) -> RunningSmtp:
    """Serve an SMTP sink on 127.0.0.1:``port`` (0 picks a free port) recording into ``store``."""
    # aiosmtpd's Controller connects to its own port to check it started, so it needs a real one.
    port = port or free_port()
    controller = Controller(RecordingHandler(store), hostname=LOOPBACK, port=port)
    controller.start()
    return RunningSmtp(controller=controller, port=port)
