"""Prefect flows and deployments: thin wrappers over the training and monitoring functions.

Every step is a plain library call (`toxiguard.training.pipeline`, `toxiguard.registry.runs`,
`toxiguard.monitoring`); this module only gives them names, retries and a report in Prefect.
With no `PREFECT_API_URL` the flows run on Prefect's temporary local server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from prefect import flow, serve, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.deployments.runner import RunnerDeployment
from prefect.tasks import Task
from prefect.types.entrypoint import EntrypointType
from sqlalchemy import Engine

from toxiguard.errors import RegistryError, ToxiguardError, require_extra
from toxiguard.models import ToxicityModel
from toxiguard.monitoring.job import run_monitoring
from toxiguard.monitoring.summary import prediction_log_summary
from toxiguard.orchestration.retraining import start_retraining
from toxiguard.registry.promotion import PromotionDecision
from toxiguard.settings import Settings, get_settings
from toxiguard.training.gate import gate_step
from toxiguard.training.pipeline import TrainingResult, TrainingSteps, train_families
from toxiguard.training.steps import (
    Evaluation,
    PreparedData,
    evaluate_step,
    fit_step,
    prepare_data,
    register_model,
)
from toxiguard.training.tuned_params import resolve_params

logger = logging.getLogger(__name__)

TRAINING_FLOW = "toxiguard-training"
MONITORING_FLOW = "toxiguard-monitoring"
TUNING_FLOW = "toxiguard-tuning"
TRAINING_DEPLOYMENT = "training"
MONITORING_DEPLOYMENT = "monitoring"
TUNING_DEPLOYMENT = "tuning"
#: Full deployment names, as `prefect deployment run` and `run_deployment` take them.
TRAINING_DEPLOYMENT_NAME = f"{TRAINING_FLOW}/{TRAINING_DEPLOYMENT}"
MONITORING_DEPLOYMENT_NAME = f"{MONITORING_FLOW}/{MONITORING_DEPLOYMENT}"
TUNING_DEPLOYMENT_NAME = f"{TUNING_FLOW}/{TUNING_DEPLOYMENT}"
TRAINING_ARTIFACT_KEY = "toxiguard-training"
REGISTRY_RETRIES = 2
REGISTRY_RETRY_DELAY_S = 5.0


def retry_unless_user_error(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Return True when a failed task is worth retrying: anything but a user's mistake.

    A `RegistryError` (MLflow unreachable or refusing) and unexpected errors are retried; any
    other `ToxiguardError` (bad data, unknown model) fails at once, its message intact.
    """
    error = state.result(raise_on_failure=False)
    return isinstance(error, RegistryError) or not isinstance(error, ToxiguardError)


@task(
    name="validate-and-split",
    task_run_name="validate-and-split",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def prepare_task(data: str, settings: Settings) -> PreparedData:
    """Return the validated, split dataset (a DataValidationError fails the flow at once)."""
    return prepare_data(data, settings)


@task(name="fit", task_run_name="fit-{family}", cache_policy=NO_CACHE, persist_result=False)
def fit_task(
    family: str,
    prepared: PreparedData,
    params: Mapping[str, Any] | None,
    fitted: Mapping[str, ToxicityModel],
    settings: Settings,
) -> tuple[ToxicityModel, float]:
    """Return the fitted model of `family` and the seconds its fit took."""
    return fit_step(family, prepared, params, fitted, settings)


@task(
    name="evaluate", task_run_name="evaluate-{family}", cache_policy=NO_CACHE, persist_result=False
)
def evaluate_task(
    family: str, model: ToxicityModel, prepared: PreparedData, settings: Settings
) -> Evaluation:
    """Return the model's validation and test reports, with thresholds tuned on validation,
    and its audit."""
    return evaluate_step(family, model, prepared, settings)


@task(
    name="register",
    task_run_name="register-{family}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=REGISTRY_RETRIES,
    retry_delay_seconds=REGISTRY_RETRY_DELAY_S,
    retry_condition_fn=retry_unless_user_error,
)
def register_task(
    family: str,
    model: ToxicityModel,
    fit_seconds: float,
    result: Evaluation,
    prepared: PreparedData,
    settings: Settings,
    params: Mapping[str, Any] | None,
) -> tuple[str, int]:
    """Return the MLflow run id and registered version of the logged model package."""
    return register_model(family, model, fit_seconds, result, prepared, settings, params)


@task(
    name="gate-promotion",
    task_run_name="gate-{family}-v{version}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=REGISTRY_RETRIES,
    retry_delay_seconds=REGISTRY_RETRY_DELAY_S,
    retry_condition_fn=retry_unless_user_error,
)
def gate_task(
    family: str,
    model: ToxicityModel,
    version: int,
    result: Evaluation,
    prepared: PreparedData,
    settings: Settings,
) -> PromotionDecision:
    """Return the gate's decision: champion only if it beats the champion on unseen test rows
    and its audit is not worse there by more than the margins."""
    return gate_step(family, model, version, result, prepared, settings)


#: The pipeline's steps as Prefect tasks: the flow runs the pipeline's own loop with them.
TASK_STEPS = TrainingSteps(
    fit=fit_task, evaluate=evaluate_task, register=register_task, gate=gate_task
)


def training_markdown(result: TrainingResult) -> str:
    """Return the markdown report of a training run: one row per model, and the champion now."""
    lines = [
        f"# Training on `{result.source}`",
        "",
        f"Data fingerprint `{result.dataset_fingerprint[:12]}`, "
        f"split `{result.splits_fingerprint[:12]}`.",
        "",
        "| model | version | test ROC-AUC | test PR-AUC | F1 macro (tuned) | F1 micro (tuned) "
        "| fit s | MLflow run | decision |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for item in result.models:
        test = item.evaluation.test
        lines.append(
            f"| {item.family} | {item.version} | {test['mean_roc_auc']:.4f} "
            f"| {test['mean_pr_auc']:.4f} | {test['f1_macro_tuned']:.4f} "
            f"| {test['f1_micro_tuned']:.4f} | {item.fit_seconds:.1f} | `{item.run_id}` "
            f"| {'**promoted**' if item.decision.promoted else 'not promoted'}: "
            f"{item.decision.reason} |"
        )
    champion = result.champion_version
    lines += ["", f"**Champion now: version {champion}.**" if champion else "**No champion.**"]
    return "\n".join(lines)


@task(name="report", task_run_name="report", cache_policy=NO_CACHE, persist_result=False)
def report_task(result: TrainingResult) -> str:
    """Return the markdown report after publishing it as the run's Prefect artifact."""
    markdown = training_markdown(result)
    create_markdown_artifact(
        markdown=markdown,
        key=TRAINING_ARTIFACT_KEY,
        description="Every model of the run: test metrics, MLflow run, promotion decision.",
    )
    return markdown


def training_summary(result: TrainingResult) -> dict[str, Any]:
    """Return a JSON-ready summary of a training run (what the flow returns)."""
    return {
        "source": result.source,
        "dataset_fingerprint": result.dataset_fingerprint,
        "splits_fingerprint": result.splits_fingerprint,
        "champion_version": result.champion_version,
        "models": [
            {
                "family": item.family,
                "version": item.version,
                "run_id": item.run_id,
                "fit_seconds": item.fit_seconds,
                "test_mean_roc_auc": item.evaluation.test_mean_roc_auc,
                "promoted": item.decision.promoted,
                "reason": item.decision.reason,
            }
            for item in result.models
        ],
    }


@flow(name=TRAINING_FLOW, persist_result=False)
def training_flow(
    data: str | None = None,
    models: list[str] | None = None,
    seed: int | None = None,
    params: dict[str, dict[str, Any]] | str | None = None,
) -> dict[str, Any]:
    """Validate and split `data`, then fit, evaluate, register and gate each model in turn.

    Returns the summary of every model; the same table is published as a markdown artifact.

    Args:
        data: Labelled training file (Kaggle train.csv, .zip/.gz or parquet); default: the
            settings' `training_data`.
        models: Model families to train, in order (e.g. tfidf-lr, nbsvm, tfidf-svm,
            complement-nb, blend); default: the settings' `training_models`.
        seed: Seed for the split and the models; default: the settings' seed.
        params: Hyperparameters per family, e.g. {"tfidf-lr": {"C": 4.0}}; or "best" (each
            family's latest tuning run), "default", or a JSON file's path; default: the
            settings' `training_params`.
    """
    settings = get_settings()
    if seed is not None:
        settings = settings.model_copy(update={"seed": seed})
    families = list(models or settings.training_models)
    resolved, notes = resolve_params(
        settings.training_params if params is None else params, families, settings
    )
    for note in notes:
        logger.info("%s", note)
    prepared = prepare_task(str(data or settings.training_data), settings)
    result = train_families(prepared, settings, families, resolved, TASK_STEPS)
    report_task(result)
    return training_summary(result)


@task(
    name="summarise-prediction-log",
    task_run_name="summarise-prediction-log",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def log_summary_task(settings: Settings, window_hours: float) -> dict[str, Any]:
    """Return the prediction log's summary (traffic, versions, flagged rates) for the window."""
    return prediction_log_summary(settings, window_hours)


@task(
    name="drift-job",
    task_run_name="drift-job",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=REGISTRY_RETRIES,
    retry_delay_seconds=REGISTRY_RETRY_DELAY_S,
    retry_condition_fn=retry_unless_user_error,
)
def drift_task(settings: Settings, window_hours: float) -> dict[str, Any]:
    """Return the monitoring run: drift vs. the reference, live quality, alerts, retraining."""
    window = settings.model_copy(update={"monitoring_window_hours": window_hours})
    return run_monitoring(window, retrainer=retrain).to_dict()


def retrain(settings: Settings, engine: Engine, reason: str) -> dict[str, Any]:
    """Start retraining (the trigger the monitoring job calls); return what was started."""
    return start_retraining(
        settings, engine, reason, deployment=TRAINING_DEPLOYMENT_NAME, training_flow=training_flow
    )


@flow(name=MONITORING_FLOW, persist_result=False)
def monitoring_flow(window_hours: float | None = None) -> dict[str, Any]:
    """Summarise the prediction log's window and run the drift job on it; return both.

    Args:
        window_hours: How far back to look in the prediction log (default: settings).
    """
    settings = get_settings()
    hours = window_hours if window_hours is not None else settings.monitoring_window_hours
    summary: dict[str, Any] = log_summary_task(settings, hours)
    summary["drift"] = drift_task(settings, hours)
    return summary


@task(name="tune", task_run_name="tune-{family}", cache_policy=NO_CACHE, persist_result=False)
def tune_task(
    family: str, prepared: PreparedData, settings: Settings, trials: int, train_rows: int | None
) -> dict[str, Any]:
    """Return the summary of a family's search (`training.tuning.tune_family`)."""
    require_extra("optuna", "tuning", "the tuning flow")
    from toxiguard.training.tuning import tune_family  # noqa: PLC0415 (optuna: the tuning extra)

    result = tune_family(family, prepared, settings, trials=trials, train_rows=train_rows)
    return {
        "family": family,
        "run_id": result.run_id,
        "best_params": result.best_params,
        "best_val_mean_roc_auc": result.best_value,
        "default_val_mean_roc_auc": result.default_value,
        "trials": len(result.trials),
        "pruned": result.pruned,
    }


@flow(name=TUNING_FLOW, persist_result=False)
def tuning_flow(
    data: str | None = None,
    family: str = "nbsvm",
    trials: int = 20,
    train_rows: int | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Search a family's hyperparameters on the validation split; record the best on MLflow.

    The training flow (params="best") and `toxiguard train --params best` then use them.

    Args:
        data: Labelled training file; default: the settings' `training_data`.
        family: Model family to tune (tfidf-lr, nbsvm, tfidf-svm, complement-nb, transformer).
        trials: Trials to run; the first is the family's defaults.
        train_rows: Fit each trial on at most this many training rows (faster, rougher).
        seed: Seed for the split and the sampler; default: the settings' seed.
    """
    settings = get_settings()
    if seed is not None:
        settings = settings.model_copy(update={"seed": seed})
    prepared = prepare_task(str(data or settings.training_data), settings)
    summary: dict[str, Any] = tune_task(family, prepared, settings, trials, train_rows)
    return summary


def build_deployments(settings: Settings) -> list[RunnerDeployment]:
    """Return the training, monitoring and tuning deployments, scheduled and parametrised by
    settings (tuning has no schedule: it runs when started)."""
    training_deployment = training_flow.to_deployment(
        name=TRAINING_DEPLOYMENT,
        cron=settings.training_cron,
        parameters={
            "data": str(Path(settings.training_data).expanduser().resolve()),
            "models": list(settings.training_models),
            "params": settings.training_params,
        },
        description="Validate, split, fit, evaluate, register and gate each model family.",
        tags=["toxiguard", "training"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    monitoring_deployment = monitoring_flow.to_deployment(
        name=MONITORING_DEPLOYMENT,
        cron=settings.monitoring_cron,
        description="Check the served model's recent traffic (the monitoring job).",
        tags=["toxiguard", "monitoring"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    tuning_deployment = tuning_flow.to_deployment(
        name=TUNING_DEPLOYMENT,
        parameters={"data": str(Path(settings.training_data).expanduser().resolve())},
        description="Search one model family's hyperparameters; training with params='best' "
        "uses the result.",
        tags=["toxiguard", "tuning"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    deployments = [training_deployment, monitoring_deployment, tuning_deployment]
    if not all(isinstance(item, RunnerDeployment) for item in deployments):
        raise TypeError("to_deployment returned a coroutine: call build_deployments outside async")
    return cast(list[RunnerDeployment], deployments)


def serve_flows(settings: Settings) -> None:
    """Serve every deployment until interrupted (runs started from the UI or API run here)."""
    deployments = build_deployments(settings)
    for deployment in deployments:
        logger.info(
            "serving %s/%s, schedule: %s",
            deployment.flow_name,
            deployment.name,
            ", ".join(str(s.schedule) for s in deployment.schedules or []) or "none",
        )
    # Schedules stay active while the runner is down (a restart picks up late runs).
    serve(*deployments, print_starting_message=False, pause_on_shutdown=False)


__all__ = [
    "MONITORING_DEPLOYMENT_NAME",
    "TRAINING_ARTIFACT_KEY",
    "TRAINING_DEPLOYMENT_NAME",
    "TUNING_DEPLOYMENT_NAME",
    "build_deployments",
    "monitoring_flow",
    "retry_unless_user_error",
    "serve_flows",
    "training_flow",
    "training_markdown",
    "training_summary",
    "tuning_flow",
]
