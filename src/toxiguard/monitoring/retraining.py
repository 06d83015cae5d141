"""Retraining started by a drift alert: the training flow on the training data plus feedback.

When a Prefect server is configured and serves the training deployment, a run of that
deployment is created (and returns at once); otherwise the training flow runs in this process
(on Prefect's temporary server when none is configured). Either way the new versions reach
`champion` only through the flow's gated promotion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Engine

from toxiguard.errors import ToxiguardError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainingData:
    """The file the retraining run trains on, and what went into it."""

    path: Path
    original_rows: int
    feedback_rows: int
    feedback_without_text: int


def build_training_data(
    settings: Settings, engine: Engine, data: str | Path | None = None
) -> RetrainingData:
    """Return a parquet file of the original training data plus the labelled feedback comments.

    Feedback whose prediction was logged without its text (privacy mode) cannot be used and is
    counted. Comments already in the original data are not added twice.
    """
    from toxiguard import data as data_module
    from toxiguard.monitoring.feedback import feedback_training_rows

    source = Path(data or settings.training_data).expanduser()
    original = data_module.load_dataset(source).frame
    extra, without_text = feedback_training_rows(engine)
    extra = extra[extra[TEXT_COLUMN].str.strip() != ""]
    extra = extra[~extra[TEXT_COLUMN].isin(set(original[TEXT_COLUMN]))]
    combined = pd.concat([original, extra.astype(original.dtypes.to_dict())], ignore_index=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    folder = settings.monitoring_dir / "retraining" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.parquet"
    combined.loc[:, ["id", TEXT_COLUMN, *LABELS]].to_parquet(path, index=False)
    logger.info(
        "retraining data: %d original rows + %d feedback rows (%d feedback rows had no text)",
        len(original),
        len(extra),
        without_text,
    )
    return RetrainingData(path, len(original), len(extra), without_text)


def _served_deployment(settings: Settings) -> bool:
    """Return True when a Prefect server is configured and knows the training deployment."""
    if not settings.prefect_api_url:
        return False
    from prefect.client.orchestration import get_client

    from toxiguard.flows import TRAINING_DEPLOYMENT_NAME

    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(TRAINING_DEPLOYMENT_NAME)
    except Exception as error:  # any failure means: no served deployment to use
        logger.info("training deployment not available (%s): training in process", error)
        return False
    return True


def start_retraining(
    settings: Settings, engine: Engine, reason: str, data: str | Path | None = None
) -> dict[str, Any]:
    """Start the training flow on the training data plus feedback; return what was started.

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
        if _served_deployment(settings):
            from prefect.deployments import run_deployment

            from toxiguard.flows import TRAINING_DEPLOYMENT_NAME

            flow_run: FlowRun = run_deployment(  # type: ignore[assignment]
                TRAINING_DEPLOYMENT_NAME,
                parameters=parameters,
                timeout=0,
                tags=["retraining", "drift"],
                as_subflow=False,
            )
            started.update(mode="deployment", flow_run_id=str(flow_run.id))
            logger.info("retraining: started deployment run %s", flow_run.id)
            return started
        from toxiguard.flows import training_flow

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


__all__ = ["RetrainingData", "build_training_data", "start_retraining"]
