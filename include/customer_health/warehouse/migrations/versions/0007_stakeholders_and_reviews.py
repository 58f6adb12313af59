"""Stakeholder health and the monthly review: product users and their daily activity, ticket
requesters, stakeholder_health, health_reviews

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

* ``raw_product_user`` (who has a login) and ``raw_product_user_daily`` (logins, core actions
  and events per user and day, aggregated in the product database), read by
  ``sources.product_users``.
* ``raw_zd_ticket.requester_id`` / ``requester_email``: who filed the ticket (the sideloaded
  Zendesk user). Tickets extracted before the upgrade keep NULL until Zendesk exports them again.
* ``stakeholder_health``: per account, person and date (``customer_health.stakeholders``).
* ``health_reviews``: the monthly health reviews (``customer_health.review``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "raw_product_user",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=True),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("deactivated_at", sa.DateTime(), nullable=True),
        sa.Column("source_updated_at", sa.DateTime(), nullable=True),
        sa.Column("is_deleted", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("extracted_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_product_user")),
    )
    op.create_index(op.f("ix_raw_product_user_account_id"), "raw_product_user", ["account_id"], unique=False)
    op.create_table(
        "raw_product_user_daily",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("logins", sa.Integer(), nullable=False),
        sa.Column("core_actions", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("extracted_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "user_id", "day", name=op.f("pk_raw_product_user_daily")),
    )
    op.create_index("ix_raw_product_user_daily_day", "raw_product_user_daily", ["day"], unique=False)
    with op.batch_alter_table("raw_zd_ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("requester_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("requester_email", sa.String(length=255), nullable=True))
    op.create_table(
        "stakeholder_health",
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("account_key", sa.String(length=18), nullable=False),
        sa.Column("stakeholder_key", sa.String(length=60), nullable=False),
        sa.Column("contact_id", sa.String(length=18), nullable=True),
        sa.Column("product_user_id", sa.String(length=40), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("title", sa.String(length=128), nullable=True),
        sa.Column("is_executive_sponsor", sa.Boolean(), nullable=False),
        sa.Column("is_champion", sa.Boolean(), nullable=False),
        sa.Column("login_created_on", sa.Date(), nullable=True),
        sa.Column("login_deactivated_on", sa.Date(), nullable=True),
        sa.Column("active_days_28", sa.Integer(), nullable=True),
        sa.Column("active_days_90", sa.Integer(), nullable=True),
        sa.Column("core_actions_28", sa.Integer(), nullable=True),
        sa.Column("core_actions_90", sa.Integer(), nullable=True),
        sa.Column("active_days_30", sa.Integer(), nullable=True),
        sa.Column("active_days_prev_30", sa.Integer(), nullable=True),
        sa.Column("engagement_change_30", sa.Float(), nullable=True),
        sa.Column("last_login_on", sa.Date(), nullable=True),
        sa.Column("latest_nps", sa.Integer(), nullable=True),
        sa.Column("latest_nps_on", sa.Date(), nullable=True),
        sa.Column("csat_good", sa.Integer(), nullable=True),
        sa.Column("csat_rated", sa.Integer(), nullable=True),
        sa.Column("tickets_90", sa.Integer(), nullable=True),
        sa.Column("last_touch_on", sa.Date(), nullable=True),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("as_of_date", "account_key", "stakeholder_key", name=op.f("pk_stakeholder_health")),
    )
    op.create_index("ix_stakeholder_health_account", "stakeholder_health", ["account_key", "as_of_date"], unique=False)
    op.create_table(
        "health_reviews",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("model_version", sa.String(length=40), nullable=False),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("report_path", sa.Text(), nullable=False),
        sa.Column("figures", sa.Text(), nullable=False),
        sa.Column("generated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("month", "model_version", name=op.f("pk_health_reviews")),
    )


def downgrade() -> None:
    op.drop_table("health_reviews")
    op.drop_index("ix_stakeholder_health_account", table_name="stakeholder_health")
    op.drop_table("stakeholder_health")
    with op.batch_alter_table("raw_zd_ticket", schema=None) as batch_op:
        batch_op.drop_column("requester_email")
        batch_op.drop_column("requester_id")
    op.drop_index("ix_raw_product_user_daily_day", table_name="raw_product_user_daily")
    op.drop_table("raw_product_user_daily")
    op.drop_index(op.f("ix_raw_product_user_account_id"), table_name="raw_product_user")
    op.drop_table("raw_product_user")
