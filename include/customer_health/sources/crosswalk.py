"""The account crosswalk: one customer, four identities.

Which system's records *are* the accounts is the source mapping's ``identity.anchor``
(``sources.mapping``): ``salesforce`` (the default, below), or ``stripe`` / ``product`` for a
company without a CRM (``build_anchored_crosswalk``, further down).

With the Salesforce anchor, Salesforce is the system of record: ``account_key`` is the
18-character Salesforce Account Id. Every other system's identity is resolved onto it:

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

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Engine, delete, func, select

from customer_health.warehouse.io import as_date, upsert_rows, utcnow
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
    raw_zd_organization,
)

log = logging.getLogger(__name__)

ACCOUNT_KEY_LENGTH = account_crosswalk.c.account_key.type.length
"""The widest account key the warehouse holds (an 18-character Salesforce Id, a Stripe ``cus_`` id)."""


@dataclass
class CrosswalkReport:
    """Counts of what the crosswalk resolved and what it could not."""

    accounts: int = 0
    mapped: dict[str, int] = field(default_factory=dict)
    unmapped: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    anchor: str = "salesforce"
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "accounts": self.accounts,
            "mapped": self.mapped,
            "unmapped": self.unmapped,
            "duplicates": self.duplicates,
            "anchor": self.anchor,
            **({"warnings": self.warnings} if self.warnings else {}),
        }

    def warn_if_empty(self) -> None:
        """No account at all: say which anchor found nothing and what to do (logged and reported)."""
        if self.accounts:
            return
        what = {"salesforce": "Salesforce Account", "stripe": "Stripe customer", "product": "product account"}[self.anchor]
        message = (
            f"no accounts: identity.anchor is {self.anchor}, so every account is a {what}, and the warehouse holds "
            f"none; connect that system, or set identity.anchor in the source mapping to the system your accounts "
            f"live in (README: 'A company without a CRM')"
        )
        self.warnings.append(message)
        log.warning(message)


def build_crosswalk(engine: Engine, anchor: str | None = None) -> CrosswalkReport:
    """Resolve every source identity onto its account and store the result.

    ``anchor`` (default: the source mapping's ``identity.anchor``) says whose records are the
    accounts: ``salesforce`` here, ``stripe`` or ``product`` in ``build_anchored_crosswalk``.
    """
    if anchor is None:
        from customer_health.sources.mapping import active_mapping

        anchor = active_mapping().identity_anchor
    if anchor != "salesforce":
        return build_anchored_crosswalk(engine, anchor)
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
        # The Salesforce Accounts are the roster: no anchor accounts (left by an earlier anchor).
        conn.execute(delete(anchor_account))
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
    report.warn_if_empty()
    return report


# ----------------------------------------------------------------------------- no CRM
ANCHORED_SYSTEMS = {"stripe": "stripe", "product": "product"}
_PERIODS_PER_YEAR = {"day": 365.0, "week": 52.0, "month": 12.0, "year": 1.0}
_LIVE_STATUSES = ("trialing", "active", "past_due", "unpaid")


def build_anchored_crosswalk(engine: Engine, anchor: str) -> CrosswalkReport:
    """The crosswalk of a company without a CRM: the Stripe customers (``anchor='stripe'``) or the
    product accounts (``anchor='product'``) are the accounts.

    * **stripe** - one account per Stripe customer, except that customers whose
      ``metadata.product_account_id`` names the same product account are one account (an
      abandoned checkout's second customer): the primary is the one paid first (else created
      first), the others map onto it. A product account joins the account whose customer names
      it; a product account no customer names is unmapped (its usage counts for nobody).
    * **product** - one account per product account; a Stripe customer joins the product account
      its ``metadata.product_account_id`` names, else it is unmapped.

    Either way Zendesk organizations (rare without a CRM) join by ``external_id`` equal to the
    account key, else by unique name, and Salesforce Accounts (if any are extracted) by
    ``Product_Account_Id__c``. The roster goes to ``anchor_account`` with what the anchor knows:
    the Stripe customer's name (the product account's for ``product``), the product account's
    plan, seats and ARR from the live subscriptions (quantity; unit price x quantity x periods a
    year) - the signals read seats and ARR at D from the invoices, these are the fallback - and
    ``customer_since``, the day of the account's first paid invoice with a non-zero amount: a
    trial that never paid is never a customer. A product-anchored account that no Stripe
    customer links is a customer from its creation (invoiced outside Stripe, as the signals read
    an account without a subscription). Ids longer than the warehouse's account key (18
    characters) cannot be accounts: they are reported unmapped, with the reason.

    The crosswalk, the roster, the identity map and the unmapped report are replaced whole.
    """
    if anchor not in ANCHORED_SYSTEMS:
        raise ValueError(f"identity anchor {anchor!r} is not one of salesforce, stripe, product; fix identity.anchor "
                         "in the source mapping")
    report = CrosswalkReport(anchor=anchor)
    now = utcnow()
    c, sub, inv, p = raw_stripe_customer, raw_stripe_subscription, raw_stripe_invoice, raw_product_account
    with engine.connect() as conn:
        customers = conn.execute(
            select(c.c.id, c.c.name, c.c.product_account_id, c.c.created_at, c.c.is_deleted, c.c.source_updated_at)
        ).fetchall()
        products = conn.execute(
            select(p.c.id, p.c.name, p.c.plan, p.c.created_at, p.c.is_deleted, p.c.source_updated_at)
        ).fetchall()
        subscriptions = conn.execute(
            select(sub.c.customer_id, sub.c.status, sub.c.quantity, sub.c.unit_amount, sub.c.interval).where(
                sub.c.is_deleted.is_(False)
            )
        ).fetchall()
        first_paid = dict(
            conn.execute(
                select(inv.c.customer_id, func.min(inv.c.paid_at))
                .where(inv.c.is_deleted.is_(False), inv.c.paid_at.is_not(None), inv.c.amount_paid > 0)
                .group_by(inv.c.customer_id)
            ).fetchall()
        )
        orgs = conn.execute(
            select(raw_zd_organization.c.id, raw_zd_organization.c.name, raw_zd_organization.c.external_id).where(
                raw_zd_organization.c.is_deleted.is_(False)
            )
        ).fetchall()
        sf_accounts = conn.execute(
            select(raw_sf_account.c.id, raw_sf_account.c.product_account_id).where(raw_sf_account.c.is_deleted.is_(False))
        ).fetchall()

    identities: list[dict] = []
    unmapped: list[dict] = []

    def mapped(system: str, source_id: Any, key: str, method: str) -> None:
        identities.append(
            {"system": system, "source_id": str(source_id), "account_key": key, "match_method": method, "updated_at": now}
        )

    def missing(system: str, source_id: Any, reason: str) -> None:
        unmapped.append({"source": system, "source_id": str(source_id), "reason": reason, "updated_at": now})

    def too_long(key: str) -> bool:
        return len(key) > ACCOUNT_KEY_LENGTH

    paid_day = {k: as_date(v) for k, v in first_paid.items()}
    product_by_id = {r.id: r for r in products}
    customer_by_id = {r.id: r for r in customers}
    by_product: dict[str, list[Any]] = defaultdict(list)
    for cust in customers:
        if cust.product_account_id:
            by_product[cust.product_account_id].append(cust)

    # account key -> its Stripe customers (primary first) and its product account
    members: dict[str, list[str]] = {}
    product_of: dict[str, str | None] = {}
    if anchor == "stripe":
        def rank(cust: Any) -> tuple:
            return (bool(cust.is_deleted), paid_day.get(cust.id) or date.max, str(cust.created_at or ""), cust.id)

        grouped: set[str] = set()
        for product_id, group in sorted(by_product.items()):
            group = sorted(group, key=rank)
            key = group[0].id
            if too_long(key):
                for cust in group:
                    missing("stripe", cust.id, f"the customer id is {len(key)} characters; an account key holds "
                                               f"{ACCOUNT_KEY_LENGTH}")
                continue
            members[key] = [g.id for g in group]
            product_of[key] = product_id if product_id in product_by_id else None
            grouped.update(g.id for g in group)
            mapped("stripe", key, key, "self")
            for other in group[1:]:
                mapped("stripe", other.id, key, "same_product_account")
        for cust in customers:
            if cust.id in grouped or cust.id in members:
                continue
            if too_long(cust.id):
                missing("stripe", cust.id, f"the customer id is {len(cust.id)} characters; an account key holds "
                                           f"{ACCOUNT_KEY_LENGTH}")
                continue
            members[cust.id] = [cust.id]
            product_of[cust.id] = None
            mapped("stripe", cust.id, cust.id, "self")
        key_of_product = {pid: key for key, pid in product_of.items() if pid}
        for prod in products:
            key = key_of_product.get(prod.id)
            if key is None:
                missing("product", prod.id, "no Stripe customer names this product account in "
                                            "metadata.product_account_id")
            else:
                mapped("product", prod.id, key, "stripe_metadata")
    else:
        key_of_product = {}
        for prod in products:
            if too_long(prod.id):
                missing("product", prod.id, f"the product account id is {len(prod.id)} characters; an account key "
                                            f"holds {ACCOUNT_KEY_LENGTH}")
                continue
            key_of_product[prod.id] = prod.id
            members[prod.id] = [g.id for g in by_product.get(prod.id, [])]
            product_of[prod.id] = prod.id
            mapped("product", prod.id, prod.id, "self")
        for cust in customers:
            if cust.product_account_id in key_of_product:
                mapped("stripe", cust.id, cust.product_account_id, "metadata")
            elif cust.product_account_id:
                missing("stripe", cust.id, f"metadata.product_account_id {cust.product_account_id!r} is not a "
                                           "product account we know")
            else:
                missing("stripe", cust.id, "customer has no metadata.product_account_id")

    keys = set(members)
    names: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        name = _account_name(anchor, key, members, product_of, customer_by_id, product_by_id)
        if name:
            names[name.strip().lower()].append(key)
    zendesk_of: dict[str, list[int]] = defaultdict(list)
    for o in orgs:
        ext = (o.external_id or "").strip()
        candidates = names.get((o.name or "").strip().lower(), [])
        if ext in keys:
            mapped("zendesk", o.id, ext, "external_id")
            zendesk_of[ext].append(int(o.id))
        elif not ext and len(candidates) == 1:
            mapped("zendesk", o.id, candidates[0], "name")
            zendesk_of[candidates[0]].append(int(o.id))
        else:
            missing("zendesk", o.id, f"external_id {ext!r} is not an account key we know" if ext
                    else "organization has no external_id and no single account has its name")
    for a in sf_accounts:
        key = key_of_product.get(a.product_account_id or "")
        if key is None:
            missing("salesforce", a.id, f"the identity anchor is {anchor} and no account has this Account's "
                                        "Product_Account_Id__c")
        else:
            mapped("salesforce", a.id, key, "product_account_id")

    live: dict[str, list[Any]] = defaultdict(list)
    for s_ in subscriptions:
        if s_.status in _LIVE_STATUSES:
            live[s_.customer_id].append(s_)
    roster, rows = [], []
    for key in sorted(keys):
        custs = members[key]
        prod = product_by_id.get(product_of.get(key) or "")
        subs = [s_ for cid in custs for s_ in live.get(cid, [])]
        seats = sum(int(s_.quantity or 0) for s_ in subs) if subs else None
        arr = (
            sum((s_.unit_amount or 0) * (s_.quantity or 0) / 100 * _PERIODS_PER_YEAR.get(s_.interval or "", 0.0)
                for s_ in subs)
            if subs else None
        )
        paid = [d for d in (paid_day.get(cid) for cid in custs) if d is not None]
        if paid:
            since = min(paid)
        elif anchor == "product" and not custs and prod is not None:
            since = as_date(prod.created_at)
        else:
            since = None
        anchor_records = [customer_by_id[cid] for cid in custs] if anchor == "stripe" else [prod]
        deleted = all(bool(r.is_deleted) for r in anchor_records if r is not None)
        updated = [r.source_updated_at for r in anchor_records if r is not None and r.source_updated_at is not None]
        roster.append(
            {
                "id": key,
                "anchor": anchor,
                "name": _account_name(anchor, key, members, product_of, customer_by_id, product_by_id),
                "parent_id": None,
                "owner_id": None,
                "plan": prod.plan if prod is not None else None,
                "seats": seats,
                "arr": arr,
                "customer_since": since,
                "stripe_customer_id": custs[0] if custs else None,
                "product_account_id": prod.id if prod is not None else None,
                "source_updated_at": max(updated) if updated else None,
                "is_deleted": deleted,
                "extracted_at": now,
            }
        )
        zd = sorted(zendesk_of.get(key, []))
        notes = [f"{len(custs)} stripe records"] if len(custs) > 1 else []
        if len(zd) > 1:
            notes.append(f"{len(zd)} zendesk records")
        rows.append(
            {
                "account_key": key,
                "account_name": roster[-1]["name"],
                "parent_account_key": None,
                "zendesk_org_id": zd[0] if zd else None,
                "stripe_customer_id": custs[0] if custs else None,
                "product_account_id": prod.id if prod is not None else None,
                "match_notes": "; ".join(notes) or None,
                "updated_at": now,
            }
        )

    with engine.begin() as conn:
        for table in (account_crosswalk, anchor_account, account_identity_map, crosswalk_unmapped):
            conn.execute(delete(table))
        upsert_rows(conn, account_crosswalk, rows)
        upsert_rows(conn, anchor_account, roster)
        upsert_rows(conn, account_identity_map, identities)
        upsert_rows(conn, crosswalk_unmapped, unmapped)

    report.accounts = len(rows)
    for ident in identities:
        report.mapped[ident["system"]] = report.mapped.get(ident["system"], 0) + 1
    for u in unmapped:
        report.unmapped[u["source"]] = report.unmapped.get(u["source"], 0) + 1
    for row in rows:
        if row["match_notes"] and "stripe records" in row["match_notes"]:
            report.duplicates["stripe"] = report.duplicates.get("stripe", 0) + len(members[row["account_key"]]) - 1
    report.warn_if_empty()
    return report


def _account_name(
    anchor: str, key: str, members: dict[str, list[str]], product_of: dict[str, str | None],
    customers: dict[str, Any], products: dict[str, Any],
) -> str | None:  # fmt: skip
    """The account's name as the anchor knows it: the Stripe customer's (the product account's
    when the customer has none), or the product account's for the product anchor."""
    prod = products.get(product_of.get(key) or "")
    cust = customers.get(members[key][0]) if members.get(key) else None
    first, second = (cust, prod) if anchor == "stripe" else (prod, cust)
    for record in (first, second):
        if record is not None and record.name:
            return record.name
    return None
