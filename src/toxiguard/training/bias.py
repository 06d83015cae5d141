"""Identity-term bias metrics of the Jigsaw Unintended Bias in Toxicity Classification (2019).

On the `toxic` label, binarised at 0.5, per identity subgroup:

- subgroup AUC: ROC-AUC on the comments that mention the subgroup;
- BPSN AUC (background positive, subgroup negative): the subgroup's non-toxic comments with
  the toxic comments that do not mention it; low when its harmless mentions score high;
- BNSP AUC (background negative, subgroup positive): the subgroup's toxic comments with the
  non-toxic comments that do not mention it; low when its toxic mentions score low.

Final score = 0.25 x overall AUC + 0.75 x the mean over the three metrics of their
generalised power means with p = -5, which lean towards the worst subgroup. Also here: the
neutral-sentence gap, the spread of the mean `toxic` score over sentences that differ only in
the identity phrase.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from toxiguard.data.identity import neutral_comments, subgroup_masks, templated_comments
from toxiguard.models.metrics import roc_auc

#: The competition's exponent: M_-5 sits close to the minimum, so one bad subgroup shows.
POWER: Final = -5.0
OVERALL_WEIGHT: Final = 0.25
#: Fewer comments than this and a subgroup's AUCs are left out (reported as None): with
#: p = -5 one subgroup decides the power mean, and an AUC on a handful of comments moves by
#: tenths when a single comment changes.
MIN_SUBGROUP_SIZE: Final = 20
METRICS: Final = ("subgroup_auc", "bpsn_auc", "bnsp_auc")

ToxicPredictor = Callable[[list[str]], npt.NDArray[np.float64]]


@dataclass(frozen=True)
class SubgroupAucs:
    """The three bias AUCs of one subgroup, None where undefined or the subgroup is too small."""

    subgroup: str
    size: int
    subgroup_auc: float | None
    bpsn_auc: float | None
    bnsp_auc: float | None

    def defined(self) -> list[float]:
        """Return the AUCs that are defined, in the order subgroup, BPSN, BNSP."""
        values = (self.subgroup_auc, self.bpsn_auc, self.bnsp_auc)
        return [value for value in values if value is not None]


@dataclass(frozen=True)
class BiasReport:
    """Overall AUC, the per-subgroup AUCs and the competition's final score on one set."""

    evaluation_set: str
    rows: int
    overall_auc: float | None
    subgroups: tuple[SubgroupAucs, ...]
    final_score: float | None

    def power_means(self) -> dict[str, float | None]:
        """Return each metric's power mean over the subgroups where it is defined, or None."""
        return power_means(self.subgroups)

    def worst(self, n: int = 3) -> list[SubgroupAucs]:
        """Return the n subgroups whose lowest defined AUC is lowest, worst first."""
        scored = [row for row in self.subgroups if row.defined()]
        return sorted(scored, key=lambda row: min(row.defined()))[:n]

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        data = asdict(self)
        data["subgroups"] = [asdict(row) for row in self.subgroups]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BiasReport:
        """Return the report that `to_dict` wrote."""
        return cls(
            evaluation_set=str(data["evaluation_set"]),
            rows=int(data["rows"]),
            overall_auc=data["overall_auc"],
            subgroups=tuple(SubgroupAucs(**row) for row in data["subgroups"]),
            final_score=data["final_score"],
        )


@dataclass(frozen=True)
class NeutralGap:
    """Mean `toxic` score per identity phrase over the neutral templates, and their spread."""

    mean_by_term: dict[str, float]
    gap: float
    highest: str
    lowest: str
    threshold: float
    above_threshold: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the gap as JSON-ready data."""
        data = asdict(self)
        data["above_threshold"] = list(self.above_threshold)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NeutralGap:
        """Return the gap that `to_dict` wrote."""
        return cls(
            mean_by_term={str(term): float(mean) for term, mean in data["mean_by_term"].items()},
            gap=float(data["gap"]),
            highest=str(data["highest"]),
            lowest=str(data["lowest"]),
            threshold=float(data["threshold"]),
            above_threshold=tuple(data["above_threshold"]),
        )


def power_mean(values: Sequence[float], p: float = POWER) -> float:
    """Return the generalised mean (1/N sum v^p)^(1/p) of positive values (0.0 if one is 0)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("power_mean needs at least one value")
    if p < 0 and np.any(array == 0):
        return 0.0  # the limit: 0^p is infinite for p < 0, and its mean's 1/p-th power is 0
    return float(np.mean(array**p) ** (1.0 / p))


def _subgroup_aucs(
    subgroup: str,
    mask: npt.NDArray[np.bool_],
    truth: npt.NDArray[np.bool_],
    scores: npt.NDArray[np.float64],
    min_size: int,
) -> SubgroupAucs:
    """Return one subgroup's three AUCs (None below min_size or where one class is missing)."""
    size = int(mask.sum())
    if size < min_size:
        return SubgroupAucs(subgroup, size, None, None, None)
    bpsn = (mask & ~truth) | (~mask & truth)
    bnsp = (mask & truth) | (~mask & ~truth)
    return SubgroupAucs(
        subgroup=subgroup,
        size=size,
        subgroup_auc=roc_auc(truth[mask], scores[mask]),
        bpsn_auc=roc_auc(truth[bpsn], scores[bpsn]),
        bnsp_auc=roc_auc(truth[bnsp], scores[bnsp]),
    )


def power_means(rows: Sequence[SubgroupAucs]) -> dict[str, float | None]:
    """Return each metric's power mean over the rows where it is defined, None where none is."""
    means: dict[str, float | None] = {}
    for metric in METRICS:
        values = [getattr(row, metric) for row in rows]
        defined = [value for value in values if value is not None]
        means[metric] = power_mean(defined) if defined else None
    return means


def final_score(overall_auc: float | None, power_means: Mapping[str, float | None]) -> float | None:
    """Return 0.25 x overall AUC + 0.75 x mean of the power means; None if one is missing."""
    means = [power_means[metric] for metric in METRICS]
    if overall_auc is None or any(mean is None for mean in means):
        return None
    bias = float(np.mean([mean for mean in means if mean is not None]))
    return OVERALL_WEIGHT * overall_auc + (1 - OVERALL_WEIGHT) * bias


def bias_report(
    evaluation_set: str,
    toxic_truth: npt.ArrayLike,
    toxic_scores: npt.ArrayLike,
    masks: Mapping[str, npt.ArrayLike],
    min_size: int = MIN_SUBGROUP_SIZE,
) -> BiasReport:
    """Return the bias report of `toxic` scores against truth (toxic where >= 0.5) per subgroup.

    Raises ValueError when the arrays or a mask differ in length.
    """
    truth = np.asarray(toxic_truth, dtype=np.float64).ravel() >= 0.5
    scores = np.asarray(toxic_scores, dtype=np.float64).ravel()
    if scores.shape != truth.shape:
        raise ValueError(f"{len(truth)} truth values but {len(scores)} scores")
    rows: list[SubgroupAucs] = []
    for subgroup, raw_mask in masks.items():
        mask = np.asarray(raw_mask, dtype=np.bool_).ravel()
        if mask.shape != truth.shape:
            raise ValueError(f"mask {subgroup!r} has {len(mask)} values, not {len(truth)}")
        rows.append(_subgroup_aucs(subgroup, mask, truth, scores, min_size))
    overall = roc_auc(truth, scores)
    return BiasReport(
        evaluation_set=evaluation_set,
        rows=len(truth),
        overall_auc=overall,
        subgroups=tuple(rows),
        final_score=final_score(overall, power_means(rows)),
    )


def labelled_bias(
    texts: Sequence[str],
    toxic_truth: npt.ArrayLike,
    toxic_scores: npt.ArrayLike,
    min_size: int = MIN_SUBGROUP_SIZE,
) -> BiasReport:
    """Return the bias report on real comments, subgroups found by their identity terms."""
    return bias_report("test", toxic_truth, toxic_scores, subgroup_masks(texts), min_size)


def _score(predict_toxic: ToxicPredictor, texts: list[str]) -> npt.NDArray[np.float64]:
    """Return the predictor's `toxic` scores for the texts in one call, checked for length."""
    scores = np.asarray(predict_toxic(texts), dtype=np.float64).ravel()
    if len(scores) != len(texts):
        raise ValueError(f"the predictor returned {len(scores)} scores for {len(texts)} texts")
    return scores


def templated_bias(predict_toxic: ToxicPredictor, min_size: int = MIN_SUBGROUP_SIZE) -> BiasReport:
    """Return the bias report on the templated set, subgroups as the sentences were built."""
    comments = templated_comments()
    scores = _score(predict_toxic, [comment.text for comment in comments])
    truth = np.array([comment.toxic for comment in comments], dtype=np.float64)
    # Masks by construction, not by regex: "a gay man" belongs to one subgroup here.
    subgroups = np.array([comment.subgroup for comment in comments])
    masks = {name: subgroups == name for name in dict.fromkeys(subgroups.tolist())}
    return bias_report("templates", truth, scores, masks, min_size)


def neutral_gap(predict_toxic: ToxicPredictor, threshold: float) -> NeutralGap:
    """Return the mean `toxic` score per identity phrase on neutral sentences, and its spread."""
    comments = neutral_comments()
    scores = _score(predict_toxic, [comment.text for comment in comments])
    totals: dict[str, list[float]] = {}
    for comment, score in zip(comments, scores.tolist(), strict=True):
        totals.setdefault(comment.term, []).append(score)
    means = {term: float(np.mean(values)) for term, values in totals.items()}
    highest = max(means, key=means.__getitem__)
    lowest = min(means, key=means.__getitem__)
    return NeutralGap(
        mean_by_term=means,
        gap=means[highest] - means[lowest],
        highest=highest,
        lowest=lowest,
        threshold=threshold,
        above_threshold=tuple(term for term, mean in means.items() if mean >= threshold),
    )
