"""Seeded obfuscations: deterministic, they change the words they should, and the matching
cleaning step undoes them."""

from __future__ import annotations

import re

import numpy as np
import pytest

from toxiguard.data.perturbations import (
    HOMOGLYPHS,
    PERTURBATIONS,
    augment,
    perturb_texts,
)
from toxiguard.errors import ToxiguardError
from toxiguard.features.text import DEFAULT_STEPS, clean_text, clean_texts

TEXTS = [
    "You are a stupid idiot, go away!",
    "Thanks for fixing the article about the 1990 election.",
    "Please stop reverting my edits on this talk page.",
]
ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
# The steps that undo each perturbation, on top of the defaults.
UNDOING = {
    "leetspeak": "leetspeak",
    "spaced": "despace",
    "punctuation": "punctuation_inside",
    "homoglyphs": "homoglyphs",
    "zero_width": "zero_width",
}


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_each_perturbation_is_deterministic_for_a_seed_and_changes_every_text(name: str) -> None:
    first = perturb_texts(TEXTS, name, seed=7)
    assert first == perturb_texts(TEXTS, name, seed=7)
    assert all(changed != text for changed, text in zip(first, TEXTS, strict=True))


@pytest.mark.parametrize("name", [n for n in PERTURBATIONS if n not in {"caps", "spaced"}])
def test_word_perturbations_depend_on_the_seed(name: str) -> None:
    outputs = {tuple(perturb_texts(TEXTS, name, seed)) for seed in range(5)}
    assert len(outputs) > 1


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_short_words_and_numbers_are_left_alone(name: str) -> None:
    # Words of under three letters are never changed (caps aside), and nor are numbers; spaced
    # puts two spaces between words whatever they hold.
    expected = {"caps": "OK, 12 IS AT 3:45", "spaced": "ok,  12  is  at  3:45"}
    assert perturb_texts(["ok, 12 is at 3:45"], name, seed=0) == [
        expected.get(name, "ok, 12 is at 3:45")
    ]


@pytest.mark.parametrize("name", [n for n in PERTURBATIONS if n not in {"caps", "spaced"}])
def test_a_share_of_the_words_changes(name: str) -> None:
    text = " ".join(["idiot"] * 200)
    words = perturb_texts([text], name, seed=1)[0].split(" ")
    changed = sum(word != "idiot" for word in words)
    assert 60 < changed < 140  # WORD_SHARE = 0.5 of 200 words


def test_leetspeak_writes_letters_as_digits_and_signs() -> None:
    (text,) = perturb_texts(["idiot " * 20], "leetspeak", seed=3)
    assert set(text) - set("idiot ") <= set("1!0@7")
    assert set(text) & set("1!07")


def test_spaced_spells_out_words_two_spaces_apart() -> None:
    assert perturb_texts(["you suck, a lot"], "spaced", seed=0) == ["y o u  s u c k,  a  l o t"]


def test_punctuation_masked_repeats_and_caps() -> None:
    rng = np.random.default_rng(0)
    for text in (PERTURBATIONS["punctuation"]("idiot", rng) for _ in range(20)):
        assert re.sub(r"[.\-_*]", "", text) == "idiot" and text != "idiot"
    for text in (PERTURBATIONS["masked"]("idiot", rng) for _ in range(20)):
        assert text[0] == "i" and text[-1] == "t" and "*" in text and len(text) == 5
    for text in (PERTURBATIONS["repeats"]("stupid", rng) for _ in range(20)):
        assert re.search(r"(.)\1\1", text) and re.sub(r"(.)\1+", r"\1", text) == "stupid"
    assert PERTURBATIONS["caps"]("You suck", rng) == "YOU SUCK"


def test_homoglyphs_and_zero_width_look_the_same() -> None:
    (text,) = perturb_texts(["you are an idiot"], "homoglyphs", seed=0)
    look_alikes = {char for options in HOMOGLYPHS.values() for char in options}
    assert {char for char in text if not char.isascii()} <= look_alikes
    assert any(not char.isascii() for char in text)
    (text,) = perturb_texts(["you are an idiot"], "zero_width", seed=0)
    assert ZERO_WIDTH.search(text) and ZERO_WIDTH.sub("", text) == "you are an idiot"


@pytest.mark.parametrize(("name", "step"), list(UNDOING.items()))
def test_the_matching_cleaning_step_undoes_the_perturbation(name: str, step: str) -> None:
    clean = clean_texts(TEXTS)
    steps = [*DEFAULT_STEPS, step, "whitespace"]
    undone = clean_texts(perturb_texts(TEXTS, name, seed=5), steps)
    if name in {"leetspeak", "punctuation"}:
        # Not all: a letter-then-digit word ("idio7") reads as a user name, and one inserted
        # mark ("id.iot") cannot be told from "end.Then"; most words come back.
        words = [set(text.split()) for text in clean]
        back = [len(set(text.split()) & w) / len(w) for text, w in zip(undone, words, strict=True)]
        assert np.mean(back) > 0.6
    else:
        assert undone == [" ".join(text.split()) for text in clean]


def test_unknown_perturbation_names_the_known_ones() -> None:
    with pytest.raises(ToxiguardError, match=r"unknown perturbation.*leetspeak, spaced"):
        perturb_texts(["x"], "rot13", seed=0)


def test_augment_appends_perturbed_copies_with_their_labels() -> None:
    texts = [f"comment {i} about the article" for i in range(50)]
    # Every row's labels are its number in binary, so a copy's labels say which row it copies.
    labels = ((np.arange(50)[:, None] >> np.arange(6)) & 1).astype(np.int8)
    out_texts, out_labels = augment(texts, labels, share=0.2, seed=0)
    assert out_texts[:50] == texts and len(out_texts) == 60
    assert out_labels.shape == (60, 6)
    np.testing.assert_array_equal(out_labels[:50], labels)
    rows = [int((row << np.arange(6)).sum()) for row in out_labels[50:]]
    assert len(set(rows)) == 10
    for copy, row in zip(out_texts[50:], rows, strict=True):
        assert copy != texts[row]
        assert str(row) in copy.split()  # numbers are kept by every perturbation
    assert augment(texts, labels, share=0.2, seed=0)[0] == out_texts
    with pytest.raises(ToxiguardError, match="share"):
        augment(texts, labels, share=1.5, seed=0)


def test_cleaning_alone_does_not_perturb_text() -> None:
    # The steps' inverse direction: a clean sentence stays as the defaults leave it.
    text = "Thanks for the 2 edits on 2020-01-01."
    assert clean_text(text, [*DEFAULT_STEPS, *UNDOING.values()]) == clean_text(text)
