"""What a running server holds (`ServingState`) and how it is built: the API and the UI share it.

`build_state` loads the model first, so that `toxiguard serve` fails fast with a clear message
when there is none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toxiguard.monitoring.prediction_log import PredictionBatch, PredictionLog
from toxiguard.serving.batching import Inference, MicroBatcher, ThreadPoolInference
from toxiguard.serving.metrics import ServingMetrics
from toxiguard.serving.predictor import PredictionResult, Predictor
from toxiguard.settings import Settings


@dataclass
class ServingState:
    """Everything a running server holds: settings, model, inference, prediction log, metrics."""

    settings: Settings
    predictor: Predictor
    inference: Inference
    log: PredictionLog | None
    metrics: ServingMetrics

    def status(self) -> dict[str, Any]:
        """Return model, registry and prediction-log state, JSON-ready."""
        status = self.predictor.status()
        status["prediction_log"] = self.log.status().as_dict() if self.log else None
        return status

    def record(
        self,
        request_id: str,
        source: str,
        texts: list[str],
        result: PredictionResult,
        first_index: int = 0,
        *,
        store_texts: bool = True,
    ) -> None:
        """Log predictions (off the request path) and count them in the metrics."""
        self.metrics.observe_predictions(result.flags, source)
        if self.log is None:
            return
        self.log.record(
            PredictionBatch(
                request_id=request_id,
                source=source,
                texts=texts,
                probabilities=result.probabilities,
                flags=result.flags,
                model_name=result.model.name,
                model_version=result.model.version,
                model_family=result.model.family,
                first_index=first_index,
                store_texts=store_texts,
            )
        )


def build_state(settings: Settings, *, prediction_log: bool = True) -> ServingState:
    """Return the server state with the model loaded; raise ModelNotFoundError if there is none."""
    predictor = Predictor(settings)
    predictor.load()
    log = PredictionLog.from_settings(settings) if prediction_log else None
    metrics = ServingMetrics()
    inference: Inference
    if settings.microbatch:
        inference = MicroBatcher(
            predictor.predict,
            max_texts=settings.microbatch_max_texts,
            wait_s=settings.microbatch_wait_ms / 1000,
            on_batch=metrics.observe_batch,
        )
    else:
        inference = ThreadPoolInference(predictor.predict, workers=2)
    state = ServingState(settings, predictor, inference, log, metrics)
    metrics.watch(state.status)
    return state


__all__ = ["ServingState", "build_state"]
