"""score_overrides.revoked_reason: why an override was revoked, kept with who and when

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

A revocation is audited on the row itself (revoked_at, revoked_by); the reason a colleague
gave now lives there too, so the account page and any audit query can show it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("score_overrides", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("score_overrides", schema=None) as batch_op:
        batch_op.drop_column("revoked_reason")
