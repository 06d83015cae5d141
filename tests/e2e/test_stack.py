"""End to end: the local stack (real MLflow and Prefect servers, flows served, the API) starts on
a fresh home with the API waiting for a champion, serves the first one without a restart, trains
a model through the Prefect API and serves it as the new champion; nothing is left running after.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.integration.flow_services import (
    run_cli,
    stack_env,
    started_stack,
    wait_for_flow_run,
    write_sample,
)
from toxiguard.labels import LABELS
from toxiguard.orchestration.flows import MONITORING_DEPLOYMENT_NAME, TRAINING_DEPLOYMENT_NAME
from toxiguard.orchestration.processes import marked_processes
from toxiguard.orchestration.stack import WAITING_FOR_CHAMPION, stack_status
from toxiguard.settings import Settings
from toxiguard.training.pipeline import run_training

STACK_TIMEOUT_S = 240.0
FLOW_TIMEOUT_S = 300.0
SWAP_TIMEOUT_S = 60.0


def _flow_run_logs(prefect_api: str, flow_run_id: str) -> str:
    """Return the flow run's log lines, for a failure message."""
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}
    logs = httpx.post(f"{prefect_api}/logs/filter", json=body, timeout=10).json()
    return "\n".join(str(line.get("message")) for line in logs)


def _served_version(api_url: str) -> int | None:
    """Return the version the API serves now (None when it does not answer or serves none)."""
    try:
        info: dict[str, Any] = httpx.get(f"{api_url}/v1/model", timeout=5).json()
    except httpx.HTTPError:
        return None
    return info.get("version")


def _wait_for_version(api_url: str, version: int) -> None:
    """Return once the API serves `version`; fail after SWAP_TIMEOUT_S."""
    deadline = time.monotonic() + SWAP_TIMEOUT_S
    while _served_version(api_url) != version:
        assert time.monotonic() < deadline, f"the API did not swap in version {version}"
        time.sleep(0.5)


@pytest.mark.e2e
@pytest.mark.integration
@pytest.mark.slow
def test_stack_trains_through_prefect_and_serves_the_new_champion(
    settings: Settings, shared_sample: pd.DataFrame, tmp_path: Path
) -> None:
    data = write_sample(shared_sample.head(2000), tmp_path / "train.csv")
    env = stack_env(
        settings.resolved_home,
        TOXIGUARD_TRAINING_DATA=str(data),
        TOXIGUARD_TRAINING_MODELS="complement-nb",
        TOXIGUARD_MODEL_POLL_SECONDS="1",
        PREFECT_RUNNER_POLL_FREQUENCY="2",
    )
    with started_stack(env, timeout=STACK_TIMEOUT_S) as running:
        # A fresh home: the API is up (healthy) and waits for its first champion.
        status = run_cli(["stack", "status"], {**env, "COLUMNS": "200"}, 60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert WAITING_FOR_CHAMPION in status.stdout
        ready = httpx.get(f"{running.api_url}/ready", timeout=10)
        assert ready.status_code == 503
        assert any("no champion yet in" in problem for problem in ready.json()["problems"])
        assert _served_version(running.api_url) is None

        # A deliberately weak first champion (labels shuffled across rows), registered through
        # the stack's MLflow server: served without a restart, and the model trained through
        # Prefect must beat it at the gate.
        rng = np.random.default_rng(0)
        weak = shared_sample.iloc[2000:2800].copy()
        weak[list(LABELS)] = weak[list(LABELS)].to_numpy()[rng.permutation(len(weak))]
        on_stack = settings.model_copy(update={"mlflow_tracking_uri": running.mlflow_url})
        weak_csv = write_sample(weak, tmp_path / "weak.csv")
        first = run_training(weak_csv, ["complement-nb"], on_stack)
        assert first.champion_version == 1
        _wait_for_version(running.api_url, 1)
        status = run_cli(["stack", "status"], {**env, "COLUMNS": "200"}, 60)
        assert status.returncode == 0 and WAITING_FOR_CHAMPION not in status.stdout

        prefect = running.prefect_api_url
        monitoring = httpx.get(
            f"{prefect}/deployments/name/{MONITORING_DEPLOYMENT_NAME}", timeout=10
        ).json()
        assert [s["schedule"]["cron"] for s in monitoring["schedules"]] == ["0 * * * *"]
        deployment = httpx.get(
            f"{prefect}/deployments/name/{TRAINING_DEPLOYMENT_NAME}", timeout=10
        ).json()
        assert deployment["parameters"] == {
            "data": str(data),
            "models": ["complement-nb"],
            "params": "default",
        }

        flow_run = httpx.post(
            f"{prefect}/deployments/{deployment['id']}/create_flow_run", json={}, timeout=10
        ).json()
        final = wait_for_flow_run(prefect, flow_run["id"], FLOW_TIMEOUT_S)
        assert final["state"]["type"] == "COMPLETED", _flow_run_logs(prefect, flow_run["id"])

        _wait_for_version(running.api_url, 2)
        answer = httpx.post(
            f"{running.api_url}/v1/predict", json={"texts": ["thanks for the fix"]}, timeout=30
        ).json()
        assert answer["model"]["version"] == 2
        assert set(answer["predictions"][0]["scores"]) == set(LABELS)

    assert marked_processes(running.marker) == []
    assert not stack_status(settings).running
