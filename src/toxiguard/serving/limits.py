"""Fair sharing of the server: per-client token buckets, the per-request size limit, and back-off
after wrong API keys.

`TokenBuckets` meters what each client (an API key, or an address when no keys are set) may
score per minute, in characters: scoring time grows with the characters of the texts, not with
their number (256 texts of 10,000 characters take 3.2 s, 256 of 10 characters a few ms).
`KeyBackoff` locks out an address that keeps sending wrong API keys, for longer each time.
`RequestLimits` applies both size and rate to one request; its refusals are HTTP errors that the
API's handlers answer as JSON (Google's shape under /v1alpha1).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from toxiguard.serving.middleware import error_response
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)

#: The least a scoring request costs, in characters. One single-comment round trip (3.5 ms at
#: 284 requests/s, benchmarks/README.md) costs the server as much as about 5,000 characters of a
#: 32-comment request (0.7 us per character), so a flood of tiny requests is not free; 1,000
#: stays well below that, so small requests are not over-charged.
MIN_REQUEST_COST = 1_000
#: Clients remembered at most (least recently seen forgotten first): bounds the memory an
#: attacker cycling through addresses can make the server hold (~200 bytes each).
MAX_CLIENTS = 100_000

Clock = Callable[[], float]


class LimitExceededError(HTTPException):
    """A 429: too much in too little time; `retry_after` (whole seconds) says when to come back."""

    def __init__(self, message: str, retry_after: float, limit: dict[str, Any]) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(429, message, headers={"Retry-After": str(self.retry_after)})
        self.details = [{**limit, "retry_after_seconds": self.retry_after}]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One token bucket per client: refilled at `per_minute / 60` per second, holding `burst`.

    Hand-rolled (30 lines) rather than the `limits` package: that offers fixed and moving
    windows, not a bucket, and its in-memory moving window keeps one entry per unit of cost
    (a 640,000-character request would be 640,000 list entries). Thread-safe.
    """

    def __init__(self, per_minute: float, burst: float, *, clock: Clock = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str, cost: float) -> float:
        """Take `cost` tokens from the client's bucket; return 0, or the seconds until it holds
        them (then nothing is taken). A cost over the burst waits for a full bucket."""
        cost = min(cost, self.burst)
        with self._lock:
            now = self._clock()
            bucket = self._buckets.pop(client, None) or _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets[client] = bucket  # most recently seen last
            while len(self._buckets) > MAX_CLIENTS:
                self._buckets.popitem(last=False)
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return (cost - bucket.tokens) / self.rate


@dataclass
class _Failures:
    count: int
    last: float
    locked_until: float = 0.0


class KeyBackoff:
    """Per address: after `threshold` wrong API keys in a row, each further one locks the address
    out for `base_s` seconds, doubling up to `cap_s`; a right key, or `forget_s` seconds without a
    wrong one, starts the count again. Thread-safe (the UI's login runs in worker threads)."""

    def __init__(
        self,
        threshold: int,
        *,
        base_s: float = 1.0,
        cap_s: float = 300.0,
        forget_s: float = 900.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.base_s = base_s
        self.cap_s = cap_s
        self.forget_s = forget_s
        self._clock = clock
        self._failures: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def locked_for(self, address: str) -> float:
        """Return the seconds the address stays locked out (0: it may try a key)."""
        with self._lock:
            entry = self._failures.get(address)
            return max(0.0, entry.locked_until - self._clock()) if entry else 0.0

    def failed(self, address: str) -> float:
        """Count a wrong key from the address; return the lockout it starts, in seconds (or 0)."""
        with self._lock:
            now = self._clock()
            entry = self._failures.pop(address, None)
            if entry is None or now - entry.last > self.forget_s:
                entry = _Failures(0, now)
            entry.count += 1
            entry.last = now
            self._failures[address] = entry
            while len(self._failures) > MAX_CLIENTS:
                self._failures.popitem(last=False)
            beyond = entry.count - self.threshold
            if beyond < 0:
                return 0.0
            seconds = min(self.cap_s, self.base_s * 2.0 ** min(beyond, 32))
            entry.locked_until = now + seconds
        logger.warning(
            "client %s locked out for %.0f s after %d wrong API keys in a row",
            address,
            seconds,
            entry.count,
        )
        return seconds

    def succeeded(self, address: str) -> None:
        """Forget the address's wrong keys (a right key came from it)."""
        with self._lock:
            self._failures.pop(address, None)

    def refusal(self, address: str) -> LimitExceededError | None:
        """Return the 429 for an address that is locked out, else None."""
        seconds = self.locked_for(address)
        if seconds <= 0:
            return None
        return LimitExceededError(
            f"too many wrong API keys from this address: try again in {math.ceil(seconds)} s",
            seconds,
            {"limit": "api_key_failures", "value": self.threshold},
        )


def client_address(request: Request) -> str:
    """Return the address the request came from (the proxy's X-Forwarded-For client when
    uvicorn trusts the proxy)."""
    return request.client.host if request.client else "unknown"


def key_id(key: str) -> str:
    """Return a short, stable name of an API key that does not reveal it."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


#: Where the API-key check leaves the identity that the rate limit meters (request.state).
CLIENT_STATE = "rate_client"


class LoginBackoff:
    """ASGI middleware putting the UI's login form (POST `login_path`) under a `KeyBackoff`: its
    password is an API key, so it is guessed as the API's keys are. Gradio answers a wrong
    password with 400, a right one with 200."""

    def __init__(self, app: ASGIApp, backoff: KeyBackoff, login_path: str) -> None:
        self.app = app
        self.backoff = backoff
        self.login_path = login_path.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a locked-out address's login; count the outcome of the others."""
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"].rstrip("/") != self.login_path
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        address = client_address(request)
        refusal = self.backoff.refusal(address)
        if refusal is not None:
            response = error_response(
                429, refusal.detail, request, headers=refusal.headers, details=refusal.details
            )
            await response(scope, receive, send)
            return
        status = 0

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, observed)
        if status == 200:
            self.backoff.succeeded(address)
        elif status == 400:
            self.backoff.failed(address)


class RequestLimits:
    """The limits a scoring request passes: total characters (413), then the client's rate (429)."""

    def __init__(self, settings: Settings, *, clock: Clock = time.monotonic) -> None:
        self.max_chars = settings.max_request_chars
        self.per_minute = settings.rate_limit_chars_per_minute
        self.burst = settings.rate_limit_burst_chars or self.per_minute
        self.buckets = (
            TokenBuckets(self.per_minute, self.burst, clock=clock) if self.per_minute else None
        )

    def admit(self, request: Request, texts: Sequence[str]) -> None:
        """Return when the request may be scored; raise a 413 or a 429 HTTP error if not."""
        chars = sum(len(text) for text in texts)
        if chars > self.max_chars:
            raise HTTPException(
                413,
                f"the request's texts hold {chars:,} characters in total, over the limit of "
                f"{self.max_chars:,} per request (max_request_chars): split it into smaller "
                "requests",
            )
        if self.buckets is None:
            return
        client = getattr(request.state, CLIENT_STATE, None) or client_address(request)
        wait = self.buckets.take(client, max(chars, MIN_REQUEST_COST))
        if wait > 0:
            raise LimitExceededError(
                f"rate limit of {self.per_minute:,} characters per minute (bursts up to "
                f"{self.burst:,}) reached for this "
                f"{'API key' if client.startswith('key-') else 'address'}: retry in "
                f"{math.ceil(wait)} s",
                wait,
                {
                    "limit": "rate_limit_chars_per_minute",
                    "value": self.per_minute,
                    "burst": self.burst,
                },
            )


__all__ = [
    "CLIENT_STATE",
    "KeyBackoff",
    "LimitExceededError",
    "LoginBackoff",
    "RequestLimits",
    "TokenBuckets",
    "client_address",
    "key_id",
]
