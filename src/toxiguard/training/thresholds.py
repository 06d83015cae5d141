"""Per-label decision thresholds from moderators' decisions: to a target precision or recall.

Thresholds tuned once on the training split follow its label prevalence, which does not
transfer to a site's traffic. Moderators' feedback on served predictions does: for each label,
`suggest_threshold` picks the threshold that meets a target precision with the most recall
(or a target recall with the most precision, or else the best F1) on the labelled comments,
and gives Wilson 95% intervals for the precision and recall it reaches there. Below
`min_positives` positive and negative comments a label is refused: a threshold from a handful
of decisions would move with every new one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy.stats import binomtest

from toxiguard.labels import LABELS

#: Each label needs at least this many positive and as many negative decisions.
MIN_DECISIONS: Final = 30
CONFIDENCE: Final = 0.95

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Interval:
    """A proportion and its Wilson confidence interval."""

    value: float
    low: float
    high: float
    successes: int
    trials: int

    @classmethod
    def of(cls, successes: int, trials: int) -> Interval | None:
        """Return the proportion successes / trials with its interval (None with no trials)."""
        if trials == 0:
            return None
        interval = binomtest(successes, trials).proportion_ci(CONFIDENCE, method="wilson")
        return cls(successes / trials, float(interval.low), float(interval.high), successes, trials)

    def as_tuple(self) -> tuple[float, float, float]:
        """Return (value, low, high)."""
        return self.value, self.low, self.high


@dataclass(frozen=True)
class LabelThreshold:
    """The threshold suggested for one label, what it reaches on the feedback, or why none."""

    label: str
    decisions: int
    positives: int
    threshold: float | None
    precision: Interval | None
    recall: Interval | None
    met_target: bool
    note: str

    def as_dict(self) -> dict[str, Any]:
        """Return the suggestion as a JSON-ready dict."""
        return asdict(self)


def _reached(
    truth: npt.NDArray[np.int_], scores: FloatArray, threshold: float
) -> tuple[Interval | None, Interval | None]:
    """Return the precision and recall of flagging scores >= threshold."""
    flagged = scores >= threshold
    hits = int((flagged & (truth == 1)).sum())
    return Interval.of(hits, int(flagged.sum())), Interval.of(hits, int(truth.sum()))


def _candidates(
    truth: npt.NDArray[np.int_], scores: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return each distinct score as a threshold, with the precision and recall it gives."""
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], np.cumsum(truth[order])
    # A threshold at a score flags every comment scoring at least that: the last of a tie.
    last = np.r_[ranked[1:] != ranked[:-1], True]
    flagged = np.arange(1, len(ranked) + 1)[last]
    true_hits = hits[last]
    return ranked[last], true_hits / flagged, true_hits / max(int(truth.sum()), 1)


def suggest_threshold(
    label: str,
    truth: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    target_precision: float | None = None,
    target_recall: float | None = None,
    min_decisions: int = MIN_DECISIONS,
) -> LabelThreshold:
    """Return the threshold for one label from 0/1 decisions and the model's scores.

    With a target precision: the lowest threshold whose precision reaches it (the most
    recall); with a target recall: the highest whose recall reaches it (the most precision);
    with neither: the best F1. A target no threshold meets gives the closest one, flagged.
    """
    if target_precision is not None and target_recall is not None:
        raise ValueError("give a target precision or a target recall, not both")
    y = np.asarray(truth).astype(np.int_)
    s = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if min(positives, negatives) < min_decisions:
        note = (
            f"too few decisions: {positives} positive and {negatives} negative, at least "
            f"{min_decisions} of each needed"
        )
        return LabelThreshold(label, len(y), positives, None, None, None, False, note)
    thresholds, precision, recall = _candidates(y, s)
    if target_precision is not None:
        meets = np.flatnonzero(precision >= target_precision)
        met = len(meets) > 0
        index = int(meets[np.argmax(recall[meets])]) if met else int(np.argmax(precision))
        note = f"precision >= {target_precision:g}" if met else "target precision not reached"
    elif target_recall is not None:
        meets = np.flatnonzero(recall >= target_recall)
        met = True  # flagging every comment reaches any recall
        index = int(meets[np.argmax(thresholds[meets])])
        note = f"recall >= {target_recall:g}"
    else:
        total = precision + recall
        f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
        index, met, note = int(np.argmax(f1)), True, "best F1"
    threshold = float(thresholds[index])
    reached_precision, reached_recall = _reached(y, s, threshold)
    return LabelThreshold(
        label, len(y), positives, threshold, reached_precision, reached_recall, met, note
    )


def suggest_thresholds(
    truth: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    target_precision: float | None = None,
    target_recall: float | None = None,
    min_decisions: int = MIN_DECISIONS,
) -> list[LabelThreshold]:
    """Return one suggestion per label; truth is (n, 6) with NaN where a label is unknown."""
    y = np.asarray(truth, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 2 or y.shape[1] != len(LABELS):
        raise ValueError(f"expected two (n, {len(LABELS)}) arrays, got {y.shape} and {s.shape}")
    suggestions = []
    for column, label in enumerate(LABELS):
        known = ~np.isnan(y[:, column])
        suggestions.append(
            suggest_threshold(
                label,
                y[known, column],
                s[known, column],
                target_precision=target_precision,
                target_recall=target_recall,
                min_decisions=min_decisions,
            )
        )
    return suggestions
