"""Text cleaning for the TF-IDF models.

Steps that fold variants of a word into one feature (case, Unicode forms, URLs, repeated
letters), and steps that undo how users obfuscate words to get past a filter (zero-width
characters, look-alike Cyrillic and Greek letters, spelled-out "y o u", dotted "i.d.i.o.t",
leetspeak "1d10t"; the perturbations they undo are in `toxiguard.data.perturbations`). The steps
were kept or dropped by measurement (`benchmarks/cleaning.py`, tables in `benchmarks/README.md`);
`DEFAULT_STEPS` are the ones the linear models use by default. The transformer gets the raw text.
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

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_ANY_ZERO_WIDTH = re.compile("[\u200b-\u200d\u2060\ufeff\u00ad]")
# Cyrillic and Greek letters that look like Latin ones (NFKC keeps them apart), with the reversed
# "faux Cyrillic" letters of stylised Latin (ya for R, i for N: "REDVE\u042fS"); ambiguous shapes
# (delta, lambda, pe) are left out. Written as escapes: the glyphs are what this is about.
_FOLD = str.maketrans(
    # Cyrillic small a ve ie i je ka o er es dze u ha shha komi-de qa we ya i
    "\u0430\u0432\u0435\u0456\u0458\u043a\u043e\u0440\u0441\u0455\u0443\u0445\u04bb\u0501\u051b\u051d\u044f\u0438"
    # Cyrillic capital A VE IE I JE KA EM EN O ER ES DZE TE U HA straight-U QA WE YA I
    "\u0410\u0412\u0415\u0406\u0408\u041a\u041c\u041d\u041e\u0420\u0421\u0405\u0422\u0423\u0425\u04ae\u051a\u051c\u042f\u0418"
    # Greek small alpha beta gamma epsilon eta iota kappa nu omicron rho tau upsilon chi omega
    "\u03b1\u03b2\u03b3\u03b5\u03b7\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7\u03c9"
    # Greek capital alpha beta epsilon zeta eta iota kappa mu nu omicron rho tau upsilon chi
    "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7",
    "abeijkopcsyxhdqwrn" "ABEIJKMHOPCSTYXYQWRN" "abyenikvoptuxw" "ABEZHIKMNOPTYX",
)  # fmt: skip
# Every letter of the table lies in these ranges (Greek capital alpha to omega, Cyrillic dze to we).
_ANY_CONFUSABLE = re.compile("[\u0391-\u03c9\u0405-\u051d]")
_NON_ASCII_WORD = re.compile(r"\w*[^\W\x00-\x7f]\w*")
_LATIN = re.compile(r"[A-Za-z]")
# Three or more single Latin letters one space apart ("y o u"), not after a letter or digit, nor
# after an apostrophe that follows one ("it's a b-side"), and not followed by one.
_SPACED = re.compile(r"(?<![^\W_])(?<![^\W_]')[A-Za-z](?: [A-Za-z]){2,}(?![^\W_])")
# Three or more single Latin letters joined by one of . - _ * ("i.d.i.o.t", "f-u-c-k").
_DOTTED = re.compile(r"(?<![^\W_])[A-Za-z](?:[.\-_*][A-Za-z]){2,}(?![^\W_])")
# Cheap first looks, which every text the patterns above change passes (a pattern that starts
# with a character class is scanned fast; one that starts with look-arounds is not).
_SPACED_HINT = re.compile(r" [A-Za-z] [A-Za-z](?![^\W_])")
_DOTTED_HINT = re.compile(r"[.\-_*][A-Za-z][.\-_*]")
_DOTS = re.compile(r"[.\-_*]")
# A letter touching a digit or sign ("!" only before a letter or digit: "stop!" is punctuation);
# the whole run of ASCII letters, digits and signs around it is the token read. The look-behind
# starts a match only at a token's start: 64 -> 16 ms per 1,000 comments. The hint (one comment
# in ten has one) looks for the digit or sign first and then around it: 12 -> 1 ms.
_LEET_HINT = re.compile(r"[0-9@$!](?:(?<=[A-Za-z][0-9@$])|(?=[A-Za-z])|(?<=[A-Za-z]!)(?=[0-9]))")
_LEET_TOKEN = re.compile(
    r"(?<![0-9A-Za-z@$!])[0-9A-Za-z@$!]*"
    r"(?:[A-Za-z][0-9@$]|[0-9@$!][A-Za-z]|[A-Za-z]![0-9A-Za-z])[0-9A-Za-z@$!]*"
)
_LEET = {"4": "a", "3": "e", "1": "i", "0": "o", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
# Tokens left as they are: a digit no letter looks like (a code, "2nd", "1990s"), numbers with a
# unit ("5pm", "3rd", "$100k", "4x4"), letters then digits (user names and codes: "brad5",
# "a7", "win10"), hexadecimal strings (colours, hashes: "f5fffa"); and e-mail addresses.
_UNMAPPED_DIGIT = re.compile(r"[2689]")
_NUMBER_WITH_UNIT = re.compile(r"\$?\d+[A-Za-z]{1,3}|[A-Za-z]+\d+|\d+[xX]\d+|[0-9A-Fa-f]{6,}")


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


def remove_zero_width(text: str) -> str:
    """Return the text without zero-width characters (U+200B-D, U+2060, U+FEFF) and soft hyphens."""
    if text.isascii() or not _ANY_ZERO_WIDTH.search(text):
        return text
    return text.translate(_ZERO_WIDTH)


def _fold_word(match: re.Match[str]) -> str:
    """Return a word with its Cyrillic and Greek look-alikes folded, if it holds a Latin letter."""
    word = match.group()
    return word.translate(_FOLD) if _LATIN.search(word) else word


def fold_homoglyphs(text: str) -> str:
    """Return the text with Cyrillic and Greek look-alikes turned into Latin letters inside
    words that mix them with Latin ones ("idiot" with a Cyrillic o, U+043E); other words, such
    as Russian or Greek ones, are kept."""
    if text.isascii() or not _ANY_CONFUSABLE.search(text):
        return text
    return _NON_ASCII_WORD.sub(_fold_word, text)


def despace(text: str) -> str:
    """Return the text with runs of three or more single Latin letters one space apart joined
    ("y o u  s u c k" -> "you  suck")."""
    if not _SPACED_HINT.search(text):
        return text
    return _SPACED.sub(lambda match: match.group().replace(" ", ""), text)


def despaced_positions(text: str) -> list[int]:
    """Return the raw index of each character `despace` keeps, in order (it only deletes the
    single spaces inside spelled-out words)."""
    if not _SPACED_HINT.search(text):
        return list(range(len(text)))
    removed = {
        match.start() + offset
        for match in _SPACED.finditer(text)
        for offset, char in enumerate(match.group())
        if char == " "
    }
    return [index for index in range(len(text)) if index not in removed]


def join_dotted(text: str) -> str:
    """Return the text with runs of three or more single Latin letters joined by . - _ or *
    written as one word ("i.d.i.o.t" -> "idiot", "U.S.A." -> "USA."; "e.g." has two)."""
    if not _DOTTED_HINT.search(text):
        return text
    return _DOTTED.sub(lambda match: _DOTS.sub("", match.group()), text)


def _reads_as_letter(token: str, i: int) -> bool:
    """Return whether the "!" or "@" at `token[i]` stands for a letter: between two letters or
    digits ("id!ot", "t@lk"), or an "@" first before a small letter ("@ss"); not at the end
    ("stop!"), not before a mention's capital ("@Bob"), not between sentences ("wrong!Stop"), and
    no "!" first (wiki table cells: "!align", "!width")."""
    after = token[i + 1] if i + 1 < len(token) else ""
    if i == 0:
        return token[i] == "@" and after.islower()
    before = token[i - 1]
    return before.isalnum() and after.isalnum() and not (before.islower() and after.isupper())


def _unleet_token(match: re.Match[str]) -> str:
    """Return a token with its digits and signs read as letters, unless it looks like a number,
    a code or a hexadecimal string."""
    token = match.group()
    if _UNMAPPED_DIGIT.search(token) or _NUMBER_WITH_UNIT.fullmatch(token):
        return token
    if "@" in token and match.string.startswith(".", match.end()):  # name@example.com
        return token
    return "".join(
        char if char in "@!" and not _reads_as_letter(token, i) else _LEET.get(char, char)
        for i, char in enumerate(token)
    )


def decode_leetspeak(text: str) -> str:
    """Return the text with digits and signs inside words read as letters ("1d10t" -> "idiot",
    "a$$" -> "ass"); numbers, dates, codes and e-mail addresses are kept."""
    if not _LEET_HINT.search(text):
        return text
    return _LEET_TOKEN.sub(_unleet_token, text)


def squeeze_repeats(text: str) -> str:
    """Return the text with runs of three or more equal characters cut to two ("stuuupid")."""
    return _REPEATS.sub(r"\1\1", text)


def squeeze_whitespace(text: str) -> str:
    """Return the text with whitespace runs replaced by one space and the ends stripped."""
    return " ".join(text.split())


# In the order they are applied: invisible characters and look-alike letters go first, so that
# every later step sees plain Latin words; URLs and IPs are found before lowercasing, squeezing
# and leetspeak could change them (their digits are not letters); leetspeak reads case ("@Bob"
# is a mention, "@ss" is not), so it runs before lowercasing; whitespace goes last because the
# tokens above add spaces. Every step but despace changes a whitespace-separated piece on its
# own, which `features.spans` relies on to map explanations back to the raw text.
CLEANING_STEPS: dict[str, Callable[[str], str]] = {
    # First, on the raw text: the one step that joins whitespace-separated pieces, which
    # features.spans aligns on the whole text before it cleans piece by piece.
    "despace": despace,
    "unicode": normalize_unicode,
    "zero_width": remove_zero_width,
    "homoglyphs": fold_homoglyphs,
    "accents": strip_accents,
    "urls": replace_urls,
    "ips": replace_ips,
    "punctuation_inside": join_dotted,
    "leetspeak": decode_leetspeak,
    "lowercase": lowercase,
    "repeats": squeeze_repeats,
    "whitespace": squeeze_whitespace,
}
# Measured with benchmarks/cleaning.py (tfidf-lr, validation ROC-AUC; table in benchmarks/README):
# lowercase helps (+0.004), urls (+0.0001 to +0.0003) and repeats (+0.0001 to +0.0004) a little;
# unicode and ips are neutral and cheap, and fold unique strings into one token; accents is
# neutral and loses information in other languages; whitespace changes nothing, as both
# vectorizers split on whitespace anyway.
# Against obfuscation (validation comments under toxiguard.data.perturbations, 2026-12-02): each
# of zero_width, homoglyphs, punctuation_inside and leetspeak undoes its perturbation (tfidf-lr /
# nbsvm: zero-width 0.954 / 0.944 -> 0.971 / 0.973, look-alikes 0.947 / 0.941 -> 0.971 / 0.973,
# dotted 0.932 / 0.905 -> 0.966 / 0.965, leetspeak 0.956 / 0.948 -> 0.970 / 0.971) and leaves
# clean validation ROC-AUC within noise (0.9713 -> 0.9714, 0.9729 -> 0.9729), for 9 ms per 1,000
# comments together. despace undoes spelled-out words (0.789 / 0.699 -> 0.971 / 0.973, clean
# -0.0001 / +0.0002); it joins whitespace-separated pieces, so it runs first, on the raw text,
# where features.spans aligns it on the whole text. Augmenting training with 20% perturbed copies
# cost 0.0007 clean: not used.
DEFAULT_STEPS: tuple[str, ...] = (
    "despace",
    "unicode",
    "zero_width",
    "homoglyphs",
    "urls",
    "ips",
    "punctuation_inside",
    "leetspeak",
    "lowercase",
    "repeats",
)


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
