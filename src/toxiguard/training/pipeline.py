"""The training pipeline: the one loop over model families, and the results it returns.

`train_families` is the one loop over model families; each family goes through the steps of
`TrainingSteps` (fit, evaluate, register, gate), which the Prefect flow replaces by its tasks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow

from toxiguard.models import ToxicityModel
from toxiguard.models.blend import BlendModel
from toxiguard.models.cascade import CascadeModel
from toxiguard.registry.client import configure_mlflow
from toxiguard.registry.promotion import PromotionDecision
from toxiguard.settings import Settings, get_settings
from toxiguard.training.gate import gate_step
from toxiguard.training.steps import (
    Evaluation,
    PreparedData,
    evaluate_step,
    fit_step,
    prepare_data,
    register_model,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelResult:
    """What training one model family produced: its run, version, scores and promotion decision."""

    family: str
    run_id: str
    version: int
    fit_seconds: float
    evaluation: Evaluation
    decision: PromotionDecision


@dataclass(frozen=True)
class TrainingResult:
    """The outcome of one training job over several model families."""

    source: str
    dataset_fingerprint: str
    splits_fingerprint: str
    splits_dir: Path
    models: list[ModelResult] = field(default_factory=list)
    train_rows: int = 0

    @property
    def champion_version(self) -> int | None:
        """Return the champion after this job, if any model was promoted or one existed."""
        for result in reversed(self.models):
            if result.decision.promoted:
                return result.version
        return self.models[-1].decision.champion_before if self.models else None


@contextlib.contextmanager
def family_run(family: str, settings: Settings) -> Iterator[None]:
    """Keep one MLflow run open for a family's fit, evaluation and registration, so that a
    model can log its training curves (e.g. the transformer's loss) into it while it fits."""
    configure_mlflow(settings)
    with mlflow.start_run(run_name=family):
        yield


@dataclass(frozen=True)
class TrainingSteps:
    """The steps one family goes through, each called with the family name first.

    The defaults are the plain functions above; the Prefect flow passes its tasks instead.
    """

    fit: Callable[
        [str, PreparedData, Mapping[str, Any] | None, Mapping[str, ToxicityModel], Settings],
        tuple[ToxicityModel, float],
    ] = fit_step
    evaluate: Callable[[str, ToxicityModel, PreparedData, Settings], Evaluation] = evaluate_step
    register: Callable[
        [str, ToxicityModel, float, Evaluation, PreparedData, Settings, Mapping[str, Any] | None],
        tuple[str, int],
    ] = register_model
    gate: Callable[
        [str, ToxicityModel, int, Evaluation, PreparedData, Settings], PromotionDecision
    ] = gate_step


def train_family(
    family: str,
    prepared: PreparedData,
    settings: Settings,
    params: Mapping[str, Any] | None = None,
    fitted: dict[str, ToxicityModel] | None = None,
    steps: TrainingSteps | None = None,
) -> ModelResult:
    """Fit, evaluate, register and gate one model family; return what happened.

    When `fitted` is given, the fitted model is added to it for later composites of the job.
    """
    steps = steps or TrainingSteps()
    logger.info("training %s on %d rows", family, len(prepared.splits.train))
    with family_run(family, settings):
        model, fit_seconds = steps.fit(family, prepared, params, fitted or {}, settings)
        if fitted is not None:
            fitted[family] = model
        result = steps.evaluate(family, model, prepared, settings)
        run_id, version = steps.register(
            family, model, fit_seconds, result, prepared, settings, params
        )
    decision = steps.gate(family, model, version, result, prepared, settings)
    logger.info("%s: version %d, %s", family, version, decision.reason)
    return ModelResult(family, run_id, version, fit_seconds, result, decision)


#: Families built of other families, in the order they come after every plain one: a cascade
#: reuses the job's blend.
COMPOSITES = (BlendModel.family, CascadeModel.family)


def training_order(families: Sequence[str]) -> list[str]:
    """Return the families in training order: composites last (blend, then cascade), to reuse
    this job's fitted members."""
    return sorted(
        families,
        key=lambda family: COMPOSITES.index(family) + 1 if family in COMPOSITES else 0,
    )


def train_families(
    prepared: PreparedData,
    settings: Settings,
    families: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    steps: TrainingSteps | None = None,
) -> TrainingResult:
    """Train each family (default: the settings' `training_models`) in training order; return
    every model's result."""
    fitted: dict[str, ToxicityModel] = {}
    results = [
        train_family(family, prepared, settings, (params or {}).get(family), fitted, steps)
        for family in training_order(families or settings.training_models)
    ]
    return TrainingResult(
        source=prepared.dataset.source,
        dataset_fingerprint=prepared.dataset.fingerprint,
        splits_fingerprint=prepared.splits.fingerprint,
        splits_dir=prepared.splits_dir,
        models=results,
        train_rows=len(prepared.splits.train),
    )


def run_training(
    data_path: str | Path,
    families: Sequence[str] | None = None,
    settings: Settings | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> TrainingResult:
    """Run the whole job for each family (default: the settings' `training_models`); return
    every model's result."""
    settings = settings or get_settings()
    return train_families(prepare_data(data_path, settings), settings, families, params)
