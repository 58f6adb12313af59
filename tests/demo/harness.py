"""Brand-new homes for the README's commands, and making sure nothing they start survives.

Every process the demo or ``make airflow`` starts inherits ``CUSTOMER_HEALTH_HOME``, which is a
fresh temporary folder per test: finding the processes whose environment holds it finds all of
them, wherever they were re-parented, in whatever process group or session they put themselves.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

# Python reprs that must never reach a person's terminal.
REPR = re.compile(r"\['|\{'|\bNone\b|\bnan\b|\bNaN\b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_env(base: Path, **extra: str) -> dict[str, str]:
    """The environment of a new user's shell, with brand-new homes under ``base``.

    No ``AIRFLOW*`` or ``CUSTOMER_HEALTH*`` variable of this test session (its conftest sets
    ``AIRFLOW_HOME``) leaks in, and the venv's bin directory is not on ``PATH`` (nobody
    activated it: the commands must find their own ``airflow``). The sandbox picks free ports,
    so a developer's running demo sandbox on the fixed ones is left alone.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CUSTOMER_HEALTH", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != VENV_BIN)
    env.update(
        {
            "CUSTOMER_HEALTH_HOME": str(base / "customer-health"),
            "AIRFLOW_HOME": str(base / "airflow"),
            "CUSTOMER_HEALTH_SANDBOX_PORTS": "free",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT)]),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def processes_of(env: dict[str, str]) -> list[psutil.Process]:
    """Every running process (zombies aside) whose environment has this ``CUSTOMER_HEALTH_HOME``."""
    marker = f"CUSTOMER_HEALTH_HOME={env['CUSTOMER_HEALTH_HOME']}".encode()
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            data = Path(f"/proc/{proc.pid}/environ").read_bytes()
            if b"\0" + marker + b"\0" in b"\0" + data + b"\0" and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


def describe(procs: list[psutil.Process]) -> str:
    lines = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            lines.append(f"  pid {proc.pid} ({proc.status()}): {' '.join(proc.cmdline())[:160]}")
    return "\n".join(lines)


def wait_until_gone(env: dict[str, str], timeout: float) -> list[psutil.Process]:
    """The processes of ``env`` still running after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = processes_of(env)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def kill_all(env: dict[str, str]) -> None:
    """Clean-up after a failure: SIGKILL every process of ``env``, one by one by pid."""
    for proc in processes_of(env):
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)


def stop_sandbox(env: dict[str, str]) -> str:
    """``python -m health_sandbox stop`` for this home; its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "health_sandbox", "stop"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.stdout + proc.stderr


def tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
