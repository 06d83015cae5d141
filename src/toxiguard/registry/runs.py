"""MLflow runs for trained models: params, metrics, dataset inputs, reports, plots, pyfunc model.

The logged pyfunc model holds the whole model package (`toxiguard.models.package`), which is
registered as a new version of the settings' registered model; the sha256 of the package's
manifest is recorded on the version (`MANIFEST_TAG`), where loading checks it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.pandas_dataset import from_pandas
from mlflow.exceptions import MlflowException
from mlflow.models.model import ModelInfo
from mlflow.types import ColSpec, Schema, TensorSpec

from toxiguard import __version__
from toxiguard.errors import RegistryError
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.models.manifest import MANIFEST_FILE, MANIFEST_TAG, file_sha256
from toxiguard.models.package import ModelPackage
from toxiguard.registry.client import configure_mlflow, connect, load_toxicity_model
from toxiguard.registry.pyfunc import ARTIFACT_NAME, INPUT_EXAMPLE, MODEL_NAME, SIGNATURE
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)

# "Models from code": the logged model holds this file instead of a pickled wrapper object.
_MODEL_CODE = """import mlflow
from toxiguard.registry.pyfunc import ToxiguardPyfunc

mlflow.models.set_model(ToxiguardPyfunc())
"""
_PINNED = ("mlflow", "numpy", "pandas", "scipy", "scikit-learn")
_PARAM_LIMIT = 6000  # MLflow's maximum length of a param value
_DIGEST_LIMIT = 36  # MLflow's maximum length of a dataset digest
SPLITS_MANIFEST = "splits.json"  # written by data.save_splits beside the parquet parts


def _param_value(value: Any) -> str:
    """Return a param value as MLflow stores it: a string, JSON for containers, cut to the limit."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:_PARAM_LIMIT]


def pip_requirements(extra: Sequence[str] = ()) -> list[str]:
    """Return the pip requirements of a logged model: toxiguard and its model libraries, pinned."""
    requirements = [f"toxiguard=={__version__}"]
    for package in _PINNED:
        try:
            requirements.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            requirements.append(package)
    return requirements + [r for r in extra if r not in requirements]


def _dataset_source(raw: str) -> DatasetSource:
    """Return an MLflow dataset source for a file path (as a file URI) or any other description."""
    uri = Path(raw).resolve().as_uri() if Path(raw).exists() else raw
    with warnings.catch_warnings():
        # Two registered local-file source classes both claim plain paths; either is right.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        try:
            return resolve_dataset_source(uri)
        except MlflowException:
            return CodeDatasetSource(tags={"source": raw})


def _log_datasets(
    dataset_source: str, dataset_fingerprint: str, splits_dir: Path | None, family: str
) -> None:
    """Log the source data (by fingerprint) and each saved split as MLflow dataset inputs."""
    columns: list[ColSpec | TensorSpec] = [ColSpec("string", TEXT_COLUMN)]
    columns += [ColSpec("integer", label) for label in LABELS]
    schema = Schema(columns)
    source = _dataset_source(dataset_source)
    digest = dataset_fingerprint.removeprefix("sha256:")[:_DIGEST_LIMIT]
    name = Path(dataset_source).name or dataset_source
    mlflow.log_input(
        MetaDataset(source, name=name, digest=digest, schema=schema),  # type: ignore[abstract]
        context="source",
        tags={"fingerprint": dataset_fingerprint[:500], "model_family": family},
    )
    if splits_dir is None:
        return
    manifest_file = Path(splits_dir) / SPLITS_MANIFEST
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    for path in sorted(Path(splits_dir).glob("*.parquet")):
        part_fingerprint = manifest.get("parts", {}).get(path.stem, {}).get("fingerprint")
        part_tags = {"fingerprint": part_fingerprint} if part_fingerprint else None
        with warnings.catch_warnings():
            # The label columns are integers by design; MLflow warns about missing values.
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            dataset = from_pandas(
                pd.read_parquet(path),
                source=_dataset_source(str(path)),
                name=path.stem,
                digest=part_fingerprint[:_DIGEST_LIMIT] if part_fingerprint else None,
            )
            mlflow.log_input(dataset, context=path.stem, tags=part_tags)
    if manifest_file.is_file():
        mlflow.log_artifact(str(manifest_file), artifact_path="data")


def _register(
    client: MlflowClient,
    settings: Settings,
    info: ModelInfo,
    run_id: str,
    tags: dict[str, str],
) -> int:
    """Return the number of a new registered version of the logged model, created with its tags.

    Through the client rather than `log_model(registered_model_name=...)`: the fluent call
    prints "Successfully registered model" lines past any logging configuration, and the tags
    (the manifest's hash among them) are set with the version, not after it.
    """
    name = settings.registered_model_name
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    created = client.create_model_version(
        name, source=info.model_uri, run_id=run_id, tags=tags, model_id=info.model_id
    )
    return int(created.version)


def log_model_run(
    package: ModelPackage,
    *,
    settings: Settings,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    reports: dict[str, dict[str, Any]],
    figures: dict[str, Figure],
    dataset_source: str,
    dataset_fingerprint: str,
    splits_dir: Path | None,
    tags: dict[str, str] | None = None,
    extra_pip_requirements: Sequence[str] = (),
    dataset_rows: int | None = None,
    demo_data: bool = False,
    version_tags: dict[str, str] | None = None,
    tables: dict[str, list[dict[str, Any]]] | None = None,
) -> tuple[str, int]:
    """Return (run id, registered version) after logging one model package and all it came with.

    Logs into the active run when the caller has started one (e.g. to log training curves
    first), otherwise into a new run named `run_name`. The version's tags name its data (file,
    rows, fingerprint, whether it is the demo corpus) for `models list`; `version_tags` adds to
    them or replaces them.
    """
    client = configure_mlflow(settings)
    run_tags = {
        "family": package.family,
        "dataset_fingerprint": dataset_fingerprint,
        "toxiguard_version": __version__,
        **(tags or {}),
    }
    active = mlflow.active_run()
    try:
        with (
            contextlib.nullcontext(active)
            if active is not None
            else mlflow.start_run(run_name=run_name, tags=run_tags)
        ) as run:
            if active is not None:
                mlflow.set_tags(run_tags)
            mlflow.log_params({key: _param_value(value) for key, value in params.items()})
            mlflow.log_metrics({key: float(value) for key, value in metrics.items()})
            _log_datasets(dataset_source, dataset_fingerprint, splits_dir, package.family)
            for name, report in reports.items():
                mlflow.log_dict(report, f"reports/{name}.json")
            for name, figure in figures.items():
                mlflow.log_figure(figure, f"plots/{name if Path(name).suffix else name + '.png'}")
            for name, rows in (tables or {}).items():
                if rows:  # MLflow's table view: one row per dict
                    mlflow.log_table(pd.DataFrame(rows), artifact_file=f"tables/{name}.json")
            with tempfile.TemporaryDirectory(prefix="toxiguard-model-") as tmp:
                model_dir = package.save(Path(tmp) / ARTIFACT_NAME)
                manifest_sha256 = file_sha256(model_dir / MANIFEST_FILE)
                code = Path(tmp) / "toxiguard_pyfunc.py"
                code.write_text(_MODEL_CODE)
                info = mlflow.pyfunc.log_model(
                    name=MODEL_NAME,
                    python_model=str(code),
                    artifacts={ARTIFACT_NAME: str(model_dir)},
                    signature=SIGNATURE,
                    input_example=INPUT_EXAMPLE,
                    pip_requirements=pip_requirements(extra_pip_requirements),
                )
            all_version_tags = {
                "family": package.family,
                "dataset_file": Path(dataset_source).name or dataset_source,
                "toxiguard.demo_data": str(demo_data).lower(),
                "thresholds": json.dumps([round(float(t), 6) for t in package.thresholds]),
                "dataset_fingerprint": dataset_fingerprint,
                "run_id": run.info.run_id,
                # Kept apart from the artifact store: loading checks the manifest against it.
                MANIFEST_TAG: manifest_sha256,
            }
            if dataset_rows is not None:
                all_version_tags["dataset_rows"] = str(dataset_rows)
            if "test_roc_auc_mean" in metrics:
                all_version_tags["test_roc_auc_mean"] = repr(float(metrics["test_roc_auc_mean"]))
            all_version_tags.update(version_tags or {})
            version = _register(client, settings, info, run.info.run_id, all_version_tags)
            mlflow.set_tag("registered_version", str(version))
    except MlflowException as error:
        raise RegistryError(
            f"logging to MLflow at {settings.tracking_uri} failed: {error}"
        ) from error
    logger.info(
        "run %s registered as %s version %s",
        run.info.run_id,
        settings.registered_model_name,
        version,
    )
    return run.info.run_id, version


# Tags a version made from another one's model carries over from it: what the model is and
# what it was trained on.
_CARRIED_TAGS = (
    "family",
    "dataset_fingerprint",
    "dataset_file",
    "dataset_rows",
    "toxiguard.demo_data",
    "test_roc_auc_mean",
)


def register_with_thresholds(
    settings: Settings,
    base_version: int,
    thresholds: Sequence[float],
    *,
    reason: str,
    metrics: dict[str, float],
    report: dict[str, Any],
) -> tuple[str, int]:
    """Return (run id, version) of a new version holding `base_version`'s model and package
    with other thresholds; the reason, the base and the report are logged with it."""
    name = settings.registered_model_name
    package, _ = load_toxicity_model(f"models:/{name}/{base_version}", settings)
    base = connect(settings).get_model_version(name, str(base_version))
    before = [float(t) for t in package.thresholds]
    package.thresholds = np.asarray([float(t) for t in thresholds], dtype=np.float64)
    carried = {key: base.tags[key] for key in _CARRIED_TAGS if key in base.tags}
    return log_model_run(
        package,
        settings=settings,
        run_name=f"thresholds-v{base_version}",
        params={
            "family": package.family,
            "base_version": base_version,
            "thresholds_before": before,
            "thresholds": [float(t) for t in package.thresholds],
            "reason": reason,
        },
        metrics=metrics,
        reports={"thresholds": report},
        figures={},
        dataset_source=carried.get("dataset_file", f"{name} version {base_version}"),
        dataset_fingerprint=carried.get("dataset_fingerprint", ""),
        splits_dir=None,
        tags={"toxiguard.base_version": str(base_version), "toxiguard.thresholds_reason": reason},
        version_tags={
            **carried,
            "toxiguard.base_version": str(base_version),
            "toxiguard.thresholds_reason": reason,
        },
    )
