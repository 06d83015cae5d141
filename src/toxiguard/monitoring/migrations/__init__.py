"""Alembic migrations of the monitoring store, run by `monitoring.store.upgrade_schema`."""
