"""The Prefect flows on Prefect's temporary local server, on real comments from the shared data."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import TaskRun
from prefect.states import Failed
from prefect.utilities.callables import parameter_schema

from toxiguard.errors import DataValidationError, ModelNotFoundError, RegistryError
from toxiguard.labels import LABELS
from toxiguard.orchestration.flows import (
    MONITORING_FLOW,
    TRAINING_ARTIFACT_KEY,
    TRAINING_FLOW,
    TUNING_FLOW,
    build_deployments,
    monitoring_flow,
    register_task,
    retry_unless_user_error,
    training_flow,
    tuning_flow,
)
from toxiguard.orchestration.stack import DEPLOYED_FLOWS
from toxiguard.registry.versions import list_versions
from toxiguard.settings import Settings


async def _task_runs(flow_run_id: UUID) -> list[TaskRun]:
    async with get_client() as client:
        return await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )


async def _artifacts(flow_run_id: UUID) -> list[Any]:
    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


# ---------------------------------------------------------------- fast checks of the wiring
def test_retries_skip_user_errors_but_not_registry_errors() -> None:
    def retried(error: BaseException) -> bool:
        return retry_unless_user_error(register_task, None, Failed(data=error))  # type: ignore[arg-type]

    assert not retried(DataValidationError.single("train.csv", "bad label", column="toxic"))
    assert not retried(ModelNotFoundError("no champion"))
    assert retried(RegistryError("MLflow at http://127.0.0.1:5050 is unreachable"))
    assert retried(ConnectionError("reset by peer"))


def test_deployments_take_schedules_and_parameters_from_settings(
    settings: Settings, tmp_path: Path
) -> None:
    custom = settings.model_copy(
        update={
            "training_cron": "0 3 * * 1",
            "monitoring_cron": "*/10 * * * *",
            "training_data": tmp_path / "train.csv",
            "training_models": ["complement-nb", "nbsvm"],
        }
    )
    training, monitoring, tuning = build_deployments(custom)
    assert training.name == "training" and training.flow_name == TRAINING_FLOW
    assert training.entrypoint == "toxiguard.orchestration.flows.training_flow"
    assert [s.schedule.cron for s in training.schedules] == ["0 3 * * 1"]  # type: ignore[union-attr]
    assert [s.schedule.cron for s in monitoring.schedules] == ["*/10 * * * *"]  # type: ignore[union-attr]
    assert training.parameters == {
        "data": str(tmp_path / "train.csv"),
        "models": ["complement-nb", "nbsvm"],
        "params": "default",
    }
    assert tuning.name == "tuning" and tuning.flow_name == TUNING_FLOW
    assert tuning.schedules == [] and tuning.parameters == {"data": str(tmp_path / "train.csv")}
    assert set(parameter_schema(tuning_flow).properties) == {
        "data",
        "family",
        "trials",
        "train_rows",
        "seed",
    }
    # Every flow parameter is in the schema the UI shows and edits.
    schema = parameter_schema(training_flow)
    assert set(schema.properties) == {"data", "models", "seed", "params"}
    assert schema.properties["models"]["anyOf"][0]["type"] == "array"
    # Training off by default: no schedule, still runnable by hand.
    default_training, default_monitoring, _ = build_deployments(settings)
    assert default_training.schedules == []
    assert [s.schedule.cron for s in default_monitoring.schedules] == ["0 * * * *"]  # type: ignore[union-attr]


def test_stack_health_check_names_the_flows_that_are_served() -> None:
    assert DEPLOYED_FLOWS == (TRAINING_FLOW, MONITORING_FLOW, TUNING_FLOW)


# ---------------------------------------------------------------- the flows, for real
@pytest.mark.integration
@pytest.mark.slow
def test_training_flow_registers_gates_and_reports(
    prefect_home: Path,
    sample_csv: Path,
    settings: Settings,
) -> None:
    state = training_flow(data=str(sample_csv), models=["complement-nb"], return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    [model] = summary["models"]
    assert model["family"] == "complement-nb" and model["version"] == 1 and model["promoted"]
    assert summary["champion_version"] == 1
    assert 0.5 < model["test_mean_roc_auc"] <= 1.0

    [registered] = list_versions(settings)
    assert registered["version"] == 1 and registered["run_id"] == model["run_id"]
    assert settings.champion_alias in registered["aliases"]

    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    names = sorted(run.name for run in asyncio.run(_task_runs(flow_run_id)))
    assert names == sorted(
        [
            "validate-and-split",
            "fit-complement-nb",
            "evaluate-complement-nb",
            "register-complement-nb",
            "gate-complement-nb-v1",
            "report",
        ]
    )
    [artifact] = asyncio.run(_artifacts(flow_run_id))
    assert artifact.key == TRAINING_ARTIFACT_KEY and artifact.type == "markdown"
    assert model["run_id"] in artifact.data
    assert "| complement-nb | 1 |" in artifact.data
    assert "Champion now: version 1" in artifact.data


@pytest.mark.integration
@pytest.mark.slow
def test_tuning_flow_records_best_params_that_training_with_best_uses(
    prefect_home: Path,
    sample_csv: Path,
    settings: Settings,
) -> None:
    state = tuning_flow(data=str(sample_csv), family="complement-nb", trials=3, return_state=True)
    assert state.is_completed(), state.message
    tuned = state.result()
    assert tuned["family"] == "complement-nb" and tuned["trials"] == 3
    assert tuned["best_val_mean_roc_auc"] >= tuned["default_val_mean_roc_auc"]
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    names = sorted(run.name for run in asyncio.run(_task_runs(flow_run_id)))
    assert names == ["tune-complement-nb", "validate-and-split"]

    trained = training_flow(data=str(sample_csv), models=["complement-nb"], params="best")
    [model] = trained["models"]
    logged = MlflowClient().get_run(model["run_id"]).data.params
    assert float(logged["alpha"]) == pytest.approx(tuned["best_params"]["alpha"])
    assert json.loads(logged["char_ngrams"]) == tuned["best_params"]["char_ngrams"]


@pytest.mark.integration
@pytest.mark.slow
def test_invalid_data_fails_the_flow_at_once_with_the_validation_error(
    prefect_home: Path,
    invalid_csv: Path,
    settings: Settings,
) -> None:
    state = training_flow(data=str(invalid_csv), models=["complement-nb"], return_state=True)
    assert state.is_failed()
    message = state.message or ""
    assert "DataValidationError" in message
    assert "invalid.csv" in message and "toxic" in message and "row" in message
    with pytest.raises(DataValidationError):
        state.result()
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    [validation] = asyncio.run(_task_runs(flow_run_id))  # nothing ran after it
    assert validation.name == "validate-and-split"
    assert validation.run_count == 1  # not retried
    assert list_versions(settings) == []


@pytest.mark.integration
@pytest.mark.slow
def test_monitoring_flow_summarises_the_prediction_log(
    prefect_home: Path,
    settings: Settings,
) -> None:
    from toxiguard.monitoring.prediction_log import PredictionBatch, PredictionLog

    rng = np.random.default_rng(0)
    log = PredictionLog.from_settings(settings).start()
    for request, version in enumerate([3, 3, 4]):
        probabilities = rng.random((5, len(LABELS)))
        log.record(
            PredictionBatch(
                request_id=f"r{request}",
                source="api",
                texts=[f"comment {request}-{i}" for i in range(5)],
                probabilities=probabilities,
                flags=probabilities >= 0.5,
                model_name="toxiguard",
                model_version=version,
                model_family="complement-nb",
            )
        )
    old = rng.random((2, len(LABELS)))
    log.record(
        PredictionBatch(
            request_id="old",
            source="api",
            texts=["old", "older"],
            probabilities=old,
            flags=old >= 0.5,
            model_name="toxiguard",
            model_version=2,
            model_family="complement-nb",
            created_at=datetime.now(UTC) - timedelta(hours=5),
        )
    )
    assert log.close(timeout=30)

    state = monitoring_flow(window_hours=1.0, return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["rows"] == 15 and summary["requests"] == 3
    assert summary["rows_per_version"] == {"3": 10, "4": 5}
    assert set(summary["flagged_rate"]) == set(LABELS)
    assert all(0.0 <= rate <= 1.0 for rate in summary["flagged_rate"].values())
    # the drift job ran on the same window: no registered version 4 here, so no reference
    assert summary["drift"]["status"] in {"no_reference", "insufficient_data"}
