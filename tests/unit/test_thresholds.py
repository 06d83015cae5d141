"""Thresholds from moderators' decisions: targets met on the feedback, refusals, intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from toxiguard.labels import LABELS
from toxiguard.training.thresholds import MIN_DECISIONS, suggest_threshold, suggest_thresholds


def _decisions(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return 0/1 decisions and overlapping scores (positives score higher on average)."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < 0.3).astype(int)
    scores = np.clip(rng.normal(0.35 + 0.3 * truth, 0.15), 0, 1)
    return truth, scores


@pytest.mark.parametrize("target", [0.7, 0.8, 0.9])
def test_target_precision_is_met_with_the_most_recall(target: float) -> None:
    truth, scores = _decisions()
    suggestion = suggest_threshold("toxic", truth, scores, target_precision=target)
    assert suggestion.met_target and suggestion.threshold is not None
    flagged = scores >= suggestion.threshold
    assert precision_score(truth, flagged) >= target
    assert suggestion.precision is not None and suggestion.recall is not None
    assert suggestion.precision.value == pytest.approx(precision_score(truth, flagged))
    assert suggestion.recall.value == pytest.approx(recall_score(truth, flagged))
    # No other threshold meeting the target flags more of the true positives.
    for other in np.unique(scores):
        candidate = scores >= other
        if candidate.any() and precision_score(truth, candidate) >= target:
            assert recall_score(truth, candidate) <= suggestion.recall.value + 1e-12
    assert suggestion.precision.low < suggestion.precision.value < suggestion.precision.high


def test_target_recall_is_met_with_the_highest_threshold() -> None:
    truth, scores = _decisions(seed=1)
    suggestion = suggest_threshold("insult", truth, scores, target_recall=0.9)
    assert suggestion.threshold is not None and suggestion.recall is not None
    assert recall_score(truth, scores >= suggestion.threshold) >= 0.9
    higher = np.unique(scores[scores > suggestion.threshold])
    assert all(recall_score(truth, scores >= t) < 0.9 for t in higher[:20])


def test_without_a_target_the_best_f1() -> None:
    truth, scores = _decisions(seed=2)
    suggestion = suggest_threshold("obscene", truth, scores)
    assert suggestion.threshold is not None and suggestion.note == "best F1"
    best = max(f1_score(truth, scores >= t) for t in np.unique(scores))
    assert f1_score(truth, scores >= suggestion.threshold) == pytest.approx(best)


def test_an_unreachable_precision_is_reported_not_hidden() -> None:
    rng = np.random.default_rng(3)
    truth = (rng.random(400) < 0.5).astype(int)
    scores = rng.random(400)  # scores that know nothing about the labels
    suggestion = suggest_threshold("threat", truth, scores, target_precision=0.99)
    assert not suggestion.met_target and suggestion.note == "target precision not reached"


def test_too_few_decisions_are_refused_with_the_counts() -> None:
    truth = np.r_[np.ones(MIN_DECISIONS - 1), np.zeros(500)].astype(int)
    scores = np.linspace(0, 1, len(truth))
    suggestion = suggest_threshold("threat", truth, scores, target_precision=0.8)
    assert suggestion.threshold is None and not suggestion.met_target
    assert f"{MIN_DECISIONS - 1} positive and 500 negative" in suggestion.note


def test_unknown_labels_are_left_out_per_label() -> None:
    truth, scores = _decisions(n=300, seed=4)
    matrix = np.tile(truth[:, None], (1, len(LABELS))).astype(float)
    matrix[:150, 1] = np.nan  # a suggestion that named no severe_toxic for half of them
    suggestions = suggest_thresholds(
        matrix, np.tile(scores[:, None], (1, len(LABELS))), target_precision=0.8
    )
    assert [s.label for s in suggestions] == list(LABELS)
    assert suggestions[0].decisions == 300 and suggestions[1].decisions == 150
    with pytest.raises(ValueError, match="not both"):
        suggest_threshold("toxic", truth, scores, target_precision=0.8, target_recall=0.8)
