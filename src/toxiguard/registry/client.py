"""The MLflow connection and the model registry: URIs, loading a version, listing versions.

An embedded sqlite registry file is created only by what writes to it (`configure_mlflow`:
training, monitoring runs); every other connection refuses a missing file with a clear error,
so that a moved `mlflow.db` is never silently replaced by an empty one. A registered version
is loaded from its artifact folder, verified against its manifest and the manifest's hash
recorded on the version (`models.manifest`) before anything in it is unpickled.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from toxiguard.errors import ModelIntegrityError, ModelNotFoundError, RegistryError
from toxiguard.models.manifest import MANIFEST_TAG
from toxiguard.models.package import ModelPackage
from toxiguard.registry.pyfunc import ARTIFACT_NAME
from toxiguard.settings import Settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)

#: Where versions logged before the package layout import their pyfunc wrapper from (they load
#: like every version: from their artifact folder, without running their model code).
LEGACY_WRAPPER_MODULE = "toxiguard.tracking"
_SERVER_SCHEMES = {"http", "https", "databricks", "databricks-uc"}
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}
_VERSION_REF = re.compile(r"[vV]?(\d+)")
_REGISTRY_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/]+))/?")


def is_embedded(settings: Settings) -> bool:
    """Return True when MLflow runs in-process on a database URI (sqlite by default)."""
    return urlparse(settings.tracking_uri).scheme not in _SERVER_SCHEMES


def _check_reachable(settings: Settings, attempts: int = 3) -> None:
    """Raise RegistryError quickly when an MLflow server does not answer at all.

    MLflow's own client retries a refused connection with backoff for about four minutes;
    a short probe first turns "server down" into a clear error within seconds.
    """
    uri = settings.tracking_uri
    if urlparse(uri).scheme not in {"http", "https"}:
        return
    probe = f"{uri.rstrip('/')}/health"
    for attempt in range(attempts):
        try:
            # The scheme is checked above (http or https only), so bandit's B310 does not apply.
            with urllib.request.urlopen(probe, timeout=settings.registry_timeout_seconds):  # nosec B310
                return
        except urllib.error.HTTPError:
            return  # it answered: whatever the status, requests can be made
        except (urllib.error.URLError, OSError) as error:
            if attempt == attempts - 1:
                raise RegistryError(
                    f"cannot reach the MLflow server at {uri}: {getattr(error, 'reason', error)}"
                ) from error
            time.sleep(0.5 * 2**attempt)


def embedded_database(settings: Settings) -> Path | None:
    """Return the file of an sqlite tracking URI, or None for any other URI."""
    uri = settings.tracking_uri
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def missing_database_error(database: Path) -> RegistryError:
    """Return the error for an embedded registry whose database file does not exist."""
    return RegistryError(
        f"no MLflow database at {database}: `toxiguard train` creates it; if it was moved, "
        "move it back or point MLFLOW_TRACKING_URI at it"
    )


def connect(settings: Settings, *, create: bool = False) -> MlflowClient:
    """Return a client with MLflow's tracking and registry URIs pointed at the settings.

    An embedded sqlite database that does not exist is an error (`missing_database_error`)
    unless `create` is set: then its folder is made, and MLflow creates the file.
    """
    uri = settings.tracking_uri
    _check_reachable(settings)
    database = embedded_database(settings)
    if database is not None and create:
        database.parent.mkdir(parents=True, exist_ok=True)
    elif database is not None and not database.is_file():
        raise missing_database_error(database)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def registry_error(settings: Settings, error: Exception) -> RegistryError:
    """Return the error for a registry that could not be reached or refused a request."""
    return RegistryError(f"MLflow at {settings.tracking_uri} failed: {error}")


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Return a client for the configured MLflow, with the experiment (and an embedded database)
    created if it was missing."""
    client = connect(settings, create=True)
    name = settings.experiment_name
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            location = None
            if is_embedded(settings):
                settings.artifact_root.mkdir(parents=True, exist_ok=True)
                location = settings.artifact_root.as_uri()
            try:
                experiment_id = client.create_experiment(name, artifact_location=location)
            except MlflowException as error:  # created by a concurrent process in between
                existing = client.get_experiment_by_name(name)
                if existing is None:
                    raise
                experiment_id = existing.experiment_id
                logger.debug("experiment %s appeared concurrently: %s", name, error)
        else:
            experiment_id = experiment.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
    except MlflowException as error:
        raise registry_error(settings, error) from error
    return client


def resolve_model_uri(ref: str | None, settings: Settings) -> str:
    """Return the MLflow model URI for None (the champion), a version, an alias, or a URI."""
    name = settings.registered_model_name
    if ref is None or not ref.strip():
        return f"models:/{name}@{settings.champion_alias}"
    ref = ref.strip()
    if match := _VERSION_REF.fullmatch(ref):
        return f"models:/{name}/{int(match.group(1))}"
    if ":" in ref or "/" in ref or "\\" in ref or ref.startswith((".", "~")) or Path(ref).exists():
        return ref
    return f"models:/{name}@{ref}"


def is_not_found(error: MlflowException) -> bool:
    """Return True when MLflow says that the thing asked for does not exist."""
    return error.error_code in _NOT_FOUND


def _version_for(client: MlflowClient, settings: Settings, uri: str) -> ModelVersion | None:
    """Return the registered version that models:/name/N or models:/name@alias points at."""
    match = _REGISTRY_URI.fullmatch(uri)
    if match is None:
        return None
    name, version, alias = match.group("name", "version", "alias")
    try:
        if alias is not None:
            # Read the alias from the registered model: MLflow reports an unknown alias with
            # different error codes depending on the store.
            aliases = client.get_registered_model(name).aliases
            if alias in aliases:
                return client.get_model_version(name, str(aliases[alias]))
        else:
            return client.get_model_version(name, version)
    except MlflowException as error:
        if not is_not_found(error):
            raise registry_error(settings, error) from error
    if alias == settings.champion_alias:
        raise ModelNotFoundError(
            f"no '{alias}' version of model '{name}' in {settings.tracking_uri} yet: train one "
            "(`toxiguard train`) or promote one (`toxiguard models promote VERSION`)"
        )
    what = f"alias '{alias}'" if alias is not None else f"version {version}"
    raise ModelNotFoundError(f"model '{name}' has no {what} in {settings.tracking_uri}")


def load_toxicity_model(uri: str, settings: Settings) -> tuple[ModelPackage, dict[str, Any]]:
    """Return the model package behind an MLflow URI and what the registry knows about it.

    The package is verified against its manifest, and against the manifest hash recorded on
    the version when it has one (ModelIntegrityError if a file was changed or replaced).
    """
    # A models:/ or runs:/ URI needs the registry's database; a local folder does not.
    client = connect(settings, create=not uri.startswith(("models:/", "runs:/")))
    version = _version_for(client, settings, uri)
    # Load the exact version the alias points at now, so that a concurrent promotion cannot
    # make the model and its description disagree.
    load_uri = uri if version is None else f"models:/{version.name}/{version.version}"
    expected = version.tags.get(MANIFEST_TAG) if version is not None else None
    try:
        package = _load_package(load_uri, uri, expected, settings.allow_unverified_models)
    except ModelIntegrityError as error:
        raise ModelIntegrityError(f"{load_uri}: {error}") from error
    except MlflowException as error:
        if is_not_found(error):
            raise ModelNotFoundError(f"no model at {uri}: {error.message}") from error
        raise registry_error(settings, error) from error
    except OSError as error:
        raise ModelNotFoundError(f"no model at {uri}: {error}") from error
    run_id = version.run_id if version is not None else _run_id_from_uri(uri)
    metrics: dict[str, float] = {}
    if run_id:
        try:
            metrics = dict(client.get_run(run_id).data.metrics)
        except MlflowException as error:
            logger.warning("could not read the metrics of run %s: %s", run_id, error)
    info: dict[str, Any] = {
        "uri": uri,
        "name": version.name if version is not None else None,
        "version": int(version.version) if version is not None else None,
        "aliases": sorted(version.aliases) if version is not None else [],
        "run_id": run_id,
        "family": package.family,
        "thresholds": [float(t) for t in package.thresholds],
        "metrics": metrics,
    }
    return package, info


def _load_package(
    load_uri: str, uri: str, expected_manifest: str | None, allow_unverified: bool
) -> ModelPackage:
    """Return the package of a logged toxiguard pyfunc model, verified before it is read.

    The package is read from the logged model's artifact folder (`artifacts/model`), the files
    the pyfunc wrapper reads, without running the model code stored beside them: a version
    logged before the code moved to packages by stage names `toxiguard.tracking` there, and the
    artifact store's code must not run before the manifest is checked.
    """
    folder = Path(mlflow.artifacts.download_artifacts(load_uri))
    package_dir = folder / "artifacts" / ARTIFACT_NAME
    if not package_dir.is_dir():
        raise ModelNotFoundError(f"{uri} is not a toxiguard model (no artifacts/{ARTIFACT_NAME})")
    return ModelPackage.load(
        package_dir, expected_manifest_sha256=expected_manifest, allow_unverified=allow_unverified
    )


def _run_id_from_uri(uri: str) -> str | None:
    """Return the run id of a runs:/<id>/... URI, else None."""
    if uri.startswith("runs:/"):
        return uri.removeprefix("runs:/").split("/", 1)[0] or None
    return None
