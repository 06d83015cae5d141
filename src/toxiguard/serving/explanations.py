"""`POST /v1/explain`: which words of a comment made each label's score.

The served model's `models.explain` explanation (exact logit contributions for the TF-IDF
families, occlusion for the transformer and the blend), as JSON with character offsets in both
Python code points and UTF-16 code units (JavaScript's). Explanations are not written to the
prediction log: they are looked at by people, not traffic to monitor. One explanation runs at a
time (an occlusion explanation scores up to 50 variants of the comment), beside the inference
thread that serves predictions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.concurrency import run_in_threadpool

from toxiguard.labels import LABELS
from toxiguard.models.explain import MAX_UNITS, Explanation, explain
from toxiguard.serving.limits import RequestLimits
from toxiguard.serving.middleware import new_request_id, request_id_of
from toxiguard.serving.perspective.spans import Utf16Offsets
from toxiguard.serving.schemas import Label, LabelScores, ModelRef, comment_text, label_scores
from toxiguard.serving.state import ServingState


class ExplainRequest(BaseModel):
    """A comment to explain; the limit on its length comes from the settings."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "Thanks for the edit, you idiot."}]},
    )

    text: str = Field(min_length=1, description="The comment to explain.")
    labels: list[Label] | None = Field(
        None, description="The labels to explain (default: all six)."
    )
    max_units: int = Field(
        MAX_UNITS,
        ge=1,
        le=MAX_UNITS,
        description="Occlusion only: at most this many units (tokens, or groups of adjacent "
        "tokens in a longer comment) are removed in turn.",
    )


def explain_request_model(max_chars: int) -> type[ExplainRequest]:
    """Return an ExplainRequest subclass enforcing (and documenting) the text length limit."""
    model: type[ExplainRequest] = create_model(
        "ExplainRequest",
        __base__=ExplainRequest,
        __doc__=ExplainRequest.__doc__,
        text=(
            comment_text(max_chars),
            Field(description=f"The comment to explain, 1 to {max_chars} characters."),
        ),
    )
    return model


class SpanContribution(BaseModel):
    """One token's (or group of tokens') contribution to a label's score."""

    begin: int = Field(description="Start offset in the text, in code points (Python indices).")
    end: int = Field(description="End offset (exclusive), in code points.")
    begin_utf16: int = Field(description="Start offset in UTF-16 code units (JavaScript indices).")
    end_utf16: int = Field(description="End offset (exclusive) in UTF-16 code units.")
    text: str = Field(description="The span's text.")
    contribution: float = Field(description="Its contribution, in the explanation's unit.")


class LabelExplanation(BaseModel):
    """Why one label scored what it did."""

    score: float = Field(description="The label's probability.")
    threshold: float = Field(description="The model's decision threshold for the label.")
    flagged: bool
    baseline: float | None = Field(
        description="linear-exact: the intercept (logit), so baseline plus the contributions is "
        "the logit; occlusion: the probability with every token removed. None for a label that "
        "had one class only in training (its logit is infinite)."
    )
    spans: list[SpanContribution] = Field(
        description="Every span with a non-zero contribution, in text order."
    )


class ExplainResponse(BaseModel):
    """The contributions behind each requested label's score."""

    request_id: str
    model: ModelRef
    method: str = Field(description="'linear-exact' (TF-IDF families) or 'occlusion'.")
    unit: str = Field(description="'logit' (linear-exact) or 'probability' (occlusion).")
    scores: LabelScores
    flagged: list[str]
    explanations: dict[str, LabelExplanation]


def label_explanations(
    explanation: Explanation, thresholds: Sequence[float], labels: Sequence[str] | None = None
) -> dict[str, LabelExplanation]:
    """Return each requested label's score, threshold and non-zero contributions by span."""
    units = Utf16Offsets(explanation.text)
    explained: dict[str, LabelExplanation] = {}
    for label in labels or LABELS:
        column = LABELS.index(label)
        score = float(explanation.probabilities[column])
        spans = [
            SpanContribution(
                begin=token.begin,
                end=token.end,
                begin_utf16=units(token.begin),
                end_utf16=units(token.end),
                text=token.text,
                contribution=float(value),
            )
            for token, value in zip(
                explanation.tokens, explanation.contributions[:, column], strict=True
            )
            if value != 0
        ]
        explained[label] = LabelExplanation(
            score=score,
            threshold=thresholds[column],
            flagged=score >= thresholds[column],
            baseline=float(baseline)
            if np.isfinite(baseline := explanation.baseline[column])
            else None,
            spans=spans,
        )
    return explained


def explain_router(state: ServingState, limits: RequestLimits) -> APIRouter:
    """Return the router with POST /explain (mount it under /v1), under the request limits."""
    router = APIRouter(tags=["explanations"])
    one_at_a_time = asyncio.Semaphore(1)
    request_model = explain_request_model(state.settings.max_text_chars)

    async def post_explain(body: ExplainRequest, request: Request) -> ExplainResponse:
        """Explain a comment's scores: each word's contribution to each label, with offsets."""
        limits.admit(request, [body.text])
        loaded = state.predictor.current
        async with one_at_a_time:
            explanation = await run_in_threadpool(
                explain, loaded.model.model, body.text, max_units=body.max_units
            )
        thresholds = [float(t) for t in loaded.model.thresholds]
        explained = label_explanations(explanation, thresholds, body.labels)
        flags = explanation.probabilities >= loaded.model.thresholds
        return ExplainResponse(
            request_id=request_id_of(request) or new_request_id(),
            model=ModelRef(name=loaded.name, version=loaded.version, family=loaded.family),
            method=explanation.method,
            unit=explanation.unit,
            scores=label_scores(explanation.probabilities),
            flagged=[label for label, hit in zip(LABELS, flags, strict=True) if hit],
            explanations=explained,
        )

    post_explain.__annotations__["body"] = request_model
    router.add_api_route("/explain", post_explain, methods=["POST"], response_model=ExplainResponse)
    return router


__all__ = ["ExplainRequest", "ExplainResponse", "explain_router", "label_explanations"]
