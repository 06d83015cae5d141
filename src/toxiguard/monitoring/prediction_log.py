"""The prediction log writer: records predictions off the request path, in batches, with retries.

`PredictionLog.record` only appends to an in-memory buffer, so it never slows or fails a
request. A background thread computes text statistics and writes batches in one transaction
each. When the database is down, rows stay in the (bounded) buffer and the write is retried
with a growing pause; when it comes back nothing has been lost. Writes are idempotent on
(request_id, item_index), so a batch retried after an unacknowledged commit is not duplicated.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
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

from toxiguard.errors import redact
from toxiguard.monitoring.rows import PredictionBatch, batch_rows
from toxiguard.monitoring.store import (
    database_url,
    make_engine,
    predictions,
    redacted,
    upgrade_schema,
)
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)

__all__ = ["LogStatus", "PredictionBatch", "PredictionLog", "batch_rows", "chunk_logger"]

MAX_RETRY_SECONDS = 30.0
_RETRYABLE = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeoutError,
    ProgrammingError,
)


@dataclass(frozen=True)
class LogStatus:
    """What the writer has done so far; shown in /ready and /metrics."""

    database: str
    healthy: bool
    written: int
    pending: int
    write_failures: int
    dropped: int
    rejected: int
    last_error: str | None
    last_write_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """Return the status as a JSON-ready dict."""
        return {
            "database": self.database,
            "healthy": self.healthy,
            "written": self.written,
            "pending": self.pending,
            "write_failures": self.write_failures,
            "dropped": self.dropped,
            "rejected": self.rejected,
            "last_error": self.last_error,
            "last_write_at": self.last_write_at.isoformat() if self.last_write_at else None,
        }


def _insert_statement(engine: Engine) -> Insert:
    """Return an INSERT into predictions that skips rows already written (same request, index)."""
    keys = ["request_id", "item_index"]
    if engine.dialect.name == "postgresql":
        return postgresql.insert(predictions).on_conflict_do_nothing(index_elements=keys)
    if engine.dialect.name == "sqlite":
        return sqlite.insert(predictions).on_conflict_do_nothing(index_elements=keys)
    return insert(predictions)


def _is_retryable(error: BaseException) -> bool:
    """Return True when a failed write may succeed later (database down, schema missing)."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, _RETRYABLE)


class PredictionLog:
    """A background writer of predictions into the monitoring store."""

    def __init__(
        self,
        engine: Engine,
        *,
        log_texts: bool = True,
        batch_size: int = 500,
        flush_seconds: float = 0.5,
        buffer_rows: int = 200_000,
        retry_seconds: float = 2.0,
    ) -> None:
        self.engine = engine
        self.log_texts = log_texts
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.buffer_rows = buffer_rows
        self.retry_seconds = retry_seconds
        self._insert = _insert_statement(engine)
        self._queue: deque[PredictionBatch] = deque()
        self._queued_rows = 0
        self._in_flight = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._urgent = False
        self._thread: threading.Thread | None = None
        self._schema_ready = False
        self._healthy = True
        self._written = 0
        self._failures = 0
        self._dropped = 0
        self._rejected = 0
        self._last_error: str | None = None
        self._last_write_at: datetime | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PredictionLog:
        """Return a writer (not started) for the store and the log options in the settings."""
        return cls(
            make_engine(database_url(settings)),
            log_texts=settings.log_texts,
            batch_size=settings.log_batch_size,
            flush_seconds=settings.log_flush_seconds,
            buffer_rows=settings.log_buffer_rows,
            retry_seconds=settings.log_retry_seconds,
        )

    # ------------------------------------------------------------ producer side
    def record(self, batch: PredictionBatch) -> None:
        """Queue a batch for writing; never blocks on the database and never raises for it."""
        if len(batch) == 0:
            return
        chunks = [batch]
        if len(batch) > self.batch_size:
            chunks = [self._slice(batch, start) for start in range(0, len(batch), self.batch_size)]
        with self._cond:
            for chunk in chunks:
                self._queue.append(chunk)
                self._queued_rows += len(chunk)
            while self._queued_rows > self.buffer_rows and self._queue:
                oldest = self._queue.popleft()
                self._queued_rows -= len(oldest)
                self._dropped += len(oldest)
                logger.error(
                    "prediction log buffer full (%d rows): dropped %d rows of request %s",
                    self.buffer_rows,
                    len(oldest),
                    oldest.request_id,
                )
            self._cond.notify()

    def _slice(self, batch: PredictionBatch, start: int) -> PredictionBatch:
        """Return rows [start, start + batch_size) of a batch as a batch of their own."""
        stop = start + self.batch_size
        return replace(
            batch,
            texts=batch.texts[start:stop],
            probabilities=batch.probabilities[start:stop],
            flags=batch.flags[start:stop],
            first_index=batch.first_index + start,
        )

    # ------------------------------------------------------------ lifecycle
    def start(self) -> PredictionLog:
        """Start the background writer thread; return self."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="toxiguard-prediction-log", daemon=True
            )
            self._thread.start()
        return self

    def flush(self, timeout: float = 30.0) -> bool:
        """Return True once everything recorded so far is written, False at the timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._urgent = True
            self._cond.notify_all()
            while self._queued_rows or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
                self._cond.notify_all()
        return True

    def close(self, timeout: float = 30.0) -> bool:
        """Flush (up to `timeout`), stop, release the engine; return True if all was written."""
        flushed = self.flush(timeout) if self._thread is not None else not self._queued_rows
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if not flushed:
            logger.error(
                "prediction log closed with %d rows not written (%s)",
                self._queued_rows + self._in_flight,
                self._last_error,
            )
        self.engine.dispose()
        return flushed

    def status(self) -> LogStatus:
        """Return counts and health of the writer."""
        with self._cond:
            return LogStatus(
                database=redacted(str(self.engine.url)),
                healthy=self._healthy,
                written=self._written,
                pending=self._queued_rows + self._in_flight,
                write_failures=self._failures,
                dropped=self._dropped,
                rejected=self._rejected,
                last_error=self._last_error,
                last_write_at=self._last_write_at,
            )

    # ------------------------------------------------------------ writer thread
    def _take(self) -> list[PredictionBatch]:
        """Wait for rows to write; return up to batch_size rows of them (empty when stopping)."""
        with self._cond:
            waited_since = time.monotonic()
            while not self._stop.is_set():
                if self._queued_rows >= self.batch_size or (self._urgent and self._queue):
                    break
                if self._queue and time.monotonic() - waited_since >= self.flush_seconds:
                    break
                self._cond.wait(self.flush_seconds / 2 if self._queue else 1.0)
                if not self._queue:
                    waited_since = time.monotonic()
            taken: list[PredictionBatch] = []
            rows = 0
            while self._queue and (not taken or rows + len(self._queue[0]) <= self.batch_size):
                item = self._queue.popleft()
                taken.append(item)
                rows += len(item)
            self._queued_rows -= rows
            self._in_flight = rows
            if not self._queue:
                self._urgent = False
            return taken

    def _give_back(self, taken: list[PredictionBatch]) -> None:
        """Put batches that could not be written back at the front of the queue."""
        with self._cond:
            for item in reversed(taken):
                self._queue.appendleft(item)
                self._queued_rows += len(item)
            self._in_flight = 0

    def _done(self, rows: int, rejected: int = 0) -> None:
        """Count a finished write."""
        with self._cond:
            self._written += rows
            self._rejected += rejected
            self._in_flight = 0
            self._healthy = True
            self._last_write_at = datetime.now(UTC)
            self._cond.notify_all()

    def _run(self) -> None:
        """Write batches until stopped; on a database failure keep the rows and retry."""
        try:  # migrate at once, so that a problem shows in the logs before the first write
            upgrade_schema(self.engine)
            self._schema_ready = True
        except Exception as error:
            logger.warning(
                "prediction log: cannot prepare %s yet: %s", redacted(str(self.engine.url)), error
            )
        pause = self.retry_seconds
        while True:
            taken = self._take()
            if not taken:
                if self._stop.is_set():
                    return
                continue
            try:
                written, rejected = self._write(taken)
            except Exception as error:  # the log must survive anything the database does
                self._give_back(taken)
                with self._cond:
                    self._failures += 1
                    self._healthy = False
                    first_line = redact(str(error)).splitlines()[0][:300]
                    self._last_error = f"{type(error).__name__}: {first_line}"
                logger.warning(
                    "prediction log: write to %s failed (%s); %d rows kept, retry in %.1f s",
                    redacted(str(self.engine.url)),
                    self._last_error,
                    self.status().pending,
                    pause,
                )
                self._schema_ready = False
                if self._stop.wait(pause):
                    return
                pause = min(pause * 2, MAX_RETRY_SECONDS)
                continue
            pause = self.retry_seconds
            self._done(written, rejected)

    def _write(self, taken: list[PredictionBatch]) -> tuple[int, int]:
        """Return (rows written, rows rejected) after writing the batches in one transaction."""
        if not self._schema_ready:
            upgrade_schema(self.engine)
            self._schema_ready = True
        rows = [row for item in taken for row in batch_rows(item, self.log_texts)]
        try:
            with self.engine.begin() as connection:
                connection.execute(self._insert, rows)
            return len(rows), 0
        except SQLAlchemyError as error:
            if _is_retryable(error):
                raise
            logger.warning("prediction log: batch refused (%s); writing rows one by one", error)
        rejected = 0
        for row in rows:
            try:
                with self.engine.begin() as connection:
                    connection.execute(self._insert, [row])
            except SQLAlchemyError as error:
                if _is_retryable(error):
                    raise
                rejected += 1
                logger.error(
                    "prediction log: row %s/%s rejected: %s",
                    row["request_id"],
                    row["item_index"],
                    error,
                )
        return len(rows) - rejected, rejected


@contextmanager
def chunk_logger(
    settings: Settings, model_info: Mapping[str, Any], source: str = "score"
) -> Iterator[Callable[[int, list[str], npt.NDArray[np.float64], npt.NDArray[np.bool_]], None]]:
    """Yield a callback logging scored chunks (first row, texts, scores, flags) as one request.

    The log is flushed when the block ends; a database that stays down is reported in the
    logs and does not fail the caller.
    """
    log = PredictionLog.from_settings(settings).start()
    request_id = uuid.uuid4().hex
    version = model_info.get("version")

    def record(
        first: int,
        texts: list[str],
        probabilities: npt.NDArray[np.float64],
        flags: npt.NDArray[np.bool_],
    ) -> None:
        log.record(
            PredictionBatch(
                request_id=request_id,
                source=source,
                texts=texts,
                probabilities=probabilities,
                flags=flags,
                model_name=model_info.get("name"),
                model_version=int(version) if version is not None else None,
                model_family=model_info.get("family"),
                first_index=first,
            )
        )

    try:
        yield record
    finally:
        if log.close(timeout=60):
            logger.info(
                "prediction log: %d rows written (request %s)", log.status().written, request_id
            )
