"""Training-data augmentation against identity-term bias and obfuscation.

Each kind adds rows to the training part only (validation and test stay as collected):
- `identity_swap`: counterfactual copies: every training comment that names an identity gets a
  copy with the identity swapped within its axis (`data.identity.swap_identity_terms`), with the
  same labels, so that a term is no longer toxic by association with the comments it came in;
- `identity_neutral`: neutral sentences naming each identity (`TRAINING_TEMPLATES` with the
  identity phrases of `data.identity`), added as non-toxic rows, after Dixon et al. (2018), who
  added non-toxic comments naming identities to balance terms seen mostly in toxic ones; each
  subgroup's as many times as its training comments are more often toxic than the rest, squared
  (`subgroup_copies`: a per-subgroup weight). The templates are not those of the templated
  evaluation set; the phrases are the same ones;
- `masking`: copies of a seeded 10% of the comments with letters masked by `*` ("id**t"), the
  one obfuscation text cleaning cannot undo;
- `obfuscation`: perturbed copies of a seeded 20% of the comments, each under one of
  `data.perturbations` at random.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from toxiguard.data.identity import IDENTITY_PHRASES, subgroup_masks, swap_identity_terms
from toxiguard.data.perturbations import augment
from toxiguard.errors import ToxiguardError

AUGMENTATIONS: Final = ("identity_swap", "identity_neutral", "masking", "obfuscation")
#: Neutral sentences with an identity slot, for training only (none is in the evaluation set).
TRAINING_TEMPLATES: Final = (
    "My neighbour is {identity}.",
    "I am proud to introduce {identity} to the project.",
    "{identity} moved to our town last year.",
    "The article quotes {identity} in the second paragraph.",
    "{identity} added a photo of the old bridge.",
    "Please ask {identity} before you change the table.",
    "Our new team leader is {identity}.",
    "{identity} plays the piano in a local band.",
    "The source was written by {identity}.",
    "Yesterday {identity} fixed a typo in the lead.",
    "{identity} and I disagree about the layout, that is fine.",
    "I think {identity} made a good point on the talk page.",
    "{identity} translated this section from German.",
    "The photo shows {identity} at the opening of the museum.",
    "My doctor is {identity}.",
    "{identity} welcomed me when I started editing.",
)
OBFUSCATION_SHARE: Final = 0.2
#: Measured (benchmarks/audit.py, benchmark split, with identity_neutral; nbsvm / tfidf-lr):
#: masked copies of 10% raise ROC-AUC under masks 0.9305 -> 0.9568 / 0.9474 -> 0.9572, with
#: validation ROC-AUC 0.9724 -> 0.9733 / 0.9711 -> 0.9715 (test 0.9762 -> 0.9760 / 0.9742 ->
#: 0.9740); copies of 20% under every perturbation (`obfuscation`) reached 0.9504 / 0.9519 for
#: -0.0006 / -0.0004 validation.
MASKING_SHARE: Final = 0.1
#: The neutral sentences' copies, per subgroup: NEUTRAL_COPIES x (toxic share of the subgroup's
#: training comments / toxic share of all)^2, between 1 and MAX_COPIES. Measured
#: (benchmarks/audit.py, benchmark split; validation ROC-AUC and neutral gap of tfidf-lr / nbsvm
#: / tfidf-svm), against none (0.9713 / 0.9731 / 0.9723; gap 0.542 / 0.579 / 0.568):
#: - every subgroup once: -0.0002 / -0.0003 / -0.0001; gap 0.368 / 0.450 / 0.323;
#: - every subgroup 4 times: -0.0002 / -0.0011 / -0.0002; gap 0.367 / 0.329 / 0.238;
#: - every subgroup 8 times: -0.0006 / -0.0015 / -0.0005; gap 0.247 / 0.213 / 0.214;
#: - weighted (gay 8, male, female, latino 3, jewish, black, white 2, the rest 1; 1,792 rows):
#:   -0.0002 / -0.0007 / -0.0002; gap 0.220 / 0.104 / 0.218, every term below the threshold.
#: Counterfactual swaps (identity_swap) made it worse (nbsvm gap 0.550, final bias -0.002): off.
NEUTRAL_COPIES: Final = 1
MAX_COPIES: Final = 16
MIN_MENTIONS: Final = 20
#: The neutral sentences never outnumber this share of the training comments (a seeded sample of
#: them beyond): on the shared data they are 5.4% (1,792 of 33,290); on a 600-row demo corpus
#: all 1,792 would be three times the data.
MAX_NEUTRAL_SHARE: Final = 0.1


def check_augmentations(kinds: Sequence[str]) -> tuple[str, ...]:
    """Return the kinds in application order, or raise ToxiguardError naming an unknown one."""
    unknown = [kind for kind in kinds if kind not in AUGMENTATIONS]
    if unknown:
        raise ToxiguardError(
            f"unknown augmentation(s) {unknown} (known: {', '.join(AUGMENTATIONS)})"
        )
    return tuple(kind for kind in AUGMENTATIONS if kind in kinds)


def identity_swaps(
    texts: Sequence[str], labels: npt.ArrayLike, seed: int
) -> tuple[list[str], npt.NDArray[np.int8]]:
    """Return the texts and labels followed by one identity-swapped copy of each text that
    names an identity, with its row's labels."""
    rng = np.random.default_rng(seed)
    truth = np.asarray(labels, dtype=np.int8)
    copies, rows = [], []
    for row, text in enumerate(texts):
        swapped = swap_identity_terms(text, rng)
        if swapped is not None and swapped != text:
            copies.append(swapped)
            rows.append(row)
    return [*texts, *copies], np.concatenate([truth, truth[rows]])


def identity_neutral_sentences(subgroups: Sequence[str] | None = None) -> list[str]:
    """Return every training template filled with every identity phrase (of `subgroups`, default
    all), first letter upper."""
    chosen = IDENTITY_PHRASES if subgroups is None else {s: IDENTITY_PHRASES[s] for s in subgroups}
    sentences = []
    for template in TRAINING_TEMPLATES:
        for phrases in chosen.values():
            for phrase in phrases:
                text = template.format(identity=phrase)
                sentences.append(text[0].upper() + text[1:])
    return sentences


def subgroup_copies(
    texts: Sequence[str], toxic: npt.ArrayLike, base_copies: int = NEUTRAL_COPIES
) -> dict[str, int]:
    """Return how many times each subgroup's neutral sentences are added: `base_copies` times
    the square of how much more often its training comments are toxic than all comments (at
    least 1, at most `MAX_COPIES`; 1 for a subgroup named in fewer than `MIN_MENTIONS`)."""
    truth = np.asarray(toxic, dtype=np.float64)
    overall = float(truth.mean()) if len(truth) else 0.0
    copies = {}
    for subgroup, mask in subgroup_masks(texts).items():
        ratio = float(truth[mask].mean()) / overall if overall and mask.sum() else 0.0
        weight = base_copies * ratio**2 if mask.sum() >= MIN_MENTIONS else base_copies
        copies[subgroup] = int(np.clip(round(weight), 1, MAX_COPIES))
    return copies


def identity_neutral_rows(texts: Sequence[str], toxic: npt.ArrayLike, seed: int) -> list[str]:
    """Return the neutral identity sentences to add to these training comments, each subgroup's
    as many times as `subgroup_copies` says, at most `MAX_NEUTRAL_SHARE` of them (seeded)."""
    rows = [
        sentence
        for subgroup, times in subgroup_copies(texts, toxic).items()
        for sentence in identity_neutral_sentences([subgroup]) * times
    ]
    most = int(MAX_NEUTRAL_SHARE * len(texts))
    if len(rows) <= most:
        return rows
    kept = np.sort(np.random.default_rng(seed).choice(len(rows), size=most, replace=False))
    return [rows[int(i)] for i in kept]


def augment_training(
    texts: Sequence[str],
    labels: npt.ArrayLike,
    kinds: Sequence[str],
    seed: int,
) -> tuple[list[str], npt.NDArray[np.int8]]:
    """Return the training texts and labels with each kind of augmentation added in turn."""
    augmented, truth = list(texts), np.asarray(labels, dtype=np.int8)
    for kind in check_augmentations(kinds):
        if kind == "identity_swap":
            augmented, truth = identity_swaps(augmented, truth, seed)
        elif kind == "masking":
            augmented, truth = augment(augmented, truth, MASKING_SHARE, seed, names=["masked"])
        elif kind == "identity_neutral":
            neutral = identity_neutral_rows(augmented, truth[:, 0], seed)
            augmented = [*augmented, *neutral]
            truth = np.concatenate([truth, np.zeros((len(neutral), truth.shape[1]), np.int8)])
        else:
            augmented, truth = augment(augmented, truth, OBFUSCATION_SHARE, seed)
    return augmented, truth
