"""Command line of the sandbox.

    python -m health_sandbox serve [--background]   serve the company in .local/sandbox
    python -m health_sandbox stop                    stop a background sandbox
    python -m health_sandbox status                  is it running, and where
    python -m health_sandbox connections             print the Airflow connections JSON

It serves on fixed ports (``server.DEMO_PORTS``); ``CUSTOMER_HEALTH_SANDBOX_PORTS=free`` picks free
ones (endpoints.json in the folder says which).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from customer_health import settings

# The endpoints.json keys of the HTTP systems (server.HTTP_SYSTEMS; not imported: it starts no server).
HTTP_ENDPOINTS = ("salesforce", "zendesk", "stripe", "slack", "hubspot")


def _pid_file(folder: Path) -> Path:
    return folder / "sandbox.pid"


def running_endpoints(folder: Path) -> dict | None:
    """The endpoints of a sandbox serving ``folder``, if one is up and answering."""
    pid_file, ep_file = _pid_file(folder), folder / "endpoints.json"
    if not (pid_file.exists() and ep_file.exists()):
        return None
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return None
    endpoints = json.loads(ep_file.read_text())
    # The HTTP systems this company has (a self-serve company has no Salesforce or Zendesk).
    served = [endpoints[s] for s in HTTP_ENDPOINTS if s in endpoints]
    if not served:
        return None
    for url in served:
        host, port = url.split("://", 1)[1].split(":")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            return None
    return endpoints


def serve_foreground(folder: Path) -> None:
    """Serve until SIGTERM/SIGINT, on the fixed demo ports (free ones with CUSTOMER_HEALTH_SANDBOX_PORTS=free)."""
    from health_sandbox.server import Sandbox, serve_ports

    sb = Sandbox.start(folder, ports=serve_ports())
    _pid_file(folder).write_text(str(os.getpid()))
    print(json.dumps(sb.endpoints, indent=2), flush=True)
    stop = False

    def _stop(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop:
        time.sleep(0.5)
    sb.stop()
    _pid_file(folder).unlink(missing_ok=True)


def serve_background(folder: Path, wait_seconds: float = 30.0) -> dict:
    """Start a detached sandbox process (unless one is up) and return its endpoints."""
    endpoints = running_endpoints(folder)
    if endpoints:
        return endpoints
    if not (folder / "company.db").exists():
        raise SystemExit(
            f"no synthetic company in {folder}: generate one first "
            "(python -m health_sandbox.company --folder ...) or run `make demo`"
        )
    (folder / "endpoints.json").unlink(missing_ok=True)
    log = open(folder / "sandbox.log", "ab")  # noqa: SIM115 - handed to the child process
    subprocess.Popen(
        [sys.executable, "-m", "health_sandbox", "serve", "--folder", str(folder)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        endpoints = running_endpoints(folder)
        if endpoints:
            return endpoints
        time.sleep(0.3)
    raise SystemExit(
        f"the sandbox did not come up within {wait_seconds:.0f} s; see {folder / 'sandbox.log'} (if its ports are "
        "taken by another sandbox, CUSTOMER_HEALTH_SANDBOX_PORTS=free picks free ones)"
    )


def stop(folder: Path) -> bool:
    """Stop a background sandbox; True when one was running."""
    pid_file = _pid_file(folder)
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
    except (ValueError, ProcessLookupError):
        pid_file.unlink(missing_ok=True)
        return False
    for _ in range(50):
        if not pid_file.exists():
            break
        time.sleep(0.1)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m health_sandbox", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["serve", "stop", "status", "connections"])
    parser.add_argument("--folder", type=Path, default=settings.sandbox_dir())
    parser.add_argument("--background", action="store_true", help="serve in a detached process")
    args = parser.parse_args(argv)
    folder: Path = args.folder
    if args.command == "serve":
        if args.background:
            print(json.dumps(serve_background(folder), indent=2))
        else:
            serve_foreground(folder)
    elif args.command == "stop":
        print("sandbox stopped" if stop(folder) else "no sandbox was running")
    elif args.command == "status":
        endpoints = running_endpoints(folder)
        print(json.dumps(endpoints, indent=2) if endpoints else "not running")
        return 0 if endpoints else 1
    elif args.command == "connections":
        from health_sandbox.connections import sandbox_connections

        endpoints = running_endpoints(folder)
        if not endpoints:
            raise SystemExit("the sandbox is not running: `python -m health_sandbox serve --background`")
        print(json.dumps(sandbox_connections(endpoints, settings.default_warehouse_url()), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
