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
    decode_leetspeak,
    despace,
    fold_homoglyphs,
    join_dotted,
    normalize_unicode,
    remove_zero_width,
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


NEW_STEPS = ("zero_width", "homoglyphs", "despace", "punctuation_inside", "leetspeak")
# Text the obfuscation steps must leave as the defaults do: plain English, numbers, dates, times,
# versions, Russian and Greek.
ORDINARY = [
    "Thanks for the 2 edits on 2020-01-01 at 12:30, see version 1.2.3 and 3.14.",
    "In the 1990s the 4th edition sold 5,000 copies at $100k; call at 5pm.",
    "A well-known, self-described e.g. example: it's a b-side, I think.",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u044d\u0442\u043e \u0441\u0442\u0430\u0442\u044c\u044f "
    "\u043e 1990 \u0433\u043e\u0434\u0435.",  # Russian: "Hello, this is an article about 1990."
    "\u0397 \u03b1\u03bb\u03ae\u03b8\u03b5\u03b9\u03b1 "
    "\u03ba\u03b1\u03b9 \u03bf \u03bb\u03cc\u03b3\u03bf\u03c2.",  # Greek: "The truth and the word."
    "User brad5 and Win10 wrote to name@example.com about mp3 colour f5fffa; @Bob agreed.",
    "Stop!! That was wrong!Stop it. 10.0.0.1 edited it.",
]  # fmt: skip


def test_remove_zero_width() -> None:
    assert remove_zero_width("st\u200bu\u200cp\u200di\u2060d\ufeff lo\u00adser") == "stupid loser"
    assert remove_zero_width("plain") == "plain"


def test_fold_homoglyphs_inside_words_that_mix_scripts() -> None:
    cyrillic_o, greek_alpha, cyrillic_es = "\u043e", "\u03b1", "\u0441"
    assert fold_homoglyphs(f"idi{cyrillic_o}t") == "idiot"
    assert fold_homoglyphs(f"you {greek_alpha}re a bit{cyrillic_es}h") == "you are a bitch"
    # NFKC does not fold them: that is why the step exists.
    assert normalize_unicode(f"idi{cyrillic_o}t") != "idiot"
    # Words in one script only are someone's language: kept.
    russian = "\u0441\u043e\u0440 \u0440\u0443\u0441\u0441\u043a\u0438\u0439"
    assert fold_homoglyphs(russian) == russian
    assert fold_homoglyphs(f"idiot {russian}") == f"idiot {russian}"


def test_despace_joins_spelled_out_words() -> None:
    assert despace("y o u  s u c k") == "you  suck"
    assert clean_text("Y O U  S U C K!", [*DEFAULT_STEPS, "despace", "whitespace"]) == "you suck!"
    assert despace("f u c k you") == "fuck you"
    # Two letters are not a run; a letter glued to a longer word does not start one.
    assert despace("plan a b") == "plan a b"
    assert despace("ab c d e") == "ab cde"
    assert despace("it's a b-side") == "it's a b-side"
    assert despace('"a b c" (d e f)') == '"abc" (def)'


def test_join_dotted_joins_letters_split_by_marks() -> None:
    assert join_dotted("you i.d.i.o.t") == "you idiot"
    assert join_dotted("F-U-C-K off, s_t_u_p_i_d, f*u*c*k") == "FUCK off, stupid, fuck"
    assert (
        join_dotted("the U.S.A. and e.g. a well-known x-ray")
        == "the USA. and e.g. a well-known x-ray"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("you 1d10t", "you idiot"),
        ("a$$ and $hit, sh!t", "ass and shit, shit"),
        ("st0p it!", "stop it!"),
        ("t@lk to @ss", "talk to ass"),
        ("k1ll y0urs3lf", "kill yourself"),
        ("1D10T", "iDioT"),
    ],
)
def test_decode_leetspeak(text: str, expected: str) -> None:
    assert decode_leetspeak(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2020-01-01 12:30:45 192.168.0.1 3.14 $5 100%",
        "the 4th, 3rd and 1st in the 1990s and 70s, at 5pm for $100k, a 4x4",
        "user brad5, win10 and a7; colour f5fffa; mail name@example.com",
        "@Bob said stop!! then wrong!Stop",
        '{| class="wikitable"\n!align="center"|Name\n!width="25"|Year',
        "2nd94 6sin8karma",
    ],
)
def test_decode_leetspeak_leaves_numbers_and_codes(text: str) -> None:
    assert decode_leetspeak(text) == text


def test_obfuscation_steps_leave_ordinary_text_as_the_defaults_do() -> None:
    with_new = [*DEFAULT_STEPS, *NEW_STEPS]
    assert clean_texts(ORDINARY, with_new) == clean_texts(ORDINARY)
    assert clean_text(ORDINARY[3], with_new) == ORDINARY[3].lower()


def test_obfuscation_steps_run_in_a_sensible_order() -> None:
    order = list(CLEANING_STEPS)
    position = order.index
    assert position("zero_width") < position("homoglyphs") < position("lowercase")
    assert position("urls") < position("leetspeak") and position("ips") < position("leetspeak")
    assert position("despace") < position("whitespace")
    # A URL is replaced before its digits could be read as letters.
    assert clean_text("see http://x.org/1d10t", [*DEFAULT_STEPS, "leetspeak"]) == f"see {URL_TOKEN}"
    # Zero-width characters go before leetspeak and homoglyphs look at the word.
    mixed = "1d\u200b1\u043et idi\u043et"
    assert clean_text(mixed, [*DEFAULT_STEPS, *NEW_STEPS]) == "idiot idiot"


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
