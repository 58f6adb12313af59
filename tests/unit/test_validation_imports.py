"""The audit and the recalibration share ``validation.snapshots`` and do not import each other.

recalibrate used to import audit at module level while audit imported recalibrate (lazily, for
``--recalibrate``): a cycle that breaks as soon as either import moves. Each order is checked in
a fresh interpreter, since this one has imported both long ago.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AUDIT = "customer_health.validation.audit"
RECALIBRATE = "customer_health.validation.recalibrate"


def fresh_import(*modules: str) -> set[str]:
    """Import ``modules`` in order in a new interpreter; the customer_health modules then loaded."""
    code = (
        "import importlib, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith('customer_health')))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("order", [(RECALIBRATE, AUDIT), (AUDIT, RECALIBRATE)])
def test_audit_and_recalibrate_import_in_either_order(order):
    loaded = fresh_import(*order)
    assert {AUDIT, RECALIBRATE, "customer_health.validation.snapshots"} <= loaded


@pytest.mark.parametrize(("module", "other"), [(RECALIBRATE, AUDIT), (AUDIT, RECALIBRATE)])
def test_neither_imports_the_other_at_module_level(module, other):
    loaded = fresh_import(module)
    assert module in loaded and other not in loaded
