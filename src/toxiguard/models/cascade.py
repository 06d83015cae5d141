"""The `cascade` family: a fast model scores every comment; only the uncertain ones go on to
an accurate (slow) model.

Per label, the uncertain band lies between two of the fast model's scores, both read off the
validation split with one knob, the tail share q: `low` is the q-quantile of the fast scores of
the label's positives, `high` the (1-q)-quantile of those of its negatives. A comment inside any
label's band is escalated and takes the slow model's scores for every label; the others keep
the fast model's. Mapping the slow score into each label's band instead (so that no score
crosses the fast model's confident ones) was measured worse: ComplementNB before NB-SVM on the
shared data lost 0.007 more test ROC-AUC at 80% escalated.

Fitting sweeps q from large (little escalated) to 0 and keeps the largest q whose validation
mean ROC-AUC is within `max_auc_loss` of the slow model's alone; if none is, every comment is
escalated (the cascade is then the slow model). The curve of escalated share against ROC-AUC
is kept with the model (`curve_`) and drawn at registration.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Self

import numpy as np
from sklearn.base import clone

from toxiguard.errors import ToxiguardError
from toxiguard.models.base import FloatArray, LabelArray, ToxicityModel, load_member
from toxiguard.models.metrics import mean_roc_auc

logger = logging.getLogger(__name__)

Mask = np.ndarray[Any, np.dtype[np.bool_]]
STATE_FILE: Final = "cascade.json"
STAGES_DIR: Final = "stages"
STAGES: Final = ("fast", "slow")
#: The tail shares swept, from little escalated to every comment inside the overlap.
TAIL_SHARES: Final = (0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0)


class CascadeModel(ToxicityModel):
    """A fast model for every comment, a slow one for those in a per-label uncertain band.

    `fast` and `slow` are models (or, as saved, {family, params} specs); those named in
    `prefit` ("fast", "slow") are used as they are (fitted in the same job on the same split),
    the others are cloned and fitted on the cascade's training data.
    """

    family = "cascade"

    def __init__(
        self,
        fast: ToxicityModel | None = None,
        slow: ToxicityModel | None = None,
        prefit: Sequence[str] = (),
        max_auc_loss: float = 0.001,
        seed: int = 42,
    ) -> None:
        self.fast = fast
        self.slow = slow
        self.prefit = prefit
        self.max_auc_loss = max_auc_loss
        self.seed = seed

    def parts(self) -> list[ToxicityModel]:
        """Return the two stages (fitted once fitted)."""
        stages = getattr(self, "stages_", None)
        return list(stages.values()) if stages else [self.fast, self.slow]  # type: ignore[list-item]

    def check_params(self) -> Self:
        """Return self once both stages are models and the loss budget is a share."""
        for name in STAGES:
            if not isinstance(getattr(self, name), ToxicityModel):
                raise ToxiguardError(
                    f"cascade: '{name}' must be a model, got {getattr(self, name)!r}"
                )
        unknown = sorted(set(self.prefit) - set(STAGES))
        if unknown:
            raise ToxiguardError(f"cascade: prefit {unknown} are not stages {list(STAGES)}")
        if not 0 <= self.max_auc_loss < 1:
            raise ToxiguardError(
                f"cascade: max_auc_loss must be in [0, 1), got {self.max_auc_loss}"
            )
        return self

    def json_params(self) -> dict[str, Any]:
        """Return the params as saved: stages as specs, none prefit (a spec rebuilds unfitted)."""
        return {**super().json_params(), "prefit": []}

    def fit(
        self,
        texts: Sequence[str],
        labels: LabelArray,
        *,
        validation: tuple[Sequence[str], LabelArray] | None = None,
    ) -> Self:
        """Fit the stages not in `prefit`, then choose the band on `validation`; return self."""
        self.check_params()
        if validation is None:
            raise ToxiguardError("cascade: needs validation comments to choose its band")
        stages: dict[str, ToxicityModel] = {}
        for name in STAGES:
            stage: ToxicityModel = getattr(self, name)
            if name in self.prefit:
                stages[name] = stage
                continue
            logger.info("cascade: fitting the %s stage (%s)", name, stage.family)
            stages[name] = clone(stage).fit(texts, labels, validation=validation)
        self.stages_ = stages
        val_texts, truth = list(validation[0]), np.asarray(validation[1])
        fast = stages["fast"].predict_proba(val_texts)
        slow = stages["slow"].predict_proba(val_texts)
        self._choose_band(fast, slow, truth)
        return self

    def _choose_band(self, fast: FloatArray, slow: FloatArray, truth: LabelArray) -> None:
        """Sweep the tail share; keep the largest whose validation loss is within budget."""
        target = mean_roc_auc(truth, slow)
        if target is None:
            raise ToxiguardError("cascade: the validation comments have no label with both classes")
        curve: list[dict[str, float]] = []
        chosen: tuple[float, FloatArray, FloatArray] | None = None
        for share in TAIL_SHARES:
            low, high = band_edges(fast, truth, share)
            escalated: Mask = np.asarray(in_band(fast, low, high).any(axis=1), dtype=bool)
            auc = mean_roc_auc(truth, np.where(escalated[:, None], slow, fast)) or 0.0
            curve.append({"tail_share": share, "escalated": float(escalated.mean()), "auc": auc})
            if chosen is None and target - auc <= self.max_auc_loss:
                chosen = (share, low, high)
        curve.append({"tail_share": -1.0, "escalated": 1.0, "auc": target})
        if chosen is None:  # no band within budget: escalate every comment
            chosen = (-1.0, np.full(fast.shape[1], -np.inf), np.full(fast.shape[1], np.inf))
        self.tail_share_, self.low_, self.high_ = chosen
        self.curve_ = curve
        self.slow_validation_auc_ = target
        point = next(item for item in curve if item["tail_share"] == self.tail_share_)
        self.validation_escalated_ = point["escalated"]
        self.validation_auc_ = point["auc"]
        logger.info(
            "cascade: tail share %s escalates %.1f%% of validation comments, ROC-AUC %.4f "
            "(slow stage alone %.4f)",
            self.tail_share_,
            100 * self.validation_escalated_,
            self.validation_auc_,
            target,
        )

    def fitted_stages(self) -> dict[str, ToxicityModel]:
        """Return the fitted stages, or raise ToxiguardError before `fit`."""
        stages: dict[str, ToxicityModel] | None = getattr(self, "stages_", None)
        if stages is None:
            raise ToxiguardError("cascade model is not fitted")
        return stages

    def escalated(self, fast: FloatArray) -> Mask:
        """Return, per comment, whether the fast stage's scores send it to the slow stage."""
        return np.asarray(in_band(fast, self.low_, self.high_).any(axis=1), dtype=bool)

    def escalated_share(self, texts: Sequence[str]) -> float:
        """Return the share of `texts` the cascade sends to its slow stage."""
        fast = self.fitted_stages()["fast"].predict_proba(list(texts))
        return float(self.escalated(fast).mean()) if len(texts) else 0.0

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """Return the (n, 6) scores: the slow stage's for escalated comments (it sees only
        those), the fast stage's for the others."""
        stages = self.fitted_stages()
        texts = list(texts)
        scores = np.asarray(stages["fast"].predict_proba(texts), dtype=np.float64)
        escalated = self.escalated(scores)
        if escalated.any():
            hard = [text for text, up in zip(texts, escalated, strict=True) if up]
            scores[escalated] = stages["slow"].predict_proba(hard)
        return scores

    def diagnostics(self) -> dict[str, float]:
        """Return the band's tail share and what it does on validation, logged with the run."""
        self.fitted_stages()
        return {
            "cascade_tail_share": float(self.tail_share_),
            "cascade_val_escalated_share": float(self.validation_escalated_),
            "cascade_val_mean_roc_auc": float(self.validation_auc_),
            "cascade_val_slow_mean_roc_auc": float(self.slow_validation_auc_),
        }

    def save_state(self, directory: Path) -> None:
        """Write each stage into its own sub-directory and the band and curve as JSON."""
        stages = self.fitted_stages()
        for name in STAGES:
            stages[name].save(directory / STAGES_DIR / name)
        state = {
            "tail_share": self.tail_share_,
            "low": [float(value) for value in self.low_],
            "high": [float(value) for value in self.high_],
            "curve": self.curve_,
            "slow_validation_auc": self.slow_validation_auc_,
            "validation_escalated": self.validation_escalated_,
            "validation_auc": self.validation_auc_,
        }
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2))

    def load_state(self, directory: Path) -> None:
        """Read the stages, band and curve written by `save_state`."""
        self.check_params()
        self.stages_ = {
            name: load_member(getattr(self, name), directory / STAGES_DIR / name) for name in STAGES
        }
        state = json.loads((directory / STATE_FILE).read_text())
        self.tail_share_ = float(state["tail_share"])
        self.low_ = np.asarray(state["low"], dtype=np.float64)
        self.high_ = np.asarray(state["high"], dtype=np.float64)
        self.curve_ = list(state["curve"])
        self.slow_validation_auc_ = float(state["slow_validation_auc"])
        self.validation_escalated_ = float(state["validation_escalated"])
        self.validation_auc_ = float(state["validation_auc"])


def band_edges(fast: FloatArray, truth: LabelArray, share: float) -> tuple[FloatArray, FloatArray]:
    """Return per label (low, high): the `share`-quantile of the fast scores of positives and
    the (1 - share)-quantile of those of negatives (an empty band for a one-class label)."""
    labels = fast.shape[1]
    low, high = np.full(labels, np.inf), np.full(labels, -np.inf)
    for j in range(labels):
        positives, negatives = fast[truth[:, j] == 1, j], fast[truth[:, j] == 0, j]
        if positives.size and negatives.size:
            low[j] = np.quantile(positives, share)
            high[j] = np.quantile(negatives, 1.0 - share)
    return low, high


def in_band(fast: FloatArray, low: FloatArray, high: FloatArray) -> Mask:
    """Return, per comment and label, whether the fast score lies in [low, high] of the label."""
    return np.asarray((fast >= low) & (fast <= high), dtype=bool)
