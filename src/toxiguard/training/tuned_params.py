"""Hyperparameters for a training job: the families' defaults, the best ones a tuning run found
(`toxiguard tune`, recorded on its MLflow run), or a JSON file.

`resolve_params` is what `toxiguard train --params` and the training flow's `params` call; it
needs neither Optuna nor a tuning run to exist (a family never tuned keeps its defaults).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mlflow.entities import Run

from toxiguard.errors import ToxiguardError
from toxiguard.models import model_families
from toxiguard.models.blend import BlendModel
from toxiguard.registry.client import configure_mlflow
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)

#: Tags of a tuning run (the parent of its trials' runs).
RUN_TYPE_TAG: Final = "toxiguard.run_type"
TUNING_RUN_TYPE: Final = "tuning"
FAMILY_TAG: Final = "toxiguard.tuning_family"
#: The best trial's model params as JSON (a tag, not an artifact: read without a download).
BEST_PARAMS_TAG: Final = "toxiguard.best_params"
BEST_METRIC: Final = "best_val_mean_roc_auc"
DEFAULT_METRIC: Final = "default_val_mean_roc_auc"
#: What `--params` takes besides a JSON file.
DEFAULT_SPEC: Final = "default"
CASCADE: Final = "cascade"
BEST_SPEC: Final = "best"


@dataclass(frozen=True)
class TunedParams:
    """The best params of a family's latest finished tuning run, and where they come from."""

    family: str
    params: dict[str, Any]
    run_id: str
    best_value: float | None
    default_value: float | None
    dataset_fingerprint: str | None

    def describe(self) -> str:
        """Return one line for the user: which run, what it scored against the defaults."""
        scores = ""
        if self.best_value is not None:
            scores = f": validation ROC-AUC {self.best_value:.4f}"
            if self.default_value is not None:
                scores += f" (defaults {self.default_value:.4f})"
        data = (
            f", tuned on data {self.dataset_fingerprint[:12]}" if self.dataset_fingerprint else ""
        )
        return f"{self.family}: params of tuning run {self.run_id}{scores}{data}"


def tuned_params_of(run: Run) -> TunedParams:
    """Return the tuned params recorded on a tuning run (ToxiguardError if it holds none)."""
    tags, metrics = run.data.tags, run.data.metrics
    try:
        params = json.loads(tags[BEST_PARAMS_TAG])
    except (KeyError, json.JSONDecodeError) as error:
        raise ToxiguardError(
            f"tuning run {run.info.run_id} holds no readable {BEST_PARAMS_TAG} tag"
        ) from error
    return TunedParams(
        family=tags.get(FAMILY_TAG, ""),
        params=params,
        run_id=run.info.run_id,
        best_value=metrics.get(BEST_METRIC),
        default_value=metrics.get(DEFAULT_METRIC),
        dataset_fingerprint=tags.get("dataset_fingerprint"),
    )


def latest_tuned_params(settings: Settings, family: str) -> TunedParams | None:
    """Return the best params of the family's latest finished tuning run, or None if none."""
    client = configure_mlflow(settings)
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=(
            f"tags.`{RUN_TYPE_TAG}` = '{TUNING_RUN_TYPE}' and tags.`{FAMILY_TAG}` = '{family}' "
            "and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return tuned_params_of(runs[0]) if runs else None


def params_file(path: Path) -> dict[str, dict[str, Any]]:
    """Return the params of a JSON file {family: {param: value}}; ToxiguardError naming the file
    and the entry that is wrong."""
    try:
        content = json.loads(path.read_text())
    except OSError as error:
        raise ToxiguardError(f"{path}: cannot read the params file ({error.strerror})") from error
    except json.JSONDecodeError as error:
        raise ToxiguardError(
            f"{path}: not JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from error
    if not isinstance(content, dict):
        raise ToxiguardError(f"{path}: expected an object {{family: {{param: value}}}}")
    known = model_families()
    for family, params in content.items():
        if family not in known:
            raise ToxiguardError(
                f"{path}: unknown model family '{family}' (known: {', '.join(known)})"
            )
        if not isinstance(params, dict):
            raise ToxiguardError(f"{path}: '{family}' must map to an object of params")
    return content


def resolve_params(
    spec: str | Path | Mapping[str, Mapping[str, Any]] | None,
    families: Sequence[str],
    settings: Settings,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Return the params per family of a training job, and a line per family saying whence.

    `spec`: None or "default" (every family's defaults), "best" (each family's latest tuning
    run, defaults for a family never tuned; a blend's members built in the job take theirs),
    a JSON file's path, or the mapping itself.
    """
    if spec is None or spec == DEFAULT_SPEC:
        return {}, []
    if isinstance(spec, Mapping):
        return {family: dict(params) for family, params in spec.items()}, []
    if spec != BEST_SPEC:
        path = Path(spec)
        return params_file(path), [f"params from {path}"]
    wanted = set(families)
    if wanted & {BlendModel.family, CASCADE}:  # a transformer a composite fits takes them too
        wanted.add("transformer")
    params: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for family in sorted(wanted):
        tuned = latest_tuned_params(settings, family)
        if tuned is None:
            if family in families:
                notes.append(f"{family}: never tuned, its defaults")
            continue
        params[family] = dict(tuned.params)
        notes.append(tuned.describe())
    transformer = params.pop("transformer", None)
    if transformer is not None:
        params = with_transformer_params(params, transformer, families)
    return params, notes


def with_transformer_params(
    params: Mapping[str, Mapping[str, Any]],
    transformer: Mapping[str, Any],
    families: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Return `params` with `transformer` params added for the transformer and for the one a
    blend or a cascade's slow blend builds, for those of `families` the job trains."""
    merged = {family: dict(values) for family, values in params.items()}
    if not transformer:
        return merged

    def add(target: dict[str, Any]) -> None:
        target["transformer"] = {**target.get("transformer", {}), **transformer}

    if "transformer" in families:
        merged["transformer"] = {**merged.get("transformer", {}), **transformer}
    if BlendModel.family in families:
        add(merged.setdefault(BlendModel.family, {}).setdefault("member_params", {}))
    if CASCADE in families:
        stages = merged.setdefault(CASCADE, {}).setdefault("stage_params", {})
        add(stages.setdefault("slow", {}).setdefault("member_params", {}))
    return merged
