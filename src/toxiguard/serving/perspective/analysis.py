"""What a Perspective request asks for, checked, and the response built from the model's scores.

Pure functions over the request models and a probability matrix, so that every rule (which
attributes, score types, languages and texts are refused, how thresholds and spans work) is
tested without a server. A refusal raises `InvalidArgument`, which the API answers with 400 in
Google's error shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from toxiguard.errors import ToxiguardError
from toxiguard.labels import LABELS
from toxiguard.serving.perspective.schemas import (
    ATTRIBUTES,
    PROBABILITY,
    SCORE_TYPES,
    TEXT_TYPES,
    AnalyzeCommentRequest,
    AnalyzeCommentResponse,
    AttributeScores,
    Score,
    SpanScore,
    SuggestCommentScoreRequest,
    TextEntry,
)
from toxiguard.serving.perspective.spans import Utf16Offsets, sentence_spans

#: The language toxiguard's models are trained on (the Jigsaw comments are English).
SERVED_LANGUAGE: Final = "en"
#: A suggested score at or above this means the label applies (Perspective's scores are
#: probabilities; the feedback store keeps 0/1 labels).
SUGGESTION_POSITIVE: Final = 0.5


class InvalidArgument(ToxiguardError):  # noqa: N818 (Google's status name)
    """A Perspective request this server refuses (HTTP 400, status INVALID_ARGUMENT)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class RequestedAttribute:
    """One attribute a request asks for: its name, our label's column, and its threshold."""

    name: str
    column: int
    threshold: float | None


def _attribute_column(name: str, field: str) -> int:
    """Return the label column answering a Perspective attribute, or raise InvalidArgument."""
    label = ATTRIBUTES.get(name)
    if label is None:
        raise InvalidArgument(
            f"attribute {name!r} is not served; this server answers {', '.join(ATTRIBUTES)} "
            "(Perspective's other attributes, such as SEXUALLY_EXPLICIT and FLIRTATION, have no "
            "toxiguard model)",
            field,
        )
    return LABELS.index(label)


def requested_attributes(request: AnalyzeCommentRequest) -> list[RequestedAttribute]:
    """Return the attributes asked for, or raise InvalidArgument for an unserved one."""
    if not request.requested_attributes:
        raise InvalidArgument("requestedAttributes is empty: name at least one attribute")
    wanted = []
    for name, parameters in request.requested_attributes.items():
        field = f"requestedAttributes.{name}"
        column = _attribute_column(name, field)
        if parameters.score_type is not None and parameters.score_type not in SCORE_TYPES:
            raise InvalidArgument(
                f"scoreType {parameters.score_type!r} of {name} is not supported; "
                f"this server gives {PROBABILITY} scores only",
                f"{field}.scoreType",
            )
        wanted.append(RequestedAttribute(name, column, parameters.score_threshold))
    return wanted


def checked_languages(languages: Sequence[str] | None) -> list[str]:
    """Return the languages to report, or raise InvalidArgument if one is not English."""
    if not languages:
        return [SERVED_LANGUAGE]
    unsupported = [
        code for code in languages if code.replace("_", "-").split("-")[0].lower() != "en"
    ]
    if unsupported:
        raise InvalidArgument(
            f"language(s) {', '.join(map(repr, unsupported))} not supported: toxiguard's models "
            f"are trained on English comments, so this server serves {SERVED_LANGUAGE!r} only",
            "languages",
        )
    return list(languages)


def checked_text(entry: TextEntry, max_chars: int) -> str:
    """Return the comment's text, or raise InvalidArgument if it is missing, empty or too long."""
    if entry.type is not None and entry.type not in TEXT_TYPES:
        raise InvalidArgument(
            f"comment.type {entry.type!r} is not supported; send the text as PLAIN_TEXT",
            "comment.type",
        )
    text = entry.text
    if text is None or not text.strip():
        raise InvalidArgument("comment.text is empty: send the text to score", "comment.text")
    if len(text) > max_chars:
        raise InvalidArgument(
            f"comment.text has {len(text)} characters, over this server's limit of {max_chars} "
            "(TOXIGUARD_MAX_TEXT_CHARS)",
            "comment.text",
        )
    return text


def texts_to_score(
    text: str, span_annotations: bool, max_spans: int
) -> tuple[list[str], list[tuple[int, int]]]:
    """Return the texts to score (the comment, then each span) and the spans' offsets.

    Spans are sentences; past `max_spans` sentences, runs of consecutive sentences share a span,
    so one request costs at most 1 + max_spans texts. One sentence, or no span annotations: the
    comment alone (its span is the whole text).
    """
    spans = sentence_spans(text) if span_annotations else []
    if len(spans) <= 1:
        return [text], [(0, len(text))]
    if len(spans) > max_spans:
        size = -(-len(spans) // max_spans)
        spans = [
            (spans[i][0], spans[min(i + size, len(spans)) - 1][1])
            for i in range(0, len(spans), size)
        ]
    return [text, *(text[begin:end] for begin, end in spans)], spans


def _score(value: float) -> Score:
    """Return a probability as Perspective's Score."""
    return Score(value=round(float(value), 6), type=PROBABILITY)


def analyze_response(
    request: AnalyzeCommentRequest,
    wanted: Sequence[RequestedAttribute],
    languages: list[str],
    text: str,
    spans: Sequence[tuple[int, int]],
    probabilities: npt.NDArray[np.float64],
) -> AnalyzeCommentResponse:
    """Return the response for the scores of the comment (row 0) and of its spans (rows 1...),
    for the attributes and languages already checked (`requested_attributes`, `checked_languages`).

    With one span (the whole comment) row 0 scores it. Scores below an attribute's
    scoreThreshold are left out: the attribute entirely when its summary score is below it.
    """
    units = Utf16Offsets(text)
    span_rows = probabilities[1:] if len(spans) > 1 else probabilities[:1]
    scores: dict[str, AttributeScores] = {}
    for attribute in wanted:
        floor = attribute.threshold if attribute.threshold is not None else -1.0
        summary = float(probabilities[0, attribute.column])
        if summary < floor:
            continue
        span_scores = [
            SpanScore(begin=units(begin), end=units(end), score=_score(row[attribute.column]))
            for (begin, end), row in zip(spans, span_rows, strict=True)
            if row[attribute.column] >= floor
        ]
        scores[attribute.name] = AttributeScores(
            summary_score=_score(summary), span_scores=span_scores
        )
    return AnalyzeCommentResponse(
        attribute_scores=scores,
        languages=languages,
        client_token=request.client_token,
    )


def suggested_labels(request: SuggestCommentScoreRequest) -> tuple[int | None, ...]:
    """Return the labels a suggestion gives (1, 0, or None where it names no attribute)."""
    if not request.attribute_scores:
        raise InvalidArgument("attributeScores is empty: suggest at least one attribute's score")
    labels: dict[int, int] = {}
    for name, scores in request.attribute_scores.items():
        field = f"attributeScores.{name}"
        column = _attribute_column(name, field)
        value = scores.summary_score.value if scores.summary_score is not None else None
        if value is None or not 0.0 <= value <= 1.0:
            raise InvalidArgument(
                f"{name}: summaryScore.value must be a number from 0 to 1", f"{field}.summaryScore"
            )
        labels[column] = int(value >= SUGGESTION_POSITIVE)
    return tuple(labels.get(column) for column in range(len(LABELS)))


__all__ = [
    "SERVED_LANGUAGE",
    "SUGGESTION_POSITIVE",
    "InvalidArgument",
    "RequestedAttribute",
    "analyze_response",
    "checked_languages",
    "checked_text",
    "requested_attributes",
    "suggested_labels",
    "texts_to_score",
]
