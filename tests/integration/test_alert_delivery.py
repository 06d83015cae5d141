"""Webhook delivery of alerts to a real local HTTP server: retries, refusals, timeouts."""

from __future__ import annotations

import time

import pytest

from tests.integration.monitoring_support import webhook_receiver
from toxiguard.monitoring.alerts import Delivery, deliver

pytestmark = pytest.mark.integration


def test_delivery_to_a_local_server() -> None:
    with webhook_receiver() as receiver:
        outcome = deliver(receiver.url, {"text": "hello"}, timeout_s=5, retries=2)
    assert outcome == Delivery(True, 1)
    assert receiver.received == [{"text": "hello"}]


def test_server_errors_are_retried_then_given_up() -> None:
    with webhook_receiver(status=503) as receiver:
        outcome = deliver(receiver.url, {"text": "x"}, timeout_s=5, retries=2)
    assert not outcome.delivered and outcome.attempts == 3 and len(receiver.received) == 3
    assert outcome.error is not None and "503" in outcome.error


def test_client_errors_are_not_retried() -> None:
    with webhook_receiver(status=400) as receiver:
        outcome = deliver(receiver.url, {"text": "x"}, timeout_s=5, retries=3)
    assert not outcome.delivered and outcome.attempts == 1


def test_an_unreachable_or_slow_webhook_never_raises() -> None:
    with webhook_receiver() as receiver:
        closed = receiver.url  # the server stops at the end of the block
    started = time.monotonic()
    outcome = deliver(closed, {"text": "x"}, timeout_s=1, retries=1)
    assert not outcome.delivered and outcome.attempts == 2 and "Connect" in str(outcome.error)
    with webhook_receiver() as receiver:
        receiver.delay_s = 2.0
        outcome = deliver(receiver.url, {"text": "x"}, timeout_s=0.5, retries=0)
    assert not outcome.delivered and "Timeout" in str(outcome.error)
    assert time.monotonic() - started < 10
