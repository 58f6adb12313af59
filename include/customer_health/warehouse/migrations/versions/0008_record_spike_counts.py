"""record_spike_counts: per daily run, source and kind, the problem records the alert check counted

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

The spike alert (customer_health.alerts.check_record_spikes) compares a run's quarantined and
unmapped records per source with the median of the previous runs; this table is that history,
and alerted_at keeps a re-run from posting the same spike twice. New and empty: nothing to carry
over.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "record_spike_counts",
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("checked_at", sa.DateTime(), nullable=False),
        sa.Column("alerted_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("as_of_date", "source", "kind", name=op.f("pk_record_spike_counts")),
    )


def downgrade() -> None:
    op.drop_table("record_spike_counts")
