"""Fair-sharing limits: token buckets, the per-request size, back-off after wrong API keys."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from typer.testing import CliRunner

from toxiguard.serving.api import check_exposure
from toxiguard.serving.limits import (
    CLIENT_STATE,
    MIN_REQUEST_COST,
    KeyBackoff,
    LimitExceededError,
    RequestLimits,
    TokenBuckets,
)
from toxiguard.settings import Settings


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request_from(address: str = "10.0.0.7", client: str | None = None) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/v1/predict",
        "headers": [],
        "client": (address, 5000),
        "state": {},
    }
    request = Request(scope)
    if client is not None:
        setattr(request.state, CLIENT_STATE, client)
    return request


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_minute=600, burst=100, clock=clock)  # 10 a second
    assert buckets.take("a", 60) == 0 and buckets.take("a", 40) == 0
    assert buckets.take("a", 20) == pytest.approx(2.0)  # 20 tokens at 10 a second
    assert buckets.take("b", 100) == 0  # each client has its own bucket
    clock.now += 1.0
    assert buckets.take("a", 20) == pytest.approx(1.0)  # refused: nothing was taken
    clock.now += 1.0
    assert buckets.take("a", 20) == 0
    clock.now += 3600
    assert buckets.take("a", 250) == 0  # over the burst: waits for a full bucket, then passes
    assert buckets.take("a", 250) == pytest.approx(10.0)


def test_request_limits_refuse_a_big_request_with_413_and_a_fast_client_with_429() -> None:
    clock = Clock()
    settings = Settings(
        max_request_chars=5_000,
        rate_limit_chars_per_minute=60_000,
        rate_limit_burst_chars=10_000,
    )
    limits = RequestLimits(settings, clock=clock)
    with pytest.raises(HTTPException) as too_big:
        limits.admit(request_from(), ["x" * 3_000, "y" * 2_001])
    assert too_big.value.status_code == 413
    assert "5,001 characters" in too_big.value.detail and "5,000" in too_big.value.detail
    for _ in range(10):  # each costs at least MIN_REQUEST_COST, so 10 fill the burst of 10,000
        limits.admit(request_from(client="key-1"), ["hi"])
    with pytest.raises(LimitExceededError) as limited:
        limits.admit(request_from(client="key-1"), ["hi"])
    assert limited.value.status_code == 429
    assert limited.value.headers == {"Retry-After": str(MIN_REQUEST_COST * 60 // 60_000)}
    assert "60,000 characters per minute" in limited.value.detail
    assert "API key" in limited.value.detail
    assert limited.value.details[0]["limit"] == "rate_limit_chars_per_minute"
    limits.admit(request_from(client="key-2"), ["hi"])  # another key is not held back
    limits.admit(request_from("10.0.0.8"), ["hi"])  # nor is an address without a key


def test_rate_limit_off_by_default() -> None:
    limits = RequestLimits(Settings())
    assert limits.buckets is None
    for _ in range(1000):
        limits.admit(request_from(), ["x" * 1000])


def test_wrong_keys_lock_an_address_out_for_longer_each_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    backoff = KeyBackoff(3, base_s=1, cap_s=8, clock=clock)
    with caplog.at_level(logging.WARNING, logger="toxiguard.serving.limits"):
        assert [backoff.failed("a") for _ in range(2)] == [0, 0]
        assert backoff.refusal("a") is None
        assert backoff.failed("a") == 1  # the third wrong key in a row
        refusal = backoff.refusal("a")
        assert refusal is not None and refusal.headers == {"Retry-After": "1"}
        assert backoff.refusal("b") is None  # other addresses are not affected
        clock.now += 1.0
        assert backoff.refusal("a") is None
        assert [backoff.failed("a") for _ in range(5)] == [2, 4, 8, 8, 8]  # doubling to the cap
    assert len(caplog.records) == 6
    assert caplog.records[0].getMessage() == (
        "client a locked out for 1 s after 3 wrong API keys in a row"
    )
    backoff.succeeded("a")  # a right key starts the count again
    assert backoff.refusal("a") is None and backoff.failed("a") == 0


def test_wrong_keys_are_forgotten_after_a_quiet_while() -> None:
    clock = Clock()
    backoff = KeyBackoff(2, forget_s=60, clock=clock)
    backoff.failed("a")
    clock.now += 61
    assert backoff.failed("a") == 0  # a first wrong key again, not the second


def test_serving_beyond_loopback_without_keys_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="toxiguard.serving.api"):
        for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
            check_exposure(Settings(host=host))
        assert not caplog.records
        check_exposure(Settings(host="0.0.0.0", api_keys="k"))
        assert not caplog.records
        check_exposure(Settings(host="0.0.0.0"))
    (record,) = caplog.records
    assert "serving on 0.0.0.0 without API keys" in record.getMessage()


def test_serve_with_require_keys_and_no_keys_refuses_before_loading_anything() -> None:
    from toxiguard.cli import app

    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--require-keys"])
    assert result.exit_code != 0
    assert "no API keys set and keys are required" in str(result.exception)
