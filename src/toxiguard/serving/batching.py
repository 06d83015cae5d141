"""Inference off the event loop, with micro-batching of concurrent requests.

`MicroBatcher` runs one inference thread. Requests queue up while it is busy; when it is free
it takes every waiting request (up to `max_texts` comments, optionally waiting `wait_s` for
more) and scores them in one call, which amortises the per-call cost of the model over many
small requests. `ThreadPoolInference` is the plain alternative: each request runs alone in a
small thread pool. Both are awaited from async code and also callable from threads (the UI).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from toxiguard.serving.predictor import PredictionResult

logger = logging.getLogger(__name__)

PredictFn = Callable[[Sequence[str]], PredictionResult]


class Inference(Protocol):
    """Runs predictions off the event loop."""

    async def predict(self, texts: Sequence[str]) -> PredictionResult:
        """Return the prediction for `texts` without blocking the event loop."""
        ...

    def predict_sync(self, texts: Sequence[str]) -> PredictionResult:
        """Return the prediction for `texts`, blocking the calling thread."""
        ...

    def start(self) -> None:
        """Start the worker(s)."""
        ...

    def stop(self) -> None:
        """Stop the worker(s) after the work already queued."""
        ...


@dataclass
class _Job:
    texts: Sequence[str]
    future: Future[PredictionResult]


class MicroBatcher:
    """One inference thread that scores all waiting requests together."""

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_texts: int = 256,
        wait_s: float = 0.0,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self._predict = predict
        self.max_texts = max_texts
        self.wait_s = wait_s
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the inference thread."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="toxiguard-inference", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread once the queued requests are answered."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def submit(self, texts: Sequence[str]) -> Future[PredictionResult]:
        """Queue texts for scoring; return a future of their result."""
        if self._thread is None:
            raise RuntimeError("the inference thread is not running")
        future: Future[PredictionResult] = Future()
        self._queue.put(_Job(texts, future))
        return future

    async def predict(self, texts: Sequence[str]) -> PredictionResult:
        """Return the prediction for `texts`, awaited without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(texts))

    def predict_sync(self, texts: Sequence[str]) -> PredictionResult:
        """Return the prediction for `texts`, blocking the calling thread."""
        return self.submit(texts).result()

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """Return the jobs of one batch starting with `first`, and whether a stop was seen."""
        jobs = [first]
        size = len(first.texts)
        deadline = time.monotonic() + self.wait_s
        while size < self.max_texts:
            try:
                remaining = deadline - time.monotonic()
                job = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            if size + len(job.texts) > self.max_texts:
                # Too big to join this batch: it starts the next one.
                self._queue.put(job)
                break
            jobs.append(job)
            size += len(job.texts)
        return jobs, False

    def _run(self) -> None:
        """Score batches until a stop marker arrives."""
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stopping = self._gather(first)
            self._score(jobs)
            if stopping:
                return

    def _score(self, jobs: list[_Job]) -> None:
        """Score the jobs in one call and hand each its share of the result."""
        texts = [text for job in jobs for text in job.texts]
        try:
            result = self._predict(texts)
        except Exception as error:
            for job in jobs:
                job.future.set_exception(error)
            return
        if self._on_batch is not None:
            self._on_batch(len(jobs), len(texts))
        start = 0
        for job in jobs:
            stop = start + len(job.texts)
            job.future.set_result(
                PredictionResult(
                    np.ascontiguousarray(result.probabilities[start:stop]),
                    np.ascontiguousarray(result.flags[start:stop]),
                    result.model,
                )
            )
            start = stop


class ThreadPoolInference:
    """Each request scored on its own in a small thread pool (micro-batching off)."""

    def __init__(self, predict: PredictFn, workers: int = 2) -> None:
        self._predict = predict
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the pool."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="toxiguard-inference")

    def stop(self) -> None:
        """Finish queued work and shut the pool down."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _submit(self, texts: Sequence[str]) -> Future[PredictionResult]:
        """Queue texts on the pool; return a future of their result."""
        if self._pool is None:
            raise RuntimeError("the inference pool is not running")
        return self._pool.submit(self._predict, texts)

    async def predict(self, texts: Sequence[str]) -> PredictionResult:
        """Return the prediction for `texts`, awaited without blocking the event loop."""
        return await asyncio.wrap_future(self._submit(texts))

    def predict_sync(self, texts: Sequence[str]) -> PredictionResult:
        """Return the prediction for `texts`, blocking the calling thread."""
        return self._submit(texts).result()
