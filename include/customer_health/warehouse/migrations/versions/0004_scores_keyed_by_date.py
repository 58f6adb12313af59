"""health_scores keyed by (model version, date, account); the date index goes

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

The primary key was (account_key, as_of_date, model_version), with a second index on
(as_of_date, model_version) for a date's rows. A daily run appends one row per account to
every account's run of keys: a million leaf pages touched across a year of history, and two
trees maintained per row. Keyed by (model_version, as_of_date, account_key), a day's rows are
appended at the right edge of one tree, which also serves every query by date; one account's
history is read by probing its scored dates (see ``dashboard.queries``).

PostgreSQL rebuilds the key in place (one sort of the table's keys); SQLite copies the table.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("health_scores", schema=None, recreate="auto") as batch_op:
        batch_op.drop_index("ix_health_scores_as_of_date_model")
        batch_op.drop_constraint("pk_health_scores", type_="primary")
        batch_op.create_primary_key("pk_health_scores", ["model_version", "as_of_date", "account_key"])


def downgrade() -> None:
    with op.batch_alter_table("health_scores", schema=None, recreate="auto") as batch_op:
        batch_op.drop_constraint("pk_health_scores", type_="primary")
        batch_op.create_primary_key("pk_health_scores", ["account_key", "as_of_date", "model_version"])
        batch_op.create_index("ix_health_scores_as_of_date_model", ["as_of_date", "model_version"], unique=False)
