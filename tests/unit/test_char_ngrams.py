"""The numpy char n-gram TF-IDF: same features as scikit-learn's char_wb, and its edge cases."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from toxiguard.errors import ToxiguardError
from toxiguard.features.char_ngrams import CharNgramTfidf, ngram_hash, ngram_hashes

# Every word has 3+ characters: scikit-learn counts a padded word shorter than n once more as an
# "n-gram" of that length (a quirk this module does not copy), so such words are left out here.
TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "hello wonderful world",
    "HELLO there   world!!",
    "zebra crossing",
    "the dog and the fox",
]


def test_same_features_as_sklearn_char_wb() -> None:
    ours = CharNgramTfidf((2, 5), min_df=1, sublinear_tf=True)
    theirs = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(2, 5), lowercase=False, sublinear_tf=True
    )
    ours_matrix = ours.fit_transform(TEXTS).toarray()
    theirs_matrix = theirs.fit_transform(TEXTS).toarray()
    assert ours.n_features == len(theirs.vocabulary_)
    hashes = np.array([ngram_hash(term) for term in theirs.get_feature_names_out()], np.uint64)
    columns = np.searchsorted(ours.vocabulary_, hashes)
    np.testing.assert_array_equal(ours.vocabulary_[columns], hashes)
    np.testing.assert_allclose(ours_matrix[:, columns], theirs_matrix, rtol=1e-5, atol=1e-6)


def test_ngrams_stay_inside_words_and_texts() -> None:
    hashes, owners = ngram_hashes(["ab cd", "ef"], (2, 3))
    expected = {
        0: [" a", "ab", "b ", " c", "cd", "d ", " ab", "ab ", " cd", "cd "],
        1: [" e", "ef", "f ", " ef", "ef "],
    }
    for text, ngrams in expected.items():
        assert sorted(hashes[owners == text].tolist()) == sorted(ngram_hash(g) for g in ngrams)


def test_min_df_and_max_features_choose_the_most_frequent() -> None:
    texts = ["aaa", "aaa bbb", "aaa bbb ccc"]
    vectorizer = CharNgramTfidf((3, 3), min_df=2).fit(texts)
    # "aaa" n-grams are in 3 texts, "bbb" n-grams in 2, "ccc" in 1
    kept = {ngram_hash(g) for g in (" aa", "aaa", "aa ", " bb", "bbb", "bb ")}
    assert set(vectorizer.vocabulary_.tolist()) == kept
    top = CharNgramTfidf((3, 3), min_df=1, max_features=3).fit(texts)
    assert set(top.vocabulary_.tolist()) == {ngram_hash(g) for g in (" aa", "aaa", "aa ")}


def test_rows_are_unit_length_and_unseen_text_is_zero() -> None:
    vectorizer = CharNgramTfidf((2, 4), min_df=1).fit(TEXTS)
    matrix = vectorizer.transform([*TEXTS, "", "vvv"])
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms[: len(TEXTS)], 1.0, rtol=1e-6)
    assert norms[len(TEXTS)] == 0.0  # empty text
    assert norms[len(TEXTS) + 1] == 0.0  # no known n-gram
    assert matrix.dtype == np.float32


def test_transform_in_chunks_matches_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = TEXTS * 7
    vectorizer = CharNgramTfidf((1, 3), min_df=1).fit(texts)
    whole = vectorizer.transform(texts)
    monkeypatch.setattr("toxiguard.features.char_ngrams.CHUNK_TEXTS", 4)
    chunked = CharNgramTfidf((1, 3), min_df=1).fit(texts)
    np.testing.assert_array_equal(chunked.vocabulary_, vectorizer.vocabulary_)
    assert abs(chunked.transform(texts) - whole).max() < 1e-7


def test_pickle_round_trip() -> None:
    vectorizer = CharNgramTfidf((2, 5), min_df=1).fit(TEXTS)
    before = vectorizer.transform(TEXTS)
    restored = pickle.loads(pickle.dumps(vectorizer))
    assert (restored.transform(TEXTS) != before).nnz == 0


def test_errors() -> None:
    with pytest.raises(ToxiguardError, match="1 <= low <= high"):
        CharNgramTfidf((3, 2))
    with pytest.raises(ToxiguardError, match="not fitted"):
        CharNgramTfidf().transform(["x"])
    with pytest.raises(ToxiguardError, match="lower char_min_df"):
        CharNgramTfidf((2, 2), min_df=5).fit(["abc", "xyz"])
