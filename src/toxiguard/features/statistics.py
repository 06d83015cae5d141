"""Cheap per-comment text statistics for monitoring: length, words, capitals, non-letters."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

_ALPHA, _UPPER, _SPACE = 1, 2, 4
_BMP = 0x10000


def _flags_of(codes: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint8]:
    """Return the character-class bit flags (alpha, upper, space) of each code point."""
    flags = np.empty(codes.shape, dtype=np.uint8)
    small = codes < _BMP
    flags[small] = _bmp_flags()[codes[small]]
    if not small.all():
        astral = np.unique(codes[~small])
        table = np.array([_char_flags(chr(int(code))) for code in astral], dtype=np.uint8)
        flags[~small] = table[np.searchsorted(astral, codes[~small])]
    return flags


def _char_flags(char: str) -> int:
    """Return the bit flags of one character: letters, capital letters, whitespace."""
    alpha = char.isalpha()
    return (
        (_ALPHA if alpha else 0)
        | (_UPPER if alpha and char.isupper() else 0)
        | (_SPACE if char.isspace() else 0)
    )


@functools.cache
def _bmp_flags() -> npt.NDArray[np.uint8]:
    """Return the flags of every code point of the Basic Multilingual Plane (built once)."""
    return np.fromiter((_char_flags(chr(code)) for code in range(_BMP)), np.uint8, count=_BMP)


STATISTICS_COLUMNS: tuple[str, ...] = ("length", "words", "upper_share", "non_letter_share")


def text_statistics(texts: Sequence[str]) -> pd.DataFrame:
    """Return one row per text: length, words, upper_share and non_letter_share.

    length: characters (code points); words: whitespace-separated tokens; upper_share: capital
    letters / letters (0 without letters); non_letter_share: characters that are neither letters
    nor whitespace / length (0 for an empty text). Computed on all texts at once with numpy.
    """
    texts = [str(text) for text in texts]
    lengths = np.fromiter((len(text) for text in texts), dtype=np.int64, count=len(texts))
    # One space before every text, so that no word runs across two texts.
    joined = "".join(" " + text for text in texts)
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    flags = _flags_of(codes)
    alpha = (flags & _ALPHA) > 0
    space = (flags & _SPACE) > 0
    upper = (flags & _UPPER) > 0
    word_start = np.zeros(codes.shape, dtype=bool)
    word_start[1:] = ~space[1:] & space[:-1]
    starts = np.cumsum(lengths + 1) - lengths  # index of each text's first character

    def per_text(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        totals = np.zeros(len(mask) + 1, dtype=np.int64)
        np.cumsum(mask, out=totals[1:])
        counts: npt.NDArray[np.int64] = totals[starts + lengths] - totals[starts]
        return counts

    letters, capitals = per_text(alpha), per_text(upper)
    others = lengths - letters - per_text(space)
    return pd.DataFrame(
        {
            "length": lengths,
            "words": per_text(word_start),
            "upper_share": np.divide(
                capitals, letters, out=np.zeros(len(texts)), where=letters > 0
            ),
            "non_letter_share": np.divide(
                others, lengths, out=np.zeros(len(texts)), where=lengths > 0
            ),
        },
        columns=list(STATISTICS_COLUMNS),
    )
