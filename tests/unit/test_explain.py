"""Per-token explanations: the exact logit decomposition of the linear families, and occlusion."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit, logit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.naive_bayes import ComplementNB

from toxiguard.data.demo import BENIGN, make_demo_corpus
from toxiguard.data.validation import label_matrix
from toxiguard.errors import ToxiguardError
from toxiguard.features.spans import clean_aligned, cleaned_text, feature_spans, tokenize
from toxiguard.features.text import clean_text
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.models import create_model
from toxiguard.models.base import FloatArray, LabelArray, ToxicityModel
from toxiguard.models.explain import Explanation, Token, explain, explain_texts, occlusion_units
from toxiguard.models.tfidf.classifiers import ConstantClassifier, NBLogistic
from toxiguard.models.tfidf.linear import LinearTextModel

FAMILIES = ("tfidf-lr", "nbsvm", "tfidf-svm", "complement-nb")
# Small vocabularies and one job (no worker processes) keep the fits fast.
SMALL = {"word_max_features": 5_000, "char_max_features": 10_000, "n_jobs": 1}
INSULT = LABELS.index("insult")
PLANTED = "zorblax"
ODD_PIECES = [
    "http://example.com/a?b=1",
    "(www.Test.org/x)",
    "see:https://x.io",
    "192.168.0.1",
    "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
    "\U0001f600\U0001f600",
    "\ufb01ne",  # the "fi" ligature: one raw character, two cleaned ones
    "\u0130stanbul",  # lower-cases to two characters
    "\u00a8x",  # NFKC makes a space of it
    "cafe\u0301",
    "!!!",
    "STUUUUPID",
    "soooo!!!!",
    "\uff26\uff55\uff4c\uff4c",
    "\u200b",
    "\ud800",
    "a" * 40,
    "idiot",
    "you",
]
SEPARATORS = ["", " ", "  ", "\n", "\t", "\u00a0", " \u3000 "]


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    """Return a 600-row demo corpus (every label represented)."""
    return make_demo_corpus(600, seed=5)


@pytest.fixture(scope="module")
def fitted(corpus: pd.DataFrame) -> dict[str, LinearTextModel]:
    """Return one model per linear family fitted on the demo corpus."""
    texts, labels = corpus[TEXT_COLUMN].tolist(), label_matrix(corpus)
    models = {}
    for family in FAMILIES:
        model = create_model(family, **SMALL).fit(texts, labels)
        assert isinstance(model, LinearTextModel)
        models[family] = model
    return models


def model_logits(model: LinearTextModel, text: str) -> FloatArray:
    """Return each label's logit as the model's own scikit-learn estimators compute it (for
    tfidf-svm: the folds' mean calibrated logit)."""
    features = model.fitted_featurizer().transform([text])
    logits = []
    for estimator in model.estimators_:
        if isinstance(estimator, ConstantClassifier):
            logits.append(float(logit(estimator.rate)))
        elif isinstance(estimator, NBLogistic):
            scaled = sp.csr_matrix(features.multiply(estimator.ratios))
            logits.append(float(estimator.classifier.decision_function(scaled)[0]))
        elif isinstance(estimator, ComplementNB):
            log_proba = estimator.predict_log_proba(features)[0]
            logits.append(float(log_proba[1] - log_proba[0]))
        elif isinstance(estimator, CalibratedClassifierCV):
            folds = [
                -(c.calibrators[0].a_ * c.estimator.decision_function(features)[0])
                - c.calibrators[0].b_
                for c in estimator.calibrated_classifiers_
            ]
            logits.append(float(np.mean(folds)))
        else:
            logits.append(float(estimator.decision_function(features)[0]))
    return np.asarray(logits)


def assert_well_formed(explanation: Explanation) -> None:
    """Assert the shapes, and that every token is the text's own slice, in order."""
    text = explanation.text
    assert explanation.contributions.shape == (len(explanation.tokens), len(LABELS))
    assert explanation.probabilities.shape == explanation.baseline.shape == (len(LABELS),)
    previous = 0
    for token in explanation.tokens:
        assert text[token.begin : token.end] == token.text
        assert previous <= token.begin < token.end
        previous = token.end


odd_texts = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(ODD_PIECES), st.text(max_size=6)),
        st.sampled_from(SEPARATORS),
    ),
    max_size=10,
).map(lambda parts: "".join(piece + separator for piece, separator in parts))


@pytest.mark.parametrize("family", FAMILIES)
def test_baseline_plus_contributions_is_the_logit(
    family: str, fitted: dict[str, LinearTextModel], corpus: pd.DataFrame
) -> None:
    model = fitted[family]
    texts = [*corpus[TEXT_COLUMN].tolist()[:20], "YOU ARE A STUUUPID idiot!!! http://x.org"]
    for explanation in explain_texts(model, texts):
        assert explanation.method == "linear-exact"
        assert explanation.unit == "logit"
        assert_well_formed(explanation)
        total = explanation.baseline + explanation.contributions.sum(axis=0)
        np.testing.assert_allclose(total, model_logits(model, explanation.text), atol=1e-4)
        np.testing.assert_allclose(
            explanation.probabilities, model.predict_proba([explanation.text])[0], atol=1e-12
        )
        if family != "tfidf-svm":  # its probability is the folds' mean, not expit of the mean
            np.testing.assert_allclose(expit(total), explanation.probabilities, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=40, deadline=None)
@given(text=odd_texts)
def test_odd_texts_are_explained_exactly(
    family: str, fitted: dict[str, LinearTextModel], text: str
) -> None:
    model = fitted[family]
    explanation = explain(model, text)
    assert_well_formed(explanation)
    total = explanation.baseline + explanation.contributions.sum(axis=0)
    np.testing.assert_allclose(total, model_logits(model, text), atol=1e-4, rtol=1e-6)


@settings(max_examples=150, deadline=None)
@given(text=odd_texts)
def test_every_feature_of_a_text_is_located(fitted: dict[str, LinearTextModel], text: str) -> None:
    featurizer = fitted["tfidf-lr"].fitted_featurizer()
    # Cleaning piece by piece gives the text the vectorizers see when it is cleaned whole.
    pieces = clean_aligned(text, featurizer.steps)
    assert cleaned_text(pieces) == " ".join(clean_text(text, featurizer.steps).split())
    assert ((pieces.low >= 0) & (pieces.low < pieces.high) & (pieces.high <= len(text))).all()
    spans = feature_spans(featurizer, text)
    assert set(spans.columns.tolist()) == set(featurizer.transform([text]).indices.tolist())
    np.testing.assert_allclose(np.asarray(spans.weights.sum(axis=1)).ravel(), 1.0)
    assert spans.tokens == tokenize(text)


def test_tokens_are_words_and_runs_of_other_characters() -> None:
    text = "Hi,  you\u00a0idiot!!! \U0001f600ok caf\u00e9"
    assert [t.text for t in tokenize(text)] == [
        "Hi",
        ",",
        "you",
        "idiot",
        "!!!",
        "\U0001f600",
        "ok",
        "caf\u00e9",
    ]
    assert tokenize("   \n") == ()


def test_cleaned_characters_map_back_to_their_raw_characters() -> None:
    text = "STUUUPID \ufb01ne see:http://x.org"
    pieces = clean_aligned(text, ["unicode", "urls", "lowercase", "repeats"])
    assert pieces.pieces == ["stuupid", "fine", "see:", "xxurl"]
    raw = [(int(low), high) for low, high in zip(pieces.low, pieces.high, strict=True)]
    assert raw[:4] == [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)]  # "stuu": S, T, U, U
    assert raw[4][0] == 5  # "p": the third "U" was removed
    assert raw[7][0] == raw[8][0] == 9  # "f" and "i" both come from the ligature
    url = text.index("http")
    assert all(url <= low < high <= len(text) for low, high in raw[-5:])


def test_spelled_out_words_are_joined_and_keep_their_raw_letters() -> None:
    text = "Y o u  a r e  an i d i o t"
    pieces = clean_aligned(text, ["despace", "lowercase"])
    assert pieces.pieces == ["you", "are", "an", "idiot"]
    raw = [int(low) for low in pieces.low]
    assert "".join(text[i] for i in raw) == "Youareanidiot"  # the spaces between letters dropped
    assert raw[:3] == [0, 2, 4]
    assert " ".join(clean_text(text, ["despace", "lowercase"]).split()) == "you are an idiot"


def planted_corpus() -> tuple[list[str], LabelArray]:
    """Return benign sentences, half of them with the planted word: toxic and insult follow the
    word, the other labels are all 0 (each model predicts them as a constant)."""
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(400):
        words = BENIGN[i % len(BENIGN)].format(topic="lead", article="Ada Lovelace", name="Bob")
        planted = bool(rng.random() < 0.5)
        if planted:
            cut = words.split()
            cut.insert(int(rng.integers(len(cut) + 1)), PLANTED)
            words = " ".join(cut)
        texts.append(words)
        labels.append([planted, 0, 0, 0, planted, 0])
    return texts, np.asarray(labels, dtype=np.int8)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_planted_word_gets_the_top_contribution(family: str) -> None:
    texts, labels = planted_corpus()
    params = {**SMALL, "word_min_df": 1, "char_min_df": 1}
    model = create_model(family, **params).fit(texts, labels)
    explanation = explain(model, f"Please add a citation, you {PLANTED.upper()}!!")
    top = explanation.top_tokens("insult", k=3)
    assert top[0][0].text == PLANTED.upper()
    assert [value for _, value in top] == sorted((value for _, value in top), reverse=True)
    # A label with one class in training: a constant, nothing to attribute, -inf as its baseline.
    threat = LABELS.index("threat")
    assert explanation.baseline[threat] == -np.inf
    assert explanation.probabilities[threat] == 0.0
    np.testing.assert_array_equal(explanation.contributions[:, threat], 0.0)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_text_without_known_features_has_zero_contributions(
    family: str, fitted: dict[str, LinearTextModel]
) -> None:
    model = fitted[family]
    for text in ["\u03be\u03c8\u03c9 \u03b6\u03b6\u03b6", "", "   "]:
        explanation = explain(model, text)
        assert_well_formed(explanation)
        np.testing.assert_array_equal(explanation.contributions, 0.0)
        np.testing.assert_allclose(explanation.baseline, model_logits(model, text), atol=1e-9)
    assert len(explain(model, "\u03be\u03c8\u03c9 \u03b6\u03b6\u03b6").tokens) == 2


class KeywordModel(ToxicityModel):
    """Scores insult 0.9 when the word "idiot" is in the text, else 0.1; 0.2 for other labels."""

    family = "keyword-test"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def fit(
        self,
        texts: Sequence[str],
        labels: LabelArray,
        *,
        validation: tuple[Sequence[str], LabelArray] | None = None,
    ) -> Self:
        """Return self (nothing to learn)."""
        return self

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """Return the keyword scores, recording how many texts each call got."""
        self.calls.append(len(texts))
        proba = np.full((len(texts), len(LABELS)), 0.2)
        proba[:, INSULT] = [0.9 if "idiot" in text.split() else 0.1 for text in texts]
        return proba

    def save_state(self, directory: Path) -> None:
        """Write nothing."""

    def load_state(self, directory: Path) -> None:
        """Read nothing."""


def test_occlusion_finds_the_word_the_score_depends_on() -> None:
    model = KeywordModel()
    explanation = explain(model, "you are an idiot , friend")
    assert explanation.method == "occlusion"
    assert explanation.unit == "probability"
    assert_well_formed(explanation)
    assert [t.text for t in explanation.tokens] == ["you", "are", "an", "idiot", ",", "friend"]
    [(token, value)] = explanation.top_tokens("insult")
    assert token == Token(11, 16, "idiot")
    assert value == pytest.approx(0.8)
    np.testing.assert_allclose(explanation.probabilities[INSULT], 0.9)
    np.testing.assert_allclose(explanation.baseline, [0.2, 0.2, 0.2, 0.2, 0.1, 0.2])
    others = np.delete(explanation.contributions, INSULT, axis=1)
    np.testing.assert_array_equal(others, 0.0)
    # One predict_proba call: the text, one variant per token, and the all-removed text.
    assert model.calls == [1 + 6 + 1]


def test_occlusion_groups_adjacent_tokens_beyond_max_units() -> None:
    words = [f"w{i}" for i in range(100)]
    words[57] = "idiot"
    text = " ".join(words)
    explanation = explain(KeywordModel(), text, max_units=10)
    assert_well_formed(explanation)
    assert len(explanation.tokens) == 10
    assert [len(t.text.split()) for t in explanation.tokens] == [10] * 10
    assert " ".join(t.text for t in explanation.tokens) == text
    top = explanation.top_tokens("insult")
    assert len(top) == 1 and "idiot" in top[0][0].text.split()
    assert occlusion_units(text, 200) == tokenize(text)


def test_occlusion_scores_a_batch_in_one_call() -> None:
    model = KeywordModel()
    texts = ["an idiot", "fine", "", "an idiot"]
    explanations = explain_texts(model, texts)
    assert len(model.calls) == 1
    assert model.calls[0] <= sum(2 + len(tokenize(t)) for t in texts)
    assert [e.text for e in explanations] == texts
    assert explanations[2].tokens == () and explanations[2].contributions.shape == (0, 6)


def test_occlusion_on_a_linear_model_matches_scoring_the_variants(
    fitted: dict[str, LinearTextModel],
) -> None:
    model = fitted["tfidf-lr"]
    text = "You are a pathetic idiot."
    explanation = explain(model, text, method="occlusion")
    variants = [text[: t.begin] + text[t.end :] for t in explanation.tokens]
    expected = model.predict_proba([text]) - model.predict_proba(variants)
    np.testing.assert_allclose(explanation.contributions, expected)


@settings(max_examples=60, deadline=None)
@given(text=odd_texts, max_units=st.integers(1, 6))
def test_occlusion_units_are_slices_of_the_text(text: str, max_units: int) -> None:
    units = occlusion_units(text, max_units)
    assert len(units) <= max_units
    assert all(text[u.begin : u.end] == u.text for u in units)
    # Together they hold every non-space character of the text, in order.
    assert "".join("".join(u.text.split()) for u in units) == "".join(text.split())


def test_bad_arguments_are_clear_errors(fitted: dict[str, LinearTextModel]) -> None:
    explanation = explain(fitted["tfidf-lr"], "hello")
    with pytest.raises(ToxiguardError, match="unknown label 'rude'"):
        explanation.top_tokens("rude")
    with pytest.raises(ToxiguardError, match="unknown explanation method"):
        explain(fitted["tfidf-lr"], "hello", method="shap")
    with pytest.raises(ToxiguardError, match="max_units must be at least 1"):
        explain(KeywordModel(), "hello", max_units=0)
    with pytest.raises(ToxiguardError, match="no linear logit"):
        explain(KeywordModel(), "hello", method="linear-exact")
    with pytest.raises(ToxiguardError, match="not fitted"):
        explain(create_model("tfidf-lr"), "hello")
