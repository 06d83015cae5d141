"""Fixtures for the flows: Prefect's temporary local server, small real data, a started stack.

A pytest plugin (named in `pytest_plugins` of `tests/conftest.py`): a test asks for
`prefect_home`, `sample_csv` or `invalid_csv` by its argument name and imports only the helpers
(`started_stack`, `run_cli`, ...).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.processes import free_port, kill_marked
from toxiguard.settings import OFFLINE_ENVIRONMENT

TOXIGUARD_BIN = Path(sys.executable).with_name("toxiguard")


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Run flows on Prefect's temporary local server (no PREFECT_API_URL), homed in a temp dir.

    The server starts with the first flow run of the session (about 8 s) and lives until exit.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    home = tmp_path_factory.mktemp("prefect-home")
    saved = {key: os.environ.pop(key, None) for key in ("PREFECT_API_URL", "PREFECT_HOME")}
    os.environ["PREFECT_HOME"] = str(home)
    try:
        with temporary_settings(
            updates={
                PREFECT_HOME: str(home),
                PREFECT_SERVER_ANALYTICS_ENABLED: False,
                # 8-25 s on 2 busy cores; Prefect's default wait is 20 s.
                PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 90,
            },
            restore_defaults={PREFECT_API_URL},
        ):
            yield home
    finally:
        from prefect.logging.handlers import APILogWorker
        from prefect.server.api.server import SubprocessASGIServer

        # Send the last logs, then stop the temporary server, while pytest's streams are open.
        APILogWorker.drain_all(timeout=10)
        server = SubprocessASGIServer._instances.get(None)
        if server is not None:
            server.stop()
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


def write_sample(frame: pd.DataFrame, path: Path) -> Path:
    """Return `path` after writing a labelled frame there as CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def sample_csv(shared_sample: pd.DataFrame, tmp_path: Path) -> Path:
    """Return a CSV of 2,000 real comments from the shared data (every label represented)."""
    return write_sample(shared_sample.head(2000), tmp_path / "data" / "sample.csv")


@pytest.fixture
def invalid_csv(shared_sample: pd.DataFrame, tmp_path: Path) -> Path:
    """Return a CSV of real comments whose 3rd data row has the label `toxic` = 7."""
    frame = shared_sample.head(50).copy()
    frame.loc[frame.index[2], "toxic"] = 7
    return write_sample(frame, tmp_path / "data" / "invalid.csv")


# ---------------------------------------------------------------- the local stack
@dataclass(frozen=True)
class StartedStack:
    """A local stack started by `toxiguard stack up` for a test: its home, ports and env."""

    home: Path
    env: dict[str, str]
    mlflow_url: str
    prefect_api_url: str
    api_url: str
    marker: str


def stack_env(home: Path, **settings: str) -> dict[str, str]:
    """Return the environment for `toxiguard` commands on a stack in `home` with free ports."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TOXIGUARD_", "MLFLOW_", "PREFECT_"))
    }
    env.update(OFFLINE_ENVIRONMENT)
    env.update(
        {
            "TOXIGUARD_HOME": str(home),
            "TOXIGUARD_MLFLOW_PORT": str(free_port()),
            "TOXIGUARD_PREFECT_PORT": str(free_port()),
            "TOXIGUARD_PORT": str(free_port()),
            **settings,
        }
    )
    return env


def run_cli(
    args: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Return the finished `toxiguard ARGS` run (output captured)."""
    return subprocess.run(
        [str(TOXIGUARD_BIN), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _stack_state(home: Path) -> dict[str, Any] | None:
    """Return the stack's state file (honcho's PID and the marker), if there is one."""
    path = home / "stack" / "stack.json"
    return json.loads(path.read_text()) if path.is_file() else None


@contextlib.contextmanager
def started_stack(env: dict[str, str], timeout: float = 300.0) -> Iterator[StartedStack]:
    """Start the stack with `toxiguard stack up`; always stop it (and anything it left) after."""
    home = Path(env["TOXIGUARD_HOME"])
    marker = ""
    try:
        result = run_cli(["stack", "up", "--timeout", str(timeout)], env, timeout + 60)
        state = _stack_state(home) or {}
        marker = str(state.get("marker", ""))
        log = home / "stack" / "stack.log"
        assert result.returncode == 0, (
            f"stack up failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
            f"log:\n{log.read_text(errors='replace')[-6000:] if log.is_file() else ''}"
        )
        yield StartedStack(
            home=home,
            env=env,
            mlflow_url=f"http://127.0.0.1:{env['TOXIGUARD_MLFLOW_PORT']}",
            prefect_api_url=f"http://127.0.0.1:{env['TOXIGUARD_PREFECT_PORT']}/api",
            api_url=f"http://127.0.0.1:{env['TOXIGUARD_PORT']}",
            marker=marker,
        )
    finally:
        last = _stack_state(home)
        marker = marker or (str(last["marker"]) if last else "")
        with contextlib.suppress(subprocess.TimeoutExpired):
            run_cli(["stack", "down"], env, 90)
        if marker:
            kill_marked(marker)


def wait_for_flow_run(prefect_api: str, flow_run_id: str, timeout: float) -> dict[str, Any]:
    """Return the flow run once it reached a final state; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = httpx.get(f"{prefect_api}/flow_runs/{flow_run_id}", timeout=10).json()
        state = run.get("state") or {}
        if state.get("type") in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return run
        if time.monotonic() > deadline:
            pytest.fail(f"flow run {flow_run_id} not finished after {timeout:.0f} s: {state}")
        time.sleep(1.0)
