"""The monitoring store: its tables (SQLAlchemy Core), engine, Alembic migrations and queries.

SQLite under the home by default, PostgreSQL (psycopg 3) when `TOXIGUARD_DATABASE_URL` points
at one. The schema is owned by the Alembic migrations in `toxiguard/migrations`; `metadata`
below mirrors them (a test checks that the two agree). Later features add their tables to the
same `metadata` and with a new migration.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import pandas as pd
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from toxiguard.errors import redact
from toxiguard.labels import FLAG_COLUMNS, SCORE_COLUMNS
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)
_MIGRATION_LOCK = threading.Lock()  # see upgrade_schema

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
# "perspective": comments:analyze; "suggestion": a comment scored for comments:suggestscore.
SOURCES: Final = ("api", "ui", "score", "perspective", "suggestion")

# Constraint names are spelled out so that migrations on SQLite and PostgreSQL agree.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row per scored comment. (request_id, item_index) names a prediction: feedback and any
# later table refer to it by these two columns.
predictions = Table(
    "predictions",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("item_index", Integer, nullable=False),
    Column("source", String(16), nullable=False),
    Column("model_name", String(200), nullable=True),
    Column("model_version", Integer, nullable=True),
    Column("model_family", String(64), nullable=True),
    Column("text", Text, nullable=True),
    Column("length", Integer, nullable=False),
    Column("words", Integer, nullable=False),
    Column("upper_share", Float, nullable=False),
    Column("non_letter_share", Float, nullable=False),
    *(Column(name, Float, nullable=False) for name in SCORE_COLUMNS),
    *(Column(name, Boolean, nullable=False) for name in FLAG_COLUMNS),
    UniqueConstraint("request_id", "item_index"),
    Index(None, "created_at"),
    Index(None, "model_version", "created_at"),
)


def database_url(settings: Settings) -> str:
    """Return the monitoring store's SQLAlchemy URL, with PostgreSQL mapped to psycopg 3."""
    return normalise_url(settings.monitoring_database_url)


def normalise_url(url: str) -> str:
    """Return `url` with a bare postgres:// or postgresql:// scheme given the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def make_engine(url: str, *, connect_timeout_s: int = 5) -> Engine:
    """Return an engine for the store (making a SQLite file's folder); connects lazily."""
    url = normalise_url(url)
    parsed = make_url(url)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args["timeout"] = 30
    elif parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = connect_timeout_s
    engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Let readers and the log writer work at once (WAL) on a SQLite store."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def redacted(url: str) -> str:
    """Return the database URL, normalised, with any password hidden, for logs and status pages."""
    return redact(normalise_url(url))


def upgrade_schema(engine: Engine, revision: str = "head", attempts: int = 3) -> None:
    """Bring the store's schema up to `revision` with the packaged Alembic migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    for attempt in range(1, attempts + 1):
        try:
            # Alembic keeps the running migration in a module global: two threads of one
            # process (the UI's tabs filling at page load) raised KeyError('config').
            with _MIGRATION_LOCK, engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
            return
        except SQLAlchemyError:
            # Two processes migrating a fresh store at once: the loser retries and finds it done.
            if attempt == attempts:
                raise
            logger.debug("schema upgrade attempt %d failed; retrying", attempt, exc_info=True)
            time.sleep(0.2 * attempt)


def downgrade_schema(engine: Engine, revision: str = "base") -> None:
    """Take the store's schema back to `revision` (default: empty), dropping what came later."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with _MIGRATION_LOCK, engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def schema_differences(connection: Connection, tables: Collection[str] | None = None) -> list[Any]:
    """Return Alembic's differences between the database and `metadata` (optionally some tables).

    Empty when the migrations and the table definitions agree.
    """

    def included(obj: Any, name: str | None, type_: str, _reflected: bool, _compare: Any) -> bool:
        # include_object sees both sides (database and metadata), unlike include_name.
        table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
        return tables is None or table in tables

    options = {"compare_type": True, "include_object": included}
    context = MigrationContext.configure(connection, opts=options)
    return list(compare_metadata(context, metadata))


def head_revision() -> str | None:
    """Return the newest revision of the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """Return the Alembic revision the store is at (None for an empty store)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def read_predictions(
    engine: Engine,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    source: str | None = None,
    model_version: int | None = None,
) -> pd.DataFrame:
    """Return logged predictions in [start, end) (optionally one source/version), oldest first."""
    query = select(predictions)
    if start is not None:
        query = query.where(predictions.c.created_at >= start)
    if end is not None:
        query = query.where(predictions.c.created_at < end)
    if source is not None:
        query = query.where(predictions.c.source == source)
    if model_version is not None:
        query = query.where(predictions.c.model_version == model_version)
    query = query.order_by(predictions.c.id)
    with engine.connect() as connection:
        result = connection.execute(query)
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    if not frame.empty:
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def count_predictions(engine: Engine) -> int:
    """Return how many predictions the store holds."""
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(predictions)).scalar_one())
