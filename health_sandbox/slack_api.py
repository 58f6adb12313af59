"""The Slack sandbox: incoming webhooks (``POST /services/{T}/{B}/{X}``) on loopback.

Answers the way Slack's incoming webhooks do: ``200 ok`` as ``text/plain`` for a message it
accepts, ``400 invalid_payload`` for a body it cannot parse, ``400 no_text`` for a message with
neither ``text`` nor ``blocks``. Rate limits (429 with ``Retry-After``) and outages (5xx) come
from the framework's fault injection. Every accepted message is recorded in ``sandbox_writes``
(system ``slack``, object ``message``, ``record_id`` = the webhook path), so a test can assert
"exactly one escalation was posted".

Incoming webhooks have no idempotency key: de-duplication is the sender's job (the outbox).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import Engine

from health_sandbox.http import Request, Response, SandboxApp

SYSTEM = "slack"


def _text(status: int, body: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, raw=body.encode(), headers={"Content-Type": "text/plain"} | (headers or {}))


class SlackApp(SandboxApp):
    """Slack's error shapes are plain-text strings, not JSON."""

    def not_found(self, req: Request) -> Response:
        return _text(404, "no_service")

    def fault_response(self, fault, req: Request) -> Response:  # noqa: ANN001 - framework's Fault
        if fault.kind == "rate_limit":
            return _text(429, "rate_limited", {"Retry-After": str(int(fault.retry_after or 1))})
        if fault.kind == "server_error":
            return _text(503, "service_unavailable")
        return super().fault_response(fault, req)


def parse_webhook_payload(req: Request) -> dict[str, Any] | None:
    """The message a webhook request carries: a JSON body or a form field ``payload=``."""
    content_type = (req.header("content-type") or "").lower()
    try:
        if "application/x-www-form-urlencoded" in content_type:
            form = parse_qs(req.body.decode(), keep_blank_values=True)
            payload = json.loads(form.get("payload", [""])[0])
        else:
            payload = json.loads(req.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def build_app(store: Engine, folder: Path) -> SandboxApp:
    """The Slack incoming-webhook app over the sandbox ``store``."""
    app = SlackApp(SYSTEM, store)

    @app.route("POST", r"/services/(?P<team>[^/]+)/(?P<bot>[^/]+)/(?P<secret>[^/]+)")
    def post_message(req: Request) -> Response:
        payload = parse_webhook_payload(req)
        if payload is None:
            return _text(400, "invalid_payload")
        if not payload.get("text") and not payload.get("blocks") and not payload.get("attachments"):
            return _text(400, "no_text")
        app.record_write(req, "message", req.path, created=True, body=payload)
        return _text(200, "ok")

    return app
