"""The monitoring reference: what a model saw at training time, stored inside its artifacts.

For a few thousand validation comments it holds the text statistics that the prediction log
records (length, words, share of capitals and of non-letters), the share of words outside the
training vocabulary, the model's six scores and flags, and the comments themselves (for text
content drift). The vocabulary travels with it. Training writes it into the saved model's
directory (`MonitoringReference.save`); the monitoring job reads it back for the version that
served the traffic it checks (`reference_for_version`).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

from toxiguard.errors import ModelNotFoundError
from toxiguard.features.statistics import text_statistics
from toxiguard.labels import LABELS
from toxiguard.monitoring.store import FLAG_COLUMNS, SCORE_COLUMNS, STAT_COLUMNS

if TYPE_CHECKING:
    from toxiguard.models.base import ToxicityModel
    from toxiguard.settings import Settings

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
    frame = statistics.loc[:, list(STAT_COLUMNS)].reset_index(drop=True).astype(np.float64)
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
    model: ToxicityModel,
    texts: Sequence[str],
    training_texts: Iterable[str],
    *,
    rows: int = 3000,
    vocabulary_size: int = 50_000,
    seed: int = 42,
) -> MonitoringReference:
    """Return the reference of a fitted model (thresholds tuned) on up to `rows` of `texts`.

    `texts` are held-out comments (the validation split); `training_texts` give the vocabulary.
    """
    texts = [str(text) for text in texts]
    if len(texts) > rows:
        chosen = np.sort(np.random.default_rng(seed).choice(len(texts), rows, replace=False))
        texts = [texts[i] for i in chosen]
    vocabulary = build_vocabulary(training_texts, vocabulary_size)
    probabilities = np.asarray(model.predict_proba(texts), dtype=np.float64)
    frame = monitoring_frame(
        texts, text_statistics(texts), probabilities, np.asarray(model.thresholds), vocabulary
    )
    logger.info(
        "monitoring reference: %d comments, vocabulary of %d words", len(frame), len(vocabulary)
    )
    return MonitoringReference(frame=frame, vocabulary=vocabulary)


def reference_for_settings(
    model: ToxicityModel, texts: Sequence[str], training_texts: Iterable[str], settings: Settings
) -> MonitoringReference:
    """Return `build_reference` with the sizes and seed of the settings."""
    return build_reference(
        model,
        texts,
        training_texts,
        rows=settings.reference_rows,
        vocabulary_size=settings.vocabulary_size,
        seed=settings.seed,
    )


def reference_for_version(settings: Settings, version: int) -> MonitoringReference:
    """Return the reference stored with a registered version (downloaded once, then cached).

    The cache is keyed by the version's run, so a registry that was reset cannot serve a stale
    reference.
    """
    import mlflow

    from toxiguard.errors import RegistryError
    from toxiguard.registry.client import configure_mlflow

    name = settings.registered_model_name
    uri = f"models:/{name}/{version}"
    client = configure_mlflow(settings)
    try:
        run_id = client.get_model_version(name, str(version)).run_id or "none"
        cache = settings.monitoring_dir / "references" / f"{name}-v{version}-{run_id[:16]}"
        if (cache / REFERENCE_FILE).is_file():
            return MonitoringReference.load(cache)
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(cache.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        # Only the reference folder: the rest of a model (its weights) can be large.
        downloaded = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{uri}/artifacts/model/{REFERENCE_DIR}", dst_path=str(partial)
        )
    except mlflow.exceptions.MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ModelNotFoundError(
                f"{uri}: no monitoring reference ({error.message}); models trained before "
                "monitoring existed have none: retrain"
            ) from error
        raise RegistryError(f"could not read the reference of {uri}: {error}") from error
    reference = MonitoringReference.load(downloaded)
    shutil.rmtree(cache, ignore_errors=True)
    Path(downloaded).rename(cache)
    shutil.rmtree(partial, ignore_errors=True)
    return reference


__all__ = [
    "FLAG_COLUMNS",
    "OOV_COLUMN",
    "SCORE_COLUMNS",
    "STAT_COLUMNS",
    "MonitoringReference",
    "build_reference",
    "build_vocabulary",
    "monitoring_frame",
    "oov_shares",
    "reference_for_settings",
    "reference_for_version",
    "words_of",
]
