"""MLflow runs for trained models: params, metrics, dataset inputs, reports, plots, pyfunc model.

The registry side lives in `toxiguard.registry` (connection, URIs, loading, listing) and
`toxiguard.promotion` (gated promotion, rollback, champion history); their public names are
re-exported here, so callers need only this module.
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
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.pandas_dataset import from_pandas
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc.model import PythonModel, PythonModelContext
from mlflow.types import ColSpec, Schema, TensorSpec

from toxiguard import __version__
from toxiguard.errors import RegistryError, ToxiguardError
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.models.base import ToxicityModel
from toxiguard.promotion import (
    Comparison,
    PromotionDecision,
    champion_history,
    gate_promotion,
    promote,
    rollback,
)
from toxiguard.registry import (
    configure_mlflow,
    list_versions,
    load_toxicity_model,
    resolve_model_uri,
)
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)

INPUT_COLUMN = "text"
MODEL_NAME = "model"
# One unnamed string column: MLflow then accepts a list of str, a series, a one-column frame of
# any name or {"text": [...]}; with a named column it would reject plain lists.
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string")]),
    outputs=Schema([ColSpec("double", label) for label in LABELS]),
)
# Harmless examples: the input example is stored with the model and shown in the MLflow UI.
INPUT_EXAMPLE = pd.DataFrame(
    {INPUT_COLUMN: ["Thanks for fixing the citation.", "You are an idiot and should shut up."]}
)
# "Models from code": the logged model holds this file instead of a pickled wrapper object.
_MODEL_CODE = """import mlflow
from toxiguard.tracking import ToxiguardPyfunc

mlflow.models.set_model(ToxiguardPyfunc())
"""
_PINNED = ("mlflow", "numpy", "pandas", "scipy", "scikit-learn")
_PARAM_LIMIT = 6000  # MLflow's maximum length of a param value
_DIGEST_LIMIT = 36  # MLflow's maximum length of a dataset digest
SPLITS_MANIFEST = "splits.json"  # written by data.save_splits beside the parquet parts


class ToxiguardPyfunc(PythonModel):
    """MLflow pyfunc wrapper around any ToxicityModel saved in the artifact "model"."""

    model: ToxicityModel

    def load_context(self, context: PythonModelContext) -> None:
        """Load the saved ToxicityModel from the model's artifacts."""
        self.model = ToxicityModel.load(context.artifacts["model"])

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Return a frame of float64 probabilities, one column per label, for the given comments."""
        texts = input_texts(model_input)
        probabilities = np.asarray(self.model.predict_proba(texts), dtype=np.float64)
        return pd.DataFrame(probabilities, columns=list(self.model.labels))


def input_texts(model_input: object) -> list[str]:
    """Return the comments in a pyfunc input: a frame ("text" or one column), series or strs."""
    if isinstance(model_input, pd.DataFrame):
        if INPUT_COLUMN in model_input.columns:
            column = model_input[INPUT_COLUMN]
        elif TEXT_COLUMN in model_input.columns:
            column = model_input[TEXT_COLUMN]
        elif model_input.shape[1] == 1:
            column = model_input.iloc[:, 0]
        else:
            raise ToxiguardError(
                f"expected a column '{INPUT_COLUMN}' in the model input, "
                f"got {list(model_input.columns)}"
            )
        values: Sequence[object] = column.tolist()
        if any(isinstance(value, list | tuple | np.ndarray) for value in values):
            # MLflow turns {"text": [...]} into one row holding the whole list.
            values = [item for value in values for item in _as_list(value)]
    elif isinstance(model_input, pd.Series | np.ndarray):
        values = list(np.asarray(model_input, dtype=object).ravel())
    elif isinstance(model_input, str):
        values = [model_input]
    elif isinstance(model_input, Sequence):
        values = model_input
    else:
        raise ToxiguardError(f"cannot read comments from a {type(model_input).__name__}")
    return ["" if _missing(value) else str(value) for value in values]


def _as_list(value: object) -> list[object]:
    """Return a list-like cell as a list, any other cell as a one-item list."""
    return list(value) if isinstance(value, list | tuple | np.ndarray) else [value]


def _missing(value: object) -> bool:
    """Return True for None, pandas' NA and float NaN."""
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


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


def log_model_run(
    model: ToxicityModel,
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
) -> tuple[str, int]:
    """Return (run id, registered version) after logging one trained model and all it came with.

    Logs into the active run when the caller has started one (e.g. to log training curves
    first), otherwise into a new run named `run_name`.
    """
    client = configure_mlflow(settings)
    run_tags = {
        "family": model.family,
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
            _log_datasets(dataset_source, dataset_fingerprint, splits_dir, model.family)
            for name, report in reports.items():
                mlflow.log_dict(report, f"reports/{name}.json")
            for name, figure in figures.items():
                mlflow.log_figure(figure, f"plots/{name if Path(name).suffix else name + '.png'}")
            with tempfile.TemporaryDirectory(prefix="toxiguard-model-") as tmp:
                model_dir = model.save(Path(tmp) / "model")
                code = Path(tmp) / "toxiguard_pyfunc.py"
                code.write_text(_MODEL_CODE)
                info = mlflow.pyfunc.log_model(
                    name=MODEL_NAME,
                    python_model=str(code),
                    artifacts={"model": str(model_dir)},
                    signature=SIGNATURE,
                    input_example=INPUT_EXAMPLE,
                    pip_requirements=pip_requirements(extra_pip_requirements),
                    registered_model_name=settings.registered_model_name,
                )
            version = int(info.registered_model_version)
            version_tags = {
                "family": model.family,
                "thresholds": json.dumps([round(float(t), 6) for t in model.thresholds]),
                "dataset_fingerprint": dataset_fingerprint,
                "run_id": run.info.run_id,
            }
            if "test_roc_auc_mean" in metrics:
                version_tags["test_roc_auc_mean"] = repr(float(metrics["test_roc_auc_mean"]))
            for key, value in version_tags.items():
                client.set_model_version_tag(
                    settings.registered_model_name, str(version), key, value
                )
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


__all__ = [
    "Comparison",
    "PromotionDecision",
    "ToxiguardPyfunc",
    "champion_history",
    "configure_mlflow",
    "gate_promotion",
    "input_texts",
    "list_versions",
    "load_toxicity_model",
    "log_model_run",
    "pip_requirements",
    "promote",
    "resolve_model_uri",
    "rollback",
]
