"""Shared fixtures: isolated settings, the shared Jigsaw sample, a small labelled frame."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from toxiguard.settings import OFFLINE_ENVIRONMENT, Settings, get_settings

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
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TOXIGUARD_HOME", str(tmp_path / "home"))
    for key, value in OFFLINE_ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


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
