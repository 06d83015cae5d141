"""HTTP plumbing of the API: request ids, body limit, timing, and one JSON shape for every error.

Errors under the Perspective-compatible paths (`GOOGLE_PATHS`) take Google's shape instead
(`{"error": {"code", "message", "status", "details"}}`), which Google's client libraries parse,
and a request that does not validate is a 400 INVALID_ARGUMENT there, as on Perspective.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from toxiguard.serving import schemas
from toxiguard.serving.metrics import ServingMetrics

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
UI_PATH = "/ui"
_ENDPOINTS = {
    "/v1/predict",
    "/v1/explain",
    "/v1/feedback",
    "/v1/model",
    "/v1alpha1/comments:analyze",
    "/v1alpha1/comments:suggestscore",
    "/$discovery/rest",
    "/health",
    "/ready",
    "/metrics",
    "/docs",
    "/openapi.json",
}
#: Paths answered in Google's error shape: the Perspective API and its discovery documents.
GOOGLE_PATHS = ("/v1alpha1/", "/$discovery/", "/discovery/")
_GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


class _BodyTooLargeError(HTTPException):
    """The body streamed in (chunked, without Content-Length) is bigger than the limit.

    An HTTPException, because FastAPI turns any other error raised while it reads a body into
    a 400 ("error parsing the body"); this one it re-raises, and it is answered as a 413.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the limit of {limit} bytes")


def new_request_id() -> str:
    """Return a fresh request id (32 hex digits)."""
    return uuid.uuid4().hex


def google_error_response(
    status: int, message: str, details: list[dict[str, Any]], **extra: Any
) -> JSONResponse:
    """Return an error in Google's shape; `details` ({location, message}) become violations, and a
    429's Retry-After header a RetryInfo, as Google's quota errors carry."""
    status = 400 if status == 422 else status
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _GOOGLE_STATUSES.get(status, "INTERNAL" if status >= 500 else "UNKNOWN"),
    }
    retry_after = (extra.get("headers") or {}).get("Retry-After")
    if status == 429 and retry_after is not None:
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after}s"}
        ]
    elif details:
        violations = [
            {"field": str(d.get("location", "")), "description": str(d.get("message", ""))}
            for d in details
        ]
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}
        ]
    return JSONResponse({"error": error}, status_code=status, **extra)


def error_response(
    status: int, message: str, request: Request | None, **extra: Any
) -> JSONResponse:
    """Return the JSON error answer every failure gets (Google's shape on `GOOGLE_PATHS`)."""
    if request is not None and request.scope["path"].startswith(GOOGLE_PATHS):
        return google_error_response(status, message, extra.pop("details", []), **extra)
    body = schemas.ErrorResponse(
        error=schemas.ErrorBody(
            code=_STATUS_CODES.get(status, "server_error" if status >= 500 else "error"),
            message=message,
            details=extra.pop("details", []),
        ),
        request_id=request_id_of(request) if request is not None else None,
    )
    return JSONResponse(body.model_dump(), status_code=status, **extra)


def request_id_of(request: Request) -> str | None:
    """Return the id the middleware gave this request."""
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value is not None else None


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Return a one-line summary and JSON-safe details of request validation errors."""
    details: list[dict[str, Any]] = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        detail = {"location": ".".join(location) or "body", "message": error.get("msg", "")}
        detail["type"] = error.get("type", "")
        details.append(detail)
    if any(d["type"] == "json_invalid" for d in details):
        return "the request body is not valid JSON", details
    shown = "; ".join(f"{d['location']}: {d['message']}" for d in details[:5])
    more = f" (+{len(details) - 5} more)" if len(details) > 5 else ""
    return f"invalid request: {shown}{more}", details


class ServingMiddleware:
    """Gives each request an id, limits body size, times and counts it, turns crashes into JSON."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: ServingMetrics,
        max_body_bytes: int,
        ui_max_body_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        # The UI takes file uploads: its own limit (None: none).
        self.ui_max_body_bytes = ui_max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one HTTP request (other scopes pass through)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope["path"]
        endpoint = path if path in _ENDPOINTS else UI_PATH if path.startswith(UI_PATH) else "other"
        started = time.perf_counter()
        status = 500
        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        limit = self.ui_max_body_bytes if path.startswith(UI_PATH) else self.max_body_bytes
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request" and limit is not None:
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLargeError(limit)
            return message

        try:
            refusal = self._refusal(scope, limit) if limit is not None else None
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
            else:
                await self.app(scope, receive_limited, send_with_id)
        except _BodyTooLargeError:
            if started_response:
                raise
            response = error_response(
                413, f"request body over the limit of {limit} bytes", Request(scope)
            )
            await response(scope, receive, send_with_id)
        except Exception:
            logger.exception(
                "unhandled error in %s %s (request %s)", scope["method"], path, request_id
            )
            if started_response:
                raise
            response = error_response(
                500, "internal server error; see the server log", Request(scope)
            )
            await response(scope, receive, send_with_id)
        finally:
            self.metrics.observe_request(
                endpoint, scope["method"], status, time.perf_counter() - started
            )

    def _refusal(self, scope: Scope, limit: int) -> JSONResponse | None:
        """Return a 400/413 answer when the declared body size is invalid or too big, else None."""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    return error_response(400, "invalid Content-Length header", Request(scope))
                if size > limit:
                    return error_response(
                        413,
                        f"request body of {size} bytes is over the limit of {limit} bytes",
                        Request(scope),
                    )
        return None


def add_error_handlers(app: FastAPI, unavailable: tuple[type[Exception], ...] = ()) -> None:
    """Make every error a JSON body of the same shape; the `unavailable` errors (nothing to
    serve yet) are answered 503 with their message."""

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, details = _validation_message(list(exc.errors()))
        return error_response(422, message, request, details=details)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        # A limit's refusal (serving.limits) names the limit in its details.
        details = getattr(exc, "details", [])
        return error_response(
            exc.status_code, str(exc.detail), request, headers=exc.headers, details=details
        )

    async def unavailable_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(503, str(exc), request)

    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    for error in unavailable:
        app.add_exception_handler(error, unavailable_error)
