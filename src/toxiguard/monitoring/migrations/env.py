"""Alembic environment of the monitoring store.

`toxiguard.monitoring.store.upgrade_schema` passes an open connection in
`config.attributes["connection"]`. Run from the command line instead
(`alembic -c src/toxiguard/monitoring/migrations/alembic.ini upgrade head`, or
`revision --autogenerate` to start a new migration), it connects to the store named by the
toxiguard settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import toxiguard.monitoring.tables  # noqa: F401  (registers the monitoring tables on metadata)
from toxiguard.monitoring.store import database_url, make_engine, metadata
from toxiguard.settings import get_settings


def _migrate(connection: Connection) -> None:
    """Run the pending migrations on one connection."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    """Migrate the connection we were given, or the store named by the settings."""
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        _migrate(given)
        return
    engine = make_engine(database_url(get_settings()))
    try:
        with engine.begin() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; migrate a live database")
run()
