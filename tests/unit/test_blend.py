"""The blend family: weight grids, rank mapping, tuning, save/load, reuse of fitted members."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest

from toxiguard.errors import ToxiguardError
from toxiguard.models import ToxicityModel, create_model, load_model
from toxiguard.models.base import FloatArray, LabelArray
from toxiguard.models.blend import BlendModel, empirical_cdf, simplex_grid


class KeywordModel(ToxicityModel):
    """A tiny real model: every label scores 1 when the text holds its keyword, else 0."""

    family = "keyword-test"

    def __init__(self, keyword: str = "bad") -> None:
        self.keyword = keyword
        self.fits = 0

    def fit(
        self,
        texts: Sequence[str],
        labels: LabelArray,
        *,
        validation: tuple[Sequence[str], LabelArray] | None = None,
    ) -> Self:
        self.fits += 1
        return self

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        hit = np.array([float(self.keyword in t) for t in texts])
        return np.tile(hit[:, None], 6)

    def save_state(self, directory: Path) -> None:
        (directory / "state.txt").write_text("keyword")

    def load_state(self, directory: Path) -> None:
        assert (directory / "state.txt").read_text() == "keyword"


class OtherKeywordModel(KeywordModel):
    """The same model under a second family name, so that a blend can hold two of them."""

    family = "keyword-test-2"


@pytest.fixture(autouse=True)
def _register_keyword_family(monkeypatch: pytest.MonkeyPatch) -> None:
    from toxiguard import models

    monkeypatch.setitem(models.FAMILIES, "keyword-test", KeywordModel)
    monkeypatch.setitem(models.FAMILIES, "keyword-test-2", OtherKeywordModel)


def _corpus(n: int, seed: int) -> tuple[list[str], LabelArray]:
    rng = np.random.default_rng(seed)
    has_bad = rng.random(n) < 0.3
    has_awful = rng.random(n) < 0.3
    texts = [
        f"comment {i} {'bad' if b else 'fine'} {'awful' if a else 'nice'}"
        for i, (b, a) in enumerate(zip(has_bad, has_awful, strict=True))
    ]
    labels = np.zeros((n, 6), dtype=np.int_)
    labels[:, 0] = has_bad  # label 0 follows "bad", label 1 follows "awful", the rest both
    labels[:, 1] = has_awful
    labels[:, 2:] = (has_bad | has_awful)[:, None]
    return texts, labels


def test_simplex_grid_sums_to_one() -> None:
    grid = simplex_grid(3, 0.25)
    assert len(grid) == 15
    assert all(abs(sum(w) - 1) < 1e-9 and min(w) >= 0 for w in grid)
    assert simplex_grid(2, 0.5) == [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]


def test_empirical_cdf_ranks_against_reference() -> None:
    reference = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(
        empirical_cdf(reference, np.array([0.05, 0.2, 0.35, 0.9])), [0.0, 0.5, 0.75, 1.0]
    )


def test_blend_weights_follow_the_informative_member(tmp_path: Path) -> None:
    texts, labels = _corpus(400, 0)
    val_texts, val_labels = _corpus(200, 1)
    bad = KeywordModel(keyword="bad")
    blend = create_model(
        "blend",
        estimators=[("keyword-test", bad), ("keyword-test-2", OtherKeywordModel(keyword="awful"))],
        prefit=["keyword-test"],
        weight_step=0.05,
    )
    assert isinstance(blend, BlendModel)
    blend.fit(texts, labels, validation=(val_texts, val_labels))
    assert blend.members_["keyword-test"] is bad and bad.fits == 0, "a given member is not refitted"
    assert blend.members_["keyword-test-2"].get_params()["keyword"] == "awful"
    assert set(blend.members_) == {"keyword-test", "keyword-test-2"}
    # label 0 is exactly "bad", label 1 exactly "awful": each leans on its own member
    assert blend.weights_[0][0] > 0.5
    assert blend.weights_[1][1] > 0.5
    probabilities = blend.predict_proba(val_texts)
    assert probabilities.shape == (200, 6)
    assert probabilities.min() >= 0 and probabilities.max() <= 1

    loaded = load_model(blend.save(tmp_path / "blend"))
    np.testing.assert_allclose(loaded.predict_proba(val_texts), probabilities)


def test_blend_rejects_fewer_than_two_members() -> None:
    with pytest.raises(ToxiguardError, match="two or more"):
        create_model("blend", members=["tfidf-lr"])


def test_blend_holds_out_validation_when_none_is_given() -> None:
    texts, labels = _corpus(300, 2)
    blend: Any = create_model("blend", members=["keyword-test", "tfidf-lr"], weight_step=0.5)
    blend.fit(texts, labels)
    assert blend.distributions_["tfidf-lr"].shape[0] < 300 * 0.3


def test_a_jobs_blend_takes_the_transformer_and_its_best_tfidf_model() -> None:
    from toxiguard.data.demo import make_demo_corpus
    from toxiguard.data.splits import split_dataset
    from toxiguard.data.validation import label_matrix
    from toxiguard.training.steps import blend_members, fit_model, texts_of

    splits = split_dataset(
        make_demo_corpus(900, seed=5), seed=0, validation_size=0.2, test_size=0.1
    )
    small = {"word_max_features": 3_000, "char_max_features": 3_000}
    fitted = {
        family: fit_model(family, splits, small)[0] for family in ("complement-nb", "tfidf-lr")
    }
    # A useless TF-IDF model: its labels were shuffled across rows.
    order = np.random.default_rng(0).permutation(len(splits.train))
    shuffled = label_matrix(splits.train)[order]
    fitted["nbsvm"] = create_model("nbsvm", **small).fit(texts_of(splits.train), shuffled)
    best_two = blend_members(fitted, splits, 2)
    assert best_two[0] == "transformer" and sorted(best_two[1:]) == ["complement-nb", "tfidf-lr"]
    assert len(blend_members(fitted, splits, 1)) == 2
    assert sorted(blend_members(fitted, splits, 5)[1:]) == sorted(fitted)
    only = {"nbsvm": fitted["nbsvm"]}
    assert blend_members(only, splits, 3) == ["transformer", "nbsvm"]
    assert blend_members({}, splits, 3) == ["transformer", "tfidf-lr"]
