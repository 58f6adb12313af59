"""Safe go-live and real campaign targets: the daily cap's release dates, managed campaign
memberships, segment syncs; the invented marketing API's rows retired

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

* ``action_outbox.release_date`` (the day the daily cap released a row for delivery) and
  ``deferred_since`` (the first day it was deferred). Rows pending at the upgrade were released
  on their trigger date, as the dispatch before the cap would have taken them.
* ``campaign_memberships`` / ``campaign_holds``: the memberships the product added or paused in
  Salesforce Campaigns or HubSpot lists; ``segment_syncs``: one row per segment and date synced.
* Rows for the marketing API the sandbox invented (target ``marketing``) can no longer be
  delivered or undone: pending ones become ``suppressed`` and open pauses are resolved, each
  with a note saying so.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

RETIRED = "the marketing API target was removed (migration 0006): campaigns are Salesforce Campaigns or HubSpot lists now"


def upgrade() -> None:
    with op.batch_alter_table("action_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("release_date", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("deferred_since", sa.Date(), nullable=True))
    outbox = sa.table(
        "action_outbox",
        sa.column("status", sa.String), sa.column("target", sa.String), sa.column("trigger_date", sa.Date),
        sa.column("release_date", sa.Date), sa.column("last_error", sa.Text), sa.column("resolved_at", sa.DateTime),
        sa.column("resolved_by", sa.String), sa.column("updated_at", sa.DateTime),
    )  # fmt: skip
    now = sa.func.current_timestamp()
    op.execute(
        outbox.update()
        .where(outbox.c.target == "marketing", outbox.c.status.in_(["pending", "sending"]))
        .values(status="suppressed", last_error=RETIRED, updated_at=now)
    )
    op.execute(
        outbox.update()
        .where(outbox.c.target == "marketing", outbox.c.status == "sent", outbox.c.resolved_at.is_(None))
        .values(resolved_at=now, resolved_by="migration 0006", updated_at=now)
    )
    op.execute(
        outbox.update()
        .where(outbox.c.status.in_(["pending", "sending"]))
        .values(release_date=outbox.c.trigger_date)
    )
    op.create_table(
        "campaign_memberships",
        sa.Column("target", sa.String(length=20), nullable=False),
        sa.Column("programme_id", sa.String(length=40), nullable=False),
        sa.Column("contact_ref", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("programme_name", sa.String(length=255), nullable=True),
        sa.Column("programme_group", sa.String(length=60), nullable=True),
        sa.Column("account_key", sa.String(length=18), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("member_id", sa.String(length=40), nullable=True),
        sa.Column("previous_status", sa.String(length=80), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("started_on", sa.Date(), nullable=False),
        sa.Column("started_by", sa.String(length=200), nullable=False),
        sa.Column("ended_on", sa.Date(), nullable=True),
        sa.Column("ended_by", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("target", "programme_id", "contact_ref", "kind"),
    )
    op.create_index("ix_campaign_memberships_account", "campaign_memberships", ["account_key"])
    op.create_index("ix_campaign_memberships_started_by", "campaign_memberships", ["started_by", "state"])
    op.create_table(
        "campaign_holds",
        sa.Column("target", sa.String(length=20), nullable=False),
        sa.Column("programme_id", sa.String(length=40), nullable=False),
        sa.Column("contact_ref", sa.String(length=40), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("since", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("target", "programme_id", "contact_ref", "holder"),
    )
    op.create_index("ix_campaign_holds_holder", "campaign_holds", ["holder"])
    op.create_table(
        "segment_syncs",
        sa.Column("segment", sa.String(length=40), nullable=False),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("target", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Integer(), nullable=False),
        sa.Column("resumed", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("segment", "as_of_date"),
    )


def downgrade() -> None:
    op.drop_table("segment_syncs")
    op.drop_index("ix_campaign_holds_holder", table_name="campaign_holds")
    op.drop_table("campaign_holds")
    op.drop_index("ix_campaign_memberships_started_by", table_name="campaign_memberships")
    op.drop_index("ix_campaign_memberships_account", table_name="campaign_memberships")
    op.drop_table("campaign_memberships")
    with op.batch_alter_table("action_outbox", schema=None) as batch_op:
        batch_op.drop_column("deferred_since")
        batch_op.drop_column("release_date")
