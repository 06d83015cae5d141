"""The `blend` family: several fitted models combined per label with weights tuned on validation.

Two ways to combine, chosen per label by validation ROC-AUC:
- "probability": a weighted mean of the members' probabilities;
- "rank": a weighted mean of each member's score mapped through its empirical distribution on
  the validation split (a rank average that also works for a single comment at serving time).
The members' own save directories are stored inside the blend's directory.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
from sklearn.metrics import roc_auc_score

from toxiguard.errors import ToxiguardError
from toxiguard.models.base import FloatArray, LabelArray, ToxicityModel

logger = logging.getLogger(__name__)

METHODS = ("probability", "rank")
STATE_FILE = "blend.json"


def simplex_grid(members: int, step: float) -> list[tuple[float, ...]]:
    """Return every weight vector on a grid of `step` whose non-negative weights sum to 1."""
    ticks = round(1 / step)
    return [
        tuple(count / ticks for count in (*counts, ticks - sum(counts)))
        for counts in itertools.product(range(ticks + 1), repeat=members - 1)
        if sum(counts) <= ticks
    ]


def empirical_cdf(reference: FloatArray, scores: FloatArray) -> FloatArray:
    """Return the share of `reference` scores at or below each score (a rank in [0, 1])."""
    if reference.size == 0:
        return scores
    return np.searchsorted(reference, scores, side="right") / reference.size


class BlendModel(ToxicityModel):
    """Per-label weighted blend of other model families, tuned on the validation split."""

    family = "blend"

    def __init__(
        self,
        members: Sequence[str] = ("transformer", "tfidf-lr"),
        member_params: Mapping[str, Mapping[str, Any]] | None = None,
        weight_step: float = 0.05,
        holdout_share: float = 0.1,
        seed: int = 42,
    ) -> None:
        if len(members) < 2 or len(set(members)) != len(members):
            raise ToxiguardError(f"blend needs two or more different members, got {list(members)}")
        super().__init__(
            members=list(members),
            member_params={k: dict(v) for k, v in (member_params or {}).items()},
            weight_step=weight_step,
            holdout_share=holdout_share,
            seed=seed,
        )
        self.models: dict[str, ToxicityModel] = {}
        self.weights = np.full((len(self.labels), len(members)), 1 / len(members))
        self.methods: list[str] = ["probability"] * len(self.labels)
        self.distributions: dict[str, FloatArray] = {}
        self.validation_auc: dict[str, list[float]] = {}

    @property
    def member_names(self) -> list[str]:
        """Return the member families, in blending order."""
        return list(self.params["members"])

    def use_fitted(self, models: Mapping[str, ToxicityModel]) -> Self:
        """Reuse members already fitted on the same training data (by family); return self."""
        self.models.update({k: v for k, v in models.items() if k in self.member_names})
        return self

    def fit(
        self,
        texts: Sequence[str],
        labels: LabelArray,
        *,
        validation: tuple[Sequence[str], LabelArray] | None = None,
    ) -> Self:
        """Fit the members not given by `use_fitted`, then tune per-label weights; return self."""
        from toxiguard.models import create_model

        train_texts, train_labels = list(texts), np.asarray(labels)
        if validation is None:
            rng = np.random.default_rng(self.params["seed"])
            held = rng.random(len(train_texts)) < self.params["holdout_share"]
            validation = (
                [t for t, h in zip(train_texts, held, strict=True) if h],
                train_labels[held],
            )
            train_texts = [t for t, h in zip(train_texts, held, strict=True) if not h]
            train_labels = train_labels[~held]
        val_texts, val_labels = list(validation[0]), np.asarray(validation[1])
        for name in self.member_names:
            if name not in self.models:
                logger.info("blend: fitting member %s", name)
                params = self.params["member_params"].get(name, {})
                self.models[name] = create_model(name, **params).fit(
                    train_texts, train_labels, validation=(val_texts, val_labels)
                )
        member_scores = {name: self.models[name].predict_proba(val_texts) for name in self.models}
        self.distributions = {
            name: np.sort(scores, axis=0) for name, scores in member_scores.items()
        }
        self._tune(member_scores, val_labels)
        return self

    def _combine(
        self, scores: Mapping[str, FloatArray], label: int, method: str, weights: Sequence[float]
    ) -> FloatArray:
        """Return one label's blended score for the given method and weights."""
        columns = []
        for name in self.member_names:
            column = scores[name][:, label]
            if method == "rank":
                column = empirical_cdf(self.distributions[name][:, label], column)
            columns.append(column)
        return np.asarray(np.column_stack(columns) @ np.asarray(weights), dtype=np.float64)

    def _tune(self, scores: Mapping[str, FloatArray], truth: LabelArray) -> None:
        """Pick, per label, the method and weights with the best validation ROC-AUC."""
        grid = simplex_grid(len(self.member_names), self.params["weight_step"])
        for label in range(truth.shape[1]):
            if truth[:, label].min() == truth[:, label].max():
                continue  # no positives (or no negatives): keep equal probability weights
            best = max(
                (
                    (roc_auc_score(truth[:, label], self._combine(scores, label, m, w)), m, w)
                    for m in METHODS
                    for w in grid
                ),
                key=lambda item: item[0],
            )
            self.methods[label] = best[1]
            self.weights[label] = best[2]
            self.validation_auc.setdefault(best[1], []).append(float(best[0]))
            logger.info(
                "blend: label %d: %s weights %s (validation ROC-AUC %.4f)",
                label,
                best[1],
                dict(zip(self.member_names, best[2], strict=True)),
                best[0],
            )

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """Return the (n, 6) blended scores in [0, 1], in label order."""
        if not self.models:
            raise ToxiguardError("blend model is not fitted")
        scores = {name: self.models[name].predict_proba(texts) for name in self.member_names}
        return np.column_stack(
            [
                self._combine(scores, label, self.methods[label], self.weights[label])
                for label in range(len(self.labels))
            ]
        ).clip(0.0, 1.0)

    def save_state(self, directory: Path) -> None:
        """Write each member into its own sub-directory and the blend's weights as JSON."""
        for name in self.member_names:
            self.models[name].save(directory / "members" / name)
        reference = np.stack([self.distributions[name] for name in self.member_names])
        np.save(directory / "reference.npy", reference)
        state = {"weights": self.weights.tolist(), "methods": self.methods}
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2))

    def load_state(self, directory: Path) -> None:
        """Read the members, weights and reference distributions written by `save_state`."""
        self.models = {
            name: ToxicityModel.load(directory / "members" / name) for name in self.member_names
        }
        reference = np.load(directory / "reference.npy")
        self.distributions = dict(zip(self.member_names, reference, strict=True))
        state = json.loads((directory / STATE_FILE).read_text())
        self.weights = np.asarray(state["weights"], dtype=np.float64)
        self.methods = list(state["methods"])
