"""Sentence spans of a comment, and offsets in the units Perspective clients use (UTF-16).

Perspective's `spanScores` give `begin` and `end` as UTF-16 code-unit offsets ("end" exclusive),
the units of JavaScript strings: an emoji outside the Basic Multilingual Plane counts two,
while a Python `str` index counts it once. Everything here takes and returns Python offsets
except `Utf16Offsets`, which converts them.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Final

# A sentence ends after a run of terminal punctuation that is followed by whitespace (or the
# end), or at a line break. Abbreviations ("e.g. this") split too: Perspective's own sentence
# spans are a guide to where the score sits, not a parse.
_SENTENCE: Final = re.compile(
    r"\S.*?(?:[.!?\u2026\u3002\uff01\uff1f]+(?=\s|$)|(?=\n)|$)", re.DOTALL
)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Return the (begin, end) Python offsets of each sentence, surrounding whitespace excluded."""
    spans = []
    for match in _SENTENCE.finditer(text):
        begin, end = match.span()
        while end > begin and text[end - 1].isspace():
            end -= 1
        if end > begin:
            spans.append((begin, end))
    return spans


class Utf16Offsets:
    """Converts Python offsets into one text to UTF-16 code-unit offsets."""

    def __init__(self, text: str) -> None:
        self._units = list(accumulate((2 if ord(char) > 0xFFFF else 1 for char in text), initial=0))

    def __call__(self, index: int) -> int:
        """Return the UTF-16 offset of the Python offset `index` (0 <= index <= len(text))."""
        return self._units[index]


__all__ = ["Utf16Offsets", "sentence_spans"]
