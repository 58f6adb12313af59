"""The warehouse schema, in SQLAlchemy Core.

This module is the single description of every warehouse table. The database itself is created
and upgraded only by the Alembic migrations in ``warehouse/migrations`` (``upgrade_to_head``);
a test checks that the migrations and this module agree.

Conventions
-----------
* Raw tables (``raw_*``) hold source records as extracted, keyed by the source's own id, so an
  extraction re-run upserts instead of appending. Every raw row keeps ``source_updated_at`` (the
  source's modification stamp), ``is_deleted`` and ``extracted_at``. Dates and times are stored
  as naive UTC.
* ``account_key`` is the warehouse's own account identity: the 18-character Salesforce Account
  Id, which the crosswalk maps every other system's identity onto.
* Score history is keyed by (account, as-of date, model version) and overwritten on re-run.
* Actions go through ``action_outbox``, keyed by a deterministic idempotency key.
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
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
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

crosswalk_unmapped = Table(
    "crosswalk_unmapped",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("source_id", String(80), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# --------------------------------------------------------------------------- scoring
# One row per account and as-of date: who the account was that day (plan, seats, ARR, tenure,
# parent, owner) and the raw value of every catalogued signal (NULL: no data). Scoring reads a
# date's whole input back from here (sharded signal computation, rebuilds, audits) instead of
# recomputing it. Wide - one column per signal of ``scoring.signal_catalog.SIGNALS`` - so a
# year of history for 10,000 accounts is 3.65M rows, not 66M; a new catalogued signal is a
# new column (a migration). Keyed date first: a date is read, cleared and appended as one
# contiguous range; on SQLite the table is clustered on that key (WITHOUT ROWID).
SIGNAL_VALUE_COLUMNS: tuple[str, ...] = (
    "login_frequency",
    "active_user_ratio",
    "feature_breadth",
    "feature_depth",
    "engagement_trend",
    "open_tickets",
    "severity_mix",
    "resolution_time_trend",
    "howto_complaint_ratio",
    "reopen_rate",
    "csat",
    "payment_timeliness",
    "payment_failures",
    "contract_value_change",
    "usage_billing_trend",
    "nps",
    "exec_sponsor_recency",
    "outreach_response",
)

signal_values = Table(
    "signal_values",
    metadata,
    Column("as_of_date", Date, primary_key=True),
    Column("account_key", String(18), primary_key=True),
    Column("plan", String(40)),
    Column("seats", Float),
    Column("arr", Float),
    Column("customer_since", Date),
    Column("tenure_days", Integer),
    Column("parent_account_key", String(18)),
    Column("owner_id", String(18)),
    *[Column(key, Float, nullable=True) for key in SIGNAL_VALUE_COLUMNS],
    sqlite_with_rowid=False,
)

health_scores = Table(
    "health_scores",
    metadata,
    Column("account_key", String(18), nullable=False),
    Column("as_of_date", Date, nullable=False),
    Column("model_version", String(40), nullable=False),
    Column("segment", String(60)),
    Column("score", Integer, nullable=False),  # effective score (override applied)
    Column("computed_score", Integer, nullable=False),  # what the model computed
    Column("zone", String(20), nullable=False),
    Column("previous_zone", String(20)),
    Column("coverage", Float, nullable=False),
    Column("engagement_score", Float),
    Column("support_score", Float),
    Column("financial_score", Float),
    Column("sentiment_score", Float),
    Column("delta_30", Float),
    Column("delta_60", Float),
    Column("delta_90", Float),
    Column("slope_90", Float),  # points per 30 days, least squares over 90 days
    Column("priority", Float),
    Column("arr", Float),
    Column("override_id", Integer),
    Column("drivers", Text),  # JSON: top negative/positive contributions and biggest changes
    Column("explanation", Text),  # one sentence a CSM reads
    Column("computed_at", DateTime, nullable=False),
    # Deliberately few indexes: every one is maintained for each of the million rows a daily
    # run writes (benchmarks/bench_scoring.py --write postgres). The primary key leads with
    # (model version, date): a day's rows are appended at the right edge of the tree instead of
    # one leaf per account across a year of history, and it serves a date's rows (trend
    # inputs, actions, writeback, audits, re-run deletes) without a second index. One
    # account's history is read by probing the scored dates (health_score_summary) on it, a
    # few hundred index descents (dashboard.queries.account_detail, refresh._current_zones).
    # The dashboard's portfolio pages read health_score_summary and health_score_movers.
    PrimaryKeyConstraint("model_version", "as_of_date", "account_key"),
    # Zone changes only (a few per account a year, not one per day): recomputing the At Risk
    # episodes (health_score_episodes) finds every entry into At Risk, and seeks each
    # account's next recovery, through it.
    Index(
        "ix_health_scores_zone_changes",
        "model_version", "account_key", "as_of_date", "zone", "previous_zone",
        sqlite_where=text("zone <> previous_zone"),
        postgresql_where=text("zone <> previous_zone"),
    ),
)

health_score_summary = Table(
    # Accounts and ARR per (model version, date, segment, zone): the dashboard's portfolio
    # pages (zone mix today and over time, by segment and plan, ARR at risk, the scored
    # versions and dates) read ~50 rows a date here instead of the date's scores. Derived:
    # ``scoring.history.refresh_score_summary`` recomputes a (version, date) from
    # health_scores, in the transaction that wrote it (``write_scores`` does it itself).
    "health_score_summary",
    metadata,
    Column("model_version", String(40), primary_key=True),
    Column("as_of_date", Date, primary_key=True),
    Column("segment", String(60), primary_key=True),  # '' for scores without a segment
    Column("zone", String(20), primary_key=True),
    Column("accounts", Integer, nullable=False),
    Column("arr", Float, nullable=False),  # sum of the accounts' ARR (0 when none is known)
)

health_score_movers = Table(
    # The biggest 30-day declines and recoveries of each (model version, date), ranked as the
    # trending page shows them (``delta_30``, then ``account_key``), the top
    # ``scoring.history.MOVERS_KEPT`` each way. Derived like health_score_summary.
    "health_score_movers",
    metadata,
    Column("model_version", String(40), primary_key=True),
    Column("as_of_date", Date, primary_key=True),
    Column("direction", String(10), primary_key=True),  # decline | recovery
    Column("rank", Integer, primary_key=True),  # 1 = the biggest move
    Column("account_key", String(18), nullable=False),
    Column("delta_30", Float, nullable=False),
)

health_score_episodes = Table(
    # At Risk episodes: an account entering At Risk or Critical from Healthy or Neutral (a
    # score row with zone <> previous_zone), and the date of its next change into Healthy or
    # Neutral (NULL while it lasts). The dashboard's intervention analysis reads a window of
    # them in account order and joins each to its actions. Derived like health_score_summary.
    "health_score_episodes",
    metadata,
    Column("model_version", String(40), primary_key=True),
    Column("account_key", String(18), primary_key=True),
    Column("started", Date, primary_key=True),
    Column("recovered_on", Date),
    sqlite_with_rowid=False,  # SQLite: the rows live in the key's order (one covering scan)
)

health_score_rollups = Table(
    "health_score_rollups",
    metadata,
    Column("parent_account_key", String(18), primary_key=True),
    Column("as_of_date", Date, primary_key=True),
    Column("model_version", String(40), primary_key=True),
    Column("score", Integer, nullable=False),
    Column("zone", String(20), nullable=False),
    Column("children", Integer, nullable=False),
    Column("arr", Float),
    Column("computed_at", DateTime, nullable=False),
)

score_overrides = Table(
    "score_overrides",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_key", String(18), nullable=False, index=True),
    Column("score", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(120), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("revoked_at", DateTime),
    Column("revoked_by", String(120)),
    Column("revoked_reason", Text),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("version", String(40), primary_key=True),
    Column("status", String(20), nullable=False),  # active | proposed | retired | rejected
    Column("config_yaml", Text, nullable=False),
    Column("config_sha256", String(64), nullable=False),
    Column("parent_version", String(40)),
    Column("created_at", DateTime, nullable=False),
    Column("created_by", String(120)),
    Column("decided_at", DateTime),
    Column("decided_by", String(120)),
    Column("decision_note", Text),
    Column("metrics", Text),  # JSON of audit metrics
)

# --------------------------------------------------------------------------- actions
action_outbox = Table(
    "action_outbox",
    metadata,
    Column("idempotency_key", String(200), primary_key=True),
    Column("account_key", String(18), nullable=False, index=True),
    Column("action_type", String(40), nullable=False),
    Column("trigger_date", Date, nullable=False),
    Column("model_version", String(40), nullable=False),
    # pending | sending (claimed by a dispatcher) | sent | failed | suppressed
    Column("status", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", Text, nullable=False),  # JSON
    Column("target", String(40), nullable=False),  # salesforce | slack | email | marketing
    Column("external_id", String(120)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("dispatched_at", DateTime),
    Column("result", Text),  # JSON: what the target did (memberships paused, task ids, lists joined)
    Column("resolved_at", DateTime),  # a sent task completed / a pause resumed by a later action
    Column("resolved_by", String(200)),  # idempotency key of the action that resolved it
    Index("ix_action_outbox_status_type", "status", "action_type"),
    # The dashboard's intervention analysis: an account's actions in a date range, from the index.
    Index("ix_action_outbox_account_trigger", "account_key", "trigger_date", "action_type", "status"),
)

crm_writeback_state = Table(
    # What the CRM writeback last wrote on each Salesforce Account, so an unchanged account is
    # not written again (and a re-run writes nothing).
    "crm_writeback_state",
    metadata,
    Column("account_key", String(18), primary_key=True),
    Column("health_score", Float),
    Column("health_zone", String(20)),
    Column("health_trend", String(40)),
    Column("health_drivers", Text),
    Column("as_of_date", Date, nullable=False),
    Column("model_version", String(40), nullable=False),
    Column("written_at", DateTime, nullable=False),
)

# --------------------------------------------------------------------------- validation
account_outcomes = Table(
    # What happened to each account, derived from the raw tables (churn, contraction, expansion),
    # one row per source event. Point in time: an outcome is known from ``occurred_on`` on.
    # Rebuilt wholesale by validation.outcomes (deterministic), so a re-run changes nothing.
    "account_outcomes",
    metadata,
    Column("account_key", String(18), primary_key=True),
    Column("outcome", String(20), primary_key=True),  # churn | contraction | expansion
    Column("source", String(40), primary_key=True),  # stripe_subscription | stripe_invoice | sf_opportunity
    Column("source_id", String(80), primary_key=True),  # the source record's id
    Column("occurred_on", Date, nullable=False),
    Column("detail", Text),  # JSON: the facts that made it an outcome (amounts, stage, status)
    Index("ix_account_outcomes_occurred_on", "occurred_on"),
)

model_audits = Table(
    # Accuracy of a model version against outcomes: one row per (version, window, horizon, kind).
    # kind: audit (the scores as they were) | holdout (a proposed model on held-out snapshots).
    "model_audits",
    metadata,
    Column("model_version", String(40), primary_key=True),
    Column("window_start", Date, primary_key=True),
    Column("window_end", Date, primary_key=True),
    Column("horizon_days", Integer, primary_key=True),
    Column("kind", String(20), primary_key=True),
    Column("threshold", Integer, nullable=False),  # flagged = score <= threshold
    Column("observations", Integer, nullable=False),  # (account, snapshot date) pairs
    Column("churners", Integer, nullable=False),
    Column("roc_auc", Float),
    Column("sensitivity", Float),
    Column("specificity", Float),
    Column("precision", Float),
    Column("top_decile_lift", Float),
    Column("metrics", Text, nullable=False),  # JSON: everything above plus zones, bands, FN/FP
    Column("report_path", Text),
    Column("audited_at", DateTime, nullable=False),
)

model_version_events = Table(
    # The registry's audit trail: one row per transition of a model version (proposed, approved,
    # retired, rejected). Transitions are idempotent, so a repeated call adds no second row.
    "model_version_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", String(40), nullable=False, index=True),
    Column("event", String(20), nullable=False),  # proposed | approved | retired | rejected
    Column("from_status", String(20)),
    Column("to_status", String(20), nullable=False),
    Column("actor", String(120), nullable=False),
    Column("note", Text),
    Column("occurred_at", DateTime, nullable=False),
)
