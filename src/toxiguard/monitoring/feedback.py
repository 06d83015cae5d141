"""Feedback: the true labels of logged predictions, keyed by request id and position.

Labels come from `POST /v1/feedback` (a moderator's verdict), `toxiguard feedback import FILE`
or Perspective's `comments:suggestscore`; a later answer for the same prediction replaces the
earlier one. A suggestion may name some labels only: the others are stored as unknown (NULL)
and left out of that label's live quality and of retraining. The monitoring job
joins them to the prediction log for live quality, and retraining adds the labelled comments
(when their text was logged) to the training data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from sqlalchemy import Engine, Join, Select, and_, delete, func, insert, select, tuple_

from toxiguard.errors import DataValidationError, Problem
from toxiguard.labels import FLAG_COLUMNS, ID_COLUMN, LABELS, SCORE_COLUMNS, TEXT_COLUMN
from toxiguard.models.metrics import mean_defined, roc_auc
from toxiguard.monitoring.store import predictions
from toxiguard.monitoring.tables import LABEL_COLUMNS, feedback

logger = logging.getLogger(__name__)

REQUEST_COLUMN: Final = "request_id"
INDEX_COLUMN: Final = "item_index"
# "review": a moderator's decision in the review queue (`toxiguard.monitoring.review`).
SOURCES: Final = ("api", "import", "perspective", "review")
MAX_REVIEWER: Final = 64  # the store's column width
MAX_REQUEST_ID: Final = 64  # the store's column width
MAX_INDEX: Final = 2**31 - 1  # the store's INTEGER column
_CHUNK: Final = 500


@dataclass(frozen=True)
class FeedbackItem:
    """The true labels of one logged prediction (0/1, or None for unknown, in LABELS order)."""

    request_id: str
    item_index: int
    labels: tuple[int | None, ...]
    community_id: str | None = None

    @classmethod
    def from_names(cls, request_id: str, item_index: int, names: Sequence[str]) -> FeedbackItem:
        """Return an item whose labels are 1 for the given label names and 0 for the others."""
        unknown = sorted(set(names) - set(LABELS))
        if unknown:
            raise ValueError(f"unknown label(s) {unknown}; known: {', '.join(LABELS)}")
        return cls(request_id, item_index, tuple(int(label in names) for label in LABELS))


def store_feedback(
    engine: Engine, items: Sequence[FeedbackItem], source: str, reviewer: str | None = None
) -> int:
    """Store the items (replacing earlier feedback on the same predictions); return how many.

    `reviewer` names who gave them (an API key's key id), None when unknown.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown feedback source {source!r} (known: {SOURCES})")
    if reviewer is not None and len(reviewer) > MAX_REVIEWER:
        raise ValueError(f"reviewer longer than {MAX_REVIEWER} characters")
    now = datetime.now(UTC)
    latest = {(item.request_id, item.item_index): item for item in items}
    keys = list(latest)
    with engine.begin() as connection:
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            connection.execute(
                delete(feedback).where(
                    tuple_(feedback.c.request_id, feedback.c.item_index).in_(chunk)
                )
            )
            rows = [
                {
                    "created_at": now,
                    "request_id": request_id,
                    "item_index": index,
                    "source": source,
                    "community_id": latest[(request_id, index)].community_id,
                    "reviewer": reviewer,
                    **dict(zip(LABEL_COLUMNS, latest[(request_id, index)].labels, strict=True)),
                }
                for request_id, index in chunk
            ]
            connection.execute(insert(feedback), rows)
    return len(keys)


def logged_predictions(engine: Engine, keys: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
    """Return which of the (request id, item index) pairs are in the prediction log."""
    found: set[tuple[str, int]] = set()
    with engine.connect() as connection:
        for start in range(0, len(keys), _CHUNK):
            chunk = list(keys[start : start + _CHUNK])
            query = select(predictions.c.request_id, predictions.c.item_index).where(
                tuple_(predictions.c.request_id, predictions.c.item_index).in_(chunk)
            )
            found.update((str(r), int(i)) for r, i in connection.execute(query).all())
    return found


def logged_request_size(engine: Engine, request_id: str) -> int | None:
    """Return how many comments the prediction log holds for a request (None: none at all).

    The size is one past the highest item index logged, so a request whose rows were written
    in several batches counts in full once its last batch is in.
    """
    query = select(func.max(predictions.c.item_index)).where(predictions.c.request_id == request_id)
    with engine.connect() as connection:
        highest = connection.execute(query).scalar()
    return None if highest is None else int(highest) + 1


def _read_frame(path: Path) -> pd.DataFrame:
    """Return a feedback file as read, or raise DataValidationError if it cannot be read."""
    if not path.is_file():
        raise DataValidationError.single(path, "file not found")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={REQUEST_COLUMN: str}, keep_default_na=False)
    except (ValueError, OSError) as error:
        raise DataValidationError.single(path, f"cannot read the file: {error}") from error


def _problems(frame: pd.DataFrame, path: Path, ids: pd.Series, index: pd.Series) -> list[Problem]:
    """Return what is wrong with the request ids, positions and labels of a feedback frame."""
    rows = np.arange(2, len(frame) + 2)  # 1-based data rows after the header
    checks = [
        (REQUEST_COLUMN, (ids == "").to_numpy(), "empty request id"),
        (
            REQUEST_COLUMN,
            (ids.str.len() > MAX_REQUEST_ID).to_numpy(),
            f"request id longer than {MAX_REQUEST_ID} characters",
        ),
        (
            INDEX_COLUMN,
            (index.isna() | (index < 0) | (index > MAX_INDEX) | (index % 1 != 0)).to_numpy(),
            f"not a whole number from 0 to {MAX_INDEX}",
        ),
    ]
    for label in LABELS:
        values = pd.to_numeric(frame[label], errors="coerce")
        checks.append((label, (~values.isin([0, 1])).to_numpy(), "label must be 0 or 1"))
    return [
        Problem(str(path), column, tuple(int(r) for r in rows[bad]), message)
        for column, bad, message in checks
        if bad.any()
    ]


def read_feedback_file(path: str | Path) -> list[FeedbackItem]:
    """Return the feedback in a CSV (.gz/.zip) or parquet file: request_id, [item_index], labels.

    Raises DataValidationError naming file, column and rows for anything malformed.
    """
    path = Path(path)
    frame = _read_frame(path)
    missing = [
        Problem(str(path), column, (), "required column missing")
        for column in (REQUEST_COLUMN, *LABELS)
        if column not in frame.columns
    ]
    if missing:
        raise DataValidationError(missing)
    ids = frame[REQUEST_COLUMN].astype(str).str.strip()
    if INDEX_COLUMN in frame.columns:
        index = pd.to_numeric(frame[INDEX_COLUMN], errors="coerce")
    else:
        index = pd.Series(0, index=frame.index)
    problems = _problems(frame, path, ids, index)
    if problems:
        raise DataValidationError(problems)
    labels = frame.loc[:, list(LABELS)].apply(pd.to_numeric).astype(int).to_numpy()
    return [
        FeedbackItem(request_id, int(position), tuple(int(v) for v in row))
        for request_id, position, row in zip(ids, index, labels, strict=True)
    ]


def _labelled_join() -> Join:
    """Return the prediction log joined to the feedback on (request id, item index)."""
    return predictions.join(
        feedback,
        and_(
            predictions.c.request_id == feedback.c.request_id,
            predictions.c.item_index == feedback.c.item_index,
        ),
    )


def _frame(engine: Engine, query: Select[Any]) -> pd.DataFrame:
    """Return the query's rows as a frame with its column names."""
    with engine.connect() as connection:
        result = connection.execute(query)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def labelled_window(
    engine: Engine, start: datetime, end: datetime, model_version: int | None
) -> pd.DataFrame:
    """Return the window's predictions that have feedback: scores, flags and true labels."""
    columns = [predictions.c[name] for name in (*SCORE_COLUMNS, *FLAG_COLUMNS)]
    query = (
        select(*columns, *(feedback.c[name] for name in LABEL_COLUMNS))
        .select_from(_labelled_join())
        .where(predictions.c.created_at >= start, predictions.c.created_at < end)
    )
    if model_version is not None:
        query = query.where(predictions.c.model_version == model_version)
    return _frame(engine, query)


def labelled_predictions(engine: Engine) -> pd.DataFrame:
    """Return every prediction that has feedback: model version, text, scores, true labels."""
    columns = [predictions.c[name] for name in ("model_version", "text", *SCORE_COLUMNS)]
    query = select(*columns, *(feedback.c[name] for name in LABEL_COLUMNS)).select_from(
        _labelled_join()
    )
    return _frame(engine, query)


def live_quality(frame: pd.DataFrame) -> dict[str, Any]:
    """Return ROC-AUC (both classes needed) and F1 (of the served flags) per label, and means.

    Each label counts the rows whose feedback names it (unknown labels are left out).
    """
    per_label: dict[str, dict[str, Any]] = {}
    roc_aucs: dict[str, float | None] = {}
    f1s: dict[str, float | None] = {}
    for column, label in enumerate(LABELS):
        known = frame[LABEL_COLUMNS[column]].notna().to_numpy()
        truth = frame[LABEL_COLUMNS[column]].to_numpy()[known].astype(int)
        scores = frame[SCORE_COLUMNS[column]].to_numpy()[known].astype(float)
        flags = frame[FLAG_COLUMNS[column]].to_numpy()[known].astype(bool)
        roc_aucs[label] = roc_auc(truth, scores)
        positives = int(truth.sum())
        f1s[label] = float(f1_score(truth, flags, zero_division=0)) if positives else None
        per_label[label] = {
            "rows": len(truth),
            "positives": positives,
            "roc_auc": roc_aucs[label],
            "f1": f1s[label],
        }
    return {
        "rows": len(frame),
        "per_label": per_label,
        "mean_roc_auc": mean_defined(roc_aucs),
        "f1_macro": mean_defined(f1s),
    }


def feedback_training_rows(engine: Engine) -> tuple[pd.DataFrame, int]:
    """Return labelled comments from feedback in Kaggle's layout, and how many lacked a text.

    Each row's id is derived from its request id and position, so the rows are stable.
    """
    query = select(
        feedback.c.request_id,
        feedback.c.item_index,
        predictions.c.text,
        *(feedback.c[name] for name in LABEL_COLUMNS),
    ).select_from(_labelled_join())
    frame = _frame(engine, query)
    without_text = int(frame["text"].isna().sum()) if len(frame) else 0
    frame = frame[frame["text"].notna()] if len(frame) else frame
    # A suggestion naming some labels only cannot be a training row: the others are unknown.
    frame = frame.dropna(subset=list(LABEL_COLUMNS)) if len(frame) else frame
    out = pd.DataFrame(
        {
            ID_COLUMN: [
                f"fb-{r}-{i}" for r, i in zip(frame["request_id"], frame["item_index"], strict=True)
            ],
            TEXT_COLUMN: frame["text"].astype(str).tolist() if len(frame) else [],
            **{
                label: frame[f"label_{label}"].astype(int).tolist() if len(frame) else []
                for label in LABELS
            },
        }
    )
    return out, without_text


__all__ = [
    "FeedbackItem",
    "feedback_training_rows",
    "labelled_window",
    "live_quality",
    "logged_predictions",
    "read_feedback_file",
    "store_feedback",
]
