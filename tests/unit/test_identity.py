"""Identity terms: whole-word masks, the templated set, and counterfactual term swaps."""

from __future__ import annotations

import time

import numpy as np
import pytest

from toxiguard.data.identity import (
    AXES,
    IDENTITY_PHRASES,
    NEUTRAL_TEMPLATES,
    SUBGROUPS,
    SWAP_ROWS,
    TOXIC_TEMPLATES,
    neutral_comments,
    subgroup_masks,
    swap_identity_terms,
    templated_comments,
)


def found(text: str) -> set[str]:
    """Return the subgroups whose mask finds the text."""
    return {name for name, mask in subgroup_masks([text]).items() if mask[0]}


def test_masks_match_whole_words_in_any_case() -> None:
    texts = ["Gay rights matter.", "he is gay, and so what", "the gayety of it", "gays", "xgay"]
    assert subgroup_masks(texts)["homosexual_gay_or_lesbian"].tolist() == [
        True,
        True,
        False,
        True,
        False,
    ]


def test_masks_find_multiword_terms_across_white_space_and_accented_names() -> None:
    assert "black" in found("Black\n  people are here.")
    assert "black" not in found("a black and white photo")
    assert "heterosexual" not in found("go straight home")
    assert "heterosexual" in found("a STRAIGHT MAN walked in")
    assert "names_hispanic" in found("José and Jose")
    assert "names_east_asian" in found("Min-jun said so")


def test_a_mention_counts_for_every_subgroup_its_words_name() -> None:
    assert {"black", "male"} <= found("a Black man spoke")
    assert {"heterosexual", "female"} <= found("a straight woman spoke")


def test_no_term_begins_with_a_whole_term_of_another_subgroup() -> None:
    # The masks see only the longest term at one position, so such a pair would hide one.
    owner = {term: group for group, terms in SUBGROUPS.items() for term in terms}
    for short, group in owner.items():
        for long, other in owner.items():
            if other != group:
                assert not long.startswith((f"{short} ", f"{short}-")), (short, long)


def test_masks_return_one_boolean_per_text_for_every_subgroup() -> None:
    masks = subgroup_masks(["", "my wife", "Priya"])
    assert set(masks) == set(SUBGROUPS)
    assert all(mask.dtype == np.bool_ and mask.shape == (3,) for mask in masks.values())
    assert masks["female"].tolist() == [False, True, False]
    assert masks["names_south_asian"].tolist() == [False, False, True]


def test_masks_on_5000_comments_take_well_under_a_second() -> None:
    filler = "This article needs better sources and a copy edit before it can pass review. "
    texts = [f"{filler * 5} comment {i} mentions Maria and a Muslim man." for i in range(5000)]
    subgroup_masks(texts[:1])  # compile the patterns outside the timed call
    start = time.perf_counter()
    masks = subgroup_masks(texts)
    assert time.perf_counter() - start < 1.0
    assert masks["muslim"].all() and masks["names_hispanic"].all()
    assert not masks["jewish"].any()


def test_every_identity_phrase_is_found_by_its_own_subgroup() -> None:
    for subgroup, phrases in IDENTITY_PHRASES.items():
        for phrase in phrases:
            assert subgroup in found(phrase), phrase


def test_templated_set_is_every_template_with_every_phrase_labelled_by_construction() -> None:
    comments = templated_comments()
    phrases = sum(len(p) for p in IDENTITY_PHRASES.values())
    assert len(comments) == (len(NEUTRAL_TEMPLATES) + len(TOXIC_TEMPLATES)) * phrases
    assert comments == templated_comments()  # deterministic order
    assert sum(c.toxic for c in comments) == len(TOXIC_TEMPLATES) * phrases
    for comment in comments:
        assert comment.term.lower() in comment.text.lower()
        assert comment.term in IDENTITY_PHRASES[comment.subgroup]
        assert "{" not in comment.text and comment.text[0].isupper()
    assert comments[0].text == "A man lives next door and is very kind."


def test_identity_phrases_are_unique_so_they_can_key_results() -> None:
    phrases = [phrase for group in IDENTITY_PHRASES.values() for phrase in group]
    assert len(phrases) == len(set(phrases))


def test_neutral_comments_are_the_non_toxic_half() -> None:
    neutral = neutral_comments()
    assert neutral and not any(comment.toxic for comment in neutral)
    assert len(neutral) == len(templated_comments()) - len(
        [c for c in templated_comments() if c.toxic]
    )
    assert "Thanks to Priya for fixing the references in this section." in {c.text for c in neutral}


def test_swap_returns_none_without_a_term() -> None:
    rng = np.random.default_rng(0)
    assert swap_identity_terms("Please add a source for this claim.", rng) is None
    assert swap_identity_terms("Go straight to the talk page.", rng) is None


def test_swap_keeps_other_words_and_the_first_letter_case() -> None:
    rng = np.random.default_rng(0)
    assert swap_identity_terms("My wife thanked my son.", rng) == "My husband thanked my daughter."
    assert swap_identity_terms("Gay people are welcome here.", rng) == (
        "Straight people are welcome here."
    )
    assert swap_identity_terms("WOMEN only", rng) == "MEN only"
    # "İ" lower-cases to two characters, which moves every later position in lower().
    assert swap_identity_terms("İstanbul: my wife", rng) == "İstanbul: my husband"


def test_swap_moves_a_term_to_another_subgroup_of_its_axis() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        swapped = swap_identity_terms("I asked Priya about it.", rng)
        assert swapped is not None and swapped.startswith("I asked ")
        assert swapped.endswith(" about it.")
        names = found(swapped) & set(AXES["person_name"])
        assert len(names) == 1 and "names_south_asian" not in names


def test_swap_fixes_the_article_and_keeps_repeated_mentions_together() -> None:
    rng = np.random.default_rng(2)
    swapped = swap_identity_terms("An imam met John, and John smiled.", rng)
    assert swapped is not None
    assert swapped.startswith(("A priest met", "A rabbi met"))
    first, second = swapped.removesuffix(" smiled.").split(" met ")[1].split(", and ")
    assert first == second != "John"


def test_swap_is_reproducible_with_the_same_seed() -> None:
    text = "Christians, Muslims and Olga argued with an Asian man."
    runs = {swap_identity_terms(text, np.random.default_rng(7)) for _ in range(3)}
    assert len(runs) == 1


@pytest.mark.parametrize("axis", list(SWAP_ROWS))
def test_every_searchable_term_leaves_its_subgroup_when_swapped(axis: str) -> None:
    subgroups = AXES[axis]
    rng = np.random.default_rng(3)
    for row in SWAP_ROWS[axis]:
        assert len(row) == len(subgroups)
        for subgroup, term in zip(subgroups, row, strict=True):
            text = f"Yesterday {term} wrote here."
            if subgroup not in found(text):
                continue  # a replacement-only form such as "straight"
            swapped = swap_identity_terms(text, rng)
            assert swapped is not None, term
            assert subgroup not in found(swapped), (term, swapped)
            assert swapped.startswith("Yesterday ") and swapped.endswith(" wrote here.")
