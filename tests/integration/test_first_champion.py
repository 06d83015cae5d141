"""The API waits for its first champion: a server started on a home without one answers
/health, says in /ready why it is not ready, answers scoring requests 503, and serves the first
champion as soon as it is promoted, without a restart.

Integration tests: a real `toxiguard serve` process on a fresh home (no MLflow database yet,
then an empty one), real sqlite registries, an MLflow URI nobody serves.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.integration.services import ServerProcess, ServerProcessFactory, train_demo_champion
from tests.processes import free_port
from toxiguard.errors import ModelNotFoundError
from toxiguard.orchestration.processes import MARKER_VARIABLE
from toxiguard.orchestration.stack import WAITING_FOR_CHAMPION, stack_status
from toxiguard.serving.api import create_app
from toxiguard.serving.predictor import NO_CHAMPION, NoChampionError, Predictor
from toxiguard.serving.state import build_state
from toxiguard.settings import Settings

pytestmark = pytest.mark.integration

SWAP_TIMEOUT_S = 120.0
ANALYZE = {"comment": {"text": "you idiot"}, "requestedAttributes": {"TOXICITY": {}}}


def _wait_for(check: Any, what: str, timeout: float = SWAP_TIMEOUT_S) -> Any:
    """Return the first truthy result of `check()`; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"{what} after {timeout:.0f} s"
        time.sleep(0.25)
    return result


def _served(url: str) -> httpx.Response | None:
    """Return the answer of /v1/predict when it is a 200, else None."""
    answer = httpx.post(f"{url}/v1/predict", json={"texts": ["thanks for the fix"]}, timeout=30)
    return answer if answer.status_code == 200 else None


def _problems(server: ServerProcess) -> str:
    """Return the /ready problems of a server as one line."""
    return " | ".join(server.ready()["problems"])


def _assert_refuses_scoring(url: str) -> None:
    """Assert that every scoring route answers 503 with the no-champion message."""
    for path, body in (
        ("/v1/predict", {"texts": ["you idiot"]}),
        ("/v1/explain", {"text": "you idiot"}),
    ):
        answer = httpx.post(f"{url}{path}", json=body, timeout=30)
        assert answer.status_code == 503, (path, answer.text)
        assert answer.json()["error"]["message"] == NO_CHAMPION
    model = httpx.get(f"{url}/v1/model", timeout=30)
    assert model.status_code == 503 and model.json()["error"]["message"] == NO_CHAMPION
    # The Perspective routes answer in Google's error shape.
    analyze = httpx.post(f"{url}/v1alpha1/comments:analyze", json=ANALYZE, timeout=30)
    assert analyze.status_code == 503
    assert analyze.json() == {
        "error": {"code": 503, "message": NO_CHAMPION, "status": "UNAVAILABLE"}
    }


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="the stack's status reads /proc (Linux)")
def test_serve_on_a_fresh_home_waits_for_the_first_champion(
    tmp_path: Path, serve_factory: ServerProcessFactory, mlflow_db_template: Path
) -> None:
    home = tmp_path / "fresh-home"
    database = home / "mlflow.db"
    marker = uuid.uuid4().hex
    server = serve_factory(home, {"TOXIGUARD_MODEL_POLL_SECONDS": "1", MARKER_VARIABLE: marker})
    # A fresh home: no MLflow database. The server waits for one and does not create it (a
    # moved database must not be replaced by an empty one).
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    ready = httpx.get(f"{server.url}/ready", timeout=10)
    assert ready.status_code == 503 and ready.json()["status"] == "not ready"
    assert (
        f"no champion yet in sqlite:///{database.resolve()} (alias champion): "
        f"no MLflow database at {database.resolve()}"
    ) in _problems(server)
    _assert_refuses_scoring(server.url)
    assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 200
    log = " ".join(server.log().split())  # rich wraps long lines
    assert log.count("no champion yet in sqlite:///") == 1
    assert "waiting for one (polling every 1 s)" in log

    # The local stack's status says the API is up and waiting (its health check is /health).
    port = int(server.url.rsplit(":", 1)[1])
    stack_settings = Settings.model_validate({"home": home, "port": port})
    stack_settings.stack_run_dir.mkdir(parents=True, exist_ok=True)
    state = {"pid": server.process.pid, "marker": marker, "services": ["api"]}
    (stack_settings.stack_run_dir / "stack.json").write_text(json.dumps(state))
    (api,) = [s for s in stack_status(stack_settings).services if s.name == "api"]
    assert api.healthy and api.note == WAITING_FOR_CHAMPION

    time.sleep(2.5)  # a few polls
    assert not database.exists()
    # An empty registry (moved into place at once): still no champion, for another reason.
    staged = home / "mlflow.db.partial"
    shutil.copy(mlflow_db_template, staged)
    staged.replace(database)
    _wait_for(lambda: "train and promote a model" in _problems(server), "empty registry not seen")
    _assert_refuses_scoring(server.url)

    train_demo_champion(home)  # version 1, promoted champion by the gate
    answer = _wait_for(lambda: _served(server.url), "the first champion was not served")
    assert answer.json()["model"]["version"] == 1
    model = httpx.get(f"{server.url}/v1/model", timeout=30).json()
    assert model["version"] == 1 and model["source"] == "registry"
    ready = httpx.get(f"{server.url}/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert server.process.poll() is None  # the same process: no restart
    analyze = httpx.post(f"{server.url}/v1alpha1/comments:analyze", json=ANALYZE, timeout=30)
    assert analyze.status_code == 200
    (api,) = [s for s in stack_status(stack_settings).services if s.name == "api"]
    assert api.healthy and api.note is None


def test_predictor_without_a_champion_waits(
    settings: Settings, mlflow_db_template: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = settings.resolved_home
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(mlflow_db_template, home / "mlflow.db")
    direct = settings.model_copy(update={"mlflow_tracking_uri": f"sqlite:///{home / 'mlflow.db'}"})
    predictor = Predictor(direct)
    with caplog.at_level(logging.WARNING, logger="toxiguard.serving.predictor"):
        assert predictor.load_or_wait() is None
    assert not predictor.loaded
    assert f"no champion yet in {direct.tracking_uri} (alias champion)" in caplog.text
    with pytest.raises(NoChampionError, match="no champion yet: train and promote"):
        predictor.predict(["you idiot"])
    registry = predictor.status()["registry"]
    assert registry["reachable"] is True and registry["last_error"] is None
    assert registry["champion_missing"].startswith("train and promote a model")
    assert predictor.refresh() is False and not predictor.loaded
    # `load` (for callers that need a model now) still refuses, naming the missing champion.
    with pytest.raises(ModelNotFoundError, match=r"no model to serve.*no 'champion' version"):
        Predictor(direct).load()


def test_an_unreachable_registry_without_a_local_copy_is_waited_for(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """MLflow may start after the API (compose): the server waits, and says what it waits for."""
    dead = f"http://127.0.0.1:{free_port()}"
    unreachable = settings.model_copy(
        update={"mlflow_tracking_uri": dead, "ui_enabled": False, "registry_timeout_seconds": 1}
    )
    with caplog.at_level(logging.WARNING, logger="toxiguard.serving.predictor"):
        state = build_state(unreachable, prediction_log=False)
    assert not state.predictor.loaded
    assert f"the registry at {dead} gave none" in caplog.text
    assert "cannot reach the MLflow server" in caplog.text
    with TestClient(create_app(state)) as client:  # polls every 30 s: not within the test
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503
        problems = " | ".join(ready.json()["problems"])
        assert f"no model loaded: waiting for a champion from the registry at {dead}" in problems
        assert f"registry at {dead} unreachable: RegistryError: cannot reach" in problems
        assert "no champion yet in" not in problems
        refused = client.post("/v1/predict", json={"texts": ["hello"]})
        assert refused.status_code == 503 and refused.json()["error"]["message"] == NO_CHAMPION
