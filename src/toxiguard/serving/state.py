"""What a running server holds (`ServingState`) and how it is built: the API and the UI share it.

`build_state` loads the champion first when there is one. Without one (and without a local
copy) the server starts anyway and waits for it: predictions raise `NoChampionError` (503 in
the API) until the poller loads the first champion. A damaged local copy fails start-up.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

from toxiguard.monitoring.prediction_log import PredictionBatch, PredictionLog
from toxiguard.serving.batching import Inference, MicroBatcher, ThreadPoolInference
from toxiguard.serving.local_copy import PredictionResult
from toxiguard.serving.metrics import ServingMetrics
from toxiguard.serving.predictor import Predictor
from toxiguard.settings import Settings

#: Requests remembered in memory; older ones are looked up in the prediction log. The window
#: covers the rows the log has not written yet (about 200 bytes a request: ~20 MB at most).
RECENT_REQUESTS: Final = 100_000


class RecentRequests:
    """The latest requests this server answered and how many comments each scored."""

    def __init__(self, capacity: int = RECENT_REQUESTS) -> None:
        self.capacity = capacity
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, request_id: str, size: int) -> None:
        """Remember that `request_id` scored comments 0 to size - 1 (the largest size wins)."""
        with self._lock:
            self._sizes[request_id] = max(size, self._sizes.get(request_id, 0))
            self._sizes.move_to_end(request_id)
            while len(self._sizes) > self.capacity:
                self._sizes.popitem(last=False)

    def size(self, request_id: str) -> int | None:
        """Return how many comments the request scored, or None if it is not remembered."""
        with self._lock:
            return self._sizes.get(request_id)


@dataclass
class ServingState:
    """Everything a running server holds: settings, model, inference, prediction log, metrics."""

    settings: Settings
    predictor: Predictor
    inference: Inference
    log: PredictionLog | None
    metrics: ServingMetrics
    recent: RecentRequests = field(default_factory=RecentRequests)

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
        self.recent.add(request_id, first_index + len(texts))
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
    """Return the server state with the champion loaded, or waiting for the first one when the
    registry has none yet; raise ModelNotFoundError when a local copy exists but is damaged."""
    predictor = Predictor(settings)
    predictor.load_or_wait()
    log = PredictionLog.from_settings(settings) if prediction_log else None
    metrics = ServingMetrics()
    inference: Inference
    if settings.microbatch:
        inference = MicroBatcher(
            predictor.predict,
            max_texts=settings.microbatch_max_texts,
            max_chars=settings.microbatch_max_chars,
            wait_s=settings.microbatch_wait_ms / 1000,
            on_batch=metrics.observe_batch,
        )
    else:
        inference = ThreadPoolInference(predictor.predict, workers=2)
    state = ServingState(settings, predictor, inference, log, metrics)
    metrics.watch(state.status)
    return state


__all__ = ["RecentRequests", "ServingState", "build_state"]
