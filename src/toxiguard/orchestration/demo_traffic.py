"""First sight of a fresh stack: demo comments sent through the API, then one monitoring run.

`toxiguard run` on the demo corpus calls `send_demo_traffic` once the stack is up, so that the
Monitoring tab (and Grafana under compose) opens on a drift run, traffic and flagged rates
instead of empty panels. The comments come from the demo corpus itself, so the run finds no
drift: it shows the machinery, not a finding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from toxiguard.errors import ToxiguardError
from toxiguard.monitoring import store
from toxiguard.monitoring.job import MonitoringOutcome, run_monitoring
from toxiguard.orchestration.simulate import SimulationResult, simulate
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)

DEMO_COMMENTS = 400  # the monitoring job needs 200 of one version (monitoring_min_rows)
READY_TIMEOUT_S = 120.0
LOGGED_TIMEOUT_S = 60.0
POLL_S = 0.5


@dataclass(frozen=True)
class DemoTraffic:
    """The comments sent and the monitoring run made on them."""

    sent: SimulationResult
    monitoring: MonitoringOutcome


def _wait(what: str, ready: Callable[[], bool], timeout_s: float) -> None:
    """Return once `ready()` is true; raise ToxiguardError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise ToxiguardError(f"{what} after {timeout_s:.0f} s")
        time.sleep(POLL_S)


def _answers_ready(api: str) -> bool:
    """Return True when the API's /ready says a model is loaded."""
    try:
        return httpx.get(f"{api}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def send_demo_traffic(
    settings: Settings,
    api: str,
    data: str | Path,
    *,
    n: int = DEMO_COMMENTS,
    on_progress: Callable[[int, int], None] | None = None,
) -> DemoTraffic:
    """Return what was sent after sending `n` comments of `data` to the API at `api`, waiting
    for the prediction log to store them, and running the monitoring job once on them."""
    _wait(f"the API at {api} was not ready", lambda: _answers_ready(api), READY_TIMEOUT_S)
    engine = store.make_engine(store.database_url(settings))
    try:
        store.upgrade_schema(engine)
        before = store.count_predictions(engine)
        sent = simulate(
            api,
            data,
            n=n,
            api_key=settings.api_key_list[0] if settings.api_key_list else None,
            on_progress=on_progress,
        )
        if not sent.comments:
            raise ToxiguardError(
                f"no demo comment was scored by {api}: {'; '.join(sent.error_samples)}"
            )
        # The API writes its log behind the responses (a spool, then the store).
        _wait(
            f"the prediction log did not store the {sent.comments} demo comments",
            lambda: store.count_predictions(engine) - before >= sent.comments,
            LOGGED_TIMEOUT_S,
        )
    finally:
        engine.dispose()
    return DemoTraffic(sent, run_monitoring(settings))
