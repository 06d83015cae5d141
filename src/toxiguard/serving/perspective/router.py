"""The Perspective-compatible routes: `comments:analyze`, `comments:suggestscore` and the
discovery document that Google's generated clients read.

`perspective_router` is included with the API-key dependencies (keys may come as `?key=`, as
Perspective clients send them, or in the X-API-Key header); `discovery_router` is open, as
Google's discovery documents are. Refusals are 400 INVALID_ARGUMENT in Google's error shape
(`serving.middleware` gives every error under `/v1alpha1/` that shape); before the first
champion is served, scoring is 503 UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.params import Depends
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from toxiguard.monitoring.feedback import FeedbackItem
from toxiguard.serving.feedback import FeedbackStore
from toxiguard.serving.limits import RequestLimits
from toxiguard.serving.middleware import error_response, new_request_id, request_id_of
from toxiguard.serving.perspective.analysis import (
    InvalidArgument,
    analyze_response,
    checked_languages,
    checked_text,
    requested_attributes,
    suggested_labels,
    texts_to_score,
)
from toxiguard.serving.perspective.discovery import API_NAME, API_VERSION, discovery_document
from toxiguard.serving.perspective.schemas import (
    AnalyzeCommentRequest,
    AnalyzeCommentResponse,
    SuggestCommentScoreRequest,
    SuggestCommentScoreResponse,
)
from toxiguard.serving.state import ServingState

#: Response header naming the model version behind the scores (Perspective's body has no field).
MODEL_VERSION_HEADER = "X-Toxiguard-Model-Version"
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "INVALID_ARGUMENT, in Google's error shape"},
    413: {"description": "the texts to score are over max_request_chars, in Google's shape"},
    429: {"description": "RESOURCE_EXHAUSTED (rate limit or lockout), with Retry-After"},
    503: {"description": "UNAVAILABLE: no champion served yet, in Google's shape"},
}


def _refusal(error: InvalidArgument, request: Request) -> JSONResponse:
    """Return the 400 answer of a refused request, naming the field when known."""
    details = [{"location": error.field, "message": error.message}] if error.field else []
    return error_response(400, error.message, request, details=details)


def perspective_router(
    state: ServingState,
    feedback: FeedbackStore,
    dependencies: Sequence[Depends],
    limits: RequestLimits,
) -> APIRouter:
    """Return the router with POST /v1alpha1/comments:analyze and comments:suggestscore, under
    the request limits (a refusal is a 413, or a 429 RESOURCE_EXHAUSTED with Retry-After)."""
    settings = state.settings
    router = APIRouter(prefix=f"/{API_VERSION}", tags=["perspective"], dependencies=dependencies)

    @router.post(
        "/comments:analyze",
        response_model=AnalyzeCommentResponse,
        response_model_exclude_none=True,
        responses=_ERRORS,
    )
    async def analyze(body: AnalyzeCommentRequest, request: Request, response: Response) -> Any:
        """Score a comment for Perspective attributes (per sentence with spanAnnotations)."""
        try:
            wanted = requested_attributes(body)
            languages = checked_languages(body.languages)
            text = checked_text(body.comment, settings.max_text_chars)
        except InvalidArgument as error:
            return _refusal(error, request)
        texts, spans = texts_to_score(
            text, bool(body.span_annotations), settings.max_texts_per_request
        )
        limits.admit(request, texts)  # what is scored: the comment, and its sentences for spans
        result = await state.inference.predict(texts)
        request_id = request_id_of(request) or new_request_id()
        comment_only = replace(
            result, probabilities=result.probabilities[:1], flags=result.flags[:1]
        )
        state.record(
            request_id, "perspective", [text], comment_only, store_texts=not body.do_not_store
        )
        response.headers[MODEL_VERSION_HEADER] = str(result.model.version)
        return analyze_response(body, wanted, languages, text, spans, result.probabilities)

    @router.post(
        "/comments:suggestscore",
        response_model=SuggestCommentScoreResponse,
        response_model_exclude_none=True,
        responses=_ERRORS,
    )
    async def suggestscore(body: SuggestCommentScoreRequest, request: Request) -> Any:
        """Store suggested scores as feedback (0.5 or more: the label applies)."""
        try:
            labels = suggested_labels(body)
            languages = checked_languages(body.languages)
            text = checked_text(body.comment, settings.max_text_chars)
        except InvalidArgument as error:
            return _refusal(error, request)
        # Feedback is keyed by a logged prediction: the suggested comment is scored and logged
        # under this request's id, so live quality compares the suggestion with the model.
        limits.admit(request, [text])
        result = await state.inference.predict([text])
        request_id = request_id_of(request) or new_request_id()
        state.record(request_id, "suggestion", [text], result)
        item = FeedbackItem(request_id, 0, labels, community_id=body.community_id)
        await run_in_threadpool(feedback.store, [item], "perspective")
        return SuggestCommentScoreResponse(
            requested_languages=languages, client_token=body.client_token
        )

    return router


def discovery_router(public_url: str | None) -> APIRouter:
    """Return the open routes serving the discovery document (both of Google's URL forms)."""
    router = APIRouter(tags=["perspective"])

    def document(request: Request) -> dict[str, Any]:
        return discovery_document(public_url or str(request.base_url))

    @router.get("/$discovery/rest")
    def discovery(request: Request, version: str = API_VERSION) -> Any:
        """Google's discovery document of the Perspective API (for generated clients)."""
        if version != API_VERSION:
            return error_response(
                404, f"no API version {version!r}; serving {API_VERSION}", request
            )
        return document(request)

    @router.get(f"/discovery/v1/apis/{API_NAME}/{API_VERSION}/rest")
    def discovery_v1(request: Request) -> Any:
        """The same discovery document at Google's older discovery URL."""
        return document(request)

    return router


__all__ = ["MODEL_VERSION_HEADER", "discovery_router", "perspective_router"]
