"""Text cleaning for the TF-IDF models, and cheap per-comment text statistics for monitoring.

The cleaning steps were kept or dropped by measurement (`benchmarks/cleaning.py`, table in
`benchmarks/README.md`); `DEFAULT_STEPS` are the ones the linear models use by default.
The transformer gets the raw text.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from toxiguard.errors import ToxiguardError

URL_TOKEN = " xxurl "
IP_TOKEN = " xxip "

_URL = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"'\]\[|]+", re.IGNORECASE)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\d.]*\d)")
# Cheap pre-checks: the full patterns are slow to scan, and most comments hold neither.
_MAYBE_IPV4 = re.compile(r"\d[\d.]{6,}")
_IPV6_COLONS = 7
# Full-form IPv6 (eight groups), as Wikipedia signs anonymous IPv6 edits.
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}(?![\w:])", re.IGNORECASE)
_REPEATS = re.compile(r"(.)\1{2,}", re.DOTALL)


def normalize_unicode(text: str) -> str:
    """Return the NFKC normal form (full-width letters, ligatures, compatibility forms unified)."""
    return unicodedata.normalize("NFKC", text)


def strip_accents(text: str) -> str:
    """Return the text with combining marks removed after NFKD decomposition ("café" -> "cafe")."""
    decomposed = unicodedata.normalize("NFKD", text)
    if decomposed.isascii():
        return decomposed
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def lowercase(text: str) -> str:
    """Return the text in lower case."""
    return text.lower()


def replace_urls(text: str) -> str:
    """Return the text with every URL (http, https, ftp, www.) replaced by the URL token."""
    if "://" in text or "www." in text.lower():
        return _URL.sub(URL_TOKEN, text)
    return text


def replace_ips(text: str) -> str:
    """Return the text with every IPv4 address and full IPv6 address replaced by the IP token."""
    if _MAYBE_IPV4.search(text):
        text = _IPV4.sub(IP_TOKEN, text)
    if text.count(":") >= _IPV6_COLONS:
        text = _IPV6.sub(IP_TOKEN, text)
    return text


def squeeze_repeats(text: str) -> str:
    """Return the text with runs of three or more equal characters cut to two ("stuuupid")."""
    return _REPEATS.sub(r"\1\1", text)


def squeeze_whitespace(text: str) -> str:
    """Return the text with whitespace runs replaced by one space and the ends stripped."""
    return " ".join(text.split())


# In the order they are applied: URLs and IPs are found before lowercasing and squeezing could
# change them, and whitespace goes last because the tokens above add spaces.
CLEANING_STEPS: dict[str, Callable[[str], str]] = {
    "unicode": normalize_unicode,
    "accents": strip_accents,
    "urls": replace_urls,
    "ips": replace_ips,
    "lowercase": lowercase,
    "repeats": squeeze_repeats,
    "whitespace": squeeze_whitespace,
}
# Measured with benchmarks/cleaning.py (tfidf-lr, validation ROC-AUC; table in benchmarks/README):
# lowercase helps (+0.004), urls (+0.0001 to +0.0003) and repeats (+0.0001 to +0.0004) a little;
# unicode and ips are neutral and cheap, and fold unique strings into one token; accents is
# neutral and loses information in other languages; whitespace changes nothing, as both
# vectorizers split on whitespace anyway.
DEFAULT_STEPS: tuple[str, ...] = ("unicode", "urls", "ips", "lowercase", "repeats")


def check_steps(steps: Sequence[str]) -> tuple[str, ...]:
    """Return the steps in application order, or raise ToxiguardError naming an unknown one."""
    unknown = [step for step in steps if step not in CLEANING_STEPS]
    if unknown:
        known = ", ".join(CLEANING_STEPS)
        raise ToxiguardError(f"unknown text cleaning step(s) {unknown} (known: {known})")
    return tuple(step for step in CLEANING_STEPS if step in steps)


def clean_text(text: str, steps: Sequence[str] = DEFAULT_STEPS) -> str:
    """Return the text after the given cleaning steps (always applied in `CLEANING_STEPS` order)."""
    for step in check_steps(steps):
        text = CLEANING_STEPS[step](text)
    return text


def clean_texts(texts: Sequence[str], steps: Sequence[str] = DEFAULT_STEPS) -> list[str]:
    """Return `clean_text` applied to every text (steps checked once)."""
    functions = [CLEANING_STEPS[step] for step in check_steps(steps)]
    cleaned = []
    for text in texts:
        result = text
        for function in functions:
            result = function(result)
        cleaned.append(result)
    return cleaned


# --------------------------------------------------------------------------- statistics

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
