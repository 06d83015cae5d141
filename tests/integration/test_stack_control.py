"""The local stack's process control: the Procfile's contract, port checks, and `stack down`.

Integration tests: they start real processes (honcho, `sleep`, a stand-in process group).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from honcho.environ import parse_procfile

from tests.processes import kill_marked, stop_process
from toxiguard.orchestration import stack as stack_module
from toxiguard.orchestration.processes import MARKER_VARIABLE, marked_processes
from toxiguard.orchestration.stack import (
    PROCFILE,
    SERVICES,
    StackError,
    stack_down,
    stack_environment,
    stack_status,
    stack_up,
)
from toxiguard.settings import Settings

pytestmark = pytest.mark.integration


def test_procfile_runs_every_service_with_variables_the_stack_sets(settings: Settings) -> None:
    procfile = parse_procfile(PROCFILE.read_text())
    assert tuple(procfile.processes) == SERVICES
    env = stack_environment(settings, "marker")
    used = set(re.findall(r"\$\{?([A-Z_]+)\}?", PROCFILE.read_text()))
    assert used, "the Procfile should take its ports and URIs from variables"
    assert used <= set(env), f"variables the stack does not set: {used - set(env)}"
    assert env["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{settings.mlflow_port}"
    assert env["PREFECT_API_URL"] == f"http://127.0.0.1:{settings.prefect_port}/api"
    assert env["TOXIGUARD_STACK_MLFLOW_BACKEND"].startswith("sqlite:///")
    assert env["TOXIGUARD_HOME"] == str(settings.resolved_home)
    assert Path(env["PREFECT_HOME"]).is_relative_to(settings.resolved_home)
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_mlflow_backend_follows_the_setting(settings: Settings) -> None:
    postgres = "postgresql+psycopg://toxiguard:secret@127.0.0.1:5432/mlflow"
    custom = settings.model_copy(update={"mlflow_backend_uri": postgres})
    assert stack_environment(custom, "m")["TOXIGUARD_STACK_MLFLOW_BACKEND"] == postgres


def test_status_of_a_stack_never_started(settings: Settings) -> None:
    status = stack_status(settings)
    assert not status.running and not status.healthy
    assert [s.name for s in status.services] == list(SERVICES)
    assert not any(s.started or s.healthy for s in status.services)
    assert stack_down(settings) == []


def test_up_refuses_a_port_in_use_and_names_the_setting(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = settings.model_copy(update={"prefect_port": port})
        with pytest.raises(StackError, match=f"127.0.0.1:{port}.*TOXIGUARD_PREFECT_PORT"):
            stack_up(busy)
    assert not (busy.stack_run_dir / "stack.json").exists()


@pytest.fixture
def fake_stack(settings: Settings) -> Iterator[tuple[int, str]]:
    """A stand-in for honcho: a process group whose child escaped to a session of its own."""
    marker = uuid.uuid4().hex
    env = {**os.environ, MARKER_VARIABLE: marker}
    # The parent ignores SIGTERM (as a stuck service would); its child runs in a new session,
    # as Prefect's runner starts flow runs: signalling the parent's group does not reach it.
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'],"
        " start_new_session=True)\n"
        "time.sleep(300)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    deadline = time.monotonic() + 20
    while len(marked_processes(marker)) < 2:
        assert time.monotonic() < deadline, "the fake stack did not start"
        time.sleep(0.05)
    settings.stack_run_dir.mkdir(parents=True, exist_ok=True)
    (settings.stack_run_dir / "stack.json").write_text(
        json.dumps({"pid": process.pid, "marker": marker, "services": ["mlflow"]})
    )
    try:
        yield process.pid, marker
    finally:
        kill_marked(marker)
        stop_process(process, timeout=10)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="the marker sweep reads /proc (Linux)")
def test_down_leaves_no_process_behind(settings: Settings, fake_stack: tuple[int, str]) -> None:
    pid, marker = fake_stack
    children = set(marked_processes(marker)) - {pid}
    assert stack_status(settings).running
    stopped = stack_down(settings, timeout=2.0)
    assert pid in stopped and children <= set(stopped)
    assert marked_processes(marker) == []
    assert not (settings.stack_run_dir / "stack.json").exists()
    assert not stack_status(settings).running


@pytest.mark.slow
def test_up_reports_a_service_that_dies_and_stops_the_rest(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        "mlflow: exec sleep 300\n"
        "prefect: echo 'prefect: database is locked' && exit 3\n"
        "flows: exec sleep 300\n"
        "api: exec sleep 300\n"
    )
    monkeypatch.setattr(stack_module, "PROCFILE", procfile)
    with pytest.raises(StackError, match=r"(?s)stack stopped.*database is locked"):
        stack_up(settings, timeout=60)
    assert not (settings.stack_run_dir / "stack.json").exists()
    log = (settings.stack_run_dir / "stack.log").read_text()
    assert "mlflow.1 started" in log and "prefect.1 stopped (rc=3)" in log
    # A fresh home has no champion: the API is started anyway (it waits for one).
    assert "api.1 started" in log
    env_file = (settings.stack_run_dir / "stack.env").read_text()
    marker = re.search(rf'{MARKER_VARIABLE}="(\w+)"', env_file)
    assert marker is not None
    assert marked_processes(marker.group(1)) == []
