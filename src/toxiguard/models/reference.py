"""The monitoring reference: what a model saw at training time, saved inside its package.

For a few thousand validation comments it holds the text statistics that the prediction log
records (length, words, share of capitals and of non-letters), the share of words outside the
training vocabulary, the model's six scores and flags, and the comments themselves (for text
content drift). The vocabulary travels with it. Training builds it (`build_reference`) and the
model package saves it; monitoring reads it back for the version that served the traffic it
checks (`toxiguard.monitoring.reference.reference_for_version`).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from toxiguard.errors import ModelNotFoundError
from toxiguard.features.statistics import STATISTICS_COLUMNS, text_statistics
from toxiguard.labels import FLAG_COLUMNS, LABELS, SCORE_COLUMNS

logger = logging.getLogger(__name__)

#: Folder inside a saved model's directory (the pyfunc artifact "model") holding the reference.
REFERENCE_DIR: Final = "monitoring"
REFERENCE_FILE: Final = "reference.parquet"
VOCABULARY_FILE: Final = "vocabulary.txt"
META_FILE: Final = "reference.json"

OOV_COLUMN: Final = "oov_share"
TEXT_COLUMN: Final = "text"

# Words are runs of letters (any script), compared in lower case.
_WORD = re.compile(r"[^\W\d_]+")


def words_of(text: str) -> list[str]:
    """Return the lower-cased letter runs of a text: the words of the vocabulary."""
    return _WORD.findall(text.lower())


def build_vocabulary(texts: Iterable[str], size: int, min_count: int = 2) -> frozenset[str]:
    """Return the `size` most frequent words of the texts that occur at least `min_count` times."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(words_of(str(text)))
    common = [word for word, count in counts.most_common(size) if count >= min_count]
    return frozenset(common)


def oov_shares(texts: Sequence[str], vocabulary: frozenset[str]) -> np.ndarray:
    """Return, per text, the share of its words missing from the vocabulary (0 with no words)."""
    shares = np.zeros(len(texts), dtype=np.float64)
    for index, text in enumerate(texts):
        words = words_of(str(text))
        if words:
            shares[index] = sum(word not in vocabulary for word in words) / len(words)
    return shares


def monitoring_frame(
    texts: Sequence[str] | None,
    statistics: pd.DataFrame,
    probabilities: np.ndarray,
    thresholds: np.ndarray,
    vocabulary: frozenset[str] | None,
) -> pd.DataFrame:
    """Return the monitored columns: statistics, OOV share (with texts), scores, flags, text."""
    frame = statistics.loc[:, list(STATISTICS_COLUMNS)].reset_index(drop=True).astype(np.float64)
    if texts is not None and vocabulary is not None:
        frame[OOV_COLUMN] = oov_shares(texts, vocabulary)
    for index, column in enumerate(SCORE_COLUMNS):
        frame[column] = probabilities[:, index].astype(np.float64)
    for index, column in enumerate(FLAG_COLUMNS):
        frame[column] = probabilities[:, index] >= thresholds[index]
    if texts is not None:
        frame[TEXT_COLUMN] = [str(text) for text in texts]
    return frame


@dataclass(frozen=True)
class MonitoringReference:
    """A model's reference sample for monitoring, and the training vocabulary it was measured by."""

    frame: pd.DataFrame
    vocabulary: frozenset[str]

    def __len__(self) -> int:
        """Return the number of reference rows."""
        return len(self.frame)

    def flagged_rates(self) -> dict[str, float]:
        """Return the share of reference rows flagged, per label."""
        return {
            label: float(self.frame[column].mean())
            for label, column in zip(LABELS, FLAG_COLUMNS, strict=True)
        }

    def save(self, directory: str | Path) -> Path:
        """Write the reference into `<directory>/monitoring/`; return that folder.

        `directory` is a saved model's folder, so that the reference travels in its artifacts.
        """
        folder = Path(directory) / REFERENCE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self.frame.to_parquet(folder / REFERENCE_FILE, index=False)
        (folder / VOCABULARY_FILE).write_text("\n".join(sorted(self.vocabulary)), encoding="utf-8")
        meta = {"rows": len(self.frame), "vocabulary": len(self.vocabulary), "labels": LABELS}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, directory: str | Path) -> MonitoringReference:
        """Read a reference from a saved model's folder (or the `monitoring/` folder itself)."""
        folder = Path(directory)
        if not (folder / REFERENCE_FILE).is_file():
            folder = folder / REFERENCE_DIR
        path = folder / REFERENCE_FILE
        if not path.is_file():
            raise ModelNotFoundError(
                f"{directory}: no monitoring reference ({REFERENCE_DIR}/{REFERENCE_FILE} missing); "
                "models trained before monitoring existed have none: retrain"
            )
        frame = pd.read_parquet(path)
        words = (folder / VOCABULARY_FILE).read_text(encoding="utf-8").split("\n")
        return cls(frame=frame, vocabulary=frozenset(word for word in words if word))


def build_reference(
    texts: Sequence[str],
    probabilities: npt.ArrayLike,
    thresholds: npt.ArrayLike,
    training_texts: Iterable[str],
    *,
    rows: int = 3000,
    vocabulary_size: int = 50_000,
    seed: int = 42,
) -> MonitoringReference:
    """Return the reference of up to `rows` of `texts`, scored `probabilities` (n, 6).

    `texts` are held-out comments (the validation split) and `probabilities` the fitted model's
    scores of them; `thresholds` are its tuned per-label thresholds; `training_texts` give the
    vocabulary.
    """
    texts = [str(text) for text in texts]
    scores = np.asarray(probabilities, dtype=np.float64)
    if scores.shape != (len(texts), len(LABELS)):
        raise ValueError(f"probabilities must be ({len(texts)}, {len(LABELS)}), got {scores.shape}")
    if len(texts) > rows:
        chosen = np.sort(np.random.default_rng(seed).choice(len(texts), rows, replace=False))
        texts, scores = [texts[i] for i in chosen], scores[chosen]
    vocabulary = build_vocabulary(training_texts, vocabulary_size)
    frame = monitoring_frame(
        texts, text_statistics(texts), scores, np.asarray(thresholds, dtype=np.float64), vocabulary
    )
    logger.info(
        "monitoring reference: %d comments, vocabulary of %d words", len(frame), len(vocabulary)
    )
    return MonitoringReference(frame=frame, vocabulary=vocabulary)
