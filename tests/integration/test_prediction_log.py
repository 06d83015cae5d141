"""The prediction log of a real server: SQLite, PostgreSQL (going away and coming back), CLI."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import inspect

from tests.integration.services import (
    PostgresServer,
    ServerProcessFactory,
    server_environment,
    toxiguard_command,
    train_demo_champion,
)
from toxiguard.labels import LABELS
from toxiguard.monitoring import store
from toxiguard.monitoring.prediction_log import PredictionBatch, PredictionLog

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMMENTS = [
    "You are a stupid idiot",
    "Thank you for the careful edit.",
    "THIS IS SHOUTING!!!",
    "a",
    "Numbers 123 and symbols #$%",
]


def _send(url: str, batches: list[list[str]]) -> list[dict[str, object]]:
    """Post each batch; return the response bodies (all must be 200)."""
    bodies = []
    with httpx.Client(timeout=30) as client:
        for texts in batches:
            response = client.post(f"{url}/v1/predict", json={"texts": texts})
            assert response.status_code == 200, response.text
            bodies.append(response.json())
    return bodies


def _batches(count: int) -> list[list[str]]:
    return [[COMMENTS[(i + j) % len(COMMENTS)] for j in range(1 + i % 3)] for i in range(count)]


def test_postgres_schema_matches_the_metadata(postgres_url: str) -> None:
    engine = store.make_engine(postgres_url)
    store.upgrade_schema(engine)
    assert store.current_revision(engine) == store.head_revision()
    with engine.connect() as connection:
        assert store.schema_differences(connection, tables=["predictions", "feedback"]) == []
    # The migrations run both ways on PostgreSQL: down to an empty store, and up again.
    store.downgrade_schema(engine)
    assert store.current_revision(engine) is None
    assert "predictions" not in inspect(engine).get_table_names()
    store.upgrade_schema(engine)
    assert store.current_revision(engine) == store.head_revision()
    assert "predictions" in inspect(engine).get_table_names()
    engine.dispose()


def test_writer_keeps_rows_through_a_postgres_restart(
    postgres_server: PostgresServer,
    postgres_url: str,
) -> None:
    engine = store.make_engine(postgres_url)
    log = PredictionLog(engine, batch_size=50, flush_seconds=0.05, retry_seconds=0.1).start()
    rng = np.random.default_rng(0)

    def batch(i: int) -> PredictionBatch:
        texts = [f"comment {i}-{j} nul\x00 {COMMENTS[j % len(COMMENTS)]}" for j in range(3)]
        scores = rng.random((3, len(LABELS)))
        return PredictionBatch(f"r{i}", "api", texts, scores, scores > 0.5, "toxiguard", 1, "x")

    try:
        for i in range(20):
            log.record(batch(i))
        assert log.flush(30)
        postgres_server.stop()
        try:
            for i in range(20, 60):
                log.record(batch(i))
            deadline = time.monotonic() + 30
            while log.status().write_failures == 0:
                assert time.monotonic() < deadline, "no failed write while PostgreSQL was down"
                time.sleep(0.05)
            assert log.status().pending == 120 and not log.status().healthy
        finally:
            postgres_server.start()
        assert log.flush(90), log.status()
        status = log.status()
        assert status.written == 180 and status.dropped == 0 and status.rejected == 0
    finally:
        log.close(10)
    frame = store.read_predictions(store.make_engine(postgres_url))
    assert len(frame) == 180 and not frame.duplicated(["request_id", "item_index"]).any()
    assert frame.text.str.contains("\ufffd").all()  # NUL made storable


def test_api_predictions_are_logged_in_sqlite(
    tmp_path: Path,
    serve_factory: ServerProcessFactory,
) -> None:
    home = tmp_path / "home"
    train_demo_champion(home)
    server = serve_factory(home)
    batches = _batches(12)
    bodies = _send(server.url, batches)
    status = server.wait_for_log_flush()
    expected_rows = sum(len(b) for b in batches)
    assert status["written"] == expected_rows and status["write_failures"] == 0

    frame = store.read_predictions(store.make_engine(f"sqlite:///{home / 'monitoring.db'}"))
    assert len(frame) == expected_rows
    assert set(frame.source) == {"api"}
    for texts, body in zip(batches, bodies, strict=True):
        rows = frame[frame.request_id == body["request_id"]].sort_values("item_index")
        assert rows.text.tolist() == texts
        predictions = body["predictions"]
        assert isinstance(predictions, list)
        scores = np.array([[p["scores"][label] for label in LABELS] for p in predictions])
        np.testing.assert_allclose(rows[[f"score_{label}" for label in LABELS]].to_numpy(), scores)
        flags = [[label in p["flagged"] for label in LABELS] for p in predictions]
        assert rows[[f"flag_{label}" for label in LABELS]].to_numpy().tolist() == flags
        assert set(rows.model_version) == {body["model"]["version"]}  # type: ignore[index]
    shouting = frame[frame.text == "THIS IS SHOUTING!!!"].iloc[0]
    assert shouting.length == 19 and shouting.words == 3 and shouting.upper_share == 1.0


def test_postgres_log_survives_the_database_going_away(
    tmp_path: Path,
    postgres_server: PostgresServer,
    postgres_url: str,
    serve_factory: ServerProcessFactory,
) -> None:
    home = tmp_path / "home"
    train_demo_champion(home)
    server = serve_factory(
        home,
        {
            "TOXIGUARD_DATABASE_URL": postgres_url,
            "TOXIGUARD_LOG_TEXTS": "false",
            "TOXIGUARD_LOG_RETRY_SECONDS": "0.2",
        },
    )
    engine = store.make_engine(postgres_url)
    first = _batches(10)
    _send(server.url, first)
    server.wait_for_log_flush()
    assert store.count_predictions(engine) == sum(len(b) for b in first)

    postgres_server.stop()
    try:
        during = _batches(15)
        started = time.perf_counter()
        _send(server.url, during)  # the API keeps answering
        assert time.perf_counter() - started < 30
        deadline = time.monotonic() + 60
        while True:
            ready = server.ready()
            log = ready["prediction_log"]
            assert isinstance(log, dict)
            if log["write_failures"] and log["pending"] == sum(len(b) for b in during):
                break
            assert time.monotonic() < deadline, f"no failed write was counted: {log}"
            time.sleep(0.2)
        assert ready["status"] == "degraded" and log["healthy"] is False
        assert any("prediction log" in p for p in ready["problems"])
        metrics = httpx.get(f"{server.url}/metrics").text
        failures = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("toxiguard_prediction_log_write_failures_total ")
        ]
        assert failures and failures[0] >= 1
    finally:
        postgres_server.start()

    status = server.wait_for_log_flush(timeout=90)
    assert status["healthy"] is True and status["dropped"] == 0
    total = sum(len(b) for b in first + during)
    frame = store.read_predictions(engine)
    assert len(frame) == total == status["written"]
    assert not frame.duplicated(["request_id", "item_index"]).any()
    assert frame.text.isna().all()  # privacy switch: statistics only
    assert (frame.length > 0).sum() == sum(1 for b in first + during for t in b if t)
    engine.dispose()


def test_score_command_logs_its_predictions(tmp_path: Path) -> None:
    home = tmp_path / "home"
    train_demo_champion(home)
    source = tmp_path / "comments.csv"
    pd.DataFrame({"id": range(25), "comment_text": (COMMENTS * 5)}).to_csv(source, index=False)
    output = tmp_path / "scored.csv"
    result = subprocess.run(
        toxiguard_command("score", str(source), str(output)),
        env=server_environment(home),
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    scored = pd.read_csv(output, keep_default_na=False)
    frame = store.read_predictions(store.make_engine(f"sqlite:///{home / 'monitoring.db'}"))
    assert len(frame) == len(scored) == 25
    assert set(frame.source) == {"score"} and frame.request_id.nunique() == 1
    assert frame.sort_values("item_index").text.tolist() == scored.comment_text.tolist()
    np.testing.assert_allclose(
        frame.sort_values("item_index")["score_insult"].to_numpy(), scored["score_insult"]
    )
