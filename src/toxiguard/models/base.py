"""The one small interface every model family offers, and how a saved model is found again."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from toxiguard.errors import ModelNotFoundError
from toxiguard.labels import LABELS

FloatArray = npt.NDArray[np.float64]
LabelArray = npt.NDArray[np.integer[Any]]
META_FILE = "toxiguard_model.json"
SEEN_TEXTS_FILE = "seen_texts.npy"


class ToxicityModel(ABC):
    """A multi-label classifier: `fit(texts, labels)`, `predict_proba(texts) -> (n, 6)`, save, load.

    Subclasses keep all their state on the instance (scikit-learn style) and write it all
    into one directory with `save_state`, so that a saved model needs no other file.
    """

    family: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = params
        self.labels: tuple[str, ...] = LABELS
        # Per-label decision thresholds; training tunes them on the validation split.
        self.thresholds: FloatArray = np.full(len(LABELS), 0.5)
        # Monitoring reference (toxiguard.monitoring.reference.MonitoringReference), set by
        # training and saved with the model, so that it travels in the registered artifacts.
        self.reference: Any = None
        # Hashes of the comments the model was fitted and tuned on (`data.text_hashes`), set by
        # training and saved with the model, so that the promotion gate can compare a later
        # model with this one on test comments neither has seen.
        self.seen_texts: npt.NDArray[np.uint64] | None = None

    @abstractmethod
    def fit(
        self,
        texts: Sequence[str],
        labels: LabelArray,
        *,
        validation: tuple[Sequence[str], LabelArray] | None = None,
    ) -> Self:
        """Fit on texts and an (n, 6) 0/1 label matrix; return self."""

    @abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """Return an (n, 6) array of probabilities in label order."""

    def predict_flags(self, texts: Sequence[str]) -> npt.NDArray[np.bool_]:
        """Return an (n, 6) boolean array: probability at or above each label's threshold."""
        return self.predict_proba(texts) >= self.thresholds

    def diagnostics(self) -> dict[str, float]:
        """Return numbers about how the model was built, logged as metrics with its run."""
        return {}

    @abstractmethod
    def save_state(self, directory: Path) -> None:
        """Write the fitted state (weights, vocabulary, ...) into an existing directory."""

    @abstractmethod
    def load_state(self, directory: Path) -> None:
        """Read the fitted state written by `save_state`."""

    def save(self, directory: str | Path) -> Path:
        """Save the model into `directory` (created if needed); return the directory."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "family": self.family,
            "params": self.params,
            "labels": list(self.labels),
            "thresholds": [float(t) for t in self.thresholds],
        }
        (path / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        self.save_state(path)
        if self.reference is not None:
            self.reference.save(path)
        if self.seen_texts is not None:
            np.save(path / SEEN_TEXTS_FILE, self.seen_texts)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ToxicityModel:
        """Load whichever family was saved in `directory`."""
        from toxiguard.models import model_class

        path = Path(directory)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            raise ModelNotFoundError(f"{path}: no saved toxiguard model ({META_FILE} missing)")
        meta = json.loads(meta_path.read_text())
        model = model_class(meta["family"])(**meta["params"])
        model.labels = tuple(meta["labels"])
        model.thresholds = np.asarray(meta["thresholds"], dtype=np.float64)
        model.load_state(path)
        if (path / SEEN_TEXTS_FILE).is_file():
            model.seen_texts = np.load(path / SEEN_TEXTS_FILE)
        return model
