"""Fair sharing against a real `toxiguard serve`: rate limits per key, the per-request size
limit, back-off after wrong API keys (API and UI login), the UI's upload limit, and the refusal
to serve without keys when they are required."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.services import (
    ServerProcessFactory,
    server_environment,
    toxiguard_command,
    train_demo_champion,
)
from toxiguard.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEYS = {"TOXIGUARD_API_KEYS": "key-a,key-b"}  # pragma: allowlist secret
ANALYZE = {"comment": {"text": "You idiot"}, "requestedAttributes": {"TOXICITY": {}}}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home whose registry holds one complement-nb champion."""
    return train_demo_champion(tmp_path_factory.mktemp("fair-home"))


def _predict(url: str, texts: list[str], key: str | None = None) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return httpx.post(f"{url}/v1/predict", json={"texts": texts}, headers=headers, timeout=30)


def _retry_after(response: httpx.Response) -> int:
    value = response.headers["Retry-After"]
    assert re.fullmatch(r"[1-9][0-9]*", value), value  # whole seconds
    return int(value)


def test_rate_limit_per_key_answers_429_with_retry_after(
    registry: Settings, serve_factory: ServerProcessFactory
) -> None:
    # 3,000 characters at once, 60 a second: three requests (each costs at least 1,000).
    server = serve_factory(
        registry.home,
        {
            **KEYS,
            "TOXIGUARD_RATE_LIMIT_CHARS_PER_MINUTE": "3600",
            "TOXIGUARD_RATE_LIMIT_BURST_CHARS": "3000",
        },
    )
    for _ in range(3):
        assert _predict(server.url, ["hello"], "key-a").status_code == 200
    limited = _predict(server.url, ["hello"], "key-a")
    assert limited.status_code == 429, limited.text
    assert 1 <= _retry_after(limited) <= 17  # 1,000 characters at 60 a second
    error = limited.json()["error"]
    assert error["code"] == "too_many_requests"
    assert "3,600 characters per minute" in error["message"] and "API key" in error["message"]
    assert error["details"][0]["limit"] == "rate_limit_chars_per_minute"
    assert limited.json()["request_id"] == limited.headers["x-request-id"]
    # Another key has its own bucket...
    assert _predict(server.url, ["hello"], "key-b").status_code == 200
    # ...and the Perspective path answers in Google's shape, with a RetryInfo.
    google = httpx.post(
        f"{server.url}/v1alpha1/comments:analyze?key=key-a", json=ANALYZE, timeout=30
    )
    assert google.status_code == 429, google.text
    _retry_after(google)
    body = google.json()["error"]
    assert body["status"] == "RESOURCE_EXHAUSTED" and body["code"] == 429
    assert body["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": f"{google.headers['Retry-After']}s",
        }
    ]
    # Health and metrics are never metered.
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_request_over_max_request_chars_is_413_naming_total_and_limit(
    registry: Settings, serve_factory: ServerProcessFactory
) -> None:
    server = serve_factory(registry.home, {"TOXIGUARD_MAX_REQUEST_CHARS": "1000"})
    too_big = _predict(server.url, ["x" * 400, "y" * 400, "z" * 400])
    assert too_big.status_code == 413, too_big.text
    message = too_big.json()["error"]["message"]
    assert "1,200 characters" in message and "limit of 1,000" in message
    assert _predict(server.url, ["x" * 500, "y" * 500]).status_code == 200
    explain = httpx.post(f"{server.url}/v1/explain", json={"text": "w " * 600}, timeout=30)
    assert explain.status_code == 413 and "1,200 characters" in explain.json()["error"]["message"]
    long = {**ANALYZE, "comment": {"text": "word " * 250}}
    google = httpx.post(f"{server.url}/v1alpha1/comments:analyze", json=long, timeout=30)
    assert google.status_code == 413, google.text
    assert "limit of 1,000" in google.json()["error"]["message"]
    # A body that cannot hold fewer characters than the limit is refused before it is read.
    huge = _predict(server.url, ["x" * 5000] * 3)
    assert huge.status_code == 413 and "bytes" in huge.json()["error"]["message"]


def test_wrong_keys_lock_the_address_out_of_the_api_and_the_ui(
    registry: Settings, serve_factory: ServerProcessFactory
) -> None:
    server = serve_factory(registry.home, KEYS)
    wrong = [_predict(server.url, ["hi"], f"guess-{i}").status_code for i in range(5)]
    assert wrong == [401] * 5
    # The fifth wrong key locked the address out: even the right key is refused for now.
    locked = _predict(server.url, ["hi"], "key-a")
    assert locked.status_code == 429, locked.text
    assert "too many wrong API keys" in locked.json()["error"]["message"]
    google = httpx.post(
        f"{server.url}/v1alpha1/comments:analyze?key=key-a", json=ANALYZE, timeout=30
    )
    assert google.status_code == 429 and google.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    # /ready is not a way round it: probes still get the bare status.
    ready = httpx.get(f"{server.url}/ready", headers={"X-API-Key": "key-a"}).json()
    assert ready == {"ready": True, "status": "ready"}
    time.sleep(_retry_after(locked) + 0.2)
    assert _predict(server.url, ["hi"], "key-a").status_code == 200  # and the count restarts
    assert _predict(server.url, ["hi"], "guess-again").status_code == 401

    # The UI's login (an API key as password) counts wrong passwords the same way.
    def login(password: str) -> httpx.Response:
        return httpx.post(
            f"{server.url}/ui/login", data={"username": "me", "password": password}, timeout=30
        )

    assert login("key-b").status_code == 200
    assert [login(f"guess-{i}").status_code for i in range(5)] == [400] * 5
    refused = login("key-b")
    assert refused.status_code == 429 and "too many wrong API keys" in refused.text
    _retry_after(refused)
    log = server.log()
    assert log.count("locked out for") == 2
    assert "guess-" not in log and "key-a" not in log and "key-b" not in log


def _upload(url: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(
        f"{url}/ui/gradio_api/upload", files={"files": (name, data, "text/csv")}, timeout=60
    )


def test_ui_refuses_big_uploads_and_shows_no_server_path(
    registry: Settings, serve_factory: ServerProcessFactory, tmp_path: Path
) -> None:
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    server = serve_factory(registry.home, {"TOXIGUARD_UI_MAX_UPLOAD_BYTES": "50000"})
    row = b"c1,You are a stupid idiot and I hate you\n"
    assert _upload(server.url, "small.csv", b"id,comment_text\n" + row * 100).status_code == 200
    too_big = _upload(server.url, "big.csv", b"id,comment_text\n" + row * 2000)  # 80 kB
    assert too_big.status_code == 413, too_big.text[:300]
    # Past the limit plus the multipart allowance, refused before a byte of it is read.
    huge = _upload(server.url, "huge.csv", b"x" * 2_000_000)
    assert huge.status_code == 413 and "over the limit" in huge.json()["error"]["message"]

    bad = tmp_path / "no-text-column.csv"
    bad.write_text("id,body\n1,hello\n")
    client: Any = Client(f"{server.url}/ui/", verbose=False)
    with pytest.raises(AppError) as raised:
        client.predict(handle_file(str(bad)), "comment_text", api_name="/score_csv")
    message = str(raised.value)
    assert "no-text-column.csv" in message and "missing text column" in message
    assert "/" not in message, message  # the file's name, not where the server keeps it


def test_serve_refuses_to_start_without_keys_when_they_are_required(tmp_path: Path) -> None:
    run = subprocess.run(
        toxiguard_command("serve", "--host", "0.0.0.0", "--require-keys"),
        env=server_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: no API keys set"), run.stderr
    assert "Traceback" not in run.stderr
