"""Traffic simulation: replay real comments to a local API, with or without a shift.

For demonstrations and tests of drift detection. Loopback only (the target must resolve to
127.0.0.0/8 or ::1), bounded in count and in time. Shifts:

- `none`: a random sample of the file;
- `longer` / `shorter`: only comments at least as long as / shorter than the file's median;
- `more-toxic`: 80% of comments with at least one positive label (needs the label columns);
- `caps`: a random sample written in capitals.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlparse

import httpx
import numpy as np
import pandas as pd

from toxiguard.data.readers import read_comments
from toxiguard.errors import ToxiguardError
from toxiguard.labels import LABELS, TEXT_COLUMN

logger = logging.getLogger(__name__)

SHIFTS: Final = ("none", "longer", "shorter", "more-toxic", "caps")
TOXIC_SHARE: Final = 0.8


@dataclass
class SimulationResult:
    """What a simulation sent and how the API answered."""

    shift: str
    comments: int = 0
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    stopped_by_time: bool = False
    request_ids: list[str] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)


def check_loopback(url: str) -> str:
    """Return the URL without a trailing slash, or raise if its host is not a loopback address."""
    parsed = urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise ToxiguardError(f"not an http(s) URL: {url!r}")
    try:
        addresses = {
            str(info[4][0]) for info in socket.getaddrinfo(parsed.hostname, parsed.port or 80)
        }
    except socket.gaierror as error:
        raise ToxiguardError(f"cannot resolve {parsed.hostname!r}: {error}") from error
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise ToxiguardError(
            f"simulate only sends to loopback addresses; {parsed.hostname!r} resolves to "
            f"{', '.join(sorted(addresses))}"
        )
    return url.rstrip("/")


def _any_positive(frame: pd.DataFrame, path: Path) -> np.ndarray:
    """Return a boolean array: the row has at least one positive label."""
    missing = [label for label in LABELS if label not in frame.columns]
    if missing:
        raise ToxiguardError(
            f"{path}: shift 'more-toxic' needs the label columns; missing {missing}"
        )
    labels = frame.loc[:, list(LABELS)].apply(pd.to_numeric, errors="coerce").fillna(0)
    return np.asarray(labels.to_numpy().max(axis=1) > 0)


def choose_rows(frame: pd.DataFrame, shift: str, n: int, seed: int, path: Path) -> np.ndarray:
    """Return the positions of `n` rows of the frame drawn (seeded) according to the shift."""
    if shift not in SHIFTS:
        raise ToxiguardError(f"unknown shift {shift!r} (known: {', '.join(SHIFTS)})")
    rng = np.random.default_rng(seed)
    lengths = frame[TEXT_COLUMN].astype(str).str.len().to_numpy()
    median = float(np.median(lengths)) if len(lengths) else 0.0
    if shift == "longer":
        pools = [np.flatnonzero(lengths >= median)]
    elif shift == "shorter":
        pools = [np.flatnonzero(lengths < median)]
    elif shift == "more-toxic":
        toxic = _any_positive(frame, path)
        pools = [np.flatnonzero(toxic), np.flatnonzero(~toxic)]
    else:
        pools = [np.arange(len(frame))]
    if any(len(pool) == 0 for pool in pools):
        raise ToxiguardError(f"{path}: no comments to draw for shift {shift!r}")
    if shift != "more-toxic":
        return np.asarray(rng.choice(pools[0], n, replace=n > len(pools[0])))
    k = round(n * TOXIC_SHARE)
    chosen = np.concatenate(
        [
            rng.choice(pools[0], k, replace=k > len(pools[0])),
            rng.choice(pools[1], n - k, replace=n - k > len(pools[1])),
        ]
    )
    rng.shuffle(chosen)
    return chosen


def choose_comments(frame: pd.DataFrame, shift: str, n: int, seed: int, path: Path) -> list[str]:
    """Return `n` comments drawn (seeded) according to the shift (caps: upper-cased)."""
    texts = frame[TEXT_COLUMN].astype(str).to_numpy()
    picked = [str(texts[i]) for i in choose_rows(frame, shift, n, seed, path)]
    return [text.upper() for text in picked] if shift == "caps" else picked


def _request_id(response: httpx.Response) -> str | None:
    """Return the request id of a predict response, None if the body is not one."""
    try:
        return str(response.json()["request_id"])
    except (ValueError, KeyError, TypeError):
        return None


def simulate(
    url: str,
    data: str | Path,
    *,
    shift: str = "none",
    n: int = 500,
    batch_size: int = 8,
    seed: int = 0,
    max_requests: int = 20_000,
    max_seconds: float = 600.0,
    max_chars: int = 10_000,
    api_key: str | None = None,
    timeout_s: float = 30.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> SimulationResult:
    """Send `n` comments of `data` (shifted) to the API's /v1/predict; return what happened.

    At most `max_requests` comments and `max_seconds` seconds; comments are cut to `max_chars`.
    """
    base = check_loopback(url)
    if n <= 0:
        raise ToxiguardError("--n must be positive")
    if n > max_requests:
        raise ToxiguardError(f"--n {n} is above the limit of {max_requests} comments per run")
    path = Path(data)
    comments = [c[:max_chars] for c in choose_comments(read_comments(path), shift, n, seed, path)]
    result = SimulationResult(shift=shift)
    headers = {"X-API-Key": api_key} if api_key else {}
    started = time.monotonic()
    with httpx.Client(base_url=base, timeout=timeout_s, headers=headers) as client:
        for first in range(0, len(comments), batch_size):
            if time.monotonic() - started > max_seconds:
                result.stopped_by_time = True
                logger.warning("simulation stopped after %.0f s", max_seconds)
                break
            batch = comments[first : first + batch_size]
            result.requests += 1
            try:
                response = client.post("/v1/predict", json={"texts": batch})
            except httpx.HTTPError as error:
                result.errors += 1
                result.error_samples = [*result.error_samples, str(error)][:5]
                continue
            request_id = _request_id(response) if response.is_success else None
            if request_id is not None:
                result.comments += len(batch)
                result.request_ids.append(request_id)
            else:
                result.errors += 1
                failure = f"HTTP {response.status_code}: {response.text[:200]}"
                result.error_samples = [*result.error_samples, failure][:5]
            if on_progress is not None:
                on_progress(min(first + batch_size, len(comments)), len(comments))
    result.seconds = time.monotonic() - started
    return result


__all__ = [
    "SHIFTS",
    "SimulationResult",
    "check_loopback",
    "choose_comments",
    "choose_rows",
    "simulate",
]
