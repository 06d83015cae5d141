"""Start retraining: a run of the served training deployment, or the training flow in process.

The monitoring job decides *that* retraining is due and calls the trigger it is given;
`toxiguard.orchestration.flows.retrain` is that trigger, built from `start_retraining` with the
training flow and its deployment's name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from sqlalchemy import Engine

from toxiguard.errors import ToxiguardError
from toxiguard.monitoring.retraining import build_training_data
from toxiguard.settings import Settings

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

logger = logging.getLogger(__name__)

#: The training flow called in process: (data, models) -> its summary.
TrainingFlow = Callable[..., dict[str, Any]]


def _served_deployment(settings: Settings, deployment: str) -> bool:
    """Return True when a Prefect server is configured and knows the training deployment."""
    if not settings.prefect_api_url:
        return False
    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(deployment)
    except Exception as error:  # any failure means: no served deployment to use
        logger.info("training deployment not available (%s): training in process", error)
        return False
    return True


def start_retraining(
    settings: Settings,
    engine: Engine,
    reason: str,
    *,
    deployment: str,
    training_flow: TrainingFlow,
    data: str | Path | None = None,
) -> dict[str, Any]:
    """Start training on the training data plus feedback; return what was started.

    A run of `deployment` when a Prefect server serves it, else `training_flow` in process.

    Never raises: a failure is returned as {"error": ...} so that monitoring still completes.
    """
    try:
        prepared = build_training_data(settings, engine, data)
    except ToxiguardError as error:
        logger.warning("retraining not started: %s", error)
        return {"mode": "none", "error": str(error)}
    started: dict[str, Any] = {
        "data": str(prepared.path),
        "original_rows": prepared.original_rows,
        "feedback_rows": prepared.feedback_rows,
        "reason": reason,
    }
    models = list(settings.training_models)
    parameters: dict[str, Any] = {"data": str(prepared.path), "models": models}
    try:
        if _served_deployment(settings, deployment):
            flow_run: FlowRun = run_deployment(  # type: ignore[assignment]
                deployment,
                parameters=parameters,
                timeout=0,
                tags=["retraining", "drift"],
                as_subflow=False,
            )
            started.update(mode="deployment", flow_run_id=str(flow_run.id))
            logger.info("retraining: started deployment run %s", flow_run.id)
            return started
        summary = training_flow(data=str(prepared.path), models=models)
        started.update(
            mode="in-process",
            champion_version=summary.get("champion_version"),
            versions=[model["version"] for model in summary.get("models", [])],
            promoted=[model["version"] for model in summary.get("models", []) if model["promoted"]],
        )
        logger.info("retraining finished in process: %s", started)
    except Exception as error:  # a failed retraining must not fail the monitoring run
        logger.exception("retraining failed")
        started.update(mode=started.get("mode", "failed"), error=f"{type(error).__name__}: {error}")
    return started
