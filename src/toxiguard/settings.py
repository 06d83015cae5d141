"""One settings object for the whole system, read from the environment (TOXIGUARD_*) or .env."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    # monitoring store
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite under home.")

    # scoring
    score_chunk_size: int = Field(2000, gt=0, description="Rows per chunk in `toxiguard score`.")

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
    def splits_dir(self) -> Path:
        """Return where saved splits live."""
        return self.resolved_home / "splits"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
