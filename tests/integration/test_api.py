"""The REST API against a real `toxiguard serve` process with a registered model."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.integration.services import (
    ServerProcess,
    ServerProcessFactory,
    fuzz_status_codes,
    start_server,
    train_demo_champion,
)
from tests.processes import free_port, stop_process
from toxiguard.labels import LABELS
from toxiguard.registry.client import load_toxicity_model
from toxiguard.registry.promotion import promote
from toxiguard.registry.versions import list_versions
from toxiguard.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_TEXTS = 8
MAX_CHARS = 500
LIMITS = {
    "TOXIGUARD_MAX_TEXTS_PER_REQUEST": str(MAX_TEXTS),
    "TOXIGUARD_MAX_TEXT_CHARS": str(MAX_CHARS),
    "TOXIGUARD_MODEL_POLL_SECONDS": "0.5",
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home whose registry holds two complement-nb versions, version 1 champion."""
    return train_demo_champion(tmp_path_factory.mktemp("api-home"), versions=2)


@pytest.fixture(scope="module")
def server(registry: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module's read-only tests."""
    process = start_server(registry.home, tmp_path_factory.mktemp("api-logs"), LIMITS)
    try:
        yield process
    finally:
        stop_process(process.process)


def _predict(url: str, texts: list[str], **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/predict", json={"texts": texts}, timeout=30, **kwargs)


# ---------------------------------------------------------------- endpoints
def test_health_ready_and_model(server: ServerProcess, registry: Settings) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and body["model"]["source"] == "registry"
    assert body["registry"]["reachable"] is True
    assert body["prediction_log"]["database"].startswith("sqlite")
    model = httpx.get(f"{server.url}/v1/model").json()
    champion = next(v for v in list_versions(registry) if "champion" in v["aliases"])
    assert model["version"] == body["model"]["version"]
    assert model["name"] == registry.registered_model_name and model["alias"] == "champion"
    assert model["family"] == "complement-nb" and model["source"] == "registry"
    assert set(model["thresholds"]) == set(LABELS)
    assert "test_roc_auc_mean" in model["metrics"]
    assert model["version"] == champion["version"]
    assert httpx.get(f"{server.url}/docs").status_code == 200
    spec = httpx.get(f"{server.url}/openapi.json").json()
    texts = spec["components"]["schemas"]["PredictRequest"]["properties"]["texts"]
    assert texts["maxItems"] == MAX_TEXTS and texts["items"]["maxLength"] == MAX_CHARS


def test_predict_matches_the_registered_model(server: ServerProcess, registry: Settings) -> None:
    texts = ["You are a stupid idiot and I hate you", "Thanks for the helpful edit.", "#$% 123"]
    response = _predict(server.url, texts)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["request_id"]) == 32 and response.headers["x-request-id"]
    version = body["model"]["version"]
    model, _ = load_toxicity_model(f"models:/toxiguard/{version}", registry)
    expected = model.predict_proba(texts)
    got = np.array([[p["scores"][label] for label in LABELS] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    for row, prediction in zip(expected, body["predictions"], strict=True):
        flagged = [
            label for label, p, t in zip(LABELS, row, model.thresholds, strict=True) if p >= t
        ]
        assert prediction["flagged"] == flagged
    assert body["model"] == {"name": "toxiguard", "version": version, "family": "complement-nb"}
    again = _predict(server.url, texts[:1]).json()
    assert again["request_id"] != body["request_id"]


def test_feedback_must_name_a_prediction_this_api_made(server: ServerProcess) -> None:
    answered = _predict(server.url, ["first comment", "second comment"]).json()["request_id"]
    feedback = f"{server.url}/v1/feedback"
    # At once, before the prediction log has written the rows: the server remembers the request.
    good = httpx.post(feedback, json={"request_id": answered, "item_index": 1, "labels": []})
    assert good.status_code == 200, good.text
    past = httpx.post(feedback, json={"request_id": answered, "item_index": 2, "labels": []})
    assert past.status_code == 422 and "item_index 0 to 1" in past.json()["error"]["message"]
    unknown = httpx.post(feedback, json={"request_id": "f" * 32, "labels": ["toxic"]})
    assert unknown.status_code == 404, unknown.text
    assert "no prediction has request_id" in unknown.json()["error"]["message"]


def test_metrics_count_requests_flags_and_model(server: ServerProcess) -> None:
    for _ in range(3):
        assert _predict(server.url, ["You are an idiot"]).status_code == 200
    text = httpx.get(f"{server.url}/metrics").text
    samples = _samples(text)
    assert (
        samples[
            ("toxiguard_http_requests_total", 'endpoint="/v1/predict",method="POST",status="200"')
        ]
        >= 3
    )
    assert any(name == "toxiguard_http_request_duration_seconds_bucket" for name, _ in samples)
    assert sum(v for (n, _), v in samples.items() if n == "toxiguard_predictions_total") >= 3
    version = [v for (n, _), v in samples.items() if n == "toxiguard_model_version"]
    assert version and version[0] >= 1
    assert any(n == "toxiguard_flagged_predictions_total" for n, _ in samples)
    assert ("toxiguard_prediction_log_pending_rows", "") in samples


def _samples(text: str) -> dict[tuple[str, str], float]:
    """Return {(metric name, label string): value} of a Prometheus text page."""
    samples: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        name, _, labels = name_labels.partition("{")
        samples[(name, labels.rstrip("}"))] = float(value)
    return samples


# ---------------------------------------------------------------- bad input
BAD_BODIES: list[tuple[str, bytes, str, int, str]] = [
    ("empty list", b'{"texts": []}', "application/json", 422, "texts"),
    (
        "too many texts",
        json.dumps({"texts": ["a"] * (MAX_TEXTS + 1)}).encode(),
        "application/json",
        422,
        "at most 8",
    ),
    (
        "text too long",
        json.dumps({"texts": ["a" * (MAX_CHARS + 1)]}).encode(),
        "application/json",
        422,
        "at most 500 characters",
    ),
    ("empty text", b'{"texts": ["a", ""]}', "application/json", 422, "texts.1"),
    ("whitespace text", b'{"texts": [" \\n "]}', "application/json", 422, "only whitespace"),
    ("number", b'{"texts": [1]}', "application/json", 422, "valid string"),
    ("null", b'{"texts": [null]}', "application/json", 422, "valid string"),
    ("nested list", b'{"texts": [["a"]]}', "application/json", 422, "valid string"),
    ("object", b'{"texts": [{"a": 1}]}', "application/json", 422, "valid string"),
    ("texts not a list", b'{"texts": "abc"}', "application/json", 422, "valid list"),
    ("missing texts", b"{}", "application/json", 422, "texts"),
    ("extra field", b'{"texts": ["a"], "text": "b"}', "application/json", 422, "text"),
    ("top-level list", b'["a"]', "application/json", 422, "invalid request"),
    ("invalid JSON", b'{"texts": [', "application/json", 422, "not valid JSON"),
    ("empty body", b"", "application/json", 422, "invalid request"),
    ("invalid UTF-8", b'{"texts": ["\xff\xfe"]}', "application/json", 400, "parsing"),
    ("plain text", b"hello", "text/plain", 422, ""),
    ("form", b"texts=a", "application/x-www-form-urlencoded", 422, ""),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_bad_input_gets_a_json_4xx(
    server: ServerProcess, body: bytes, content_type: str, status: int, says: str
) -> None:
    response = httpx.post(
        f"{server.url}/v1/predict", content=body, headers={"content-type": content_type}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and says in error["message"]
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_oversized_body_is_refused_before_reading(server: ServerProcess) -> None:
    big = json.dumps({"texts": ["a" * MAX_CHARS] * (MAX_TEXTS * 20)}).encode()
    response = httpx.post(
        f"{server.url}/v1/predict", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "over the limit" in response.json()["error"]["message"]
    # Streamed in chunks, without a Content-Length, the body is cut off at the limit: also 413.

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 65_536):
            yield big[start : start + 65_536]

    streamed = httpx.post(
        f"{server.url}/v1/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413, streamed.text
    assert "over the limit" in streamed.json()["error"]["message"]


def test_wrong_method_and_unknown_path_are_json(server: ServerProcess) -> None:
    wrong = httpx.get(f"{server.url}/v1/predict")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    unknown = httpx.get(f"{server.url}/v1/nothing")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


def test_no_bad_input_caused_a_server_error(server: ServerProcess) -> None:
    _predict(server.url, ["x"])
    samples = _samples(httpx.get(f"{server.url}/metrics").text)
    server_errors = [
        v
        for (n, labels), v in samples.items()
        if n == "toxiguard_http_errors_total" and 'kind="server"' in labels
    ]
    assert sum(server_errors) == 0
    assert "Traceback" not in server.log()


def test_openapi_property_based_no_server_error(server: ServerProcess) -> None:
    """Schemathesis generates valid and invalid requests for every operation: none gets a 5xx."""
    seen = fuzz_status_codes(server, max_examples=150)
    assert any(code == 200 for code in seen) and any(400 <= code < 500 for code in seen)


def test_explain_gives_exact_contributions_with_offsets(server: ServerProcess) -> None:
    text = "Thanks for the edit 😀, you stupid idiot"
    response = httpx.post(f"{server.url}/v1/explain", json={"text": text}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["method"] == "linear-exact" and body["unit"] == "logit"
    assert body["model"]["family"] == "complement-nb"
    (scores,) = [p["scores"] for p in _predict(server.url, [text]).json()["predictions"]]
    assert body["scores"] == pytest.approx(scores, abs=1e-9)
    for label, explained in body["explanations"].items():
        for span in explained["spans"]:
            assert text[span["begin"] : span["end"]] == span["text"]
            utf16 = text.encode("utf-16-le")[2 * span["begin_utf16"] : 2 * span["end_utf16"]]
            assert utf16.decode("utf-16-le") == span["text"]
        # The baseline plus the contributions is the label's logit (clipped where p is 0 or 1).
        assert explained["baseline"] is not None, label  # every label has both classes here
        logit = explained["baseline"] + sum(s["contribution"] for s in explained["spans"])
        probability = 1 / (1 + np.exp(-np.clip(logit, -700, 700)))
        assert probability == pytest.approx(explained["score"], abs=1e-6), label
    insult = body["explanations"]["insult"]["spans"]
    assert max(insult, key=lambda s: s["contribution"])["text"] in {"stupid", "idiot"}
    only = httpx.post(f"{server.url}/v1/explain", json={"text": text, "labels": ["threat"]})
    assert list(only.json()["explanations"]) == ["threat"]
    for bad in (
        {"text": ""},
        {"text": " \t\n"},
        {"text": "x", "labels": ["rude"]},
        {"text": "x" * (MAX_CHARS + 1)},
    ):
        refused = httpx.post(f"{server.url}/v1/explain", json=bad)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"


# ---------------------------------------------------------------- API keys
def test_api_keys_guard_v1_but_not_health(
    registry: Settings,
    serve_factory: ServerProcessFactory,
) -> None:
    server = serve_factory(registry.home, {**LIMITS, "TOXIGUARD_API_KEYS": "key-one, key-two"})
    assert _predict(server.url, ["hi"]).status_code == 401
    assert "missing API key" in _predict(server.url, ["hi"]).json()["error"]["message"]
    wrong = _predict(server.url, ["hi"], headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "invalid API key"
    for key in ("key-one", "key-two"):
        assert _predict(server.url, ["hi"], headers={"X-API-Key": key}).status_code == 200
    assert httpx.get(f"{server.url}/v1/model").status_code == 401
    assert httpx.post(f"{server.url}/v1/explain", json={"text": "hi"}).status_code == 401
    by_query = httpx.post(f"{server.url}/v1/predict?key=key-one", json={"texts": ["hi"]})
    assert by_query.status_code == 200
    assert httpx.get(f"{server.url}/v1/model", headers={"X-API-Key": "key-two"}).status_code == 200
    for open_path in ("/health", "/ready", "/metrics"):
        assert httpx.get(f"{server.url}{open_path}").status_code == 200
    # /ready's details need a key when keys are set; the bare status stays open for probes.
    assert httpx.get(f"{server.url}/ready").json() == {"ready": True, "status": "ready"}
    detailed = httpx.get(f"{server.url}/ready", headers={"X-API-Key": "key-one"}).json()
    assert detailed["model"]["version"] == 1 and "registry" in detailed
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "X-API-Key" in json.dumps(spec["components"]["securitySchemes"])
    # The UI asks for a login (an API key as password) when keys are set.
    assert httpx.get(f"{server.url}/ui/config").status_code == 401


# ---------------------------------------------------------------- model loading
def test_registry_down_at_start_serves_the_local_copy(
    server: ServerProcess,
    registry: Settings,
    serve_factory: ServerProcessFactory,
) -> None:
    served = httpx.get(f"{server.url}/v1/model").json()  # the module server saved its copy
    password = "S3cret-Pw"
    dead = f"http://admin:{password}@127.0.0.1:{free_port()}"
    database = f"postgresql+psycopg://monitor:{password}@127.0.0.1:{free_port()}/toxiguard"
    down = serve_factory(
        registry.home,
        {**LIMITS, "MLFLOW_TRACKING_URI": dead, "TOXIGUARD_DATABASE_URL": database},
    )
    _predict(down.url, ["a comment for the (unreachable) prediction log"])
    deadline = time.monotonic() + 30
    while down.ready()["prediction_log"]["write_failures"] == 0:
        assert time.monotonic() < deadline, "the prediction log never tried the dead database"
        time.sleep(0.2)
    ready = down.ready()
    # A password in the tracking or database URI is never shown: not in /ready, not in the log.
    assert password not in json.dumps(ready) and password not in down.log()
    assert "admin:***@" in json.dumps(ready) and "monitor:***@" in json.dumps(ready)
    assert ready["ready"] is True and ready["status"] == "degraded"
    model = ready["model"]
    assert isinstance(model, dict) and model["source"] == "local-copy"
    assert any("local copy" in problem for problem in ready["problems"])
    body = _predict(down.url, ["You idiot"]).json()
    assert body["model"]["version"] == served["version"]
    info = httpx.get(f"{down.url}/v1/model").json()
    assert info["source"] == "local-copy" and info["thresholds"] == served["thresholds"]
    assert "serving the local copy" in " ".join(down.log().split())  # rich wraps lines


def test_hot_swap_while_requests_run(server: ServerProcess, registry: Settings) -> None:
    """Promote another version while a client sends requests: no request fails."""
    before = httpx.get(f"{server.url}/v1/model").json()["version"]
    target = 2 if before == 1 else 1
    seen: list[list[int]] = [[] for _ in range(3)]
    failures: list[str] = []
    stop = threading.Event()

    def client(versions: list[int]) -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    response = http.post(
                        f"{server.url}/v1/predict", json={"texts": ["you idiot", "thanks"]}
                    )
                    if response.status_code != 200:
                        failures.append(f"{response.status_code}: {response.text[:200]}")
                    else:
                        versions.append(response.json()["model"]["version"])
                except httpx.HTTPError as error:
                    failures.append(repr(error))

    threads = [threading.Thread(target=client, args=(versions,)) for versions in seen]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while not all(seen):  # every client has been answered by the old version first
            assert time.monotonic() < deadline and not failures, failures
            time.sleep(0.05)
        promote(registry, target, reason="test: hot swap")
        deadline = time.monotonic() + 60
        while not all(versions and versions[-1] == target for versions in seen):
            assert time.monotonic() < deadline, "the new champion was not swapped in"
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert failures == []
    for versions in seen:
        assert versions[0] == before and versions[-1] == target
        # Once a client has seen the new version, the old one never comes back.
        assert set(versions[versions.index(target) :]) == {target}
    model = httpx.get(f"{server.url}/v1/model").json()
    assert model["version"] == target and model["source"] == "registry"
    samples = _samples(httpx.get(f"{server.url}/metrics").text)
    assert samples[("toxiguard_model_swaps_total", "")] >= 1
