"""`GET /v1/review` and `POST /v1/review`: the moderators' review queue and their decisions.

Include the router under the API's /v1 router (so that API keys apply):
`v1.include_router(review_router(state, feedback))`. A decision is stored as feedback (source
"review") with the key id of the API key that made it; the UI's Review tab
(`toxiguard.serving.review_ui`) uses the same two functions, `review_page` and `record_decision`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from toxiguard.labels import LABELS
from toxiguard.monitoring.feedback import FeedbackItem, store_feedback
from toxiguard.monitoring.review import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    UNCERTAIN_MARGIN,
    ReviewItem,
    is_uncertain,
    review_queue,
)
from toxiguard.serving.feedback import MAX_INDEX, FeedbackStore, store_errors_as_503
from toxiguard.serving.limits import CLIENT_STATE
from toxiguard.serving.schemas import ErrorResponse, Label
from toxiguard.serving.state import ServingState

logger = logging.getLogger(__name__)

SOURCE = "review"
_EXAMPLE_SCORES: dict[str, JsonValue] = {
    label: 0.93 if label == "toxic" else 0.1 for label in LABELS
}


class ReviewEntry(BaseModel):
    """One comment waiting for a moderator's decision."""

    request_id: str = Field(description="The request_id of the predict response that scored it.")
    item_index: int = Field(description="Its position in that request's texts (0-based).")
    created_at: datetime = Field(description="When it was scored (UTC).")
    text: str
    scores: dict[str, float] = Field(description="The probability of each label, as logged.")
    flagged: list[str] = Field(description="The labels the model flagged.")
    uncertain: list[str] = Field(
        description="The labels whose score lies near the served model's threshold."
    )
    why: Literal["flagged", "uncertain"] = Field(
        description="'flagged': the model flagged it; 'uncertain': a score is near a threshold."
    )
    model_version: int | None = Field(description="The model version that scored it.")


class ReviewQueueResponse(BaseModel):
    """The queue, newest first, with the thresholds its scores are compared with."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model_version": 3,
                    "thresholds": {label: 0.5 for label in LABELS},
                    "margin": UNCERTAIN_MARGIN,
                    "items": [
                        {
                            "request_id": "3f2a...",
                            "item_index": 0,
                            "created_at": "2026-12-02T08:00:00Z",
                            "text": "You are an idiot",
                            "scores": _EXAMPLE_SCORES,
                            "flagged": ["toxic"],
                            "uncertain": [],
                            "why": "flagged",
                            "model_version": 3,
                        }
                    ],
                }
            ]
        }
    )

    model_version: int = Field(description="The served model, whose thresholds these are.")
    thresholds: dict[str, float] = Field(description="The served model's threshold per label.")
    margin: float = Field(
        description="'Uncertain' means |logit(score) - logit(threshold)| is below this."
    )
    items: list[ReviewEntry]


class ReviewDecision(BaseModel):
    """A moderator's decision: the complete set of labels that apply to one logged comment."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"request_id": "3f2a...", "item_index": 0, "labels": ["toxic", "insult"]},
                {"request_id": "3f2a...", "item_index": 1, "labels": []},
            ]
        },
    )

    request_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[0-9A-Za-z_.:-]+$",
        description="The request_id of the queue entry.",
    )
    item_index: int = Field(0, ge=0, le=MAX_INDEX, description="The item_index of the entry.")
    labels: list[Label] = Field(
        description="Every label that applies (the others do not); an empty list means clean."
    )


class ReviewStored(BaseModel):
    """The decision as stored."""

    request_id: str
    item_index: int
    labels: dict[str, int] = Field(description="0/1 per label, as stored.")
    reviewer: str | None = Field(
        description="The key id of the API key that decided (never the key); null without keys."
    )


def review_entry(item: ReviewItem, thresholds: dict[str, float]) -> ReviewEntry:
    """Return the API's view of a queue item, naming the labels near their threshold."""
    return ReviewEntry(
        request_id=item.request_id,
        item_index=item.item_index,
        created_at=item.created_at,
        text=item.text,
        scores=item.scores,
        flagged=item.flagged,
        uncertain=[
            label for label in LABELS if is_uncertain(item.scores[label], thresholds[label])
        ],
        why=item.why,
        model_version=item.model_version,
    )


def review_page(
    state: ServingState, holder: FeedbackStore, label: str | None, limit: int
) -> ReviewQueueResponse:
    """Return the queue against the served model's thresholds (503 if the store is down)."""
    loaded = state.predictor.current
    thresholds = {
        label: float(value) for label, value in zip(LABELS, loaded.model.thresholds, strict=True)
    }
    with store_errors_as_503("review queue not read"):
        items = review_queue(holder.get(), thresholds, label=label, limit=limit)
    return ReviewQueueResponse(
        model_version=loaded.version,
        thresholds=thresholds,
        margin=UNCERTAIN_MARGIN,
        items=[review_entry(item, thresholds) for item in items],
    )


def record_decision(
    holder: FeedbackStore,
    request_id: str,
    item_index: int,
    labels: Sequence[str],
    reviewer: str | None,
) -> ReviewStored:
    """Store a decision as feedback; return it (404 unknown prediction, 503 store down)."""
    holder.check_predicted(request_id, item_index)
    item = FeedbackItem.from_names(request_id, item_index, labels)
    with store_errors_as_503("review decision not stored"):
        store_feedback(holder.get(), [item], SOURCE, reviewer=reviewer)
    return ReviewStored(
        request_id=request_id,
        item_index=item_index,
        labels={label: int(value or 0) for label, value in zip(LABELS, item.labels, strict=True)},
        reviewer=reviewer,
    )


def review_router(state: ServingState, holder: FeedbackStore) -> APIRouter:
    """Return the router with GET and POST /review (mount it under /v1)."""
    router = APIRouter(tags=["review"])
    errors: dict[int | str, dict[str, type[ErrorResponse]]] = {503: {"model": ErrorResponse}}

    @router.get("/review", response_model=ReviewQueueResponse, responses=errors)
    def get_review(
        label: Annotated[
            Label | None, Query(description="Only comments flagged or uncertain on this label.")
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="At most this many comments.")
        ] = DEFAULT_LIMIT,
    ) -> ReviewQueueResponse:
        """List comments to review, newest first: flagged ones, and some near a threshold.

        Only comments whose text was logged and that have no feedback yet; uncertain ones take
        up to a quarter of the page (more when few are flagged).
        """
        return review_page(state, holder, label, limit)

    @router.post(
        "/review", response_model=ReviewStored, responses={404: {"model": ErrorResponse}, **errors}
    )
    def post_review(body: ReviewDecision, request: Request) -> ReviewStored:
        """Store a moderator's decision (the labels that apply) as feedback, naming the API key.

        The comment leaves the queue, and its labels count in live quality and retraining.
        """
        reviewer = getattr(request.state, CLIENT_STATE, None)
        return record_decision(holder, body.request_id, body.item_index, body.labels, reviewer)

    return router


__all__ = [
    "ReviewDecision",
    "ReviewEntry",
    "ReviewQueueResponse",
    "ReviewStored",
    "record_decision",
    "review_page",
    "review_router",
]
