"""The robustness report, on a fake predictor that only knows exact words."""

from __future__ import annotations

import json
import zlib

import numpy as np
import numpy.typing as npt
import pytest

from toxiguard.data.perturbations import PERTURBATIONS
from toxiguard.errors import ToxiguardError
from toxiguard.labels import LABELS
from toxiguard.training.robustness import RobustnessReport, robustness_report, stratified_rows

BAD_WORDS = frozenset({"idiot", "stupid", "moron"})


class ExactWords:
    """Scores a text by the share of its words that are bad words, spelt exactly; counts calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, texts: list[str]) -> npt.NDArray[np.float64]:
        self.calls.append(len(texts))
        scores = [
            sum(word.strip(",.!").lower() in BAD_WORDS for word in text.split()) for text in texts
        ]
        # A little noise, the same for a text in any case, breaks ties once the words are gone.
        noise = np.asarray([zlib.crc32(text.lower().encode()) for text in texts]) / 2**32 * 1e-3
        return np.repeat((np.asarray(scores, dtype=np.float64) + noise)[:, None], len(LABELS), 1)


def corpus(n: int = 120) -> tuple[list[str], npt.NDArray[np.int8]]:
    """Return n comments, every third an insult (labels toxic and insult; threat on a few)."""
    texts, labels = [], []
    for i in range(n):
        toxic = i % 3 == 0
        texts.append(f"you are a stupid idiot number {i}" if toxic else f"thanks for edit {i}")
        labels.append([toxic, 0, 0, toxic and i % 15 == 0, toxic, 0])
    return texts, np.asarray(labels, dtype=np.int8)


def test_perturbed_copies_score_lower_than_clean_ones_in_one_call() -> None:
    texts, labels = corpus()
    predict = ExactWords()
    report = robustness_report(predict, texts, labels, seed=0)
    assert predict.calls == [len(texts) * (1 + len(PERTURBATIONS))]
    assert report.rows == len(texts)
    clean = report.clean_auc
    assert clean is not None and clean > 0.95  # threat is not told from other insults: < 1
    assert set(report.perturbed) == set(PERTURBATIONS)
    # Caps: the fake lower-cases, like the models; every other one hides some words.
    assert report.perturbed["caps"] == pytest.approx(clean)
    for name in set(PERTURBATIONS) - {"caps"}:
        auc = report.perturbed[name]
        assert auc is not None and auc < clean - 0.05, name
    assert report.perturbed["spaced"] == report.worst_auc
    assert report.worst_name == "spaced"
    assert report.drops["caps"] == pytest.approx(0.0)


def test_the_same_seed_gives_the_same_report() -> None:
    texts, labels = corpus()
    first = robustness_report(ExactWords(), texts, labels, seed=3, perturbations=["masked"])
    assert first == robustness_report(ExactWords(), texts, labels, seed=3, perturbations=["masked"])
    assert list(first.perturbed) == ["masked"]


def test_max_rows_scores_a_stratified_subsample_in_one_call() -> None:
    texts, labels = corpus(300)
    predict = ExactWords()
    report = robustness_report(
        predict, texts, labels, seed=0, perturbations=["spaced"], max_rows=30
    )
    assert report.rows == 30
    assert predict.calls == [60]
    rows = stratified_rows(labels, 30, seed=0)
    assert len(rows) == len(set(rows.tolist())) == 30
    # Threat (4% of rows) keeps a positive; the any-label share stays near a third.
    assert labels[rows, 3].sum() >= 1
    assert 8 <= (labels[rows].max(axis=1)).sum() <= 12
    assert np.array_equal(rows, stratified_rows(labels, 30, seed=0))
    assert len(stratified_rows(labels, 1000, seed=0)) == 300


def test_stratified_rows_keeps_each_label_while_it_can() -> None:
    labels = np.zeros((1000, 6), dtype=np.int8)
    labels[:3, 3] = 1  # 3 threat rows among 1,000
    labels[3:300, 0] = 1
    rows = stratified_rows(labels, 10, seed=1)
    assert len(rows) == 10 and labels[rows, 3].sum() >= 1 and labels[rows, 0].sum() >= 1
    with pytest.raises(ToxiguardError, match="max_rows"):
        stratified_rows(labels, 0, seed=1)


def test_undefined_aucs_and_worst() -> None:
    texts = ["a b c idiot"] * 4
    labels = np.zeros((4, 6), dtype=np.int8)  # one class only: no ROC-AUC anywhere
    report = robustness_report(ExactWords(), texts, labels, seed=0)
    assert report.clean_auc is None
    assert all(auc is None for auc in report.perturbed.values())
    assert report.worst_name is None and report.worst_auc is None
    assert report.drops["caps"] is None


def test_bad_inputs_are_errors() -> None:
    texts, labels = corpus(9)
    with pytest.raises(ToxiguardError, match="unknown perturbation"):
        robustness_report(ExactWords(), texts, labels, seed=0, perturbations=["rot13"])
    with pytest.raises(ToxiguardError, match="shape"):
        robustness_report(ExactWords(), texts, labels[:5], seed=0)
    with pytest.raises(ToxiguardError, match="predict returned"):
        robustness_report(lambda batch: np.zeros((1, 6)), texts, labels, seed=0)


def test_report_round_trips_through_json() -> None:
    report = RobustnessReport(
        rows=10, clean_auc=0.97, perturbed={"leetspeak": 0.9, "spaced": None, "caps": 0.97}
    )
    again = RobustnessReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    assert again.worst_name == "leetspeak" and again.worst_auc == 0.9
    assert RobustnessReport.from_dict({"rows": 1, "clean_auc": 1, "perturbed": {}}).clean_auc == 1.0


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"rows": 1, "clean_auc": 0.9},
        {"rows": "1", "clean_auc": 0.9, "perturbed": {}},
        {"rows": 1, "clean_auc": "high", "perturbed": {}},
        {"rows": 1, "clean_auc": 0.9, "perturbed": {"caps": True}},
        {"rows": 1, "clean_auc": 0.9, "perturbed": []},
    ],
)
def test_malformed_reports_are_errors(data: dict[str, object]) -> None:
    with pytest.raises(ToxiguardError, match="robustness report"):
        RobustnessReport.from_dict(data)
