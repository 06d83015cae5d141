"""Fixtures of the integration tests: a migrated MLflow database, an `mlflow server` process.

The other services (PostgreSQL, `toxiguard serve`, Chromium, Prefect) are fixtures of the
plugins that `tests/conftest.py` names in `pytest_plugins`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import free_port, stop_process
from toxiguard.settings import OFFLINE_ENVIRONMENT

MLFLOW_START_TIMEOUT_S = 90.0


def _healthy(url: str) -> bool:
    """Return True when the server answers /health with 200."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return an empty, fully migrated MLflow sqlite database (creating one takes seconds).

    Copy it to `<TOXIGUARD_HOME>/mlflow.db` to give a test embedded MLflow without paying
    for the migrations again.
    """
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    uri = f"sqlite:///{path}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments()
    client.search_registered_models()
    return path


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a real `mlflow server` (sqlite backend, proxied artifacts); yield its URL."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(OFFLINE_ENVIRONMENT)
    # No background job runner: it is not needed here and would compete for the CPU.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(mlflow_bin),
                "server",
                "--backend-store-uri",
                f"sqlite:///{root / 'mlflow.db'}",
                "--artifacts-destination",
                str(root / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + MLFLOW_START_TIMEOUT_S
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"mlflow server did not become healthy at {url}:\n{tail}")
            time.sleep(0.3)
        yield url
    finally:
        stop_process(process, timeout=15.0)
