"""signal_values wide: one row per account and date, context merged in

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

``signal_values`` held one row per account, date and signal (66M rows for a year of 10,000
accounts) beside ``signal_context`` (one row per account and date). Both become one table keyed
(as_of_date, account_key) with the context columns and one column per catalogued signal. The
existing rows are carried over: the context row of each account and date, with each signal's
value pivoted into its column (a signal with no stored row stays NULL, as before).
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The catalogued signals when this migration was written (a later signal is a later migration).
SIGNALS = (
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
CONTEXT = ("plan", "seats", "arr", "customer_since", "tenure_days", "parent_account_key", "owner_id")


def _context_columns() -> list[sa.Column]:
    return [
        sa.Column("plan", sa.String(length=40), nullable=True),
        sa.Column("seats", sa.Float(), nullable=True),
        sa.Column("arr", sa.Float(), nullable=True),
        sa.Column("customer_since", sa.Date(), nullable=True),
        sa.Column("tenure_days", sa.Integer(), nullable=True),
        sa.Column("parent_account_key", sa.String(length=18), nullable=True),
        sa.Column("owner_id", sa.String(length=18), nullable=True),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("signal_values", schema=None) as batch_op:
        batch_op.drop_index("ix_signal_values_as_of_date")
    op.rename_table("signal_values", "signal_values_long")
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE signal_values_long RENAME CONSTRAINT pk_signal_values TO pk_signal_values_long")
    op.create_table(
        "signal_values",
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("account_key", sa.String(length=18), nullable=False),
        *_context_columns(),
        *[sa.Column(key, sa.Float(), nullable=True) for key in SIGNALS],
        sa.PrimaryKeyConstraint("as_of_date", "account_key", name=op.f("pk_signal_values")),
        sqlite_with_rowid=False,
    )
    pivot = ", ".join(f"MAX(CASE WHEN v.signal = '{key}' THEN v.value END)" for key in SIGNALS)
    context = ", ".join(f"c.{col}" for col in CONTEXT)
    op.execute(
        f"INSERT INTO signal_values (as_of_date, account_key, {', '.join(CONTEXT)}, {', '.join(SIGNALS)}) "
        f"SELECT c.as_of_date, c.account_key, {context}, {pivot} "
        "FROM signal_context c LEFT JOIN signal_values_long v "
        "ON v.account_key = c.account_key AND v.as_of_date = c.as_of_date "
        f"GROUP BY c.as_of_date, c.account_key, {context}"
    )
    op.drop_table("signal_values_long")
    with op.batch_alter_table("signal_context", schema=None) as batch_op:
        batch_op.drop_index("ix_signal_context_as_of_date")
    op.drop_table("signal_context")


def downgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "signal_context",
        sa.Column("account_key", sa.String(length=18), nullable=False),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        *_context_columns(),
        sa.PrimaryKeyConstraint("account_key", "as_of_date", name=op.f("pk_signal_context")),
    )
    with op.batch_alter_table("signal_context", schema=None) as batch_op:
        batch_op.create_index("ix_signal_context_as_of_date", ["as_of_date"], unique=False)
    op.execute(
        f"INSERT INTO signal_context (account_key, as_of_date, {', '.join(CONTEXT)}) "
        f"SELECT account_key, as_of_date, {', '.join(CONTEXT)} FROM signal_values"
    )
    op.rename_table("signal_values", "signal_values_wide")
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE signal_values_wide RENAME CONSTRAINT pk_signal_values TO pk_signal_values_wide")
    op.create_table(
        "signal_values",
        sa.Column("account_key", sa.String(length=18), nullable=False),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("signal", sa.String(length=60), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("account_key", "as_of_date", "signal", name=op.f("pk_signal_values")),
    )
    with op.batch_alter_table("signal_values", schema=None) as batch_op:
        batch_op.create_index("ix_signal_values_as_of_date", ["as_of_date"], unique=False)
    for key in SIGNALS:
        op.execute(
            "INSERT INTO signal_values (account_key, as_of_date, signal, value) "
            f"SELECT account_key, as_of_date, '{key}', {key} FROM signal_values_wide"
        )
    op.drop_table("signal_values_wide")
