"""Behavioural tests of a trained baseline (tfidf-lr on real shared data): direction,
invariance and minimum functionality, in the sense of Ribeiro et al. (2020), "CheckList"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from toxiguard.data.validation import label_matrix
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.models import ToxicityModel, create_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRAIN_ROWS = 12_000
NEUTRAL = [
    "I moved the paragraph about the bridge to the history section.",
    "Could you add a source for the population figure?",
    "Thanks for the quick reply, I will check the reference tonight.",
    "The infobox still lists the old mayor of the town.",
    "I reverted the edit because the date was wrong.",
    "Please discuss larger changes here before making them.",
]
INSULT = " You are a stupid idiot."
NAMED = [
    "{name} added the census numbers to the article yesterday.",
    "I agree with {name} that the lead section is too long.",
    "{name}, please stop reverting my edits without an explanation.",
    "As {name} said on the talk page, the map needs a caption.",
]
NAMES = ("John", "Maria", "Anna", "David", "Laura", "Mohammed", "Wei", "Priya", "Jamal", "Olga")
# How far a name swap may move a probability (max minus min over the names, per label): 0.15,
# under a fifth of what an insult adds to such sentences (about 0.9 measured; the direction test
# requires more than 0.5 on average). A name may matter a little, an insult must matter a lot.
# Measured when this was written: 0.11 at most (toxic, "Mohammed" against "Maria" in the "stop
# reverting" sentence; a bias learned from the data), 0.05 in the other sentences.
NAME_TOLERANCE = 0.15
CLEAN = [
    "Thank you for fixing the citation formatting.",
    "I have added two references from the local newspaper.",
    "The article looks much better now, nice work.",
    "Which source did you use for the election results?",
]
TOXIC = [
    "You are a pathetic moron and everyone hates you.",
    "Shut up, you stupid idiot.",
    "What a fucking useless piece of shit you are.",
    "Go to hell, you dumb bastard.",
]


@pytest.fixture(scope="module")
def model(shared_train: pd.DataFrame) -> ToxicityModel:
    """Return tfidf-lr (default params) fitted on a seeded 12,000-row sample of the shared data."""
    sample = shared_train.sample(n=TRAIN_ROWS, random_state=11)
    texts = sample[TEXT_COLUMN].astype(str).tolist()
    return create_model("tfidf-lr").fit(texts, label_matrix(sample))


def column(label: str) -> int:
    """Return the position of a label in the probability matrix."""
    return LABELS.index(label)


def test_adding_an_insult_raises_insult_and_toxic(model: ToxicityModel) -> None:
    before = model.predict_proba(NEUTRAL)
    after = model.predict_proba([text + INSULT for text in NEUTRAL])
    for label in ("insult", "toxic"):
        j = column(label)
        assert (after[:, j] > before[:, j]).all(), (label, before[:, j], after[:, j])
        assert (after[:, j] - before[:, j]).mean() > 0.5, (label, before[:, j], after[:, j])


def test_changing_a_name_barely_changes_the_scores(model: ToxicityModel) -> None:
    for template in NAMED:
        proba = model.predict_proba([template.format(name=name) for name in NAMES])
        spread = proba.max(axis=0) - proba.min(axis=0)
        assert spread.max() < NAME_TOLERANCE, (template, dict(zip(LABELS, spread, strict=True)))


def test_obvious_toxic_comments_rank_above_obvious_clean_ones(model: ToxicityModel) -> None:
    clean = model.predict_proba(CLEAN)[:, column("toxic")]
    toxic = model.predict_proba(TOXIC)[:, column("toxic")]
    assert toxic.min() > clean.max(), (clean, toxic)
    assert clean.max() < 0.5 < toxic.min()


@pytest.mark.parametrize(
    ("label", "text"),
    [
        ("threat", "I will find you and kill you."),
        ("obscene", "This is fucking bullshit."),
        ("insult", "You are a worthless idiot."),
    ],
)
def test_each_kind_of_harm_is_recognised(model: ToxicityModel, label: str, text: str) -> None:
    clean = model.predict_proba(CLEAN)[:, column(label)]
    score = float(model.predict_proba([text])[0, column(label)])
    assert score > clean.max(), (label, score, clean)
    # ...by a clear margin over the clean comments' mean, not just by a hair
    lift = model.predict_proba([text])[0] - model.predict_proba(CLEAN).mean(axis=0)
    assert lift[column(label)] > 0.1, dict(zip(LABELS, np.round(lift, 3), strict=True))
