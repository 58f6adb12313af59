"""Small hand-made raw worlds for the signal tests.

``RawWorld`` collects raw-table rows (with the identity map and crosswalk rows that tie them to
accounts) through methods named after the source objects, fills the bookkeeping columns, and
upserts everything into a warehouse with ``save``. Ids are generated when not given, so a test
names only what its specification is about.

``rich_account`` gives one account data for every signal (systems can be left out);
``random_company`` draws a small company of a few accounts with a bit of everything - missing
systems, deleted records, late payments, churn - from a seed, for the property tests.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Table

from customer_health.scoring.signals import compute_signals, compute_signals_range
from customer_health.warehouse.io import upsert_rows
from customer_health.warehouse.schema import (
    account_crosswalk,
    account_identity_map,
    raw_product_account,
    raw_product_feature,
    raw_product_feature_daily,
    raw_product_usage_daily,
    raw_sf_account,
    raw_sf_nps_response,
    raw_sf_opportunity,
    raw_sf_task,
    raw_stripe_customer,
    raw_stripe_dispute,
    raw_stripe_invoice,
    raw_stripe_subscription,
    raw_zd_organization,
    raw_zd_satisfaction_rating,
    raw_zd_ticket,
)

EXTRACTED_AT = datetime(2030, 1, 1)


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    """A naive-UTC instant on ``day`` (noon by default)."""
    return datetime.combine(day, time(hour, minute))


def days(n: int) -> timedelta:
    return timedelta(days=n)


def both_ways(engine: Engine, as_of: date, account_keys: list[str] | None = None) -> pd.DataFrame:
    """The signals of ``as_of`` pushed down to SQL (the daily run's evaluation), after checking
    that the vectorized evaluation of the same single date (the rebuild's) gives the same frame."""
    daily = compute_signals(engine, as_of, account_keys)
    ranged = compute_signals_range(engine, as_of, as_of, account_keys)
    pd.testing.assert_frame_equal(ranged, daily, check_exact=False, rtol=1e-12, check_dtype=False)
    return daily


def row(frame: pd.DataFrame, account_key: str) -> pd.Series:
    """The one row of ``account_key`` in a signals frame."""
    rows = frame[frame["account_key"] == account_key]
    assert len(rows) == 1, f"expected one row for {account_key}, got {len(rows)}"
    return rows.iloc[0]


def is_nan(value: float | None) -> bool:
    """A missing signal value (NULL or NaN)."""
    return value is None or math.isnan(value)


class RawWorld:
    """Rows for the raw tables, the identity map and the crosswalk, saved with ``save``."""

    def __init__(self, id_offset: int = 0) -> None:
        self.rows: dict[Table, dict[tuple, dict[str, Any]]] = defaultdict(dict)
        self._ids = itertools.count(id_offset + 1)

    # ------------------------------------------------------------------ bookkeeping
    def _next(self) -> int:
        return next(self._ids)

    def _put(self, table: Table, row: dict[str, Any]) -> dict[str, Any]:
        if "is_deleted" in table.c:
            row.setdefault("is_deleted", False)
            row.setdefault("source_updated_at", None)
        row.setdefault("extracted_at", EXTRACTED_AT)
        key = tuple(row[c.name] for c in table.primary_key.columns)
        self.rows[table][key] = row
        return row

    def _map(self, system: str, source_id: str, account_key: str) -> None:
        self.rows[account_identity_map][(system, source_id)] = {
            "system": system,
            "source_id": source_id,
            "account_key": account_key,
            "match_method": "external_id",
            "updated_at": EXTRACTED_AT,
        }

    def save(self, engine: Engine) -> None:
        """Upsert every collected row (re-saving a world overwrites, never duplicates)."""
        with engine.begin() as conn:
            for table, rows in self.rows.items():
                by_shape: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
                for row in rows.values():
                    by_shape[tuple(sorted(row))].append(row)
                for same_keys in by_shape.values():
                    upsert_rows(conn, table, same_keys)

    # ------------------------------------------------------------------ Salesforce
    def account(
        self,
        customer_since: date,
        key: str | None = None,
        plan: str = "growth",
        seats: int | None = 10,
        arr: float | None = 12_000.0,
        owner_id: str = "005000000000000AAA",
        parent_id: str | None = None,
    ) -> str:
        """A Salesforce Account (and its crosswalk row); returns the account key."""
        key = key or f"001{self._next():015d}"
        self._put(
            raw_sf_account,
            {
                "id": key,
                "name": f"Account {key[-4:]}",
                "parent_id": parent_id,
                "owner_id": owner_id,
                "plan": plan,
                "seats": seats,
                "arr": arr,
                "customer_since": customer_since,
                "created_at": at(customer_since),
            },
        )
        self.rows[account_crosswalk][(key,)] = {
            "account_key": key,
            "account_name": f"Account {key[-4:]}",
            "parent_account_key": parent_id,
            "updated_at": EXTRACTED_AT,
        }
        return key

    def nps(self, account_key: str, score: int, responded_at: datetime, contact_id: str | None = None) -> str:
        nps_id = f"a0N{self._next():015d}"
        self._put(
            raw_sf_nps_response,
            {
                "id": nps_id,
                "account_id": account_key,
                "contact_id": contact_id,
                "score": score,
                "responded_at": responded_at,
            },
        )
        return nps_id

    def task(
        self,
        account_key: str,
        activity_date: date,
        created_at: datetime | None = None,
        is_executive_touch: bool = False,
        outreach_responded: bool | None = None,
        status: str | None = "Completed",
        task_type: str = "Call",
        modified_at: datetime | None = None,
    ) -> str:
        """A Salesforce Task; ``modified_at`` is its SystemModstamp (e.g. when a reply was logged)."""
        task_id = f"00T{self._next():015d}"
        self._put(
            raw_sf_task,
            {
                "id": task_id,
                "account_id": account_key,
                "subject": "touch",
                "task_type": task_type,
                "status": status,
                "activity_date": activity_date,
                "is_executive_touch": is_executive_touch,
                "outreach_responded": outreach_responded,
                "created_at": created_at or at(activity_date),
                "source_updated_at": modified_at,
            },
        )
        return task_id

    def opportunity(self, account_key: str, close_date: date, kind: str = "Renewal", won: bool = True) -> str:
        """A closed Salesforce Opportunity (renewals and expansions; no signal reads them)."""
        opportunity_id = f"006{self._next():015d}"
        self._put(
            raw_sf_opportunity,
            {
                "id": opportunity_id, "account_id": account_key, "name": f"{kind} {opportunity_id[-4:]}",
                "opportunity_type": kind, "stage": "Closed Won" if won else "Closed Lost", "amount": 10_000.0,
                "close_date": close_date, "is_closed": True, "is_won": won, "created_at": at(close_date - days(30)),
            },
        )  # fmt: skip
        return opportunity_id

    # ------------------------------------------------------------------ product
    def product_account(self, account_key: str, created_at: datetime | None = None) -> str:
        product_id = f"prod-{self._next()}"
        self._put(raw_product_account, {"id": product_id, "name": product_id, "created_at": created_at})
        self._map("product", product_id, account_key)
        return product_id

    def feature(self, feature_key: str, is_core: bool = True) -> None:
        self._put(raw_product_feature, {"feature_key": feature_key, "name": feature_key, "is_core": is_core})

    def usage(self, product_id: str, day: date, active_users: int, logins: int, events: int = 0) -> None:
        self._put(
            raw_product_usage_daily,
            {"account_id": product_id, "day": day, "active_users": active_users, "logins": logins, "events": events},
        )

    def feature_use(self, product_id: str, day: date, feature_key: str, events: int, users: int = 1) -> None:
        self._put(
            raw_product_feature_daily,
            {"account_id": product_id, "day": day, "feature_key": feature_key, "users": users, "events": events},
        )

    # ------------------------------------------------------------------ Zendesk
    def zendesk_org(self, account_key: str) -> int:
        org_id = 360_000 + self._next()
        self._put(raw_zd_organization, {"id": org_id, "name": f"org {org_id}", "external_id": account_key})
        self._map("zendesk", str(org_id), account_key)
        return org_id

    def ticket(
        self,
        org_id: int,
        created_at: datetime,
        solved_at: datetime | None = None,
        priority: str = "normal",
        category: str = "other",
        reopens: int = 0,
        minutes: int | None = None,
        status: str | None = None,
    ) -> int:
        ticket_id = self._next()
        if minutes is None and solved_at is not None:
            minutes = int((solved_at - created_at).total_seconds() // 60)
        self._put(
            raw_zd_ticket,
            {
                "id": ticket_id,
                "organization_id": org_id,
                "subject": "help",
                "priority": priority,
                "status": status or ("solved" if solved_at else "open"),
                "category": category,
                "created_at": created_at,
                "solved_at": solved_at,
                "reopens": reopens,
                "full_resolution_minutes": minutes,
            },
        )
        return ticket_id

    def rating(self, org_id: int, score: str, created_at: datetime, ticket_id: int | None = None) -> int:
        rating_id = self._next()
        self._put(
            raw_zd_satisfaction_rating,
            {"id": rating_id, "ticket_id": ticket_id, "organization_id": org_id, "score": score, "created_at": created_at},
        )
        return rating_id

    # ------------------------------------------------------------------ Stripe
    def stripe_customer(self, account_key: str, created_at: datetime | None = None) -> str:
        customer_id = f"cus_{self._next()}"
        self._put(
            raw_stripe_customer,
            {"id": customer_id, "salesforce_account_id": account_key, "created_at": created_at},
        )
        self._map("stripe", customer_id, account_key)
        return customer_id

    def subscription(
        self,
        customer_id: str,
        created_at: datetime,
        unit_amount: int = 10_000,
        quantity: int = 10,
        interval: str = "month",
        canceled_at: datetime | None = None,
        cancel_at_period_end: bool = False,
        current_period_end: datetime | None = None,
        status: str | None = None,
    ) -> str:
        sub_id = f"sub_{self._next()}"
        self._put(
            raw_stripe_subscription,
            {
                "id": sub_id,
                "customer_id": customer_id,
                "status": status or ("canceled" if canceled_at else "active"),
                "quantity": quantity,
                "unit_amount": unit_amount,
                "interval": interval,
                "created_at": created_at,
                "canceled_at": canceled_at,
                "cancel_at_period_end": cancel_at_period_end,
                "current_period_end": current_period_end,
            },
        )
        return sub_id

    def invoice(
        self,
        customer_id: str,
        created_at: datetime,
        subtotal: int = 100_000,
        subscription_id: str | None = None,
        usage_amount: int = 0,
        due_date: datetime | None = None,
        paid_at: datetime | None = None,
        attempt_count: int = 1,
        status: str | None = None,
        charge_id: str | None = None,
    ) -> str:
        invoice_id = f"in_{self._next()}"
        self._put(
            raw_stripe_invoice,
            {
                "id": invoice_id,
                "customer_id": customer_id,
                "subscription_id": subscription_id,
                "charge_id": charge_id,
                "status": status or ("paid" if paid_at else "open"),
                "subtotal": subtotal,
                "usage_amount": usage_amount,
                "amount_due": subtotal,
                "amount_paid": subtotal if paid_at else 0,
                "attempt_count": attempt_count,
                "created_at": created_at,
                "due_date": due_date,
                "paid_at": paid_at,
            },
        )
        return invoice_id

    def dispute(self, charge_id: str, created_at: datetime) -> str:
        dispute_id = f"dp_{self._next()}"
        self._put(
            raw_stripe_dispute,
            {"id": dispute_id, "charge_id": charge_id, "amount": 100, "status": "needs_response", "created_at": created_at},
        )
        return dispute_id

    # ------------------------------------------------------------------ edits
    def update(self, table: Table, key: tuple, **changes: Any) -> None:
        """Change a collected row in place (e.g. a ticket solved, an invoice paid)."""
        self.rows[table][key].update(changes)

    def without(self, *tables: Table) -> RawWorld:
        """The same world with every row of ``tables`` left out (a source with no records)."""
        other = RawWorld()
        other.rows = defaultdict(dict, {t: rows for t, rows in self.rows.items() if t not in tables})
        other._ids = self._ids
        return other


def contact_of(account_key: str, n: int) -> str:
    """The Salesforce Contact Id of an account's ``n``-th contact."""
    return f"003{account_key[3:17]}{n}"


def rich_account(
    w: RawWorld,
    as_of: date,
    customer_since: date,
    *,
    product: bool = True,
    zendesk: bool = True,
    stripe: bool = True,
) -> dict[str, Any]:
    """An account with data for every signal as of ``as_of`` (records reach back 18 months, so
    a window that lies inside the tenure has data), and handles to its records for later edits.
    ``product``, ``zendesk``, ``stripe``: whether the account is connected to that system."""
    D = as_of
    acme = w.account(customer_since, seats=10)
    handles: dict[str, Any] = {"acme": acme}
    w.feature("reports")
    w.feature("alerts")
    if product:
        handles["product"] = product_id = w.product_account(acme)
        for back in range(100):
            w.usage(product_id, D - days(back), active_users=3 + back % 4, logins=5 + back % 7)
            if back % 3 == 0:
                w.feature_use(product_id, D - days(back), "reports", events=7)
    if zendesk:
        handles["org"] = org = w.zendesk_org(acme)
        handles["open_ticket"] = w.ticket(org, at(D - days(10)), priority="high", category="how_to")
        for k in range(4):
            w.ticket(org, at(D - days(20 + k)), solved_at=at(D - days(18 + k)), category="complaint", reopens=1)
            w.ticket(org, at(D - days(120 + k)), solved_at=at(D - days(119 + k)), minutes=500 + k)
        w.rating(org, "good", at(D - days(3)))
        w.rating(org, "bad", at(D - days(30)))
    if stripe:
        handles["customer"] = cus = w.stripe_customer(acme)
        handles["subscription"] = sub = w.subscription(cus, at(D - days(600)), unit_amount=10_000)
        handles["unpaid_invoices"] = []
        for month in range(18):
            created = D - days(30 * month)
            paid = month % 4 != 0
            invoice = w.invoice(
                cus, at(created), subtotal=100_000 + 5_000 * (month < 3), usage_amount=5_000 + 100 * month,
                subscription_id=sub, due_date=at(created + days(14)),
                paid_at=at(created + days(3)) if paid else None, charge_id=f"ch_{acme}_{month}",
            )  # fmt: skip
            if not paid:
                handles["unpaid_invoices"].append(invoice)
        w.dispute(f"ch_{acme}_2", at(D - days(10)))
    w.nps(acme, 9, at(D - days(40)), contact_id=contact_of(acme, 1))
    w.nps(acme, 3, at(D - days(10)), contact_id=contact_of(acme, 2))
    w.task(acme, D - days(12), is_executive_touch=True)
    w.task(acme, D - days(5), outreach_responded=True)
    w.task(acme, D - days(6), outreach_responded=False)
    handles["unanswered_outreach"] = w.task(acme, D - days(2), outreach_responded=False, modified_at=at(D - days(2)))
    return handles


# --------------------------------------------------------------------------- random companies
SOURCE_TABLES: dict[str, tuple[Table, ...]] = {
    "tasks": (raw_sf_task,),
    "opportunities": (raw_sf_opportunity,),
    "nps": (raw_sf_nps_response,),
    "tickets": (raw_zd_ticket,),
    "ratings": (raw_zd_satisfaction_rating,),
    "disputes": (raw_stripe_dispute,),
    "invoices": (raw_stripe_invoice,),
    "product events": (raw_product_usage_daily, raw_product_feature_daily),
}
"""The source tables a company may have no record in, by what a person would call them."""


def random_company(seed: int, as_of: date, accounts: int = 5, history_days: int = 420) -> RawWorld:
    """A small company drawn from ``seed``: ``accounts`` accounts with customer_since up to
    ``history_days`` before ``as_of``, each connected to a random set of systems, with records
    of every kind before and after ``as_of`` (late payments, reopened and deleted tickets,
    cancellations at period end, duplicate identities, executive touches, outreach replies)."""
    rng = np.random.default_rng(seed)
    w = RawWorld()
    D = as_of
    start = D - days(history_days)

    def when(lo: int = -history_days, hi: int = 5) -> datetime:
        """A random instant between ``lo`` and ``hi`` days from ``as_of``."""
        return at(D + days(int(rng.integers(lo, hi + 1))), int(rng.integers(0, 24)), int(rng.integers(0, 60)))

    features = ["reports", "alerts", "exports", "beta_lab"]
    for key in features:
        w.feature(key, is_core=key != "beta_lab")
    if rng.random() < 0.2:
        w.update(raw_product_feature, ("alerts",), is_deleted=True, source_updated_at=when(-60, 2))
    keys = []
    for _ in range(accounts):
        since = start + days(int(rng.integers(0, history_days)))
        seats = [None, 3, 10, 40][int(rng.integers(0, 4))]
        parent = keys[0] if keys and rng.random() < 0.2 else None
        key = w.account(since, plan=["starter", "growth", "enterprise"][int(rng.integers(0, 3))], seats=seats,
                        arr=None if seats is None else 1_200.0 * seats, parent_id=parent)  # fmt: skip
        keys.append(key)
        if rng.random() < 0.1:
            w.update(raw_sf_account, (key,), is_deleted=True, source_updated_at=when(-30, 5))
        if rng.random() < 0.8:
            for _ in range(1 + int(rng.random() < 0.15)):
                product = w.product_account(key, created_at=when(-history_days, 3) if rng.random() < 0.3 else None)
                for back in rng.choice(130, size=int(rng.integers(0, 70)), replace=False):
                    day = D + days(3) - days(int(back))
                    w.usage(product, day, active_users=int(rng.integers(0, 12)), logins=int(rng.integers(0, 40)))
                    if rng.random() < 0.5:
                        feature = features[int(rng.integers(0, len(features)))]
                        w.feature_use(product, day, feature, events=int(rng.integers(0, 20)))
        if rng.random() < 0.75:
            for _ in range(1 + int(rng.random() < 0.15)):
                org = w.zendesk_org(key)
                for _ in range(int(rng.integers(0, 14))):
                    created = when(-250, 3)
                    solved = created + timedelta(hours=float(rng.exponential(200))) if rng.random() < 0.7 else None
                    ticket = w.ticket(
                        org, created, solved_at=solved, priority=["low", "normal", "high", "urgent"][int(rng.integers(0, 4))],
                        category=["how_to", "complaint", "other"][int(rng.integers(0, 3))], reopens=int(rng.integers(0, 3)),
                        status="closed" if solved is None and rng.random() < 0.1 else None,
                    )  # fmt: skip
                    if rng.random() < 0.1:
                        w.update(raw_zd_ticket, (ticket,), is_deleted=True, source_updated_at=when(-20, 3))
                    if solved is not None and rng.random() < 0.5:
                        w.rating(org, ["good", "bad", "offered"][int(rng.integers(0, 3))], solved + timedelta(hours=5))
        if rng.random() < 0.8:
            cus = w.stripe_customer(key, created_at=at(since) if rng.random() < 0.5 else None)
            sub_start = at(since - days(int(rng.integers(0, 20))))
            canceled = when(-200, 3) if rng.random() < 0.3 else None
            at_period_end = canceled is not None and rng.random() < 0.5
            sub = w.subscription(
                cus, sub_start, unit_amount=[5_000, 10_000, 0][int(rng.integers(0, 3))],
                interval=["month", "year"][int(rng.random() < 0.2)], canceled_at=canceled,
                cancel_at_period_end=at_period_end,
                current_period_end=canceled + days(int(rng.integers(1, 30))) if at_period_end else None,
            )  # fmt: skip
            if canceled is not None and rng.random() < 0.3:
                w.subscription(cus, canceled + days(int(rng.integers(1, 20))))  # came back
            created = sub_start.date()
            n = 0
            while created <= D + days(3):
                late = rng.random()
                paid = None if late < 0.1 else at(created + days(int(rng.integers(0, 30))))
                w.invoice(
                    cus, at(created), subtotal=int(rng.integers(1, 30)) * 1_000 * (1 + (n > 6)),
                    usage_amount=int(rng.integers(0, 5)) * 500, subscription_id=sub if rng.random() < 0.9 else None,
                    due_date=at(created + days(14)) if rng.random() < 0.7 else None, paid_at=paid,
                    attempt_count=int(rng.integers(1, 4)), status="void" if rng.random() < 0.05 else None,
                    charge_id=f"ch_{key}_{n}",
                )  # fmt: skip
                if rng.random() < 0.08:
                    w.dispute(f"ch_{key}_{n}", at(created + days(int(rng.integers(1, 40)))))
                created += days(30)
                n += 1
        for _ in range(int(rng.integers(0, 6))):
            w.nps(key, int(rng.integers(0, 11)), when(-400, 3), contact_id=contact_of(key, int(rng.integers(0, 3))))
        for _ in range(int(rng.integers(0, 10))):
            activity = when(-400, 3).date()
            kind = rng.random()
            w.task(
                key, activity, created_at=at(activity + days(int(rng.integers(0, 4)))),
                is_executive_touch=kind < 0.4, outreach_responded=None if kind < 0.5 else bool(rng.random() < 0.5),
                status=["Completed", "Not Started", None][int(rng.integers(0, 3))],
                modified_at=at(activity + days(int(rng.integers(0, 10)))) if rng.random() < 0.5 else None,
            )  # fmt: skip
        for _ in range(int(rng.integers(0, 3))):
            w.opportunity(key, (when(-300, 3)).date(), kind=["Renewal", "Expansion"][int(rng.integers(0, 2))])
    return w
