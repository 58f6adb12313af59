"""Production installs requirements.txt alone; the venv adds requirements-dev.txt; one lock for both.

The production image (Dockerfile) must not carry the test tools, every top-level dependency is
pinned, and at the version constraints.txt resolved (a pin that disagrees with the lock would
make ``pip install -r requirements.txt -c constraints.txt`` fail).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV_TOOLS = {"pytest", "pytest-timeout", "hypothesis", "ruff", "playwright"}
SANDBOX_ONLY = {"aiosmtpd", "cryptography", "psutil"}  # health_sandbox: the demo and the tests


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(path: Path) -> tuple[dict[str, str], list[str]]:
    """The pins (name -> version) and the ``-r`` includes of a requirements file."""
    pins, includes = {}, []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            includes.append(line[3:].strip())
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert match, f"{path.name}: {raw!r} is not pinned as name==version"
        pins[canonical(match[1])] = match[2]
    return pins, includes


def test_production_requirements_are_pinned_and_carry_no_test_tools():
    pins, includes = requirements(ROOT / "requirements.txt")
    assert not includes
    assert not DEV_TOOLS & set(pins), "test tools belong in requirements-dev.txt"
    assert not SANDBOX_ONLY & set(pins), "the sandbox is not shipped: its dependencies belong in requirements-dev.txt"
    assert "tenacity" in pins  # customer_health.retries imports it


def test_development_requirements_add_the_test_tools_to_production():
    pins, includes = requirements(ROOT / "requirements-dev.txt")
    assert includes == ["requirements.txt"]
    assert set(pins) == DEV_TOOLS | SANDBOX_ONLY


def test_every_pin_is_the_version_the_lock_resolved():
    lines = [line.split(";", 1)[0].strip() for line in (ROOT / "constraints.txt").read_text().splitlines()]
    lock = {canonical(k): v.strip() for k, v in (line.split("==", 1) for line in lines if "==" in line)}
    for name in ("requirements.txt", "requirements-dev.txt"):
        pins, _ = requirements(ROOT / name)
        assert {k: v for k, v in pins.items() if lock.get(k) != v} == {}, f"{name} disagrees with constraints.txt"


def test_the_dockerfile_installs_production_only_and_the_venv_the_development_set():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "-r /opt/customer-health/requirements.txt" in dockerfile and "requirements-dev" not in dockerfile.split("FROM", 1)[1]
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements-dev.txt -c constraints.txt" in makefile
    assert "pip compile requirements.txt requirements-dev.txt" in makefile
    assert not (ROOT / "requirements.in").exists()


def test_the_product_never_imports_the_sandbox():
    """The production image ships include/ alone: nothing in it may need health_sandbox."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "include").rglob("*.py")
        if re.search(r"^\s*(from|import)\s+health_sandbox\b", path.read_text(), re.MULTILINE)
    ]
    assert offenders == []
