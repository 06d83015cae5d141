"""The cascade family: the band chosen on validation, only escalated comments reach the slow
stage, save/load, the spec round trip, and a training job that reuses its fitted stages."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from toxiguard.data.demo import write_demo_corpus
from toxiguard.data.splits import Splits, split_dataset
from toxiguard.data.validation import label_matrix, load_dataset
from toxiguard.errors import ToxiguardError
from toxiguard.models import create_model, load_model
from toxiguard.models.base import FloatArray
from toxiguard.models.cascade import CascadeModel, band_edges, in_band
from toxiguard.models.metrics import mean_roc_auc
from toxiguard.models.tfidf.linear import TfidfLogisticModel
from toxiguard.settings import Settings
from toxiguard.training.pipeline import train_families, training_order
from toxiguard.training.steps import prepare_data, texts_of


class CountingLogistic(TfidfLogisticModel):
    """tfidf-lr that records how many comments each predict_proba call saw."""

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        self.calls: list[int] = [*getattr(self, "calls", []), len(texts)]
        return super().predict_proba(texts)


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> Splits:
    path = write_demo_corpus(tmp_path_factory.mktemp("demo") / "demo.csv.gz", n_rows=2000)
    return split_dataset(load_dataset(path).frame, seed=42, validation_size=0.15, test_size=0.15)


def _fitted(splits: Splits, max_auc_loss: float = 0.001) -> CascadeModel:
    model = create_model(
        "cascade", fast="complement-nb", slow="tfidf-lr", max_auc_loss=max_auc_loss
    )
    assert isinstance(model, CascadeModel)
    validation = (texts_of(splits.validation), label_matrix(splits.validation))
    return model.fit(texts_of(splits.train), label_matrix(splits.train), validation=validation)


def test_the_band_keeps_validation_within_the_loss_budget(splits: Splits) -> None:
    model = _fitted(splits)
    budget = model.slow_validation_auc_ - model.max_auc_loss
    assert model.validation_auc_ >= budget
    # it is the least-escalating point of the curve within budget
    within = [point for point in model.curve_ if point["auc"] >= budget]
    assert model.validation_escalated_ == min(point["escalated"] for point in within)
    diagnostics = model.diagnostics()
    assert diagnostics["cascade_val_escalated_share"] == model.validation_escalated_
    # what the model reports on validation is what its predictions score there
    texts, truth = texts_of(splits.validation), label_matrix(splits.validation)
    assert mean_roc_auc(truth, model.predict_proba(texts)) == pytest.approx(model.validation_auc_)
    assert model.escalated_share(texts) == pytest.approx(model.validation_escalated_)


def test_a_zero_budget_can_escalate_everything_and_equals_the_slow_stage(splits: Splits) -> None:
    model = _fitted(splits, max_auc_loss=0.0)
    texts = texts_of(splits.test)
    if model.tail_share_ == -1.0:  # no band met the budget: every comment escalated
        assert model.escalated_share(texts) == 1.0
        slow = model.fitted_stages()["slow"].predict_proba(texts)
        np.testing.assert_array_equal(model.predict_proba(texts), slow)
    else:
        assert model.validation_auc_ >= model.slow_validation_auc_


def test_only_escalated_comments_reach_the_slow_stage(splits: Splits) -> None:
    model = _fitted(splits)
    slow = CountingLogistic().fit(texts_of(splits.train), label_matrix(splits.train))
    model.stages_["slow"] = slow
    texts = texts_of(splits.test)
    fast_scores = model.fitted_stages()["fast"].predict_proba(texts)
    escalated = model.escalated(fast_scores)
    slow.calls = []
    scores = model.predict_proba(texts)
    assert slow.calls == ([int(escalated.sum())] if escalated.any() else [])
    np.testing.assert_array_equal(scores[~escalated], fast_scores[~escalated])
    slow.calls = []
    easy = [text for text, up in zip(texts, escalated, strict=True) if not up]
    model.predict_proba(easy)
    assert slow.calls == []  # a batch of easy comments never runs the slow stage


def test_band_edges_follow_the_tails_and_skip_one_class_labels() -> None:
    fast = np.array([[0.1, 0.2], [0.4, 0.3], [0.6, 0.1], [0.9, 0.2]])
    truth = np.array([[0, 0], [1, 0], [0, 0], [1, 0]])
    low, high = band_edges(fast, truth, 0.0)
    assert low[0] == 0.4 and high[0] == 0.6  # the lowest positive, the highest negative
    assert np.isinf(low[1]) and np.isinf(high[1])  # no positives: never escalates
    assert in_band(fast, low, high).any(axis=1).tolist() == [False, True, True, False]


def test_saved_cascade_loads_with_the_same_scores(splits: Splits, tmp_path: Path) -> None:
    model = _fitted(splits)
    loaded = load_model(model.save(tmp_path / "cascade"))
    assert isinstance(loaded, CascadeModel)
    texts = texts_of(splits.test)
    np.testing.assert_array_equal(loaded.predict_proba(texts), model.predict_proba(texts))
    assert loaded.curve_ == model.curve_ and loaded.tail_share_ == model.tail_share_


def test_defaults_and_bad_params() -> None:
    model = create_model("cascade")
    assert isinstance(model, CascadeModel)
    assert model.fast is not None and model.fast.family == "nbsvm"
    assert model.slow is not None and model.slow.family == "blend"
    assert model.json_params()["fast"]["family"] == "nbsvm"
    with pytest.raises(ToxiguardError, match=r"max_auc_loss must be in \[0, 1\)"):
        create_model("cascade", fast="complement-nb", slow="tfidf-lr", max_auc_loss=2)
    with pytest.raises(ToxiguardError, match="unknown model family 'nb'"):
        create_model("cascade", fast="nb")
    with pytest.raises(ToxiguardError, match="needs validation comments"):
        create_model("cascade", fast="complement-nb", slow="tfidf-lr").fit(
            ["a"], np.zeros((1, 6), dtype=np.int_)
        )


def test_composites_train_last_blend_before_cascade() -> None:
    assert training_order(["cascade", "blend", "nbsvm", "tfidf-lr"]) == [
        "nbsvm",
        "tfidf-lr",
        "blend",
        "cascade",
    ]


def test_a_training_job_builds_the_cascade_from_its_own_fitted_models(
    tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="toxiguard")
    data = write_demo_corpus(tmp_path / "demo.csv.gz", n_rows=1500)
    prepared = prepare_data(data, settings)
    result = train_families(
        prepared,
        settings,
        ["complement-nb", "tfidf-lr", "cascade"],
        {"cascade": {"slow": "tfidf-lr"}},
    )
    families = [item.family for item in result.models]
    assert families == ["complement-nb", "tfidf-lr", "cascade"]
    cascade = result.models[-1]
    assert 0.0 <= cascade.evaluation.test["escalated_share"] <= 1.0
    assert "escalation_curve.png" in cascade.evaluation.figures
    messages = [record.getMessage() for record in caplog.records]
    assert "cascade: slow stage tfidf-lr, fitted in this job" in messages
    assert any(m.startswith("cascade: fast stage ") and "fitted in this job" in m for m in messages)
    assert not any(m.startswith("cascade: fitting the") for m in messages)  # nothing refitted
