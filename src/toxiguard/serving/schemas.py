"""Request and response models of the REST API: together they are the OpenAPI contract."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model

from toxiguard.labels import LABELS

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
#: A label name, as an enum in the OpenAPI schema.
Label = Literal["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


def has_words(text: str) -> str:
    """Return the text, or raise ValueError when it is empty or only whitespace."""
    if not text.strip():
        # Training refuses such comments (data.validation), so no model has learnt a score
        # for them: a tfidf-lr champion gave "" toxic 0.374, its intercept.
        raise ValueError("the text is empty or only whitespace: there is nothing to score")
    return text


def comment_text(max_chars: int) -> Any:
    """Return the type of one comment: 1 to `max_chars` characters, not only whitespace."""
    return Annotated[
        str,
        StringConstraints(min_length=1, max_length=max_chars),
        AfterValidator(has_words),
        Field(json_schema_extra={"pattern": r"\S"}),  # what has_words checks, for clients
    ]


class PredictRequest(BaseModel):
    """Comments to score. The limits on their number and length come from the settings."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"texts": ["Thanks for the edit!", "You are an idiot."]}]},
    )

    texts: list[str] = Field(min_length=1, description="The comments to score, one string each.")


def predict_request_model(max_texts: int, max_chars: int) -> type[PredictRequest]:
    """Return a PredictRequest subclass enforcing (and documenting) these limits."""
    text = comment_text(max_chars)
    model: type[PredictRequest] = create_model(
        "PredictRequest",
        __base__=PredictRequest,
        __doc__=PredictRequest.__doc__,
        texts=(
            list[text],  # type: ignore[valid-type]
            Field(
                min_length=1,
                max_length=max_texts,
                description=f"The comments to score: 1 to {max_texts} strings of at most "
                f"{max_chars} characters each, none empty or only whitespace.",
            ),
        ),
    )
    return model


class ModelRef(BaseModel):
    """Which registered model made a prediction."""

    name: str | None = Field(description="Registered model name.")
    version: int | None = Field(description="Registered model version.")
    family: str = Field(description="Model family, e.g. tfidf-lr.")


class LabelScores(BaseModel):
    """One probability per label."""

    model_config = ConfigDict(extra="forbid")

    toxic: Probability
    severe_toxic: Probability
    obscene: Probability
    threat: Probability
    insult: Probability
    identity_hate: Probability


class Prediction(BaseModel):
    """The model's verdict on one comment."""

    scores: LabelScores = Field(description="Probability of each label.")
    flagged: list[str] = Field(
        description="Labels whose probability reaches the model's threshold for that label."
    )


class PredictResponse(BaseModel):
    """The predictions for a request, in the order of its texts."""

    request_id: str = Field(description="Identifies this request in the prediction log.")
    model: ModelRef
    predictions: list[Prediction]


class ModelInfo(BaseModel):
    """The model being served and where it came from."""

    name: str | None
    version: int | None
    alias: str = Field(description="Registry alias the server follows.")
    aliases: list[str] = Field(description="Aliases the version held when it was loaded.")
    family: str
    uri: str = Field(description="Registry URI the model was loaded from.")
    run_id: str | None
    source: str = Field(
        description="'registry', or 'local-copy' when the registry was unreachable."
    )
    loaded_at: str
    thresholds: dict[str, float] = Field(description="Decision threshold of each label.")
    metrics: dict[str, float] = Field(description="Metrics of the training run.")


class Health(BaseModel):
    """Liveness: the process answers."""

    status: str = "ok"


class Readiness(BaseModel):
    """Whether a model is loaded, and the state of the registry and the prediction log."""

    ready: bool
    status: str = Field(description="'ready', 'degraded' (serving, with a problem) or 'not ready'.")
    # The details below are left out, when API keys are set, for a request without a key.
    problems: list[str] | None = None
    model: dict[str, Any] | None = None
    registry: dict[str, Any] | None = None
    prediction_log: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """What went wrong with a request."""

    code: str = Field(description="Machine-readable kind of error, e.g. invalid_request.")
    message: str = Field(description="What is wrong, for people.")
    details: list[dict[str, Any]] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    """The body of every 4xx (and, should one ever happen, 5xx) answer."""

    error: ErrorBody
    request_id: str | None = None


def label_scores(values: Any) -> LabelScores:
    """Return LabelScores from six probabilities in label order."""
    return LabelScores(**{label: float(v) for label, v in zip(LABELS, values, strict=True)})
