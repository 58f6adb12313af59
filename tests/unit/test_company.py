"""Specifications of the synthetic company: deterministic, causally coherent, realistically messy.

Most tests read the session's small company (``company_dir`` in ``tests/conftest.py``); the
determinism and reuse tests generate tiny companies of their own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Boolean, Date, DateTime, select

from health_sandbox import product_db
from health_sandbox.company import CompanySpec, generate_company, main
from health_sandbox.ids import (
    BASE62,
    is_valid_salesforce_id,
    salesforce_id,
    stripe_id,
    to_15,
    to_18,
)
from health_sandbox.store import store_engine, store_metadata, stripe_customer, zd_ticket
from tests.conftest import TEST_DAYS, TEST_END_DATE

TINY = {"accounts": 30, "days": 120, "end_date": date(2026, 3, 31)}
# Stripe fields that name a scheduled moment, in the future by nature for live subscriptions.
SCHEDULED_FIELDS = {"current_period_end", "period_end", "due_date"}
# Tables the sandbox writes at run time, not the generator.
RUNTIME_TABLES = {"sandbox_writes", "sandbox_faults", "sandbox_meta"}


@pytest.fixture()
def store(company_dir: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{company_dir / 'company.db'}?mode=ro", uri=True)
    yield conn
    conn.close()


@pytest.fixture()
def product(company_dir: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{company_dir / 'product.db'}?mode=ro", uri=True)
    yield conn
    conn.close()


def _dump(folder: Path) -> dict[str, list[tuple]]:
    """Every row of every table of both files, in storage order (generated_at left out)."""
    out = {}
    for name in ("company.db", "product.db"):
        conn = sqlite3.connect(folder / name)
        tables = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        for table in tables:
            rows = conn.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608 - names from sqlite_master
            if table == "sandbox_meta":
                rows = [r for r in rows if r[0] != "generated_at"]
            out[f"{name}:{table}"] = rows
        conn.close()
    return out


# ----------------------------------------------------------------------------- identifiers
def test_salesforce_checksum_matches_the_documented_example() -> None:
    assert to_18("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert to_15("001A0000006Vm9rIAC") == "001A0000006Vm9r"
    assert is_valid_salesforce_id("001A0000006Vm9rIAC")
    assert not is_valid_salesforce_id("001A0000006Vm9rAAA")


@given(st.text(alphabet=BASE62, min_size=15, max_size=15), st.text(alphabet=BASE62, min_size=15, max_size=15))
def test_18_character_ids_differ_case_insensitively_whenever_the_15_character_ids_differ(
    a: str, b: str
) -> None:
    assert to_15(to_18(a)) == a
    assert (to_18(a).lower() == to_18(b).lower()) == (a == b)


def test_minted_ids_are_valid_and_distinct() -> None:
    ids = [salesforce_id("Task", n) for n in range(2000)]
    assert all(is_valid_salesforce_id(x) and x.startswith("00T") for x in ids)
    assert len({x.lower() for x in ids}) == len(ids)
    assert stripe_id("cus", 1) != stripe_id("cus", 2)
    assert stripe_id("cus", 1).startswith("cus_") and len(stripe_id("cus", 1)) == 18


def test_generated_salesforce_ids_are_valid_18_character_ids(store: sqlite3.Connection) -> None:
    for table in ("sf_user", "sf_account", "sf_contact", "sf_task", "sf_opportunity", "sf_nps_response"):
        ids = [r[0] for r in store.execute(f"SELECT Id FROM {table}")]  # noqa: S608
        assert ids, table
        assert all(len(i) == 18 and is_valid_salesforce_id(i) for i in ids), table


# ----------------------------------------------------------------------------- generation
def test_same_spec_generates_identical_company(tmp_path: Path) -> None:
    spec = CompanySpec(seed=11, **TINY)
    generate_company(tmp_path / "a", spec)
    generate_company(tmp_path / "b", spec)
    first, second = _dump(tmp_path / "a"), _dump(tmp_path / "b")
    assert first.keys() == second.keys()
    for table in first:
        assert first[table] == second[table], table


def test_rerun_with_the_same_spec_reuses_the_finished_company(tmp_path: Path) -> None:
    spec = CompanySpec(seed=5, **TINY)
    made = generate_company(tmp_path, spec)
    stamp = (tmp_path / "company.db").stat().st_mtime_ns
    again = generate_company(tmp_path, spec)
    assert not made.reused and again.reused
    assert again.counts == made.counts and again.churned_accounts == made.churned_accounts
    assert (tmp_path / "company.db").stat().st_mtime_ns == stamp
    other = generate_company(tmp_path, CompanySpec(seed=6, **TINY))
    assert not other.reused


def test_files_are_left_checkpointed_and_complete(company_dir: Path) -> None:
    for name in ("company.db", "product.db"):
        wal = company_dir / f"{name}-wal"
        assert not wal.exists() or wal.stat().st_size == 0
    assert not list(company_dir.glob("*.generating*"))
    conn = sqlite3.connect(company_dir / "company.db")
    meta = dict(conn.execute("SELECT key, value FROM sandbox_meta"))
    conn.close()
    assert {"seed", "accounts", "days", "end_date", "generated_at"} <= meta.keys()
    assert meta["end_date"] == TEST_END_DATE.isoformat()


def test_product_database_has_the_documented_schema(company_dir: Path) -> None:
    engine = product_db.product_engine(company_dir / "product.db")
    with engine.connect() as conn:
        features = conn.execute(product_db.features.select()).fetchall()
        first_event = conn.execute(product_db.events.select().limit(1)).one()
    engine.dispose()
    assert len(features) == 10 and sum(f.is_core for f in features) == 6
    assert isinstance(first_event.occurred_at, datetime)
    conn = sqlite3.connect(company_dir / "product.db")
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    conn.close()
    assert {"ix_events_occurred_at", "ix_events_account_id_occurred_at"} <= indexes


def test_every_table_reads_back_through_sqlalchemy_with_its_declared_types(company_dir: Path) -> None:
    engine = store_engine(company_dir / "company.db")
    with engine.connect() as conn:
        for table in store_metadata.sorted_tables:
            rows = conn.execute(select(table).limit(50)).fetchall()
            if table.name in RUNTIME_TABLES - {"sandbox_meta"} or table.name.startswith("hs_"):
                continue  # hs_*: HubSpot's tables, for companies whose marketing runs on HubSpot (self-serve)
            assert rows, table.name
            for column in table.columns:
                python_type = {DateTime: datetime, Date: date, Boolean: bool}.get(type(column.type))
                values = [getattr(r, column.name) for r in rows if getattr(r, column.name) is not None]
                if python_type is not None:
                    assert all(isinstance(v, python_type) for v in values), (table.name, column.name)
        tags = conn.execute(select(zd_ticket.c.tags).limit(1)).scalar_one()
        metadata = conn.execute(select(stripe_customer.c.metadata).limit(1)).scalar_one()
    engine.dispose()
    assert isinstance(tags, list) and isinstance(metadata, dict)


def test_cli_generates_and_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--folder",
        str(tmp_path),
        "--accounts",
        "25",
        "--days",
        "90",
        "--seed",
        "3",
        "--end-date",
        "2026-01-31",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "25 customer accounts" in out and "churned" in out
    assert (tmp_path / "company.db").exists() and (tmp_path / "product.db").exists()


# ----------------------------------------------------------------------------- time
def test_nothing_is_dated_after_end_date(store: sqlite3.Connection, product: sqlite3.Connection) -> None:
    last = datetime.combine(TEST_END_DATE, datetime.max.time()).replace(microsecond=0)
    last_unix = int((last - datetime(1970, 1, 1)).total_seconds())
    checked = 0
    for table in store_metadata.sorted_tables:
        if table.name in RUNTIME_TABLES:
            continue
        for column in table.columns:
            if column.name in SCHEDULED_FIELDS:
                continue
            (latest,) = store.execute(f'SELECT MAX("{column.name}") FROM {table.name}').fetchone()  # noqa: S608
            if latest is None:
                continue
            if isinstance(column.type, DateTime):
                assert latest <= last.isoformat(sep=" ") + ".999999", (table.name, column.name, latest)
                checked += 1
            elif isinstance(column.type, Date):
                assert latest <= TEST_END_DATE.isoformat(), (table.name, column.name, latest)
                checked += 1
            elif table.name.startswith("stripe_") and column.name in (
                "created",
                "canceled_at",
                "paid_at",
                "period_start",
                "current_period_start",
            ):
                assert latest <= last_unix, (table.name, column.name, latest)
                checked += 1
    for table, column in (
        ("accounts", "created_at"),
        ("users", "created_at"),
        ("users", "deactivated_at"),
        ("events", "occurred_at"),
    ):
        (latest,) = product.execute(f"SELECT MAX({column}) FROM {table}").fetchone()  # noqa: S608
        assert latest <= last.isoformat(sep=" ") + ".999999", (table, column, latest)
        checked += 1
    assert checked > 30


# ----------------------------------------------------------------------------- outcomes
def test_every_churned_account_is_canceled_lost_and_silent_in_the_product(
    store: sqlite3.Connection, product: sqlite3.Connection
) -> None:
    churned = store.execute(
        "SELECT t.account_id, t.churn_date, a.Product_Account_Id__c, a.Type FROM truth_account t "
        "JOIN sf_account a ON a.Id = t.account_id WHERE t.churn_date IS NOT NULL"
    ).fetchall()
    assert len(churned) >= 5
    subs = dict(
        store.execute(
            "SELECT json_extract(c.metadata, '$.salesforce_account_id'), s.status || '|' || s.canceled_at "
            "FROM stripe_subscription s JOIN stripe_customer c ON c.id = s.customer "
            "WHERE json_extract(c.metadata, '$.salesforce_account_id') IS NOT NULL"
        ).fetchall()
    )
    for account_id, churn_date, product_account, sf_type in churned:
        assert sf_type == "Former Customer"
        if account_id in subs:
            status, canceled_at = subs[account_id].split("|")
            assert status == "canceled"
            assert datetime.fromtimestamp(int(canceled_at), UTC).date().isoformat() == churn_date
        lost = store.execute(
            "SELECT COUNT(*) FROM sf_opportunity WHERE AccountId = ? AND Type = 'Renewal' "
            "AND StageName = 'Closed Lost' AND CloseDate = ?",
            (account_id, churn_date),
        ).fetchone()[0]
        assert lost == 1, account_id
        if product_account:
            (after,) = product.execute(
                "SELECT COUNT(*) FROM events WHERE account_id = ? AND occurred_at >= ?",
                (product_account, churn_date),
            ).fetchone()
            assert after == 0, account_id


def test_retained_accounts_renew_and_keep_an_active_subscription(store: sqlite3.Connection) -> None:
    rows = store.execute(
        "SELECT s.status FROM truth_account t JOIN stripe_customer c "
        "ON json_extract(c.metadata, '$.salesforce_account_id') = t.account_id "
        "JOIN stripe_subscription s ON s.customer = c.id WHERE t.churn_date IS NULL"
    ).fetchall()
    assert rows and all(status in ("active", "past_due") for (status,) in rows)
    (lost,) = store.execute(
        "SELECT COUNT(*) FROM sf_opportunity o JOIN truth_account t ON t.account_id = o.AccountId "
        "WHERE t.churn_date IS NULL AND o.StageName = 'Closed Lost'"
    ).fetchone()
    assert lost == 0


def test_churners_engagement_declines_before_churn_unlike_retained_accounts(
    store: sqlite3.Connection, product: sqlite3.Connection
) -> None:
    """A causal check on the data (not a model): usage falls in the months before churn."""
    window_start = TEST_END_DATE - timedelta(days=TEST_DAYS - 1)
    accounts = store.execute(
        "SELECT t.churn_date, a.Product_Account_Id__c, a.Customer_Since__c FROM truth_account t "
        "JOIN sf_account a ON a.Id = t.account_id WHERE a.Product_Account_Id__c IS NOT NULL"
    ).fetchall()

    def usage_ratio(product_account: str, until: date) -> float | None:
        def events(start: date, end: date) -> int:
            return product.execute(
                "SELECT COUNT(*) FROM events WHERE account_id = ? AND occurred_at >= ? AND occurred_at < ?",
                (product_account, start.isoformat(), end.isoformat()),
            ).fetchone()[0]

        before = events(until - timedelta(days=150), until - timedelta(days=90))
        recent = events(until - timedelta(days=45), until)
        return recent / before if before else None

    churner, retained = [], []
    for churn_date, product_account, since in accounts:
        earliest = max(window_start, date.fromisoformat(since))
        until = date.fromisoformat(churn_date) if churn_date else TEST_END_DATE + timedelta(days=1)
        if (until - earliest).days < 210:
            continue  # too little history to compare (or still onboarding)
        ratio = usage_ratio(product_account, until)
        if ratio is not None:
            (churner if churn_date else retained).append(ratio)
    assert len(churner) >= 4 and len(retained) >= 30
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    assert median(churner) < 0.7 * median(retained)


def test_unhappy_accounts_complain_more_answer_less_and_score_lower(store: sqlite3.Connection) -> None:
    def by_trajectory(sql: str) -> dict[str, float]:
        return dict(store.execute(sql).fetchall())

    complaint_share = by_trajectory(
        "SELECT t.trajectory, AVG(k.tags LIKE '%complaint%') FROM zd_ticket k "
        "JOIN zd_organization o ON o.id = k.organization_id JOIN truth_account t ON t.account_id = o.external_id "
        "GROUP BY t.trajectory"
    )
    nps = by_trajectory(
        "SELECT t.trajectory, AVG(n.Score__c) FROM sf_nps_response n JOIN truth_account t "
        "ON t.account_id = n.Account__c GROUP BY t.trajectory"
    )
    responded = by_trajectory(
        "SELECT t.trajectory, AVG(k.Outreach_Responded__c) FROM sf_task k JOIN truth_account t "
        "ON t.account_id = k.AccountId WHERE k.Outreach_Responded__c IS NOT NULL GROUP BY t.trajectory"
    )
    assert complaint_share["churning"] > complaint_share["healthy"]
    assert nps["churning"] < nps["healthy"] - 1
    assert responded["churning"] < responded["healthy"]


def test_every_churn_names_its_cause_and_only_churn_does(store: sqlite3.Connection) -> None:
    causes = store.execute("SELECT churn_date IS NOT NULL, churn_cause FROM truth_account").fetchall()
    assert all((cause is not None) == bool(churned) for churned, cause in causes)
    assert {cause for _, cause in causes} <= {None, "health", "budget_cut", "acquisition"}
    assert "health" in {cause for _, cause in causes}


def test_ground_truth_covers_every_customer_and_names_real_outcomes(store: sqlite3.Connection) -> None:
    truth = store.execute("SELECT trajectory, churn_date, expansion_date FROM truth_account").fetchall()
    (customers,) = store.execute(
        "SELECT COUNT(*) FROM sf_account WHERE Type IN ('Customer', 'Former Customer')"
    ).fetchone()
    assert len(truth) == customers
    assert {t[0] for t in truth} >= {"healthy", "stable", "churning"}
    assert any(t[2] for t in truth), "some accounts expand"
    (expansions,) = store.execute(
        "SELECT COUNT(DISTINCT AccountId) FROM sf_opportunity WHERE Type = 'Expansion' AND IsWon = 1"
    ).fetchone()
    assert expansions == sum(1 for t in truth if t[2])


# ----------------------------------------------------------------------------- shape and realism
def test_crosswalk_imperfections_are_present(store: sqlite3.Connection, product: sqlite3.Connection) -> None:
    sf_ids = {r[0] for r in store.execute("SELECT Id FROM sf_account")}
    customers = store.execute(
        "SELECT COUNT(*) FROM sf_account WHERE Type IN ('Customer', 'Former Customer')"
    ).fetchone()[0]
    externals = [r[0] for r in store.execute("SELECT external_id FROM zd_organization")]
    short = [e for e in externals if e and len(e) == 15]
    assert short and all(to_18(e) in sf_ids for e in short), "some Zendesk orgs carry the 15-char Id"
    assert None in externals, "some Zendesk orgs have no external_id"
    assert len(externals) > customers + 2, "duplicate Zendesk organisations exist besides junk ones"

    metadata = [r[0] for r in store.execute("SELECT json(metadata) FROM stripe_customer")]
    assert any("product_account_id" in m and "salesforce_account_id" not in m for m in metadata)
    assert "{}" in metadata, "junk Stripe customers map to nothing"
    (twice,) = store.execute(
        "SELECT COUNT(*) FROM (SELECT json_extract(metadata, '$.salesforce_account_id') sf FROM stripe_customer "
        "WHERE sf IS NOT NULL GROUP BY sf HAVING COUNT(*) > 1)"
    ).fetchone()
    assert twice >= 1, "some accounts have a duplicate Stripe customer"

    (no_product,) = store.execute(
        "SELECT COUNT(*) FROM sf_account WHERE Type IN ('Customer', 'Former Customer') "
        "AND Product_Account_Id__c IS NULL"
    ).fetchone()
    assert no_product >= 1
    (junk,) = store.execute(
        "SELECT COUNT(*) FROM sf_account WHERE Type NOT IN ('Customer', 'Former Customer')"
    ).fetchone()
    assert junk >= 1
    linked = {r[0] for r in store.execute("SELECT Product_Account_Id__c FROM sf_account")}
    orphans = [r[0] for r in product.execute("SELECT id FROM accounts") if r[0] not in linked]
    assert orphans, "the product holds accounts no CRM record points to"


def test_parent_accounts_have_children_with_their_own_subscriptions(store: sqlite3.Connection) -> None:
    children = store.execute(
        "SELECT c.Name, c.Seats__c, p.Plan__c FROM sf_account c JOIN sf_account p ON p.Id = c.ParentId"
    ).fetchall()
    assert len(children) >= 2
    assert {plan for _, _, plan in children} == {"enterprise"}
    for name, seats, _ in children:
        # By name: the one link that survives missing metadata (duplicate customers have no subscription).
        (subs,) = store.execute(
            "SELECT COUNT(*) FROM stripe_subscription s JOIN stripe_customer c ON c.id = s.customer "
            "WHERE c.name = ?",
            (name,),
        ).fetchone()
        assert subs == 1 and seats > 0, name


def test_event_days_limits_only_the_raw_event_history(tmp_path: Path) -> None:
    spec = CompanySpec(seed=4, event_days=14, **TINY)
    generate_company(tmp_path, spec)
    product = sqlite3.connect(tmp_path / "product.db")
    (first,) = product.execute("SELECT MIN(occurred_at) FROM events").fetchone()
    product.close()
    store = sqlite3.connect(tmp_path / "company.db")
    (usage_billed,) = store.execute("SELECT SUM(usage_amount) FROM stripe_invoice").fetchone()
    (first_invoice,) = store.execute("SELECT MIN(created) FROM stripe_invoice").fetchone()
    store.close()
    assert first >= (spec.end_date - timedelta(days=13)).isoformat()
    assert usage_billed > 0, "metered usage is still billed for days without raw events"
    assert datetime.fromtimestamp(first_invoice, UTC).date() < spec.end_date - timedelta(days=60)


def test_plans_billing_and_new_customers_look_like_a_saas_business(store: sqlite3.Connection) -> None:
    plans = dict(
        store.execute("SELECT Plan__c, COUNT(*) FROM sf_account WHERE Plan__c IS NOT NULL GROUP BY 1")
    )
    assert plans["starter"] > plans["growth"] > plans["enterprise"] > 0
    intervals = dict(
        store.execute("SELECT s.interval, COUNT(*) FROM stripe_subscription s GROUP BY 1").fetchall()
    )
    assert intervals["month"] > intervals.get("year", 0) > 0
    window_start = (TEST_END_DATE - timedelta(days=TEST_DAYS - 1)).isoformat()
    (new,) = store.execute(
        "SELECT COUNT(*) FROM sf_account WHERE Customer_Since__c >= ?", (window_start,)
    ).fetchone()
    (old,) = store.execute("SELECT MIN(Customer_Since__c) FROM sf_account").fetchone()
    assert new >= 5, "customers onboard inside the window"
    assert old < (TEST_END_DATE - timedelta(days=3 * 365)).isoformat(), "tenure spans years"
    roles = {r[0] for r in store.execute("SELECT r.Name FROM sf_user u JOIN sf_user_role r ON r.Id = u.UserRoleId")}
    assert {"Customer Success Manager", "VP Customer Success"} <= roles


def test_product_events_are_one_login_and_one_or_two_feature_uses_per_active_user_day(
    product: sqlite3.Connection,
) -> None:
    logins, features, user_days = product.execute(
        "SELECT SUM(event_name = 'login'), SUM(event_name = 'feature_used'), "
        "COUNT(DISTINCT user_id || substr(occurred_at, 1, 10)) FROM events"
    ).fetchone()
    assert logins == user_days
    assert 1.0 <= features / user_days <= 2.0
    (bad,) = product.execute(
        "SELECT COUNT(*) FROM events WHERE (event_name = 'login') = (feature_key IS NOT NULL)"
    ).fetchone()
    assert bad == 0
