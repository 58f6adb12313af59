"""dashboard summary tables instead of a covering index on health_scores

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Writing a day's scores maintained four B-trees per row; the widest,
``ix_health_scores_version_date_portfolio`` (version, date, zone, segment, ARR, delta_30,
account), existed only for the dashboard and cost more server time than the rows themselves.
It is replaced by two small derived tables, recomputed per (model version, date) by the
scoring step (``scoring.history.refresh_score_summary``):

* ``health_score_summary``: accounts and ARR per (version, date, segment, zone);
* ``health_score_movers``: the 200 biggest 30-day declines and recoveries per (version, date);
* ``health_score_episodes``: At Risk episodes (entry from Healthy/Neutral, next recovery), so
  the intervention analysis no longer seeks each episode's recovery among the zone changes.

All three are filled here from the scores already stored.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MOVERS_KEPT = 200  # scoring.history.MOVERS_KEPT when this migration was written
RISK = "('At Risk', 'Critical')"
SAFE = "('Healthy', 'Neutral')"


def upgrade() -> None:
    with op.batch_alter_table("health_scores", schema=None) as batch_op:
        batch_op.drop_index("ix_health_scores_version_date_portfolio")
    op.create_table(
        "health_score_summary",
        sa.Column("model_version", sa.String(length=40), nullable=False),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("segment", sa.String(length=60), nullable=False),
        sa.Column("zone", sa.String(length=20), nullable=False),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("arr", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("model_version", "as_of_date", "segment", "zone", name=op.f("pk_health_score_summary")),
    )
    op.create_table(
        "health_score_movers",
        sa.Column("model_version", sa.String(length=40), nullable=False),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("account_key", sa.String(length=18), nullable=False),
        sa.Column("delta_30", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("model_version", "as_of_date", "direction", "rank", name=op.f("pk_health_score_movers")),
    )
    op.create_table(
        "health_score_episodes",
        sa.Column("model_version", sa.String(length=40), nullable=False),
        sa.Column("account_key", sa.String(length=18), nullable=False),
        sa.Column("started", sa.Date(), nullable=False),
        sa.Column("recovered_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("model_version", "account_key", "started", name=op.f("pk_health_score_episodes")),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO health_score_episodes (model_version, account_key, started, recovered_on) "
        "SELECT h.model_version, h.account_key, h.as_of_date, (SELECT MIN(l.as_of_date) FROM health_scores l "
        "WHERE l.model_version = h.model_version AND l.account_key = h.account_key AND l.as_of_date > h.as_of_date "
        f"AND l.zone <> l.previous_zone AND l.zone IN {SAFE}) FROM health_scores h "
        f"WHERE h.zone <> h.previous_zone AND h.zone IN {RISK} AND h.previous_zone IN {SAFE}"
    )
    op.execute(
        "INSERT INTO health_score_summary (model_version, as_of_date, segment, zone, accounts, arr) "
        "SELECT model_version, as_of_date, COALESCE(segment, ''), zone, COUNT(*), COALESCE(SUM(arr), 0) "
        "FROM health_scores GROUP BY model_version, as_of_date, COALESCE(segment, ''), zone"
    )
    for direction, sign, order in (("decline", "<", "delta_30 ASC"), ("recovery", ">", "delta_30 DESC")):
        op.execute(
            "INSERT INTO health_score_movers (model_version, as_of_date, direction, rank, account_key, delta_30) "
            f"SELECT model_version, as_of_date, '{direction}', rank, account_key, delta_30 FROM ("
            "SELECT model_version, as_of_date, account_key, delta_30, ROW_NUMBER() OVER ("
            f"PARTITION BY model_version, as_of_date ORDER BY {order}, account_key) AS rank "
            f"FROM health_scores WHERE delta_30 {sign} 0) ranked "
            f"WHERE rank <= {MOVERS_KEPT}"
        )


def downgrade() -> None:
    op.drop_table("health_score_episodes")
    op.drop_table("health_score_movers")
    op.drop_table("health_score_summary")
    with op.batch_alter_table("health_scores", schema=None) as batch_op:
        batch_op.create_index(
            "ix_health_scores_version_date_portfolio",
            ["model_version", "as_of_date", "zone", "segment", "arr", "delta_30", "account_key"],
            unique=False,
        )
