"""One settings object for the whole system, read from the environment (TOXIGUARD_*) or .env."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

OFFLINE_ENVIRONMENT: dict[str, str] = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MLFLOW_ENABLE_TELEMETRY": "false",
    "DO_NOT_TRACK": "1",
}


class Settings(BaseSettings):
    """Every path, URI, threshold and port of toxiguard; defaults run everything embedded."""

    model_config = SettingsConfigDict(
        env_prefix="TOXIGUARD_", env_file=".env", extra="ignore", populate_by_name=True
    )

    home: Path = Field(Path(".toxiguard"), description="Where embedded state lives.")

    # data
    seed: int = Field(42, description="Seed for splits and models.")
    validation_size: float = Field(0.1, gt=0, lt=0.5, description="Share of rows for validation.")
    test_size: float = Field(0.1, gt=0, lt=0.5, description="Share of rows for the test split.")

    # tracking and registry
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "TOXIGUARD_MLFLOW_TRACKING_URI"),
        description="MLflow tracking server; default sqlite under home.",
    )
    experiment_name: str = "toxiguard"
    registered_model_name: str = "toxiguard"
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    promotion_margin: float = Field(
        0.0, ge=0, description="Mean test ROC-AUC a new version must add over the champion."
    )
    promotion_bias_margin: float = Field(
        0.01,
        ge=0,
        description="Final bias score (on the test split's comments) a new version may "
        "lose against the champion and still be promoted.",
    )
    promotion_robustness_margin: float = Field(
        0.01,
        ge=0,
        description="Worst mean ROC-AUC under an obfuscation a new version may lose against the "
        "champion and still be promoted.",
    )
    audit_robustness_rows: int = Field(
        2000,
        gt=0,
        description="Test comments (a seeded sample) each obfuscation of the audit perturbs; "
        "the audit scores this many times the number of obfuscations.",
    )
    blend_tfidf_members: int = Field(
        3,
        ge=1,
        description="A training job's blend: the transformer and this many of the job's best "
        "TF-IDF models by validation ROC-AUC (benchmarks/README.md: 3 beat 1 by 0.0008).",
    )
    promotion_min_test_rows: int = Field(
        200,
        gt=0,
        description="Fewest test comments the champion has not seen (in training or validation) "
        "for the gate to compare; with fewer, the new version stays challenger.",
    )
    threshold_min_decisions: int = Field(
        30,
        ge=1,
        description="`toxiguard thresholds suggest`: positive and negative moderator decisions "
        "a label needs, at least, for a threshold from them (fewer: the label keeps its own).",
    )
    allow_unverified_models: bool = Field(
        False,
        description="Load model directories saved before model manifests existed (no "
        "toxiguard_manifest.json), unverified; off: they are refused (docs/model-integrity.md).",
    )

    # monitoring store and prediction log
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite under home.")
    log_texts: bool = Field(
        True,
        description="Store the comment text in the prediction log; when false (privacy), only "
        "its statistics.",
    )
    log_batch_size: int = Field(
        500, gt=0, description="Most prediction-log rows written in one database transaction."
    )
    log_flush_seconds: float = Field(
        0.5, gt=0, description="Longest wait before buffered prediction-log rows are written."
    )
    log_buffer_rows: int = Field(
        200_000,
        gt=0,
        description="Most prediction-log rows kept in memory when the spool refuses them (full, "
        "disk full, or off); beyond this the oldest are dropped (and counted).",
    )
    log_buffer_bytes: int = Field(
        256 * 1024 * 1024,
        gt=0,
        description="Most bytes of prediction-log rows kept in memory when the spool refuses "
        "them; beyond this the oldest are dropped (and counted).",
    )
    log_spool_bytes: int = Field(
        1024**3,
        ge=0,
        description="Most bytes of unwritten prediction-log rows in the spool on disk "
        "(home/spool/predictions), which survives a crash or a stop while the database is down; "
        "0 turns the spool off.",
    )
    log_spool_fsync: bool = Field(
        False,
        description="fsync the spool after every request: survives power loss, not only a "
        "crash of the process, at the cost of a disk flush per request.",
    )
    log_retry_seconds: float = Field(
        2.0,
        gt=0,
        description="Wait before retrying a failed prediction-log write (doubles, up to 30 s).",
    )

    # serving
    host: str = Field("127.0.0.1", description="Address `toxiguard serve` listens on.")
    port: int = Field(8000, ge=0, lt=65536, description="Port `toxiguard serve` listens on.")
    max_texts_per_request: int = Field(
        256, gt=0, description="Most comments in one POST /v1/predict request."
    )
    max_text_chars: int = Field(
        10_000, gt=0, description="Longest comment (in characters) accepted by the API."
    )
    api_keys: str | None = Field(
        None,
        description="Comma-separated API keys; when set, /v1/* and /v1alpha1/* need one, in the "
        "X-API-Key header or the `key` query parameter, and the UI asks for one as its password.",
    )
    require_keys: bool = Field(
        False,
        description="Refuse to start (`toxiguard serve`) without API keys; without this, serving "
        "beyond loopback without keys only logs a warning.",
    )
    max_request_chars: int = Field(
        1_000_000,
        gt=0,
        description="Most characters in all the texts of one scoring request together (413 "
        "beyond); the other limits allow max_texts_per_request x max_text_chars.",
    )
    rate_limit_chars_per_minute: int = Field(
        0,
        ge=0,
        description="Characters each API key (each client address when no keys are set) may "
        "have scored per minute, a request costing at least 1,000; beyond, 429 with "
        "Retry-After. 0: off (the micro-batcher already shares the inference thread fairly "
        "between concurrent requests).",
    )
    rate_limit_burst_chars: int = Field(
        0,
        ge=0,
        description="Characters a client may spend at once before the rate limit applies "
        "(the bucket's size); 0: one minute's worth.",
    )
    key_failures_before_lockout: int = Field(
        5,
        ge=0,
        description="Wrong API keys in a row from one address (API or UI login) before it is "
        "locked out with 429 for 1 s, doubling with each further wrong key up to 5 minutes; "
        "0: off.",
    )
    public_url: str | None = Field(
        None,
        description="The URL clients reach the server at, e.g. https://toxiguard.example.org/ "
        "behind a proxy: the rootUrl of the Perspective discovery document (default: the URL "
        "the discovery request came to).",
    )
    model_poll_seconds: float = Field(
        30.0, gt=0, description="How often the server checks which version is champion."
    )
    model_dir: Path | None = Field(
        None,
        description="Serve this exported bundle (`toxiguard export bundle`) instead of the "
        "registry's champion: no registry, no polling.",
    )
    registry_timeout_seconds: int = Field(
        5, gt=0, description="HTTP timeout of the server's calls to an MLflow tracking server."
    )
    microbatch: bool = Field(
        True,
        description="Score concurrent requests together: one inference thread takes every "
        "request waiting for it as one batch. Off: each request runs alone in a thread pool.",
    )
    microbatch_wait_ms: float = Field(
        0.0,
        ge=0,
        description="Extra time the inference thread waits for more requests before scoring a "
        "batch (0: take only those already waiting).",
    )
    microbatch_max_texts: int = Field(
        256, gt=0, description="Most comments the inference thread scores in one batch."
    )
    microbatch_max_chars: int = Field(
        20_000,
        gt=0,
        description="Most characters the inference thread scores in one batch: bigger requests "
        "are split, and their pieces take turns with other requests' (a comment longer than "
        "this is scored alone). Beside four clients sending 256 x 10,000 characters, a "
        "one-comment client's p99 was 82 ms at 10,000, 100 ms at 20,000 and 166 ms at 50,000 "
        "(alone about 50 ms); the heavy clients got 0.4, 0.8 and 1.2 M characters/s.",
    )
    ui_enabled: bool = Field(True, description="Mount the Gradio UI at /ui.")
    ui_max_rows: int = Field(
        100_000, gt=0, description="Most rows of a CSV file scored in the UI's batch tab."
    )
    ui_max_upload_bytes: int = Field(
        10 * 1024 * 1024,
        gt=0,
        description="Largest file the UI accepts (about 25,000 comments of average length); "
        "score bigger files with `toxiguard score`.",
    )

    # scoring
    score_chunk_size: int = Field(2000, gt=0, description="Rows per chunk in `toxiguard score`.")
    onnx_threads: int = Field(
        2, gt=0, description="ONNX Runtime intra-op threads when serving transformer models."
    )

    # monitoring: reference, drift job, alerts, retraining, traffic simulation
    reference_rows: int = Field(
        3000,
        gt=0,
        description="Validation comments scored into each model's monitoring reference.",
    )
    vocabulary_size: int = Field(
        50_000,
        gt=0,
        description="Most frequent training words kept as the vocabulary for the "
        "out-of-vocabulary share of the monitoring reference.",
    )
    monitoring_window_hours: float = Field(
        1.0, gt=0, description="Length of the prediction-log window one monitoring run reads."
    )
    monitoring_min_rows: int = Field(
        200,
        gt=0,
        description="Fewest predictions of the served version in the window for a drift result; "
        "fewer gives a stored 'insufficient data' result.",
    )
    drift_method: str = Field(
        "ks",
        description="Evidently stattest for each numeric column (text statistics and scores), "
        "e.g. ks, wasserstein, psi, jensenshannon.",
    )
    drift_threshold: float = Field(
        0.01,
        gt=0,
        description="Threshold of drift_method: a p-value for tests (ks: drift below it), a "
        "distance for distances (wasserstein: drift at or above it).",
    )
    text_drift: bool = Field(
        True,
        description="Also compare the logged comment texts with the reference's (Evidently text "
        "content drift); needs log_texts.",
    )
    alert_drift_score: float = Field(
        0.3, ge=0, le=1, description="Alert when the share of drifted columns exceeds this."
    )
    alert_missing_share: float = Field(
        0.05, ge=0, le=1, description="Alert when the share of missing values exceeds this."
    )
    alert_flagged_rate_change: float = Field(
        0.15,
        ge=0,
        le=1,
        description="Alert when a label's flagged rate moves by more than this (absolute) from "
        "the reference's.",
    )
    alert_quality_drop: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Alert when live mean ROC-AUC on labelled traffic falls this far below the "
        "model's test ROC-AUC.",
    )
    feedback_min_rows: int = Field(
        50, gt=0, description="Fewest labelled predictions in the window to compute live quality."
    )
    alert_cooldown_minutes: float = Field(
        360.0,
        ge=0,
        description="An alert of the same rule is not raised again within this many minutes.",
    )
    alert_webhook_url: str | None = Field(
        None,
        description="Slack-compatible incoming webhook (TOXIGUARD_ALERT_WEBHOOK_URL) that "
        "receives alerts; unset: alerts are only stored.",
    )
    alert_webhook_timeout_seconds: float = Field(
        5.0, gt=0, description="Timeout of one webhook delivery attempt."
    )
    alert_webhook_retries: int = Field(
        3, ge=0, description="Retries of a failed webhook delivery (with growing waits)."
    )
    alert_redelivery_hours: float = Field(
        24.0,
        ge=0,
        description="Alerts whose webhook delivery failed are sent again by later monitoring "
        "runs for this many hours (0: never).",
    )
    retrain_on_drift: bool = Field(
        True,
        description="A drift alert past its cool-down starts the training flow (on the training "
        "data plus feedback); the gate decides promotion.",
    )
    monitoring_experiment_name: str = Field(
        "monitoring", description="MLflow experiment that receives each monitoring run's report."
    )
    simulate_max_requests: int = Field(
        20_000, gt=0, description="Most comments `toxiguard simulate` sends in one run."
    )
    simulate_max_seconds: float = Field(
        600.0, gt=0, description="Longest time `toxiguard simulate` runs."
    )

    # orchestration (Prefect) and the local stack (`toxiguard stack`)
    prefect_api_url: str | None = Field(
        None,
        validation_alias=AliasChoices("PREFECT_API_URL", "TOXIGUARD_PREFECT_API_URL"),
        description="Prefect server API, e.g. http://127.0.0.1:4200/api; unset: flows run on "
        "Prefect's temporary local server.",
    )
    stack_host: str = Field(
        "127.0.0.1", description="Address the local stack's MLflow and Prefect servers listen on."
    )
    mlflow_port: int = Field(5050, ge=0, lt=65536, description="Port of the stack's MLflow server.")
    prefect_port: int = Field(
        4200, ge=0, lt=65536, description="Port of the stack's Prefect server (API and UI)."
    )
    mlflow_backend_uri: str | None = Field(
        None,
        description="Backend store of the stack's `mlflow server` (e.g. postgresql+psycopg://...; "
        "a database of its own, not the monitoring store's); unset: the embedded sqlite database.",
    )
    monitoring_cron: str | None = Field(
        "0 * * * *",
        description="Cron schedule of the monitoring deployment (default hourly); empty: off.",
    )
    training_cron: str | None = Field(
        None,
        description="Cron schedule of the training deployment, e.g. '0 3 * * 1' (weekly); "
        "unset or empty: off (runs only when started by hand or by monitoring).",
    )
    training_data: Path = Field(
        Path("data/raw/train.csv"),
        description="Labelled file the training deployment uses by default (editable per run).",
    )
    training_models: Annotated[list[str], NoDecode] = Field(
        ["tfidf-lr", "nbsvm", "tfidf-svm", "complement-nb"],
        description="Model families the training deployment trains by default; comma-separated "
        "in the environment.",
    )
    training_augmentations: Annotated[list[str], NoDecode] = Field(
        ["identity_neutral", "masking"],
        description="Rows added to every training split (`data.augmentation`: identity_neutral, "
        "masking, identity_swap, obfuscation); comma-separated in the environment, empty for "
        "none.",
    )
    training_params: str = Field(
        "default",
        description="Hyperparameters of the training deployment and `toxiguard run`: 'default', "
        "'best' (each family's latest `toxiguard tune` run) or a JSON file's path.",
    )
    stack_dir: Path | None = Field(
        None, description="Where `toxiguard stack` keeps its pid file and logs; default home/stack."
    )
    stack_timeout_seconds: float = Field(
        240.0, gt=0, description="How long `toxiguard stack up` waits for every health check."
    )

    @field_validator("monitoring_cron", "training_cron", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        """Return None for an empty schedule (turned off), the value otherwise."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("training_models", "training_augmentations", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        """Return a comma-separated string as a list of names; other values unchanged."""
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @property
    def resolved_home(self) -> Path:
        """Return the absolute home directory (not created here)."""
        return self.home.expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        """Return the MLflow tracking URI: the configured one or sqlite under home."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.resolved_home / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        """Return where embedded MLflow stores artifacts."""
        return self.resolved_home / "mlartifacts"

    @property
    def monitoring_database_url(self) -> str:
        """Return the monitoring store URL: the configured one or sqlite under home."""
        return self.database_url or f"sqlite:///{self.resolved_home / 'monitoring.db'}"

    @property
    def api_key_list(self) -> list[str]:
        """Return the configured API keys (empty: the API is open)."""
        return [key.strip() for key in (self.api_keys or "").split(",") if key.strip()]

    def accepts_api_key(self, key: str | None) -> bool:
        """Return whether `key` is one of the configured API keys (compared in constant time)."""
        if key is None:
            return False
        given = key.encode()
        return any(secrets.compare_digest(given, known.encode()) for known in self.api_key_list)

    @property
    def model_cache_dir(self) -> Path:
        """Return where the server keeps its local copy of the last champion it loaded."""
        return self.resolved_home / "serving" / "model-cache"

    @property
    def splits_dir(self) -> Path:
        """Return where saved splits live."""
        return self.resolved_home / "splits"

    @property
    def monitoring_dir(self) -> Path:
        """Return where the monitoring job keeps reports, cached references and retraining data."""
        return self.resolved_home / "monitoring"

    @property
    def reports_dir(self) -> Path:
        """Return where the monitoring job writes its Evidently HTML reports."""
        return self.monitoring_dir / "reports"

    @property
    def prefect_home(self) -> Path:
        """Return PREFECT_HOME for the processes toxiguard starts (Prefect's database, logs)."""
        return self.resolved_home / "prefect"

    @property
    def stack_run_dir(self) -> Path:
        """Return where `toxiguard stack` keeps its pid file and logs."""
        return (self.stack_dir or self.resolved_home / "stack").expanduser().resolve()

    @property
    def prefect_environment(self) -> dict[str, str]:
        """Return the Prefect variables for processes toxiguard starts: home, API URL, analytics."""
        env = {
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # toxiguard's own log lines then show in the flow run's logs in the Prefect UI.
            "PREFECT_LOGGING_EXTRA_LOGGERS": "toxiguard",
            # ...and outside a flow run (e.g. `flows serve` itself) they are only printed.
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            # The temporary server needs 8-25 s to start on 2 busy cores; Prefect waits 20 s.
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        }
        if self.prefect_api_url:
            env["PREFECT_API_URL"] = self.prefect_api_url
        return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
