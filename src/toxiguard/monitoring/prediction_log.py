"""The prediction log writer: records predictions off the request path, in batches, with retries.

`PredictionLog.record` appends each batch to the write-ahead spool on local disk (`spool.py`)
before the request is answered, and never fails the request. A background thread replays what
an earlier process left in the spool, then reads batches back, computes text statistics and
writes them in one transaction each, advancing the spool only after the commit. When the
database is down the write is retried with a growing pause; rows wait in the spool, so neither
`kill -9` nor a stop during the outage loses them. Writes are idempotent on
(request_id, item_index), so a batch replayed after an unacknowledged commit is not duplicated.

Rows the spool refuses (full, disk full, no spool configured, not started yet) wait in memory,
bounded in rows and bytes; past either bound the oldest are dropped and counted. The status is
unhealthy while rows wait and no write has succeeded for `stall_seconds`, which catches a
writer blocked on a locked SQLite file (it waits out the 30 s busy timeout without failing).
"""

from __future__ import annotations

import logging
import sys
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
from sqlalchemy import Engine

from toxiguard.errors import error_line
from toxiguard.monitoring.rows import PredictionBatch, batch_rows
from toxiguard.monitoring.spool import Spool, SpoolTake
from toxiguard.monitoring.store import database_url, make_engine, redacted, upgrade_schema
from toxiguard.monitoring.store_writes import insert_statement, write_rows
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)

__all__ = ["LogStatus", "PredictionBatch", "PredictionLog", "batch_rows", "chunk_logger"]

MAX_RETRY_SECONDS = 30.0
MIN_STALL_SECONDS = 10.0
_ROW_BYTES = 6 * 8 + 6 + 200  # scores, flags, and a share of the batch's fields, per row


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
    spool: str | None = None  # the spool's directory; None when rows wait in memory only
    spooled_rows: int = 0  # of `pending`, those in the spool
    spooled_bytes: int = 0
    buffered_bytes: int = 0  # memory held by the rows of `pending` outside the spool

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
            "spool": self.spool,
            "spooled_rows": self.spooled_rows,
            "spooled_bytes": self.spooled_bytes,
            "buffered_bytes": self.buffered_bytes,
        }


@dataclass(frozen=True)
class _Taken:
    """What the writer took: batches from memory (spool None) or from the spool."""

    batches: list[PredictionBatch]
    rows: int
    spool: SpoolTake | None = None


def memory_bytes(batch: PredictionBatch) -> int:
    """Return about how many bytes a batch holds in memory (texts as Python strings)."""
    texts = sum(sys.getsizeof(text) for text in batch.texts)
    return texts + len(batch) * _ROW_BYTES


class PredictionLog:
    """A background writer of predictions into the monitoring store, through a disk spool."""

    def __init__(
        self,
        engine: Engine,
        *,
        log_texts: bool = True,
        batch_size: int = 500,
        flush_seconds: float = 0.5,
        buffer_rows: int = 200_000,
        buffer_bytes: int = 256 * 1024 * 1024,
        retry_seconds: float = 2.0,
        spool: Spool | None = None,
        stall_seconds: float | None = None,
    ) -> None:
        self.engine = engine
        self.log_texts = log_texts
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.buffer_rows = buffer_rows
        self.buffer_bytes = buffer_bytes
        self.retry_seconds = retry_seconds
        self.spool = spool
        self.stall_seconds = stall_seconds or max(MIN_STALL_SECONDS, 4 * flush_seconds)
        self._insert = insert_statement(engine)
        self._queue: deque[tuple[PredictionBatch, int]] = deque()
        self._queued_rows = 0
        self._queued_bytes = 0
        self._in_flight = 0
        self._spool_open = False
        self._spilling = False
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
        self._waiting_since: float | None = None  # since rows wait with no successful write

    @classmethod
    def from_settings(cls, settings: Settings) -> PredictionLog:
        """Return a writer (not started) for the store and the log options in the settings."""
        spool = None
        if settings.log_spool_bytes > 0:
            spool = Spool(
                settings.resolved_home / "spool" / "predictions",
                max_bytes=settings.log_spool_bytes,
                fsync=settings.log_spool_fsync,
            )
        return cls(
            make_engine(database_url(settings)),
            log_texts=settings.log_texts,
            batch_size=settings.log_batch_size,
            flush_seconds=settings.log_flush_seconds,
            buffer_rows=settings.log_buffer_rows,
            buffer_bytes=settings.log_buffer_bytes,
            retry_seconds=settings.log_retry_seconds,
            spool=spool,
        )

    # ------------------------------------------------------------ producer side
    def record(self, batch: PredictionBatch) -> None:
        """Spool a batch for writing (memory if the spool refuses it); never raises."""
        if len(batch) == 0:
            return
        try:
            chunks = [batch]
            if len(batch) > self.batch_size:
                chunks = [self._slice(batch, at) for at in range(0, len(batch), self.batch_size)]
            spool = self.spool if self._spool_open else None
            refused = [chunk for chunk in chunks if spool is None or not spool.append(chunk)]
            with self._cond:
                if self._waiting_since is None:
                    self._waiting_since = time.monotonic()
                if spool is not None:
                    self._note_spilling(bool(refused), spool)
                for chunk in refused:
                    self._keep_in_memory(chunk)
                self._cond.notify()
        except Exception:  # a request is never failed by its log; the loss is counted
            with self._cond:
                self._dropped += len(batch)
            logger.exception("prediction log: dropped %d rows of %s", len(batch), batch.request_id)

    def _note_spilling(self, spilling: bool, spool: Spool) -> None:
        """Log once when rows start (or stop) going to memory because the spool refuses them."""
        if spilling and not self._spilling:
            logger.error("prediction log: %s; rows wait in memory", spool.last_error)
        elif self._spilling and not spilling:
            logger.warning("prediction log: the spool takes rows again")
        self._spilling = spilling

    def _keep_in_memory(self, batch: PredictionBatch) -> None:
        """Queue a batch in memory, dropping the oldest past the row or byte bound."""
        size = memory_bytes(batch)
        self._queue.append((batch, size))
        self._queued_rows += len(batch)
        self._queued_bytes += size
        while self._queue and (
            self._queued_rows > self.buffer_rows or self._queued_bytes > self.buffer_bytes
        ):
            oldest, oldest_bytes = self._queue.popleft()
            self._queued_rows -= len(oldest)
            self._queued_bytes -= oldest_bytes
            self._dropped += len(oldest)
            logger.error(
                "prediction log buffer full (%d rows, %d bytes): dropped %d rows of request %s",
                self.buffer_rows,
                self.buffer_bytes,
                len(oldest),
                oldest.request_id,
            )

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
        """Open the spool and adopt what earlier processes left, start the writer; return self."""
        if self.spool is not None and not self._spool_open:
            try:
                self.spool.open()
                self._spool_open = True
                # Before any request; the scan reads the unwritten part once (128 MB of
                # short comments in 0.3 s, measured).
                self.spool.adopt()
            except OSError as error:  # an unusable disk must not stop the server: memory only
                logger.error("prediction log: spool at %s: %s", self.spool.directory, error)
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="toxiguard-prediction-log", daemon=True
            )
            self._thread.start()
        return self

    def _pending_locked(self) -> int:
        """Return rows recorded and not yet written; the caller holds the condition."""
        spooled = self.spool.pending_rows if self.spool is not None and self._spool_open else 0
        return self._queued_rows + self._in_flight + spooled

    def flush(self, timeout: float = 30.0) -> bool:
        """Return True once everything recorded so far is written, False at the timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._urgent = True
            self._cond.notify_all()
            while self._pending_locked():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
                self._cond.notify_all()
        return True

    def close(self, timeout: float = 30.0) -> bool:
        """Flush (up to `timeout`), stop, close spool and engine; return True if all was written."""
        flushed = self.flush(timeout) if self._thread is not None else not self._queued_rows
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        status = self.status()
        if not flushed:
            logger.error(
                "prediction log closed with %d rows not written (%s): %d kept in the spool %s "
                "for the next start, %d lost from memory",
                status.pending,
                status.last_error,
                status.spooled_rows,
                status.spool,
                status.pending - status.spooled_rows,
            )
        if self.spool is not None and self._spool_open:
            self.spool.close()
            self._spool_open = False
        self.engine.dispose()
        return flushed

    def status(self) -> LogStatus:
        """Return counts and health of the writer (unhealthy when it is failing or stuck)."""
        spool = self.spool if self._spool_open else None
        with self._cond:
            pending = self._pending_locked()
            healthy, last_error = self._healthy, self._last_error
            waited = time.monotonic() - self._waiting_since if self._waiting_since else 0.0
            if pending and waited > self.stall_seconds:
                stuck = f"no write for {waited:.0f} s, {pending:,} rows pending"
                last_error = f"{stuck} ({last_error})" if not healthy and last_error else stuck
                healthy = False
            if spool is not None and spool.last_error:
                healthy = False
                last_error = f"{last_error}; {spool.last_error}" if last_error else spool.last_error
            return LogStatus(
                database=redacted(str(self.engine.url)),
                healthy=healthy,
                written=self._written,
                pending=pending,
                write_failures=self._failures,
                dropped=self._dropped + (spool.dropped if spool is not None else 0),
                rejected=self._rejected,
                last_error=last_error,
                last_write_at=self._last_write_at,
                spool=str(spool.directory) if spool is not None else None,
                spooled_rows=spool.pending_rows if spool is not None else 0,
                spooled_bytes=spool.pending_bytes if spool is not None else 0,
                buffered_bytes=self._queued_bytes,
            )

    # ------------------------------------------------------------ writer thread
    def _take(self) -> _Taken | None:
        """Wait for rows to write; return up to about batch_size of them (None when stopping).

        Memory first (those rows are at risk), then the spool, oldest first.
        """
        spool = self.spool if self._spool_open else None
        with self._cond:
            waited_since = time.monotonic()
            while not self._stop.is_set():
                available = self._queued_rows + (spool.unread_rows if spool is not None else 0)
                if available >= self.batch_size or (self._urgent and available):
                    break
                if available and time.monotonic() - waited_since >= self.flush_seconds:
                    break
                self._cond.wait(self.flush_seconds / 2 if available else 1.0)
                if not available:
                    waited_since = time.monotonic()
            if self._queue:
                taken: list[PredictionBatch] = []
                rows = size = 0
                while self._queue and (
                    not taken or rows + len(self._queue[0][0]) <= self.batch_size
                ):
                    item, item_bytes = self._queue.popleft()
                    taken.append(item)
                    rows += len(item)
                    size += item_bytes
                self._queued_rows -= rows
                self._queued_bytes -= size
                self._in_flight = rows
                return _Taken(taken, rows)
            if spool is None or self._stop.is_set():  # the spool keeps its rows for the next start
                self._urgent = False
                return None
        got = spool.take(self.batch_size)
        if got is None:
            with self._cond:
                self._urgent = False
            return None
        return _Taken(got[0], got[1].rows, got[1])

    def _give_back(self, taken: _Taken) -> None:
        """Put what could not be written back, to be retried first."""
        if taken.spool is not None and self.spool is not None:
            self.spool.release(taken.spool)
            return
        with self._cond:
            for item in reversed(taken.batches):
                size = memory_bytes(item)
                self._queue.appendleft((item, size))
                self._queued_rows += len(item)
                self._queued_bytes += size
            self._in_flight = 0

    def _done(self, taken: _Taken, rows: int, rejected: int = 0) -> None:
        """Count a finished write and let the spool advance past it."""
        with self._cond:
            # Under the condition, with the count: status() never sees the rows neither pending
            # nor written (a flush waiter could otherwise read written short of what was sent).
            if taken.spool is not None and self.spool is not None:
                self.spool.commit(taken.spool)
            self._written += rows
            self._rejected += rejected
            if taken.spool is None:
                self._in_flight = 0
            self._healthy = True
            self._last_write_at = datetime.now(UTC)
            self._waiting_since = time.monotonic() if self._pending_locked() else None
            self._cond.notify_all()

    def _failed(self, error: Exception) -> None:
        """Count a failed write or spool read."""
        with self._cond:
            self._failures += 1
            self._healthy = False
            self._last_error = error_line(error)

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
            taken: _Taken | None = None
            try:
                taken = self._take()
                if taken is None:
                    if self._stop.is_set():
                        return
                    continue
                written, rejected = self._write(taken.batches)
            except Exception as error:  # the log must survive anything the database does
                if taken is not None:
                    self._give_back(taken)
                self._failed(error)
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
            self._done(taken, written, rejected)

    def _write(self, taken: list[PredictionBatch]) -> tuple[int, int]:
        """Return (rows written, rows rejected) after writing the batches in one transaction."""
        rows = [row for item in taken for row in batch_rows(item, self.log_texts)]
        if not rows:
            return 0, 0
        if not self._schema_ready:
            upgrade_schema(self.engine)
            self._schema_ready = True
        return write_rows(self.engine, self._insert, rows)


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
