"""The REST API (FastAPI) serving the champion, with the Gradio UI mounted at /ui when installed.

`create_app` wires the routes onto a `ServingState` (`toxiguard.serving.state.build_state`
loads the model first); `serve` runs it all under uvicorn. Without the 'ui' extra (gradio) the
API is served alone, and one log line says how to get the UI.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, APIKeyQuery
from starlette.exceptions import HTTPException

from toxiguard import __version__
from toxiguard.errors import MissingExtraError, ToxiguardError, require_extra
from toxiguard.labels import LABELS
from toxiguard.serving import schemas
from toxiguard.serving.docs import add_offline_docs
from toxiguard.serving.explanations import explain_router
from toxiguard.serving.feedback import FeedbackStore, feedback_router
from toxiguard.serving.limits import (
    CLIENT_STATE,
    KeyBackoff,
    LoginBackoff,
    RequestLimits,
    client_address,
    key_id,
)
from toxiguard.serving.local_copy import LOCAL_COPY
from toxiguard.serving.metrics import CONTENT_TYPE
from toxiguard.serving.middleware import (
    UI_PATH,
    ServingMiddleware,
    add_error_handlers,
    new_request_id,
    request_id_of,
)
from toxiguard.serving.perspective.router import discovery_router, perspective_router
from toxiguard.serving.predictor import NoChampionError, registry_client_environment
from toxiguard.serving.review import review_router
from toxiguard.serving.state import ServingState, build_state
from toxiguard.settings import OFFLINE_ENVIRONMENT, Settings, get_settings

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
API_KEY_QUERY = "key"


def _api_key_dependency(settings: Settings, backoff: KeyBackoff | None) -> Any:
    """Return a dependency that checks the API key (X-API-Key header or `key` query parameter),
    locking out an address that sends wrong ones, and names the key for the rate limit."""
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="An API key.")
    query = APIKeyQuery(
        name=API_KEY_QUERY,
        auto_error=False,
        description="An API key, as Perspective's clients send it (`?key=`).",
    )

    def check(
        request: Request,
        from_header: str | None = Security(header),
        from_query: str | None = Security(query),
    ) -> None:
        key = from_header if from_header is not None else from_query
        if key is None:
            raise HTTPException(
                401,
                f"missing API key: send one in the {API_KEY_HEADER} header or the "
                f"'{API_KEY_QUERY}' query parameter",
            )
        address = client_address(request)
        # A locked-out address is refused before its key is looked at, right or wrong: otherwise
        # the lockout would not slow the guessing down.
        refusal = backoff.refusal(address) if backoff is not None else None
        if refusal is not None:
            raise refusal
        if not settings.accepts_api_key(key):
            if backoff is not None:
                backoff.failed(address)
            raise HTTPException(401, "invalid API key")
        if backoff is not None:
            backoff.succeeded(address)
        setattr(request.state, CLIENT_STATE, key_id(key))

    return check


def _shows_details(settings: Settings, backoff: KeyBackoff | None, request: Request) -> bool:
    """Return whether /ready may show its details: a right key from an address not locked out.

    A wrong key counts towards the address's lockout (/ready must not be a way round it); a
    probe without a key stays free, and a locked-out one still gets the bare status.
    """
    key = request.headers.get(API_KEY_HEADER) or request.query_params.get(API_KEY_QUERY)
    if key is None:
        return False
    address = client_address(request)
    if backoff is not None and backoff.locked_for(address):
        return False
    accepted = settings.accepts_api_key(key)
    if backoff is not None:
        (backoff.succeeded if accepted else backoff.failed)(address)
    return accepted


def _add_middleware(app: FastAPI, state: ServingState, backoff: KeyBackoff | None) -> None:
    """Add request ids, timing and the body limits, and the back-off of the UI's login."""
    settings = state.settings
    if settings.ui_enabled and settings.api_key_list and backoff is not None:
        # Added first, so it runs inside ServingMiddleware (request ids, metrics).
        app.add_middleware(LoginBackoff, backoff=backoff, login_path=f"{UI_PATH}/login")
    # Up to 6 bytes of JSON a character (\uXXXX), 8 a text: a bigger body cannot validate, and
    # is refused before it is read and parsed (which runs on the event loop).
    texts = settings.max_texts_per_request
    chars = min(settings.max_request_chars, texts * settings.max_text_chars)
    app.add_middleware(
        ServingMiddleware,
        metrics=state.metrics,
        max_body_bytes=chars * 6 + texts * 8 + 4096,
        # An upload's multipart framing and the UI's other requests fit in the extra MiB.
        ui_max_body_bytes=settings.ui_max_upload_bytes + 1024 * 1024,
    )


def _model_info(state: ServingState) -> schemas.ModelInfo:
    """Return the description of the served model; raise NoChampionError (503) before one."""
    loaded = state.predictor.current  # raises NoChampionError while nothing is served
    info = loaded.info
    metrics = {str(k): float(v) for k, v in (info.get("metrics") or {}).items()}
    return schemas.ModelInfo(
        name=loaded.name,
        version=loaded.version,
        alias=state.predictor.alias,
        aliases=[str(a) for a in info.get("aliases", [])],
        family=loaded.family,
        uri=str(info.get("uri", "")),
        run_id=info.get("run_id"),
        source=loaded.source,
        loaded_at=loaded.loaded_at.isoformat(timespec="seconds"),
        thresholds={
            label: float(t) for label, t in zip(LABELS, loaded.model.thresholds, strict=True)
        },
        metrics=metrics,
    )


def _readiness(state: ServingState) -> schemas.Readiness:
    """Return whether the server can answer, and what is wrong if anything."""
    status = state.status()
    model, registry, log = status["model"], status["registry"], status["prediction_log"]
    problems: list[str] = []
    # The registry answered, but its model failed verification (not an unreachable registry).
    artifact_error = registry.get("artifact_error")
    # The registry answered (or has no database yet) and no version holds the alias.
    champion_missing = registry.get("champion_missing")
    alias = state.predictor.alias
    if model is None and champion_missing:
        problems.append(f"no champion yet in {registry['uri']} (alias {alias}): {champion_missing}")
    elif model is None:
        problems.append(
            f"no model loaded: waiting for a champion from the registry at {registry['uri']} "
            f"(checked every {state.settings.model_poll_seconds:g} s)"
        )
    elif model["source"] == LOCAL_COPY:
        why = (
            "the registry's model failed verification"
            if artifact_error
            else f"the registry at {registry['uri']} has no champion (alias {alias})"
            if champion_missing
            else f"the registry at {registry['uri']} could not be reached at start"
        )
        problems.append(f"serving the local copy of version {model['version']}: {why}")
    if registry["reachable"] is False:
        problems.append(f"registry at {registry['uri']} unreachable: {registry['last_error']}")
    if artifact_error:
        problems.append(f"registry at {registry['uri']}: {artifact_error}")
    if log is not None and not log["healthy"]:
        problems.append(
            f"prediction log: {log['pending']} rows waiting after {log['write_failures']} failed "
            f"writes to {log['database']}: {log['last_error']}"
        )
    if log is not None and log["dropped"]:
        problems.append(f"prediction log: {log['dropped']} rows dropped (buffer full)")
    ready = model is not None
    return schemas.Readiness(
        ready=ready,
        status="not ready" if not ready else "degraded" if problems else "ready",
        problems=problems,
        model=model,
        registry=registry,
        prediction_log=log,
    )


def create_app(state: ServingState) -> FastAPI:
    """Return the FastAPI app for a built state: /v1 API, health, metrics, and the UI at /ui."""
    settings = state.settings

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.inference.start()
        if state.log is not None:
            state.log.start()
        state.predictor.start_polling()
        yield
        state.predictor.stop()
        state.inference.stop()
        if state.log is not None:
            state.log.close(timeout=15)

    # FastAPI's own /docs and /redoc load Swagger UI and ReDoc from a CDN: these are served here.
    app = add_offline_docs(
        FastAPI(
            title="toxiguard",
            version=__version__,
            description="Multi-label toxic comment classification: scores for the six Jigsaw "
            f"labels from the registry's `{settings.champion_alias}` model. UI at "
            f"[{UI_PATH}]({UI_PATH}). `/v1alpha1/comments:analyze` and `:suggestscore` answer as "
            "Google's Perspective API does (attributes TOXICITY, SEVERE_TOXICITY, PROFANITY, "
            "THREAT, INSULT, IDENTITY_ATTACK), with its discovery document at "
            "`/$discovery/rest?version=v1alpha1`.",
            lifespan=lifespan,
            responses={422: {"model": schemas.ErrorResponse}},
            docs_url=None,
            redoc_url=None,
        )
    )
    backoff = (
        KeyBackoff(settings.key_failures_before_lockout)
        if settings.key_failures_before_lockout
        else None
    )
    _add_middleware(app, state, backoff)
    add_error_handlers(app, unavailable=(NoChampionError,))
    limits = RequestLimits(settings)

    dependencies = (
        [Depends(_api_key_dependency(settings, backoff))] if settings.api_key_list else []
    )
    error_responses: dict[int | str, dict[str, Any]] = {
        code: {"model": schemas.ErrorResponse} for code in (401, 413, 422, 429, 503)
    }
    v1 = APIRouter(prefix="/v1", dependencies=dependencies, responses=error_responses)
    request_model = schemas.predict_request_model(
        settings.max_texts_per_request, settings.max_text_chars
    )

    async def predict(body: schemas.PredictRequest, request: Request) -> schemas.PredictResponse:
        """Score comments: six probabilities and the flagged labels for each."""
        limits.admit(request, body.texts)
        result = await state.inference.predict(body.texts)
        request_id = request_id_of(request) or new_request_id()
        state.record(request_id, "api", body.texts, result)
        loaded = result.model
        return schemas.PredictResponse(
            request_id=request_id,
            model=schemas.ModelRef(name=loaded.name, version=loaded.version, family=loaded.family),
            predictions=[
                schemas.Prediction(
                    scores=schemas.label_scores(probabilities),
                    flagged=[label for label, hit in zip(LABELS, flags, strict=True) if hit],
                )
                for probabilities, flags in zip(result.probabilities, result.flags, strict=True)
            ],
        )

    # The request model carries the configured limits, so they are part of the OpenAPI contract.
    predict.__annotations__["body"] = request_model
    v1.add_api_route("/predict", predict, methods=["POST"], response_model=schemas.PredictResponse)

    @v1.get("/model")
    def model_info() -> schemas.ModelInfo:
        """Describe the served model: name, version, alias, thresholds, training metrics."""
        return _model_info(state)

    feedback = FeedbackStore(settings, state.recent.size)
    for router in (
        feedback_router(feedback),
        review_router(state, feedback),
        explain_router(state, limits),
    ):
        v1.include_router(router)
    app.include_router(v1)
    app.include_router(perspective_router(state, feedback, dependencies, limits))
    app.include_router(discovery_router(settings.public_url))

    @app.get("/health")
    def health() -> schemas.Health:
        """Liveness: answers as long as the process runs."""
        return schemas.Health()

    @app.get("/ready", responses={503: {"model": schemas.Readiness}})
    def ready(request: Request) -> JSONResponse:
        """Readiness: a model is loaded; lists problems with the registry or prediction log.

        With API keys set, the details (problems, model, registry, log) need a key; the bare
        `ready` and `status` stay open for probes.
        """
        readiness = _readiness(state)
        body = readiness.model_dump()
        if settings.api_key_list and not _shows_details(settings, backoff, request):
            body = {"ready": readiness.ready, "status": readiness.status}
        return JSONResponse(body, status_code=200 if readiness.ready else 503)

    @app.get("/metrics", response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics."""
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    if settings.ui_enabled:
        _mount_ui(app, state)
    return app


def _mount_ui(app: FastAPI, state: ServingState) -> None:
    """Mount the Gradio UI at /ui, or log one line saying it is off and how to install it."""
    try:
        require_extra("gradio", "ui", f"the UI at {UI_PATH}")
    except MissingExtraError as error:
        logger.warning("UI off, serving the API only: %s", error)
        return
    from toxiguard.serving.ui import mount_ui  # noqa: PLC0415  (gradio is the optional 'ui' extra)

    mount_ui(app, state, UI_PATH)


def create_app_from_environment() -> FastAPI:
    """Return the app for the settings in the environment (for `uvicorn --factory`)."""
    settings = get_settings()
    prepare_environment(settings)
    return create_app(build_state(settings))


def prepare_environment(settings: Settings) -> None:
    """Set the offline and MLflow-client variables the server needs, unless already set."""
    for key, value in {**OFFLINE_ENVIRONMENT, **registry_client_environment(settings)}.items():
        os.environ.setdefault(key, value)


def check_exposure(settings: Settings) -> None:
    """Return when the server may start; warn when it listens beyond loopback without API keys,
    and raise ToxiguardError when keys are required (`require_keys`) and none are set."""
    if settings.api_key_list:
        return
    if settings.require_keys:
        raise ToxiguardError(
            "no API keys set and keys are required (--require-keys, TOXIGUARD_REQUIRE_KEYS): "
            "set TOXIGUARD_API_KEYS to comma-separated keys"
        )
    if not _is_loopback(settings.host):
        logger.warning(
            "serving on %s without API keys: anyone who can reach this address can use the API "
            "and the UI. Set TOXIGUARD_API_KEYS (and --require-keys to refuse to start without "
            "them), or listen on 127.0.0.1.",
            settings.host,
        )


def _is_loopback(host: str) -> bool:
    """Return whether `host` is a loopback address (127.0.0.0/8, ::1, localhost)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def serve(settings: Settings) -> None:
    """Load the champion (or fail), then serve the API and UI until interrupted."""
    check_exposure(settings)
    prepare_environment(settings)
    state = build_state(settings)
    app = create_app(state)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
