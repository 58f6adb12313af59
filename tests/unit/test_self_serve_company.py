"""The self-serve company (``sandbox/self_serve.py``) against its own committed story.

Every figure here is computed from the generated tables (the product database, the Stripe tables
and ``truth_account``), not from the generator's own summary, and checked against the ranges the
story states. The sample is fixed before looking at it (1,000 accounts x 500 days, seed 11); a
miss is a generator bug or a story error to report, never a reason to pick another seed.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from health_sandbox.self_serve import (
    CHURN_CAUSES,
    FEATURES,
    TRIAL_CAUSE,
    UNSEEN_CAUSES,
    SelfServeSpec,
    generate_self_serve,
    main,
)
from health_sandbox.store import store_metadata

SPEC = SelfServeSpec(accounts=1000, days=500, seed=11, end_date=date(2026, 11, 1))
MONTH = 30.44


class Company:
    """The generated tables as data frames, and the window."""

    def __init__(self, folder: Path, spec: SelfServeSpec) -> None:
        self.folder, self.spec = folder, spec
        self.store = sqlite3.connect(folder / "company.db")
        self.product = sqlite3.connect(folder / "product.db")
        self.end = pd.Timestamp(spec.end_date)
        self.start = pd.Timestamp(spec.window_start)
        self.truth = self.frame(
            self.store, "SELECT * FROM truth_account", ["churn_date", "trajectory_start", "expansion_date"]
        )
        self.accounts = self.frame(self.product, "SELECT * FROM accounts", ["created_at"])
        self.invoices = self.frame(self.store, "SELECT * FROM stripe_invoice")
        self.subscriptions = self.frame(self.store, "SELECT * FROM stripe_subscription")
        self.customers = self.frame(self.store, "SELECT * FROM stripe_customer")
        self.disputes = self.frame(self.store, "SELECT * FROM stripe_dispute")
        t = self.truth.merge(self.accounts, left_on="account_id", right_on="id")
        t["paying_from"] = t.created_at.dt.normalize() + pd.Timedelta(days=14)
        t["exposed_from"] = t.paying_from.clip(lower=self.start)
        t["exposed_to"] = t.churn_date.fillna(self.end + pd.Timedelta(days=1))
        self.paid = t[t.churn_cause.ne(TRIAL_CAUSE)].copy()  # accounts that ever paid
        self.t = t

    @staticmethod
    def frame(conn: sqlite3.Connection, sql: str, dates: list[str] | None = None) -> pd.DataFrame:
        return pd.read_sql(sql, conn, parse_dates=dates or [])

    def paying_months(self, rows: pd.DataFrame | None = None) -> float:
        rows = self.paid if rows is None else rows
        return float((rows.exposed_to - rows.exposed_from).dt.days.clip(lower=0).sum()) / MONTH

    def churned(self, *causes: str) -> pd.DataFrame:
        return self.paid[self.paid.churn_cause.isin(causes or CHURN_CAUSES)]

    def daily_events(self) -> pd.DataFrame:
        return self.frame(
            self.product,
            """SELECT account_id, date(occurred_at) AS day, COUNT(*) AS events,
                      SUM(feature_key = 'billing_view') AS billing
               FROM events GROUP BY account_id, date(occurred_at)""",
            ["day"],
        )


@pytest.fixture(scope="module")
def company(tmp_path_factory) -> Company:
    folder = tmp_path_factory.mktemp("self_serve")
    generate_self_serve(folder, SPEC)
    return Company(folder, SPEC)


def _dump(folder: Path) -> dict[str, list[tuple]]:
    out = {}
    for name in ("company.db", "product.db"):
        conn = sqlite3.connect(folder / name)
        tables = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        for table in tables:
            rows = conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()  # noqa: S608
            if table == "sandbox_meta":
                rows = [r for r in rows if r[0] != "generated_at"]
            out[f"{name}:{table}"] = rows
        conn.close()
    return out


# ----------------------------------------------------------------------------- determinism
def test_the_same_spec_gives_the_same_tables_and_another_seed_does_not(tmp_path):
    spec = SelfServeSpec(accounts=80, days=120, seed=5, end_date=date(2026, 3, 1))
    generate_self_serve(tmp_path / "a", spec)
    generate_self_serve(tmp_path / "b", spec)
    generate_self_serve(
        tmp_path / "c", SelfServeSpec(accounts=80, days=120, seed=6, end_date=date(2026, 3, 1))
    )

    a, b, c = _dump(tmp_path / "a"), _dump(tmp_path / "b"), _dump(tmp_path / "c")
    assert a == b
    assert a["product.db:events"] and a["product.db:events"] != c["product.db:events"]


def test_a_complete_company_of_the_same_spec_is_reused(company):
    again = generate_self_serve(company.folder, SPEC)

    assert again.reused
    assert (
        again.counts["product.events"]
        == pd.read_sql("SELECT COUNT(*) AS n FROM events", company.product).n[0]
    )


def test_the_command_line_generates_and_describes_it(tmp_path, capsys):
    assert (
        main(
            [
                "--folder",
                str(tmp_path),
                "--accounts",
                "40",
                "--days",
                "95",
                "--seed",
                "2",
                "--end-date",
                "2026-01-31",
            ]
        )
        == 0
    )

    out = capsys.readouterr().out
    assert "Self-serve company" in out and "churn per paying month" in out
    assert (tmp_path / "company.db").exists() and (tmp_path / "product.db").exists()


# ----------------------------------------------------------------------------- what is (not) in the data
def test_there_is_no_salesforce_or_zendesk_only_stripe_and_the_product(company):
    for table in store_metadata.sorted_tables:
        if table.name.startswith(("sf_", "zd_")):
            assert company.store.execute(f"SELECT COUNT(*) FROM {table.name}").fetchone()[0] == 0, table.name  # noqa: S608
    meta = dict(company.store.execute("SELECT key, value FROM sandbox_meta").fetchall())
    assert meta["company"] == "self_serve"
    assert json.loads(meta["systems"]) == ["stripe", "slack", "hubspot", "smtp"]
    assert len(company.subscriptions) == SPEC.accounts and len(company.truth) == SPEC.accounts
    assert set(company.subscriptions.interval) == {"month"}
    assert set(company.invoices.usage_amount) == {0}


def test_accounts_are_identified_by_the_product_account_and_linked_to_stripe_both_ways(company):
    accounts = company.accounts[~company.accounts.id.isin(["acct_900001", "acct_900002"])]
    customers = company.customers.set_index("id")
    meta = customers.metadata.map(json.loads)
    linked = accounts.stripe_customer_id.map(customers.index.to_series())

    assert linked.notna().all()  # every account's Stripe customer exists
    named = meta.loc[accounts.stripe_customer_id].map(lambda m: m.get("product_account_id"))
    assert ((named.to_numpy() == accounts.id.to_numpy()) | named.isna().to_numpy()).all()
    assert 0.005 <= named.isna().mean() <= 0.03  # ~1.5 % lack the metadata: only the accounts row links them
    extra = customers.index.difference(accounts.stripe_customer_id)
    assert len(extra) >= 2  # abandoned checkouts and card tests: no subscription, no invoice
    assert not company.subscriptions.customer.isin(extra).any()
    assert not company.invoices.customer.isin(extra).any()
    assert not any("salesforce" in json.dumps(m) for m in meta)
    assert set(company.truth.account_id) == set(accounts.id)


def test_no_timestamp_is_after_the_end_date_except_the_scheduled_period_end(company):
    end = int((company.end + pd.Timedelta(days=1)).timestamp())
    for frame, columns in (
        (company.customers, ["created"]),
        (company.subscriptions, ["created", "canceled_at", "current_period_start"]),
        (company.invoices, ["created", "paid_at", "period_start"]),
        (company.disputes, ["created"]),
    ):
        for column in columns:
            assert (frame[column].dropna() < end).all(), column
    last = company.product.execute("SELECT MAX(occurred_at) FROM events").fetchone()[0]
    assert last < (company.end + pd.Timedelta(days=1)).isoformat(sep=" ")


def test_the_product_database_speaks_the_extraction_s_schema(company):
    features = dict(company.product.execute("SELECT feature_key, is_core FROM features").fetchall())
    kinds = company.product.execute("SELECT DISTINCT event_name, feature_key FROM events").fetchall()

    assert features == {key: int(core) for key, _, core in FEATURES}
    assert {name for name, _ in kinds} == {"login", "feature_used"}
    assert {key for name, key in kinds if name == "feature_used"} == set(features)
    assert all(key is None for name, key in kinds if name == "login")
    # One person per personal account at any time: its users never overlap.
    users = company.frame(company.product, "SELECT * FROM users", ["created_at", "deactivated_at"])
    personal = users[users.account_id.isin(company.accounts.id[company.accounts.plan == "personal"])]
    assert personal.groupby("account_id").size().max() <= 11  # team members who left after a downgrade


# ----------------------------------------------------------------------------- base rates (the story's ranges)
def test_monthly_churn_by_kind_is_within_the_story_s_ranges(company):
    months = company.paying_months()
    rate = {c: len(company.churned(c)) / months for c in CHURN_CAUSES}
    unseen = sum(rate[c] for c in UNSEEN_CAUSES)
    total = sum(rate.values())

    assert 0.020 <= rate["disengaged"] <= 0.040
    assert 0.004 <= unseen <= 0.011
    assert 0.003 <= rate["payment_failed"] <= 0.012
    assert rate["dispute"] < 0.002
    assert 0.030 <= total <= 0.055
    assert 0.10 <= unseen / total <= 0.25


def test_ninety_day_churn_of_the_paying_book_is_within_the_story_s_range(company):
    shares = []
    for offset in range(120, SPEC.days - 90, 91):  # quarterly snapshots with a full horizon
        day = company.start + pd.Timedelta(days=offset)
        on = company.paid[(company.paid.exposed_from <= day) & (company.paid.exposed_to > day)]
        gone = on.churn_date.notna() & (on.churn_date <= day + pd.Timedelta(days=90))
        shares.append((int(gone.sum()), len(on)))

    assert len(shares) >= 3
    assert 0.09 <= sum(g for g, _ in shares) / sum(n for _, n in shares) <= 0.16


def test_trials_payments_and_the_book_are_within_the_story_s_ranges(company):
    t = company.t
    trial_end = t.created_at.dt.normalize() + pd.Timedelta(days=14)
    ended = t[(t.created_at >= company.start) & ((trial_end <= company.end) | (t.churn_cause == TRIAL_CAUSE))]
    conversion = ended.churn_cause.ne(TRIAL_CAUSE).mean()

    charged = company.invoices[company.invoices.subtotal > 0]
    failed = charged[charged.attempt_count > 1]
    settled = failed[failed.status != "open"]
    live = company.subscriptions[company.subscriptions.status.isin(["active", "past_due"])]
    team = live.metadata.map(lambda m: json.loads(m)["plan"] == "team").mean()

    assert 0.50 <= conversion <= 0.70
    assert 0.02 <= len(failed) / len(charged) <= 0.06
    assert 0.45 <= (settled.status == "paid").mean() <= 0.80
    assert 0.12 <= team <= 0.30


def test_churn_does_not_fall_with_tenure(company):
    """The story's erratum: the trial converts high fit, need loss strikes at any tenure."""
    paid = company.paid
    overall = len(company.churned()) / company.paying_months()
    for lo, hi in ((0, 3), (3, 12), (12, 10_000)):
        frm = np.maximum(paid.exposed_from, paid.paying_from + pd.to_timedelta(lo * MONTH, unit="D"))
        to = np.minimum(paid.exposed_to, paid.paying_from + pd.to_timedelta(hi * MONTH, unit="D"))
        months = float((to - frm).dt.days.clip(lower=0).sum()) / MONTH
        lost = paid.churn_cause.isin(CHURN_CAUSES) & (paid.churn_date > frm) & (paid.churn_date <= to)
        assert 0.67 <= (lost.sum() / months) / overall <= 1.5, (lo, hi)


# ----------------------------------------------------------------------------- the causal links
def _window_sums(
    events: pd.DataFrame, accounts: pd.DataFrame, days_before: tuple[int, int], column: str
) -> pd.Series:
    """Per account, ``column`` summed over [churn - days_before[0], churn - days_before[1])."""
    e = events.merge(accounts[["account_id", "churn_date"]], on="account_id")
    inside = (e.day >= e.churn_date - pd.Timedelta(days=days_before[0])) & (
        e.day < e.churn_date - pd.Timedelta(days=days_before[1])
    )
    return e[inside].groupby("account_id")[column].sum().reindex(accounts.account_id, fill_value=0)


def test_engagement_declines_before_disengaged_churn_and_not_before_unseen_churn(company):
    events = company.daily_events()
    # Churners with half a year of history in the window before they left.
    old = company.paid[
        company.paid.churn_date - pd.Timedelta(days=200) >= company.paid.created_at.clip(lower=company.start)
    ]

    def decline(causes: tuple[str, ...]) -> float:
        rows = old[old.churn_cause.isin(causes)]
        assert len(rows) >= 15, causes
        late = _window_sums(events, rows, (28, 0), "events").sum()
        early = _window_sums(events, rows, (180, 152), "events").sum()
        return late / early

    assert decline(("disengaged",)) < 0.4
    assert decline(UNSEEN_CAUSES) > 0.7


def test_the_billing_page_is_visited_before_a_disengaged_cancellation(company):
    events = company.daily_events()
    leavers = company.churned("disengaged")
    leavers = leavers[leavers.churn_date - pd.Timedelta(days=45) >= company.start]
    visited = (_window_sums(events, leavers, (45, 0), "billing") > 0).mean()
    # Accounts that stayed, over the same length of window.
    stayers = company.paid[company.paid.churn_date.isna() & (company.paid.exposed_from <= company.start)]
    window = events[
        (events.day >= company.end - pd.Timedelta(days=45)) & events.account_id.isin(stayers.account_id)
    ]
    baseline = (window.groupby("account_id").billing.sum() > 0).sum() / len(stayers)

    assert visited > 2 * baseline


def test_failed_payments_precede_involuntary_churn_and_disputes_precede_dispute_churn(company):
    owners = company.accounts[["id", "stripe_customer_id"]].rename(columns={"id": "account_id"})
    invoices = company.invoices.merge(owners, left_on="customer", right_on="stripe_customer_id")
    invoices["day"] = pd.to_datetime(invoices.created, unit="s").dt.normalize()
    last = invoices.sort_values("created").groupby("account_id").tail(1).set_index("account_id")
    failed = company.churned("payment_failed")
    assert len(failed) >= 10
    for row in failed.itertuples():
        invoice = last.loc[row.account_id]
        assert invoice.status == "uncollectible" and invoice.attempt_count == 4
        assert (row.churn_date - invoice.day).days == 21
    # No other paid churn ends on an uncollectible invoice.
    others = company.paid[company.paid.churn_cause.isin(set(CHURN_CAUSES) - {"payment_failed"})]
    assert not (last.reindex(others.account_id).status == "uncollectible").any()
    disputed = company.disputes.merge(invoices[["charge", "account_id"]], on="charge")
    disputed["day"] = pd.to_datetime(disputed.created, unit="s").dt.normalize()
    for row in company.churned("dispute").itertuples():
        assert (disputed[disputed.account_id == row.account_id].day == row.churn_date).any()


def test_subscriptions_end_as_the_story_says(company):
    owners = company.accounts[["id", "stripe_customer_id"]].rename(columns={"id": "account_id"})
    subs = company.subscriptions.merge(owners, left_on="customer", right_on="stripe_customer_id")
    subs = subs.merge(company.truth[["account_id", "churn_date", "churn_cause"]], on="account_id")
    gone = subs[subs.churn_date.notna()]
    canceled_day = pd.to_datetime(gone.canceled_at, unit="s").dt.normalize()

    assert (gone.status == "canceled").all()
    assert (canceled_day == gone.churn_date).all()  # the day service ended
    staying = subs[subs.churn_date.isna()]
    assert set(staying.status) <= {"active", "past_due", "trialing"}
    pending = staying[staying.cancel_at_period_end.astype(bool)]
    assert len(pending) and (pending.canceled_at.notna()).all()
