"""The review queue's API against a real `toxiguard serve` process with API keys set; the queue
query on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select

from tests.integration.services import ServerProcess, start_server, train_demo_champion
from tests.processes import stop_process
from toxiguard.labels import LABELS
from toxiguard.monitoring import store
from toxiguard.monitoring.feedback import FeedbackItem, store_feedback
from toxiguard.monitoring.review import review_queue
from toxiguard.monitoring.tables import feedback
from toxiguard.serving.limits import key_id
from toxiguard.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEYS = ("reader-key", "moderator-key")
TOXIC = "You are a stupid idiot and everyone hates you"
CLEAN = "Thanks for adding the sources to the article."


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return train_demo_champion(tmp_path_factory.mktemp("review-home"))


@pytest.fixture(scope="module")
def server(registry: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(
        registry.home,
        tmp_path_factory.mktemp("review-logs"),
        {"TOXIGUARD_API_KEYS": ",".join(KEYS), "TOXIGUARD_UI_ENABLED": "false"},
    )
    try:
        yield process
    finally:
        stop_process(process.process)


def _headers(key: str = KEYS[0]) -> dict[str, str]:
    return {"X-API-Key": key}


def _queue(server: ServerProcess, **params: Any) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/review", params=params, headers=_headers(), timeout=30)


def _predict(server: ServerProcess, texts: list[str]) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/v1/predict", json={"texts": texts}, headers=_headers(), timeout=30
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_review_needs_an_api_key(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/v1/review", timeout=30).status_code == 401
    decision = {"request_id": "abc", "item_index": 0, "labels": []}
    assert httpx.post(f"{server.url}/v1/review", json=decision, timeout=30).status_code == 401
    wrong = httpx.get(f"{server.url}/v1/review", headers=_headers("nope"), timeout=30)
    assert wrong.status_code == 401


def test_a_flagged_comment_is_queued_and_a_decision_names_its_key(
    server: ServerProcess, registry: Settings
) -> None:
    answer = _predict(server, [CLEAN, TOXIC])
    request_id = answer["request_id"]
    flagged = answer["predictions"][1]["flagged"]
    assert flagged, "the demo champion should flag the toxic comment"
    server.wait_for_log_flush()

    page = _queue(server)
    assert page.status_code == 200, page.text
    body = page.json()
    model = httpx.get(f"{server.url}/v1/model", headers=_headers(), timeout=30).json()
    assert body["thresholds"] == model["thresholds"] and body["model_version"] == model["version"]
    entries = {(e["request_id"], e["item_index"]): e for e in body["items"]}
    entry = entries[(request_id, 1)]
    assert entry["why"] == "flagged" and entry["flagged"] == flagged and entry["text"] == TOXIC
    assert entry["scores"] == pytest.approx(answer["predictions"][1]["scores"])
    times = [e["created_at"] for e in body["items"]]
    assert times == sorted(times, reverse=True)
    # The label filter keeps comments flagged (or uncertain) on that label only.
    filtered = _queue(server, label=flagged[0]).json()["items"]
    assert (request_id, 1) in {(e["request_id"], e["item_index"]) for e in filtered}
    assert all(flagged[0] in e["flagged"] + e["uncertain"] for e in filtered)

    # The moderator corrects the labels: toxic and threat apply, nothing else.
    decision = {"request_id": request_id, "item_index": 1, "labels": ["toxic", "threat"]}
    stored = httpx.post(
        f"{server.url}/v1/review", json=decision, headers=_headers(KEYS[1]), timeout=30
    )
    assert stored.status_code == 200, stored.text
    assert stored.json()["reviewer"] == key_id(KEYS[1])
    assert stored.json()["labels"] == {label: int(label in ("toxic", "threat")) for label in LABELS}
    left = {(e["request_id"], e["item_index"]) for e in _queue(server).json()["items"]}
    assert (request_id, 1) not in left

    engine = store.make_engine(store.database_url(registry))
    with engine.connect() as connection:
        row = connection.execute(select(feedback).where(feedback.c.request_id == request_id)).one()
    engine.dispose()
    assert row.item_index == 1 and row.source == "review" and row.reviewer == key_id(KEYS[1])
    assert [getattr(row, f"label_{label}") for label in LABELS] == [1, 0, 0, 1, 0, 0]


def test_unknown_predictions_and_bad_labels_are_refused(server: ServerProcess) -> None:
    review = f"{server.url}/v1/review"
    unknown = httpx.post(
        review,
        json={"request_id": "f" * 32, "item_index": 0, "labels": ["toxic"]},
        headers=_headers(),
        timeout=30,
    )
    assert unknown.status_code == 404 and "no prediction" in unknown.json()["error"]["message"]
    answered = _predict(server, [TOXIC])["request_id"]
    for decision in (
        {"request_id": answered, "item_index": 0, "labels": ["rude"]},
        {"request_id": answered, "item_index": 0},  # labels are required: [] means clean
        {"request_id": answered, "item_index": 5, "labels": []},  # past the request's end
    ):
        response = httpx.post(review, json=decision, headers=_headers(), timeout=30)
        assert response.status_code == 422, (decision, response.text)
        assert "error" in response.json()
    assert _queue(server, label="rude").status_code == 422
    assert _queue(server, limit=0).status_code == 422


def test_the_queue_query_and_reviewer_migration_run_on_postgresql(postgres_url: str) -> None:
    engine = store.make_engine(postgres_url)
    store.upgrade_schema(engine)
    with engine.connect() as connection:  # the reviewer migration matches the table on PostgreSQL
        assert store.schema_differences(connection, tables=["feedback"]) == []
    start = datetime(2026, 12, 1, tzinfo=UTC)
    thresholds = dict.fromkeys(LABELS, 0.5)

    def row(request_id: str, minute: int, toxic: float) -> dict[str, Any]:
        return {
            "created_at": start + timedelta(minutes=minute),
            "request_id": request_id,
            "item_index": 0,
            "source": "api",
            "text": f"comment {request_id}",
            "length": 9,
            "words": 2,
            "upper_share": 0.0,
            "non_letter_share": 0.1,
            **{f"score_{label}": toxic if label == "toxic" else 0.01 for label in LABELS},
            **{f"flag_{label}": label == "toxic" and toxic >= 0.5 for label in LABELS},
        }

    rows = [row("flagged", 0, 0.9), row("near", 1, 0.45), row("clean", 2, 0.01), row("done", 3, 1)]
    with engine.begin() as connection:
        connection.execute(insert(store.predictions), rows)
    store_feedback(engine, [FeedbackItem.from_names("done", 0, [])], "review", reviewer="key-x")
    queue = review_queue(engine, thresholds, label="toxic")
    engine.dispose()
    assert [(item.request_id, item.why) for item in queue] == [
        ("near", "uncertain"),
        ("flagged", "flagged"),
    ]
    assert queue[0].created_at == start + timedelta(minutes=1)
