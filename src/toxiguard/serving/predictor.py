"""The served model: loaded from the registry's champion, kept as a local copy, hot-swapped.

At start the champion is loaded from MLflow and saved under the home (`model_cache_dir`).
If the registry cannot be reached, that local copy is served instead and the server says so.
With neither (a fresh home, or an MLflow server still starting) the server starts without a
model and waits: predictions raise `NoChampionError` (the API answers 503) until the poller
finds the first champion. A damaged local copy still fails start-up: that needs a person.
A background thread polls the alias and swaps in a newly promoted version: the swap replaces
one reference, so requests already running finish on the model they started with and none is
dropped.

Every model is verified before it is served (`ModelPackage.load`, `models.manifest`): the
local copy keeps its manifest, and `current.json` the manifest's sha256. A registry model that
fails verification is reported as such (`RegistryStatus.artifact_error`), not as an
unreachable registry, and the local copy is served instead.

With `model_dir` set (`toxiguard serve --model-dir`) the server serves that exported bundle
(`serving.export`) instead: verified at start (a bundle that fails is refused, start-up fails),
no registry, no local copy, no polling.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from toxiguard.errors import (
    ModelIntegrityError,
    ModelNotFoundError,
    ToxiguardError,
    error_line,
    redact,
)
from toxiguard.labels import LABELS
from toxiguard.registry.client import (
    embedded_database,
    load_toxicity_model,
    missing_database_error,
    resolve_model_uri,
)
from toxiguard.registry.versions import champion_version
from toxiguard.serving.export import load_bundle
from toxiguard.serving.local_copy import LoadedModel, LocalCopy, PredictionResult
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)

REGISTRY = "registry"
BUNDLE = "bundle"
NO_CHAMPION = "no champion yet: train and promote a model (toxiguard run / toxiguard train)"


class NoChampionError(ModelNotFoundError):
    """Nothing is served yet: no champion has been promoted and there is no local copy."""

    def __init__(self, message: str = NO_CHAMPION) -> None:
        super().__init__(message)


@dataclass
class RegistryStatus:
    """What the last contact with the registry showed."""

    reachable: bool | None = None
    champion_version: int | None = None
    last_check: datetime | None = None
    last_error: str | None = None
    # Why the registry's model was refused (it failed verification); cleared by a good load.
    artifact_error: str | None = None
    # Why the registry holds no champion (no version has the alias, no database yet); None once
    # a champion is seen, or while the registry cannot be asked.
    champion_missing: str | None = None

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
            "champion_missing": self.champion_missing,
        }


def registry_client_environment(settings: Settings) -> dict[str, str]:
    """Return MLflow client variables that make calls to a dead registry fail in seconds."""
    return {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(settings.registry_timeout_seconds),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }


class Predictor:
    """Serves the champion: loads it, predicts with it, polls the alias and swaps it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.alias = settings.champion_alias
        self.bundle = settings.model_dir
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
        """Return the model being served; raise NoChampionError before one is loaded."""
        current = self._current
        if current is None:
            raise NoChampionError()
        return current

    @property
    def loaded(self) -> bool:
        """Return True once a model is being served."""
        return self._current is not None

    def load(self) -> LoadedModel:
        """Load the champion from the registry, else the local copy; raise if there is neither."""
        if self.bundle is not None:
            return self._load_bundle(self.bundle)
        outcome = self._first_load()
        if isinstance(outcome, BaseException):
            raise ModelNotFoundError(
                f"no model to serve: the registry gave none ({error_line(outcome)}) and "
                f"there is no local copy in {self.local_copy.directory}. Train one with "
                "`toxiguard train` (or `toxiguard run`), or point MLFLOW_TRACKING_URI at the "
                "registry that holds the champion."
            ) from outcome
        return outcome

    def load_or_wait(self) -> LoadedModel | None:
        """Return the model loaded as `load` does, or None when there is nothing to serve yet.

        None when the registry has no champion (or cannot be reached) and there is no local
        copy: one log line says so, and the poller loads the first champion once promoted. A
        damaged local copy still raises (ModelNotFoundError), as `load` does; so does a bundle
        (`model_dir`) that is missing or fails verification.
        """
        if self.bundle is not None:
            return self._load_bundle(self.bundle)
        outcome = self._first_load()
        if not isinstance(outcome, BaseException):
            return outcome
        uri, every = redact(self.settings.tracking_uri), self.settings.model_poll_seconds
        missing = self.registry.champion_missing
        if missing is not None:
            logger.warning(
                "no champion yet in %s (alias %s): %s; waiting for one (polling every %g s)",
                uri,
                self.alias,
                missing,
                every,
            )
        else:
            logger.warning(
                "no model to serve yet: the registry at %s gave none (%s) and there is no local "
                "copy in %s; waiting for a champion (polling every %g s)",
                uri,
                error_line(outcome),
                self.local_copy.directory,
                every,
            )
        return None

    def _first_load(self) -> LoadedModel | BaseException:
        """Return the champion from the registry, else the local copy, now served; or the
        registry's error when it gave none and there is no local copy.

        A local copy that exists but cannot be loaded raises ModelNotFoundError.
        """
        uri = resolve_model_uri(None, self.settings)
        try:
            loaded = self._load_from_registry(uri)
        except Exception as registry_error:  # unreachable, refused, or no champion: try the copy
            self._record_failure(registry_error)
            if not self.local_copy.exists():
                return registry_error
            try:
                loaded = self.local_copy.load()
            except (ToxiguardError, OSError) as copy_error:
                raise ModelNotFoundError(
                    f"no model to serve: the registry gave none ({error_line(registry_error)}) "
                    f"and there is no usable local copy ({error_line(copy_error)}). Train one "
                    "with `toxiguard train` (or `toxiguard run`), or point MLFLOW_TRACKING_URI "
                    "at the registry that holds the champion."
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

    def _load_bundle(self, directory: Path) -> LoadedModel:
        """Serve the exported bundle in `directory`, verified; raise if it is refused."""
        package, info = load_bundle(
            directory, allow_unverified=self.settings.allow_unverified_models
        )
        loaded = LoadedModel(model=package, info=info, source=BUNDLE)
        self._swap(loaded)
        return loaded

    def _record_failure(self, error: BaseException) -> None:
        """Record why the registry gave no model: it holds no champion yet, or it failed."""
        if isinstance(error, ModelNotFoundError) or self._database_missing() is not None:
            try:
                missing = self.champion_version() is None
            except Exception:  # the registry cannot be asked now: the load's own error says why
                missing = False
            if missing:
                self._mark_no_champion()
                return
        self._mark_registry(error)

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
                self.registry.champion_missing = None
                if loaded:
                    self.registry.artifact_error = None
            else:
                self.registry.reachable = False
                self.registry.last_error = error_line(error)
                self.registry.champion_missing = None

    def _mark_no_champion(self) -> None:
        """Record that the registry answered (or has no database yet) and holds no champion."""
        database = self._database_missing()
        why = (
            str(missing_database_error(database))
            if database is not None
            else "train and promote a model (toxiguard run / toxiguard train)"
        )
        with self._lock:
            self.registry.last_check = datetime.now(UTC)
            self.registry.reachable = True
            self.registry.last_error = None
            self.registry.champion_version = None
            self.registry.champion_missing = why

    def _database_missing(self) -> Path | None:
        """Return the embedded registry's database file when it does not exist yet, else None.

        Not created here: the first training creates it, and a moved database must not be
        silently replaced by an empty one (`registry.client.connect`).
        """
        database = embedded_database(self.settings)
        return database if database is not None and not database.is_file() else None

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
    def champion_version(self) -> int | None:
        """Return the version the champion alias points at now; None when the registry holds no
        champion (no version has the alias, or the embedded database does not exist yet).

        Raises when the registry cannot be asked.
        """
        if self._database_missing() is not None:
            return None
        return champion_version(self.settings)

    def refresh(self) -> bool:
        """Check the alias once; return True when a new model (the first one too) was swapped in."""
        current = self._current
        if self.bundle is not None:  # a bundle is served as exported: nothing to check
            return False
        try:
            version = self.champion_version()
        except Exception as error:  # any failure of the registry leaves the served model as is
            was_reachable = self.registry.reachable
            self._mark_registry(error)
            if was_reachable is not False:
                serving = "still serving the current model" if current else "nothing served yet"
                logger.warning("registry check failed, %s: %s", serving, error)
            return False
        if version is None:
            if self.registry.reachable is False:
                logger.info(
                    "registry at %s answers again; no champion yet", self.settings.tracking_uri
                )
            self._mark_no_champion()
            return False
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
        if self.bundle is not None or (self._poller is not None and self._poller.is_alive()):
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
        if self.bundle is not None:
            version = current.version if current else None
            registry = {
                "uri": f"bundle {self.bundle}",
                **registry,  # never contacted: reachable None, no errors
                "bundle": str(self.bundle),
                "serving": f"serving bundle {self.bundle} version {version}",
                "polling": False,
            }
        else:
            registry = {"uri": redact(self.settings.tracking_uri), **registry}
        return {
            "model": current.describe() if current else None,
            "registry": registry,
            "swaps": self.swaps,
        }
