"""Seeded obfuscations of comments, as users write them to get past a filter.

Each perturbation takes a text and a numpy generator and returns the obfuscated text. Most
change a seeded share (`WORD_SHARE`) of the words of three or more letters (at least one
word, where a text has one the perturbation can change): `leetspeak` ("1d10t"), `punctuation`
("i.d.i.o.t", "id.iot"), `repeats` ("stuuuupid"), `masked` ("f*ck", "id**t"), `homoglyphs`
(Cyrillic and Greek look-alikes: "idiot" with a Cyrillic o, U+043E), `zero_width` (invisible
characters inside words). Two change the whole text, because that is how they are written:
`caps` (ALL CAPS) and `spaced`, which spells out every word of three or more letters
("y o u  s u c k": letters one space apart, words two spaces apart, so the words can be told
apart again; shorter words and punctuation are kept as they are).

`perturb_texts` applies one perturbation to many texts, deterministically for a seed;
`augment` adds perturbed copies of a seeded share of labelled texts (training augmentation).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from toxiguard.errors import ToxiguardError

Perturbation = Callable[[str, np.random.Generator], str]

#: The share of eligible words a word-level perturbation changes.
WORD_SHARE: Final = 0.5
# Runs of three or more letters (no digits, no underscore): "don't" holds one, "don".
_WORD: Final = re.compile(r"[^\W\d_]{3,}")
_WHITESPACE: Final = re.compile(r"\s+")

_LEET: Final[dict[str, str]] = {"a": "4@", "e": "3", "i": "1!", "o": "0", "s": "5$", "t": "7"}
# Share of a chosen word's mappable letters that are replaced (at least one).
_LEET_SHARE: Final = 0.6
_INSERTED: Final = ".-_*"
_ZERO_WIDTH: Final = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")
#: Latin letter -> look-alikes (Cyrillic first, then Greek) a perturbation may put in its place;
#: escapes, as the glyphs cannot be told apart from Latin letters on screen.
HOMOGLYPHS: Final[dict[str, str]] = {
    "a": "\u0430\u03b1",
    "c": "\u0441",
    "e": "\u0435\u03b5",
    "i": "\u0456\u03b9",
    "j": "\u0458",
    "k": "\u03ba",
    "o": "\u043e\u03bf",
    "p": "\u0440\u03c1",
    "s": "\u0455",
    "x": "\u0445\u03c7",
    "y": "\u0443\u03b3",
    "A": "\u0410\u0391",
    "B": "\u0412\u0392",
    "E": "\u0415\u0395",
    "H": "\u041d\u0397",
    "I": "\u0406\u0399",
    "K": "\u041a\u039a",
    "M": "\u041c\u039c",
    "O": "\u041e\u039f",
    "P": "\u0420\u03a1",
    "C": "\u0421",
    "T": "\u0422\u03a4",
    "X": "\u0425\u03a7",
}
_HOMOGLYPH_SHARE: Final = 0.5


def _perturb_words(
    text: str,
    rng: np.random.Generator,
    change: Callable[[str, np.random.Generator], str],
    eligible: Callable[[str], bool] = lambda word: True,
) -> str:
    """Return the text with `change` applied to a seeded share of its eligible words (one at
    least, when there is an eligible word)."""
    words = [match for match in _WORD.finditer(text) if eligible(match.group())]
    if not words:
        return text
    chosen = rng.random(len(words)) < WORD_SHARE
    if not chosen.any():
        chosen[int(rng.integers(len(words)))] = True
    parts: list[str] = []
    end = 0
    for match, pick in zip(words, chosen, strict=True):
        if pick:
            parts += [text[end : match.start()], change(match.group(), rng)]
            end = match.end()
    parts.append(text[end:])
    return "".join(parts)


def _replace_some(
    word: str, rng: np.random.Generator, options: dict[str, str], share: float
) -> str:
    """Return the word with a share of its replaceable letters (one at least) replaced by one of
    their options, chosen at random."""
    places = [i for i, char in enumerate(word) if char in options]
    picked = rng.random(len(places)) < share
    if not picked.any():
        picked[int(rng.integers(len(places)))] = True
    letters = list(word)
    for place in np.asarray(places)[picked]:
        choices = options[letters[place]]
        letters[place] = choices[int(rng.integers(len(choices)))]
    return "".join(letters)


_LEET_OPTIONS: Final = _LEET | {letter.upper(): signs for letter, signs in _LEET.items()}


def leetspeak(text: str, rng: np.random.Generator) -> str:
    """Return the text with letters of some words written as digits or signs ("1d10t", "@$$")."""
    return _perturb_words(
        text,
        rng,
        lambda word, g: _replace_some(word, g, _LEET_OPTIONS, _LEET_SHARE),
        lambda word: any(char in _LEET_OPTIONS for char in word),
    )


def homoglyphs(text: str, rng: np.random.Generator) -> str:
    """Return the text with letters of some words replaced by Cyrillic or Greek look-alikes."""
    return _perturb_words(
        text,
        rng,
        lambda word, g: _replace_some(word, g, HOMOGLYPHS, _HOMOGLYPH_SHARE),
        lambda word: any(char in HOMOGLYPHS for char in word),
    )


def _punctuate(word: str, rng: np.random.Generator) -> str:
    """Return the word with punctuation inserted: between every letter ("i.d.i.o.t") or, as
    often, at one place inside it ("id.iot")."""
    mark = _INSERTED[int(rng.integers(len(_INSERTED)))]
    if rng.random() < 0.5:
        return mark.join(word)
    cut = int(rng.integers(1, len(word)))
    return word[:cut] + mark + word[cut:]


def punctuation(text: str, rng: np.random.Generator) -> str:
    """Return the text with punctuation (. - _ *) inserted inside some words."""
    return _perturb_words(text, rng, _punctuate)


def _repeat(word: str, rng: np.random.Generator) -> str:
    """Return the word with one of its letters repeated to a run of 3 to 6 ("stuuuupid")."""
    place = int(rng.integers(len(word)))
    return word[:place] + word[place] * int(rng.integers(3, 7)) + word[place + 1 :]


def repeats(text: str, rng: np.random.Generator) -> str:
    """Return the text with a letter of some words repeated several times ("stuuuupid")."""
    return _perturb_words(text, rng, _repeat)


def _mask(word: str, rng: np.random.Generator) -> str:
    """Return the word with one to half of its inner letters replaced by "*" ("f*ck", "id**t");
    the first and last letters are kept."""
    inner = len(word) - 2
    count = int(rng.integers(1, max(1, inner // 2) + 1))
    places = rng.choice(np.arange(1, len(word) - 1), size=count, replace=False)
    letters = list(word)
    for place in places:
        letters[int(place)] = "*"
    return "".join(letters)


def masked(text: str, rng: np.random.Generator) -> str:
    """Return the text with inner letters of some words replaced by "*" ("f*ck")."""
    return _perturb_words(text, rng, _mask)


def _insert_zero_width(word: str, rng: np.random.Generator) -> str:
    """Return the word with one to three zero-width characters inserted between its letters."""
    count = int(rng.integers(1, min(3, len(word) - 1) + 1))
    cuts = sorted(rng.choice(np.arange(1, len(word)), size=count, replace=False).tolist())
    parts, begin = [], 0
    for cut in cuts:
        parts += [word[begin:cut], _ZERO_WIDTH[int(rng.integers(len(_ZERO_WIDTH)))]]
        begin = cut
    parts.append(word[begin:])
    return "".join(parts)


def zero_width(text: str, rng: np.random.Generator) -> str:
    """Return the text with invisible zero-width characters inserted inside some words."""
    return _perturb_words(text, rng, _insert_zero_width)


def caps(text: str, rng: np.random.Generator) -> str:
    """Return the whole text in capitals (the generator is not used)."""
    return text.upper()


def spaced(text: str, rng: np.random.Generator) -> str:
    """Return the whole text with every word of 3+ letters spelled out ("y o u  s u c k"),
    words two spaces apart (the generator is not used)."""
    return _WORD.sub(lambda match: " ".join(match.group()), _WHITESPACE.sub("  ", text))


PERTURBATIONS: Final[dict[str, Perturbation]] = {
    "leetspeak": leetspeak,
    "spaced": spaced,
    "punctuation": punctuation,
    "repeats": repeats,
    "masked": masked,
    "homoglyphs": homoglyphs,
    "zero_width": zero_width,
    "caps": caps,
}


def check_perturbations(names: Sequence[str]) -> tuple[str, ...]:
    """Return the names as a tuple, or raise ToxiguardError naming an unknown one."""
    unknown = [name for name in names if name not in PERTURBATIONS]
    if unknown:
        known = ", ".join(PERTURBATIONS)
        raise ToxiguardError(f"unknown perturbation(s) {unknown} (known: {known})")
    return tuple(names)


def perturb_texts(texts: Sequence[str], name: str, seed: int) -> list[str]:
    """Return every text under the named perturbation (the same output for the same seed)."""
    (checked,) = check_perturbations([name])
    function = PERTURBATIONS[checked]
    rng = np.random.default_rng(seed)
    return [function(text, rng) for text in texts]


def augment(
    texts: Sequence[str],
    labels: npt.NDArray[np.int8],
    share: float,
    seed: int,
    names: Sequence[str] = tuple(PERTURBATIONS),
) -> tuple[list[str], npt.NDArray[np.int8]]:
    """Return the texts and labels followed by perturbed copies of a seeded share of the rows,
    each copy under one of `names` chosen at random, with its row's labels."""
    if not 0.0 <= share <= 1.0:
        raise ToxiguardError(f"the augmentation share must lie in [0, 1], got {share}")
    checked = check_perturbations(names)
    if not checked:
        raise ToxiguardError("augmentation needs at least one perturbation")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(texts), size=round(share * len(texts)), replace=False))
    which = rng.integers(len(checked), size=len(rows))
    copies = [
        PERTURBATIONS[checked[int(k)]](texts[int(row)], rng)
        for row, k in zip(rows, which, strict=True)
    ]
    return [*texts, *copies], np.concatenate([np.asarray(labels), np.asarray(labels)[rows]])
