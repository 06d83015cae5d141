"""The local stack without Docker: MLflow, Prefect, the flows runner and the API, under honcho.

`stack_up` starts honcho on `deploy/Procfile` as a background process group, with its log, a
state file and the variables the Procfile uses, then waits for every service's HTTP health
check. Every process it starts carries a marker variable, so `stack_down` can stop honcho and
then anything left with that marker (a flow run started by the runner in a session of its own).
The API is always started: on a fresh home it answers /health and waits for the first champion
(/ready is 503 until then), which it serves as soon as it is promoted, without a restart.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from toxiguard.errors import MissingExtraError, ToxiguardError
from toxiguard.orchestration.processes import (
    MARKER_VARIABLE,
    is_alive,
    marked_processes,
    port_in_use,
    signal_all,
    wait_gone,
)
from toxiguard.settings import OFFLINE_ENVIRONMENT, Settings

logger = logging.getLogger(__name__)

SERVICES: tuple[str, ...] = ("mlflow", "prefect", "flows", "api")
# The flows `toxiguard flows serve` deploys (named here too, so that a health check need not
# import Prefect and the training code).
DEPLOYED_FLOWS: tuple[str, ...] = ("toxiguard-training", "toxiguard-monitoring", "toxiguard-tuning")
STATE_FILE = "stack.json"
LOG_FILE = "stack.log"
ENV_FILE = "stack.env"
PROCFILE = Path(__file__).resolve().parents[3] / "deploy" / "Procfile"
# What the Procfile runs besides the core: honcho itself, and `prefect server` and the flows
# runner (the 'orchestration' extra).
STACK_MODULES: tuple[str, ...] = ("honcho", "prefect")
POLL_S = 0.5
#: What the status says of an API that answers /health but /ready with 503 (no model yet).
WAITING_FOR_CHAMPION = "waiting for a champion"
STOP_TIMEOUT_S = 20.0


class StackError(ToxiguardError):
    """The local stack could not be started or stopped as asked."""


@dataclass(frozen=True)
class ServiceStatus:
    """One service of the stack: where a person opens it, and whether its health check passes."""

    name: str
    url: str
    healthy: bool
    started: bool = True
    note: str | None = None  # e.g. the API's WAITING_FOR_CHAMPION


@dataclass(frozen=True)
class StackStatus:
    """The stack as seen now: honcho's PID (None when not running), each service, the log."""

    pid: int | None
    services: list[ServiceStatus] = field(default_factory=list)
    log: Path | None = None

    @property
    def running(self) -> bool:
        """Return True when honcho is running."""
        return self.pid is not None

    @property
    def healthy(self) -> bool:
        """Return True when honcho runs and every started service passes its health check."""
        return self.running and all(s.healthy for s in self.services if s.started)


def _base(host: str, port: int) -> str:
    """Return the http URL of a host and port."""
    return f"http://{host}:{port}"


def mlflow_url(settings: Settings) -> str:
    """Return the URL of the stack's MLflow server."""
    return _base(settings.stack_host, settings.mlflow_port)


def prefect_api_url(settings: Settings) -> str:
    """Return the API URL of the stack's Prefect server."""
    return f"{_base(settings.stack_host, settings.prefect_port)}/api"


def api_url(settings: Settings) -> str:
    """Return the URL of the stack's API (and UI under /ui)."""
    return _base(settings.host, settings.port)


def service_urls(settings: Settings) -> dict[str, str]:
    """Return the URL a person opens for each service."""
    return {
        "mlflow": mlflow_url(settings),
        "prefect": _base(settings.stack_host, settings.prefect_port),
        "flows": f"{_base(settings.stack_host, settings.prefect_port)}/deployments",
        "api": f"{api_url(settings)}/docs",
    }


def stack_environment(settings: Settings, marker: str) -> dict[str, str]:
    """Return the variables the Procfile and every service of the stack get from the settings."""
    home = settings.resolved_home
    backend = settings.mlflow_backend_uri or f"sqlite:///{home / 'mlflow.db'}"
    return {
        **OFFLINE_ENVIRONMENT,
        **settings.prefect_environment,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "TOXIGUARD_HOME": str(home),
        "TOXIGUARD_STACK_HOST": settings.stack_host,
        "TOXIGUARD_MLFLOW_PORT": str(settings.mlflow_port),
        "TOXIGUARD_PREFECT_PORT": str(settings.prefect_port),
        "TOXIGUARD_HOST": settings.host,
        "TOXIGUARD_PORT": str(settings.port),
        "TOXIGUARD_STACK_MLFLOW_BACKEND": backend,
        "TOXIGUARD_STACK_MLFLOW_ARTIFACTS": settings.artifact_root.as_uri(),
        "MLFLOW_TRACKING_URI": mlflow_url(settings),
        "PREFECT_API_URL": prefect_api_url(settings),
        # Not needed by toxiguard and it would compete for the CPU.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        MARKER_VARIABLE: marker,
    }


def _get_ok(url: str, timeout: float = 2.0) -> bool:
    """Return True when a GET of `url` answers 200."""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def deployments_ready(prefect_api: str) -> bool:
    """Return True when the Prefect server at `prefect_api` lists every deployment as ready."""
    body = {"flows": {"name": {"any_": list(DEPLOYED_FLOWS)}}}
    try:
        response = httpx.post(f"{prefect_api.rstrip('/')}/deployments/filter", json=body, timeout=3)
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    ready = {item.get("flow_id") for item in response.json() if item.get("status") == "READY"}
    return len(ready) >= len(DEPLOYED_FLOWS)


def health_checks(settings: Settings) -> dict[str, Callable[[], bool]]:
    """Return one HTTP health check per service."""
    return {
        "mlflow": lambda: _get_ok(f"{mlflow_url(settings)}/health"),
        "prefect": lambda: _get_ok(f"{prefect_api_url(settings)}/health"),
        "flows": lambda: deployments_ready(prefect_api_url(settings)),
        "api": lambda: _get_ok(f"{api_url(settings)}/health"),
    }


def api_note(settings: Settings) -> str | None:
    """Return WAITING_FOR_CHAMPION when the API answers /ready with 503 (nothing served yet),
    else None."""
    try:
        response = httpx.get(f"{api_url(settings)}/ready", timeout=2.0)
    except httpx.HTTPError:
        return None
    return WAITING_FOR_CHAMPION if response.status_code == 503 else None


def wait_until_healthy(url: str, timeout: float) -> None:
    """Return once GET `url` answers 200; raise StackError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not _get_ok(url):
        if time.monotonic() > deadline:
            raise StackError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(POLL_S)


def _state_path(settings: Settings) -> Path:
    """Return the path of the state file (honcho's PID, the marker, the URLs)."""
    return settings.stack_run_dir / STATE_FILE


def _read_state(settings: Settings) -> dict[str, Any] | None:
    """Return the saved state of a started stack, or None."""
    path = _state_path(settings)
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state


def stack_status(settings: Settings) -> StackStatus:
    """Return the stack's state now: honcho's PID if it runs, and each service's health."""
    state = _read_state(settings)
    pid = None
    if state and is_alive(int(state["pid"]), str(state["marker"])):
        pid = int(state["pid"])
    started = list(state.get("services", SERVICES)) if state and pid else []
    urls = service_urls(settings)
    checks = health_checks(settings)
    services = []
    for name in SERVICES:
        healthy = name in started and checks[name]()
        note = api_note(settings) if name == "api" and healthy else None
        services.append(ServiceStatus(name, urls[name], healthy, name in started, note))
    return StackStatus(pid, services, settings.stack_run_dir / LOG_FILE)


def attach_to_running_stack(settings: Settings) -> Settings:
    """Return the settings pointed at the running local stack's MLflow and Prefect servers.

    Only what is not configured already is filled in, and only while this home's stack runs
    with that service: so `toxiguard monitor run` next to a running stack tracks on its MLflow
    server and starts retraining as a run of its served training deployment.
    """
    state = _read_state(settings)
    if not state or not is_alive(int(state["pid"]), str(state["marker"])):
        return settings
    services = list(state.get("services", SERVICES))
    update: dict[str, str] = {}
    if settings.mlflow_tracking_uri is None and "mlflow" in services:
        update["mlflow_tracking_uri"] = mlflow_url(settings)
    if settings.prefect_api_url is None and "flows" in services:
        update["prefect_api_url"] = prefect_api_url(settings)
    if update:
        logger.info("using the running stack: %s", update)
    return settings.model_copy(update=update) if update else settings


def _tail(path: Path, lines: int = 40) -> str:
    """Return the last lines of a text file ("" when missing)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def require_stack_extras(feature: str) -> None:
    """Return when honcho and Prefect are installed; raise MissingExtraError naming the extra.

    Looked up, not imported: importing Prefect here would cost seconds and set up its home
    before `stack_environment` chose it.
    """
    for module in STACK_MODULES:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(feature, "orchestration", module)


def has_champion(settings: Settings) -> bool:
    """Return True when the stack's MLflow backend already holds a champion (`toxiguard run`
    trains first when it does not)."""
    # Lazy: MLflow makes this module's import take 7.5 s instead of 1 s (measured), and the
    # compose health check of the flows service imports this module every 15 s.
    from toxiguard.registry.versions import list_versions  # noqa: PLC0415

    backend = settings.mlflow_backend_uri or f"sqlite:///{settings.resolved_home / 'mlflow.db'}"
    direct = settings.model_copy(update={"mlflow_tracking_uri": backend})
    return any(settings.champion_alias in item.get("aliases", []) for item in list_versions(direct))


def stack_up(settings: Settings, timeout: float | None = None) -> StackStatus:
    """Start every service in the background and return once all are healthy.

    The API is healthy once it answers /health: with no champion yet it waits for one (its
    status says so). Raises StackError (after stopping what it started) when a port is taken,
    a service exits, or a health check still fails after `timeout` seconds.
    """
    current = stack_status(settings)
    if current.running:
        logger.info("the stack is already running (honcho pid %s)", current.pid)
        return current
    require_stack_extras("the local stack (`toxiguard stack up`)")
    if not PROCFILE.is_file():
        raise StackError(f"{PROCFILE} not found: run the stack from a source checkout")
    ports = {
        "TOXIGUARD_MLFLOW_PORT": (settings.stack_host, settings.mlflow_port),
        "TOXIGUARD_PREFECT_PORT": (settings.stack_host, settings.prefect_port),
        "TOXIGUARD_PORT": (settings.host, settings.port),
    }
    for variable, (host, port) in ports.items():
        if port_in_use(host, port):
            raise StackError(
                f"{host}:{port} is already in use: stop what runs there or set {variable}"
            )
    services = list(SERVICES)
    run_dir = settings.stack_run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    settings.artifact_root.mkdir(parents=True, exist_ok=True)
    marker = uuid.uuid4().hex
    env = stack_environment(settings, marker)
    env_file = run_dir / ENV_FILE
    env_file.write_text(
        "".join(f"{key}={json.dumps(value)}\n" for key, value in sorted(env.items()))
    )
    log_path = run_dir / LOG_FILE
    command = [
        sys.executable, "-m", "honcho", "start",
        "--procfile", str(PROCFILE), "--env", str(env_file), "--app-root", str(Path.cwd()),
        "--no-colour", *services,
    ]  # fmt: skip
    with log_path.open("ab") as log:
        log.write(f"\n==== stack up at {datetime.now(UTC).isoformat()} ====\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state = {
        "pid": process.pid,
        "marker": marker,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "urls": service_urls(settings),
        "services": services,
        "log": str(log_path),
    }
    _state_path(settings).write_text(json.dumps(state, indent=2))
    logger.info("honcho started (pid %d); log: %s", process.pid, log_path)
    try:
        _wait_for_services(
            settings, process, services, timeout or settings.stack_timeout_seconds, log_path
        )
    except BaseException:
        stack_down(settings)
        raise
    return stack_status(settings)


def _wait_for_services(
    settings: Settings,
    process: subprocess.Popen[bytes],
    services: list[str],
    timeout: float,
    log_path: Path,
) -> None:
    """Return once every health check passes; raise StackError if honcho exits or time runs out."""
    checks = health_checks(settings)
    pending = list(services)
    deadline = time.monotonic() + timeout
    while pending:
        pending = [name for name in pending if not checks[name]()]
        if not pending:
            return
        if process.poll() is not None:
            raise StackError(
                f"the stack stopped (honcho exit {process.returncode}) before "
                f"{', '.join(pending)} became healthy; log {log_path}:\n{_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"{', '.join(pending)} not healthy after {timeout:.0f} s; "
                f"log {log_path}:\n{_tail(log_path)}"
            )
        time.sleep(POLL_S)


def stack_down(settings: Settings, timeout: float = STOP_TIMEOUT_S) -> list[int]:
    """Stop honcho (which stops its services), then anything left with the marker; return PIDs.

    Each step waits up to `timeout` seconds before the next, harsher one (SIGKILL last).
    Returns the PIDs that were signalled; an empty list when the stack was not running.
    """
    state = _read_state(settings)
    if state is None:
        return []
    honcho, marker = int(state["pid"]), str(state["marker"])
    stopped: list[int] = []
    if is_alive(honcho, marker):
        # honcho sends SIGTERM to each service's process group, then SIGKILL after 5 s.
        signal_all([honcho], signal.SIGTERM)
        stopped.append(honcho)
        wait_gone([honcho], marker, timeout)
    leftovers = [pid for pid in marked_processes(marker) if pid not in stopped]
    if leftovers:
        logger.info("stopping %d leftover processes: %s", len(leftovers), leftovers)
        signal_all(leftovers, signal.SIGTERM)
        stubborn = wait_gone(leftovers, marker, timeout / 2)
        signal_all(stubborn, signal.SIGKILL)
        wait_gone(stubborn, marker, 5.0)
        stopped += leftovers
    if is_alive(honcho, marker):
        # honcho outlived its SIGTERM's time-out (a loaded machine): kill it and wait for it.
        signal_all([honcho], signal.SIGKILL)
        wait_gone([honcho], marker, 5.0)
    _state_path(settings).unlink(missing_ok=True)
    return stopped


__all__ = [
    "DEPLOYED_FLOWS",
    "MARKER_VARIABLE",
    "SERVICES",
    "WAITING_FOR_CHAMPION",
    "ServiceStatus",
    "StackError",
    "StackStatus",
    "api_note",
    "api_url",
    "attach_to_running_stack",
    "deployments_ready",
    "has_champion",
    "health_checks",
    "marked_processes",
    "mlflow_url",
    "prefect_api_url",
    "require_stack_extras",
    "service_urls",
    "stack_down",
    "stack_environment",
    "stack_status",
    "stack_up",
    "wait_until_healthy",
]
