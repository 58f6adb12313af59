"""Adding a signal follows ``docs/CHANGING.md`` and touches only the places it names.

A copy of the package gets a throwaway signal the way the guide says - its definition in
``scoring/signals.py`` (here from a source no signal read before: Salesforce Opportunities), an
Alembic migration adding its ``signal_values`` column, and a model config that weights it -
and nothing else. In a fresh process on that copy, a warehouse (SQLite and PostgreSQL, created
by the current code, as an existing installation would be) is upgraded, the schema and the
migrations agree, the signal is computed for a date and for a range (equal), stored, read back
and scored with the new model: it moves the score, and its reading explains it.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml
from alembic.script import ScriptDirectory

from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.migrate import alembic_config

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "include" / "customer_health"

MEASURES = '''
# A throwaway signal from docs/CHANGING.md: expansions won in the last year.
from customer_health.warehouse.raw_schema import raw_sf_opportunity  # noqa: E402

_o = raw_sf_opportunity
_records, _key = _salesforce_child(_o, "map_opportunity")
OPPORTUNITIES = Source("opportunities", _records, _key, always=(Present(_o),))
EXPANSIONS_WON_365 = OPPORTUNITIES.count(
    "expansions_won_365", Window(_o.c.close_date, 365),
    Where(and_(_o.c.is_won == true(), _o.c.opportunity_type == "Expansion")),
)

'''
DEFINITION = '''    Signal("expansions_won", "financial", "higher_is_better", "opportunities", 365, "expansions won", "{value:.0f} expansion{s} won (last 12 months)",
           inputs=(EXPANSIONS_WON_365,), when_quiet=0.0, value=lambda x: x.expansions_won_365),
'''
SIGNALS_ANCHOR = "# --------------------------------------------------------------------------- the signals\n"
DEFINITIONS_END = ')  # fmt: skip\n"""Every signal of the product'

SCRIPT = '''
import json, sys
from datetime import date

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from customer_health.scoring.engine import score_accounts
from customer_health.scoring.model_config import load_model_config
from customer_health.scoring.signal_catalog import SIGNALS
from customer_health.scoring.signal_store import read_signal_frame, write_signal_frame
from customer_health.scoring.signals import compute_signals, compute_signals_range
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.migrate import current_revision, upgrade_to_head
from customer_health.warehouse.schema import metadata
from tests.unit.signal_fixtures import RawWorld, at, days

url, model_path = sys.argv[1], sys.argv[2]
D = date(2026, 6, 30)
engine = engine_for(url)
upgrade_to_head(engine)
with engine.connect() as conn:
    diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), metadata)

w = RawWorld()
grower, quiet = (w.account(date(2024, 1, 1), key=k) for k in ("001GROWER000000AAA", "001QUIET0000000AAA"))
for back in (20, 200):
    w.opportunity(grower, D - days(back), kind="Expansion")
w.opportunity(grower, D - days(500), kind="Expansion")  # more than a year ago
w.opportunity(grower, D - days(30), kind="Expansion", won=False)
w.opportunity(quiet, D - days(40), kind="Renewal")
for key in (grower, quiet):
    w.nps(key, 7, at(D - days(10)))
w.save(engine)

frame = compute_signals(engine, D)
ranged = compute_signals_range(engine, D, D)
write_signal_frame(engine, frame)
stored = read_signal_frame(engine, D)
config = load_model_config(model_path)
scored = score_accounts(stored, config).set_index("account_key")
print(json.dumps({
    "revision": current_revision(engine),
    "schema_diff": [str(d) for d in diff],
    "values": dict(zip(frame["account_key"], frame["expansions_won"].tolist())),
    "range_equal": ranged["expansions_won"].tolist() == frame["expansions_won"].tolist(),
    "stored": dict(zip(stored["account_key"], stored["expansions_won"].tolist())),
    "scores": scored["score"].astype(int).to_dict(),
    "drivers": scored["drivers"].to_dict(),
    "explanations": scored["explanation"].to_dict(),
    "reading": SIGNALS["expansions_won"].describe(2.0),
    "model_signals": list(config.signal_keys),
}))
'''


def _migration(head: str) -> str:
    return textwrap.dedent(f'''\
        """signal_values: a column for the expansions_won signal

        Revision ID: 9001
        Revises: {head}
        """

        import sqlalchemy as sa
        from alembic import op

        revision = "9001"
        down_revision = "{head}"
        branch_labels = None
        depends_on = None


        def upgrade() -> None:
            op.add_column("signal_values", sa.Column("expansions_won", sa.Float(), nullable=True))


        def downgrade() -> None:
            with op.batch_alter_table("signal_values", schema=None) as batch_op:
                batch_op.drop_column("expansions_won")
        ''')


def _model_config() -> str:
    model = yaml.safe_load((PACKAGE / "config" / "model_v1.yaml").read_text())
    model["version"] = "v1-expansions"
    # Dimension and direction come from the definition: the config only normalizes and weights.
    model["signals"]["expansions_won"] = {"normalization": {"method": "fixed_range", "worst": 0.0, "best": 2.0}}
    for segment in model["models"].values():
        financial = segment["signal_weights"]["financial"]
        financial["payment_timeliness"] = round(financial["payment_timeliness"] - 0.2, 2)
        financial["expansions_won"] = 0.2
    return yaml.safe_dump(model, sort_keys=False)


def _changed_files(original: Path, copy: Path) -> list[str]:
    changed = []

    def walk(cmp: filecmp.dircmp, prefix: str) -> None:
        changed.extend(prefix + name for name in cmp.right_only + cmp.left_only + cmp.diff_files)
        for name, sub in cmp.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(filecmp.dircmp(original, copy, ignore=["__pycache__"]), "")
    return sorted(changed)


def test_a_throwaway_signal_added_as_the_guide_says_is_computed_stored_and_scored(warehouse_url, tmp_path):
    copy = tmp_path / "include" / "customer_health"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    signals = copy / "scoring" / "signals.py"
    text = signals.read_text()
    assert text.count(SIGNALS_ANCHOR) == 1 and text.count(DEFINITIONS_END) == 1, "docs/CHANGING.md's anchors moved"
    text = text.replace(SIGNALS_ANCHOR, MEASURES + SIGNALS_ANCHOR).replace(DEFINITIONS_END, DEFINITION + DEFINITIONS_END)
    signals.write_text(text)
    head = ScriptDirectory.from_config(alembic_config(engine_for(warehouse_url))).get_current_head()
    (copy / "warehouse" / "migrations" / "versions" / "9001_signal_expansions_won.py").write_text(_migration(head))
    model = copy / "config" / "model_v1_expansions.yaml"
    model.write_text(_model_config())

    assert _changed_files(PACKAGE, copy) == [
        "config/model_v1_expansions.yaml", "scoring/signals.py", "warehouse/migrations/versions/9001_signal_expansions_won.py",
    ]  # fmt: skip
    engine_for(warehouse_url).dispose()
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, warehouse_url, str(model)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(copy.parent), str(ROOT)])},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])

    grower, quiet = "001GROWER000000AAA", "001QUIET0000000AAA"
    assert out["revision"] == "9001" and out["schema_diff"] == []
    assert out["values"] == {grower: 2.0, quiet: 0.0} == out["stored"]
    assert out["range_equal"]
    assert "expansions_won" in out["model_signals"]
    assert out["scores"][grower] > out["scores"][quiet]
    assert out["reading"] == "2 expansions won (last 12 months)"
    assert '"expansions_won"' in out["drivers"][quiet] and "expansion" in out["explanations"][quiet]
