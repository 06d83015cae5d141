"""The linear model families on the synthetic demo corpus: fit, predict, save/load, params."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from toxiguard.data.demo import make_demo_corpus
from toxiguard.data.validation import label_matrix
from toxiguard.errors import ModelNotFoundError, ToxiguardError
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.models import ToxicityModel, create_model, load_model, model_class, model_families
from toxiguard.models.base import META_FILE
from toxiguard.models.package import ModelPackage
from toxiguard.models.tfidf.linear import LinearTextModel

FAMILIES = ("tfidf-lr", "nbsvm", "tfidf-svm", "complement-nb")
# Small vocabularies keep the tests fast; the corpus is small anyway.
SMALL = {"word_max_features": 5_000, "char_max_features": 10_000}
TRAIN_ROWS = 900


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    """Return a 1,200-row demo corpus (templated, labelled by construction)."""
    return make_demo_corpus(1200, seed=3)


@pytest.fixture(scope="module")
def fitted(corpus: pd.DataFrame) -> dict[str, ToxicityModel]:
    """Return one model per family fitted on the first 900 rows."""
    texts = corpus[TEXT_COLUMN].tolist()[:TRAIN_ROWS]
    labels = label_matrix(corpus)[:TRAIN_ROWS]
    return {family: create_model(family, **SMALL).fit(texts, labels) for family in FAMILIES}


def held_out(corpus: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Return the rows no model was fitted on."""
    return corpus[TEXT_COLUMN].tolist()[TRAIN_ROWS:], label_matrix(corpus)[TRAIN_ROWS:]


def test_every_family_is_registered() -> None:
    assert set(FAMILIES) <= set(model_families())
    for family in FAMILIES:
        assert issubclass(model_class(family), LinearTextModel)
        assert model_class(family).family == family


@pytest.mark.parametrize("family", FAMILIES)
def test_predict_proba_shape_range_and_dtype(
    family: str, fitted: dict[str, ToxicityModel], corpus: pd.DataFrame
) -> None:
    texts, _ = held_out(corpus)
    proba = fitted[family].predict_proba(texts)
    assert proba.shape == (len(texts), len(LABELS))
    assert proba.dtype == np.float64
    assert np.isfinite(proba).all()
    assert proba.min() >= 0.0
    assert proba.max() <= 1.0


@pytest.mark.parametrize("family", FAMILIES)
def test_better_than_chance_on_held_out_rows(
    family: str, fitted: dict[str, ToxicityModel], corpus: pd.DataFrame
) -> None:
    texts, truth = held_out(corpus)
    proba = fitted[family].predict_proba(texts)
    aucs = [roc_auc_score(truth[:, j], proba[:, j]) for j in range(len(LABELS))]
    # The corpus is templated with 3% label noise: every label is learnable far above 0.5.
    assert min(aucs) > 0.75, dict(zip(LABELS, aucs, strict=True))
    assert np.mean(aucs) > 0.85


@pytest.mark.parametrize("family", FAMILIES)
def test_save_then_load_gives_identical_probabilities(
    family: str, fitted: dict[str, ToxicityModel], corpus: pd.DataFrame, tmp_path: Path
) -> None:
    model = ModelPackage(fitted[family], np.linspace(0.2, 0.7, len(LABELS)))
    directory = model.save(tmp_path / family)
    loaded = ModelPackage.load(directory)
    assert type(loaded.model) is type(model.model)
    assert loaded.model.json_params() == model.model.json_params()
    assert json.loads((directory / META_FILE).read_text())["params"] == model.model.json_params()
    np.testing.assert_array_equal(loaded.thresholds, model.thresholds)
    texts, _ = held_out(corpus)
    np.testing.assert_array_equal(loaded.predict_proba(texts), model.predict_proba(texts))


def test_parallel_and_serial_transform_agree(
    fitted: dict[str, ToxicityModel], corpus: pd.DataFrame
) -> None:
    model = fitted["tfidf-lr"]
    assert isinstance(model, LinearTextModel)
    assert model.featurizer_ is not None
    texts = corpus[TEXT_COLUMN].tolist() * 2  # 2,400 texts: above the parallel threshold
    parallel = model.featurizer_.transform(texts)
    model.featurizer_.n_jobs = 1
    try:
        serial = model.featurizer_.transform(texts)
    finally:
        model.featurizer_.n_jobs = 2
    assert (parallel != serial).nnz == 0


def test_cleaning_happens_inside_the_model(fitted: dict[str, ToxicityModel]) -> None:
    # Raw text goes in: case, repeated letters and extra spaces are cleaned away by the model.
    model = fitted["tfidf-lr"]
    raw = model.predict_proba(["YOU   ARE   A   STUUUUPID   IDIOT"])
    clean = model.predict_proba(["you are a stuupid idiot"])
    np.testing.assert_allclose(raw, clean)


@pytest.mark.parametrize("family", FAMILIES)
def test_odd_texts_are_scored(family: str, fitted: dict[str, ToxicityModel]) -> None:
    odd = [
        "",
        "   ",
        "\ud800 lone surrogate",
        "\x00nul",
        "\U0001f600" * 50,
        "a" * 50_000,
        "\uff26\uff55\uff4c\uff4c width",
        "\u200b\u200b",
        "\n\t",
    ]
    proba = fitted[family].predict_proba(odd)
    assert proba.shape == (len(odd), len(LABELS))
    assert np.isfinite(proba).all()
    assert ((proba >= 0) & (proba <= 1)).all()


def test_empty_input_gives_an_empty_array(fitted: dict[str, ToxicityModel]) -> None:
    assert fitted["nbsvm"].predict_proba([]).shape == (0, len(LABELS))


def test_params_defaults_overrides_and_round_trip() -> None:
    model = create_model("tfidf-lr", C={"threat": 8.0}, cleaning=["lowercase"])
    assert model.get_params()["C"] == {"threat": 8.0}
    assert model.get_params()["cleaning"] == ["lowercase"]
    assert model.get_params()["seed"] == 42
    assert isinstance(model, LinearTextModel)
    assert model.label_param("C", "threat") == 8.0
    assert model.label_param("C", "toxic") == model.label_defaults["C"]
    # JSON-safe, and the same model class rebuilds from them
    params = json.loads(json.dumps(model.json_params()))
    assert model_class("tfidf-lr")(**params).json_params() == model.json_params()


def test_defaults_are_not_shared_between_instances() -> None:
    first = create_model("nbsvm")
    first.json_params()["cleaning"].append("accents")
    assert "accents" not in create_model("nbsvm").json_params()["cleaning"]


def test_unknown_parameter_is_an_error() -> None:
    with pytest.raises(ToxiguardError, match=r"unknown parameter.*'hidden_size'"):
        create_model("tfidf-svm", hidden_size=3)


@pytest.mark.parametrize(
    ("family", "params", "message"),
    [
        ("tfidf-lr", {"class_weight": "sometimes"}, "class_weight"),
        ("nbsvm", {"class_weight": {"threat": "always"}}, "class_weight"),
        ("nbsvm", {"cleaning": ["stemming"]}, "unknown text cleaning step"),
        ("tfidf-lr", {"solver": "newton-cg"}, "solver must be one of"),
        ("tfidf-lr", {"char_ngrams": [0, 3]}, "char_ngrams must be"),
        ("tfidf-lr", {"word_ngrams": [2, 1]}, "word_ngrams must be"),
        ("complement-nb", {"word_ngrams": 2}, "word_ngrams must be"),
    ],
)
def test_bad_parameter_values_are_errors_when_the_model_is_made(
    family: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ToxiguardError, match=message):
        create_model(family, **params)


def test_unknown_family_is_an_error() -> None:
    with pytest.raises(ModelNotFoundError, match="unknown model family 'tfidf-xgb'"):
        create_model("tfidf-xgb")


def test_wrong_label_shape_is_an_error(corpus: pd.DataFrame) -> None:
    texts = corpus[TEXT_COLUMN].tolist()[:100]
    with pytest.raises(ToxiguardError, match="expected labels of shape"):
        create_model("complement-nb").fit(texts, label_matrix(corpus)[:100, :3])


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "no texts"),
        (["one lonely text"], "lower word_min_df"),
        (["ab", "ab"], "lower char_min_df"),
    ],
)
def test_too_little_text_is_a_clear_error(texts: list[str], message: str) -> None:
    labels = np.zeros((len(texts), len(LABELS)), dtype=np.int8)
    with pytest.raises(ToxiguardError, match=message):
        create_model("tfidf-lr").fit(texts, labels)


def test_unfitted_model_cannot_predict_or_save(tmp_path: Path) -> None:
    model = create_model("tfidf-lr")
    with pytest.raises(ToxiguardError, match="not fitted"):
        model.predict_proba(["hello"])
    with pytest.raises(ToxiguardError, match="not fitted"):
        model.save(tmp_path / "m")


def test_missing_state_file_is_a_clear_error(
    fitted: dict[str, ToxicityModel], tmp_path: Path
) -> None:
    directory = fitted["complement-nb"].save(tmp_path / "m")
    (directory / "linear.joblib").unlink()
    with pytest.raises(ModelNotFoundError, match=r"linear\.joblib missing"):
        load_model(directory)


def test_label_with_one_class_predicts_its_rate(corpus: pd.DataFrame) -> None:
    texts = corpus[TEXT_COLUMN].tolist()[:300]
    labels = label_matrix(corpus)[:300].copy()
    labels[:, LABELS.index("threat")] = 0
    model = create_model("tfidf-lr", **SMALL).fit(texts, labels)
    proba = model.predict_proba(texts[:10])
    np.testing.assert_array_equal(proba[:, LABELS.index("threat")], 0.0)
    assert proba[:, LABELS.index("toxic")].max() > 0.5


@pytest.mark.parametrize("family", ["tfidf-lr", "nbsvm"])
def test_liblinear_solver_is_an_option(family: str, corpus: pd.DataFrame) -> None:
    model = create_model(family, solver="liblinear", tol=0.01, **SMALL)
    model.fit(corpus[TEXT_COLUMN].tolist()[:TRAIN_ROWS], label_matrix(corpus)[:TRAIN_ROWS])
    texts, truth = held_out(corpus)
    proba = model.predict_proba(texts)
    assert roc_auc_score(truth[:, 0], proba[:, 0]) > 0.85


def test_fitting_is_reproducible(corpus: pd.DataFrame) -> None:
    texts, labels = corpus[TEXT_COLUMN].tolist()[:400], label_matrix(corpus)[:400]
    first = create_model("tfidf-svm", **SMALL).fit(texts, labels).predict_proba(texts[:50])
    second = create_model("tfidf-svm", **SMALL).fit(texts, labels).predict_proba(texts[:50])
    np.testing.assert_array_equal(first, second)


def _per_label(model: LinearTextModel, texts: list[str]) -> np.ndarray:
    """Return each estimator's own positive probability (the path without the stacked head;
    NB-SVM's scales float32 features there, so the two agree to about 1e-6)."""
    assert model.featurizer_ is not None
    features = model.featurizer_.transform(texts)
    return np.column_stack([e.predict_proba(features)[:, 1] for e in model.estimators_])


@pytest.mark.parametrize("family", ["tfidf-lr", "nbsvm"])
def test_stacked_head_scores_like_the_per_label_estimators(
    family: str, fitted: dict[str, ToxicityModel], corpus: pd.DataFrame, tmp_path: Path
) -> None:
    model = fitted[family]
    assert isinstance(model, LinearTextModel) and model.head_ is not None
    texts, _ = held_out(corpus)
    np.testing.assert_allclose(model.predict_proba(texts), _per_label(model, texts), atol=1e-5)
    loaded = load_model(model.save(tmp_path / family))
    assert isinstance(loaded, LinearTextModel) and loaded.head_ is not None
    np.testing.assert_allclose(loaded.predict_proba(texts[:1]), model.predict_proba(texts[:1]))


def test_stacked_head_keeps_a_constant_label(corpus: pd.DataFrame) -> None:
    texts = corpus[TEXT_COLUMN].tolist()[:300]
    labels = label_matrix(corpus)[:300].copy()
    labels[:, LABELS.index("threat")] = 1
    model = create_model("nbsvm", **SMALL).fit(texts, labels)
    assert isinstance(model, LinearTextModel) and model.head_ is not None
    np.testing.assert_allclose(
        model.predict_proba(texts[:20]), _per_label(model, texts[:20]), atol=1e-5
    )
    np.testing.assert_array_equal(model.predict_proba(texts[:5])[:, LABELS.index("threat")], 1.0)


@pytest.mark.parametrize("family", ["tfidf-svm", "complement-nb"])
def test_other_estimators_score_label_by_label(
    family: str, fitted: dict[str, ToxicityModel]
) -> None:
    model = fitted[family]
    assert isinstance(model, LinearTextModel) and model.head_ is None
