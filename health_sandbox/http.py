"""A small HTTP(S) framework for the loopback sandbox servers.

Each external system (Salesforce, Zendesk, Stripe, Slack, the marketing tool) is a
``SandboxApp``: a list of routes over the sandbox store. Apps are served by a threaded stdlib
server bound to 127.0.0.1 only. Before a request reaches its route the app consults
``sandbox_faults`` and, when a fault matches, answers the way the real system does when
overloaded or unhappy (429 with Retry-After, 5xx, a hang, an expired session). Faults that live
inside a response (malformed records, a duplicated page) are taken by the route handlers through
``SandboxApp.take_fault``.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Engine, insert, select, update

from health_sandbox.store import sandbox_faults, sandbox_writes

LOOPBACK = "127.0.0.1"


@dataclass
class Request:
    """One HTTP request as a route handler sees it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route regex

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        """The body parsed as JSON (None when empty)."""
        return json.loads(self.body) if self.body else None

    def form(self) -> dict[str, str]:
        """The body parsed as application/x-www-form-urlencoded (Stripe's POST format)."""
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def header(self, name: str, default: str | None = None) -> str | None:
        """A request header, case-insensitively."""
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    """What a handler returns: status, JSON-able body (or raw bytes) and headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


Handler = Callable[[Request], Response]


@dataclass
class Fault:
    """A fault switched on in ``sandbox_faults``."""

    id: int
    kind: str
    retry_after: float | None


class SandboxApp:
    """Routes plus fault injection and write recording for one external system."""

    def __init__(self, system: str, store: Engine) -> None:
        self.system = system
        self.store = store
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._fault_lock = threading.Lock()

    # -- routing -------------------------------------------------------------------------
    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Decorator: serve ``method`` requests whose path fully matches ``pattern``."""

        def register(fn: Handler) -> Handler:
            self.routes.append((method.upper(), re.compile(pattern), fn))
            return fn

        return register

    def dispatch(self, req: Request) -> Response:
        """Apply faults, then call the matching route (404/405 otherwise)."""
        fault = self.take_fault(req, kinds=("rate_limit", "server_error", "timeout", "expired_session"))
        if fault is not None:
            return self.fault_response(fault, req)
        allowed = False
        for method, pattern, fn in self.routes:
            m = pattern.fullmatch(req.path)
            if not m:
                continue
            allowed = True
            if method != req.method:
                continue
            req.params = {k: v for k, v in m.groupdict().items() if v is not None}
            return fn(req)
        if allowed:
            return Response(405, {"error": f"method {req.method} not allowed on {req.path}"})
        return self.not_found(req)

    def not_found(self, req: Request) -> Response:
        """The system's 404 (apps override to match the real error shape)."""
        return Response(404, {"error": "not_found", "path": req.path})

    # -- faults ---------------------------------------------------------------------------
    def take_fault(self, req: Request, kinds: tuple[str, ...]) -> Fault | None:
        """Consume one matching fault of one of ``kinds`` for this request, if any is armed."""
        with self._fault_lock, self.store.begin() as conn:
            rows = conn.execute(
                select(sandbox_faults).where(
                    sandbox_faults.c.system == self.system,
                    sandbox_faults.c.kind.in_(kinds),
                    sandbox_faults.c.remaining > 0,
                )
            ).fetchall()
            for row in rows:
                if row.method not in ("*", req.method):
                    continue
                if row.path_regex and not re.search(row.path_regex, req.path):
                    continue
                if row.skip:
                    conn.execute(
                        update(sandbox_faults).where(sandbox_faults.c.id == row.id).values(skip=row.skip - 1)
                    )
                    continue
                conn.execute(
                    update(sandbox_faults)
                    .where(sandbox_faults.c.id == row.id)
                    .values(remaining=row.remaining - 1)
                )
                return Fault(row.id, row.kind, row.retry_after)
        return None

    def fault_response(self, fault: Fault, req: Request) -> Response:
        """The response for a transport-level fault; apps override for their own error shapes."""
        if fault.kind == "rate_limit":
            return Response(
                429,
                {"error": "rate_limited", "message": "Too many requests"},
                {"Retry-After": str(int(fault.retry_after or 1))},
            )
        if fault.kind == "server_error":
            return Response(503, {"error": "service_unavailable"})
        if fault.kind == "timeout":
            time.sleep(fault.retry_after or 5.0)
            return Response(504, {"error": "gateway_timeout"})
        if fault.kind == "expired_session":
            return Response(401, {"error": "invalid_session"})
        return Response(500, {"error": f"unknown fault {fault.kind}"})

    # -- writes ---------------------------------------------------------------------------
    def record_write(
        self,
        req: Request,
        obj: str,
        record_id: str | None,
        *,
        created: bool,
        external_id: str | None = None,
        idempotency_key: str | None = None,
        body: Any = None,
    ) -> None:
        """Record a write in ``sandbox_writes`` so tests can count what clients created."""
        with self.store.begin() as conn:
            conn.execute(
                insert(sandbox_writes).values(
                    system=self.system,
                    method=req.method,
                    path=req.path,
                    object=obj,
                    record_id=record_id,
                    external_id=external_id,
                    idempotency_key=idempotency_key,
                    created=created,
                    body=body if body is not None else _safe_json(req),
                    at=datetime.now(UTC).replace(tzinfo=None),
                )
            )


def _safe_json(req: Request) -> Any:
    try:
        return req.json()
    except ValueError:
        return {"raw": req.body.decode(errors="replace")}


def _make_handler(app: SandboxApp) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in two writes; with Nagle's algorithm on, the body waited for
        # the client's delayed ACK of the headers: ~40 ms added to every response on loopback.
        disable_nagle_algorithm = True

        def log_message(self, fmt: str, *args: Any) -> None:  # keep test output quiet
            return

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            req = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            try:
                resp = app.dispatch(req)
            except Exception as exc:  # a bug in a sandbox route must show, not hang the client
                resp = Response(500, {"error": "sandbox_error", "message": repr(exc)})
            payload = resp.raw if resp.raw is not None else json.dumps(resp.body, default=str).encode()
            try:
                self.send_response(resp.status)
                headers = {"Content-Type": "application/json"} | resp.headers
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # client gave up (a timeout test)
                pass

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

    return _Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class RunningServer:
    """A sandbox app being served on loopback."""

    app: SandboxApp
    server: ThreadingHTTPServer
    thread: threading.Thread
    scheme: str

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(app: SandboxApp, port: int = 0, tls: ssl.SSLContext | None = None) -> RunningServer:
    """Serve ``app`` on 127.0.0.1:``port`` (0 picks a free port) in a daemon thread."""
    server = _Server((LOOPBACK, port), _make_handler(app))
    if tls is not None:
        # Handshake lazily, in the request's own thread, so one slow client cannot stall accept().
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, name=f"sandbox-{app.system}", daemon=True)
    thread.start()
    return RunningServer(app, server, thread, "https" if tls else "http")


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]
