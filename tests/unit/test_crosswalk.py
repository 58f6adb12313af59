"""The crosswalk resolves Zendesk, Stripe and product identities onto Salesforce accounts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from customer_health.sources.crosswalk import build_crosswalk
from customer_health.warehouse.engine import engine_for
from customer_health.warehouse.io import upsert_rows
from customer_health.warehouse.schema import (
    account_crosswalk,
    account_identity_map,
    crosswalk_unmapped,
    raw_product_account,
    raw_sf_account,
    raw_stripe_customer,
    raw_zd_organization,
)

NOW = datetime(2026, 11, 1)
ACME = "001A0000006Vm9rIAC"
GLOBEX = "001A0000006Vm9sIAC"
GLOBEX_EU = "001A0000006Vm9tIAC"


def seed(url):
    book = {"extracted_at": NOW, "is_deleted": False}
    with engine_for(url).begin() as conn:
        upsert_rows(conn, raw_sf_account, [
            {"id": ACME, "name": "Acme", "parent_id": None, "product_account_id": "acct_1"} | book,
            {"id": GLOBEX, "name": "Globex", "parent_id": None, "product_account_id": None} | book,
            {"id": GLOBEX_EU, "name": "Globex EU", "parent_id": GLOBEX, "product_account_id": "acct_3"} | book,
        ])
        upsert_rows(conn, raw_zd_organization, [
            {"id": 1, "name": "Acme", "external_id": ACME} | book,
            {"id": 2, "name": "Acme (old)", "external_id": ACME} | book,  # duplicate org
            {"id": 3, "name": "Globex", "external_id": GLOBEX[:15]} | book,  # 15-char id
            {"id": 4, "name": "globex eu", "external_id": None} | book,  # matched by name
            {"id": 5, "name": "Initech", "external_id": None} | book,  # unmapped
        ])
        upsert_rows(conn, raw_stripe_customer, [
            {"id": "cus_1", "salesforce_account_id": ACME, "product_account_id": "acct_1"} | book,
            {"id": "cus_2", "salesforce_account_id": None, "product_account_id": "acct_2"} | book,
            {"id": "cus_3", "salesforce_account_id": GLOBEX, "product_account_id": "acct_2"} | book,
            {"id": "cus_4", "salesforce_account_id": None, "product_account_id": None} | book,
        ])
        upsert_rows(conn, raw_product_account, [
            {"id": p, "name": p} | book for p in ("acct_1", "acct_2", "acct_3", "acct_9")
        ])


def identity(url):
    with engine_for(url).connect() as conn:
        return {(r.system, r.source_id): (r.account_key, r.match_method) for r in conn.execute(select(account_identity_map))}


def test_every_system_resolves_onto_the_salesforce_account(warehouse_url):
    seed(warehouse_url)
    report = build_crosswalk(engine_for(warehouse_url))
    ids = identity(warehouse_url)
    assert ids[("zendesk", "1")] == (ACME, "external_id")
    assert ids[("zendesk", "2")] == (ACME, "external_id")
    assert ids[("zendesk", "3")] == (GLOBEX, "external_id_15")
    assert ids[("zendesk", "4")] == (GLOBEX_EU, "name")
    assert ids[("stripe", "cus_1")] == (ACME, "metadata")
    # Stripe links Globex to product acct_2, which Salesforce did not record.
    assert ids[("product", "acct_2")] == (GLOBEX, "stripe_metadata")
    assert ids[("stripe", "cus_2")] == (GLOBEX, "product_account_id")
    assert report.duplicates["zendesk"] == 1
    assert report.accounts == 3


def test_what_cannot_be_mapped_is_reported_with_the_reason(warehouse_url):
    seed(warehouse_url)
    report = build_crosswalk(engine_for(warehouse_url))
    with engine_for(warehouse_url).connect() as conn:
        unmapped = {(r.source, r.source_id): r.reason for r in conn.execute(select(crosswalk_unmapped))}
    assert set(unmapped) == {("zendesk", "5"), ("stripe", "cus_4"), ("product", "acct_9")}
    assert "no account has its name" in unmapped[("zendesk", "5")]
    assert report.unmapped == {"zendesk": 1, "stripe": 1, "product": 1}


def test_crosswalk_rows_name_parents_and_primary_ids_and_rebuild_identically(warehouse_url):
    seed(warehouse_url)
    build_crosswalk(engine_for(warehouse_url))
    build_crosswalk(engine_for(warehouse_url))
    with engine_for(warehouse_url).connect() as conn:
        rows = {r.account_key: r for r in conn.execute(select(account_crosswalk))}
    assert rows[GLOBEX_EU].parent_account_key == GLOBEX
    assert rows[ACME].zendesk_org_id == 1 and rows[ACME].stripe_customer_id == "cus_1"
    assert "2 zendesk records" in rows[ACME].match_notes
    assert len(identity(warehouse_url)) == 3 + 4 + 3 + 3
