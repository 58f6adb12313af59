"""The product's own application database, as a customer of this platform would have one.

Four tables, in SQLAlchemy Core so the same schema can live in SQLite (the sandbox's
``product.db``) or PostgreSQL:

* ``accounts`` - one row per customer account (``acct_000123``), its plan and signup time;
* ``users`` - the people with a login, each in one account, with ``deactivated_at`` once they
  leave or their seat is removed;
* ``features`` - the feature catalogue; ``is_core`` marks the features that carry the product's
  value (adoption breadth is measured over these);
* ``events`` - the raw usage stream: ``login`` and ``feature_used`` (with ``feature_key``). This
  is the big table (millions of rows), indexed for the two reads the pipeline makes: a day's
  slice (``occurred_at``) and one account's history (``account_id, occurred_at``). The pipeline
  aggregates it in SQL at the source and never pulls raw events.

All timestamps are naive UTC.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
)

product_metadata = MetaData()

accounts = Table(
    "accounts",
    product_metadata,
    Column("id", String(40), primary_key=True),  # acct_000123
    Column("name", String(255), nullable=False),
    Column("plan", String(40), nullable=False),  # starter | growth | enterprise
    Column("created_at", DateTime, nullable=False),
)

users = Table(
    "users",
    product_metadata,
    Column("id", String(40), primary_key=True),  # user_0000123
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("email", String(255), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("deactivated_at", DateTime, nullable=True),
)

features = Table(
    "features",
    product_metadata,
    Column("feature_key", String(60), primary_key=True),
    Column("name", String(120), nullable=False),
    Column("is_core", Boolean, nullable=False),
)

events = Table(
    "events",
    product_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(40), nullable=False),
    Column("user_id", String(40), nullable=False),
    Column("event_name", String(20), nullable=False),  # login | feature_used
    Column("feature_key", String(60), nullable=True),  # set for feature_used only
    Column("occurred_at", DateTime, nullable=False),
    Index("ix_events_occurred_at", "occurred_at"),
    Index("ix_events_account_id_occurred_at", "account_id", "occurred_at"),
)

# The catalogue the synthetic company's product ships: (feature_key, name, is_core).
FEATURE_CATALOGUE: tuple[tuple[str, str, bool], ...] = (
    ("dashboards", "Dashboards", True),
    ("reports", "Scheduled reports", True),
    ("workflows", "Workflow automation", True),
    ("integrations", "Integrations hub", True),
    ("alerts", "Alerts", True),
    ("data_import", "Data import", True),
    ("api", "Public API", False),
    ("sso", "Single sign-on", False),
    ("custom_fields", "Custom fields", False),
    ("audit_log", "Audit log", False),
)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the pipeline read while the sandbox (or a test) holds the file open.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def product_engine(path: str | Path) -> Engine:
    """An engine on the product database file at ``path`` (created with its tables if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    eng = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(eng, "connect", _sqlite_pragmas)
    product_metadata.create_all(eng)
    return eng
