"""Shared fixtures: isolated settings and the shared Jigsaw sample; the service plugins.

The real services (PostgreSQL, `toxiguard serve`, Chromium, Prefect's temporary server) and the
flows' small data files are fixtures of the plugins in `pytest_plugins`: a test asks for one by
its argument name, never imports it. pytest allows `pytest_plugins` only in this conftest.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from toxiguard.settings import OFFLINE_ENVIRONMENT, Settings, get_settings

pytest_plugins = ["tests.integration.services", "tests.integration.flow_services"]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_TRAIN = Path(
    os.environ.get(
        "TOXIGUARD_SHARED_TRAIN", REPO_ROOT.parent / "shared" / "data" / "jigsaw" / "train.csv.gz"
    )
)


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Give every test its own TOXIGUARD_HOME and no inherited server URIs."""
    for key in list(os.environ):
        if key.startswith("TOXIGUARD_") and key != "TOXIGUARD_SHARED_TRAIN":
            monkeypatch.delenv(key)
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TOXIGUARD_HOME", str(tmp_path / "home"))
    for key, value in OFFLINE_ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    _forget_mlflow_state()
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
    _forget_mlflow_state()


def _forget_mlflow_state() -> None:
    """End runs and forget the experiment that an earlier test left in MLflow's globals."""
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is None:
        return  # MLflow not imported yet: nothing to forget
    while fluent.active_run() is not None:
        fluent.end_run()
    vars(fluent)["_active_experiment_id"] = None


@pytest.fixture
def settings() -> Settings:
    """Return settings pointing at this test's own home."""
    return get_settings()


@pytest.fixture(scope="session")
def shared_train_path() -> Path:
    """Return the shared Jigsaw sample; fail in CI (CI=true) and skip elsewhere if it is missing."""
    if not SHARED_TRAIN.is_file():
        message = f"shared Jigsaw data not found at {SHARED_TRAIN}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_TRAIN


@pytest.fixture(scope="session")
def shared_train(shared_train_path: Path) -> pd.DataFrame:
    """Return the whole shared Jigsaw sample as read by pandas (41,614 rows)."""
    return pd.read_csv(shared_train_path, dtype={"id": str}, keep_default_na=False)


@pytest.fixture(scope="session")
def shared_sample(shared_train: pd.DataFrame) -> pd.DataFrame:
    """Return a seeded 4,000-row sample of the shared data, every label represented."""
    return shared_train.sample(n=4000, random_state=7).sort_values("id").reset_index(drop=True)
