"""`POST /v1/feedback`: the true labels of a logged prediction, e.g. from a moderator.

Include the router under the API's /v1 router (so that API keys apply):
`v1.include_router(feedback_router(FeedbackStore(settings)))`. The Perspective-compatible
`comments:suggestscore` writes through the same `FeedbackStore`.
"""

from __future__ import annotations

import logging
import threading

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from toxiguard.labels import LABELS
from toxiguard.monitoring import store
from toxiguard.monitoring.feedback import FeedbackItem, logged_predictions, store_feedback
from toxiguard.serving.schemas import Label
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)

MAX_INDEX = 2**31 - 1  # the store's INTEGER column


class FeedbackRequest(BaseModel):
    """The true labels of one prediction, named by its request id and position in the request."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"request_id": "3f2a...", "item_index": 0, "labels": ["toxic", "insult"]}]
        },
    )

    request_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[0-9A-Za-z_.:-]+$",
        description="The request_id of the predict response.",
    )
    item_index: int = Field(
        0,
        ge=0,
        le=MAX_INDEX,
        description="Position of the comment in that request's texts (0-based).",
    )
    labels: list[Label] = Field(
        description="The labels that truly apply; an empty list means the comment is clean."
    )


class FeedbackResponse(BaseModel):
    """What was stored."""

    request_id: str
    item_index: int
    labels: dict[str, int] = Field(description="0/1 per label, as stored.")
    prediction_logged: bool = Field(
        description="Whether the prediction is in the log yet (the log is written in batches, "
        "so a very recent one may not be); the feedback is stored either way."
    )


class FeedbackStore:
    """The monitoring store, connected and migrated on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: Engine | None = None
        self.lock = threading.Lock()

    def get(self) -> Engine:
        """Return the engine, creating it and upgrading the schema the first time."""
        with self.lock:
            if self.engine is None:
                engine = store.make_engine(store.database_url(self.settings))
                store.upgrade_schema(engine)
                self.engine = engine
            return self.engine

    def store(self, items: list[FeedbackItem], source: str) -> set[tuple[str, int]]:
        """Store feedback; return which items' predictions are logged (503 if the store is down)."""
        try:
            engine = self.get()
            store_feedback(engine, items, source=source)
            return logged_predictions(
                engine, [(item.request_id, item.item_index) for item in items]
            )
        except SQLAlchemyError as error:
            logger.warning("feedback not stored: %s", error)
            raise HTTPException(503, "the monitoring store is unavailable; try again") from error


def feedback_router(holder: FeedbackStore) -> APIRouter:
    """Return the router with POST /feedback (mount it under /v1)."""
    router = APIRouter(tags=["feedback"])

    @router.post("/feedback", response_model=FeedbackResponse)
    def post_feedback(body: FeedbackRequest) -> FeedbackResponse:
        """Store the true labels of a prediction; monitoring uses them for live quality."""
        item = FeedbackItem.from_names(body.request_id, body.item_index, body.labels)
        logged = bool(holder.store([item], source="api"))
        return FeedbackResponse(
            request_id=item.request_id,
            item_index=item.item_index,
            labels={
                label: int(value or 0) for label, value in zip(LABELS, item.labels, strict=True)
            },
            prediction_logged=logged,
        )

    return router


__all__ = ["FeedbackRequest", "FeedbackResponse", "FeedbackStore", "feedback_router"]
