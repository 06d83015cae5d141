"""The prediction log's write-ahead spool: batches appended to segment files on local disk.

`Spool.append` writes one JSON line per batch to the process's open segment before the API
answers; the log's writer reads the lines back (`take`), writes them to the store and only then
advances past them (`commit`), recording the committed offset in a `.done` file beside the
segment. A segment is deleted once it is rotated (at `segment_bytes`) and fully committed.

Each process owns its segments through an exclusive `flock`, which the kernel drops when the
process dies, even by SIGKILL: `open` adopts every segment nobody holds (an earlier process's)
and replays it from its `.done` offset. A torn last line (a crash mid-append) or a line that no
longer decodes is skipped with a warning, its rows counted as dropped.

Durability: each record is one `os.write` to the page cache, which survives the process being
killed; `fsync=True` also survives power loss, at a measured cost (see benchmarks/serving.py).
Why not a library: persist-queue is not available here, and diskcache's Deque is a SQLite
table, which would put a second database's locking and sync in the request path; neither knows
about byte bounds or adopting a dead process's queue.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from toxiguard.monitoring.rows import PredictionBatch

logger = logging.getLogger(__name__)

SEGMENT_BYTES = 8 * 1024 * 1024
_READ_BYTES = 1024 * 1024
_ROWS = re.compile(rb'\{"rows":(\d+),')
_DONE_WIDTH = 20


def encode_batch(batch: PredictionBatch) -> bytes:
    """Return one spool line (JSON, newline-terminated) holding every field of a batch."""
    record = {
        "rows": len(batch),  # first, so that a scan can count rows without parsing the line
        "request_id": batch.request_id,
        "source": batch.source,
        "texts": [str(text) for text in batch.texts],
        # Arrays as base64 of their bytes: exact, and 20 us for 256 comments where JSON lists of
        # floats took 1,240 us (measured).
        "probabilities": _b64(np.asarray(batch.probabilities, dtype="<f8")),
        "flags": _b64(np.asarray(batch.flags, dtype=np.uint8)),
        "model_name": batch.model_name,
        "model_version": batch.model_version,
        "model_family": batch.model_family,
        "created_at": batch.created_at.isoformat(),
        "first_index": batch.first_index,
        "store_texts": batch.store_texts,
    }
    # surrogatepass: a lone surrogate in a comment must not make the spool refuse the batch.
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass") + b"\n"


def decode_batch(line: bytes) -> PredictionBatch:
    """Return the batch a spool line holds; raise ValueError (or KeyError) for a broken line."""
    record = json.loads(line.decode("utf-8", "surrogatepass"))
    rows = len(record["texts"])
    return PredictionBatch(
        request_id=record["request_id"],
        source=record["source"],
        texts=record["texts"],
        probabilities=_array(record["probabilities"], "<f8", rows).astype(np.float64),
        flags=_array(record["flags"], np.uint8, rows).astype(bool),
        model_name=record["model_name"],
        model_version=record["model_version"],
        model_family=record["model_family"],
        created_at=datetime.fromisoformat(record["created_at"]),
        first_index=record["first_index"],
        store_texts=record["store_texts"],
    )


def _b64(array: npt.NDArray[Any]) -> str:
    """Return an array's bytes (C order) as base64 text."""
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _array(text: str, dtype: npt.DTypeLike, rows: int) -> npt.NDArray[Any]:
    """Return the (rows, n) array whose bytes `text` holds in base64."""
    return np.frombuffer(base64.b64decode(text, validate=True), dtype=dtype).reshape(rows, -1)


def _rows_of(line: bytes) -> int | None:
    """Return the row count a spool line announces, None when the line is not one of ours."""
    match = _ROWS.match(line)
    return int(match.group(1)) if match else None


@dataclass
class _Segment:
    """One segment file this process holds (locked): what is appended, handed out, committed."""

    path: Path
    fd: int
    done_fd: int
    size: int = 0  # end of the last complete record
    read: int = 0  # end of what the writer has taken
    done: int = 0  # end of what the store has committed
    rows: int = 0  # rows in [done, size)
    sealed: bool = False  # no more appends (rotated, adopted or broken)


@dataclass(frozen=True)
class SpoolTake:
    """Records handed to the writer: segment range [start, end) holding `rows` rows."""

    segment: _Segment
    start: int
    end: int
    rows: int


class Spool:
    """A directory of segment files; appends and reads are thread-safe."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int = SEGMENT_BYTES,
        fsync: bool = False,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._active: _Segment | None = None
        self._taken_rows = 0
        self._created = 0
        self.dropped = 0  # rows of records that could not be decoded
        self.last_error: str | None = None

    # ------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Create the directory (appends may start now); `adopt` replays older segments."""
        self.directory.mkdir(parents=True, exist_ok=True)

    def adopt(self) -> int:
        """Take over the segments no live process holds (oldest first); return their rows."""
        adopted = 0
        for path in sorted(self.directory.glob("*.jsonl")):
            segment = self._adopt(path)
            if segment is None:
                continue
            with self._lock:
                older = sum(1 for s in self._segments if s.path.name < path.name)
                self._segments.insert(older, segment)
            adopted += segment.rows
            self._delete_if_done(segment)
        if adopted:
            logger.warning(
                "prediction spool: replaying %d rows left in %s by an earlier process",
                adopted,
                self.directory,
            )
        return adopted

    def close(self) -> None:
        """Release the segments: delete those fully committed, keep the rest for the next start."""
        with self._lock:
            segments, self._segments, self._active = self._segments, [], None
        for segment in segments:
            segment.sealed = True
            if not self._delete_if_done(segment):
                os.close(segment.fd)
                os.close(segment.done_fd)

    # ------------------------------------------------------------ producer side
    def append(self, batch: PredictionBatch) -> bool:
        """Append a batch to the active segment; return False (never raise) if it cannot be."""
        try:
            record = encode_batch(batch)
        except (TypeError, ValueError) as error:
            self.last_error = f"spool: cannot encode request {batch.request_id}: {error}"
            return False
        with self._lock:
            if self.pending_bytes_locked() + len(record) > self.max_bytes:
                self.last_error = f"spool full ({self.max_bytes:,} bytes)"
                return False
            try:
                segment = self._writable()
                _write_all(segment.fd, record)
                if self.fsync:
                    os.fsync(segment.fd)
            except OSError as error:  # ENOSPC, EIO, a read-only disk: the caller keeps the rows
                self.last_error = f"spool: {type(error).__name__}: {error}"
                if self._active is not None:
                    self._abandon_tail(self._active)
                return False
            segment.size += len(record)
            segment.rows += len(batch)
            if segment.size >= self.segment_bytes:
                segment.sealed = True
                self._active = None
            self.last_error = None
            return True

    # ------------------------------------------------------------ writer side
    def take(self, max_rows: int) -> tuple[list[PredictionBatch], SpoolTake] | None:
        """Return the oldest records not yet handed out (about `max_rows` rows), or None."""
        with self._lock:
            segment = next((s for s in self._segments if s.read < s.size), None)
            if segment is None:
                return None
            start, limit = segment.read, segment.size
        batches: list[PredictionBatch] = []
        rows, end = 0, start
        for offset, line in _lines(segment.fd, start, limit):
            if rows >= max_rows:
                break
            announced = _rows_of(line) or 0
            rows += announced
            end = offset + len(line) + 1
            try:
                batches.append(decode_batch(line))
            except (ValueError, KeyError, TypeError) as error:
                self.dropped += announced
                logger.warning(
                    "prediction spool: skipped a broken record (%d rows) at %s:%d: %s",
                    announced,
                    segment.path,
                    offset,
                    error,
                )
        if end == start:
            return None
        with self._lock:
            segment.read = end
            self._taken_rows += rows
        return batches, SpoolTake(segment, start, end, rows)

    def commit(self, take: SpoolTake) -> None:
        """Mark a taken range as written to the store; delete its segment once it is all done."""
        segment = take.segment
        with self._lock:
            segment.done = take.end
            segment.rows -= take.rows
            self._taken_rows -= take.rows
        try:
            os.pwrite(segment.done_fd, b"%0*d\n" % (_DONE_WIDTH, take.end), 0)
        except OSError as error:  # the rows are in the store: at worst a restart replays them
            logger.warning(
                "prediction spool: cannot record progress in %s: %s", segment.path, error
            )
        self._delete_if_done(segment)

    def release(self, take: SpoolTake) -> None:
        """Hand a taken range back after a failed write, so that the next take retries it."""
        with self._lock:
            take.segment.read = min(take.segment.read, take.start)
            self._taken_rows -= take.rows

    # ------------------------------------------------------------ counts
    @property
    def pending_rows(self) -> int:
        """Return the rows appended and not yet committed (handed out or not)."""
        with self._lock:
            return sum(segment.rows for segment in self._segments)

    @property
    def unread_rows(self) -> int:
        """Return the rows not yet handed to the writer."""
        with self._lock:
            return sum(segment.rows for segment in self._segments) - self._taken_rows

    @property
    def pending_bytes(self) -> int:
        """Return the bytes appended and not yet committed."""
        with self._lock:
            return self.pending_bytes_locked()

    def pending_bytes_locked(self) -> int:
        """Return pending bytes; the caller holds the lock."""
        return sum(segment.size - segment.done for segment in self._segments)

    # ------------------------------------------------------------ segments
    def _writable(self) -> _Segment:
        """Return the active segment, creating one (locked before it gets its name) if needed."""
        if self._active is not None:
            return self._active
        self._created += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._created}"
        temporary = self.directory / f"{name}.new"
        path = temporary.with_suffix(".jsonl")
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # before the name: no one adopts it
            done_fd = os.open(path.with_suffix(".done"), os.O_RDWR | os.O_CREAT, 0o600)
            temporary.rename(path)
        except OSError:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        if self.fsync:
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        self._active = _Segment(path, fd, done_fd)
        self._segments.append(self._active)
        return self._active

    def _abandon_tail(self, segment: _Segment) -> None:
        """After a failed append: cut the partial record off and append to a new segment next."""
        try:
            os.ftruncate(segment.fd, segment.size)
        except OSError:
            logger.debug("prediction spool: cannot truncate %s", segment.path, exc_info=True)
        segment.sealed = True
        self._active = None

    def _adopt(self, path: Path) -> _Segment | None:
        """Return a segment no live process holds, locked and scanned; None if one holds it."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != path.stat().st_ino:  # deleted and re-created meanwhile
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            return None
        done_fd = os.open(path.with_suffix(".done"), os.O_RDWR | os.O_CREAT, 0o600)
        size = os.fstat(fd).st_size
        done = _read_done(fd, done_fd, size)
        segment = _Segment(path, fd, done_fd, size=done, read=done, done=done, sealed=True)
        for offset, line in _lines(fd, done, size):
            rows = _rows_of(line)
            if rows is None:
                logger.warning("prediction spool: skipped a broken record at %s:%d", path, offset)
            segment.rows += rows or 0
            segment.size = offset + len(line) + 1
        if segment.size < size:
            logger.warning(
                "prediction spool: %s ends in a torn record (%d bytes, a crash mid-append): "
                "skipped",
                path,
                size - segment.size,
            )
        return segment

    def _delete_if_done(self, segment: _Segment) -> bool:
        """Delete a sealed, fully committed segment and its `.done` file; return True if so."""
        with self._lock:
            if not segment.sealed or segment.done < segment.size:
                return False
            if segment in self._segments:
                self._segments.remove(segment)
        for path in (segment.path, segment.path.with_suffix(".done")):
            path.unlink(missing_ok=True)
        os.close(segment.fd)
        os.close(segment.done_fd)
        return True


def _write_all(fd: int, data: bytes) -> None:
    """Write all of `data` (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_done(fd: int, done_fd: int, size: int) -> int:
    """Return the committed offset in a `.done` file, 0 unless it ends a record in the segment."""
    try:
        done = int(os.pread(done_fd, _DONE_WIDTH + 1, 0) or b"0")
    except ValueError:
        return 0
    if 0 < done <= size and os.pread(fd, 1, done - 1) == b"\n":
        return done
    return 0


def _lines(fd: int, start: int, limit: int) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, line) for each complete line in [start, limit); a torn tail is left out."""
    position, chunk_bytes = start, _READ_BYTES
    while position < limit:
        chunk = os.pread(fd, min(chunk_bytes, limit - position), position)
        cut = 0
        while (newline := chunk.find(b"\n", cut)) >= 0:
            yield position + cut, chunk[cut:newline]
            cut = newline + 1
        if cut == 0:
            if len(chunk) < limit - position:
                chunk_bytes *= 2  # a record longer than the chunk: read more of it
                continue
            return  # no newline before the end: a torn tail
        position, chunk_bytes = position + cut, _READ_BYTES
