"""Small hand-made raw worlds for the signal tests.

``RawWorld`` collects raw-table rows (with the identity map and crosswalk rows that tie them to
accounts) through methods named after the source objects, fills the bookkeeping columns, and
upserts everything into a warehouse with ``save``. Ids are generated when not given, so a test
names only what its specification is about.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, Table

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
        status: str = "Completed",
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
