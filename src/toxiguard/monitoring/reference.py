"""The monitoring reference of a registered version, read from MLflow and cached under the home.

The reference itself (what it holds, how training builds it) is `toxiguard.models.reference`;
it is saved inside each registered model's package, and this module downloads only that folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from toxiguard.errors import ModelNotFoundError, RegistryError
from toxiguard.models.reference import REFERENCE_DIR, REFERENCE_FILE, MonitoringReference
from toxiguard.registry.client import configure_mlflow
from toxiguard.registry.pyfunc import ARTIFACT_NAME
from toxiguard.settings import Settings


def reference_for_version(settings: Settings, version: int) -> MonitoringReference:
    """Return the reference stored with a registered version (downloaded once, then cached).

    The cache is keyed by the version's run, so a registry that was reset cannot serve a stale
    reference.
    """
    name = settings.registered_model_name
    uri = f"models:/{name}/{version}"
    client = configure_mlflow(settings)
    try:
        run_id = client.get_model_version(name, str(version)).run_id or "none"
        cache = settings.monitoring_dir / "references" / f"{name}-v{version}-{run_id[:16]}"
        if (cache / REFERENCE_FILE).is_file():
            return MonitoringReference.load(cache)
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(cache.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        # Only the reference folder: the rest of a model (its weights) can be large.
        downloaded = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{uri}/artifacts/{ARTIFACT_NAME}/{REFERENCE_DIR}", dst_path=str(partial)
        )
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ModelNotFoundError(
                f"{uri}: no monitoring reference ({error.message}); models trained before "
                "monitoring existed have none: retrain"
            ) from error
        raise RegistryError(f"could not read the reference of {uri}: {error}") from error
    reference = MonitoringReference.load(downloaded)
    shutil.rmtree(cache, ignore_errors=True)
    Path(downloaded).rename(cache)
    shutil.rmtree(partial, ignore_errors=True)
    return reference


__all__ = ["reference_for_version"]
