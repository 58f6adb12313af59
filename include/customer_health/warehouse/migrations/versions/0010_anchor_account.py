"""anchor_account: the accounts of a company anchored on billing or on the product (#18)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

With the source mapping's ``identity.anchor: stripe | product`` the accounts are the Stripe
customers or the product accounts, not Salesforce Accounts; the crosswalk writes them here with
raw_sf_account's column names (the signals read the roster from either). New and empty: the
default Salesforce anchor never writes it; the first crosswalk after switching the anchor fills it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "anchor_account",
        sa.Column("id", sa.String(length=18), nullable=False),
        sa.Column("anchor", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("parent_id", sa.String(length=18), nullable=True),
        sa.Column("owner_id", sa.String(length=18), nullable=True),
        sa.Column("plan", sa.String(length=40), nullable=True),
        sa.Column("seats", sa.Integer(), nullable=True),
        sa.Column("arr", sa.Float(), nullable=True),
        sa.Column("customer_since", sa.Date(), nullable=True),
        sa.Column("stripe_customer_id", sa.String(length=40), nullable=True),
        sa.Column("product_account_id", sa.String(length=40), nullable=True),
        sa.Column("source_updated_at", sa.DateTime(), nullable=True),
        sa.Column("is_deleted", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("extracted_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anchor_account")),
    )


def downgrade() -> None:
    op.drop_table("anchor_account")
