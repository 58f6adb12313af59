"""The production topology refuses to start with default, empty or weak secrets.

``deploy/check_secrets.py`` is what the compose file's ``airflow-init`` service runs first; here it
runs the same way, as a process with an environment, and the compose file itself is read as YAML:
no default for a secret, Compose's ``${VAR:?message}`` so that ``docker compose config`` stops
without them, the init service checking before anything else, and the FAB auth manager.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "check_secrets.py"
FERNET_COMMAND = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
GOOD = {
    "AIRFLOW__API_AUTH__JWT_SECRET": "9f2c" * 16,
    "AIRFLOW__CORE__FERNET_KEY": "3q9wYtCEv4oWvWm6t0U1rX2kZt0b8fMQm1yD0nJ5c1A=",
    "_AIRFLOW_WWW_USER_PASSWORD": "c0rrect-h0rse-battery",
}


def run_check(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in GOOD}
    return subprocess.run([sys.executable, str(SCRIPT)], env={**base, **env}, capture_output=True, text=True, timeout=60)


def test_good_secrets_pass():
    result = run_check(**GOOD)
    assert result.returncode == 0, result.stderr
    assert "Secrets checked" in result.stdout


@pytest.mark.parametrize(
    ("name", "value", "problem", "command"),
    [
        ("AIRFLOW__API_AUTH__JWT_SECRET", "change-me", "is a placeholder from an example", "openssl rand -hex 32"),
        ("AIRFLOW__API_AUTH__JWT_SECRET", "", "is empty", "openssl rand -hex 32"),
        ("AIRFLOW__API_AUTH__JWT_SECRET", "s3cr3t-but-short", "is 16 characters long; at least 32", "openssl rand -hex 32"),
        ("AIRFLOW__CORE__FERNET_KEY", "", "is empty: connection passwords and variables would be stored unencrypted", FERNET_COMMAND),
        ("AIRFLOW__CORE__FERNET_KEY", "change-me", "is a placeholder from an example", FERNET_COMMAND),
        ("AIRFLOW__CORE__FERNET_KEY", "c2hvcnQ=", "decodes to 5 bytes; a Fernet key is exactly 32", FERNET_COMMAND),
        ("_AIRFLOW_WWW_USER_PASSWORD", "airflow", "is a well-known default", "openssl rand -base64 18"),
        ("_AIRFLOW_WWW_USER_PASSWORD", "hunter2", "is 7 characters long; at least 12", "openssl rand -base64 18"),
    ],
)
def test_a_bad_secret_is_refused_naming_it_and_the_command_that_makes_a_good_one(name, value, problem, command):
    result = run_check(**{**GOOD, name: value})
    assert result.returncode == 1
    assert f"* {name} (" in result.stderr and problem in result.stderr, result.stderr
    assert f"Generate one with:  {command}\n" in result.stderr
    assert value not in result.stderr.replace(name, "") or value in ("", "change-me", "airflow")  # never echoes a secret
    assert result.stderr.count("* ") == 1  # only the bad one is named


def test_unset_secrets_are_all_refused_at_once():
    result = run_check()
    assert result.returncode == 1
    for name in GOOD:
        assert f"* {name} (" in result.stderr and "is not set" in result.stderr


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_the_compose_file_has_no_default_secret_and_stops_without_one():
    text = (ROOT / "docker-compose.yaml").read_text()
    compose = _compose()
    env = compose["x-airflow-common"]["environment"]
    for name, command in (("AIRFLOW__API_AUTH__JWT_SECRET", "openssl rand -hex 32"), ("AIRFLOW__CORE__FERNET_KEY", FERNET_COMMAND)):
        # ${VAR:?message}: Compose refuses an unset or empty value and prints the message.
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]*{re.escape(command)}[^}}]*\}}", env[name]), env[name]
    init_env = compose["services"]["airflow-init"]["environment"]
    assert init_env["_AIRFLOW_WWW_USER_PASSWORD"].startswith("${_AIRFLOW_WWW_USER_PASSWORD:?")
    assert "change-me" not in text and ":-change" not in text
    example = (ROOT / "deploy" / ".env.example").read_text()
    assert re.search(r"^AIRFLOW__API_AUTH__JWT_SECRET=$", example, re.M) and "change-me" not in example.split("#")[-1]


def test_the_init_service_checks_the_secrets_before_anything_and_every_service_waits_for_it():
    compose = _compose()
    init = compose["services"]["airflow-init"]
    script = init["command"][-1].splitlines()
    assert script[0] == "set -euo pipefail"
    assert script[1] == "python /opt/airflow/deploy/check_secrets.py"  # before migrating or creating anything
    assert "./deploy:/opt/airflow/deploy:ro" in init["volumes"]
    assert any("register_fab_roles()" in line for line in script)
    for name, service in compose["services"].items():
        if name.startswith("airflow-") and name != "airflow-init":
            assert service["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}, name


def test_the_compose_file_logs_in_through_the_fab_auth_manager():
    compose = _compose()
    manager = compose["x-airflow-common"]["environment"]["AIRFLOW__CORE__AUTH_MANAGER"]
    assert manager == "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
    module, _, cls = manager.rpartition(".")
    assert getattr(__import__(module, fromlist=[cls]), cls).__name__ == "FabAuthManager"  # the pinned provider has it
    requirements = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^apache-airflow-providers-fab==\d", requirements, re.M)
