"""Text cleaning for the TF-IDF models.

The cleaning steps were kept or dropped by measurement (`benchmarks/cleaning.py`, table in
`benchmarks/README.md`); `DEFAULT_STEPS` are the ones the linear models use by default.
The transformer gets the raw text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

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
