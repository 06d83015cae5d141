"""Char n-gram TF-IDF inside word boundaries, computed with numpy on code points.

The features of scikit-learn's `TfidfVectorizer(analyzer="char_wb")`: n-grams of each word
padded with one space on either side (scikit-learn also counts a padded word shorter than n once
more as an n-gram of length n; that quirk is not copied). Each n-gram is identified by a 64-bit
polynomial hash of its code points instead of its string, so no Python code runs per n-gram:
measured on the shared data, 2 times faster to fit and 6 times faster to transform (same
features and non-zeros), and the vocabulary is a small integer array. Two n-grams share a hash
with a probability below 1e-6 for the few million distinct n-grams of a corpus like ours.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from toxiguard.errors import ToxiguardError

logger = logging.getLogger(__name__)

_MULTIPLIER: Final = np.uint64(0x100000001B3)  # FNV-64 prime: odd, so hashes spread over 2**64
_SPACE: Final = 32 + 1  # code points are shifted by one so that NUL does not hash like nothing
CHUNK_TEXTS: Final = 4_000

UInt64Array = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _padded_codes(texts: Sequence[str]) -> tuple[UInt64Array, IntArray]:
    """Return the code points (+1) of all texts, each as ' word word ', and each one's text."""
    padded = [" " + " ".join(text.split()) + " " for text in texts]
    lengths = np.fromiter((len(p) for p in padded), dtype=np.int64, count=len(padded))
    joined = "".join(padded).encode("utf-32-le", "surrogatepass")
    codes = np.frombuffer(joined, dtype="<u4").astype(np.uint64) + np.uint64(1)
    return codes, np.repeat(np.arange(len(texts), dtype=np.int64), lengths)


def ngram_hash(ngram: str) -> int:
    """Return the hash that identifies one n-gram (as `ngram_hashes` computes it)."""
    value = np.uint64(0)
    with np.errstate(over="ignore"):
        for char in ngram:
            value = value * _MULTIPLIER + np.uint64(ord(char) + 1)
    return int(value)


def _kept_windows(
    codes: UInt64Array, text_of: IntArray, ngram_range: tuple[int, int]
) -> Iterator[tuple[int, UInt64Array, BoolArray]]:
    """Yield, for each n in the range: n, the hash of every window of n codes, which are n-grams.

    A window of n characters is an n-gram when it lies inside one text and has no space inside
    it (spaces may only be its first or last character, where they mark a word's edge).
    """
    low, high = ngram_range
    space = codes == _SPACE
    window = np.zeros(len(codes), dtype=np.uint64)
    inner_clear = np.ones(len(codes), dtype=bool)
    for n in range(1, high + 1):
        count = len(codes) - n + 1
        if count <= 0:
            break
        # window[i] becomes the hash of codes[i : i + n]
        window = window[:count] * _MULTIPLIER + codes[n - 1 :]
        inner_clear = inner_clear[:count]
        if n >= 3:
            inner_clear = inner_clear & ~space[n - 2 : n - 2 + count]
        if n >= low:
            keep = inner_clear & (text_of[:count] == text_of[n - 1 :])
            if n <= 2:  # a lone space, or two (an empty text), is no n-gram
                keep &= ~(space[:count] & space[n - 1 :])
            yield n, window, keep


def ngram_hashes(
    texts: Sequence[str], ngram_range: tuple[int, int]
) -> tuple[UInt64Array, IntArray]:
    """Return the hash of every char n-gram within words and the index of the text it is from."""
    codes, text_of = _padded_codes(texts)
    hashes: list[UInt64Array] = []
    owners: list[IntArray] = []
    for _, window, keep in _kept_windows(codes, text_of, ngram_range):
        hashes.append(window[keep])
        owners.append(text_of[: len(keep)][keep])
    if not hashes:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    return np.concatenate(hashes), np.concatenate(owners)


def ngram_windows(
    texts: Sequence[str], ngram_range: tuple[int, int]
) -> tuple[UInt64Array, IntArray, IntArray, IntArray]:
    """Return every char n-gram within words as (hash, text index, start, length) arrays.

    `start` is the n-gram's offset in its text's padded form, " " + " ".join(text.split()) +
    " " (offset 0 is the leading padding space). The n-grams are those of `ngram_hashes`.
    """
    codes, text_of = _padded_codes(texts)
    first = np.searchsorted(text_of, np.arange(len(texts)))  # where each padded text begins
    hashes: list[UInt64Array] = []
    owners: list[IntArray] = []
    starts: list[IntArray] = []
    lengths: list[IntArray] = []
    for n, window, keep in _kept_windows(codes, text_of, ngram_range):
        at = np.flatnonzero(keep)
        hashes.append(window[at])
        owners.append(text_of[at])
        starts.append(at - first[text_of[at]])
        lengths.append(np.full(len(at), n, dtype=np.int64))
    if not hashes:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(0, dtype=np.uint64), empty, empty, empty
    return (
        np.concatenate(hashes),
        np.concatenate(owners),
        np.concatenate(starts),
        np.concatenate(lengths),
    )


def _chunks(texts: Sequence[str], size: int = CHUNK_TEXTS) -> Iterator[tuple[int, Sequence[str]]]:
    """Yield (offset, texts) in chunks, to keep the per-n-gram arrays small."""
    for start in range(0, len(texts), size):
        yield start, texts[start : start + size]


class CharNgramTfidf:
    """TF-IDF over char n-grams within words: smooth IDF, optional sublinear TF, L2-normalised
    rows (as scikit-learn's TfidfVectorizer). Terms kept: document frequency >= min_df, then the
    max_features most frequent in documents."""

    def __init__(
        self,
        ngram_range: tuple[int, int] = (2, 5),
        min_df: int = 3,
        max_features: int | None = None,
        sublinear_tf: bool = True,
    ) -> None:
        low, high = ngram_range
        if not 1 <= low <= high:
            raise ToxiguardError(
                f"char n-gram range must satisfy 1 <= low <= high, got {ngram_range}"
            )
        self.ngram_range = (int(low), int(high))
        self.min_df = int(min_df)
        self.max_features = None if max_features is None else int(max_features)
        self.sublinear_tf = sublinear_tf
        self.vocabulary_: UInt64Array = np.zeros(0, dtype=np.uint64)
        self.idf_: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
        self._index: pd.Index | None = None

    def __getstate__(self) -> dict[str, object]:
        """Return the picklable state (the lookup index is rebuilt on demand)."""
        return {**self.__dict__, "_index": None}

    @property
    def n_features(self) -> int:
        """Return the number of kept n-grams."""
        return len(self.vocabulary_)

    def fit(self, texts: Sequence[str]) -> CharNgramTfidf:
        """Count document frequencies, keep the vocabulary and IDF weights; return self."""
        uniques: list[UInt64Array] = []
        counts: list[IntArray] = []
        for _, chunk in _chunks(texts):
            hashes, owners = ngram_hashes(chunk, self.ngram_range)
            codes, chunk_uniques = pd.factorize(hashes)
            # one entry per (text, n-gram) pair, then count texts per n-gram
            pairs = pd.unique(owners * len(chunk_uniques) + codes)
            counts.append(np.bincount(pairs % len(chunk_uniques), minlength=len(chunk_uniques)))
            uniques.append(np.asarray(chunk_uniques, dtype=np.uint64))
        if not uniques:
            raise ToxiguardError("cannot fit char n-grams on no texts")
        codes, all_uniques = pd.factorize(np.concatenate(uniques))
        df = np.bincount(codes, weights=np.concatenate(counts)).astype(np.int64)
        kept = np.flatnonzero(df >= self.min_df)
        if self.max_features is not None and len(kept) > self.max_features:
            # most frequent first; ties broken by hash, so the choice is deterministic
            order = np.lexsort((np.asarray(all_uniques)[kept], -df[kept]))
            kept = kept[order[: self.max_features]]
        if len(kept) == 0:
            raise ToxiguardError(
                f"no char n-gram occurs in {self.min_df} or more texts; lower char_min_df"
            )
        vocabulary = np.asarray(all_uniques, dtype=np.uint64)[kept]
        order = np.argsort(vocabulary)
        self.vocabulary_ = vocabulary[order]
        kept_df = df[kept][order]
        self.idf_ = (np.log((1 + len(texts)) / (1 + kept_df)) + 1).astype(np.float32)
        self._index = None
        logger.debug("char n-grams: %d of %d kept", len(kept), len(df))
        return self

    def fit_transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Fit on `texts`; return their TF-IDF matrix."""
        return self.fit(texts).transform(texts)

    def _lookup(self) -> pd.Index:
        """Return a hash index over the vocabulary (built once per fitted or loaded object)."""
        if self._index is None:
            self._index = pd.Index(self.vocabulary_)
        return self._index

    def columns_of(self, hashes: UInt64Array) -> IntArray:
        """Return the feature column of each n-gram hash, -1 for n-grams not in the vocabulary."""
        columns: IntArray = self._lookup().get_indexer(pd.Index(hashes)).astype(np.int64)
        return columns

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Return the (n, n_features) float32 TF-IDF matrix of `texts`."""
        if len(self.vocabulary_) == 0:
            raise ToxiguardError("the char n-gram vectorizer is not fitted")
        parts = [self._transform_chunk(chunk) for _, chunk in _chunks(texts)]
        if not parts:
            return sp.csr_matrix((0, self.n_features), dtype=np.float32)
        return sp.vstack(parts, format="csr", dtype=np.float32)

    def _transform_chunk(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Return the TF-IDF rows of one chunk of texts."""
        hashes, owners = ngram_hashes(texts, self.ngram_range)
        columns = self.columns_of(hashes)
        found = columns >= 0
        counts = sp.csr_matrix(
            (np.ones(int(found.sum()), dtype=np.float32), (owners[found], columns[found])),
            shape=(len(texts), self.n_features),
            dtype=np.float32,
        )
        counts.sum_duplicates()
        if self.sublinear_tf:
            np.log(counts.data, out=counts.data)
            counts.data += 1
        counts.data *= self.idf_[counts.indices]
        norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1), dtype=np.float32).ravel())
        norms[norms == 0] = 1
        counts.data /= np.repeat(norms, np.diff(counts.indptr))
        return counts
