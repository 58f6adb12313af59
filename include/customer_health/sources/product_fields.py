"""What the product reads from your application database: one list, read by everything.

The product extraction (``sources.product``) aggregates usage inside the application database
and reads three of its tables: the accounts, the feature catalogue and the event stream. Each
table, column and event name here has a *mapping key* (``events.occurred_at``,
``event_names.login``) and a default name; a database whose tables or columns are called
otherwise maps the keys to its own names in the source mapping (``sources.mapping``,
``config/sources.yaml``). The preflight (``customer_health.preflight``) checks that every mapped
table and column exists, and the README's table "Product database the product needs" is
generated from this list (``readme_table``).

The feature catalogue is *optional*: map ``tables.features`` to ``null`` (and with it
``events.feature_key`` and ``event_names.feature_used``) and feature adoption is simply absent:
no feature aggregates are read, the signals that need them are NULL and their weight moves to
the other signals. So is the ``users`` table (stakeholder health, person by person). A column
marked "with tables.X" is required when table X is mapped. ``accounts.name`` and
``accounts.plan`` are optional: unmapped, they are NULL in the warehouse (never a made-up value).
"""

from __future__ import annotations

from dataclasses import dataclass

# The optional groups: everything that only exists with a feature catalogue, or a users table.
FEATURES = "features"
USERS = "users"


@dataclass(frozen=True)
class ProductTable:
    """One table of the application database the product reads."""

    key: str  # the mapping key (tables.<key>) and the default table name
    required: bool
    meaning: str
    group: str | None = None  # optional together with the other entries of its group


@dataclass(frozen=True)
class ProductColumn:
    """One column of a product table, and what the product takes it for."""

    table: str  # the table's key
    key: str  # the default column name
    holds: str  # what the column holds, in words (for the README and the preflight's fixes)
    required: bool
    meaning: str
    group: str | None = None

    @property
    def mapping_key(self) -> str:
        """``<table>.<column>``, e.g. ``events.occurred_at``."""
        return f"{self.table}.{self.key}"


@dataclass(frozen=True)
class ProductEvent:
    """An event name the product counts (a bound value, never part of the SQL text)."""

    key: str  # the mapping key (event_names.<key>) and the default event name
    required: bool
    meaning: str
    group: str | None = None


PRODUCT_TABLES: tuple[ProductTable, ...] = (
    ProductTable("accounts", True, "One row per customer account of the product."),
    ProductTable("features", False, "The feature catalogue: which features carry the product's value. Optional: "
                 "without it feature adoption is absent and its weight moves to the other signals.", FEATURES),
    ProductTable("users", False, "The people with a login, for stakeholder health (each person's activity). "
                 "Optional: without it stakeholder-level engagement is absent.", USERS),
    ProductTable("events", True, "The usage stream, one row per event. Aggregated per account and day inside the "
                 "database; raw events never leave it."),
)

PRODUCT_COLUMNS: tuple[ProductColumn, ...] = (
    ProductColumn("accounts", "id", "text", True,
                  "The account's id: Salesforce's Product_Account_Id__c and Stripe's metadata.product_account_id "
                  "name it."),
    ProductColumn("accounts", "name", "text", False, "The account's name."),
    ProductColumn("accounts", "plan", "text", False, "The account's plan in the product."),
    ProductColumn("accounts", "created_at", "timestamp (UTC)", True, "When the account was created."),
    ProductColumn("features", "feature_key", "text", False, "The feature's key, as events name it.", FEATURES),
    ProductColumn("features", "name", "text", False, "The feature's name, as CSMs read it."),
    ProductColumn("features", "is_core", "boolean", False,
                  "Whether the feature carries the product's value: adoption breadth is measured over these.",
                  FEATURES),
    ProductColumn("users", "id", "text or number", False, "The user's id, as events.user_id names it.", USERS),
    ProductColumn("users", "account_id", "text", False, "The user's account (accounts.id).", USERS),
    ProductColumn("users", "email", "text", False,
                  "The user's e-mail: how a person in the product is matched to a Salesforce contact.", USERS),
    ProductColumn("users", "created_at", "timestamp (UTC)", False, "When the login was created.", USERS),
    ProductColumn("users", "deactivated_at", "timestamp (UTC), NULL while active", False,
                  "When the login was deactivated (the person left, or the seat was removed).", USERS),
    ProductColumn("events", "account_id", "text", True, "The account the event belongs to (accounts.id)."),
    ProductColumn("events", "user_id", "text or number", True, "The user who did it: active users are counted by it."),
    ProductColumn("events", "event_name", "text", True, "What happened: the login event, the feature event, others."),
    ProductColumn("events", "feature_key", "text", False, "For the feature event: which feature (features.feature_key).",
                  FEATURES),
    ProductColumn("events", "occurred_at", "timestamp (UTC)", True,
                  "When it happened. Index it: every read is a range of it."),
)

PRODUCT_EVENTS: tuple[ProductEvent, ...] = (
    ProductEvent("login", True, "The event that is a login (a session start): counted as logins."),
    ProductEvent("feature_used", False, "The event that records the use of a feature, named in events.feature_key.",
                 FEATURES),
)

TABLES_BY_KEY: dict[str, ProductTable] = {t.key: t for t in PRODUCT_TABLES}
COLUMNS_BY_KEY: dict[str, ProductColumn] = {c.mapping_key: c for c in PRODUCT_COLUMNS}
EVENTS_BY_KEY: dict[str, ProductEvent] = {e.key: e for e in PRODUCT_EVENTS}


def readme_table() -> str:
    """The README's table of the product database's tables, columns and event names."""
    lines = [
        "| Mapping key | Default | Holds | Required | What it means |",
        "|---|---|---|---|---|",
    ]
    for t in PRODUCT_TABLES:
        lines.append(f"| `tables.{t.key}` | `{t.key}` | a table | {_required(t.required, None)} | {t.meaning} |")
    for c in PRODUCT_COLUMNS:
        lines.append(f"| `columns.{c.mapping_key}` | `{c.key}` | {c.holds} | {_required(c.required, c.group)} "
                     f"| {c.meaning} |")
    for e in PRODUCT_EVENTS:
        lines.append(f"| `event_names.{e.key}` | `'{e.key}'` | an event name | {_required(e.required, e.group)} "
                     f"| {e.meaning} |")
    return "\n".join(lines)


def _required(required: bool, group: str | None) -> str:
    if required:
        return "yes"
    return f"with `tables.{group}`" if group else "optional"


__all__ = [
    "COLUMNS_BY_KEY",
    "EVENTS_BY_KEY",
    "FEATURES",
    "USERS",
    "PRODUCT_COLUMNS",
    "PRODUCT_EVENTS",
    "PRODUCT_TABLES",
    "TABLES_BY_KEY",
    "ProductColumn",
    "ProductEvent",
    "ProductTable",
    "readme_table",
]
