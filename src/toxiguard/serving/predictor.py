"""The served model: loaded from the registry's champion, kept as a local copy, hot-swapped.

At start the champion is loaded from MLflow and saved under the home (`model_cache_dir`).
If the registry cannot be reached, that local copy is served instead and the server says so;
with neither, start-up fails with a clear message. A background thread polls the alias and
swaps in a newly promoted version: the swap replaces one reference, so requests already
running finish on the model they started with and none is dropped.

Every model is verified before it is served (`ModelPackage.load`, `models.manifest`): the
local copy keeps its manifest, and `current.json` the manifest's sha256. A registry model that
fails verification is reported as such (`RegistryStatus.artifact_error`), not as an
unreachable registry, and the local copy is served instead.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from toxiguard.errors import (
    ModelIntegrityError,
    ModelNotFoundError,
    ToxiguardError,
    error_line,
    redact,
)
from toxiguard.labels import LABELS
from toxiguard.models.manifest import MANIFEST_FILE, file_sha256
from toxiguard.models.package import ModelPackage
from toxiguard.registry.client import load_toxicity_model, resolve_model_uri
from toxiguard.registry.versions import champion_version
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)

CURRENT_FILE = "current.json"
REGISTRY = "registry"
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


@dataclass
class RegistryStatus:
    """What the last contact with the registry showed."""

    reachable: bool | None = None
    champion_version: int | None = None
    last_check: datetime | None = None
    last_error: str | None = None
    # Why the registry's model was refused (it failed verification); cleared by a good load.
    artifact_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the status as a JSON-ready dict."""
        return {
            "reachable": self.reachable,
            "champion_version": self.champion_version,
            "last_check": self.last_check.isoformat(timespec="seconds")
            if self.last_check
            else None,
            "last_error": self.last_error,
            "artifact_error": self.artifact_error,
        }


def registry_client_environment(settings: Settings) -> dict[str, str]:
    """Return MLflow client variables that make calls to a dead registry fail in seconds."""
    return {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(settings.registry_timeout_seconds),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }


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


class Predictor:
    """Serves the champion: loads it, predicts with it, polls the alias and swaps it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.alias = settings.champion_alias
        self.local_copy = LocalCopy(
            settings.model_cache_dir, allow_unverified=settings.allow_unverified_models
        )
        self.registry = RegistryStatus()
        self.swaps = 0
        self._current: LoadedModel | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # ------------------------------------------------------------ loading
    @property
    def current(self) -> LoadedModel:
        """Return the model being served; raise ModelNotFoundError before one is loaded."""
        current = self._current
        if current is None:
            raise ModelNotFoundError("no model loaded yet")
        return current

    @property
    def loaded(self) -> bool:
        """Return True once a model is being served."""
        return self._current is not None

    def load(self) -> LoadedModel:
        """Load the champion from the registry, else the local copy; raise if there is neither."""
        uri = resolve_model_uri(None, self.settings)
        try:
            loaded = self._load_from_registry(uri)
        except Exception as registry_error:  # unreachable, refused, or no champion: try the copy
            self._mark_registry(registry_error)
            try:
                loaded = self.local_copy.load()
            except (ToxiguardError, OSError) as copy_error:
                raise ModelNotFoundError(
                    f"no model to serve: the registry gave none ({error_line(registry_error)}) and "
                    f"there is no usable local copy ({error_line(copy_error)}). Train one with "
                    "`toxiguard train` (or `toxiguard run`), or point MLFLOW_TRACKING_URI at the "
                    "registry that holds the champion."
                ) from registry_error
            logger.warning(
                "registry at %s not usable (%s): serving the local copy of %s version %s from %s",
                self.settings.tracking_uri,
                error_line(registry_error),
                loaded.name,
                loaded.version,
                self.local_copy.directory,
            )
        self._swap(loaded)
        return loaded

    def _load_from_registry(self, uri: str) -> LoadedModel:
        """Load a model from the registry, mark it reachable and keep a local copy."""
        model, info = load_toxicity_model(uri, self.settings)
        loaded = LoadedModel(model=model, info=info, source=REGISTRY)
        self._mark_registry(None, loaded.version, loaded=True)
        try:
            self.local_copy.save(loaded)
        except (OSError, ToxiguardError) as error:
            logger.warning("could not save a local copy of the model: %s", error)
        return loaded

    def _mark_registry(
        self, error: BaseException | None, champion: int | None = None, *, loaded: bool = False
    ) -> None:
        """Record the outcome of a contact with the registry (`loaded`: a model came from it)."""
        with self._lock:
            self.registry.last_check = datetime.now(UTC)
            if isinstance(error, ModelIntegrityError):
                # The registry answered; what it gave failed verification.
                self.registry.reachable = True
                self.registry.last_error = f"model artifact failed verification: {error}"
                self.registry.artifact_error = self.registry.last_error
            elif error is None:
                self.registry.reachable = True
                self.registry.last_error = None
                self.registry.champion_version = champion
                if loaded:
                    self.registry.artifact_error = None
            else:
                self.registry.reachable = False
                self.registry.last_error = error_line(error)

    def _swap(self, loaded: LoadedModel) -> None:
        """Make `loaded` the served model (requests in flight keep the one they hold)."""
        with self._lock:
            previous = self._current
            self._current = loaded
            if previous is not None:
                self.swaps += 1
        logger.info(
            "serving %s version %s (%s, from %s)",
            loaded.name,
            loaded.version,
            loaded.family,
            loaded.source,
        )

    # ------------------------------------------------------------ polling
    def champion_version(self) -> int:
        """Return the version the champion alias points at now (raises if unreachable or if no
        version holds the alias)."""
        version = champion_version(self.settings)
        if version is None:
            raise ModelNotFoundError(
                f"no version of {self.settings.registered_model_name} is {self.alias}"
            )
        return version

    def refresh(self) -> bool:
        """Check the alias once; return True when a new model was swapped in."""
        try:
            version = self.champion_version()
        except Exception as error:  # any failure of the registry leaves the served model as is
            was_reachable = self.registry.reachable
            self._mark_registry(error)
            if was_reachable is not False:
                logger.warning("registry check failed, still serving the current model: %s", error)
            return False
        current = self._current
        self._mark_registry(None, version)
        if current is not None and current.version == version and current.source == REGISTRY:
            return False
        name = self.settings.registered_model_name
        try:
            loaded = self._load_from_registry(f"models:/{name}/{version}")
        except Exception as error:
            self._mark_registry(error)
            logger.warning("could not load %s version %s: %s", name, version, error)
            return False
        self._swap(loaded)
        return True

    def start_polling(self) -> None:
        """Start the thread that checks the champion alias every `model_poll_seconds`."""
        if self._poller is not None and self._poller.is_alive():
            return
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll, name="toxiguard-model-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        """Refresh until stopped."""
        while not self._stop.wait(self.settings.model_poll_seconds):
            self.refresh()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
            self._poller = None

    # ------------------------------------------------------------ predicting
    def predict(self, texts: Sequence[str]) -> PredictionResult:
        """Return probabilities and flags for `texts` from the model served right now."""
        loaded = self.current
        if not texts:
            empty = np.zeros((0, len(LABELS)))
            return PredictionResult(empty, empty.astype(bool), loaded)
        probabilities = np.asarray(loaded.model.predict_proba(list(texts)), dtype=np.float64)
        flags = np.asarray(probabilities >= loaded.model.thresholds)
        return PredictionResult(probabilities, flags, loaded)

    def status(self) -> dict[str, Any]:
        """Return the served model and registry state, JSON-ready."""
        with self._lock:
            registry = self.registry.as_dict()
        current = self._current
        return {
            "model": current.describe() if current else None,
            "registry": {"uri": redact(self.settings.tracking_uri), **registry},
            "swaps": self.swaps,
        }
