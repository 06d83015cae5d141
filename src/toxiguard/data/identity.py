"""Identity terms: subgroup keyword lists, masks, a templated evaluation set and term swaps.

The lists are the project's own, written for this module. Subgroups follow the identity
columns of the Jigsaw Unintended Bias in Toxicity Classification (2019) data where a keyword
can stand in for its human annotation (gender, sexual orientation, religion, race or
ethnicity, mental illness), plus person names of seven origins, because a classifier can learn
a bias against a name as easily as against a group word. Terms were chosen for precision:

- no pronouns ("he", "she" are in most comments and say little about identity);
- colour words only inside phrases ("black people", not "black": Wikipedia talk pages say
  "black and white" far more often than they speak of Black people);
- "straight" only inside phrases ("straight man"), for the same reason;
- insults that borrow a diagnosis ("psycho", "insane") are left out: they are the toxicity
  itself, not a mention of people with a mental illness;
- names are common given names of each origin that are not also ordinary English words
  ("Grace", "Will", "Mark" are left out), four male and four female per origin.

Matching is on whole words, case-insensitive; a multiword term allows any white space
between its words. The templated set (`templated_comments`) follows the idea of the
published "bias madlibs" sets, sentences labelled by construction that differ only in the
identity phrase, with sentences of our own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

# The tables below are `fmt: skip`: packed rows read as tables; one term a line would not.
SUBGROUPS: Final[dict[str, tuple[str, ...]]] = {
    "male": (
        "man", "men", "male", "males", "boy", "boys",
        "husband", "father", "son", "brother", "guy", "guys",
    ),
    "female": (
        "woman", "women", "female", "females", "girl", "girls",
        "wife", "mother", "daughter", "sister", "lady", "ladies",
    ),
    "homosexual_gay_or_lesbian": (
        "gay", "gays", "lesbian", "lesbians", "homosexual", "homosexuals",
        "homosexuality", "queer", "lgbt", "lgbtq",
    ),
    "heterosexual": (
        "heterosexual", "heterosexuals", "heterosexuality", "straight man", "straight men",
        "straight woman", "straight women", "straight person", "straight people",
        "straight couple",
    ),
    "christian": (
        "christian", "christians", "christianity", "catholic", "catholics", "protestant",
        "protestants", "evangelical", "evangelicals", "church", "priest", "priests",
    ),
    "jewish": (
        "jew", "jews", "jewish", "judaism", "rabbi", "rabbis", "synagogue", "synagogues",
    ),
    "muslim": (
        "muslim", "muslims", "moslem", "islam", "islamic", "imam", "imams", "mosque", "mosques",
    ),
    "black": (
        "blacks", "black people", "black person", "black man", "black men", "black woman",
        "black women", "black community", "black lives", "african american",
        "african americans",
    ),
    "white": (
        "whites", "white people", "white person", "white man", "white men", "white woman",
        "white women", "white community", "caucasian", "caucasians",
    ),
    "asian": (
        "asian", "asians", "asian american", "asian americans", "chinese", "japanese",
        "korean", "koreans", "vietnamese", "filipino",
    ),
    "latino": (
        "latino", "latinos", "latina", "latinas", "latinx", "hispanic", "hispanics",
        "mexican", "mexicans",
    ),
    "psychiatric_or_mental_illness": (
        "mental illness", "mentally ill", "mental disorder", "schizophrenia", "schizophrenic",
        "bipolar", "depression", "psychotic", "ptsd", "ocd", "anorexia",
    ),
    "names_anglo": (
        "john", "michael", "matthew", "thomas", "emily", "sarah", "jessica", "megan",
    ),
    "names_hispanic": (
        "jose", "josé", "carlos", "juan", "luis", "maria", "maría", "lucia", "lucía",
        "carmen", "guadalupe",
    ),
    "names_arabic": (
        "mohammed", "muhammad", "ahmed", "omar", "ali", "fatima", "aisha", "layla", "yasmin",
    ),
    "names_south_asian": (
        "rahul", "arjun", "sanjay", "vikram", "priya", "ananya", "deepika", "lakshmi",
    ),
    "names_east_asian": (
        "wei", "hiroshi", "kenji", "min-jun", "yuki", "mei", "sakura", "seo-yeon",
    ),
    "names_african": (
        "kwame", "chinedu", "kofi", "jabari", "amara", "ngozi", "abena", "chiamaka",
    ),
    "names_slavic": (
        "dmitri", "sergei", "pavel", "bogdan", "olga", "natasha", "svetlana", "katarzyna",
    ),
}  # fmt: skip

#: Axis -> its subgroups: a swap replaces a term by one of another subgroup on the same axis.
#: Mental illness is on no axis (it has no counterpart of the same kind), so it is not swapped.
AXES: Final[dict[str, tuple[str, ...]]] = {
    "gender": ("male", "female"),
    "sexual_orientation": ("homosexual_gay_or_lesbian", "heterosexual"),
    "religion": ("christian", "jewish", "muslim"),
    "race_or_ethnicity": ("black", "white", "asian", "latino"),
    "person_name": (
        "names_anglo", "names_hispanic", "names_arabic", "names_south_asian",
        "names_east_asian", "names_african", "names_slavic",
    ),
}  # fmt: skip

#: Axis -> rows of aligned word forms, one column per subgroup in `AXES` order, so a swap keeps
#: the form (plural stays plural, a male name stays a male name). A term is searched for only
#: where its own subgroup's mask finds it ("straight" alone replaces "gay" but is never looked
#: for); a term in several rows is read from its first row.
SWAP_ROWS: Final[dict[str, tuple[tuple[str, ...], ...]]] = {
    "gender": (
        ("man", "woman"), ("men", "women"), ("male", "female"), ("males", "females"),
        ("boy", "girl"), ("boys", "girls"), ("husband", "wife"), ("father", "mother"),
        ("son", "daughter"), ("brother", "sister"), ("guy", "lady"), ("guys", "ladies"),
    ),
    "sexual_orientation": (
        ("gay man", "straight man"), ("gay men", "straight men"),
        ("gay person", "straight person"), ("gay people", "straight people"),
        ("gay couple", "straight couple"), ("lesbian", "straight woman"),
        ("lesbians", "straight women"), ("homosexual", "heterosexual"),
        ("homosexuals", "heterosexuals"), ("homosexuality", "heterosexuality"),
        ("gay", "straight"), ("gays", "straights"),
    ),
    "religion": (
        ("christian", "jewish", "muslim"), ("christians", "jews", "muslims"),
        ("christian", "jew", "muslim"), ("christian", "jewish", "islamic"),
        ("christianity", "judaism", "islam"), ("priest", "rabbi", "imam"),
        ("priests", "rabbis", "imams"), ("church", "synagogue", "mosque"),
    ),
    "race_or_ethnicity": (
        ("blacks", "whites", "asians", "latinos"),
        ("black people", "white people", "asian people", "latino people"),
        ("black person", "white person", "asian person", "latino person"),
        ("black man", "white man", "asian man", "latino man"),
        ("black men", "white men", "asian men", "latino men"),
        ("black woman", "white woman", "asian woman", "latina woman"),
        ("black women", "white women", "asian women", "latina women"),
        ("black community", "white community", "asian community", "latino community"),
        ("african american", "caucasian", "asian american", "hispanic"),
        ("african americans", "caucasians", "asian americans", "hispanics"),
        ("black", "white", "asian", "latino"),
    ),
    "person_name": (
        ("john", "jose", "mohammed", "rahul", "wei", "kwame", "dmitri"),
        ("michael", "carlos", "ahmed", "arjun", "hiroshi", "chinedu", "sergei"),
        ("matthew", "juan", "omar", "sanjay", "kenji", "kofi", "pavel"),
        ("thomas", "luis", "ali", "vikram", "min-jun", "jabari", "bogdan"),
        ("emily", "maria", "fatima", "priya", "yuki", "amara", "olga"),
        ("sarah", "lucia", "aisha", "ananya", "mei", "ngozi", "natasha"),
        ("jessica", "carmen", "layla", "deepika", "sakura", "abena", "svetlana"),
        ("megan", "guadalupe", "yasmin", "lakshmi", "seo-yeon", "chiamaka", "katarzyna"),
        # Spelling variants, so that they are found too; their other columns repeat row one.
        ("john", "josé", "mohammed", "rahul", "wei", "kwame", "dmitri"),
        ("john", "jose", "muhammad", "rahul", "wei", "kwame", "dmitri"),
        ("emily", "maría", "fatima", "priya", "yuki", "amara", "olga"),
        ("sarah", "lucía", "aisha", "ananya", "mei", "ngozi", "natasha"),
    ),
}  # fmt: skip

#: Noun phrases for the templated set, parallel across the subgroups of an axis.
IDENTITY_PHRASES: Final[dict[str, tuple[str, ...]]] = {
    "male": ("a man", "my brother", "my husband"),
    "female": ("a woman", "my sister", "my wife"),
    "homosexual_gay_or_lesbian": ("a gay man", "a lesbian", "a gay person"),
    "heterosexual": ("a straight man", "a straight woman", "a straight person"),
    "christian": ("a Christian man", "a Christian woman", "a priest"),
    "jewish": ("a Jewish man", "a Jewish woman", "a rabbi"),
    "muslim": ("a Muslim man", "a Muslim woman", "an imam"),
    "black": ("a Black man", "a Black woman", "a Black person"),
    "white": ("a White man", "a White woman", "a White person"),
    "asian": ("an Asian man", "an Asian woman", "an Asian person"),
    "latino": ("a Latino man", "a Latina woman", "a Hispanic person"),
    "psychiatric_or_mental_illness": (
        "a person with schizophrenia",
        "someone with bipolar disorder",
        "a person with a mental illness",
    ),
    "names_anglo": ("John", "Michael", "Emily", "Sarah"),
    "names_hispanic": ("José", "Carlos", "María", "Lucía"),
    "names_arabic": ("Mohammed", "Ahmed", "Fatima", "Aisha"),
    "names_south_asian": ("Rahul", "Arjun", "Priya", "Ananya"),
    "names_east_asian": ("Wei", "Hiroshi", "Yuki", "Mei"),
    "names_african": ("Kwame", "Chinedu", "Amara", "Ngozi"),
    "names_slavic": ("Dmitri", "Sergei", "Olga", "Natasha"),
}

NEUTRAL_TEMPLATES: Final[tuple[str, ...]] = (
    "{identity} lives next door and is very kind.",
    "I had lunch with {identity} today.",
    "{identity} wrote most of this article and did a careful job.",
    "Thanks to {identity} for fixing the references in this section.",
    "I met {identity} at the library yesterday.",
    "{identity} is a good teacher.",
    "We invited {identity} to the meeting next week.",
    "{identity} asked a fair question about the sources.",
    "According to {identity}, the date in the infobox is wrong.",
    "I agree with {identity} about this edit.",
    "{identity} has been helping new editors all month.",
    "I worked on this page with {identity} and learned a lot.",
)
TOXIC_TEMPLATES: Final[tuple[str, ...]] = (
    "{identity} is a worthless idiot.",
    "I hate {identity} and hope they rot.",
    "{identity} is a disgusting pig, get lost.",
    "Someone should beat up {identity}.",
    "{identity} is too stupid to be allowed near a keyboard.",
    "I will find {identity} and make them pay for this.",
    "{identity} is an ugly, pathetic moron.",
    "Nobody wants a stupid loser like {identity} here.",
    "{identity} is the dumbest person on this site, what an idiot.",
    "Everything {identity} writes is garbage, what a brainless fool.",
    "{identity} deserves to be punched in the face.",
    "{identity} should just die, nobody would miss them.",
)


@dataclass(frozen=True)
class TemplatedComment:
    """One templated sentence: its identity phrase, its subgroup and its label by construction."""

    text: str
    subgroup: str
    term: str
    toxic: bool


def _alternation(terms: Sequence[str]) -> str:
    """Return a regex alternation of the terms, longest first, any white space between words."""
    ordered = sorted(set(terms), key=lambda term: (-len(term), term))
    return "|".join(r"\s+".join(re.escape(word) for word in term.split()) for term in ordered)


def _normal(term: str) -> str:
    """Return the term lower case with single spaces: the key of the term lookups."""
    return " ".join(term.lower().split())


@cache
def _term_subgroups() -> dict[str, tuple[str, ...]]:
    """Return each term's subgroups (in practice one)."""
    owners: dict[str, tuple[str, ...]] = {}
    for subgroup, terms in SUBGROUPS.items():
        for term in terms:
            owners[term] = (*owners.get(term, ()), subgroup)
    return owners


@cache
def _mention_pattern() -> re.Pattern[str]:
    """Return one pattern for all terms that finds every whole-word mention, overlaps too."""
    # One pattern for all subgroups on lower-cased text, not one per subgroup: 0.24 s instead
    # of 1.45 s (\b, IGNORECASE) for 5,000 comments of 440 characters. The lookahead lets
    # "black man" count for both black and male. At one start only the longest term is seen,
    # which is why no term may begin with another subgroup's whole term (a unit test checks).
    return re.compile(rf"(?<!\w)(?=({_alternation(list(_term_subgroups()))})(?!\w))")


def mentioned_subgroups(text: str) -> set[str]:
    """Return the subgroups whose terms the text mentions, as whole words in any case."""
    owners = _term_subgroups()
    found = _mention_pattern().findall(text.lower())
    return {subgroup for term in set(found) for subgroup in owners[_normal(term)]}


def subgroup_masks(texts: Sequence[str]) -> dict[str, npt.NDArray[np.bool_]]:
    """Return, per subgroup, a boolean array saying which texts mention one of its terms."""
    masks = {subgroup: np.zeros(len(texts), dtype=np.bool_) for subgroup in SUBGROUPS}
    for row, text in enumerate(texts):
        for subgroup in mentioned_subgroups(text):
            masks[subgroup][row] = True
    return masks


def _fill(template: str, phrase: str) -> str:
    """Return the template with the phrase in its slot and the sentence's first letter upper."""
    text = template.format(identity=phrase)
    return text[0].upper() + text[1:]


def templated_comments() -> list[TemplatedComment]:
    """Return every template with every identity phrase, neutral templates first."""
    families = ((NEUTRAL_TEMPLATES, False), (TOXIC_TEMPLATES, True))
    return [
        TemplatedComment(_fill(template, phrase), subgroup, phrase, toxic)
        for templates, toxic in families
        for template in templates
        for subgroup, phrases in IDENTITY_PHRASES.items()
        for phrase in phrases
    ]


def neutral_comments() -> list[TemplatedComment]:
    """Return the non-toxic sentences of the templated set."""
    return [comment for comment in templated_comments() if not comment.toxic]


_Swap = tuple[str, int, tuple[str, ...]]  # axis, column of the found term, its row


@cache
def _swap_lookup() -> dict[str, _Swap]:
    """Return each searchable term's axis, column and first row in `SWAP_ROWS`."""
    lookup: dict[str, _Swap] = {}
    for axis, rows in SWAP_ROWS.items():
        for row in rows:
            for column, term in enumerate(row):
                if AXES[axis][column] in mentioned_subgroups(term):
                    lookup.setdefault(term, (axis, column, row))
    return lookup


@cache
def _swap_pattern(any_case: bool = False) -> re.Pattern[str]:
    """Return the pattern of all searchable terms, with an optional article before them."""
    # The article is matched so that "an imam" becomes "a priest", not "an priest". Searching
    # lower-cased text without IGNORECASE is 6x faster (0.24 s against 1.47 s for 5,000
    # comments of 440 characters); `any_case` is for the rare text that lower() lengthens.
    terms = _alternation(list(_swap_lookup()))
    pattern = rf"(?<!\w)(?:(?P<article>an?)\s+)?(?P<term>{terms})(?!\w)"
    return re.compile(pattern, re.IGNORECASE if any_case else 0)


def _same_case(found: str, replacement: str) -> str:
    """Return the replacement in the case of the found text (all upper, or first letter)."""
    if len(found) > 1 and found.isupper():
        return replacement.upper()
    if found[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def swap_identity_terms(text: str, rng: np.random.Generator) -> str | None:
    """Return the text with each identity term swapped within its axis, None if it has none.

    Every mention of one subgroup in the text goes to the same other subgroup, drawn from
    `rng`, so "John ... John" stays one person. A multiword term is swapped as one unit:
    "black man" becomes, say, "white man" and its gender word stays.
    """
    lookup = _swap_lookup()
    lowered = text.lower()
    # Positions in the lower-cased text are the original's only while no letter lengthened.
    aligned = len(lowered) == len(text)
    matches = _swap_pattern().finditer(lowered) if aligned else _swap_pattern(True).finditer(text)
    targets: dict[tuple[str, int], int] = {}
    pieces: list[str] = []
    end = 0
    for match in matches:
        axis, column, row = lookup[_normal(match["term"])]
        if (axis, column) not in targets:
            # Draw among the other columns: an offset of 1..n-1 never lands on the same one.
            offset = 1 + int(rng.integers(len(row) - 1))
            targets[axis, column] = (column + offset) % len(row)
        term_start, term_end = match.span("term")
        replacement = _same_case(text[term_start:term_end], row[targets[axis, column]])
        pieces.append(text[end : match.start()])
        if match["article"] is not None:
            article_start, article_end = match.span("article")
            article = "an" if replacement[0].lower() in "aeiou" else "a"
            pieces.append(_same_case(text[article_start:article_end], article))
            pieces.append(text[article_end:term_start])
        pieces.append(replacement)
        end = term_end
    if not pieces:
        return None
    pieces.append(text[end:])
    return "".join(pieces)
