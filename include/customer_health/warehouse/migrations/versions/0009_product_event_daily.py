"""raw_product_event_daily: product events per account, day and event name, aggregated at the source

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

A generic daily aggregate of the product's event stream beside the usage and feature aggregates:
signals at the level of event types (a self-serve product's exports, invitations, billing-page
visits) read it. New and empty: the product extraction fills it from the first event on its first
run after the upgrade (its own watermark, product/event_daily), since the warehouse never held
raw events.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "raw_product_event_daily",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("event_name", sa.String(length=255), nullable=False),
        sa.Column("users", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("extracted_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "day", "event_name", name=op.f("pk_raw_product_event_daily")),
    )
    with op.batch_alter_table("raw_product_event_daily", schema=None) as batch_op:
        batch_op.create_index("ix_raw_product_event_daily_day", ["day"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("raw_product_event_daily", schema=None) as batch_op:
        batch_op.drop_index("ix_raw_product_event_daily_day")
    op.drop_table("raw_product_event_daily")
