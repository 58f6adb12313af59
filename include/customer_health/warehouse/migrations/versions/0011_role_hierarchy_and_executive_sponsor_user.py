"""role hierarchy and our executive sponsor: raw_sf_user.role_id/parent_role_id, raw_sf_account.executive_sponsor_user_id (#20)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

The manager review of a high-value account entering At Risk goes to the owner's manager, found up
the Salesforce role hierarchy (the user's UserRoleId and its UserRole.ParentRoleId); executive
escalations reach the account's internal executive sponsor (Account.Executive_Sponsor_User__c, a
User) with the VP of Customer Success. New, NULL columns; the Salesforce User and Account
watermarks are cleared so that the next extraction reads every user and account again and fills
them (a few thousand rows at most), rather than only those changed since.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("raw_sf_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role_id", sa.String(length=18), nullable=True))
        batch_op.add_column(sa.Column("parent_role_id", sa.String(length=18), nullable=True))
    with op.batch_alter_table("raw_sf_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("executive_sponsor_user_id", sa.String(length=18), nullable=True))
    watermarks = sa.table("extraction_watermarks", sa.column("source", sa.String), sa.column("object", sa.String))
    op.execute(
        watermarks.delete().where(watermarks.c.source == "salesforce", watermarks.c.object.in_(("User", "Account")))
    )


def downgrade() -> None:
    with op.batch_alter_table("raw_sf_account", schema=None) as batch_op:
        batch_op.drop_column("executive_sponsor_user_id")
    with op.batch_alter_table("raw_sf_user", schema=None) as batch_op:
        batch_op.drop_column("parent_role_id")
        batch_op.drop_column("role_id")
