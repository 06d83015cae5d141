"""Where a raw text's TF-IDF features come from: its tokens, its cleaned text aligned back to the
raw offsets, and every occurrence of each word and char n-gram feature, spread over the tokens.

Alignment. Every cleaning step but `despace` is local to the whitespace-separated pieces of a text
(NFKC, URL and IP tokens, lower-casing and squeezed repeats never look across whitespace, and
whitespace stays whitespace), so each raw piece is cleaned on its own, step by step, and each
cleaned character keeps the raw interval it came from: a step's change is found as the part between
the longest common prefix and suffix of the piece before and after it; where that part keeps its
length, characters map one to one ("A" -> "a"); where it does not, the new characters share the old
part's raw interval in equal, proportional slices ("ﬁ" -> "fi": two halves of one raw character; a
URL -> " xxurl ": seven slices of the URL), and characters a step removes (the third "u" of
"stuuupid") map to nothing. The cleaned piece may then hold spaces (the URL token); its
whitespace-free parts are the pieces both vectorizers see. Steps that leave the whole text as it is
are skipped. `despace`, which joins spelled-out words ("y o u" -> "you") and so joins pieces, comes
first and runs on the whole text: it only deletes spaces, and each kept character keeps its raw
index.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from toxiguard.errors import ToxiguardError
from toxiguard.features.char_ngrams import ngram_windows
from toxiguard.features.text import CLEANING_STEPS, check_steps, despace, despaced_positions
from toxiguard.features.tfidf import WORD_PATTERN, TfidfFeaturizer

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_TOKEN: Final = re.compile(r"\w+|[^\w\s]+")
_PIECE: Final = re.compile(r"\S+")
_WORD: Final = re.compile(WORD_PATTERN)
# Slack for interval ends computed as fractions ("4.999999" is 5): far below one character.
_EPS: Final = 1e-9


@dataclass(frozen=True)
class Token:
    """A span of the raw text: a run of word characters or a run of other non-space ones."""

    begin: int  # offset in the raw text, in code points (Python str indices)
    end: int  # exclusive
    text: str  # == raw_text[begin:end]


def tokenize(text: str) -> tuple[Token, ...]:
    """Return the raw text's tokens (runs of \\w, runs of other non-space characters) in order."""
    return tuple(Token(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text))


@dataclass(frozen=True)
class CleanedPieces:
    """The cleaned text as its whitespace-free pieces, with each cleaned character's raw interval.

    Characters are numbered through the pieces concatenated; `starts[i]` is where piece i begins.
    """

    pieces: list[str]
    starts: IntArray
    low: FloatArray  # raw interval [low, high) of each cleaned character
    high: FloatArray


def _realign(
    old: str, new: str, low: FloatArray, high: FloatArray, span: tuple[int, int]
) -> tuple[FloatArray, FloatArray]:
    """Return the raw intervals of `new`'s characters, given those of `old`'s (module docstring)."""
    prefix = 0
    while prefix < min(len(old), len(new)) and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(old), len(new)) - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    begin, end, count = prefix, len(old) - suffix, len(new) - suffix - prefix
    if count == end - begin:
        middle = low[begin:end], high[begin:end]
    elif count == 0:
        middle = np.zeros(0), np.zeros(0)
    else:
        if end > begin:
            first, last = low[begin], high[end - 1]
        elif begin > 0:  # characters inserted: onto the one before them
            first, last = low[begin - 1], high[begin - 1]
        elif old:
            first, last = low[0], high[0]
        else:  # an earlier step removed the whole piece
            first, last = float(span[0]), float(span[1])
        edges = first + (last - first) * np.arange(count + 1) / count
        middle = edges[:-1], edges[1:]
    return (
        np.concatenate([low[:begin], middle[0], low[end:]]),
        np.concatenate([high[:begin], middle[1], high[end:]]),
    )


def clean_aligned(text: str, steps: Sequence[str]) -> CleanedPieces:
    """Return the text cleaned with `steps` as pieces, each character's raw interval kept."""
    functions: list[Callable[[str], str]] = []
    ordered = check_steps(steps)
    # `despace` (first in order) joins pieces: it runs on the whole text, each kept character
    # keeping its raw index; every later step is local to a piece.
    raw_index = np.arange(len(text), dtype=np.float64)
    if ordered[:1] == ("despace",):
        joined = despace(text)
        if joined != text:
            raw_index = np.asarray(despaced_positions(text), dtype=np.float64)
        text, ordered = joined, ordered[1:]
    current = text
    for step in ordered:
        cleaned = CLEANING_STEPS[step](current)
        if cleaned != current:  # unchanged as a whole: unchanged in every piece
            functions.append(CLEANING_STEPS[step])
        current = cleaned
    pieces: list[str] = []
    lows: list[FloatArray] = []
    highs: list[FloatArray] = []
    for match in _PIECE.finditer(text):
        piece = match.group()
        low = raw_index[match.start() : match.end()]
        high = low + 1
        begin, end = int(low[0]), int(high[-1])
        for function in functions:
            cleaned = function(piece)
            if cleaned != piece:
                low, high = _realign(piece, cleaned, low, high, (begin, end))
                piece = cleaned
        for part in _PIECE.finditer(piece):
            pieces.append(part.group())
            lows.append(low[part.start() : part.end()])
            highs.append(high[part.start() : part.end()])
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    empty = np.zeros(0)
    return CleanedPieces(
        pieces,
        starts[: len(pieces)],
        np.concatenate(lows) if lows else empty,
        np.concatenate(highs) if highs else empty,
    )


def _char_tokens(
    cleaned: CleanedPieces, tokens: Sequence[Token], size: int
) -> tuple[IntArray, IntArray, FloatArray]:
    """Return (cleaned character, token, share) triples, by character: each cleaned character's
    raw interval spread evenly over the raw characters it covers, summed per token.

    Every character's shares sum to 1: its interval lies inside one raw piece, and the tokens
    cover every piece.
    """
    token_of = np.full(size, -1, dtype=np.int64)
    for index, token in enumerate(tokens):
        token_of[token.begin : token.end] = index
    first = np.floor(cleaned.low + _EPS).astype(np.int64)
    last = np.ceil(cleaned.high - _EPS).astype(np.int64) - 1
    one = token_of[first]
    simple = (one >= 0) & (one == token_of[last])
    rows = [np.flatnonzero(simple)]
    columns = [one[simple]]
    values = [np.ones(len(rows[0]))]
    begins = np.array([t.begin for t in tokens], dtype=np.float64)
    ends = np.array([t.end for t in tokens], dtype=np.float64)
    for row in np.flatnonzero(~simple):  # intervals across a token edge: rare (see _realign)
        low, high = cleaned.low[row], cleaned.high[row]
        near = np.arange(np.searchsorted(ends, low, "right"), np.searchsorted(begins, high))
        overlap = np.minimum(high, ends[near]) - np.maximum(low, begins[near])
        keep = overlap > _EPS
        rows.append(np.full(int(keep.sum()), row))
        columns.append(near[keep])
        values.append(overlap[keep] / overlap[keep].sum())
    row_of = np.concatenate(rows)
    order = np.argsort(row_of, kind="stable")
    return row_of[order], np.concatenate(columns)[order], np.concatenate(values)[order]


def _expand(starts: IntArray, lengths: IntArray) -> IntArray:
    """Return start, start + 1, ..., start + length - 1 for every (start, length), concatenated."""
    total = int(lengths.sum())
    within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    expanded: IntArray = np.repeat(starts, lengths) + within
    return expanded


def _word_occurrences(featurizer: TfidfFeaturizer, cleaned: CleanedPieces) -> tuple[IntArray, ...]:
    """Return (feature column, first cleaned character, length) of every word of every word
    n-gram feature occurrence (the tokens scikit-learn's analyzer makes of the cleaned text)."""
    assert featurizer.word is not None
    vocabulary = featurizer.word.vocabulary_
    words = [
        (int(start) + m.start(), m.end() - m.start(), m.group())
        for piece, start in zip(cleaned.pieces, cleaned.starts, strict=True)
        for m in _WORD.finditer(piece)
    ]
    found: list[tuple[int, int, int]] = []
    low, high = featurizer.word_range
    for n in range(low, high + 1):
        for i in range(len(words) - n + 1):
            column = vocabulary.get(" ".join(word for _, _, word in words[i : i + n]))
            if column is not None:
                found += [(column, begin, length) for begin, length, _ in words[i : i + n]]
    table = np.array(found, dtype=np.int64).reshape(-1, 3)
    return table[:, 0], table[:, 1], table[:, 2]


def _char_occurrences(featurizer: TfidfFeaturizer, cleaned: CleanedPieces) -> tuple[IntArray, ...]:
    """Return (feature column, cleaned character) for each character of each char n-gram
    occurrence; a padding space counts as the word character beside it."""
    assert featurizer.char is not None and featurizer.word is not None
    hashes, owners, starts, lengths = ngram_windows(cleaned.pieces, featurizer.char_range)
    columns = featurizer.char.columns_of(hashes)
    kept = columns >= 0
    owners, lengths = owners[kept], lengths[kept]
    sizes = np.fromiter((len(p) for p in cleaned.pieces), dtype=np.int64)
    # In the padded piece " word ", character q is the word's character q - 1.
    within = _expand(starts[kept] - 1, lengths)
    owner = np.repeat(owners, lengths)
    within = np.clip(within, 0, sizes[owner] - 1)
    offset = len(featurizer.word.vocabulary_)
    return np.repeat(columns[kept] + offset, lengths), cleaned.starts[owner] + within


@dataclass(frozen=True)
class FeatureSpans:
    """How each feature that occurs in a text spreads over the text's tokens."""

    tokens: tuple[Token, ...]
    columns: IntArray  # the feature columns that occur, sorted
    weights: sp.csr_matrix  # (len(columns), len(tokens)): each row sums to 1


def feature_spans(featurizer: TfidfFeaturizer, text: str) -> FeatureSpans:
    """Return the tokens of a raw text and how each of its features spreads over them.

    A feature's occurrences share it equally per character: a word n-gram's over its words'
    characters, a char n-gram's over its characters; then each cleaned character's share goes to
    the raw tokens its raw interval covers (`clean_aligned`, `_char_tokens`).
    """
    if featurizer.word is None or featurizer.char is None:
        raise ToxiguardError("the featurizer is not fitted")
    tokens = tokenize(text)
    cleaned = clean_aligned(text, featurizer.steps)
    word_columns, word_starts, word_lengths = _word_occurrences(featurizer, cleaned)
    char_columns, char_positions = _char_occurrences(featurizer, cleaned)
    feature = np.concatenate([np.repeat(word_columns, word_lengths), char_columns])
    position = np.concatenate([_expand(word_starts, word_lengths), char_positions])
    columns, row = np.unique(feature, return_inverse=True)
    # Join each occurrence character with its (token, share) triples.
    char_rows, char_tokens, char_shares = _char_tokens(cleaned, tokens, len(text))
    per_char = np.bincount(char_rows, minlength=len(cleaned.low))
    firsts = np.cumsum(per_char) - per_char
    triple = _expand(firsts[position], per_char[position])
    feature_row = np.repeat(row.ravel(), per_char[position])
    shares = char_shares[triple]
    totals = np.bincount(feature_row, weights=shares, minlength=len(columns))
    shares = shares / np.where(totals > 0, totals, 1)[feature_row]
    weights = sp.csr_matrix(
        (shares, (feature_row, char_tokens[triple])), shape=(len(columns), len(tokens))
    )
    return FeatureSpans(tokens, columns.astype(np.int64), weights)


def cleaned_text(cleaned: CleanedPieces) -> str:
    """Return the cleaned pieces joined by single spaces (the text both vectorizers split)."""
    return " ".join(cleaned.pieces)


__all__ = ["FeatureSpans", "Token", "clean_aligned", "feature_spans", "tokenize"]
