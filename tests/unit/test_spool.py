"""The prediction log's write-ahead spool, and the log writing through it, on real files."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine

from toxiguard.labels import LABELS
from toxiguard.monitoring import store
from toxiguard.monitoring.prediction_log import PredictionBatch, PredictionLog
from toxiguard.monitoring.spool import SEGMENT_BYTES, Spool, decode_batch, encode_batch
from toxiguard.settings import Settings


def _batch(texts: list[str], request_id: str = "r1", seed: int = 0) -> PredictionBatch:
    rng = np.random.default_rng(seed)
    probabilities = rng.random((len(texts), len(LABELS)))
    return PredictionBatch(
        request_id, "api", texts, probabilities, probabilities >= 0.5, "toxiguard", 3, "tfidf-lr"
    )


def _crash(spool: Spool) -> None:
    """Let go of the spool's files as a killed process would: no cleanup, locks released."""
    for segment in spool._segments:
        os.close(segment.fd)
        os.close(segment.done_fd)
    spool._segments.clear()


def _wait(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return store.make_engine(f"sqlite:///{tmp_path / 'monitoring.db'}")


def _spool(
    directory: Path, *, max_bytes: int = 1 << 30, segment_bytes: int = SEGMENT_BYTES
) -> Spool:
    spool = Spool(directory, max_bytes=max_bytes, segment_bytes=segment_bytes)
    spool.open()
    return spool


def test_a_record_holds_every_field_exactly() -> None:
    batch = _batch(["plain", "nul\x00 and lone \ud800 surrogate", "ünïcode ✓"], "req")
    again = decode_batch(encode_batch(batch)[:-1])
    assert list(again.texts) == list(batch.texts)
    np.testing.assert_array_equal(again.probabilities, batch.probabilities)
    np.testing.assert_array_equal(again.flags, batch.flags)
    assert (again.request_id, again.created_at, again.model_version) == ("req", batch.created_at, 3)
    assert again.store_texts and again.first_index == 0


def test_records_come_back_in_order_and_rotated_segments_go_once_written(tmp_path: Path) -> None:
    spool = _spool(tmp_path, segment_bytes=2000)
    for i in range(20):
        assert spool.append(_batch([f"comment {i}"] * 3, f"r{i}"))
    assert spool.pending_rows == 60 and len(list(tmp_path.glob("*.jsonl"))) > 2
    seen: list[str] = []
    while (got := spool.take(max_rows=7)) is not None:
        batches, take = got
        assert 1 <= len(batches) <= 3  # 7 rows: records of 3 until the count is reached
        seen += [b.request_id for b in batches]
        spool.commit(take)
    assert seen == [f"r{i}" for i in range(20)]
    assert spool.pending_rows == 0 and spool.pending_bytes == 0
    assert len(list(tmp_path.glob("*.jsonl"))) <= 1  # at most the open segment is left
    spool.close()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_hands_the_records_back(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    spool.append(_batch(["a", "b"], "r1"))
    first = spool.take(10)
    assert first is not None and spool.take(10) is None and spool.unread_rows == 0
    spool.release(first[1])
    again = spool.take(10)
    assert again is not None and [b.request_id for b in again[0]] == ["r1"]


def test_a_later_process_replays_what_a_killed_one_left(tmp_path: Path) -> None:
    first = _spool(tmp_path)
    for i in range(5):
        first.append(_batch(["x", "y"], f"r{i}"))
    got = first.take(4)
    assert got is not None
    first.commit(got[1])  # r0 and r1 are in the store
    _crash(first)
    second = _spool(tmp_path)
    assert second.adopt() == 6
    got = second.take(100)
    assert got is not None and [b.request_id for b in got[0]] == ["r2", "r3", "r4"]
    second.commit(got[1])
    assert list(tmp_path.glob("*.jsonl")) == []  # adopted and written: deleted


def test_a_live_process_keeps_its_segments(tmp_path: Path) -> None:
    live = _spool(tmp_path)
    live.append(_batch(["x"]))
    other = _spool(tmp_path)
    assert other.adopt() == 0 and other.take(10) is None
    assert live.pending_rows == 1


def test_a_stop_during_an_outage_leaves_the_rows_for_the_next_start(tmp_path: Path) -> None:
    first = _spool(tmp_path)
    first.append(_batch(["x", "y", "z"], "kept"))
    first.close()
    second = _spool(tmp_path)
    assert second.adopt() == 3


def test_a_torn_or_broken_record_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _spool(tmp_path)
    first.append(_batch(["a"], "before"))
    (segment,) = tmp_path.glob("*.jsonl")
    os.write(first._segments[0].fd, b'{"rows":2,"request_id":"broken"\n')
    first._segments[0].size = segment.stat().st_size
    first._segments[0].rows += 2
    first.append(_batch(["b"], "after"))
    _crash(first)
    with segment.open("ab") as file:
        file.write(encode_batch(_batch(["torn"], "torn"))[:40])  # killed mid-append
    second = _spool(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert second.adopt() == 4
        got = second.take(100)
    assert got is not None and [b.request_id for b in got[0]] == ["before", "after"]
    assert second.dropped == 2
    assert "torn record" in caplog.text and "broken record" in caplog.text


def test_the_spool_refuses_past_its_byte_bound(tmp_path: Path) -> None:
    one = len(encode_batch(_batch(["x" * 100])))
    spool = _spool(tmp_path, max_bytes=int(2.5 * one))
    assert spool.append(_batch(["x" * 100])) and spool.append(_batch(["x" * 100]))
    assert not spool.append(_batch(["x" * 100]))
    assert spool.last_error is not None and "spool full" in spool.last_error
    got = spool.take(1)
    assert got is not None
    spool.commit(got[1])
    assert spool.append(_batch(["x" * 100])) and spool.last_error is None


def test_a_full_disk_refuses_the_record_and_keeps_the_spool_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = _spool(tmp_path)
    assert spool.append(_batch(["fine"], "r1"))
    real_write = os.write

    def half_then_enospc(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_enospc)
    assert not spool.append(_batch(["lost"], "r2"))
    assert spool.last_error is not None and "No space left" in spool.last_error
    monkeypatch.setattr(os, "write", real_write)
    assert spool.append(_batch(["later"], "r3"))  # into a new segment
    requests = []
    while (got := spool.take(1)) is not None:
        requests += [b.request_id for b in got[0]]
        spool.commit(got[1])
    assert requests == ["r1", "r3"] and spool.dropped == 0


# ---------------------------------------------------------------- the log through its spool
def _log(
    engine: Engine,
    spool_dir: Path,
    *,
    max_bytes: int = 1 << 30,
    buffer_bytes: int = 1 << 28,
    stall_seconds: float | None = None,
) -> PredictionLog:
    return PredictionLog(
        engine,
        spool=Spool(spool_dir, max_bytes=max_bytes),
        flush_seconds=0.05,
        retry_seconds=0.05,
        buffer_bytes=buffer_bytes,
        stall_seconds=stall_seconds,
    )


def test_rows_spooled_during_an_outage_arrive_after_a_restart(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    folder.write_text("not a folder")  # SQLite cannot open a database under it
    url = f"sqlite:///{folder / 'monitoring.db'}"
    log = _log(create_engine(url), tmp_path / "spool").start()
    for i in range(10):
        log.record(_batch([f"t{i}", f"u{i}"], f"r{i}"))
    _wait(lambda: log.status().write_failures >= 1)
    status = log.status()
    assert status.spooled_rows == 20 and status.buffered_bytes == 0 and not status.healthy
    assert not log.close(timeout=0.2)  # stopped during the outage
    folder.unlink()
    folder.mkdir()
    again = _log(create_engine(url), tmp_path / "spool").start()
    assert again.close(timeout=30)
    frame = store.read_predictions(store.make_engine(url))
    assert len(frame) == 20 and sorted(frame.request_id.unique()) == sorted(
        f"r{i}" for i in range(10)
    )
    assert list((tmp_path / "spool").iterdir()) == []


def test_rows_the_spool_refuses_wait_in_memory_within_a_byte_bound(
    engine: Engine, tmp_path: Path
) -> None:
    log = _log(engine, tmp_path / "spool", max_bytes=10, buffer_bytes=30_000)
    log.start()
    log._stop.set()  # keep the writer from writing, to look at the buffer
    log._thread.join(5)  # type: ignore[union-attr]
    for i in range(10):
        log.record(_batch(["x" * 2000] * 3, f"r{i}"))  # ~6 KB each in memory
    status = log.status()
    assert status.spooled_rows == 0 and 0 < status.buffered_bytes <= 30_000
    assert status.dropped == 30 - status.pending and status.pending > 0
    assert not status.healthy and "spool full" in str(status.last_error)
    log._thread = None
    log._stop.clear()
    log.start()
    assert log.close(timeout=30)
    assert store.count_predictions(engine) == status.pending


def test_record_never_raises_into_the_request(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _log(engine, tmp_path / "spool").start()

    def broken(_batch: PredictionBatch) -> bool:
        raise RuntimeError("a bug in the spool")

    monkeypatch.setattr(log.spool, "append", broken)
    log.record(_batch(["a", "b"]))
    assert log.status().dropped == 2
    log.close(5)


def test_a_writer_stuck_on_a_locked_sqlite_file_is_unhealthy(tmp_path: Path) -> None:
    path = tmp_path / "monitoring.db"
    engine = store.make_engine(f"sqlite:///{path}")
    store.upgrade_schema(engine)
    log = _log(engine, tmp_path / "spool", stall_seconds=0.5).start()
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # the writer now waits out the 30 s busy timeout
    try:
        for i in range(5):
            log.record(_batch(["a", "b"], f"r{i}"))
        _wait(lambda: not log.status().healthy, timeout=10)
        status = log.status()
        assert status.write_failures == 0 and status.pending == 10
        assert status.last_error is not None and status.last_error.startswith("no write for")
        assert status.last_error.endswith("10 rows pending")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert log.flush(30)
    assert log.status().healthy and log.status().last_error is None
    log.close(5)


def test_from_settings_spools_under_the_home(tmp_path: Path) -> None:
    settings = Settings.model_validate({"home": tmp_path / "h", "log_flush_seconds": 0.05})
    log = PredictionLog.from_settings(settings)
    assert not (tmp_path / "h" / "spool").exists()  # made at start, not before
    log.start()
    log.record(_batch(["a"]))
    assert log.status().spool == str(tmp_path / "h" / "spool" / "predictions")
    assert log.close(20)
    off = Settings.model_validate({"home": tmp_path / "h2", "log_spool_bytes": 0})
    assert PredictionLog.from_settings(off).spool is None
