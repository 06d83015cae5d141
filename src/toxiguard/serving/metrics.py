"""Prometheus metrics of the server: requests, latency, errors, predictions, model, log."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from toxiguard.labels import LABELS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class _StateCollector(Collector):
    """Reads the served model, the registry and the prediction log at scrape time."""

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self._state = state

    def collect(self) -> Iterable[Metric]:
        """Return gauges and counters describing the current state."""
        state = self._state()
        model = state.get("model")
        version = GaugeMetricFamily(
            "toxiguard_model_version",
            "Registered version of the served model (labels: name, family, source).",
            labels=["name", "family", "source"],
        )
        if model:
            version.add_metric(
                [str(model["name"]), str(model["family"]), str(model["source"])],
                float(model["version"] if model["version"] is not None else -1),
            )
        yield version
        yield CounterMetricFamily(
            "toxiguard_model_swaps", "Models swapped in since start.", value=state.get("swaps", 0)
        )
        reachable = state.get("registry", {}).get("reachable")
        yield GaugeMetricFamily(
            "toxiguard_registry_reachable",
            "1 if the last contact with the registry worked, 0 if not, -1 before any.",
            value=-1 if reachable is None else int(bool(reachable)),
        )
        log = state.get("prediction_log")
        if log is None:
            return
        yield GaugeMetricFamily(
            "toxiguard_prediction_log_healthy",
            "1 if the last prediction-log write worked.",
            value=int(bool(log["healthy"])),
        )
        yield GaugeMetricFamily(
            "toxiguard_prediction_log_pending_rows",
            "Predictions waiting in memory to be written to the monitoring store.",
            value=log["pending"],
        )
        for name, key, help_text in (
            ("rows_written", "written", "Predictions written to the monitoring store."),
            ("write_failures", "write_failures", "Failed writes of the log (each is retried)."),
            ("rows_dropped", "dropped", "Predictions dropped because the log buffer was full."),
            ("rows_rejected", "rejected", "Predictions the database refused; not retried."),
        ):
            yield CounterMetricFamily(f"toxiguard_prediction_log_{name}", help_text, value=log[key])


class ServingMetrics:
    """The server's metrics, in a registry of their own (so several apps can live in a process)."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # process-wide: no *_created
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "toxiguard_http_requests",
            "HTTP requests answered.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "toxiguard_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "toxiguard_http_errors",
            "HTTP requests answered with an error (kind: client or server).",
            ["endpoint", "kind"],
            registry=self.registry,
        )
        self.predictions = Counter(
            "toxiguard_predictions",
            "Comments scored.",
            ["source"],
            registry=self.registry,
        )
        self.flagged = Counter(
            "toxiguard_flagged_predictions",
            "Comments flagged, per label.",
            ["label", "source"],
            registry=self.registry,
        )
        self.batch_texts = Histogram(
            "toxiguard_inference_batch_texts",
            "Comments per call of the model.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "toxiguard_inference_batch_requests",
            "Requests answered by one call of the model (micro-batching).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )

    def watch(self, state: Callable[[], dict[str, Any]]) -> None:
        """Also export the model, registry and prediction-log state that `state()` returns."""
        self.registry.register(_StateCollector(state))

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            self.errors.labels(endpoint, "server" if status >= 500 else "client").inc()

    def observe_predictions(self, flags: npt.NDArray[np.bool_], source: str) -> None:
        """Count scored comments and the flags raised, per label."""
        self.predictions.labels(source).inc(len(flags))
        if len(flags):
            for label, count in zip(LABELS, flags.sum(axis=0), strict=True):
                if count:
                    self.flagged.labels(label, source).inc(int(count))

    def observe_batch(self, requests: int, texts: int) -> None:
        """Record the size of one inference batch."""
        self.batch_requests.observe(requests)
        self.batch_texts.observe(texts)

    def render(self) -> bytes:
        """Return every metric in the Prometheus text format."""
        return generate_latest(self.registry)
