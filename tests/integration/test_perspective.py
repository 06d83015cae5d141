"""The Perspective-compatible API against a real `toxiguard serve`, through Google's own client.

The client is `google-api-python-client` from PyPI, pointed at the server only by its discovery
URL, as a team moving off Perspective would do.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.integration.services import (
    ServerProcess,
    fuzz_status_codes,
    missing,
    start_server,
    train_demo_champion,
)
from tests.processes import stop_process
from toxiguard.labels import LABELS
from toxiguard.monitoring import store
from toxiguard.monitoring.feedback import labelled_window, live_quality
from toxiguard.monitoring.tables import LABEL_COLUMNS, feedback
from toxiguard.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "perspective-key"
NODE_CLIENT = Path(__file__).parents[1] / "clients" / "node"
TEXT = "Thanks for fixing the typo 😀. You are a stupid idiot and I hate you!"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home whose registry holds one complement-nb champion."""
    return train_demo_champion(tmp_path_factory.mktemp("perspective-home"))


@pytest.fixture(scope="module")
def server(registry: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with an API key, as a Perspective deployment has."""
    overrides = {"TOXIGUARD_API_KEYS": KEY, "TOXIGUARD_MAX_TEXT_CHARS": "2000"}
    process = start_server(registry.home, tmp_path_factory.mktemp("perspective-logs"), overrides)
    try:
        yield process
    finally:
        stop_process(process.process)


def _client(server: ServerProcess, key: str | None = KEY) -> Any:
    from googleapiclient import discovery

    return discovery.build(
        "commentanalyzer",
        "v1alpha1",
        developerKey=key,
        discoveryServiceUrl=f"{server.url}/$discovery/rest?version={{apiVersion}}",
        static_discovery=False,
        cache_discovery=False,
    )


def _utf16_slice(text: str, begin: int, end: int) -> str:
    return text.encode("utf-16-le")[2 * begin : 2 * end].decode("utf-16-le")


def _predict(server: ServerProcess, texts: list[str]) -> list[dict[str, float]]:
    response = httpx.post(
        f"{server.url}/v1/predict", json={"texts": texts}, headers={"X-API-Key": KEY}, timeout=30
    )
    assert response.status_code == 200, response.text
    return [p["scores"] for p in response.json()["predictions"]]


def test_google_client_gets_scores_and_sentence_spans(server: ServerProcess) -> None:
    body = {
        "comment": {"text": TEXT},
        "requestedAttributes": {"TOXICITY": {}, "INSULT": {}, "IDENTITY_ATTACK": {}},
        "spanAnnotations": True,
        "languages": ["en"],
        "clientToken": "token-42",
    }
    answer = _client(server).comments().analyze(body=body).execute()
    assert answer["clientToken"] == "token-42" and answer["languages"] == ["en"]
    assert set(answer["attributeScores"]) == {"TOXICITY", "INSULT", "IDENTITY_ATTACK"}
    sentences = ["Thanks for fixing the typo 😀.", "You are a stupid idiot and I hate you!"]
    whole, *per_sentence = _predict(server, [TEXT, *sentences])
    for name, label in (("TOXICITY", "toxic"), ("INSULT", "insult")):
        scores = answer["attributeScores"][name]
        assert scores["summaryScore"]["type"] == "PROBABILITY"
        assert scores["summaryScore"]["value"] == pytest.approx(whole[label], abs=1e-6)
        spans = scores["spanScores"]
        # Offsets are UTF-16 code units, as Perspective's (the emoji counts two).
        assert [_utf16_slice(TEXT, s["begin"], s["end"]) for s in spans] == sentences
        values = [s["score"]["value"] for s in spans]
        assert values == pytest.approx([p[label] for p in per_sentence], abs=1e-6)
    toxicity = [s["score"]["value"] for s in answer["attributeScores"]["TOXICITY"]["spanScores"]]
    assert toxicity[1] > toxicity[0]  # the insulting sentence carries the score


def test_google_client_receives_400_and_401_as_http_errors(server: ServerProcess) -> None:
    from googleapiclient.errors import HttpError

    client = _client(server)
    bad_bodies: list[tuple[dict[str, Any], str]] = [
        ({"requestedAttributes": {"SEXUALLY_EXPLICIT": {}}}, "SEXUALLY_EXPLICIT"),
        ({"requestedAttributes": {"TOXICITY": {"scoreType": "RAW"}}}, "scoreType 'RAW'"),
        ({"requestedAttributes": {"TOXICITY": {}}, "languages": ["de"]}, "English"),
        ({"requestedAttributes": {"TOXICITY": {}}, "comment": {"text": "  "}}, "empty"),
        ({"requestedAttributes": {"TOXICITY": {}}, "comment": {"text": "x" * 2001}}, "limit"),
        ({"requestedAttributes": {"TOXICITY": {}}, "unknownField": 1}, "unknownField"),
        ({"requestedAttributes": {"TOXICITY": {"scoreThreshold": 2}}}, "scoreThreshold"),
    ]
    for extra, expected in bad_bodies:
        body = {"comment": {"text": "hello"}, **extra}
        with pytest.raises(HttpError) as raised:
            client.comments().analyze(body=body).execute()
        assert raised.value.status_code == 400, body
        error = json.loads(raised.value.content)["error"]
        assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
        assert expected in json.dumps(error), (expected, error)
    ok = {"comment": {"text": "hello"}, "requestedAttributes": {"TOXICITY": {}}}
    for key in (None, "wrong-key"):
        with pytest.raises(HttpError) as raised:
            _client(server, key=key).comments().analyze(body=ok).execute()
        assert raised.value.status_code == 401
        assert json.loads(raised.value.content)["error"]["status"] == "UNAUTHENTICATED"
    # The key also works in the header, for clients other than Google's.
    response = httpx.post(
        f"{server.url}/v1alpha1/comments:analyze", json=ok, headers={"X-API-Key": KEY}
    )
    assert response.status_code == 200
    assert response.headers["X-Toxiguard-Model-Version"] == "1"


def test_thresholds_leave_out_low_scores(server: ServerProcess) -> None:
    text = "What a lovely, helpful edit. Thank you."
    (scores,) = _predict(server, [text])
    above = {"scoreThreshold": min(1.0, scores["toxic"] + 1e-4)}
    at_or_below = {"scoreThreshold": max(0.0, scores["insult"] - 1e-4)}
    body = {
        "comment": {"text": text},
        "requestedAttributes": {"TOXICITY": above, "INSULT": at_or_below, "THREAT": {}},
    }
    answer = _client(server).comments().analyze(body=body).execute()
    assert set(answer["attributeScores"]) == {"INSULT", "THREAT"}


def test_do_not_store_logs_scores_without_the_text(
    server: ServerProcess, registry: Settings
) -> None:
    client = _client(server)
    secret = "do not store this comment, you fool"
    stored = "this comment may be stored, you fool"
    for text, do_not_store in ((secret, True), (stored, False)):
        body = {
            "comment": {"text": text},
            "requestedAttributes": {"TOXICITY": {}},
            "doNotStore": do_not_store,
        }
        client.comments().analyze(body=body).execute()
    server.wait_for_log_flush()
    engine = store.make_engine(f"sqlite:///{registry.home / 'monitoring.db'}")  # the server's store
    rows = store.read_predictions(engine)
    perspective = rows[rows["source"] == "perspective"]
    assert stored in set(perspective["text"].dropna())
    assert not rows["text"].dropna().str.contains("do not store").any()
    assert perspective["text"].isna().sum() >= 1  # the unstored one is counted, with its scores
    assert perspective["score_toxic"].notna().all()


def test_suggested_scores_reach_the_feedback_store_and_live_quality(
    server: ServerProcess, registry: Settings
) -> None:
    client = _client(server)
    body = {
        "comment": {"text": "You are a complete idiot"},
        "attributeScores": {
            "TOXICITY": {"summaryScore": {"value": 0.95, "type": "PROBABILITY"}},
            "THREAT": {"summaryScore": {"value": 0.0}},
        },
        "communityId": "forum-7",
        "clientToken": "suggest-1",
    }
    answer = client.comments().suggestscore(body=body).execute()
    assert answer == {"requestedLanguages": ["en"], "clientToken": "suggest-1"}
    server.wait_for_log_flush()
    engine = store.make_engine(f"sqlite:///{registry.home / 'monitoring.db'}")  # the server's store
    with engine.connect() as connection:
        rows = connection.execute(
            select(feedback).where(feedback.c.community_id == "forum-7")
        ).all()
    assert len(rows) == 1
    labels = dict(zip(LABELS, (getattr(rows[0], c) for c in LABEL_COLUMNS), strict=True))
    assert labels == {
        "toxic": 1,
        "severe_toxic": None,
        "obscene": None,
        "threat": 0,
        "insult": None,
        "identity_hate": None,
    }
    assert rows[0].source == "perspective"
    now = datetime.now(UTC)
    window = labelled_window(engine, now - timedelta(hours=1), now + timedelta(minutes=1), None)
    quality = live_quality(window)["per_label"]
    assert quality["toxic"]["rows"] >= 1 and quality["toxic"]["positives"] >= 1
    assert quality["insult"]["rows"] == 0  # not suggested, so not counted
    with pytest.raises(Exception, match="400"):
        client.comments().suggestscore(
            body={"comment": {"text": "x"}, "attributeScores": {"SPAM": {}}}
        ).execute()


def test_discovery_documents_are_open_and_name_this_server(server: ServerProcess) -> None:
    for path in (
        "/$discovery/rest?version=v1alpha1",
        "/discovery/v1/apis/commentanalyzer/v1alpha1/rest",
    ):
        document = httpx.get(f"{server.url}{path}").json()
        assert document["rootUrl"] == f"{server.url}/"
        assert set(document["resources"]["comments"]["methods"]) == {"analyze", "suggestscore"}
    missing = httpx.get(f"{server.url}/$discovery/rest?version=v1")
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"


def test_perspective_operations_never_answer_5xx(server: ServerProcess) -> None:
    """Schemathesis, valid and invalid bodies, on the Perspective operations only."""
    seen = fuzz_status_codes(
        server, max_examples=200, path_regex="v1alpha1|discovery", headers={"X-API-Key": KEY}
    )
    assert any(code == 200 for code in seen) and any(code == 400 for code in seen)
    assert "Traceback" not in server.log()


def test_googles_node_client_needs_only_the_discovery_url(server: ServerProcess) -> None:
    """Perspective's Node sample (googleapis from npm), with only its URL and key changed."""
    node = shutil.which("node")
    if node is None or not (NODE_CLIENT / "node_modules" / "googleapis").is_dir():
        missing("Google's Node client is not installed: make clients (npm ci)")
    discovery_url = f"{server.url}/$discovery/rest?version=v1alpha1"
    run = subprocess.run(
        [node, "analyze.js", discovery_url, KEY, TEXT],
        cwd=NODE_CLIENT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer = json.loads(run.stdout)
    spans = answer["attributeScores"]["TOXICITY"]["spanScores"]
    assert [_utf16_slice(TEXT, s["begin"], s["end"]) for s in spans] == [
        "Thanks for fixing the typo 😀.",
        "You are a stupid idiot and I hate you!",
    ]
    assert set(answer["attributeScores"]) == {"TOXICITY", "INSULT"}
    refused = subprocess.run(
        [node, "analyze.js", discovery_url, "wrong-key", TEXT],
        cwd=NODE_CLIENT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(refused.stdout)["error"]["code"] == 401
