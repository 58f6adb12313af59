"""``make migration-regen`` never deletes the initial migration that later ones revise.

It used to ``rm`` 0001_initial_schema.py and autogenerate it again from schema.py, which
rewrites the history every upgraded warehouse went through once 0002 and later exist. The
target is run for real, in a copy of the Makefile and the migrations, so nothing here can touch
the repository's own files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = Path("include/customer_health/warehouse/migrations/versions")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_migration_regen_refuses_while_later_migrations_exist_and_deletes_nothing(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copytree(ROOT / VERSIONS, tmp_path / VERSIONS, ignore=shutil.ignore_patterns("__pycache__"))
    before = {p.name: p.read_bytes() for p in (tmp_path / VERSIONS).iterdir()}
    later = sorted(n for n in before if n[:4].isdigit() and not n.startswith("0001_"))
    assert later, "the repository has migrations after 0001"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}

    done = subprocess.run(
        ["make", "--no-print-directory", "migration-regen", "PYTHON=false"],  # any venv build would fail
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )

    assert done.returncode != 0
    assert "refuses" in done.stderr and all(name in done.stderr for name in later), done.stderr
    assert "Nothing was deleted" in done.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / VERSIONS).iterdir()} == before
    assert not (tmp_path / ".local").exists()  # refused before building anything
