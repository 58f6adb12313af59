"""Refuse to start the production topology with a default, empty or weak secret.

``docker-compose.yaml``'s ``airflow-init`` service runs this before it migrates anything; every
other Airflow service waits for ``airflow-init`` to complete successfully, so a refusal here
keeps the whole topology down. The tests run it too (``tests/unit/test_check_secrets.py``).

Checked, from the environment (``deploy/.env``):

* ``AIRFLOW__API_AUTH__JWT_SECRET`` signs every login token of the Airflow UI, the REST API and
  the dashboard. Whoever knows it can mint an admin token, so a placeholder (``change-me``) or
  anything shorter than 32 characters is refused.
* ``AIRFLOW__CORE__FERNET_KEY`` encrypts connection passwords and variables in the metadata
  database. Empty means stored in clear; it must be a real Fernet key (32 bytes, url-safe
  base64), or Airflow cannot decrypt what it wrote.
* ``_AIRFLOW_WWW_USER_PASSWORD``, the first admin's password (the official image's entrypoint
  creates that user, ``_AIRFLOW_WWW_USER_USERNAME``): no well-known value, at least 12 characters.

Each refusal names the variable, what is wrong with it and the exact command that generates a
good value. Nothing is printed of a value itself. Exit status 0: all good; 1: refused.
Standard library only: it runs in the Airflow image before anything is installed or migrated.
"""

from __future__ import annotations

import base64
import binascii
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

FERNET_COMMAND = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
HEX_COMMAND = "openssl rand -hex 32"
PASSWORD_COMMAND = "openssl rand -base64 18"

# Values copied from examples and tutorials (ours included, before this check existed).
PLACEHOLDERS = frozenset(
    {"change-me", "changeme", "change_me", "secret", "password", "airflow", "admin", "test", "jwt-secret",
     "your-secret", "your_secret", "xxx", "default", "none", "null"}
)  # fmt: skip
MIN_JWT_SECRET = 32
MIN_PASSWORD = 12


def _placeholder(value: str) -> bool:
    return value.strip().lower() in PLACEHOLDERS or value.strip().lower().startswith(("change-me", "changeme"))


def jwt_secret_problem(value: str) -> str | None:
    """What is wrong with a JWT signing secret, or None."""
    if not value.strip():
        return "is empty"
    if _placeholder(value):
        return "is a placeholder from an example: anyone who reads the example can sign an admin token"
    if len(value) < MIN_JWT_SECRET:
        return f"is {len(value)} characters long; at least {MIN_JWT_SECRET} are needed"
    return None


def fernet_key_problem(value: str) -> str | None:
    """What is wrong with a Fernet key, or None (a Fernet key is 32 bytes in url-safe base64)."""
    if not value.strip():
        return "is empty: connection passwords and variables would be stored unencrypted"
    if _placeholder(value):
        return "is a placeholder from an example, not a Fernet key"
    try:
        raw = base64.urlsafe_b64decode(value.strip().encode())
    except (binascii.Error, ValueError):
        return "is not url-safe base64, so it is not a Fernet key"
    if len(raw) != 32:
        return f"decodes to {len(raw)} bytes; a Fernet key is exactly 32 (too short to be one)"
    return None


def password_problem(value: str) -> str | None:
    """What is wrong with the first admin's password, or None."""
    if not value.strip():
        return "is empty"
    if _placeholder(value):
        return "is a well-known default"
    if len(value) < MIN_PASSWORD:
        return f"is {len(value)} characters long; at least {MIN_PASSWORD} are needed"
    return None


@dataclass(frozen=True)
class Secret:
    """One variable the topology refuses to start without."""

    name: str
    problem: Callable[[str], str | None]
    generate: str
    what: str


SECRETS = (
    Secret("AIRFLOW__API_AUTH__JWT_SECRET", jwt_secret_problem, HEX_COMMAND, "signs every Airflow login token"),
    Secret("AIRFLOW__CORE__FERNET_KEY", fernet_key_problem, FERNET_COMMAND, "encrypts connections and variables"),
    Secret("_AIRFLOW_WWW_USER_PASSWORD", password_problem, PASSWORD_COMMAND, "the first admin's password"),
)


def problems(env: Mapping[str, str]) -> list[str]:
    """One message per refused secret: the variable, what is wrong, and how to make a good one."""
    found = []
    for secret in SECRETS:
        value = env.get(secret.name)
        problem = "is not set" if value is None else secret.problem(value)
        if problem:
            found.append(
                f"{secret.name} ({secret.what}) {problem}.\n"
                f"    Generate one with:  {secret.generate}\n"
                f"    and set {secret.name}=<the output> in deploy/.env."
            )
    return found


def main(env: Mapping[str, str] | None = None) -> int:
    """Print the refusals to stderr and return 1, or say all is well and return 0."""
    found = problems(os.environ if env is None else env)
    if found:
        print("Refusing to start: the deployment's secrets are not safe.\n", file=sys.stderr)
        for message in found:
            print(f"* {message}\n", file=sys.stderr)
        print("Then run `docker compose --env-file deploy/.env up airflow-init` again.", file=sys.stderr)
        return 1
    print("Secrets checked: JWT secret, Fernet key and admin password are set and not defaults.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
