"""Models are verified before they are loaded: a real sqlite registry and `toxiguard serve`.

A registered version records its manifest's sha256; the server's local copy keeps its manifest
and the hash in `current.json`. Changed, truncated or planted files are refused with one line,
and a planted pickle never runs.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
import pytest
from mlflow.tracking import MlflowClient

from tests.integration.services import (
    ServerProcessFactory,
    server_environment,
    toxiguard_command,
    train_demo_champion,
)
from tests.processes import free_port
from toxiguard.errors import ModelIntegrityError, RegistryError
from toxiguard.models.manifest import MANIFEST_FILE, MANIFEST_TAG, file_sha256, write_manifest
from toxiguard.models.tfidf.linear import STATE_FILE
from toxiguard.registry.client import load_toxicity_model
from toxiguard.registry.promotion import promote
from toxiguard.registry.versions import list_versions
from toxiguard.serving.local_copy import CURRENT_FILE
from toxiguard.serving.predictor import Predictor
from toxiguard.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Planted:
    """A pickle that writes a marker file when it is unpickled: what a planted payload does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path, str]]:
        return (Path.write_text, (self.marker, "ran"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home whose sqlite registry holds one complement-nb champion (trained once)."""
    return train_demo_champion(tmp_path_factory.mktemp("integrity-home"))


@pytest.fixture
def registry(trained: Settings, tmp_path: Path) -> Iterator[Settings]:
    """The trained home, given back with its registry artifact as trained after the test."""
    package_dir = registry_package_dir(trained)
    backup = tmp_path / "artifact-backup"
    shutil.copytree(package_dir, backup)
    shutil.rmtree(trained.model_cache_dir, ignore_errors=True)
    try:
        yield trained
    finally:
        shutil.rmtree(package_dir)
        shutil.copytree(backup, package_dir)
        shutil.rmtree(trained.model_cache_dir, ignore_errors=True)


def registry_package_dir(settings: Settings) -> Path:
    """Return the folder of version 1's package in the embedded artifact store."""
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    uri = client.get_model_version_download_uri(settings.registered_model_name, "1")
    return Path(unquote(urlparse(uri).path)) / "artifacts" / "model"


def local_copy_dir(settings: Settings) -> Path:
    """Return the folder of the server's local copy, as its current.json names it."""
    pointer = json.loads((settings.model_cache_dir / CURRENT_FILE).read_text())
    return settings.model_cache_dir / str(pointer["dir"])


def truncate(path: Path) -> None:
    """Cut a file to half its size."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def serve_once(home: Path, overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `toxiguard serve` to its end (it is expected to fail at start)."""
    return subprocess.run(
        toxiguard_command("serve", "--host", "127.0.0.1", "--port", str(free_port())),
        env=server_environment(home, overrides),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def dead_registry() -> dict[str, str]:
    """Return environment overrides pointing at an MLflow server nobody runs."""
    return {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}


def assert_one_error_line(result: subprocess.CompletedProcess[str], *parts: str) -> str:
    """Assert exit 2 with one `error:` line holding every part and no traceback; return it."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Aborted" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for part in parts:
        assert part in errors[0], errors[0]
    return errors[0]


def test_a_version_records_its_manifest_and_loads_verified(registry: Settings) -> None:
    client = MlflowClient(registry.tracking_uri, registry.tracking_uri)
    version = client.get_model_version(registry.registered_model_name, "1")
    package_dir = registry_package_dir(registry)
    assert version.tags[MANIFEST_TAG] == file_sha256(package_dir / MANIFEST_FILE)
    package, info = load_toxicity_model(f"models:/{registry.registered_model_name}/1", registry)
    assert info["version"] == 1 and package.family == "complement-nb"


def test_a_tampered_registry_artifact_is_refused(registry: Settings, tmp_path: Path) -> None:
    package_dir = registry_package_dir(registry)
    uri = f"models:/{registry.registered_model_name}@champion"
    truncate(package_dir / STATE_FILE)
    with pytest.raises(
        ModelIntegrityError, match=rf"{STATE_FILE} is truncated: .* bytes, expected"
    ):
        load_toxicity_model(uri, registry)
    # The state and its manifest both replaced: the hash recorded on the version catches it.
    marker = tmp_path / "planted-ran"
    (package_dir / STATE_FILE).write_bytes(pickle.dumps(Planted(marker)))
    write_manifest(package_dir)
    with pytest.raises(ModelIntegrityError, match="not the one recorded for it"):
        load_toxicity_model(uri, registry)
    assert not marker.exists()


def test_a_truncated_local_copy_with_the_registry_down_is_one_error_line(
    registry: Settings,
) -> None:
    Predictor(registry).load()  # saves the local copy
    truncate(local_copy_dir(registry) / STATE_FILE)
    result = serve_once(registry.home, dead_registry())
    assert_one_error_line(result, "no model to serve", STATE_FILE, "truncated")


def test_a_local_copy_of_foreign_bytes_is_one_error_line(registry: Settings) -> None:
    Predictor(registry).load()
    copy = local_copy_dir(registry)
    size = (copy / STATE_FILE).stat().st_size
    # Foreign bytes under the old manifest: caught by the size.
    (copy / STATE_FILE).write_bytes(bytes(range(256)) * (size // 256 + 2))
    assert_one_error_line(serve_once(registry.home, dead_registry()), STATE_FILE, "changed")
    write_manifest(copy)  # and with a matching manifest: caught by current.json's hash
    assert_one_error_line(serve_once(registry.home, dead_registry()), "not the one recorded")


def test_a_planted_pickle_in_the_local_copy_never_runs(registry: Settings, tmp_path: Path) -> None:
    Predictor(registry).load()
    copy = local_copy_dir(registry)
    marker = tmp_path / "planted-ran"
    (copy / "extra.joblib").write_bytes(pickle.dumps(Planted(marker)))
    assert_one_error_line(serve_once(registry.home, dead_registry()), "unexpected file")
    (copy / "extra.joblib").unlink()
    (copy / STATE_FILE).write_bytes(pickle.dumps(Planted(marker)))
    assert_one_error_line(serve_once(registry.home, dead_registry()), STATE_FILE)
    assert not marker.exists()
    pickle.loads((copy / STATE_FILE).read_bytes())  # the control: the payload does run
    assert marker.exists()


def test_a_registry_artifact_failing_verification_is_not_an_unreachable_registry(
    registry: Settings, serve_factory: ServerProcessFactory
) -> None:
    Predictor(registry).load()
    truncate(registry_package_dir(registry) / STATE_FILE)
    server = serve_factory(registry.home, {"MLFLOW_TRACKING_URI": registry.tracking_uri})
    ready = server.ready()
    assert ready["ready"] is True and ready["status"] == "degraded"
    assert ready["model"]["source"] == "local-copy"
    status = ready["registry"]
    assert status["reachable"] is True
    assert status["artifact_error"].startswith("model artifact failed verification: ")
    assert "truncated" in status["last_error"]
    problems = " | ".join(ready["problems"])
    assert "failed verification" in problems and STATE_FILE in problems
    assert "unreachable" not in problems and "could not be reached" not in problems
    body = httpx.post(f"{server.url}/v1/predict", json={"texts": ["you idiot"]}, timeout=30)
    assert body.status_code == 200


def test_legacy_local_copies_need_the_setting(registry: Settings) -> None:
    Predictor(registry).load()
    copy = local_copy_dir(registry)
    (copy / MANIFEST_FILE).unlink()
    pointer = registry.model_cache_dir / CURRENT_FILE
    saved = json.loads(pointer.read_text())
    del saved["manifest_sha256"]  # as servers wrote it before manifests
    pointer.write_text(json.dumps(saved))
    refused = serve_once(registry.home, dead_registry())
    assert_one_error_line(refused, "TOXIGUARD_ALLOW_UNVERIFIED_MODELS")
    dead = dead_registry()["MLFLOW_TRACKING_URI"]
    allowed = registry.model_copy(
        update={"allow_unverified_models": True, "mlflow_tracking_uri": dead}
    )
    assert Predictor(allowed).load().source == "local-copy"


def test_a_moved_database_is_an_error_and_no_empty_one_appears(
    trained: Settings, tmp_path: Path
) -> None:
    home = tmp_path / "moved-home"
    home.mkdir()
    settings = Settings.model_validate(
        {"home": home, "mlflow_tracking_uri": f"sqlite:///{home / 'mlflow.db'}"}
    )
    database = home / "mlflow.db"
    with pytest.raises(RegistryError, match=rf"no MLflow database at {database}.*toxiguard train"):
        promote(settings, 1)
    assert list_versions(settings) == []  # nothing is registered where there is no database
    promoted = subprocess.run(
        toxiguard_command("models", "promote", "1"),
        env=server_environment(home, {"MLFLOW_TRACKING_URI": settings.tracking_uri}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert_one_error_line(promoted, f"no MLflow database at {database}", "toxiguard train")
    assert not database.exists()
    # Put back, it serves again: the check is on the file, not on the home.
    shutil.copy(trained.resolved_home / "mlflow.db", database)
    assert list_versions(settings)[0]["version"] == 1
