"""Security headers on every response of the dashboard.

The dashboard is shown inside the Airflow UI's frame (same origin: the api-server serves both)
and opened on its own; it loads nothing but its own stylesheet and script from ``static/``
(no CDN, no inline script or style: charts are inline SVG with presentation attributes, zone
colours are CSS classes). Every response - pages, JSON, CSV, static files, redirects and
errors, the 500 of an unhandled exception included - carries:

* ``Content-Security-Policy: CONTENT_SECURITY_POLICY`` - scripts, styles, fetches and form
  posts from the dashboard's own origin only, nothing else loaded or embedded, no ``<base>``,
  and framed only by its own origin (``frame-ancestors 'self'``: the Airflow UI);
* ``X-Frame-Options: SAMEORIGIN`` (the same rule for browsers without ``frame-ancestors``);
* ``X-Content-Type-Options: nosniff``;
* ``Referrer-Policy: same-origin`` (account keys in URLs never leave in a Referer).

A response that sets its own policy keeps it: the stored HTML audit report is a self-contained
file with an inline ``<style>`` and ``data:`` images, served under ``REPORT_POLICY`` (no
script at all).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'self'",
        "base-uri 'none'",
    ]
)
"""The dashboard's pages: only its own script and stylesheet (``static/``), same-origin
``fetch`` for the override forms, forms posted to itself, framed by its own origin only."""

REPORT_POLICY = "; ".join(
    ["default-src 'none'", "style-src 'unsafe-inline'", "img-src data:", "frame-ancestors 'self'", "base-uri 'none'",
     "form-action 'none'"]
)  # fmt: skip
"""A stored audit report: its inline stylesheet and embedded PNG plots, and nothing else (no script)."""

HEADERS: dict[str, str] = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "SAMEORIGIN",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SecurityHeaders:
    """ASGI middleware: ``HEADERS`` added to every HTTP response the wrapped app starts.

    A header the response already has is left as it is (a route may narrow or widen its own
    policy). Installed outermost (``dashboard.app.DashboardApp``), so the 500 page Starlette
    renders for an unhandled exception passes through it too.
    """

    def __init__(self, app: ASGIApp, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or HEADERS).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in self.headers if name not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
