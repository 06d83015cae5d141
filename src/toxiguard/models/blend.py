"""The `blend` family: several models combined per label with weights tuned on validation.

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
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from toxiguard.errors import ToxiguardError
from toxiguard.models.base import FloatArray, LabelArray, ToxicityModel, load_member

logger = logging.getLogger(__name__)

METHODS = ("probability", "rank")
STATE_FILE = "blend.json"
MEMBERS_DIR = "members"
#: The members of a blend given none: the transformer and the first TF-IDF baseline.
DEFAULT_MEMBERS = ("transformer", "tfidf-lr")


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
    """Per-label weighted blend of other models, tuned on the validation split.

    `estimators` are (name, model) pairs, as scikit-learn's VotingClassifier takes them; each
    is cloned and fitted on the blend's training data, except those named in `prefit`, which
    are used as they are (models of the same job, already fitted on the same training split).
    """

    family = "blend"

    def __init__(
        self,
        estimators: Sequence[tuple[str, ToxicityModel]] = (),
        prefit: Sequence[str] = (),
        weight_step: float = 0.05,
        holdout_share: float = 0.1,
        seed: int = 42,
    ) -> None:
        self.estimators = estimators
        self.prefit = prefit
        self.weight_step = weight_step
        self.holdout_share = holdout_share
        self.seed = seed

    @property
    def member_names(self) -> list[str]:
        """Return the members' names, in blending order."""
        return [name for name, _ in self.estimators]

    def parts(self) -> list[ToxicityModel]:
        """Return the members (fitted once fitted)."""
        members = getattr(self, "members_", None)
        return list(members.values()) if members else [model for _, model in self.estimators]

    def check_params(self) -> Self:
        """Return self once there are two or more differently named members."""
        names = self.member_names
        if len(names) < 2 or len(set(names)) != len(names):
            raise ToxiguardError(f"blend needs two or more different members, got {names}")
        unknown = sorted(set(self.prefit) - set(names))
        if unknown:
            raise ToxiguardError(f"blend: prefit names {unknown} are not members ({names})")
        if not 0 < self.weight_step <= 1:
            raise ToxiguardError(f"blend: weight_step must be in (0, 1], got {self.weight_step}")
        return self

    def json_params(self) -> dict[str, Any]:
        """Return the params as saved: members as {family, params} specs, none of them prefit.

        A saved spec rebuilds an unfitted member, so the rebuilt blend would fit every member.
        """
        return {**super().json_params(), "prefit": []}

    def fit(
        self,
        texts: Sequence[str],
        labels: LabelArray,
        *,
        validation: tuple[Sequence[str], LabelArray] | None = None,
    ) -> Self:
        """Fit the members not in `prefit`, then tune per-label weights; return self."""
        self.check_params()
        train_texts, train_labels = list(texts), np.asarray(labels)
        if validation is None:
            rng = np.random.default_rng(self.seed)
            held = rng.random(len(train_texts)) < self.holdout_share
            validation = (
                [t for t, h in zip(train_texts, held, strict=True) if h],
                train_labels[held],
            )
            train_texts = [t for t, h in zip(train_texts, held, strict=True) if not h]
            train_labels = train_labels[~held]
        val_texts, val_labels = list(validation[0]), np.asarray(validation[1])
        members: dict[str, ToxicityModel] = {}
        for name, estimator in self.estimators:
            if name in self.prefit:
                members[name] = estimator
                continue
            logger.info("blend: fitting member %s", name)
            members[name] = clone(estimator).fit(
                train_texts, train_labels, validation=(val_texts, val_labels)
            )
        self.members_ = members
        member_scores = {name: model.predict_proba(val_texts) for name, model in members.items()}
        self.distributions_ = {
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
                column = empirical_cdf(self.distributions_[name][:, label], column)
            columns.append(column)
        return np.asarray(np.column_stack(columns) @ np.asarray(weights), dtype=np.float64)

    def _tune(self, scores: Mapping[str, FloatArray], truth: LabelArray) -> None:
        """Pick, per label, the method and weights with the best validation ROC-AUC."""
        names = self.member_names
        self.weights_ = np.full((len(self.labels), len(names)), 1 / len(names))
        self.methods_ = ["probability"] * len(self.labels)
        self.validation_auc_: dict[str, list[float]] = {}
        grid = simplex_grid(len(names), self.weight_step)
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
            self.methods_[label] = best[1]
            self.weights_[label] = best[2]
            self.validation_auc_.setdefault(best[1], []).append(float(best[0]))
            logger.info(
                "blend: label %d: %s weights %s (validation ROC-AUC %.4f)",
                label,
                best[1],
                dict(zip(names, best[2], strict=True)),
                best[0],
            )

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """Return the (n, 6) blended scores in [0, 1], in label order."""
        members: dict[str, ToxicityModel] | None = getattr(self, "members_", None)
        if members is None:
            raise ToxiguardError("blend model is not fitted")
        scores = {name: members[name].predict_proba(texts) for name in self.member_names}
        return np.column_stack(
            [
                self._combine(scores, label, self.methods_[label], self.weights_[label])
                for label in range(len(self.labels))
            ]
        ).clip(0.0, 1.0)

    def save_state(self, directory: Path) -> None:
        """Write each member into its own sub-directory and the blend's weights as JSON."""
        if getattr(self, "members_", None) is None:
            raise ToxiguardError("blend: cannot save a model that is not fitted")
        for name in self.member_names:
            self.members_[name].save(directory / MEMBERS_DIR / name)
        reference = np.stack([self.distributions_[name] for name in self.member_names])
        np.save(directory / "reference.npy", reference)
        state = {"weights": self.weights_.tolist(), "methods": self.methods_}
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2))

    def load_state(self, directory: Path) -> None:
        """Read the members, weights and reference distributions written by `save_state`."""
        self.members_ = {
            name: load_member(estimator, directory / MEMBERS_DIR / name)
            for name, estimator in self.estimators
        }
        reference = np.load(directory / "reference.npy")
        self.distributions_ = dict(zip(self.member_names, reference, strict=True))
        state = json.loads((directory / STATE_FILE).read_text())
        self.weights_ = np.asarray(state["weights"], dtype=np.float64)
        self.methods_ = list(state["methods"])
