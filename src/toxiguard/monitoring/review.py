"""The review queue: logged comments a moderator should label next, newest first.

Two kinds of comment are in it, both with their text logged and no feedback yet:
- "flagged": the model flagged it for some label (a moderator confirms or corrects the flags);
- "uncertain": not flagged, but some label's score lies close to that label's threshold. Their
  labels teach the model most (the decision boundary runs through them), so a share of each
  page goes to them even while flagged comments are waiting.
A decision goes to the feedback store (source "review"), which takes the comment out of the queue
and into live quality and retraining.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import ColumnElement, Engine, Row, and_, not_, or_, select

from toxiguard.labels import FLAG_PREFIX, LABELS, SCORE_PREFIX
from toxiguard.monitoring.store import predictions
from toxiguard.monitoring.tables import feedback

Why = Literal["flagged", "uncertain"]

#: "Uncertain" means |logit(score) - logit(threshold)| < this. Measured in logits, not in
#: probability, so that the window scales with the threshold: 0.5 around a threshold of 0.5 is
#: 0.38 to 0.62, around a rare label's 0.05 it is 0.031 to 0.080 (a fixed +-0.1 would take in
#: every comment from 0 to 0.15 there, nearly all of the traffic).
UNCERTAIN_MARGIN: Final = 0.5
#: Uncertain comments fill up to this share of a page while flagged ones wait (and any room the
#: flagged ones leave): enough to keep teaching the boundary, without hiding what was flagged.
UNCERTAIN_SHARE: Final = 0.25
DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
_EPSILON: Final = 1e-6  # keeps the logit of a threshold of 0 or 1 finite


@dataclass(frozen=True)
class ReviewItem:
    """One comment waiting for review: where it was logged, its text, scores, flags and why."""

    request_id: str
    item_index: int
    created_at: datetime
    text: str
    scores: dict[str, float]
    flags: dict[str, bool]
    why: Why
    model_version: int | None = None

    @property
    def flagged(self) -> list[str]:
        """Return the labels the model flagged, in LABELS order."""
        return [label for label in LABELS if self.flags[label]]


def _logit(p: float) -> float:
    """Return log(p / (1 - p)), with p kept inside (0, 1)."""
    p = min(max(p, _EPSILON), 1 - _EPSILON)
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    """Return 1 / (1 + exp(-x))."""
    return 1 / (1 + math.exp(-x))


def uncertainty_window(threshold: float, margin: float = UNCERTAIN_MARGIN) -> tuple[float, float]:
    """Return the open interval of scores within `margin` logits of `threshold`."""
    centre = _logit(threshold)
    return _sigmoid(centre - margin), _sigmoid(centre + margin)


def is_uncertain(score: float, threshold: float, margin: float = UNCERTAIN_MARGIN) -> bool:
    """Return whether a score lies within `margin` logits of the threshold."""
    low, high = uncertainty_window(threshold, margin)
    return low < score < high


def uncertain_quota(limit: int) -> int:
    """Return how many places of a page of `limit` go to uncertain comments first."""
    return int(limit * UNCERTAIN_SHARE)


def _conditions(
    thresholds: Mapping[str, float], labels: Sequence[str], margin: float
) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """Return the SQL conditions "flagged for one of `labels`" and "uncertain on one of them"."""
    flagged = or_(*(predictions.c[f"{FLAG_PREFIX}{label}"].is_(True) for label in labels))
    windows = []
    for label in labels:
        low, high = uncertainty_window(float(thresholds[label]), margin)
        score = predictions.c[f"{SCORE_PREFIX}{label}"]
        windows.append(and_(score > low, score < high))
    return flagged, or_(*windows)


def _item(row: Row[Any], why: Why) -> ReviewItem:
    """Return the review item of one queried row."""
    created = row.created_at
    if created.tzinfo is None:  # SQLite hands back naive datetimes; they were stored in UTC
        created = created.replace(tzinfo=UTC)
    return ReviewItem(
        request_id=str(row.request_id),
        item_index=int(row.item_index),
        created_at=created,
        text=str(row.text),
        scores={label: float(getattr(row, f"{SCORE_PREFIX}{label}")) for label in LABELS},
        flags={label: bool(getattr(row, f"{FLAG_PREFIX}{label}")) for label in LABELS},
        why=why,
        model_version=None if row.model_version is None else int(row.model_version),
    )


def review_queue(
    engine: Engine,
    thresholds: Mapping[str, float],
    *,
    label: str | None = None,
    limit: int = DEFAULT_LIMIT,
    margin: float = UNCERTAIN_MARGIN,
) -> list[ReviewItem]:
    """Return up to `limit` comments to review, newest first: flagged ones and uncertain ones.

    `thresholds` are the served model's, per label. With `label`, only comments flagged for it
    or uncertain on it. Uncertain comments take up to a quarter of the page, and whatever room
    the flagged ones leave; only comments with a logged text and no feedback yet are listed.
    """
    if label is not None and label not in LABELS:
        raise ValueError(f"unknown label {label!r}; known: {', '.join(LABELS)}")
    missing = [name for name in LABELS if name not in thresholds]
    if missing:
        raise ValueError(f"no threshold for label(s) {missing}")
    if limit <= 0:
        return []
    flagged, uncertain = _conditions(thresholds, (label,) if label else LABELS, margin)
    unreviewed = (
        select(predictions)
        .select_from(
            predictions.outerjoin(
                feedback,
                and_(
                    predictions.c.request_id == feedback.c.request_id,
                    predictions.c.item_index == feedback.c.item_index,
                ),
            )
        )
        .where(feedback.c.id.is_(None), predictions.c.text.is_not(None))
        .order_by(predictions.c.created_at.desc(), predictions.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        flagged_rows = connection.execute(unreviewed.where(flagged)).all()
        uncertain_rows = connection.execute(unreviewed.where(not_(flagged), uncertain)).all()
    taken_flagged = min(len(flagged_rows), limit - min(len(uncertain_rows), uncertain_quota(limit)))
    taken_uncertain = min(len(uncertain_rows), limit - taken_flagged)
    items = [_item(row, "flagged") for row in flagged_rows[:taken_flagged]] + [
        _item(row, "uncertain") for row in uncertain_rows[:taken_uncertain]
    ]
    return sorted(items, key=lambda item: item.created_at, reverse=True)


__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "UNCERTAIN_MARGIN",
    "ReviewItem",
    "is_uncertain",
    "review_queue",
    "uncertain_quota",
    "uncertainty_window",
]
