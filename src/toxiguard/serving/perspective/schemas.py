"""The request and response bodies of Perspective's Comment Analyzer API (v1alpha1), as models.

Field names and meanings follow Perspective's public API reference, in its JSON spelling
(camelCase aliases). The discovery document (`discovery.py`) and the OpenAPI schema are both
generated from these models, so the three never disagree.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from toxiguard.labels import LABELS

#: Perspective's production attributes that toxiguard's labels answer, in label order.
ATTRIBUTES: Final[dict[str, str]] = dict(
    zip(
        ("TOXICITY", "SEVERE_TOXICITY", "PROFANITY", "THREAT", "INSULT", "IDENTITY_ATTACK"),
        LABELS,
        strict=True,
    )
)
PROBABILITY: Final = "PROBABILITY"
#: The score types a request may ask for: Perspective's default, and its "unspecified" value.
SCORE_TYPES: Final = (PROBABILITY, "SCORE_TYPE_UNSPECIFIED")
PLAIN_TEXT: Final = "PLAIN_TEXT"
TEXT_TYPES: Final = (PLAIN_TEXT, "TEXT_TYPE_UNSPECIFIED")


class _Message(BaseModel):
    """A Perspective message: camelCase in JSON, snake_case in Python, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class TextEntry(_Message):
    """A piece of text and its type."""

    text: str | None = Field(None, description="The text (UTF-8 in the request body).")
    type: str | None = Field(
        None, description="PLAIN_TEXT (the default); HTML is not supported, as on Perspective."
    )


class Context(_Message):
    """Context of the comment (accepted and ignored, as Perspective documents for it)."""

    entries: list[TextEntry] | None = Field(None, description="Texts the comment replies to.")
    article_and_parent_comment: dict[str, Any] | None = Field(
        None, description="The article and parent comment (accepted and ignored)."
    )


class AttributeParameters(_Message):
    """How one requested attribute should be scored."""

    score_type: str | None = Field(None, description="PROBABILITY (the only type served).")
    score_threshold: float | None = Field(
        None, description="Leave out scores below this value (0 to 1).", ge=0.0, le=1.0
    )


class AnalyzeCommentRequest(_Message):
    """`comments:analyze`: the comment to score and the attributes wanted."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "comment": {"text": "You are an idiot. Thanks for the edit though."},
                    "requestedAttributes": {"TOXICITY": {}, "INSULT": {}},
                    "spanAnnotations": True,
                    "languages": ["en"],
                }
            ]
        }
    )

    comment: TextEntry = Field(description="The comment to score.")
    context: Context | None = None
    requested_attributes: dict[str, AttributeParameters] = Field(
        description=f"Attribute name -> parameters ({{}} for the defaults); served: "
        f"{', '.join(ATTRIBUTES)}."
    )
    span_annotations: bool | None = Field(
        None, description="Also score each sentence (spanScores per sentence)."
    )
    languages: list[str] | None = Field(
        None, description="ISO 639-1 codes of the comment's languages; only 'en' is served."
    )
    do_not_store: bool | None = Field(
        None, description="Do not store the comment's text (its scores are still logged)."
    )
    client_token: str | None = Field(None, description="Echoed in the response.")
    session_id: str | None = Field(None, description="Accepted (not used).")
    community_id: str | None = Field(None, description="Accepted (not used).")


class Score(_Message):
    """A score value and its type."""

    value: float | None = Field(None, description="The score, 0 to 1.")
    type: str | None = Field(None, description="PROBABILITY.")


class SpanScore(_Message):
    """The score of one span of the comment."""

    begin: int | None = Field(None, description="Start offset, in UTF-16 code units.")
    end: int | None = Field(None, description="End offset (exclusive), in UTF-16 code units.")
    score: Score | None = None


class AttributeScores(_Message):
    """The scores of one attribute: for the whole comment and per span."""

    summary_score: Score | None = None
    span_scores: list[SpanScore] | None = None


class AnalyzeCommentResponse(_Message):
    """The scores of the requested attributes."""

    attribute_scores: dict[str, AttributeScores] | None = Field(
        None,
        description="Attribute name -> its scores (attributes below their threshold left out).",
    )
    languages: list[str] | None = None
    client_token: str | None = None


class SuggestCommentScoreRequest(_Message):
    """`comments:suggestscore`: the scores a person thinks a comment should have."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "comment": {"text": "You are an idiot."},
                    "attributeScores": {"TOXICITY": {"summaryScore": {"value": 1.0}}},
                    "communityId": "forum-42",
                }
            ]
        }
    )

    comment: TextEntry = Field(description="The comment the scores are about.")
    context: Context | None = None
    attribute_scores: dict[str, AttributeScores] = Field(
        description="Attribute name -> the suggested summaryScore (a value of 0.5 or more "
        "means the label applies)."
    )
    languages: list[str] | None = None
    community_id: str | None = Field(
        None,
        description="The community the suggestion comes from (kept with the feedback).",
        max_length=200,
    )
    client_token: str | None = Field(None, description="Echoed in the response.")
    session_id: str | None = Field(None, description="Accepted (not used).")


class SuggestCommentScoreResponse(_Message):
    """The answer to a suggestion: what was understood of it."""

    requested_languages: list[str] | None = None
    client_token: str | None = None


__all__ = [
    "ATTRIBUTES",
    "PLAIN_TEXT",
    "PROBABILITY",
    "SCORE_TYPES",
    "TEXT_TYPES",
    "AnalyzeCommentRequest",
    "AnalyzeCommentResponse",
    "AttributeParameters",
    "AttributeScores",
    "Context",
    "Score",
    "SpanScore",
    "SuggestCommentScoreRequest",
    "SuggestCommentScoreResponse",
    "TextEntry",
]
