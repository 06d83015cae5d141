"""The model package: what a registered model is, the estimator and what travels with it.

Besides the fitted estimator a package holds the per-label decision thresholds (tuned on the
validation split), the monitoring reference and the hashes of the comments the model was fitted
and tuned on (`data.validation.text_hashes`: the promotion gate compares a later model with
this one on test comments neither has seen), and its bias and robustness audit
(`training.audit`, kept here as the JSON data it is saved as). `save` writes all of it into one
directory, the registry's model artifact, and a manifest of its files last (`models.manifest`);
`load` verifies the files against that manifest before it unpickles anything, and turns any failure
to read a verified file into one ModelIntegrityError line naming the directory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from toxiguard.errors import ModelIntegrityError, ModelNotFoundError, ToxiguardError, error_line
from toxiguard.labels import LABELS
from toxiguard.models import load_model
from toxiguard.models.base import META_FILE, FloatArray, ToxicityModel
from toxiguard.models.manifest import (
    MANIFEST_FILE,
    verify_manifest,
    write_manifest,
)
from toxiguard.models.reference import REFERENCE_DIR, REFERENCE_FILE, MonitoringReference

PACKAGE_FILE: Final = "toxiguard_package.json"
SEEN_TEXTS_FILE: Final = "seen_texts.npy"
AUDIT_FILE: Final = "audit.json"


def default_thresholds() -> FloatArray:
    """Return the untuned thresholds: 0.5 for every label."""
    return np.full(len(LABELS), 0.5)


@dataclass
class ModelPackage:
    """A fitted model, its per-label thresholds, monitoring reference, seen-text hashes and
    audit."""

    model: ToxicityModel
    thresholds: FloatArray = field(default_factory=default_thresholds)
    reference: MonitoringReference | None = None
    seen_texts: npt.NDArray[np.uint64] | None = None
    audit: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        """Check that there is one threshold per label."""
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64)
        if self.thresholds.shape != (len(LABELS),):
            raise ValueError(f"expected {len(LABELS)} thresholds, got {self.thresholds.shape}")

    @property
    def family(self) -> str:
        """Return the model's family."""
        return self.model.family

    @property
    def labels(self) -> tuple[str, ...]:
        """Return the labels, in the columns' order."""
        return self.model.labels

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """Return the model's (n, 6) probabilities in label order."""
        return self.model.predict_proba(texts)

    def predict_flags(self, texts: Sequence[str]) -> npt.NDArray[np.bool_]:
        """Return an (n, 6) boolean array: probability at or above each label's threshold."""
        return np.asarray(self.predict_proba(texts) >= self.thresholds)

    def save(self, directory: str | Path) -> Path:
        """Save the model and all it carries into `directory` (created if needed); return it."""
        path = self.model.save(directory)
        meta: dict[str, Any] = {
            "labels": list(self.labels),
            "thresholds": [float(t) for t in self.thresholds],
        }
        (path / PACKAGE_FILE).write_text(json.dumps(meta, indent=2))
        if self.reference is not None:
            self.reference.save(path)
        if self.seen_texts is not None:
            np.save(path / SEEN_TEXTS_FILE, self.seen_texts)
        if self.audit is not None:
            (path / AUDIT_FILE).write_text(json.dumps(self.audit, indent=2))
        write_manifest(path)  # last: it lists every file written above
        return path

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        expected_manifest_sha256: str | None = None,
        allow_unverified: bool = False,
    ) -> ModelPackage:
        """Return the package saved in `directory`, its files verified against its manifest.

        `expected_manifest_sha256` is the manifest's hash recorded elsewhere (a registry tag);
        `allow_unverified` lets a directory saved before manifests existed load (see
        `models.manifest`). Directories saved before packages existed hold the labels and
        thresholds in the model's own meta file; they load the same way.
        """
        path = Path(directory)
        if not (path / META_FILE).is_file() and not (path / MANIFEST_FILE).is_file():
            raise ModelNotFoundError(f"{path}: no saved toxiguard model ({META_FILE} missing)")
        verify_manifest(
            path, expected_sha256=expected_manifest_sha256, allow_unverified=allow_unverified
        )
        try:
            return cls._read(path)
        except ToxiguardError:
            raise
        except Exception as error:  # a truncated or foreign file: one line, never a traceback
            raise ModelIntegrityError(
                f"{path}: the saved model could not be read ({error_line(error)})"
            ) from error

    @classmethod
    def _read(cls, path: Path) -> ModelPackage:
        """Return the package in a verified directory."""
        model = load_model(path)
        meta_path = path / PACKAGE_FILE if (path / PACKAGE_FILE).is_file() else path / META_FILE
        meta = json.loads(meta_path.read_text())
        labels = tuple(meta.get("labels", LABELS))
        if labels != LABELS:
            raise ModelNotFoundError(f"{path}: saved for labels {list(labels)}, not {list(LABELS)}")
        thresholds = np.asarray(meta.get("thresholds", default_thresholds()), dtype=np.float64)
        reference = None
        if (path / REFERENCE_DIR / REFERENCE_FILE).is_file():
            reference = MonitoringReference.load(path)
        seen = path / SEEN_TEXTS_FILE
        seen_texts = np.load(seen) if seen.is_file() else None
        audit_path = path / AUDIT_FILE
        audit = json.loads(audit_path.read_text()) if audit_path.is_file() else None
        return cls(model, thresholds, reference, seen_texts, audit)
