"""The TF-IDF featurizer the linear model families share: raw text -> cleaned -> word n-grams
(scikit-learn) and char n-grams within words (`char_ngrams`, numpy), side by side."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from toxiguard.errors import ToxiguardError
from toxiguard.features.char_ngrams import CharNgramTfidf
from toxiguard.features.text import DEFAULT_STEPS, check_steps, clean_texts

logger = logging.getLogger(__name__)

# Chosen by measurement on the shared data (benchmarks/baselines.py, benchmarks/README.md).
FEATURE_DEFAULTS: Final[dict[str, Any]] = {
    "cleaning": list(DEFAULT_STEPS),
    "word_ngrams": [1, 2],
    "word_min_df": 2,
    "word_max_features": 200_000,
    "char_ngrams": [2, 5],
    "char_min_df": 3,
    "char_max_features": 200_000,
    "sublinear_tf": True,
}
# Words as runs of word characters, one character included (sklearn's default drops "u", "f").
WORD_PATTERN: Final = r"(?u)\b\w+\b"


def feature_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return the featurizer's own entries of a model's params (the keys of FEATURE_DEFAULTS)."""
    return {key: params[key] for key in FEATURE_DEFAULTS}


def ngram_range(value: Sequence[int], name: str) -> tuple[int, int]:
    """Return an n-gram range [low, high] as a tuple, or raise ToxiguardError if malformed."""
    try:
        low, high = (int(v) for v in value)
    except (TypeError, ValueError) as error:
        raise ToxiguardError(f"{name} must be [low, high], got {value!r}") from error
    if not 1 <= low <= high:
        raise ToxiguardError(f"{name} must be [low, high] with 1 <= low <= high, got {value!r}")
    return low, high


class TfidfFeaturizer:
    """Cleans raw text (`features.text`) and maps it to word and char n-gram TF-IDF features.

    The char n-grams are computed in a second thread while the word n-grams are counted
    (`n_jobs` >= 2): numpy releases the GIL for most of that work.
    """

    def __init__(self, params: Mapping[str, Any], n_jobs: int = 2) -> None:
        self.params = feature_params(params)
        self.steps = check_steps(self.params["cleaning"])
        self.word_range = ngram_range(self.params["word_ngrams"], "word_ngrams")
        self.char_range = ngram_range(self.params["char_ngrams"], "char_ngrams")
        self.n_jobs = n_jobs
        self.word: TfidfVectorizer | None = None
        self.char: CharNgramTfidf | None = None

    @property
    def n_features(self) -> int:
        """Return the number of features of a fitted featurizer (0 before fitting)."""
        if self.word is None or self.char is None:
            return 0
        return len(self.word.vocabulary_) + self.char.n_features

    def _new_vectorizers(self) -> tuple[TfidfVectorizer, CharNgramTfidf]:
        """Return unfitted word and char vectorizers built from the params."""
        p = self.params
        word = TfidfVectorizer(
            analyzer="word",
            ngram_range=self.word_range,
            min_df=int(p["word_min_df"]),
            max_features=p["word_max_features"],
            sublinear_tf=bool(p["sublinear_tf"]),
            lowercase=False,  # lowercasing is a cleaning step
            token_pattern=WORD_PATTERN,
            dtype=np.float32,
        )
        char = CharNgramTfidf(
            self.char_range,
            min_df=int(p["char_min_df"]),
            max_features=p["char_max_features"],
            sublinear_tf=bool(p["sublinear_tf"]),
        )
        return word, char

    def fit_transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Fit vocabularies and IDF weights on raw `texts`; return their feature matrix."""
        if len(texts) == 0:
            raise ToxiguardError("cannot fit the TF-IDF features on no texts")
        word, char = self._new_vectorizers()
        cleaned = clean_texts(texts, self.steps)
        try:
            matrix = self._both(word.fit_transform, char.fit_transform, cleaned)
        except ValueError as error:  # scikit-learn's "empty vocabulary" and the like
            raise ToxiguardError(
                f"cannot fit word n-grams on {len(texts)} texts: {error} (lower word_min_df?)"
            ) from error
        self.word, self.char = word, char
        logger.info("featurizer: %d texts -> %d features", matrix.shape[0], matrix.shape[1])
        return matrix

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Return the feature matrix of raw `texts` (cleaned here)."""
        if self.word is None or self.char is None:
            raise ToxiguardError("the featurizer is not fitted")
        cleaned = clean_texts(texts, self.steps)
        return self._both(self.word.transform, self.char.transform, cleaned)

    def _both(self, word: Any, char: Any, cleaned: list[str]) -> sp.csr_matrix:
        """Return word(cleaned) and char(cleaned) side by side, char in a thread if allowed."""
        if self.n_jobs < 2:
            parts = [word(cleaned), char(cleaned)]
        else:
            with ThreadPoolExecutor(max_workers=1) as pool:
                char_part = pool.submit(char, cleaned)
                parts = [word(cleaned), char_part.result()]
        return sp.hstack(parts, format="csr", dtype=np.float32)
