"""How the package reaches the warehouse: one SQLAlchemy engine per URL.

Resolution order for the warehouse URL:
1. the ``CUSTOMER_HEALTH_WAREHOUSE_URL`` environment variable (tests, scripts);
2. the Airflow connection ``health_warehouse`` when running inside Airflow;
3. the embedded default, ``.local/warehouse.db`` (SQLite).
"""

from __future__ import annotations

import os
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event

from customer_health import settings


def warehouse_url() -> str:
    """The SQLAlchemy URL of the warehouse (see module docstring for the order)."""
    url = os.environ.get(settings.WAREHOUSE_URL_ENV)
    if url:
        return url
    try:
        from airflow.sdk import BaseHook  # imported lazily: the package works without Airflow

        conn = BaseHook.get_connection(settings.WAREHOUSE_CONN_ID)
        return connection_to_url(conn)
    except Exception:  # noqa: BLE001 - no Airflow, or the connection is not defined
        return settings.default_warehouse_url()


def connection_to_url(conn) -> str:
    """Turn an Airflow Connection into a SQLAlchemy URL (sqlite or postgres)."""
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        return f"sqlite:///{conn.host}"
    if conn_type in ("postgres", "postgresql"):
        from sqlalchemy.engine import URL

        return URL.create(
            "postgresql+psycopg2",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or "127.0.0.1",
            port=conn.port or 5432,
            database=conn.schema or "postgres",
        ).render_as_string(hide_password=False)
    uri = conn.get_uri()
    return uri


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (dashboard, tests) read while a task writes; busy_timeout waits on locks
    # instead of failing when two tasks write at once.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


@lru_cache(maxsize=16)
def engine_for(url: str) -> Engine:
    """A cached engine for ``url``, with SQLite tuned for concurrent task access."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        eng = create_engine(url, connect_args={"timeout": 60})
        event.listen(eng, "connect", _sqlite_pragmas)
        return eng
    return create_engine(url, pool_pre_ping=True)


def get_engine(url: str | None = None) -> Engine:
    """The warehouse engine (``url`` or the resolved warehouse URL)."""
    return engine_for(url or warehouse_url())


def is_postgres(engine: Engine) -> bool:
    """True when the warehouse is PostgreSQL."""
    return engine.dialect.name == "postgresql"
