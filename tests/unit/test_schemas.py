"""Request and response models of the API: limits, strictness, and their JSON schema."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from toxiguard.labels import LABELS
from toxiguard.serving import schemas

Request = schemas.predict_request_model(max_texts=3, max_chars=10)


def test_valid_request_keeps_the_texts() -> None:
    assert Request(texts=["a", "", "0123456789"]).texts == ["a", "", "0123456789"]


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ({"texts": []}, "too_short"),
        ({"texts": ["a", "b", "c", "d"]}, "too_long"),
        ({"texts": ["01234567890"]}, "string_too_long"),
        ({"texts": [1]}, "string_type"),
        ({"texts": [None]}, "string_type"),
        ({"texts": [["a"]]}, "string_type"),
        ({"texts": "a"}, "list_type"),
        ({}, "missing"),
        ({"texts": ["a"], "text": "b"}, "extra_forbidden"),
    ],
)
def test_bad_requests_are_refused(body: dict[str, Any], error_type: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Request.model_validate(body)
    assert error_type in {error["type"] for error in caught.value.errors()}


def test_limits_are_part_of_the_json_schema() -> None:
    texts = Request.model_json_schema()["properties"]["texts"]
    assert texts["minItems"] == 1 and texts["maxItems"] == 3
    assert texts["items"] == {"type": "string", "maxLength": 10}
    assert issubclass(Request, schemas.PredictRequest)


def test_label_scores_follow_label_order_and_bounds() -> None:
    scores = schemas.label_scores([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert list(scores.model_dump()) == list(LABELS)
    assert scores.insult == pytest.approx(0.5)
    with pytest.raises(ValidationError):
        schemas.label_scores([1.5, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError):
        schemas.label_scores([0.1] * 5)


def test_response_round_trips_through_json() -> None:
    response = schemas.PredictResponse(
        request_id="abc",
        model=schemas.ModelRef(name="toxiguard", version=2, family="tfidf-lr"),
        predictions=[
            schemas.Prediction(scores=schemas.label_scores([0.9] + [0.0] * 5), flagged=["toxic"])
        ],
    )
    again = schemas.PredictResponse.model_validate_json(response.model_dump_json())
    assert again == response


def test_error_response_shape() -> None:
    body = schemas.ErrorResponse(
        error=schemas.ErrorBody(code="invalid_request", message="texts: too short"),
        request_id="r",
    ).model_dump()
    assert body == {
        "error": {"code": "invalid_request", "message": "texts: too short", "details": []},
        "request_id": "r",
    }
