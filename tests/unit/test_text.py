"""Text cleaning rules and text statistics, on hand-made strings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from toxiguard.errors import ToxiguardError
from toxiguard.features.statistics import text_statistics
from toxiguard.features.text import (
    CLEANING_STEPS,
    DEFAULT_STEPS,
    IP_TOKEN,
    URL_TOKEN,
    check_steps,
    clean_text,
    clean_texts,
    normalize_unicode,
    replace_ips,
    replace_urls,
    squeeze_repeats,
    squeeze_whitespace,
    strip_accents,
)


def test_normalize_unicode_folds_compatibility_forms() -> None:
    # full-width letters and digits, the "fi" ligature, a non-breaking space
    full_width = "\uff29\uff24\uff29\uff2f\uff34 \uff11\uff12"  # "IDIOT 12" in full width
    assert normalize_unicode(full_width + " \ufb01ne\u00a0x") == "IDIOT 12 fine x"


def test_normalize_unicode_keeps_accents_composed() -> None:
    assert normalize_unicode("cafe\u0301") == "café"


def test_strip_accents() -> None:
    assert strip_accents("café naïve Ångström") == "cafe naive Angstrom"
    assert strip_accents("plain ascii") == "plain ascii"


def test_lowercase_step_folds_case_variants_into_one_token() -> None:
    # What the step is for (+0.004 ROC-AUC): "WRONG", "Wrong" and "wrong" become one feature.
    variants = ["You ARE Wrong", "YOU ARE WRONG", "you are wrong", "\uff39\uff2f\uff35 ARE WRONG"]
    assert "lowercase" in DEFAULT_STEPS
    assert set(clean_texts(variants)) == {"you are wrong"}
    without = [step for step in DEFAULT_STEPS if step != "lowercase"]
    # Without the step only the full-width variant folds (NFKC) into another.
    assert len(set(clean_texts(variants, without))) == len(variants) - 1
    # Applied after URL replacement: an upper-case URL still becomes the token.
    assert clean_text("SEE WWW.EXAMPLE.COM") == f"see {URL_TOKEN}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see http://en.wikipedia.org/wiki/Foo_(bar) now", f"see {URL_TOKEN} now"),
        ("see HTTPS://example.com/a?b=1&c=2.", f"see {URL_TOKEN}"),
        ("[https://x.org/y label]", f"[{URL_TOKEN} label]"),
        ("go to www.example.com/page, then", f"go to {URL_TOKEN} then"),
        ("ftp://files.example.net/a.txt", URL_TOKEN),
        ("no link here, www or http alone", "no link here, www or http alone"),
    ],
)
def test_replace_urls(text: str, expected: str) -> None:
    assert replace_urls(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("edited by 192.168.0.1 today", f"edited by {IP_TOKEN} today"),
        ("(talk) 10.0.0.255)", f"(talk) {IP_TOKEN})"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334 wrote", f"{IP_TOKEN} wrote"),
        ("version 1.2.3 and 3.14", "version 1.2.3 and 3.14"),
        ("not an ip 256.1.1.1 nor 1.2.3.4.5", "not an ip 256.1.1.1 nor 1.2.3.4.5"),
        ("time 12:30:45 is not one", "time 12:30:45 is not one"),
    ],
)
def test_replace_ips(text: str, expected: str) -> None:
    assert replace_ips(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stuuuupid", "stuupid"),
        ("!!!!!!", "!!"),
        ("good, book", "good, book"),
        ("aaabbbccc", "aabbcc"),
        ("NOOOO\n\n\n\nway", "NOO\n\nway"),
    ],
)
def test_squeeze_repeats(text: str, expected: str) -> None:
    assert squeeze_repeats(text) == expected


def test_squeeze_whitespace() -> None:
    assert squeeze_whitespace("  a \t\n b\u3000c  ") == "a b c"


def test_clean_text_default_steps_in_order() -> None:
    raw = "  \uff39\uff4f\uff55   are sooooo WRONG!!!! see http://Example.com/X from 8.8.8.8  "
    # runs of spaces are cut to two like any other repeated character
    assert clean_text(raw) == "  you  are soo wrong!! see  xxurl  from  xxip  "
    assert (
        clean_text(raw, [*DEFAULT_STEPS, "whitespace"]) == "you are soo wrong!! see xxurl from xxip"
    )


def test_clean_text_applies_steps_in_canonical_order_whatever_order_given() -> None:
    raw = "HTTP://EXAMPLE.COM"
    # URLs are replaced before lowercasing, whichever order the steps are listed in.
    assert clean_text(raw, ["lowercase", "urls"]) == URL_TOKEN
    assert clean_text(raw, ["urls", "lowercase"]) == URL_TOKEN


def test_clean_text_no_steps_is_identity() -> None:
    assert clean_text("  AAAA http://x.y  ", []) == "  AAAA http://x.y  "


def test_clean_texts_matches_clean_text() -> None:
    texts = ["Héllo   WORLD", "x" * 10, "visit www.a.com"]
    for steps in (DEFAULT_STEPS, tuple(CLEANING_STEPS), ("repeats",)):
        assert clean_texts(texts, steps) == [clean_text(t, steps) for t in texts]


def test_unknown_step_is_an_error() -> None:
    with pytest.raises(ToxiguardError, match="unknown text cleaning step"):
        check_steps(["lowercase", "stemming"])
    with pytest.raises(ToxiguardError, match="stemming"):
        clean_text("x", ["stemming"])


def test_text_statistics_exact_values() -> None:
    texts = ["Hello World", "", "ABC def!!", "  a  b ", "é😀 X1", "\t\n"]
    stats = text_statistics(texts)
    assert list(stats.columns) == ["length", "words", "upper_share", "non_letter_share"]
    assert stats["length"].tolist() == [11, 0, 9, 7, 5, 2]
    assert stats["words"].tolist() == [2, 0, 2, 2, 2, 0]
    # capitals / letters: 2/10, none, 3/6, 0/2, 1/2 (é and X), no letters
    np.testing.assert_allclose(stats["upper_share"], [0.2, 0.0, 0.5, 0.0, 0.5, 0.0])
    # neither letter nor whitespace / length: 0/11, empty, 2/9, 0/7, 2/5 (emoji and 1), 0/2
    np.testing.assert_allclose(stats["non_letter_share"], [0.0, 0.0, 2 / 9, 0.0, 0.4, 0.0])


def test_text_statistics_words_do_not_run_across_texts() -> None:
    stats = text_statistics(["end", "start", "x y z"])
    assert stats["words"].tolist() == [1, 1, 3]


def test_text_statistics_unicode_letters_and_surrogates() -> None:
    # Greek and Cyrillic capitals count as capitals; a lone surrogate is one non-letter character.
    greek = "\u0391\u0392\u03b3"  # capital alpha, capital beta, small gamma
    stats = text_statistics([greek + " Жж", "a\ud800"])
    assert stats["length"].tolist() == [6, 2]
    np.testing.assert_allclose(stats["upper_share"], [3 / 5, 0.0])
    np.testing.assert_allclose(stats["non_letter_share"], [0.0, 0.5])


def test_text_statistics_empty_input_and_dtypes() -> None:
    empty = text_statistics([])
    assert len(empty) == 0
    assert list(empty.columns) == ["length", "words", "upper_share", "non_letter_share"]
    stats = text_statistics(["Abc"])
    assert stats["length"].dtype == np.int64
    assert stats["upper_share"].dtype == np.float64


def test_text_statistics_agrees_with_a_plain_python_count() -> None:
    rng = np.random.default_rng(0)
    alphabet = list("aZ é\tÉ!9\n😀Жж_ ")
    texts = ["".join(rng.choice(alphabet, size=rng.integers(0, 40))) for _ in range(200)]
    stats = text_statistics(texts)
    expected = pd.DataFrame(
        {
            "length": [len(t) for t in texts],
            "words": [len(t.split()) for t in texts],
            "upper_share": [
                sum(c.isupper() for c in t if c.isalpha()) / max(1, sum(c.isalpha() for c in t))
                for t in texts
            ],
            "non_letter_share": [
                sum(not (c.isalpha() or c.isspace()) for c in t) / max(1, len(t)) for t in texts
            ],
        }
    )
    pd.testing.assert_frame_equal(stats, expected, check_dtype=False)
