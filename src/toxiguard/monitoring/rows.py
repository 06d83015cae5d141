"""Rows of the prediction log: what one request's predictions become in the monitoring store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from toxiguard.features.statistics import STATISTICS_COLUMNS, text_statistics
from toxiguard.labels import FLAG_COLUMNS, LABELS, SCORE_COLUMNS
from toxiguard.monitoring.store import SOURCES


@dataclass(frozen=True)
class PredictionBatch:
    """The predictions of one request (or one chunk of a scored file), waiting to be written."""

    request_id: str
    source: str
    texts: Sequence[str]
    probabilities: npt.NDArray[np.float64]
    flags: npt.NDArray[np.bool_]
    model_name: str | None
    model_version: int | None
    model_family: str | None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    first_index: int = 0
    #: False when the client asked that its texts not be stored (Perspective's doNotStore).
    store_texts: bool = True

    def __post_init__(self) -> None:
        """Check that the arrays match the texts."""
        if self.source not in SOURCES:
            raise ValueError(f"unknown prediction source {self.source!r} (known: {SOURCES})")
        expected = (len(self.texts), len(LABELS))
        if self.probabilities.shape != expected or self.flags.shape != expected:
            raise ValueError(
                f"expected arrays of shape {expected}, got {self.probabilities.shape} "
                f"and {self.flags.shape}"
            )

    def __len__(self) -> int:
        """Return the number of predictions in the batch."""
        return len(self.texts)


def _storable(text: str) -> str:
    """Return text that every database accepts: no NUL characters, no lone surrogates."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def batch_rows(batch: PredictionBatch, log_texts: bool) -> list[dict[str, Any]]:
    """Return the table rows of one batch: statistics, scores, flags and (if allowed) the text."""
    texts = [_storable(str(text)) for text in batch.texts]
    stats = text_statistics(texts)
    columns = {name: stats[name].tolist() for name in STATISTICS_COLUMNS}
    rows: list[dict[str, Any]] = []
    for i, text in enumerate(texts):
        row: dict[str, Any] = {
            "created_at": batch.created_at,
            "request_id": batch.request_id,
            "item_index": batch.first_index + i,
            "source": batch.source,
            "model_name": batch.model_name,
            "model_version": batch.model_version,
            "model_family": batch.model_family,
            "text": text if log_texts and batch.store_texts else None,
            "length": int(columns["length"][i]),
            "words": int(columns["words"][i]),
            "upper_share": float(columns["upper_share"][i]),
            "non_letter_share": float(columns["non_letter_share"][i]),
        }
        row.update(zip(SCORE_COLUMNS, map(float, batch.probabilities[i]), strict=True))
        row.update(zip(FLAG_COLUMNS, map(bool, batch.flags[i]), strict=True))
        rows.append(row)
    return rows
