"""Training-data augmentation against identity-term bias and obfuscation.

Each kind adds rows to the training part only (validation and test stay as collected):
- `identity_swap`: counterfactual copies: every training comment that names an identity gets a
  copy with the identity swapped within its axis (`data.identity.swap_identity_terms`), with the
  same labels, so that a term is no longer toxic by association with the comments it came in;
- `identity_neutral`: neutral sentences naming each identity (`TRAINING_TEMPLATES` with the
  identity phrases of `data.identity`), added as non-toxic rows, after Dixon et al. (2018), who
  added non-toxic comments naming identities to balance terms seen mostly in toxic ones. The
  templates are not those of the templated evaluation set; the phrases are the same ones;
- `obfuscation`: perturbed copies of a seeded 20% of the comments (`data.perturbations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from toxiguard.data.identity import IDENTITY_PHRASES, swap_identity_terms
from toxiguard.data.perturbations import augment
from toxiguard.errors import ToxiguardError

AUGMENTATIONS: Final = ("identity_swap", "identity_neutral", "obfuscation")
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
#: How many times the neutral identity sentences are added. Measured (benchmarks/audit.py, the
#: benchmark split, validation ROC-AUC tfidf-lr / nbsvm / tfidf-svm, against none): 1 copy
#: -0.0002 / -0.0003 / -0.0001, 2 copies -0.0003 / -0.0005 / -0.0001, 4 copies -0.0002 / -0.0011
#: / -0.0002, 8 copies -0.0006 / -0.0015 / -0.0005; the neutral gap narrows with each (nbsvm
#: 0.579 -> 0.450, 0.408, 0.329, 0.213). One copy costs no more than the noise.
NEUTRAL_COPIES: Final = 1


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


def identity_neutral_sentences() -> list[str]:
    """Return every training template filled with every identity phrase, first letter upper."""
    sentences = []
    for template in TRAINING_TEMPLATES:
        for phrases in IDENTITY_PHRASES.values():
            for phrase in phrases:
                text = template.format(identity=phrase)
                sentences.append(text[0].upper() + text[1:])
    return sentences


def augment_training(
    texts: Sequence[str],
    labels: npt.ArrayLike,
    kinds: Sequence[str],
    seed: int,
    neutral_copies: int = NEUTRAL_COPIES,
) -> tuple[list[str], npt.NDArray[np.int8]]:
    """Return the training texts and labels with each kind of augmentation added in turn
    (`identity_neutral`: the neutral sentences `neutral_copies` times)."""
    augmented, truth = list(texts), np.asarray(labels, dtype=np.int8)
    for kind in check_augmentations(kinds):
        if kind == "identity_swap":
            augmented, truth = identity_swaps(augmented, truth, seed)
        elif kind == "identity_neutral":
            neutral = identity_neutral_sentences() * neutral_copies
            augmented = [*augmented, *neutral]
            truth = np.concatenate([truth, np.zeros((len(neutral), truth.shape[1]), np.int8)])
        else:
            augmented, truth = augment(augmented, truth, OBFUSCATION_SHARE, seed)
    return augmented, truth
