"""The account roster: the one table that lists a company's accounts, whatever anchors identity.

With the default identity anchor (``identity.anchor: salesforce`` in the source mapping) the
accounts are the Salesforce Accounts (``raw_sf_account``). A company without a CRM anchors
identity on billing or on the product (``stripe`` / ``product``); the crosswalk then writes its
accounts to ``anchor_account``, which carries ``raw_sf_account``'s column names for what both
know (name, plan, seats, ARR, customer since, owner, parent). Everything that shows or decides
on an account's identity - the signals' population, the dashboard's account page, the actions'
account names and plans - reads it through ``roster_table``, so an anchored company's accounts
are not blank where a Salesforce company's are filled in.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table, null

from customer_health.warehouse.raw_schema import anchor_account, raw_sf_account


def roster_table() -> Table:
    """``raw_sf_account``, or ``anchor_account`` when the source mapping anchors identity elsewhere."""
    from customer_health.sources.mapping import active_mapping

    return raw_sf_account if active_mapping().identity_anchor == "salesforce" else anchor_account


def roster_column(table: Table, name: str) -> ColumnElement:
    """Column ``name`` of a roster table, or a NULL labelled ``name`` when that table has none
    (``industry`` and ``executive_sponsor_user_id`` exist only in a CRM)."""
    return table.c[name] if name in table.c else null().label(name)
