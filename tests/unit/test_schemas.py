"""Request and response models of the API: limits, strictness, and their JSON schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from toxiguard.labels import LABELS
from toxiguard.serving import schemas

Request = schemas.predict_request_model(max_texts=3, max_chars=10)


def test_requests_at_the_limits_are_accepted() -> None:
    # The limits are inclusive: max_texts texts, max_chars characters.
    assert Request(texts=["a", " b ", "0123456789"]).texts == ["a", " b ", "0123456789"]


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ({"texts": []}, "too_short"),
        ({"texts": ["a", "b", "c", "d"]}, "too_long"),
        ({"texts": ["01234567890"]}, "string_too_long"),
        # Training refuses empty comments, so no model has a score for them.
        ({"texts": ["a", ""]}, "string_too_short"),
        ({"texts": [" \n\t "]}, "value_error"),
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
    schema = Request.model_json_schema()
    texts = schema["properties"]["texts"]
    assert texts["minItems"] == 1 and texts["maxItems"] == 3
    assert texts["items"] == {"type": "string", "minLength": 1, "maxLength": 10, "pattern": r"\S"}
    assert "1 to 3 strings of at most 10 characters" in texts["description"]
    # Still the PredictRequest of the contract: its name, strictness and example in OpenAPI.
    base = schemas.PredictRequest.model_json_schema()
    assert schema["title"] == base["title"] == "PredictRequest"
    assert schema["additionalProperties"] is False
    assert schema["examples"] == base["examples"]
    assert schema["required"] == ["texts"]


def test_label_scores_follow_label_order_and_bounds() -> None:
    scores = schemas.label_scores([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert list(scores.model_dump()) == list(LABELS)
    assert scores.insult == pytest.approx(0.5)
    with pytest.raises(ValidationError):
        schemas.label_scores([1.5, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError):
        schemas.label_scores([0.1] * 5)


def test_response_json_is_the_body_clients_read() -> None:
    response = schemas.PredictResponse(
        request_id="abc",
        model=schemas.ModelRef(name="toxiguard", version=2, family="tfidf-lr"),
        predictions=[
            schemas.Prediction(scores=schemas.label_scores([0.9] + [0.0] * 5), flagged=["toxic"])
        ],
    )
    body = json.loads(response.model_dump_json())
    assert body == {
        "request_id": "abc",
        "model": {"name": "toxiguard", "version": 2, "family": "tfidf-lr"},
        "predictions": [
            {
                "scores": {label: 0.9 if label == "toxic" else 0.0 for label in LABELS},
                "flagged": ["toxic"],
            }
        ],
    }
    assert list(body["predictions"][0]["scores"]) == list(LABELS)  # Kaggle's label order
    # Scores name exactly the six labels: a seventh is refused, not passed on.
    with pytest.raises(ValidationError) as caught:
        schemas.LabelScores.model_validate({**body["predictions"][0]["scores"], "spam": 0.1})
    refused = [(error["type"], error["loc"]) for error in caught.value.errors()]
    assert refused == [("extra_forbidden", ("spam",))]


def test_error_response_shape() -> None:
    body = schemas.ErrorResponse(
        error=schemas.ErrorBody(code="invalid_request", message="texts: too short"),
        request_id="r",
    ).model_dump()
    assert body == {
        "error": {"code": "invalid_request", "message": "texts: too short", "details": []},
        "request_id": "r",
    }


def test_label_enum_lists_the_labels_in_order() -> None:
    from typing import get_args

    from toxiguard.labels import LABELS
    from toxiguard.serving.schemas import Label

    assert get_args(Label) == LABELS
