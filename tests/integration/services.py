"""Real services for the serving tests: PostgreSQL, `toxiguard serve` processes, Chromium.

A pytest plugin (named in `pytest_plugins` of `tests/conftest.py`): a test asks for a fixture
(`postgres_url`, `postgres_server`, `serve_factory`, `chromium_executable`) by its argument name
and imports only the helpers (`start_server`, `train_demo_champion`, ...).
A binary that is missing fails the test when CI=true and skips it (saying why) elsewhere.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

import httpx
import pytest

from tests.processes import free_port, stop_process
from toxiguard.settings import OFFLINE_ENVIRONMENT, Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = 120.0
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def in_ci() -> bool:
    """Return True when running in CI (CI=true), where missing services must fail tests."""
    return os.environ.get("CI", "").lower() == "true"


def missing(what: str) -> NoReturn:
    """Fail (in CI) or skip (elsewhere) because a service's binary is not installed."""
    if in_ci():
        pytest.fail(f"{what} (required in CI)")
    pytest.skip(what)


# ---------------------------------------------------------------- PostgreSQL
def _postgres_bin_dir() -> Path | None:
    """Return the folder holding initdb and pg_ctl: on PATH, or Debian's versioned folder."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return versions[-1].parent if versions else None


@dataclass
class PostgresServer:
    """A throw-away PostgreSQL cluster in a temporary folder, on a free port (trust auth)."""

    bin_dir: Path
    root: Path
    port: int = field(default_factory=free_port)
    run_as: str | None = None

    @property
    def data_dir(self) -> Path:
        """Return the cluster's data folder."""
        return self.root / "data"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool (as the unprivileged user when we are root)."""
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> None:
        """Create the cluster (initdb)."""
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-locale",
        )  # fmt: skip

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        result = self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.root / "server.log"), "-w",
            "-t", "60", "-o", options, "start", check=False,
        )  # fmt: skip
        if result.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {result.stderr}\n{log}")

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut)."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)

    def url(self, database: str = "postgres") -> str:
        """Return the SQLAlchemy URL of a database on this server (psycopg 3)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create a database; return its URL."""
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start a real PostgreSQL server for the session; stop it and delete it afterwards."""
    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        missing("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="toxiguard-pg-"))
    run_as: str | None = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: hand the folder to the postgres user.
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root and there is no 'postgres' user to run PostgreSQL as")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = "postgres"
    server = PostgresServer(bin_dir=bin_dir, root=root, run_as=run_as)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """Return the URL of a new, empty database on the session's PostgreSQL server."""
    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:12]}")


# ---------------------------------------------------------------- toxiguard serve
@dataclass
class ServerProcess:
    """A running `toxiguard serve` process."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    api_key: str | None = None  # the first of its TOXIGUARD_API_KEYS, sent to /ready

    def log(self) -> str:
        """Return what the server wrote so far."""
        return self.log_path.read_text(errors="replace")

    def ready(self) -> dict[str, Any]:
        """Return the /ready body."""
        headers = {"X-API-Key": self.api_key} if self.api_key else {}
        body: dict[str, Any] = httpx.get(f"{self.url}/ready", headers=headers, timeout=10).json()
        return body

    def wait_for_log_flush(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the prediction log has nothing pending; return its status."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.ready()["prediction_log"]
            assert isinstance(log, dict)
            if log["pending"] == 0:
                return log
            if time.monotonic() > deadline:
                raise AssertionError(f"prediction log still pending after {timeout} s: {log}")
            time.sleep(0.2)


def fuzz_status_codes(
    server: ServerProcess,
    max_examples: int,
    *,
    path_regex: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> list[int]:
    """Send schemathesis' valid and invalid requests for the server's OpenAPI operations (those
    whose path matches `path_regex`, if given); assert none gets a 5xx; return the statuses."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    schema: Any = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    if path_regex is not None:
        schema = schema.include(path_regex=path_regex)
    strategy = schema.as_strategy(generation_mode=GenerationMode.POSITIVE) | schema.as_strategy(
        generation_mode=GenerationMode.NEGATIVE
    )
    seen: list[int] = []

    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        response = case.call(base_url=server.url, headers=dict(headers or {}), timeout=30)
        seen.append(response.status_code)
        assert response.status_code < 500, (case.path, case.body, response.text[:500])

    check()
    return seen


def server_environment(home: Path, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment of a server process: no inherited toxiguard/MLflow settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TOXIGUARD_", "MLFLOW_")) or key == "TOXIGUARD_SHARED_TRAIN"
    }
    env.update(OFFLINE_ENVIRONMENT)
    env["TOXIGUARD_HOME"] = str(home)
    env.update(overrides or {})
    return env


def toxiguard_command(*args: str) -> list[str]:
    """Return the command line running the toxiguard CLI's entry point in this interpreter.

    The same function the `toxiguard` console script calls, without depending on the script
    (an editable install made from an older pyproject can leave a stale one behind).
    """
    return [sys.executable, "-c", "from toxiguard.cli import main; main()", *args]


def start_server(
    home: Path, log_dir: Path, overrides: Mapping[str, str] | None = None
) -> ServerProcess:
    """Start `toxiguard serve` on a free port and wait for /health; fail with its log if it dies."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = log_dir / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            toxiguard_command("serve", "--host", "127.0.0.1", "--port", str(port)),
            env=server_environment(home, overrides),
            cwd=log_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    keys = [key.strip() for key in (overrides or {}).get("TOXIGUARD_API_KEYS", "").split(",")]
    server = ServerProcess(url, process, log_path, api_key=next((k for k in keys if k), None))
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            pytest.fail(f"toxiguard serve did not come up at {url}:\n{server.log()[-4000:]}")
        time.sleep(0.25)


class ServerProcessFactory(Protocol):
    """Type of the `serve_factory` fixture: (home, env overrides) -> ServerProcess."""

    def __call__(
        self, home: Path, overrides: Mapping[str, str] | None = None
    ) -> ServerProcess: ...  # pragma: no cover


@pytest.fixture
def serve_factory(tmp_path: Path) -> Iterator[ServerProcessFactory]:
    """Return a function starting servers; every one is stopped (by PID) after the test."""
    started: list[ServerProcess] = []

    def factory(home: Path, overrides: Mapping[str, str] | None = None) -> ServerProcess:
        server = start_server(home, tmp_path, overrides)
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            stop_process(server.process)


def train_demo_champion(home: Path, versions: int = 1) -> Settings:
    """Register `versions` complement-nb models on the demo corpus in `home`; return its settings.

    Version 1 stays champion: later versions are trained with other seeds and, whatever the
    gate decided, the champion alias is put back on version 1.
    """
    from toxiguard.data.demo import write_demo_corpus
    from toxiguard.registry.promotion import promote
    from toxiguard.training.pipeline import run_training

    # Explicit tracking URI: mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI to the
    # environment, so an earlier test's registry would otherwise leak into these settings.
    settings = Settings.model_validate(
        {"home": home, "mlflow_tracking_uri": f"sqlite:///{home.resolve() / 'mlflow.db'}"}
    )
    data = write_demo_corpus(home / "demo.csv.gz")
    for index in range(versions):
        run_training(data, ["complement-nb"], settings.model_copy(update={"seed": 42 + index}))
    if versions > 1:
        promote(settings, 1, reason="test: version 1 is champion")
    return settings


# ---------------------------------------------------------------- Chromium
@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Return the path of Debian's chromium (fail in CI, skip elsewhere, when missing)."""
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    found = shutil.which("chromium")
    if found:
        return found
    missing("chromium not found: apt-get install chromium")
