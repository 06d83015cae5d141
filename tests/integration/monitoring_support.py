"""Helpers for the monitoring tests and benchmark: a webhook receiver, traffic, a small model.

Traffic goes through the real prediction-log code (`PredictionBatch` + `PredictionLog`), so the
monitoring job reads rows exactly as the API writes them.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.models import create_model
from toxiguard.models.package import ModelPackage
from toxiguard.models.reference import MonitoringReference, build_reference
from toxiguard.monitoring.alerts import DRIFT_RULE, evaluate_rules
from toxiguard.monitoring.drift import detect_drift
from toxiguard.monitoring.job import window_frame
from toxiguard.monitoring.prediction_log import PredictionLog
from toxiguard.monitoring.rows import PredictionBatch, batch_rows
from toxiguard.orchestration.simulate import choose_comments, choose_rows
from toxiguard.settings import Settings
from toxiguard.training.evaluation import tune_thresholds

# Small TF-IDF features: quick to fit on a few thousand comments, still a real model.
SMALL_TFIDF = {"word_max_features": 30_000, "char_max_features": 20_000, "char_ngrams": [3, 4]}


@dataclass
class WebhookReceiver:
    """A local HTTP server that records JSON posts; answers `status` (settable per test)."""

    status: int = 200
    delay_s: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@contextmanager
def webhook_receiver(status: int = 200) -> Iterator[WebhookReceiver]:
    """Run a webhook receiver on a free loopback port for the duration of the block."""
    receiver = WebhookReceiver(status=status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"null")
            receiver.received.append(body)
            if receiver.delay_s:
                threading.Event().wait(receiver.delay_s)
            self.send_response(receiver.status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if receiver.status < 400 else b"error")

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def fit_small_model(frame: pd.DataFrame, family: str = "tfidf-lr") -> ModelPackage:
    """Return a model fitted on `frame` with thresholds tuned on a held-out fifth of it."""
    cut = len(frame) * 4 // 5
    train, held = frame.iloc[:cut], frame.iloc[cut:]
    model = create_model(family, **SMALL_TFIDF)
    model.fit(train[TEXT_COLUMN].tolist(), train.loc[:, list(LABELS)].to_numpy())
    probabilities = model.predict_proba(held[TEXT_COLUMN].tolist())
    return ModelPackage(model, tune_thresholds(held.loc[:, list(LABELS)].to_numpy(), probabilities))


def log_traffic(
    engine: Engine,
    model: ModelPackage,
    texts: Sequence[str],
    *,
    version: int,
    created_at: datetime,
    log_texts: bool = True,
    batch_size: int = 16,
    source: str = "api",
) -> list[str]:
    """Score the texts and write them to the prediction log as API requests; return request ids."""
    log = PredictionLog(engine, log_texts=log_texts, batch_size=2000, flush_seconds=0.05).start()
    request_ids = []
    try:
        for first in range(0, len(texts), batch_size):
            chunk = list(texts[first : first + batch_size])
            probabilities = np.asarray(model.predict_proba(chunk), dtype=np.float64)
            request_id = uuid.uuid4().hex
            log.record(
                PredictionBatch(
                    request_id=request_id,
                    source=source,
                    texts=chunk,
                    probabilities=probabilities,
                    flags=probabilities >= model.thresholds,
                    model_name="toxiguard",
                    model_version=version,
                    model_family=model.family,
                    created_at=created_at,
                )
            )
            request_ids.append(request_id)
        assert log.flush(timeout=120), log.status()
    finally:
        log.close(timeout=30)
    return request_ids


def write_csv(frame: pd.DataFrame, path: Any) -> Any:
    """Return `path` after writing the labelled frame there as CSV."""
    frame.loc[:, ["id", TEXT_COLUMN, *LABELS]].to_csv(path, index=False)
    return path


@dataclass(frozen=True)
class DetectionSetup:
    """A model with its reference, and a pool of other real comments scored as the log would."""

    model: ModelPackage
    reference: MonitoringReference
    pool: pd.DataFrame
    pool_rows: pd.DataFrame


def detection_setup(
    frame: pd.DataFrame, train_rows: int = 12_000, reference_rows: int = 3_000, seed: int = 0
) -> DetectionSetup:
    """Return a model fitted on part of `frame`, its reference from held-out comments, the rest.

    The three parts are disjoint; the pool is what simulated traffic is drawn from.
    """
    shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    train = shuffled.iloc[:train_rows]
    validation = shuffled.iloc[train_rows : train_rows + reference_rows]
    pool = shuffled.iloc[train_rows + reference_rows :].reset_index(drop=True)
    model = fit_small_model(train)
    reference = build_reference(
        validation[TEXT_COLUMN].tolist(),
        model.predict_proba(validation[TEXT_COLUMN].tolist()),
        model.thresholds,
        train[TEXT_COLUMN].tolist(),
        rows=reference_rows,
        seed=seed,
    )
    return DetectionSetup(model, reference, pool, scored_rows(model, pool[TEXT_COLUMN].tolist()))


def scored_rows(model: ModelPackage, texts: Sequence[str]) -> pd.DataFrame:
    """Return the prediction-log rows the API would write for these texts (text logged)."""
    probabilities = np.asarray(model.predict_proba(list(texts)), dtype=np.float64)
    batch = PredictionBatch(
        request_id="window",
        source="api",
        texts=list(texts),
        probabilities=probabilities,
        flags=probabilities >= model.thresholds,
        model_name="toxiguard",
        model_version=1,
        model_family=model.family,
    )
    return pd.DataFrame(batch_rows(batch, log_texts=True))


def window_of(setup: DetectionSetup, shift: str, n: int, seed: int) -> pd.DataFrame:
    """Return the prediction-log rows of a window of `n` comments drawn with the shift."""
    if shift == "caps":  # the texts change, so they are scored again
        texts = choose_comments(setup.pool, shift, n, seed, Path("shared_train"))
        return scored_rows(setup.model, texts)
    rows = choose_rows(setup.pool, shift, n, seed, Path("shared_train"))
    return setup.pool_rows.iloc[rows].reset_index(drop=True)


def drift_alert_count(
    setup: DetectionSetup,
    shift: str,
    settings: Settings,
    *,
    n: int = 500,
    seeds: Sequence[int] = range(20),
) -> tuple[int, list[float]]:
    """Return in how many seeded windows the rules raise a drift alert, and each drift_score."""
    alerts = 0
    scores: list[float] = []
    for seed in seeds:
        current = window_frame(window_of(setup, shift, n, seed), setup.reference.vocabulary)
        result = detect_drift(
            setup.reference.frame,
            current,
            method=settings.drift_method,
            threshold=settings.drift_threshold,
            min_rows=settings.monitoring_min_rows,
            text_drift=settings.text_drift,
            seed=seed,
        )
        scores.append(float(result.drift_score or 0.0))
        fired = evaluate_rules(result, settings, 1)
        alerts += any(alert.rule == DRIFT_RULE for alert in fired)
    return alerts, scores
