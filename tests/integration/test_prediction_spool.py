"""No answered prediction is lost: a server killed under load, or stopped with the store down."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.services import PostgresServer, ServerProcessFactory, train_demo_champion
from tests.processes import stop_process
from toxiguard.monitoring import store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMMENTS = ["You are a stupid idiot", "Thank you for the careful edit.", "THIS IS SHOUTING!!!"]


def _load(url: str, stop: threading.Event, answered: dict[str, int], failed: list[int]) -> None:
    """Post requests of 1 to 3 comments until stopped; note each 200's request id and size."""
    i = 0
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            texts = [COMMENTS[(i + j) % len(COMMENTS)] for j in range(1 + i % 3)]
            i += 1
            try:
                response = client.post(f"{url}/v1/predict", json={"texts": texts})
            except httpx.HTTPError:
                failed.append(len(texts))  # in flight when the server died
                return
            assert response.status_code == 200, response.text
            body = response.json()
            assert len(body["predictions"]) == len(texts)
            answered[body["request_id"]] = len(texts)


def test_a_server_killed_under_load_loses_no_answered_prediction(
    tmp_path: Path, serve_factory: ServerProcessFactory
) -> None:
    home = tmp_path / "home"
    train_demo_champion(home)
    server = serve_factory(home)
    stop = threading.Event()
    answered: dict[str, int] = {}
    failed: list[int] = []
    clients = [
        threading.Thread(target=_load, args=(server.url, stop, answered, failed)) for _ in range(4)
    ]
    for client in clients:
        client.start()
    time.sleep(3)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(10)
    stop.set()
    for client in clients:
        client.join(20)
    assert len(answered) > 50, "too little load to mean anything"

    again = serve_factory(home)  # same home: it replays the spool the killed one left
    status = again.wait_for_log_flush()
    frame = store.read_predictions(store.make_engine(f"sqlite:///{home / 'monitoring.db'}"))
    logged = frame.groupby("request_id").size().to_dict()
    assert not frame.duplicated(["request_id", "item_index"]).any()
    assert {rid: logged.get(rid, 0) for rid in answered} == answered
    # Rows beyond the answered ones come from requests spooled but not answered before the kill.
    unanswered = set(logged) - set(answered)
    assert len(unanswered) <= len(failed) and status["dropped"] == 0


def test_predictions_answered_while_the_store_is_down_arrive_after_a_stop_and_start(
    tmp_path: Path,
    postgres_server: PostgresServer,
    postgres_url: str,
    serve_factory: ServerProcessFactory,
) -> None:
    home = tmp_path / "home"
    train_demo_champion(home)
    env = {"TOXIGUARD_DATABASE_URL": postgres_url, "TOXIGUARD_LOG_RETRY_SECONDS": "0.2"}
    postgres_server.stop()
    try:
        server = serve_factory(home, env)
        with httpx.Client(timeout=30) as client:
            sizes = []
            for i in range(40):
                texts = COMMENTS[: 1 + i % 3]
                response = client.post(f"{server.url}/v1/predict", json={"texts": texts})
                assert response.status_code == 200, response.text
                sizes.append(len(texts))
        deadline = time.monotonic() + 30
        while (log := server.ready()["prediction_log"])["write_failures"] == 0:
            assert time.monotonic() < deadline, log
            time.sleep(0.2)
        assert log["spooled_rows"] == log["pending"] == sum(sizes)
        stop_process(server.process, timeout=30)  # SIGTERM with the store still down
        assert server.process.returncode is not None
    finally:
        postgres_server.start()
    again = serve_factory(home, env)
    status = again.wait_for_log_flush(timeout=60)
    engine = store.make_engine(postgres_url)
    assert store.count_predictions(engine) == sum(sizes) and status["dropped"] == 0
    engine.dispose()
