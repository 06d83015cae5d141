"""The monitoring store and the prediction log writer, on real SQLite files."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, inspect

from toxiguard.features.statistics import STATISTICS_COLUMNS, text_statistics
from toxiguard.labels import FLAG_COLUMNS, LABELS, SCORE_COLUMNS
from toxiguard.monitoring import store
from toxiguard.monitoring.prediction_log import PredictionBatch, PredictionLog, batch_rows
from toxiguard.settings import Settings


def _batch(
    texts: list[str], request_id: str = "r1", source: str = "api", seed: int = 0
) -> PredictionBatch:
    rng = np.random.default_rng(seed)
    probabilities = rng.random((len(texts), len(LABELS)))
    return PredictionBatch(
        request_id=request_id,
        source=source,
        texts=texts,
        probabilities=probabilities,
        flags=probabilities >= 0.5,
        model_name="toxiguard",
        model_version=3,
        model_family="tfidf-lr",
    )


def _wait(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return store.make_engine(f"sqlite:///{tmp_path / 'store' / 'monitoring.db'}")


def test_migrations_create_the_schema_the_metadata_describes(engine: Engine) -> None:
    assert store.current_revision(engine) is None
    store.upgrade_schema(engine)
    store.upgrade_schema(engine)  # a second run finds nothing to do
    assert store.current_revision(engine) == store.head_revision()
    with engine.connect() as connection:
        assert store.schema_differences(connection, tables=["predictions"]) == []
    columns = {c["name"] for c in inspect(engine).get_columns("predictions")}
    assert {"request_id", "item_index", "text", *STATISTICS_COLUMNS} <= columns
    assert set(SCORE_COLUMNS) | set(FLAG_COLUMNS) <= columns


def test_downgrade_removes_the_table(engine: Engine) -> None:
    store.upgrade_schema(engine)
    store.downgrade_schema(engine, revision="base")
    assert "predictions" not in inspect(engine).get_table_names()


def test_urls_are_normalised_and_redacted(tmp_path: Path) -> None:
    assert store.normalise_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert store.normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert store.normalise_url("sqlite:///x.db") == "sqlite:///x.db"
    assert "secret" not in store.redacted("postgresql://u:secret@h/db")
    settings = Settings.model_validate({"home": tmp_path / "h"})
    assert store.database_url(settings) == f"sqlite:///{tmp_path / 'h' / 'monitoring.db'}"


def test_rows_hold_statistics_scores_flags_and_text() -> None:
    texts = ["HELLO world!", "", "plain text here"]
    batch = _batch(texts)
    rows = batch_rows(batch, log_texts=True)
    stats = text_statistics(texts)
    assert [r["item_index"] for r in rows] == [0, 1, 2]
    assert rows[0]["length"] == 12 and rows[0]["words"] == 2
    for i, row in enumerate(rows):
        assert row["text"] == texts[i]
        for column in STATISTICS_COLUMNS:
            assert row[column] == pytest.approx(float(stats[column][i]))
        for j, label in enumerate(LABELS):
            assert row[f"score_{label}"] == pytest.approx(batch.probabilities[i, j])
            assert row[f"flag_{label}"] == bool(batch.flags[i, j])


def test_privacy_switch_keeps_statistics_but_not_the_text() -> None:
    rows = batch_rows(_batch(["Some SECRET text"]), log_texts=False)
    assert rows[0]["text"] is None
    assert rows[0]["length"] == 16 and rows[0]["words"] == 3


def test_batch_shape_and_source_are_checked() -> None:
    with pytest.raises(ValueError, match="source"):
        _batch(["a"], source="elsewhere")
    with pytest.raises(ValueError, match="shape"):
        PredictionBatch(
            "r", "api", ["a", "b"], np.zeros((1, 6)), np.zeros((1, 6), bool), None, None, None
        )


def test_writer_writes_everything_in_batches(engine: Engine) -> None:
    log = PredictionLog(engine, batch_size=7, flush_seconds=0.05).start()
    try:
        log.record(_batch([f"comment {i}" for i in range(20)], request_id="big"))
        for i in range(5):
            log.record(_batch([f"single {i}"], request_id=f"r{i}", source="ui"))
        assert log.flush(timeout=20)
        status = log.status()
        assert status.written == 25 and status.pending == 0 and status.healthy
    finally:
        log.close()
    frame = store.read_predictions(engine)
    assert len(frame) == 25
    big = frame[frame.request_id == "big"].sort_values("item_index")
    assert big.item_index.tolist() == list(range(20))
    assert big.text.tolist() == [f"comment {i}" for i in range(20)]
    assert set(frame.source) == {"api", "ui"}
    assert len(store.read_predictions(engine, source="ui")) == 5
    assert frame.created_at.dt.tz is not None


def test_time_window_filter(engine: Engine) -> None:
    log = PredictionLog(engine, flush_seconds=0.05).start()
    old = _batch(["old one"], request_id="old")
    object.__setattr__(old, "created_at", datetime.now(UTC) - timedelta(days=2))
    log.record(old)
    log.record(_batch(["new one"], request_id="new"))
    assert log.close(timeout=20)
    recent = store.read_predictions(engine, start=datetime.now(UTC) - timedelta(days=1))
    assert recent.request_id.tolist() == ["new"]


def test_the_same_prediction_is_never_written_twice(engine: Engine) -> None:
    log = PredictionLog(engine, flush_seconds=0.05).start()
    batch = _batch(["a", "b"], request_id="same")
    log.record(batch)
    assert log.flush(20)
    log.record(batch)  # e.g. a retry after a commit whose answer was lost
    assert log.close(20)
    assert store.count_predictions(engine) == 2


def test_text_any_database_refuses_is_made_storable(engine: Engine) -> None:
    log = PredictionLog(engine, flush_seconds=0.05).start()
    log.record(_batch(["nul\x00inside", "lone \ud800 surrogate"], request_id="odd"))
    assert log.close(20)
    frame = store.read_predictions(engine)
    assert frame.text.tolist() == ["nul\ufffdinside", "lone ? surrogate"]
    assert log.status().rejected == 0


def test_buffer_is_bounded_and_drops_the_oldest_rows(engine: Engine) -> None:
    log = PredictionLog(engine, buffer_rows=5, flush_seconds=0.05)
    for i in range(4):
        log.record(_batch([f"{i}a", f"{i}b"], request_id=f"r{i}"))
    status = log.status()
    assert status.pending == 4 and status.dropped == 4
    log.start()
    assert log.close(20)
    assert sorted(store.read_predictions(engine).request_id.unique()) == ["r2", "r3"]


def test_rows_wait_while_the_database_is_unreachable_and_land_when_it_returns(
    tmp_path: Path,
) -> None:
    # A file where the database's folder should be: SQLite cannot open it ("unable to open").
    folder = tmp_path / "db"
    folder.write_text("not a folder")
    url = f"sqlite:///{folder / 'monitoring.db'}"
    engine = create_engine(url)
    log = PredictionLog(engine, flush_seconds=0.02, retry_seconds=0.05).start()
    try:
        for i in range(10):
            log.record(_batch([f"t{i}", f"u{i}"], request_id=f"r{i}"))
        _wait(lambda: log.status().write_failures >= 2)
        status = log.status()
        assert not status.healthy and status.pending == 20 and status.written == 0
        assert status.last_error and "OperationalError" in status.last_error
        assert not log.flush(timeout=0.2)
        folder.unlink()
        folder.mkdir()  # the database is back
        assert log.flush(timeout=30)
        status = log.status()
        assert status.healthy and status.written == 20 and status.dropped == 0
    finally:
        log.close(timeout=5)
    frame = store.read_predictions(store.make_engine(url))
    assert len(frame) == 20
    assert len(frame.drop_duplicates(["request_id", "item_index"])) == 20


def test_from_settings_uses_the_log_options(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {
            "home": tmp_path / "h",
            "log_texts": False,
            "log_batch_size": 3,
            "log_buffer_rows": 5,
            "log_flush_seconds": 0.05,
        }
    )
    log = PredictionLog.from_settings(settings)
    # 7 rows queue as chunks of 3, 3 and 1; over the 5-row buffer the oldest chunk goes.
    log.record(_batch([f"Secret {i}" for i in range(7)], request_id="r"))
    status = log.status()
    assert status.pending == 4 and status.dropped == 3
    log.start()
    assert log.close(20)
    frame = store.read_predictions(store.make_engine(store.database_url(settings)))
    assert sorted(frame.item_index) == [3, 4, 5, 6]
    assert frame.text.isna().all() and (frame.length == 8).all()  # statistics, no text
    assert (tmp_path / "h" / "monitoring.db").is_file()


def test_feedback_migration_keeps_rows_and_allows_unknown_labels(engine: Engine) -> None:
    from sqlalchemy import select

    from toxiguard.monitoring.feedback import FeedbackItem, store_feedback
    from toxiguard.monitoring.tables import LABEL_COLUMNS, feedback

    store.upgrade_schema(engine, "0002")
    with engine.begin() as connection:  # a row written by the 0002 schema, labels NOT NULL
        connection.exec_driver_sql(
            "INSERT INTO feedback (created_at, request_id, item_index, source, "
            + ", ".join(LABEL_COLUMNS)
            + ") VALUES (CURRENT_TIMESTAMP, 'old', 0, 'api', 1, 0, 1, 0, 1, 0)"
        )
    store.upgrade_schema(engine)
    with engine.connect() as connection:
        assert store.schema_differences(connection, tables=["feedback"]) == []
    partial = FeedbackItem("new", 0, (1, None, None, 0, None, None), community_id="forum-7")
    store_feedback(engine, [partial], source="perspective")
    with engine.connect() as connection:
        rows = {r.request_id: r for r in connection.execute(select(feedback)).all()}
    assert [getattr(rows["old"], c) for c in LABEL_COLUMNS] == [1, 0, 1, 0, 1, 0]
    assert rows["old"].community_id is None
    assert [getattr(rows["new"], c) for c in LABEL_COLUMNS] == [1, None, None, 0, None, None]
    assert rows["new"].community_id == "forum-7" and rows["new"].source == "perspective"
    # Down again: feedback with unknown labels cannot be NOT NULL, so it goes; the rest stays.
    store.downgrade_schema(engine, "0002")
    with engine.connect() as connection:
        assert [r[0] for r in connection.exec_driver_sql("SELECT request_id FROM feedback")] == [
            "old"
        ]


def test_threads_of_one_process_upgrade_one_store_at_once(tmp_path: Path) -> None:
    """The UI's tabs fill at page load, each bringing the schema up in its own thread."""
    engine = store.make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            store.upgrade_schema(engine)
        except BaseException as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=upgrade) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    assert errors == []
