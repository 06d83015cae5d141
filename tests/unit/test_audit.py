"""The audit report (bias + robustness in one), the gate's guards, and training augmentation."""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt
import pytest

from toxiguard.data.augmentation import (
    augment_training,
    check_augmentations,
    identity_neutral_rows,
    identity_neutral_sentences,
    subgroup_copies,
)
from toxiguard.data.identity import templated_comments
from toxiguard.data.perturbations import PERTURBATIONS
from toxiguard.errors import ToxiguardError
from toxiguard.labels import LABELS
from toxiguard.registry.promotion import Guard
from toxiguard.training.audit import (
    GUARDED,
    AuditReport,
    audit_model,
    audit_summary,
    neutral_rows,
    robustness_rows,
)

TOXIC_WORDS = ("idiot", "stupid", "moron", "hate")
COMMENTS = [
    *(f"you are an {word} and a fool, number {i}" for i, word in enumerate(TOXIC_WORDS * 10)),
    *(f"thanks for the careful edit of section {i}" for i in range(60)),
    *(f"I am a gay man and this {w} edit is fine {i}" for i, w in enumerate(["good"] * 10)),
    *(f"the gay pride article is a {w} {i}" for i, w in enumerate(["idiot"] * 10)),
]


def keyword_scores(texts: list[str]) -> npt.NDArray[np.float64]:
    """Return scores that rise with each toxic word present, and +0.5 for the word 'gay'."""
    rows = []
    for text in texts:
        lowered = text.lower()
        score = 0.1 + 0.3 * sum(word in lowered for word in TOXIC_WORDS)
        score += 0.5 * ("gay" in lowered)
        rows.append([min(score, 1.0)] * len(LABELS))
    return np.asarray(rows, dtype=np.float64)


def truth_of(texts: list[str]) -> npt.NDArray[np.int_]:
    """Return every label positive for a comment with a toxic word."""
    return np.array(
        [[int(any(word in text for word in TOXIC_WORDS))] * len(LABELS) for text in texts]
    )


@pytest.fixture(scope="module")
def report() -> AuditReport:
    return audit_model(
        keyword_scores,
        COMMENTS,
        truth_of(COMMENTS),
        np.full(len(LABELS), 0.5),
        seed=1,
        robustness_rows=None,
    )


def test_the_audit_finds_the_term_the_scorer_is_biased_against(report: AuditReport) -> None:
    neutral = report.neutral
    assert "gay" in neutral.highest
    assert neutral.gap == pytest.approx(0.5)
    assert all("gay" in term for term in neutral.above_threshold)
    gay = next(g for g in report.bias_templates.subgroups if g.subgroup.startswith("homosexual"))
    others = [g for g in report.bias_templates.subgroups if g is not gay]
    # Its neutral sentences score like toxic ones elsewhere: background positive, subgroup
    # negative AUC is where the bias shows.
    assert gay.bpsn_auc is not None and gay.bpsn_auc < min(g.bpsn_auc or 1.0 for g in others)
    assert report.bias_templates.final_score is not None
    assert report.bias_templates.final_score < 1.0


def test_obfuscation_lowers_a_keyword_scorer_and_caps_does_not(report: AuditReport) -> None:
    robustness = report.robustness
    assert set(robustness.perturbed) == set(PERTURBATIONS)
    assert robustness.clean_auc is not None and robustness.clean_auc > 0.85
    # The keyword scorer lower-cases, so all caps changes nothing; spaced letters hide every word.
    assert robustness.perturbed["caps"] == pytest.approx(robustness.clean_auc)
    assert robustness.worst_auc is not None and robustness.worst_auc < 0.9
    rows = robustness_rows(robustness)
    assert rows[0]["perturbation"] == "clean" and len(rows) == len(PERTURBATIONS) + 1


def test_each_distinct_text_is_scored_once(report: AuditReport) -> None:
    calls: list[int] = []

    def counting(texts: list[str]) -> npt.NDArray[np.float64]:
        calls.append(len(texts))
        return keyword_scores(texts)

    probabilities = keyword_scores(COMMENTS)
    audit_model(
        counting,
        COMMENTS,
        truth_of(COMMENTS),
        np.full(len(LABELS), 0.5),
        seed=1,
        robustness_rows=None,
        probabilities=probabilities,
    )
    # The test comments came scored; the templated set once (the neutral sentences are part of
    # it); the perturbed copies once.
    templated = len({comment.text for comment in templated_comments()})
    assert sum(calls) <= templated + len(PERTURBATIONS) * len(COMMENTS)
    assert all(size > 0 for size in calls)


def test_the_report_survives_json(report: AuditReport) -> None:
    again = AuditReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    assert again.metrics() == report.metrics()
    assert set(report.guarded()) == set(GUARDED)
    assert report.metrics()["audit_robustness_worst"] == report.robustness.worst_auc
    lines = audit_summary(report)
    assert any("final bias score" in line for line in lines)
    assert neutral_rows(report.neutral)[0]["identity"] == report.neutral.highest


def test_a_guard_holds_within_its_margin_only() -> None:
    assert Guard("bias_final_test", new=0.945, champion=0.95, margin=0.01).holds
    assert Guard("bias_final_test", new=0.95, champion=0.95, margin=0.0).holds
    blocked = Guard("robustness_worst", new=0.80, champion=0.85, margin=0.01)
    assert not blocked.holds
    assert blocked.describe() == "robustness_worst 0.8000 < champion 0.8500 - margin 0.01"


def test_augmentation_adds_rows_to_training_only_of_the_kinds_asked() -> None:
    texts = ["John is an idiot", "thanks for the edit", "the muslim editor fixed it"]
    labels = np.array([[1, 0, 0, 0, 1, 0], [0] * 6, [0] * 6], dtype=np.int8)
    same, same_labels = augment_training(texts, labels, [], seed=3)
    assert same == texts and (same_labels == labels).all()
    swapped, swapped_labels = augment_training(texts, labels, ["identity_swap"], seed=3)
    assert swapped[:3] == texts and len(swapped) == 5  # the two texts that name an identity
    assert "John" not in swapped[3] and swapped[3].endswith("is an idiot")
    assert (swapped_labels[3] == labels[0]).all() and (swapped_labels[4] == labels[2]).all()
    neutral, neutral_labels = augment_training(texts, labels, ["identity_neutral"], seed=3)
    added = identity_neutral_sentences()
    # At most a tenth of the training comments: none for three comments.
    assert neutral == texts
    many = texts * 4000
    clean = np.zeros((len(many), len(LABELS)), np.int8)
    neutral, neutral_labels = augment_training(many, clean, ["identity_neutral"], 3)
    # Each subgroup once (no comment is toxic, so none is named more often in toxic ones).
    assert sorted(neutral[len(many) :]) == sorted(added) and not neutral_labels[len(many) :].any()
    # None of the added sentences is one the audit evaluates on.
    assert not set(added) & {comment.text for comment in templated_comments()}
    many = [f"you are a stupid idiot number {i}" for i in range(50)]
    masked, masked_labels = augment_training(many, np.ones((50, 6), np.int8), ["masking"], seed=3)
    assert masked[:50] == many and len(masked) == 55  # 10% copies, labels kept
    assert all("*" in text for text in masked[50:]) and masked_labels[50:].all()
    with pytest.raises(ToxiguardError, match=r"unknown augmentation.*'mixup'"):
        check_augmentations(["identity_neutral", "mixup"])


def test_subgroups_named_mostly_in_toxic_comments_get_more_neutral_sentences() -> None:
    texts = [f"the gay editor {i}" for i in range(40)] + [f"John fixed it {i}" for i in range(40)]
    texts += [f"plain comment {i}" for i in range(120)]
    toxic = np.array([1] * 30 + [0] * 10 + [0] * 40 + [1] * 20 + [0] * 100)
    copies = subgroup_copies(texts, toxic)
    # 75% of the comments naming "gay" are toxic against 25% overall: (3x)^2 = 9 copies; John's
    # are never toxic: at least 1; a subgroup never named: 1.
    assert copies["homosexual_gay_or_lesbian"] == 9
    assert copies["names_anglo"] == 1 and copies["muslim"] == 1
    gay = identity_neutral_sentences(["homosexual_gay_or_lesbian"])
    rows = identity_neutral_rows(texts * 100, np.tile(toxic, 100), seed=1)
    assert sum(row in gay for row in rows) == 9 * len(gay)
    # A small training set gets a seeded tenth of its size.
    small = identity_neutral_rows(texts, toxic, seed=1)
    assert len(small) == len(texts) // 10
    assert small == identity_neutral_rows(texts, toxic, seed=1)
