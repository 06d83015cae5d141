"""The one small interface every model family offers: a scikit-learn estimator over raw texts."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, clone

from toxiguard.errors import ModelNotFoundError
from toxiguard.labels import LABELS

FloatArray = npt.NDArray[np.float64]
LabelArray = npt.NDArray[np.integer[Any]]
#: A saved model's description: its family and constructor arguments (JSON).
META_FILE = "toxiguard_model.json"


def json_ready(value: Any) -> Any:
    """Return `value` as JSON holds it: tuples as lists, mappings as dicts, estimators as specs."""
    if isinstance(value, ToxicityModel):
        return {"family": value.family, "params": value.json_params()}
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class ToxicityModel(BaseEstimator, ABC):  # type: ignore[misc]
    """A multi-label classifier: `fit(texts, labels)`, `predict_proba(texts) -> (n, 6)`, save.

    scikit-learn's estimator contract: the constructor only stores its keyword arguments as
    attributes of the same names (so `get_params`, `set_params` and `sklearn.base.clone` work);
    `fit` checks them and sets the fitted state, in attributes ending in `_`. A model writes
    everything it needs into one directory (`save`); `toxiguard.models.load_model` reads it back.
    What a registered model carries besides the estimator lives in `models.package`.
    """

    family: ClassVar[str]
    #: The labels every model predicts, in column order.
    labels: ClassVar[tuple[str, ...]] = LABELS

    def check_params(self) -> Self:
        """Return self once the constructor arguments are checked (ToxiguardError if one is bad).

        `fit` calls it first; `create_model` too, so that a bad configuration fails before any
        data is read.
        """
        return self

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

    def parts(self) -> list[ToxicityModel]:
        """Return the models this one is built of (a blend's members, a cascade's stages)."""
        return []

    def diagnostics(self) -> dict[str, float]:
        """Return numbers about how the model was built, logged as metrics with its run."""
        return {}

    def json_params(self) -> dict[str, Any]:
        """Return the constructor arguments as JSON values, as they are saved and logged."""
        params: dict[str, Any] = json_ready(self.get_params(deep=False))
        return params

    @abstractmethod
    def save_state(self, directory: Path) -> None:
        """Write the fitted state (weights, vocabulary, ...) into an existing directory."""

    @abstractmethod
    def load_state(self, directory: Path) -> None:
        """Read the fitted state written by `save_state` (the constructor arguments are set)."""

    def save(self, directory: str | Path) -> Path:
        """Save the model into `directory` (created if needed); return the directory."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.save_state(path)
        meta = {"family": self.family, "params": self.json_params()}
        (path / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return path


def load_member(template: ToxicityModel, directory: Path) -> ToxicityModel:
    """Return the member of a composite model (a blend's member, a cascade's stage) saved in
    `directory`: a clone of `template` with the member's own saved params (blends saved before
    `estimators` existed name their members by family only)."""
    meta = json.loads((directory / META_FILE).read_text())
    if meta["family"] != template.family:
        raise ModelNotFoundError(
            f"{directory}: holds a {meta['family']} model, {template.family} expected"
        )
    member: ToxicityModel = clone(template).set_params(**meta["params"])
    member.load_state(directory)
    return member
