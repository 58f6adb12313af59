"""The account crosswalk: one customer, four identities.

Salesforce is the system of record: ``account_key`` is the 18-character Salesforce Account Id.
Every other system's identity is resolved onto it:

* Zendesk organization ``external_id`` - the 18-char Id; the 15-char (case-sensitive) form that
  older integrations wrote is matched by its prefix; organizations without one are matched by
  exact (case-insensitive) unique name, else reported unmapped.
* Stripe customer ``metadata.salesforce_account_id``; failing that ``metadata.product_account_id``
  through the product mapping; else unmapped.
* Product ``account_id`` - ``Account.Product_Account_Id__c``; failing that a Stripe customer that
  names both the Salesforce and the product account.

Duplicates (two Zendesk organizations or Stripe customers for one account) all map to the same
account in ``account_identity_map`` so their tickets and invoices count; ``account_crosswalk``
keeps one row per account with the primary ids and notes on what was odd. What could not be
mapped is listed in ``crosswalk_unmapped`` with the reason, replaced on every run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Engine, delete, select

from customer_health.warehouse.io import upsert_rows, utcnow
from customer_health.warehouse.schema import (
    account_crosswalk,
    account_identity_map,
    crosswalk_unmapped,
    raw_product_account,
    raw_sf_account,
    raw_stripe_customer,
    raw_zd_organization,
)


@dataclass
class CrosswalkReport:
    """Counts of what the crosswalk resolved and what it could not."""

    accounts: int = 0
    mapped: dict[str, int] = field(default_factory=dict)
    unmapped: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "accounts": self.accounts,
            "mapped": self.mapped,
            "unmapped": self.unmapped,
            "duplicates": self.duplicates,
        }


def build_crosswalk(engine: Engine) -> CrosswalkReport:
    """Resolve every source identity onto its Salesforce account and store the result."""
    report = CrosswalkReport()
    now = utcnow()
    with engine.connect() as conn:
        accounts = conn.execute(
            select(
                raw_sf_account.c.id,
                raw_sf_account.c.name,
                raw_sf_account.c.parent_id,
                raw_sf_account.c.product_account_id,
            ).where(raw_sf_account.c.is_deleted.is_(False))
        ).fetchall()
        orgs = conn.execute(
            select(raw_zd_organization.c.id, raw_zd_organization.c.name, raw_zd_organization.c.external_id).where(
                raw_zd_organization.c.is_deleted.is_(False)
            )
        ).fetchall()
        customers = conn.execute(
            select(
                raw_stripe_customer.c.id,
                raw_stripe_customer.c.salesforce_account_id,
                raw_stripe_customer.c.product_account_id,
            ).where(raw_stripe_customer.c.is_deleted.is_(False))
        ).fetchall()
        products = conn.execute(select(raw_product_account.c.id, raw_product_account.c.name)).fetchall()

    by_id = {a.id: a for a in accounts}
    by_id15: dict[str, str] = {a.id[:15]: a.id for a in accounts}
    names: dict[str, list[str]] = defaultdict(list)
    for a in accounts:
        if a.name:
            names[a.name.strip().lower()].append(a.id)

    identities: list[dict] = []
    unmapped: list[dict] = []

    def mapped(system: str, source_id, key: str, method: str) -> None:
        identities.append(
            {
                "system": system,
                "source_id": str(source_id),
                "account_key": key,
                "match_method": method,
                "updated_at": now,
            }
        )

    def missing(system: str, source_id, reason: str) -> None:
        unmapped.append({"source": system, "source_id": str(source_id), "reason": reason, "updated_at": now})

    for a in accounts:
        mapped("salesforce", a.id, a.id, "self")

    # Product accounts: Salesforce field first, then Stripe metadata naming both.
    product_to_key: dict[str, str] = {}
    for a in accounts:
        if a.product_account_id:
            product_to_key.setdefault(a.product_account_id, a.id)
    for c in customers:
        if c.product_account_id and c.salesforce_account_id in by_id:
            product_to_key.setdefault(c.product_account_id, c.salesforce_account_id)
    for p in products:
        key = product_to_key.get(p.id)
        if key is None:
            missing("product", p.id, "no Salesforce account has Product_Account_Id__c = this id, and no Stripe customer links it")
            continue
        method = "salesforce_field" if by_id[key].product_account_id == p.id else "stripe_metadata"
        mapped("product", p.id, key, method)

    # Zendesk organizations.
    for o in orgs:
        ext = (o.external_id or "").strip()
        if ext in by_id:
            mapped("zendesk", o.id, ext, "external_id")
        elif len(ext) == 15 and ext in by_id15:
            mapped("zendesk", o.id, by_id15[ext], "external_id_15")
        elif ext:
            missing("zendesk", o.id, f"external_id {ext!r} is not a Salesforce Account Id we know")
        else:
            candidates = names.get((o.name or "").strip().lower(), [])
            if len(candidates) == 1:
                mapped("zendesk", o.id, candidates[0], "name")
            else:
                why = "several accounts share its name" if candidates else "no account has its name"
                missing("zendesk", o.id, f"organization has no external_id and {why}")

    # Stripe customers.
    for c in customers:
        if c.salesforce_account_id in by_id:
            mapped("stripe", c.id, c.salesforce_account_id, "metadata")
        elif c.product_account_id and c.product_account_id in product_to_key:
            mapped("stripe", c.id, product_to_key[c.product_account_id], "product_account_id")
        elif c.salesforce_account_id:
            missing("stripe", c.id, f"metadata.salesforce_account_id {c.salesforce_account_id!r} is unknown")
        else:
            missing("stripe", c.id, "customer has neither salesforce_account_id nor a known product_account_id")

    per_account: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for ident in identities:
        per_account[ident["account_key"]][ident["system"]].append(ident["source_id"])

    rows = []
    for a in accounts:
        ids = per_account.get(a.id, {})
        notes = [f"{len(v)} {system} records" for system, v in sorted(ids.items()) if len(v) > 1 and system != "salesforce"]
        zd = sorted(ids.get("zendesk", []), key=int)
        st = sorted(ids.get("stripe", []))
        pr = sorted(ids.get("product", []))
        rows.append(
            {
                "account_key": a.id,
                "account_name": a.name,
                "parent_account_key": a.parent_id if a.parent_id in by_id else None,
                "zendesk_org_id": int(zd[0]) if zd else None,
                "stripe_customer_id": st[0] if st else None,
                "product_account_id": pr[0] if pr else None,
                "match_notes": "; ".join(notes) or None,
                "updated_at": now,
            }
        )

    with engine.begin() as conn:
        upsert_rows(conn, account_crosswalk, rows)
        # Identities and the unmapped report describe the current state: replace them whole.
        conn.execute(delete(account_identity_map))
        upsert_rows(conn, account_identity_map, identities)
        conn.execute(delete(crosswalk_unmapped))
        upsert_rows(conn, crosswalk_unmapped, unmapped)

    report.accounts = len(rows)
    for ident in identities:
        report.mapped[ident["system"]] = report.mapped.get(ident["system"], 0) + 1
    for u in unmapped:
        report.unmapped[u["source"]] = report.unmapped.get(u["source"], 0) + 1
    for ids in per_account.values():
        for system, v in ids.items():
            if len(v) > 1:
                report.duplicates[system] = report.duplicates.get(system, 0) + len(v) - 1
    return report
