"""A small synthetic corpus in Kaggle's train format, labelled by construction (a demo, not data).

Texts are filled-in templates: talk-page style benign sentences, and toxic ones built from
fragments per label (insults, mild "[expletive]"-style obscenity, threats, "[slur]" placeholders
for identity hate). No real slurs and no real comments are used. Some benign sentences use the
same trigger words ("hurt", "kill", "stupid") and a few labels are flipped, so a model cannot
reach a perfect score by keyword matching alone.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from toxiguard.errors import ToxiguardError
from toxiguard.labels import ID_COLUMN, LABELS, TEXT_COLUMN

TOXIC_SHARE = 0.20
# share of all rows for each sub-label; every toxic row has toxic=1 as well
SUB_LABEL_SHARE = {
    "obscene": 0.10,
    "insult": 0.10,
    "threat": 0.045,
    "identity_hate": 0.045,
    "severe_toxic": 0.045,
}
HARD_NEGATIVE_SHARE = 0.12  # benign rows using words that also appear in toxic templates
# Benign rows with a second sentence: without them 3,000 rows held 1,295 distinct texts, and the
# promotion gate found only 103 test comments a champion had not seen (it needs 200).
TWO_SENTENCE_SHARE = 0.6
LABEL_NOISE = 0.01  # chance per row and label that the label is flipped
# Written beside a demo corpus file: what marks a model trained on it as a demo in the registry.
MARKER_SUFFIX = ".demo.json"

NAMES = ["Alice", "Bob", "Carol", "Dmitri", "Esther", "Farid", "Grace", "Hiro", "Ines", "Jonas"]
ARTICLES = [
    "the River Thames",
    "Photosynthesis",
    "the 1998 World Cup",
    "Ada Lovelace",
    "the Roman Empire",
    "Mount Kilimanjaro",
    "jazz fusion",
    "the printing press",
    "Marie Curie",
    "the Great Barrier Reef",
]
TOPICS = ["history", "early life", "references", "infobox", "lead", "discography", "geography"]
BENIGN = [
    "Thanks for fixing the {topic} section of {article}, {name}.",
    "I reverted the edit to {article} because the source was not reliable.",
    "Please add a citation for the claim in the {topic} section.",
    "{name}, could you take a look at the {topic} of {article} when you have time?",
    "I think the {topic} section of {article} is too long; shall we split it?",
    "Welcome to Wikipedia, {name}! Feel free to ask me if you have questions.",
    "The image in the {topic} section has no license information.",
    "Good catch, {name}. I merged the duplicate paragraphs in {article}.",
    "Is there a better source for the dates in {article}?",
    "I moved the discussion about {article} to the archive page.",
    "Per the talk page consensus, the {topic} section stays as it is.",
    "Could someone check the spelling in the {topic} of {article}?",
]
HARD_NEGATIVE = [
    "Removing the {topic} section would hurt the article on {article}.",
    "Let's kill the redirect from {article}; it points to the wrong page.",
    "It was a stupid mistake of mine to delete the {topic} section, sorry {name}.",
    "The article on {article} describes how the war hurt the economy.",
    "{name}, the bot keeps breaking the {topic}; I will block the bot, not you.",
    "I hate to say it, but the {topic} of {article} needs a full rewrite.",
]
INSULT_NOUNS = ["idiot", "moron", "clown", "fool", "buffoon", "imbecile", "loser"]
INSULT_ADJECTIVES = ["stupid", "pathetic", "clueless", "brainless", "worthless"]
EXPLETIVES = ["[expletive]", "freaking", "damn", "crap", "[bleep]"]
GROUPS = ["[group A]", "[group B]", "[group C]", "[group D]"]
FRAGMENTS = {
    "toxic": [
        "Shut up and stop editing {article}.",
        "Nobody cares about your opinion on {article}.",
        "Your edits to the {topic} are garbage, get lost.",
        "Stop ruining {article} with your nonsense.",
    ],
    "insult": [
        "{name}, you are a complete {noun}.",
        "Only a {adjective} {noun} would write this.",
        "You {adjective} {noun}, learn to read.",
        "What a {noun} you are, {name}.",
    ],
    "obscene": [
        "What the {expletive} is this edit?",
        "This {expletive} article is a {expletive} mess.",
        "Take your {expletive} edits somewhere else.",
    ],
    "threat": [
        "I will hurt you if you revert this again.",
        "Watch your back, {name}, I know where you live.",
        "You will regret this, I will find you.",
        "Touch {article} again and I will make you pay.",
    ],
    "identity_hate": [
        "All {group} people should be banned from this site.",
        "[slur] like you ruin everything, {name}.",
        "Of course a {group} [slur] wrote this.",
    ],
    "severe_toxic": [
        "YOU ARE A {EXPLETIVE} {NOUN} {NOUN} {NOUN}!!!",
        "GO {EXPLETIVE} YOURSELF YOU {ADJECTIVE} {NOUN}!!!",
    ],
}


def _fill(template: str, rng: np.random.Generator) -> str:
    """Return the template with each placeholder filled by a random word."""
    words = {
        "name": NAMES,
        "article": ARTICLES,
        "topic": TOPICS,
        "noun": INSULT_NOUNS,
        "adjective": INSULT_ADJECTIVES,
        "expletive": EXPLETIVES,
        "group": GROUPS,
    }
    values = {key: str(rng.choice(choices)) for key, choices in words.items()}
    values |= {key.upper(): value.upper() for key, value in values.items()}
    return template.format(**values)


def _pick(rng: np.random.Generator, n_rows: int, share: float, among: np.ndarray) -> np.ndarray:
    """Return a mask of exactly round(share * n_rows) rows chosen from the rows in `among`."""
    chosen = rng.choice(among, size=min(len(among), round(share * n_rows)), replace=False)
    mask = np.zeros(n_rows, dtype=bool)
    mask[chosen] = True
    return mask


def make_demo_corpus(n_rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Return a synthetic, templated corpus in Kaggle's train format, deterministic by seed."""
    if n_rows < 100:
        raise ToxiguardError(f"the demo corpus needs at least 100 rows, got {n_rows}")
    rng = np.random.default_rng(seed)
    toxic = _pick(rng, n_rows, TOXIC_SHARE, np.arange(n_rows))
    labels = {"toxic": toxic}
    for label, share in SUB_LABEL_SHARE.items():
        labels[label] = _pick(rng, n_rows, share, np.flatnonzero(toxic))
    # a severe row is also obscene and insulting, as in the real data
    labels["obscene"] |= labels["severe_toxic"]
    labels["insult"] |= labels["severe_toxic"]
    hard_negative = _pick(rng, n_rows, HARD_NEGATIVE_SHARE, np.flatnonzero(~toxic))

    texts = []
    for row in range(n_rows):
        if not toxic[row]:
            pool = HARD_NEGATIVE if hard_negative[row] else BENIGN
            sentences = [_fill(str(rng.choice(pool)), rng)]
            if rng.random() < TWO_SENTENCE_SHARE:
                sentences.append(_fill(str(rng.choice(BENIGN)), rng))
            texts.append(" ".join(sentences))
            continue
        active = [label for label in FRAGMENTS if label != "toxic" and labels[label][row]]
        parts = [_fill(str(rng.choice(FRAGMENTS[label])), rng) for label in active]
        if not active or rng.random() < 0.3:
            parts.append(_fill(str(rng.choice(FRAGMENTS["toxic"])), rng))
        parts = [parts[i] for i in rng.permutation(len(parts))]
        if rng.random() < 0.3:  # sometimes next to an ordinary talk-page sentence
            benign = _fill(str(rng.choice(BENIGN)), rng)
            parts = [benign, *parts] if rng.random() < 0.5 else [*parts, benign]
        texts.append(" ".join(parts))

    frame = pd.DataFrame({ID_COLUMN: _unique_ids(rng, n_rows), TEXT_COLUMN: texts})
    for label in LABELS:
        flips = rng.random(n_rows) < LABEL_NOISE
        frame[label] = (labels[label] ^ flips).astype(np.int8)
    return frame


def _unique_ids(rng: np.random.Generator, n_rows: int) -> list[str]:
    """Return n distinct 16-hex ids in the style of Kaggle's."""
    ids: dict[str, None] = {}
    while len(ids) < n_rows:
        ids[rng.bytes(8).hex()] = None
    return list(ids)


def write_demo_corpus(path: str | Path, n_rows: int = 3000, seed: int = 0) -> Path:
    """Return `path` after writing the demo corpus there as Kaggle-style CSV (.csv or .csv.gz)."""
    target = Path(path)
    if not target.name.lower().endswith((".csv", ".csv.gz")):
        raise ToxiguardError(f"{target}: the demo corpus is written as .csv or .csv.gz")
    target.parent.mkdir(parents=True, exist_ok=True)
    compression = {"method": "gzip", "mtime": 0} if target.name.endswith(".gz") else None
    make_demo_corpus(n_rows, seed).to_csv(
        target, index=False, quoting=csv.QUOTE_NONNUMERIC, compression=compression
    )
    marker = {"rows": n_rows, "seed": seed, "sha256": _file_sha256(target)}
    _marker_path(target).write_text(json.dumps(marker, indent=2))
    return target


def is_demo_corpus(path: str | Path) -> bool:
    """Return True when `path` is a demo corpus file as `write_demo_corpus` wrote it (its marker
    beside it, and the file unchanged since)."""
    target = Path(path)
    try:
        marker = json.loads(_marker_path(target).read_text())
        return bool(marker.get("sha256") == _file_sha256(target))
    except (OSError, ValueError, AttributeError):
        return False


def _marker_path(path: Path) -> Path:
    """Return where the demo marker of a corpus file lives."""
    return path.with_name(path.name + MARKER_SUFFIX)


def _file_sha256(path: Path) -> str:
    """Return the sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
