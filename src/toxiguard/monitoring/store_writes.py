"""Writing prediction-log rows into the store: idempotent inserts, and which failures to retry.

Rows are inserted skipping any (request_id, item_index) already there, so a batch written again
after an unacknowledged commit, or replayed from the spool, is not duplicated. A failure the
database may recover from (down, schema missing) is raised for the caller to retry; a batch
refused for its content is written row by row, and the rows still refused are counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, Insert, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from toxiguard.monitoring.store import predictions

logger = logging.getLogger(__name__)

_RETRYABLE = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeoutError,
    ProgrammingError,
)


def insert_statement(engine: Engine) -> Insert:
    """Return an INSERT into predictions that skips rows already written (same request, index)."""
    keys = ["request_id", "item_index"]
    if engine.dialect.name == "postgresql":
        return postgresql.insert(predictions).on_conflict_do_nothing(index_elements=keys)
    if engine.dialect.name == "sqlite":
        return sqlite.insert(predictions).on_conflict_do_nothing(index_elements=keys)
    return insert(predictions)


def is_retryable(error: BaseException) -> bool:
    """Return True when a failed write may succeed later (database down, schema missing)."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, _RETRYABLE)


def write_rows(
    engine: Engine, statement: Insert, rows: Sequence[dict[str, Any]]
) -> tuple[int, int]:
    """Return (rows written, rows rejected) after inserting the rows in one transaction.

    Raises the database's error when it is retryable; a batch refused otherwise is written
    row by row, and each row still refused is logged and counted as rejected.
    """
    try:
        with engine.begin() as connection:
            connection.execute(statement, list(rows))
        return len(rows), 0
    except SQLAlchemyError as error:
        if is_retryable(error):
            raise
        logger.warning("prediction log: batch refused (%s); writing rows one by one", error)
    rejected = 0
    for row in rows:
        try:
            with engine.begin() as connection:
                connection.execute(statement, [row])
        except SQLAlchemyError as error:
            if is_retryable(error):
                raise
            rejected += 1
            logger.error(
                "prediction log: row %s/%s rejected: %s",
                row["request_id"],
                row["item_index"],
                error,
            )
    return len(rows) - rejected, rejected
