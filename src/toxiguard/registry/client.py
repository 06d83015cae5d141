"""The MLflow connection and the model registry: URIs, loading a version, listing versions."""

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

from toxiguard.errors import ModelNotFoundError, RegistryError
from toxiguard.models.package import ModelPackage
from toxiguard.registry.pyfunc import ARTIFACT_NAME, ToxiguardPyfunc
from toxiguard.settings import Settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)

#: Where versions logged before the package layout import their pyfunc wrapper from.
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


def connect(settings: Settings) -> MlflowClient:
    """Point MLflow's tracking and registry URIs at the settings (making the sqlite folder)."""
    uri = settings.tracking_uri
    _check_reachable(settings)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def registry_error(settings: Settings, error: Exception) -> RegistryError:
    """Return the error for a registry that could not be reached or refused a request."""
    return RegistryError(f"MLflow at {settings.tracking_uri} failed: {error}")


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Return a client for the configured MLflow, with the experiment created if it was missing."""
    client = connect(settings)
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
    """Return the model package behind an MLflow URI and what the registry knows about it."""
    client = connect(settings)
    version = _version_for(client, settings, uri)
    # Load the exact version the alias points at now, so that a concurrent promotion cannot
    # make the model and its description disagree.
    load_uri = uri if version is None else f"models:/{version.name}/{version.version}"
    try:
        package = _load_package(load_uri, uri)
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


def _load_package(load_uri: str, uri: str) -> ModelPackage:
    """Return the package of a logged toxiguard pyfunc model.

    A version logged before the code moved to packages by stage names its wrapper as
    `toxiguard.tracking.ToxiguardPyfunc` in its model code; such a version is loaded from its
    artifact folder, the same files the wrapper would have read.
    """
    try:
        wrapper = mlflow.pyfunc.load_model(load_uri).unwrap_python_model()
    except (MlflowException, ModuleNotFoundError) as error:
        if not _names_legacy_wrapper(error):
            raise
        logger.info("%s was logged by an earlier toxiguard layout: loading its artifacts", uri)
        folder = Path(mlflow.artifacts.download_artifacts(load_uri))
        return ModelPackage.load(folder / "artifacts" / ARTIFACT_NAME)
    if not isinstance(wrapper, ToxiguardPyfunc):
        raise ModelNotFoundError(f"{uri} is not a toxiguard model ({type(wrapper).__name__})")
    return wrapper.package


def _names_legacy_wrapper(error: BaseException) -> bool:
    """Return True when an import of the earlier layout's wrapper module caused `error`.

    MLflow reports a model code file that fails to import as an MlflowException raised from
    the ModuleNotFoundError, so the chain of causes is searched.
    """
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ModuleNotFoundError) and cause.name == LEGACY_WRAPPER_MODULE:
            return True
        cause = cause.__cause__ or cause.__context__
    return f"No module named '{LEGACY_WRAPPER_MODULE}'" in str(error)


def _run_id_from_uri(uri: str) -> str | None:
    """Return the run id of a runs:/<id>/... URI, else None."""
    if uri.startswith("runs:/"):
        return uri.removeprefix("runs:/").split("/", 1)[0] or None
    return None
