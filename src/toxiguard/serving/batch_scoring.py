"""Batch scoring of comment files with any toxicity model, keeping every input column."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from toxiguard.data.readers import read_comments
from toxiguard.errors import ToxiguardError
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.models import ToxicityModel

SCORE_PREFIX = "score_"
FLAGGED_COLUMN = "flagged"
# Called after each chunk with (index of its first row, texts, probabilities, flags).
ChunkCallback = Callable[[int, list[str], npt.NDArray[np.float64], npt.NDArray[np.bool_]], None]


def score_frame(
    model: ToxicityModel, frame: pd.DataFrame, text_column: str = TEXT_COLUMN
) -> pd.DataFrame:
    """Return a copy of `frame` with a `score_<label>` column per label and a `flagged` column."""
    texts = frame[text_column].astype(str).tolist()
    probabilities = model.predict_proba(texts) if texts else np.zeros((0, len(LABELS)))
    scored = frame.copy()
    for index, label in enumerate(LABELS):
        scored[f"{SCORE_PREFIX}{label}"] = probabilities[:, index]
    flags = probabilities >= model.thresholds
    scored[FLAGGED_COLUMN] = [
        " ".join(label for label, hit in zip(LABELS, row, strict=True) if hit) for row in flags
    ]
    return scored


def score_file(
    model: ToxicityModel,
    input_path: str | Path,
    output_path: str | Path,
    *,
    text_column: str = TEXT_COLUMN,
    chunk_size: int = 2000,
    on_progress: Callable[[int, int], None] | None = None,
    on_scored: ChunkCallback | None = None,
) -> int:
    """Score `input_path` in chunks into `output_path` (.csv or .parquet); return rows scored.

    `on_scored` receives each scored chunk (e.g. to write it to the prediction log).
    """
    output = Path(output_path)
    if output.suffix not in {".csv", ".parquet"}:
        raise ToxiguardError(f"{output}: output must end in .csv or .parquet")
    frame = read_comments(input_path, text_column=text_column)
    total = len(frame)
    chunks: list[pd.DataFrame] = []
    for start in range(0, max(total, 1), chunk_size):
        chunk = score_frame(model, frame.iloc[start : start + chunk_size], text_column)
        chunks.append(chunk)
        if on_scored is not None and len(chunk):
            probabilities = chunk[[f"{SCORE_PREFIX}{label}" for label in LABELS]].to_numpy(
                dtype=np.float64
            )
            texts = chunk[text_column].astype(str).tolist()
            on_scored(start, texts, probabilities, probabilities >= model.thresholds)
        if on_progress:
            on_progress(min(start + chunk_size, total), total)
    scored = pd.concat(chunks, ignore_index=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".parquet":
        scored.to_parquet(output, index=False)
    else:
        scored.to_csv(output, index=False)
    return total
