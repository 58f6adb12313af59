"""The warehouse tables the sources fill: raw records, extraction bookkeeping, the crosswalk.

Part of the warehouse schema (``schema.py`` re-exports every table here; import them from
there). Kept in a module of its own because the signal definitions (``scoring/signals.py``) are
declared over these tables, and the stored signal input (``schema.signal_values``) takes its
columns from the signal definitions: this module comes first, the rest of the schema after.

Conventions: raw tables (``raw_*``) hold source records as extracted, keyed by the source's own
id, so an extraction re-run upserts instead of appending. Every raw row keeps
``source_updated_at`` (the source's modification stamp), ``is_deleted`` and ``extracted_at``.
Dates and times are stored as naive UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


def _bookkeeping() -> list[Column]:
    """Columns every raw table carries."""
    return [
        Column("source_updated_at", DateTime, nullable=True),
        Column("is_deleted", Boolean, nullable=False, default=False, server_default="0"),
        Column("extracted_at", DateTime, nullable=False),
    ]


# --------------------------------------------------------------------------- Salesforce
raw_sf_user = Table(
    "raw_sf_user",
    metadata,
    Column("id", String(18), primary_key=True),
    Column("name", String(255)),
    Column("email", String(255)),
    Column("title", String(255)),
    Column("role", String(80)),
    Column("is_active", Boolean),
    Column("role_id", String(18)),  # UserRoleId
    Column("parent_role_id", String(18)),  # UserRole.ParentRoleId: the role of the user's managers
    *_bookkeeping(),
)

raw_sf_account = Table(
    "raw_sf_account",
    metadata,
    Column("id", String(18), primary_key=True),
    Column("name", String(255)),
    Column("parent_id", String(18), index=True),
    Column("owner_id", String(18)),
    Column("industry", String(80)),
    Column("plan", String(40)),
    Column("seats", Integer),
    Column("arr", Float),
    Column("customer_since", Date),
    Column("product_account_id", String(40), index=True),
    Column("created_at", DateTime),
    Column("executive_sponsor_user_id", String(18)),  # our executive sponsor (a User), Executive_Sponsor_User__c
    *_bookkeeping(),
)

raw_sf_contact = Table(
    "raw_sf_contact",
    metadata,
    Column("id", String(18), primary_key=True),
    Column("account_id", String(18), index=True),
    Column("first_name", String(80)),
    Column("last_name", String(80)),
    Column("email", String(255)),
    Column("title", String(128)),
    Column("is_executive_sponsor", Boolean),
    Column("created_at", DateTime),
    *_bookkeeping(),
)

raw_sf_task = Table(
    "raw_sf_task",
    metadata,
    Column("id", String(18), primary_key=True),
    Column("account_id", String(18), index=True),
    Column("who_id", String(18)),
    Column("owner_id", String(18)),
    Column("subject", String(255)),
    Column("task_type", String(40)),
    Column("status", String(40)),
    Column("activity_date", Date),
    Column("is_executive_touch", Boolean),
    Column("outreach_responded", Boolean),
    Column("health_action_key", String(120), index=True),
    Column("created_at", DateTime, index=True),
    *_bookkeeping(),
)

raw_sf_opportunity = Table(
    "raw_sf_opportunity",
    metadata,
    Column("id", String(18), primary_key=True),
    Column("account_id", String(18), index=True),
    Column("name", String(255)),
    Column("opportunity_type", String(40)),
    Column("stage", String(40)),
    Column("amount", Float),
    Column("close_date", Date),
    Column("is_closed", Boolean),
    Column("is_won", Boolean),
    Column("created_at", DateTime),
    *_bookkeeping(),
)

raw_sf_nps_response = Table(
    "raw_sf_nps_response",
    metadata,
    Column("id", String(18), primary_key=True),
    Column("account_id", String(18), index=True),
    Column("contact_id", String(18)),
    Column("score", Integer),
    Column("comment", Text),
    Column("responded_at", DateTime, index=True),
    *_bookkeeping(),
)

# --------------------------------------------------------------------------- Zendesk
raw_zd_organization = Table(
    "raw_zd_organization",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(255)),
    Column("external_id", String(40), index=True),
    Column("created_at", DateTime),
    *_bookkeeping(),
)

raw_zd_ticket = Table(
    "raw_zd_ticket",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("organization_id", BigInteger, index=True),
    Column("subject", String(255)),
    Column("ticket_type", String(20)),
    Column("priority", String(20)),
    Column("status", String(20)),
    Column("tags", Text),  # JSON list
    Column("category", String(20)),  # how_to | complaint | other (from tags)
    Column("created_at", DateTime, index=True),
    Column("solved_at", DateTime),
    Column("reopens", Integer),
    Column("full_resolution_minutes", Integer),
    Column("requester_id", BigInteger),
    Column("requester_email", String(255)),  # the sideloaded requester's e-mail (NULL without one)
    *_bookkeeping(),
)

raw_zd_satisfaction_rating = Table(
    "raw_zd_satisfaction_rating",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("ticket_id", BigInteger, index=True),
    Column("organization_id", BigInteger, index=True),
    Column("score", String(20)),  # good | bad | offered | unoffered
    Column("created_at", DateTime, index=True),
    *_bookkeeping(),
)

# --------------------------------------------------------------------------- Stripe
raw_stripe_customer = Table(
    "raw_stripe_customer",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(255)),
    Column("name", String(255)),
    Column("salesforce_account_id", String(18), index=True),
    Column("product_account_id", String(40)),
    Column("created_at", DateTime),
    *_bookkeeping(),
)

raw_stripe_subscription = Table(
    "raw_stripe_subscription",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("customer_id", String(40), index=True),
    Column("status", String(20)),
    Column("quantity", Integer),
    Column("unit_amount", Integer),  # cents per seat per period
    Column("interval", String(10)),
    Column("created_at", DateTime),
    Column("canceled_at", DateTime),
    Column("cancel_at_period_end", Boolean),
    Column("current_period_end", DateTime),
    *_bookkeeping(),
)

raw_stripe_invoice = Table(
    "raw_stripe_invoice",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("customer_id", String(40), index=True),
    Column("subscription_id", String(40)),
    Column("charge_id", String(40), index=True),
    Column("status", String(20)),  # draft | open | paid | uncollectible | void
    Column("subtotal", Integer),  # cents
    Column("usage_amount", Integer),  # cents billed for metered usage
    Column("amount_due", Integer),
    Column("amount_paid", Integer),
    Column("attempt_count", Integer),
    Column("created_at", DateTime, index=True),
    Column("due_date", DateTime),
    Column("paid_at", DateTime),
    *_bookkeeping(),
)

raw_stripe_dispute = Table(
    "raw_stripe_dispute",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("charge_id", String(40), index=True),
    Column("amount", Integer),
    Column("status", String(30)),
    Column("reason", String(40)),
    Column("created_at", DateTime, index=True),
    *_bookkeeping(),
)

# --------------------------------------------------------------------------- product database
raw_product_account = Table(
    "raw_product_account",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(255)),
    Column("plan", String(40)),
    Column("created_at", DateTime),
    *_bookkeeping(),
)

raw_product_feature = Table(
    "raw_product_feature",
    metadata,
    Column("feature_key", String(60), primary_key=True),
    Column("name", String(120)),
    Column("is_core", Boolean),
    *_bookkeeping(),
)

raw_product_user = Table(
    # The people with a login: who they are (their e-mail is how stakeholder health matches them
    # to Salesforce contacts) and when their login was created and deactivated.
    "raw_product_user",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), index=True),
    Column("email", String(255)),
    Column("created_at", DateTime),
    Column("deactivated_at", DateTime),
    *_bookkeeping(),
)

# Daily aggregates computed in SQL at the source; the raw events never leave the product DB.
raw_product_usage_daily = Table(
    "raw_product_usage_daily",
    metadata,
    Column("account_id", String(40), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("active_users", Integer, nullable=False),
    Column("logins", Integer, nullable=False),
    Column("events", Integer, nullable=False),
    Column("extracted_at", DateTime, nullable=False),
    Index("ix_raw_product_usage_daily_day", "day"),
)

raw_product_feature_daily = Table(
    "raw_product_feature_daily",
    metadata,
    Column("account_id", String(40), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("feature_key", String(60), primary_key=True),
    Column("users", Integer, nullable=False),
    Column("events", Integer, nullable=False),
    Column("extracted_at", DateTime, nullable=False),
    Index("ix_raw_product_feature_daily_day", "day"),
)

raw_product_event_daily = Table(
    # Per account, day and event name (the source mapping's events.event_name): the event-type
    # level of the same stream, for signals of products whose events say what was done.
    "raw_product_event_daily",
    metadata,
    Column("account_id", String(40), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("event_name", String(255), primary_key=True),
    Column("users", Integer, nullable=False),
    Column("events", Integer, nullable=False),
    Column("extracted_at", DateTime, nullable=False),
    Index("ix_raw_product_event_daily_day", "day"),
)

raw_product_user_daily = Table(
    # Per user and day (a user with no event that day has no row): the stakeholder-level view of
    # the same events, for the recent window stakeholder health reads (sources.product_users).
    "raw_product_user_daily",
    metadata,
    Column("account_id", String(40), primary_key=True),
    Column("user_id", String(40), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("logins", Integer, nullable=False),
    Column("core_actions", Integer, nullable=False),  # uses of a core feature (features.is_core)
    Column("events", Integer, nullable=False),
    Column("extracted_at", DateTime, nullable=False),
    Index("ix_raw_product_user_daily_day", "day"),
)

# --------------------------------------------------------------------------- extraction bookkeeping
extraction_watermarks = Table(
    "extraction_watermarks",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("object", String(60), primary_key=True),
    Column("watermark", String(80), nullable=False),  # ISO timestamp, cursor or date
    Column("rows_total", Integer, nullable=False, default=0),
    Column("updated_at", DateTime, nullable=False),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("object", String(60), primary_key=True),
    Column("record_id", String(80), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("payload", Text),  # JSON of the record as received
    Column("first_seen_at", DateTime, nullable=False),
    Column("last_seen_at", DateTime, nullable=False),
    Column("times_seen", Integer, nullable=False, default=1),
)

# --------------------------------------------------------------------------- crosswalk
account_crosswalk = Table(
    "account_crosswalk",
    metadata,
    Column("account_key", String(18), primary_key=True),  # Salesforce 18-char Account Id
    Column("account_name", String(255)),
    Column("parent_account_key", String(18), index=True),
    Column("zendesk_org_id", BigInteger, index=True),
    Column("stripe_customer_id", String(40), index=True),
    Column("product_account_id", String(40), index=True),
    Column("match_notes", Text),
    Column("updated_at", DateTime, nullable=False),
)

account_identity_map = Table(
    # Every source identity mapped to its account (several Zendesk orgs or Stripe customers can
    # map to one account: duplicates in the source systems). Signal SQL joins through this.
    "account_identity_map",
    metadata,
    Column("system", String(20), primary_key=True),  # salesforce | zendesk | stripe | product
    Column("source_id", String(80), primary_key=True),
    Column("account_key", String(18), nullable=False, index=True),
    Column("match_method", String(40), nullable=False),  # e.g. external_id, external_id_15, metadata, email
    Column("updated_at", DateTime, nullable=False),
)

anchor_account = Table(
    # The accounts of a company whose identity is anchored on billing or on the product
    # (source mapping ``identity.anchor: stripe | product``), one row per account, written by the
    # crosswalk from the anchor system's records. Its columns carry raw_sf_account's names, so the
    # signals read the roster from either. Empty with the default Salesforce anchor.
    "anchor_account",
    metadata,
    Column("id", String(18), primary_key=True),  # the anchor's id: Stripe customer or product account
    Column("anchor", String(20), nullable=False),  # stripe | product
    Column("name", String(255)),
    Column("parent_id", String(18)),  # no hierarchy outside a CRM: NULL
    Column("owner_id", String(18)),  # no account owner outside a CRM: NULL
    Column("plan", String(40)),
    Column("seats", Integer),
    Column("arr", Float),
    Column("customer_since", Date),  # the first paid (non-zero) invoice; see sources.crosswalk
    Column("stripe_customer_id", String(40)),
    Column("product_account_id", String(40)),
    *_bookkeeping(),
)

crosswalk_unmapped = Table(
    "crosswalk_unmapped",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("source_id", String(80), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

__all__ = ["NAMING", "metadata", "raw_sf_user", "raw_sf_account", "raw_sf_contact", "raw_sf_task", "raw_sf_opportunity", "raw_sf_nps_response", "raw_zd_organization", "raw_zd_ticket", "raw_zd_satisfaction_rating", "raw_stripe_customer", "raw_stripe_subscription", "raw_stripe_invoice", "raw_stripe_dispute", "raw_product_account", "raw_product_feature", "raw_product_user", "raw_product_usage_daily", "raw_product_feature_daily", "raw_product_event_daily", "raw_product_user_daily", "extraction_watermarks", "quarantine", "account_crosswalk", "account_identity_map", "anchor_account", "crosswalk_unmapped"]  # fmt: skip
