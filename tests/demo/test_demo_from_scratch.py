"""``make demo`` from scratch, as CI sees a fresh clone: the demo's own code path end to end.

``python -m health_sandbox.demo`` (what ``make demo`` runs) on a brand-new warehouse and Airflow
home, for a small company (200 accounts, 240 days, 180 days of score history: the least that
still runs the model audit), through the same ``airflow db migrate`` / ``connections import`` /
``pools set`` / ``dags test`` calls. It must print every section a person reads; a second run
on the same homes must reuse everything and print them again.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.demo.harness import REPR, ROOT, describe, fresh_env, kill_all, stop_sandbox, tail, wait_until_gone

pytestmark = pytest.mark.slow

ACCOUNTS, DAYS, HISTORY_DAYS = 200, 240, 180
RUN_TIMEOUT = 1200  # seconds; a first run takes about 2.5 minutes on 2 cores
RAW_TABLES_WITH_ROWS = ("raw_sf_account", "raw_sf_task", "raw_zd_ticket", "raw_stripe_invoice", "raw_product_usage_daily")


def run_demo(env: dict[str, str], log: Path) -> tuple[str, float]:
    """One ``python -m health_sandbox.demo`` run; its output and wall time."""
    args = ["--accounts", str(ACCOUNTS), "--days", str(DAYS), "--history-days", str(HISTORY_DAYS)]
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "health_sandbox.demo", *args],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"the demo did not finish within {RUN_TIMEOUT} s:\n{tail(log)}")
    text = log.read_text(errors="replace")
    assert code == 0, f"the demo failed (exit {code}):\n{tail(log, 80)}"
    return text, time.monotonic() - t0


def section(text: str, start: str, end: str | None = None) -> str:
    """The printed lines from the one starting with ``start`` up to the first blank line (or ``end``)."""
    i = text.find(start)
    assert i >= 0, f"the demo did not print {start!r}:\n{text[-4000:]}"
    rest = text[i:]
    stop = rest.find(end) if end else rest.find("\n\n")
    return rest if stop < 0 else rest[:stop]


def check_summary(text: str, today: str) -> None:
    """Every section of the demo's closing report, worded for a person."""
    extracted = section(text, "Extracted (warehouse raw tables):")
    counts = {m[1]: int(m[2].replace(",", "")) for m in re.finditer(r"^\s+(raw_\w+)\s+([\d,]+)$", extracted, re.M)}
    assert len(counts) == 16, extracted
    assert all(counts[t] > 0 for t in RAW_TABLES_WITH_ROWS), extracted
    assert "Quarantined malformed records:" in extracted and re.search(r"Crosswalk: [\d,]+ accounts", extracted)

    health = section(text, f"Health on {today} (model ")
    scored = int(re.search(r"([\d,]+) customers scored", health)[1].replace(",", ""))
    assert 0.8 * ACCOUNTS <= scored <= 1.1 * ACCOUNTS, health
    for zone in ("Healthy", "Neutral", "At Risk", "Critical"):
        assert re.search(rf"^  {zone}\s+[\d,]+\s+[\d.]+ %\s+ARR", health, re.M), f"no {zone} line:\n{health}"
    assert "coverage: mean" in health

    # Top 10 with drivers: each account, its explanation, and its drivers as scoring.drivers words them.
    top = health[health.index("Top 10 accounts by priority") :]
    entries = re.split(r"^ {1,2}\d{1,2}\. ", top, flags=re.M)[1:]
    assert len(entries) == 10, top
    driver = r"[a-zA-Z][\w ,%/()-]* \([+-]?[\d.]+ points?; \d+/100 vs similar accounts\)"
    for entry in entries:
        head, *lines = [line.strip() for line in entry.splitlines()]
        assert re.search(r"\[\w+\] \d+ (Healthy|Neutral|At Risk|Critical), priority [\d.]+$", head), entry
        drivers = [line for line in lines if line.startswith(("pulling down:", "holding up:"))]
        assert lines and lines[0] not in drivers, f"an account without its explanation:\n{entry}"
        assert drivers, f"an account without its drivers:\n{entry}"
        for line in drivers:
            assert re.fullmatch(rf"(pulling down|holding up): {driver}(; {driver})*", line), line
    assert "pulling down: " in top, top

    actions = section(text, f"Actions on {today} (table action_outbox")
    assert re.search(r"^\s+\w+\s+sent\s+\d+\s+-> ", actions, re.M), actions

    audit = section(text, "==> model audit against real churn", "Next: ")
    for expected in ("Outcomes known by", "Model v1: outcomes", "ROC AUC", "churn by zone:", "Recalibration: v1 -> proposed"):
        assert expected in audit, f"the audit did not print {expected!r}:\n{audit}"
    report = Path(re.search(r"report: (\S+\.html)", audit)[1])
    assert report.exists(), audit
    assert "Next: `make airflow`" in text

    reprs = [line for line in text.splitlines() if REPR.search(line)]
    assert not reprs, "Python reprs in the printed output:\n" + "\n".join(reprs)


def check_first_day_respects_the_caps(warehouse: Path, today: str) -> None:
    """The demo's first dispatching day (a brand-new warehouse: every account is news at once)
    releases no more of a capped type than its ``daily_cap``, sends nothing of a shadow type, and
    drops nothing: what the caps hold back waits, pending and deferred."""
    import sqlite3

    from customer_health.actions.config import load_action_rules

    rules = load_action_rules()
    db = sqlite3.connect(warehouse)
    try:
        released = dict(db.execute(
            "SELECT action_type, COUNT(*) FROM action_outbox WHERE release_date = ? GROUP BY action_type", (today,)))
        sent = dict(db.execute(
            "SELECT action_type, COUNT(*) FROM action_outbox WHERE status IN ('sent', 'sending') GROUP BY action_type"))
        deferred = db.execute("SELECT COUNT(*) FROM action_outbox WHERE status = 'pending' AND deferred_since IS NOT NULL"
                              ).fetchone()[0]
        decided = db.execute("SELECT COUNT(*) FROM action_outbox WHERE trigger_date = ?", (today,)).fetchone()[0]
    finally:
        db.close()
    assert decided > 0, "the demo's first day decided no action"
    for action_type, n in released.items():
        cap = rules.actions[action_type].daily_cap
        assert cap is None or n <= cap, f"{action_type}: {n} released on the first day, cap {cap}"
    shadow_sent = {t: n for t, n in sent.items() if rules.actions[t].shadow}
    assert not shadow_sent, f"shadow-mode action types were delivered: {shadow_sent}"
    print(f"first day: {decided} decided, released per type {released}, {deferred} deferred by the caps")


def test_demo_from_scratch_then_again_reusing_everything(tmp_path):
    env = fresh_env(tmp_path)
    home = Path(env["CUSTOMER_HEALTH_HOME"])
    today = datetime.now(UTC).date().isoformat()
    try:
        first, first_seconds = run_demo(env, tmp_path / "first.log")
        print(f"first demo run: {first_seconds:.0f} s")
        assert re.search(r"Synthetic company in \S+ \(generated in", first), first[:2000]
        assert f"customer_health_rebuild: {HISTORY_DAYS} days of score history" in first
        check_summary(first, today)
        endpoints = re.search(r"done in [\d.]+ s — (salesforce https://127\.0\.0\.1:\d+)", first)[1]
        check_first_day_respects_the_caps(home / "warehouse.db", today)

        second, second_seconds = run_demo(env, tmp_path / "second.log")
        print(f"second demo run: {second_seconds:.0f} s")
        assert re.search(r"Synthetic company in \S+ \(reused existing in", second), second[:2000]
        assert endpoints in second, "the second run did not reuse the running sandbox"
        assert re.search(r"==> score history up to \S+: already built", second), second[:3000]
        assert "customer_health_rebuild:" not in second and "extract everything" not in second
        check_summary(second, today)
        assert (home / "warehouse.db").exists() and (home / "sandbox" / "company.db").exists()
    finally:
        stopped = stop_sandbox(env)
        left = describe(wait_until_gone(env, 30))
        kill_all(env)
    assert "sandbox stopped" in stopped, stopped
    assert not left, f"processes of the demo still running after the sandbox was stopped:\n{left}"
