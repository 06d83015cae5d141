"""The Perspective-compatible API's rules, offsets and discovery document, without a server."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest

from toxiguard.labels import LABELS
from toxiguard.serving.middleware import google_error_response
from toxiguard.serving.perspective.analysis import (
    InvalidArgument,
    analyze_response,
    checked_languages,
    checked_text,
    requested_attributes,
    suggested_labels,
    texts_to_score,
)
from toxiguard.serving.perspective.discovery import discovery_document
from toxiguard.serving.perspective.schemas import (
    ATTRIBUTES,
    AnalyzeCommentRequest,
    SuggestCommentScoreRequest,
    TextEntry,
)
from toxiguard.serving.perspective.spans import Utf16Offsets, sentence_spans


def _request(**fields: Any) -> AnalyzeCommentRequest:
    body = {"comment": {"text": "You idiot."}, "requestedAttributes": {"TOXICITY": {}}, **fields}
    return AnalyzeCommentRequest.model_validate(body)


def _utf16_slice(text: str, begin: int, end: int) -> str:
    return text.encode("utf-16-le")[2 * begin : 2 * end].decode("utf-16-le")


# ---------------------------------------------------------------- spans and offsets
def test_sentences_are_split_at_terminal_punctuation_and_line_breaks() -> None:
    text = "Thanks for the edit.  You are a fool!!\nSee you... later? yes"
    assert [text[b:e] for b, e in sentence_spans(text)] == [
        "Thanks for the edit.",
        "You are a fool!!",
        "See you...",
        "later?",
        "yes",
    ]
    assert sentence_spans("   \n ") == []
    assert sentence_spans("no stop at all") == [(0, 14)]


@pytest.mark.parametrize(
    "text",
    ["plain", "café naïve", "emoji 😀 and 👍🏽 here", "music 𝄞 and 🀄 tiles", "日本語のテキスト"],
)
def test_utf16_offsets_slice_the_same_text_as_python_offsets(text: str) -> None:
    units = Utf16Offsets(text)
    assert units(len(text)) == len(text.encode("utf-16-le")) // 2
    for begin in range(len(text)):
        for end in range(begin, len(text) + 1):
            assert _utf16_slice(text, units(begin), units(end)) == text[begin:end]


def test_many_sentences_share_spans_beyond_the_cap() -> None:
    text = " ".join(f"Sentence {i}." for i in range(10))
    texts, spans = texts_to_score(text, True, max_spans=4)
    assert len(spans) == 4 and texts[0] == text and len(texts) == 5
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))
    assert texts_to_score(text, False, max_spans=4) == ([text], [(0, len(text))])
    assert texts_to_score("One sentence.", True, max_spans=4) == (["One sentence."], [(0, 13)])


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"requestedAttributes": {"FLIRTATION": {}}},
            "requestedAttributes.FLIRTATION",
            "not served",
        ),
        ({"requestedAttributes": {}}, None, "requestedAttributes is empty"),
        (
            {"requestedAttributes": {"TOXICITY": {"scoreType": "STD_DEV_SCORE"}}},
            "requestedAttributes.TOXICITY.scoreType",
            "PROBABILITY scores only",
        ),
    ],
)
def test_unserved_attributes_and_score_types_are_refused(
    fields: dict[str, Any], field: str | None, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message) as raised:
        requested_attributes(_request(**fields))
    assert raised.value.field == field


def test_every_production_attribute_maps_to_its_label() -> None:
    request = _request(requestedAttributes={name: {} for name in ATTRIBUTES})
    columns = {wanted.name: LABELS[wanted.column] for wanted in requested_attributes(request)}
    assert columns == {
        "TOXICITY": "toxic",
        "SEVERE_TOXICITY": "severe_toxic",
        "PROFANITY": "obscene",
        "THREAT": "threat",
        "INSULT": "insult",
        "IDENTITY_ATTACK": "identity_hate",
    }


def test_english_is_served_and_other_languages_are_refused() -> None:
    assert checked_languages(None) == ["en"]
    assert checked_languages(["en", "en-US", "EN_gb"]) == ["en", "en-US", "EN_gb"]
    with pytest.raises(InvalidArgument, match=r"'fr' not supported.*English"):
        checked_languages(["en", "fr"])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (TextEntry(text=""), "empty"),
        (TextEntry(text=" \n\t"), "empty"),
        (TextEntry(), "empty"),
        (TextEntry(text="x" * 11), "11 characters, over this server's limit of 10"),
        (TextEntry(text="<b>hi</b>", type="HTML"), "PLAIN_TEXT"),
    ],
)
def test_bad_texts_are_refused(entry: TextEntry, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        checked_text(entry, max_chars=10)


def test_unknown_request_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="extra"):
        _request(notAField=True)


# ---------------------------------------------------------------- responses
def test_response_has_summary_and_utf16_span_scores_and_thresholds_drop_scores() -> None:
    text = "Nice 😀 edit. You idiot!"
    request = _request(
        comment={"text": text},
        requestedAttributes={
            "TOXICITY": {},
            "INSULT": {"scoreThreshold": 0.5},
            "THREAT": {"scoreThreshold": 0.5},
        },
        spanAnnotations=True,
        clientToken="token-1",
    )
    texts, spans = texts_to_score(text, True, max_spans=10)
    assert texts[1:] == ["Nice 😀 edit.", "You idiot!"]
    scores = np.zeros((3, len(LABELS)))
    scores[:, 0] = [0.9, 0.1, 0.95]  # toxic: comment, sentence 1, sentence 2
    scores[:, 4] = [0.8, 0.2, 0.85]  # insult
    scores[:, 3] = [0.3, 0.1, 0.3]  # threat, below its threshold everywhere
    wanted = requested_attributes(request)
    languages = checked_languages(request.languages)
    body = analyze_response(request, wanted, languages, text, spans, scores).model_dump(
        by_alias=True, exclude_none=True
    )
    assert body["clientToken"] == "token-1" and body["languages"] == ["en"]
    assert set(body["attributeScores"]) == {"TOXICITY", "INSULT"}
    toxicity = body["attributeScores"]["TOXICITY"]
    assert toxicity["summaryScore"] == {"value": 0.9, "type": "PROBABILITY"}
    assert [s["score"]["value"] for s in toxicity["spanScores"]] == [0.1, 0.95]
    second = toxicity["spanScores"][1]
    assert _utf16_slice(text, second["begin"], second["end"]) == "You idiot!"
    assert second["begin"] == len("Nice 😀 edit. ") + 1  # the emoji is two UTF-16 units
    insult = body["attributeScores"]["INSULT"]["spanScores"]
    assert [s["score"]["value"] for s in insult] == [0.85]


def test_suggestions_become_labels_with_unknowns_left_unknown() -> None:
    request = SuggestCommentScoreRequest.model_validate(
        {
            "comment": {"text": "x"},
            "attributeScores": {
                "TOXICITY": {"summaryScore": {"value": 0.9}},
                "THREAT": {"summaryScore": {"value": 0.1}},
            },
        }
    )
    assert suggested_labels(request) == (1, None, None, 0, None, None)
    bad_suggestions: list[dict[str, Any]] = [
        {"TOXICITY": {}},
        {"TOXICITY": {"summaryScore": {"value": 1.5}}},
        {"SPAM": {}},
    ]
    for bad in bad_suggestions:
        with pytest.raises(InvalidArgument):
            suggested_labels(
                SuggestCommentScoreRequest.model_validate(
                    {"comment": {"text": "x"}, "attributeScores": bad}
                )
            )


def test_errors_take_googles_shape_and_validation_failures_are_400() -> None:
    response = google_error_response(
        422, "invalid request", [{"location": "comment.text", "message": "Field required"}]
    )
    assert response.status_code == 400
    error = json.loads(bytes(response.body))["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["fieldViolations"] == [
        {"field": "comment.text", "description": "Field required"}
    ]
    unauthenticated = json.loads(bytes(google_error_response(401, "no key", []).body))
    assert unauthenticated == {
        "error": {"code": 401, "message": "no key", "status": "UNAUTHENTICATED"}
    }


# ---------------------------------------------------------------- discovery document
def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["$ref"]] if "$ref" in value else []
        return own + [ref for item in value.values() for ref in _refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    return []


def test_discovery_document_is_complete_and_drives_googles_client() -> None:
    from googleapiclient.discovery import build_from_document

    document = discovery_document("http://toxiguard.test:8000")
    assert document["rootUrl"] == "http://toxiguard.test:8000/"
    assert set(_refs(document)) <= set(document["schemas"])
    analyze_schema = document["schemas"]["AnalyzeCommentRequest"]["properties"]
    assert analyze_schema["requestedAttributes"]["additionalProperties"] == {
        "$ref": "AttributeParameters"
    }
    assert analyze_schema["doNotStore"]["type"] == "boolean"
    client = build_from_document(document, developerKey="secret")
    body = {"comment": {"text": "hi"}, "requestedAttributes": {"TOXICITY": {}}}
    request = client.comments().analyze(body=body)
    assert request.method == "POST"
    assert request.uri.startswith("http://toxiguard.test:8000/v1alpha1/comments:analyze?")
    assert "key=secret" in request.uri
    assert json.loads(request.body) == body
    suggest = client.comments().suggestscore(body={"comment": {"text": "hi"}})
    assert suggest.uri.startswith("http://toxiguard.test:8000/v1alpha1/comments:suggestscore?")
