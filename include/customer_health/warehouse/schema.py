"""The warehouse schema, in SQLAlchemy Core.

This module is the single entry point to every warehouse table: the tables the sources fill
(raw records, extraction bookkeeping, the crosswalk) are described in ``raw_schema.py`` and
re-exported here; the tables the pipeline writes (signal input, scores, actions, validation)
are described below. The database itself is created and upgraded only by the Alembic
migrations in ``warehouse/migrations`` (``upgrade_to_head``); a test checks that the migrations
and these modules agree.

Conventions
-----------
* Raw tables (``raw_*``) hold source records as extracted, keyed by the source's own id, so an
  extraction re-run upserts instead of appending. Every raw row keeps ``source_updated_at`` (the
  source's modification stamp), ``is_deleted`` and ``extracted_at``. Dates and times are stored
  as naive UTC.
* ``account_key`` is the warehouse's own account identity: the 18-character Salesforce Account
  Id, which the crosswalk maps every other system's identity onto.
* ``signal_values`` has one column per signal definition (``scoring/signals.py``).
* Score history is keyed by (account, as-of date, model version) and overwritten on re-run.
* Actions go through ``action_outbox``, keyed by a deterministic idempotency key.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

from customer_health.scoring.signals import signal_keys
from customer_health.warehouse import raw_schema
from customer_health.warehouse.raw_schema import *  # noqa: F403 - the source tables are part of the schema
from customer_health.warehouse.raw_schema import metadata

__all__ = [  # the source tables, then the tables below
    *raw_schema.__all__,
    "SIGNAL_VALUE_COLUMNS",
    "signal_values",
    "health_scores",
    "health_score_summary",
    "health_score_movers",
    "health_score_episodes",
    "health_score_rollups",
    "score_overrides",
    "model_versions",
    "action_outbox",
    "campaign_memberships",
    "campaign_holds",
    "segment_syncs",
    "crm_writeback_state",
    "account_outcomes",
    "model_audits",
    "model_version_events",
    "stakeholder_health",
    "health_reviews",
    "record_spike_counts",
]

# --------------------------------------------------------------------------- scoring
# One row per account and as-of date: who the account was that day (plan, seats, ARR, tenure,
# parent, owner) and the raw value of every signal (NULL: no data). Scoring reads a date's
# whole input back from here (sharded signal computation, rebuilds, audits) instead of
# recomputing it. Wide - one column per signal definition of ``scoring/signals.py``, in its
# order - so a year of history for 10,000 accounts is 3.65M rows, not 66M; a new signal is a
# new column (a migration adding it, ``docs/CHANGING.md``). Keyed date first: a date is
# read, cleared and appended as one contiguous range; on SQLite the table is clustered on that
# key (WITHOUT ROWID).
SIGNAL_VALUE_COLUMNS: tuple[str, ...] = signal_keys()
"""The signal columns of ``signal_values``: every defined signal's key, in definition order."""

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
    # pending | sending (claimed by a dispatcher) | sent | failed | suppressed | shadow (decided
    # in shadow mode: what would have been sent, never delivered)
    Column("status", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", Text, nullable=False),  # JSON
    Column("target", String(40), nullable=False),  # salesforce | slack | email | campaigns
    Column("external_id", String(120)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("dispatched_at", DateTime),
    Column("result", Text),  # JSON: what the target did (memberships paused, task ids, lists joined)
    Column("resolved_at", DateTime),  # a sent task completed / a pause resumed by a later action
    Column("resolved_by", String(200)),  # idempotency key of the action that resolved it
    # The day the daily cap released the row for delivery (actions.release); NULL: not yet.
    Column("release_date", Date),
    # The first day the daily cap deferred it (it waits its turn instead of going stale).
    Column("deferred_since", Date),
    Index("ix_action_outbox_status_type", "status", "action_type"),
    # The dashboard's intervention analysis: an account's actions in a date range, from the index.
    Index("ix_action_outbox_account_trigger", "account_key", "trigger_date", "action_type", "status"),
)

campaign_memberships = Table(
    # The campaign memberships the product manages (actions.campaigns): contacts it added to a
    # programme (kind 'member': an enrolment, or a segment's member) and memberships it paused
    # (kind 'pause', with the status to restore). A segment removes only the members it added;
    # a resume restores only what the product paused. state: 'pending' (the intent is written,
    # the target's answer not yet recorded: a retry finishes it) | 'active' | 'ended'.
    "campaign_memberships",
    metadata,
    Column("target", String(20), primary_key=True),  # salesforce | hubspot
    Column("programme_id", String(40), primary_key=True),  # Campaign Id | HubSpot list id
    Column("contact_ref", String(40), primary_key=True),  # Contact Id | HubSpot contact id
    Column("kind", String(10), primary_key=True),  # member | pause
    Column("programme_name", String(255)),
    Column("programme_group", String(60)),  # the group of config/actions_v1.yaml
    Column("account_key", String(18), nullable=False),
    Column("email", String(255)),
    Column("member_id", String(40)),  # the CampaignMember Id (Salesforce)
    Column("previous_status", String(80)),  # a pause: the member status to restore
    Column("state", String(10), nullable=False),
    Column("started_on", Date, nullable=False),
    Column("started_by", String(200), nullable=False),  # outbox key or segment:<name>
    Column("ended_on", Date),
    Column("ended_by", String(200)),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_campaign_memberships_account", "account_key"),
    Index("ix_campaign_memberships_started_by", "started_by", "state"),
)

campaign_holds = Table(
    # Who keeps a paused membership paused: campaign_pause outbox keys and segments
    # ('segment:nurture'). The membership is resumed when its last hold is released.
    "campaign_holds",
    metadata,
    Column("target", String(20), primary_key=True),
    Column("programme_id", String(40), primary_key=True),
    Column("contact_ref", String(40), primary_key=True),
    Column("holder", String(200), primary_key=True),
    Column("since", Date, nullable=False),
    Index("ix_campaign_holds_holder", "holder"),
)

segment_syncs = Table(
    # One row per segment and as-of date synced to the campaign target: once per date, and
    # never a date older than the latest done (time only moves forward).
    "segment_syncs",
    metadata,
    Column("segment", String(40), primary_key=True),
    Column("as_of_date", Date, primary_key=True),
    Column("target", String(20), nullable=False),
    Column("status", String(10), nullable=False),  # running | done
    Column("accounts", Integer, nullable=False, default=0),
    Column("added", Integer, nullable=False, default=0),
    Column("removed", Integer, nullable=False, default=0),
    Column("paused", Integer, nullable=False, default=0),
    Column("resumed", Integer, nullable=False, default=0),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
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

# --------------------------------------------------------------------------- stakeholders
stakeholder_health = Table(
    # The people inside each account on each date (customer_health.stakeholders): every
    # Salesforce contact, and every product user who held a login or used the product in the
    # last 120 days, matched by e-mail (case-insensitive) where they are the same person. Their
    # engagement (product logins and actions), sentiment (their NPS answer, the CSAT of the
    # tickets they filed) and role (executive sponsor, champion). NULL where the data does not
    # exist (a contact without a login has no engagement; a date before the per-user history
    # began has none either). Shown beside the account's score; not weighted into it.
    # Written by the daily run for its date, replaced whole on re-run.
    "stakeholder_health",
    metadata,
    Column("as_of_date", Date, primary_key=True),
    Column("account_key", String(18), primary_key=True),
    Column("stakeholder_key", String(60), primary_key=True),  # the Contact Id, else user:<product user id>
    Column("contact_id", String(18)),
    Column("product_user_id", String(40)),
    Column("name", String(255)),
    Column("email", String(255)),
    Column("title", String(128)),
    Column("is_executive_sponsor", Boolean, nullable=False),
    Column("is_champion", Boolean, nullable=False),
    Column("login_created_on", Date),
    Column("login_deactivated_on", Date),
    Column("active_days_28", Integer),
    Column("active_days_90", Integer),
    Column("core_actions_28", Integer),
    Column("core_actions_90", Integer),
    Column("active_days_30", Integer),  # the last 30 days (D-29 .. D)
    Column("active_days_prev_30", Integer),  # the 30 days before them (D-59 .. D-30)
    Column("engagement_change_30", Float),  # (last 30 - previous 30) / previous 30, active days
    Column("last_login_on", Date),  # within the last 180 days (stakeholders.LAST_LOGIN_DAYS)
    Column("latest_nps", Integer),
    Column("latest_nps_on", Date),
    Column("csat_good", Integer),  # of their tickets' ratings in the last 365 days
    Column("csat_rated", Integer),
    Column("tickets_90", Integer),  # tickets they filed in the last 90 days
    Column("last_touch_on", Date),  # the latest Salesforce activity logged with the contact
    Column("computed_at", DateTime, nullable=False),
    Index("ix_stakeholder_health_account", "account_key", "as_of_date"),
)

# --------------------------------------------------------------------------- the monthly review
health_reviews = Table(
    # One row per reviewed month and model version: the monthly health review's figures (JSON,
    # customer_health.review) and where its self-contained HTML file was written. Re-running a
    # month replaces its row and its file.
    "health_reviews",
    metadata,
    Column("month", Date, primary_key=True),  # the first day of the reviewed month
    Column("model_version", String(40), primary_key=True),
    Column("as_of_date", Date, nullable=False),  # the last scored date of the month
    Column("report_path", Text, nullable=False),
    Column("figures", Text, nullable=False),  # JSON: every figure of the review, with its inputs
    Column("generated_at", DateTime, nullable=False),
)

# --------------------------------------------------------------------------- operational alerts
record_spike_counts = Table(
    # Per daily run (as-of date), source and kind (quarantined | unmapped): how many problem
    # records the run's check counted (customer_health.alerts.check_record_spikes). The trailing
    # median of these is the "usual" a spike is measured against; alerted_at marks a spike
    # already posted to the ops channel, so a re-run recounts but never posts twice.
    "record_spike_counts",
    metadata,
    Column("as_of_date", Date, primary_key=True),
    Column("source", String(40), primary_key=True),
    Column("kind", String(20), primary_key=True),
    Column("records", Integer, nullable=False),
    Column("checked_at", DateTime, nullable=False),
    Column("alerted_at", DateTime),
)
