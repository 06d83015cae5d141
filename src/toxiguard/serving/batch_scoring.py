"""Batch scoring of comment files with any toxicity model, keeping every input column.

Files are read and written in chunks (`data.readers.iter_comment_chunks`), so memory stays
bounded by the chunk size whatever the file's length; the output appears only once complete.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from pyarrow import parquet

from toxiguard.data.readers import count_rows, iter_comment_chunks, read_comments
from toxiguard.errors import ToxiguardError
from toxiguard.labels import LABELS, SCORE_COLUMNS, TEXT_COLUMN

FLAGGED_COLUMN = "flagged"
OUTPUT_SUFFIXES = (".csv", ".parquet")
# Called after each chunk with (index of its first row, texts, probabilities, flags).
ChunkCallback = Callable[[int, list[str], npt.NDArray[np.float64], npt.NDArray[np.bool_]], None]


class Scorer(Protocol):
    """What batch scoring needs of a model: probabilities and per-label thresholds."""

    thresholds: npt.NDArray[np.float64]

    def predict_proba(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        """Return an (n, 6) array of probabilities in label order."""
        ...


def with_scores(
    frame: pd.DataFrame, probabilities: npt.NDArray[np.float64], flags: npt.NDArray[np.bool_]
) -> pd.DataFrame:
    """Return a copy of `frame` with a `score_<label>` column per label and a `flagged` column.

    `flagged` names the labels whose flag is set, space-separated ('' for none).
    """
    scored = frame.copy()
    for index, column in enumerate(SCORE_COLUMNS):
        scored[column] = probabilities[:, index]
    scored[FLAGGED_COLUMN] = [
        " ".join(label for label, hit in zip(LABELS, row, strict=True) if hit) for row in flags
    ]
    return scored


def _scores(
    model: Scorer, texts: list[str]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Return the model's (n, 6) probabilities for the texts and its flags."""
    probabilities = np.asarray(
        model.predict_proba(texts) if texts else np.zeros((0, len(LABELS))), dtype=np.float64
    )
    return probabilities, probabilities >= model.thresholds


def score_frame(model: Scorer, frame: pd.DataFrame, text_column: str = TEXT_COLUMN) -> pd.DataFrame:
    """Return a copy of `frame` scored by `model` (see `with_scores`)."""
    return with_scores(frame, *_scores(model, frame[text_column].astype(str).tolist()))


def score_file(
    model: Scorer,
    input_path: str | Path,
    output_path: str | Path,
    *,
    text_column: str = TEXT_COLUMN,
    chunk_size: int = 2000,
    on_progress: Callable[[int, int], None] | None = None,
    on_scored: ChunkCallback | None = None,
) -> int:
    """Score `input_path` chunk by chunk into `output_path` (.csv or .parquet); return rows scored.

    `on_progress` receives (rows done, rows in all) after each chunk; `on_scored` receives each
    scored chunk (e.g. to write it to the prediction log). The output is written to a temporary
    file beside it and renamed at the end, so a failure leaves any earlier output untouched.
    """
    output = Path(output_path)
    if output.suffix not in OUTPUT_SUFFIXES:
        raise ToxiguardError(f"{output}: output must end in .csv or .parquet")
    if output.exists() and output.resolve() == Path(input_path).resolve():
        raise ToxiguardError(f"{output}: the output must not overwrite the input")
    chunks = iter_comment_chunks(input_path, chunk_size, text_column)
    total = count_rows(input_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    done = 0
    try:
        with _chunk_writer(partial, output.suffix) as write:
            for chunk in chunks:
                frame = chunk.reset_index(drop=True)
                texts = frame[text_column].astype(str).tolist()
                probabilities, flags = _scores(model, texts)
                write(with_scores(frame, probabilities, flags))
                if on_scored is not None and texts:
                    on_scored(done, texts, probabilities, flags)
                done += len(texts)
                if on_progress:
                    on_progress(done, max(total, done))
            if done == 0:  # an input with a header only still gives a file with the columns
                write(score_frame(model, _empty_comments(input_path, text_column), text_column))
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return done


def _empty_comments(input_path: str | Path, text_column: str) -> pd.DataFrame:
    """Return the input's columns with no rows (the header of an empty file)."""
    return read_comments(input_path, text_column=text_column).iloc[:0]


@contextlib.contextmanager
def _chunk_writer(path: Path, suffix: str) -> Iterator[Callable[[pd.DataFrame], None]]:
    """Yield a function that appends frames to a CSV (header once) or parquet file."""
    state: dict[str, Any] = {}

    def write(frame: pd.DataFrame) -> None:
        if suffix == ".csv":
            frame.to_csv(path, mode="a" if state else "w", header=not state, index=False)
            state["started"] = True
            return
        if "writer" not in state:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            state["schema"] = table.schema
            state["writer"] = parquet.ParquetWriter(path, table.schema)
        else:
            table = pa.Table.from_pandas(frame, schema=state["schema"], preserve_index=False)
        state["writer"].write_table(table)

    try:
        yield write
    finally:
        if "writer" in state:
            state["writer"].close()
