"""Retraining started by a drift alert: the training flow on the training data plus feedback.

When a Prefect server is configured and serves the training deployment, a run of that
deployment is created (and returns at once); otherwise the training flow runs in this process
(on Prefect's temporary server when none is configured). Either way the new versions reach
`champion` only through the flow's gated promotion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from sqlalchemy import Engine

if TYPE_CHECKING:
    pass
from toxiguard.data.validation import load_dataset
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.monitoring.feedback import feedback_training_rows
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainingData:
    """The file the retraining run trains on, and what went into it."""

    path: Path
    original_rows: int
    feedback_rows: int
    feedback_without_text: int


def build_training_data(
    settings: Settings, engine: Engine, data: str | Path | None = None
) -> RetrainingData:
    """Return a parquet file of the original training data plus the labelled feedback comments.

    Feedback whose prediction was logged without its text (privacy mode) cannot be used and is
    counted. Comments already in the original data are not added twice.
    """
    source = Path(data or settings.training_data).expanduser()
    original = load_dataset(source).frame
    extra, without_text = feedback_training_rows(engine)
    extra = extra[extra[TEXT_COLUMN].str.strip() != ""]
    extra = extra[~extra[TEXT_COLUMN].isin(set(original[TEXT_COLUMN]))]
    combined = pd.concat([original, extra.astype(original.dtypes.to_dict())], ignore_index=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    folder = settings.monitoring_dir / "retraining" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.parquet"
    combined.loc[:, ["id", TEXT_COLUMN, *LABELS]].to_parquet(path, index=False)
    logger.info(
        "retraining data: %d original rows + %d feedback rows (%d feedback rows had no text)",
        len(original),
        len(extra),
        without_text,
    )
    return RetrainingData(path, len(original), len(extra), without_text)
