"""What the server holds of a model: the loaded package with its registry info, the results it
gives, and the local copy of the last champion kept under the home for when the registry is
down (its manifest kept with it, its sha256 in `current.json`, verified before it is served).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from toxiguard.errors import ModelIntegrityError, ModelNotFoundError
from toxiguard.models.manifest import MANIFEST_FILE, file_sha256
from toxiguard.models.package import ModelPackage

logger = logging.getLogger(__name__)

CURRENT_FILE = "current.json"
LOCAL_COPY = "local-copy"


@dataclass(frozen=True)
class LoadedModel:
    """A model package ready to predict, with what the registry said about it and where it came
    from."""

    model: ModelPackage
    info: dict[str, Any]
    source: str
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def name(self) -> str | None:
        """Return the registered model name."""
        name = self.info.get("name")
        return str(name) if name is not None else None

    @property
    def version(self) -> int | None:
        """Return the registered version number."""
        version = self.info.get("version")
        return int(version) if version is not None else None

    @property
    def family(self) -> str:
        """Return the model family."""
        return self.model.family

    def describe(self) -> dict[str, Any]:
        """Return a JSON-ready summary: name, version, family, source, load time."""
        return {
            "name": self.name,
            "version": self.version,
            "family": self.family,
            "source": self.source,
            "loaded_at": self.loaded_at.isoformat(timespec="seconds"),
        }


@dataclass(frozen=True)
class PredictionResult:
    """Probabilities and flags for a list of texts, and the model that produced them."""

    probabilities: npt.NDArray[np.float64]
    flags: npt.NDArray[np.bool_]
    model: LoadedModel


class LocalCopy:
    """The last champion the server loaded, saved under the home for when the registry is down."""

    def __init__(self, directory: Path, *, allow_unverified: bool = False) -> None:
        self.directory = directory
        self.allow_unverified = allow_unverified

    def save(self, loaded: LoadedModel) -> None:
        """Save the model (with its manifest) and its registry info, replacing the previous copy
        atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / f"v{loaded.version}-{uuid.uuid4().hex[:8]}"
        loaded.model.save(target)
        pointer = self.directory / CURRENT_FILE
        temporary = pointer.with_suffix(f".{os.getpid()}.tmp")
        saved = {
            "dir": target.name,
            "info": loaded.info,
            "manifest_sha256": file_sha256(target / MANIFEST_FILE),
        }
        temporary.write_text(json.dumps(saved, default=str))
        temporary.replace(pointer)
        for old in self.directory.iterdir():
            if old.is_dir() and old.name != target.name:
                shutil.rmtree(old, ignore_errors=True)
        logger.info("local copy of %s version %s saved in %s", loaded.name, loaded.version, target)

    def exists(self) -> bool:
        """Return True when a copy was saved (whether or not it is still intact)."""
        return (self.directory / CURRENT_FILE).is_file()

    def load(self) -> LoadedModel:
        """Return the saved model, verified; ModelNotFoundError when there is none,
        ModelIntegrityError when it or its pointer file is damaged."""
        pointer = self.directory / CURRENT_FILE
        if not pointer.is_file():
            raise ModelNotFoundError(f"no local copy of a model in {self.directory}")
        try:
            saved = json.loads(pointer.read_text())
            directory, info = self.directory / str(saved["dir"]), dict(saved["info"])
            expected = saved.get("manifest_sha256")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ModelIntegrityError(f"{pointer}: unreadable ({type(error).__name__})") from error
        model = ModelPackage.load(
            directory,
            expected_manifest_sha256=str(expected) if expected else None,
            allow_unverified=self.allow_unverified,
        )
        return LoadedModel(model=model, info=info, source=LOCAL_COPY)
