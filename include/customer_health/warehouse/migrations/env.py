"""Alembic environment: runs migrations on the engine handed over by ``migrate.py``."""

from alembic import context

from customer_health.warehouse.schema import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # pragma: no cover - run through customer_health.warehouse.migrate only
    from customer_health.warehouse.engine import get_engine

    engine = get_engine()

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
