"""Bias metrics (subgroup, BPSN, BNSP AUC, power mean, final score) against hand counts."""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt
import pytest

from toxiguard.data.identity import IDENTITY_PHRASES, templated_comments
from toxiguard.training import bias
from toxiguard.training.bias import BiasReport, NeutralGap, SubgroupAucs, power_mean

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def pairwise_auc(positive: FloatArray, negative: FloatArray) -> float:
    """Return the share of (positive, negative) pairs ordered right, ties counting one half."""
    diff = positive[:, None] - negative[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def dataset() -> tuple[FloatArray, FloatArray, dict[str, BoolArray]]:
    """Return truth, fair scores and masks: subgroups a (40 rows), b (40), background (120)."""
    rng = np.random.default_rng(0)
    truth = np.tile([1.0, 0.0], 100)
    scores = np.where(truth == 1, rng.uniform(0.6, 0.9, 200), rng.uniform(0.1, 0.4, 200))
    index = np.arange(200)
    return truth, scores, {"a": index < 40, "b": (index >= 40) & (index < 80)}


def test_a_fair_scorer_scores_one_everywhere() -> None:
    truth, scores, masks = dataset()
    report = bias.bias_report("test", truth, scores, masks)
    assert report.overall_auc == 1.0 and report.final_score == 1.0
    assert all(row.defined() == [1.0, 1.0, 1.0] for row in report.subgroups)
    assert [row.size for row in report.subgroups] == [40, 40]


def test_raising_one_subgroup_lowers_its_bpsn_and_matches_the_hand_computation() -> None:
    truth, scores, masks = dataset()
    a = masks["a"]
    scores = scores + 0.5 * a
    report = bias.bias_report("test", truth, scores, masks)
    rows = {row.subgroup: row for row in report.subgroups}
    positive = truth == 1
    expected_bpsn = pairwise_auc(scores[~a & positive], scores[a & ~positive])
    assert rows["a"].bpsn_auc == pytest.approx(expected_bpsn)
    assert expected_bpsn < 0.7
    assert rows["a"].subgroup_auc == 1.0 and rows["a"].bnsp_auc == 1.0
    b = masks["b"]
    assert rows["b"].subgroup_auc == 1.0 and rows["b"].bpsn_auc == 1.0
    expected_b_bnsp = pairwise_auc(scores[b & positive], scores[~b & ~positive])
    assert rows["b"].bnsp_auc == pytest.approx(expected_b_bnsp)
    assert expected_b_bnsp > expected_bpsn + 0.1
    assert report.worst(1) == [rows["a"]]

    overall = pairwise_auc(scores[positive], scores[~positive])
    means = [
        power_mean([1.0, 1.0]),
        power_mean([expected_bpsn, 1.0]),
        power_mean([1.0, expected_b_bnsp]),
    ]
    assert report.overall_auc == pytest.approx(overall)
    assert report.final_score == pytest.approx(0.25 * overall + 0.75 * np.mean(means))


def test_power_mean_follows_the_formula_and_leans_on_the_minimum() -> None:
    values = [0.95, 0.9, 0.6]
    expected = (np.mean(np.array(values) ** -5.0)) ** (1 / -5.0)
    assert power_mean(values) == pytest.approx(expected)
    assert min(values) < power_mean(values) < np.mean(values)
    # One bad subgroup among ten: the mean hardly moves, the power mean drops five times more.
    one_bad = [1.0] * 9 + [0.5]
    assert 1 - power_mean(one_bad) > 4 * (1 - np.mean(one_bad))
    assert power_mean([0.8, 0.8]) == pytest.approx(0.8)
    assert power_mean([0.0, 0.9]) == 0.0
    assert power_mean(values, p=1.0) == pytest.approx(np.mean(values))
    with pytest.raises(ValueError):
        power_mean([])


def test_small_or_single_class_subgroups_are_reported_as_none_and_left_out() -> None:
    truth, scores, masks = dataset()
    index = np.arange(200)
    scores = scores + 0.5 * masks["a"]
    small = {**masks, "tiny": index >= 195}
    one_class = {**masks, "clean": (index >= 80) & (truth == 0)}
    base = bias.bias_report("test", truth, scores, masks)
    with_small = bias.bias_report("test", truth, scores, small, min_size=10)
    tiny = with_small.subgroups[-1]
    assert tiny == SubgroupAucs("tiny", 5, None, None, None)
    assert with_small.final_score == base.final_score
    clean = bias.bias_report("test", truth, scores, one_class).subgroups[-1]
    assert clean.subgroup_auc is None and clean.bnsp_auc is None
    assert clean.bpsn_auc is not None


def test_a_metric_without_any_defined_subgroup_leaves_the_final_score_undefined() -> None:
    truth, scores, masks = dataset()
    report = bias.bias_report("test", truth, scores, masks, min_size=1000)
    assert report.final_score is None
    assert report.power_means() == {"subgroup_auc": None, "bpsn_auc": None, "bnsp_auc": None}
    assert report.worst() == []


def test_lengths_that_differ_raise() -> None:
    truth, scores, masks = dataset()
    with pytest.raises(ValueError, match="scores"):
        bias.bias_report("test", truth, scores[:-1], masks)
    with pytest.raises(ValueError, match="mask 'a'"):
        bias.bias_report("test", truth, scores, {"a": masks["a"][:-1]})


def test_report_round_trips_through_json() -> None:
    truth, scores, masks = dataset()
    report = bias.bias_report("test", truth, scores + 0.5 * masks["a"], {**masks, "x": ~masks["a"]})
    again = BiasReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report


def test_labelled_bias_finds_subgroups_by_their_terms() -> None:
    texts = ["my wife is kind", "you are an idiot", "my wife is an idiot", "nice edit"] * 10
    truth = np.array([0, 1, 1, 0] * 10)
    scores = np.array([0.1, 0.9, 0.8, 0.2] * 10)
    report = bias.labelled_bias(texts, truth, scores)
    rows = {row.subgroup: row for row in report.subgroups}
    assert report.evaluation_set == "test" and report.rows == 40
    assert rows["female"].size == 20 and rows["female"].defined() == [1.0, 1.0, 1.0]
    assert rows["male"] == SubgroupAucs("male", 0, None, None, None)


def biased_predictor(calls: list[int]) -> bias.ToxicPredictor:
    """Return a predictor that is right on the templates but adds 0.5 to sentences with 'gay'."""
    toxic = {comment.text for comment in templated_comments() if comment.toxic}

    def predict(texts: list[str]) -> FloatArray:
        calls.append(len(texts))
        base = np.array([0.45 if text in toxic else 0.05 for text in texts])
        return base + 0.5 * np.array(["gay" in text.lower() for text in texts])

    return predict


def test_templated_bias_scores_the_set_in_one_call_and_finds_the_biased_subgroup() -> None:
    calls: list[int] = []
    report = bias.templated_bias(biased_predictor(calls))
    assert calls == [len(templated_comments())]
    assert report.evaluation_set == "templates" and report.rows == calls[0]
    worst = report.worst(1)[0]
    assert worst.subgroup == "homosexual_gay_or_lesbian"
    assert worst.bpsn_auc is not None and worst.bpsn_auc < 0.5
    others = [row for row in report.subgroups if row.subgroup != worst.subgroup]
    assert all(row.subgroup_auc == 1.0 and row.bpsn_auc == 1.0 for row in others)
    assert report.final_score is not None and report.final_score < 0.9


def test_templated_bias_of_a_fair_predictor_is_one() -> None:
    toxic = {comment.text for comment in templated_comments() if comment.toxic}

    def fair(texts: list[str]) -> FloatArray:
        return np.array([0.9 if text in toxic else 0.1 for text in texts])

    assert bias.templated_bias(fair).final_score == 1.0


def test_neutral_gap_reports_the_spread_and_the_phrases_above_the_threshold() -> None:
    def predict(texts: list[str]) -> FloatArray:
        return np.array([0.7 if "gay" in text.lower() else 0.2 for text in texts])

    gap = bias.neutral_gap(predict, threshold=0.42)
    assert gap.gap == pytest.approx(0.5)
    assert "gay" in gap.highest and "gay" not in gap.lowest
    assert gap.above_threshold == ("a gay man", "a gay person")
    assert gap.mean_by_term["Priya"] == pytest.approx(0.2)
    assert len(gap.mean_by_term) == sum(len(p) for p in IDENTITY_PHRASES.values())
    assert NeutralGap.from_dict(json.loads(json.dumps(gap.to_dict()))) == gap


def test_a_predictor_returning_the_wrong_number_of_scores_raises() -> None:
    with pytest.raises(ValueError, match="scores for"):
        bias.neutral_gap(lambda texts: np.zeros(3), threshold=0.5)
