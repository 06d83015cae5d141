"""`POST /v1/feedback`: the true labels of a logged prediction, e.g. from a moderator.

Include the router under the API's /v1 router (so that API keys apply):
`v1.include_router(feedback_router(FeedbackStore(settings, state.recent.size)))`.
The Perspective-compatible `comments:suggestscore` writes through the same `FeedbackStore`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from toxiguard.labels import LABELS
from toxiguard.monitoring import store
from toxiguard.monitoring.feedback import (
    FeedbackItem,
    logged_predictions,
    logged_request_size,
    store_feedback,
)
from toxiguard.serving.schemas import ErrorResponse, Label
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)

MAX_INDEX = 2**31 - 1  # the store's INTEGER column
UNAVAILABLE = "the monitoring store is unavailable; try again"


@contextmanager
def store_errors_as_503(what: str) -> Iterator[None]:
    """Run the block; a failure of the store in it is logged as `what` and becomes a 503."""
    try:
        yield
    except SQLAlchemyError as error:
        logger.warning("%s: %s", what, error)
        raise HTTPException(503, UNAVAILABLE) from error


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


#: How many comments a request scored, from what the server remembers (None: not known).
RequestSize = Callable[[str], int | None]


class FeedbackStore:
    """The monitoring store, connected and migrated on first use.

    `recent` tells the size of requests this server answered lately, whose predictions may
    not be in the log yet; older requests are looked up in the log.
    """

    def __init__(self, settings: Settings, recent: RequestSize | None = None) -> None:
        self.settings = settings
        self.recent = recent
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
        with store_errors_as_503("feedback not stored"):
            engine = self.get()
            store_feedback(engine, items, source=source)
            return logged_predictions(
                engine, [(item.request_id, item.item_index) for item in items]
            )

    def check_predicted(self, request_id: str, item_index: int) -> None:
        """Raise a 404 for a request id never answered, a 422 for a position past its end."""
        size = self.recent(request_id) if self.recent is not None else None
        if size is None:
            with store_errors_as_503("feedback not checked"):
                size = logged_request_size(self.get(), request_id)
        if size is None:
            raise HTTPException(
                404,
                f"no prediction has request_id {request_id!r}: send the request_id of a predict "
                "response (a request answered just before a restart may take a few seconds to "
                "reach the prediction log)",
            )
        if item_index >= size:
            raise HTTPException(
                422,
                f"item_index {item_index} is past the end of request {request_id!r}, which "
                f"scored {size} comment(s): item_index 0 to {size - 1}",
            )


def feedback_router(holder: FeedbackStore) -> APIRouter:
    """Return the router with POST /feedback (mount it under /v1)."""
    router = APIRouter(tags=["feedback"])

    @router.post(
        "/feedback",
        response_model=FeedbackResponse,
        responses={404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    )
    def post_feedback(body: FeedbackRequest) -> FeedbackResponse:
        """Store the true labels of a prediction; monitoring uses them for live quality.

        The request id must be one this API answered (404 otherwise) and the item index within
        that request's texts (422 otherwise).
        """
        holder.check_predicted(body.request_id, body.item_index)
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
