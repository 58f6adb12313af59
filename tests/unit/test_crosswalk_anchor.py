"""The crosswalk of a company without a CRM: the Stripe customers or the product accounts are the accounts."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select

from customer_health.sources.crosswalk import ACCOUNT_KEY_LENGTH, build_crosswalk
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.io import upsert_rows
from customer_health.warehouse.schema import (
    account_crosswalk,
    account_identity_map,
    anchor_account,
    crosswalk_unmapped,
    raw_product_account,
    raw_sf_account,
    raw_stripe_customer,
    raw_stripe_invoice,
    raw_stripe_subscription,
)

NOW = datetime(2026, 11, 1)
LONG_ID = "cus_" + "x" * (ACCOUNT_KEY_LENGTH - 3)  # one character too many for an account key


def seed(url: str) -> None:
    book = {"extracted_at": NOW, "is_deleted": False}
    customers = [
        # acct_1 has two customers: the one that paid (cus_1b) is the account, the abandoned checkout joins it.
        {"id": "cus_1a", "name": None, "product_account_id": "acct_1", "created_at": datetime(2026, 1, 1)},
        {"id": "cus_1b", "name": "Ada Lovelace", "product_account_id": "acct_1", "created_at": datetime(2026, 1, 2)},
        {"id": "cus_2", "name": "Team Two", "product_account_id": "acct_2", "created_at": datetime(2026, 2, 1)},
        {"id": "cus_3", "name": "No metadata", "product_account_id": None, "created_at": datetime(2026, 3, 1)},
        {"id": "cus_4", "name": "Trial only", "product_account_id": "acct_4", "created_at": datetime(2026, 4, 1)},
        {"id": LONG_ID, "name": "Too long", "product_account_id": None, "created_at": datetime(2026, 5, 1)},
    ]
    with engine_for(url).begin() as conn:
        upsert_rows(conn, raw_stripe_customer, [{"salesforce_account_id": None, "email": None} | c | book for c in customers])
        upsert_rows(conn, raw_product_account, [
            {"id": "acct_1", "name": "Ada's boards", "plan": "personal", "created_at": datetime(2026, 1, 1)} | book,
            {"id": "acct_2", "name": "Team Two", "plan": "team", "created_at": datetime(2026, 2, 1)} | book,
            {"id": "acct_3", "name": "No metadata", "plan": "personal", "created_at": datetime(2026, 3, 1)} | book,
            {"id": "acct_4", "name": "Trial only", "plan": "personal", "created_at": datetime(2026, 4, 1)} | book,
            {"id": "acct_9", "name": "Staff", "plan": "team", "created_at": datetime(2025, 6, 1)} | book,
        ])
        sub = {"canceled_at": None, "cancel_at_period_end": False, "current_period_end": None, "interval": "month"}
        upsert_rows(conn, raw_stripe_subscription, [
            {"id": "sub_1", "customer_id": "cus_1b", "status": "active", "quantity": 1, "unit_amount": 1200,
             "created_at": datetime(2026, 1, 2)} | sub | book,
            {"id": "sub_2", "customer_id": "cus_2", "status": "past_due", "quantity": 3, "unit_amount": 1000,
             "created_at": datetime(2026, 2, 1)} | sub | book,
            {"id": "sub_4", "customer_id": "cus_4", "status": "canceled", "quantity": 1, "unit_amount": 1200,
             "created_at": datetime(2026, 4, 1)} | sub | book,
        ])
        inv = {"usage_amount": 0, "attempt_count": 1, "due_date": None, "charge_id": None}

        def invoice(iid, cus, sub_id, amount, created, paid_at):
            return {"id": iid, "customer_id": cus, "subscription_id": sub_id, "subtotal": amount, "amount_due": amount,
                    "amount_paid": amount if paid_at else 0, "status": "paid" if paid_at else "open",
                    "created_at": created, "paid_at": paid_at} | inv | book

        upsert_rows(conn, raw_stripe_invoice, [
            invoice("in_1t", "cus_1b", "sub_1", 0, datetime(2026, 1, 2), datetime(2026, 1, 2)),  # the $0 trial invoice
            invoice("in_1", "cus_1b", "sub_1", 1200, datetime(2026, 1, 16), datetime(2026, 1, 16, 9)),
            invoice("in_2", "cus_2", "sub_2", 3000, datetime(2026, 2, 15), datetime(2026, 2, 19)),  # paid in dunning
            invoice("in_4", "cus_4", "sub_4", 0, datetime(2026, 4, 1), datetime(2026, 4, 1)),  # trial, never paid
        ])


def _rows(url: str, table) -> dict:
    with engine_for(url).connect() as conn:
        return {r.id: r for r in conn.execute(select(table))}


def _identities(url: str) -> dict:
    with engine_for(url).connect() as conn:
        return {(r.system, r.source_id): (r.account_key, r.match_method) for r in conn.execute(select(account_identity_map))}


def _unmapped(url: str) -> dict:
    with engine_for(url).connect() as conn:
        return {(r.source, r.source_id): r.reason for r in conn.execute(select(crosswalk_unmapped))}


def test_stripe_anchor_makes_each_stripe_customer_an_account(warehouse_url):
    seed(warehouse_url)
    report = build_crosswalk(engine_for(warehouse_url), "stripe")
    roster = _rows(warehouse_url, anchor_account)

    assert set(roster) == {"cus_1b", "cus_2", "cus_3", "cus_4"}
    assert report.accounts == 4 and report.duplicates == {"stripe": 1}
    ids = _identities(warehouse_url)
    assert ids[("stripe", "cus_1a")] == ("cus_1b", "same_product_account")
    assert ids[("product", "acct_1")] == ("cus_1b", "stripe_metadata")
    ada = roster["cus_1b"]
    assert (ada.name, ada.plan, ada.seats, ada.arr) == ("Ada Lovelace", "personal", 1, 144.0)
    assert ada.customer_since == date(2026, 1, 16)  # the first paid non-zero invoice, not the $0 trial
    assert roster["cus_2"].customer_since == date(2026, 2, 19) and roster["cus_2"].arr == 360.0
    assert roster["cus_4"].customer_since is None  # a trial that never paid is never a customer
    assert roster["cus_4"].seats is None and roster["cus_4"].arr is None  # nothing live: missing, not 0
    assert roster["cus_3"].plan is None and roster["cus_3"].product_account_id is None
    assert all(r.owner_id is None and r.parent_id is None for r in roster.values())

    unmapped = _unmapped(warehouse_url)
    assert set(unmapped) == {("product", "acct_3"), ("product", "acct_9"), ("stripe", LONG_ID)}
    assert "metadata.product_account_id" in unmapped[("product", "acct_3")]
    assert f"an account key holds {ACCOUNT_KEY_LENGTH}" in unmapped[("stripe", LONG_ID)]
    with engine_for(warehouse_url).connect() as conn:
        crosswalk = {r.account_key: r for r in conn.execute(select(account_crosswalk))}
    assert set(crosswalk) == set(roster)
    assert crosswalk["cus_1b"].match_notes == "2 stripe records"


def test_product_anchor_makes_each_product_account_an_account(warehouse_url):
    seed(warehouse_url)
    build_crosswalk(engine_for(warehouse_url), "product")
    roster = _rows(warehouse_url, anchor_account)

    assert set(roster) == {"acct_1", "acct_2", "acct_3", "acct_4", "acct_9"}
    assert roster["acct_1"].name == "Ada's boards" and roster["acct_1"].customer_since == date(2026, 1, 16)
    assert roster["acct_4"].customer_since is None
    # No Stripe customer links it: invoiced outside Stripe, a customer from its creation.
    assert roster["acct_9"].customer_since == date(2025, 6, 1)
    ids = _identities(warehouse_url)
    assert ids[("stripe", "cus_1a")] == ("acct_1", "metadata") and ids[("stripe", "cus_1b")] == ("acct_1", "metadata")
    unmapped = _unmapped(warehouse_url)
    assert set(unmapped) == {("stripe", "cus_3"), ("stripe", LONG_ID)}
    assert unmapped[("stripe", "cus_3")] == "customer has no metadata.product_account_id"


def test_back_on_the_salesforce_anchor_the_anchor_roster_is_gone(warehouse_url):
    seed(warehouse_url)
    engine = engine_for(warehouse_url)
    build_crosswalk(engine, "stripe")
    with engine.begin() as conn:
        upsert_rows(conn, raw_sf_account, [{"id": "001A0000006Vm9rIAC", "name": "Acme", "parent_id": None,
                                            "product_account_id": "acct_1", "extracted_at": NOW, "is_deleted": False}])
    report = build_crosswalk(engine, "salesforce")
    assert _rows(warehouse_url, anchor_account) == {}
    assert report.accounts >= 1
    assert _identities(warehouse_url)[("product", "acct_1")] == ("001A0000006Vm9rIAC", "salesforce_field")


def test_a_salesforce_account_joins_the_anchor_through_its_product_account(warehouse_url):
    seed(warehouse_url)
    with engine_for(warehouse_url).begin() as conn:
        upsert_rows(conn, raw_sf_account, [{"id": "001A0000006Vm9rIAC", "name": "Acme", "parent_id": None,
                                            "product_account_id": "acct_2", "extracted_at": NOW, "is_deleted": False}])
    build_crosswalk(engine_for(warehouse_url), "stripe")
    assert _identities(warehouse_url)[("salesforce", "001A0000006Vm9rIAC")] == ("cus_2", "product_account_id")


def test_an_anchor_without_records_says_so(warehouse_url):
    report = build_crosswalk(engine_for(warehouse_url), "stripe")
    assert report.accounts == 0
    assert report.as_dict()["anchor"] == "stripe"
    assert report.warnings == [
        "no accounts: identity.anchor is stripe, so every account is a Stripe customer, and the warehouse holds none; "
        "connect that system, or set identity.anchor in the source mapping to the system your accounts live in "
        "(README: 'A company without a CRM')"
    ]
