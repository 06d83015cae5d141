"""How much a model's ROC-AUC drops when comments are obfuscated: the robustness report.

`robustness_report` scores labelled texts as they are and under each perturbation of
`toxiguard.data.perturbations` ("1d10t", "y o u  s u c k", Cyrillic look-alikes, ...) and
returns the mean ROC-AUC over the six labels for each. Every copy is scored in one `predict`
call, because a transformer's cost per call is high. On many rows, `max_rows` scores a seeded
subsample stratified on each row's rarest positive label, so that rare labels keep positives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from toxiguard.data.perturbations import PERTURBATIONS, check_perturbations, perturb_texts
from toxiguard.errors import ToxiguardError
from toxiguard.labels import LABELS
from toxiguard.models.metrics import mean_roc_auc

Predict = Callable[[list[str]], npt.NDArray[np.float64]]


@dataclass(frozen=True)
class RobustnessReport:
    """Mean ROC-AUC over the six labels on clean rows and on each perturbed copy of them."""

    rows: int
    clean_auc: float | None
    perturbed: dict[str, float | None]

    @property
    def worst_name(self) -> str | None:
        """Return the perturbation with the lowest defined ROC-AUC, None if none is defined."""
        defined = {name: auc for name, auc in self.perturbed.items() if auc is not None}
        return min(defined, key=lambda name: defined[name]) if defined else None

    @property
    def worst_auc(self) -> float | None:
        """Return the lowest defined ROC-AUC under a perturbation, None if none is defined."""
        return None if self.worst_name is None else self.perturbed[self.worst_name]

    @property
    def drops(self) -> dict[str, float | None]:
        """Return clean minus perturbed ROC-AUC per perturbation, None where either is undefined."""
        clean = self.clean_auc
        return {
            name: None if clean is None or auc is None else clean - auc
            for name, auc in self.perturbed.items()
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values (`from_dict` reads them back)."""
        return {"rows": self.rows, "clean_auc": self.clean_auc, "perturbed": dict(self.perturbed)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RobustnessReport:
        """Return the report `to_dict` wrote, or raise ToxiguardError for a malformed one."""
        try:
            rows, clean, perturbed = data["rows"], data["clean_auc"], data["perturbed"]
        except (KeyError, TypeError) as error:  # not a mapping, or a key missing
            raise ToxiguardError(f"not a robustness report: {data!r:.200}") from error
        if not isinstance(rows, int) or not isinstance(perturbed, Mapping):
            raise ToxiguardError(f"not a robustness report: {data!r:.200}")
        return cls(
            rows=rows,
            clean_auc=_optional_float(clean),
            perturbed={str(name): _optional_float(auc) for name, auc in perturbed.items()},
        )


def _optional_float(value: Any) -> float | None:
    """Return the value as a float, None as None; raise ToxiguardError for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToxiguardError(f"a robustness report's ROC-AUC must be a number or null: {value!r}")
    return float(value)


def stratified_rows(y_true: npt.ArrayLike, max_rows: int, seed: int) -> npt.NDArray[np.int64]:
    """Return `max_rows` sorted row indices (all rows if fewer), drawn per stratum: each row's
    rarest positive label, or no label; every stratum keeps one row at least where it can."""
    labels = np.asarray(y_true) > 0
    n = len(labels)
    if max_rows >= n:
        return np.arange(n, dtype=np.int64)
    if max_rows < 1:
        raise ToxiguardError(f"max_rows must be at least 1, got {max_rows}")
    # Rarest first: a row positive for threat and toxic goes to the threat stratum.
    order = np.argsort(labels.sum(axis=0), kind="stable")
    stratum = np.full(n, len(order), dtype=np.int64)  # no positive label
    for rank, column in reversed(list(enumerate(order))):
        stratum[labels[:, column]] = rank
    sizes = np.bincount(stratum, minlength=len(order) + 1)
    present = np.flatnonzero(sizes)
    # One row per non-empty stratum (rarest first while they fit), the rest by largest remainder.
    take = np.zeros_like(sizes)
    take[present[:max_rows]] = 1
    left = max_rows - int(take.sum())
    quota = (sizes - take) * left / max(1, int((sizes - take).sum()))
    take += np.floor(quota).astype(np.int64)
    remainder = quota - np.floor(quota)
    for index in np.argsort(-remainder, kind="stable")[: max_rows - int(take.sum())]:
        take[index] += 1
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(stratum == s), size=int(take[s]), replace=False) for s in present
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def robustness_report(
    predict: Predict,
    texts: Sequence[str],
    y_true: npt.ArrayLike,
    seed: int,
    perturbations: Sequence[str] = tuple(PERTURBATIONS),
    max_rows: int | None = None,
) -> RobustnessReport:
    """Return mean ROC-AUC on the texts as they are and under each perturbation, all copies
    scored in one `predict` call (on a stratified subsample of `max_rows` rows if given)."""
    names = check_perturbations(perturbations)
    truth = np.asarray(y_true)
    if truth.shape != (len(texts), len(LABELS)):
        raise ToxiguardError(
            f"y_true must have shape ({len(texts)}, {len(LABELS)}), got {truth.shape}"
        )
    rows = np.arange(len(texts))
    if max_rows is not None:
        rows = stratified_rows(truth, max_rows, seed)
    sample = [texts[int(row)] for row in rows]
    truth = truth[rows]
    batch = list(sample)
    for name in names:
        batch += perturb_texts(sample, name, seed)
    proba = np.asarray(predict(batch), dtype=np.float64)
    if proba.shape != (len(batch), len(LABELS)):
        raise ToxiguardError(
            f"predict returned shape {proba.shape} for {len(batch)} texts, "
            f"expected ({len(batch)}, {len(LABELS)})"
        )
    blocks = proba.reshape(len(names) + 1, len(sample), len(LABELS))
    return RobustnessReport(
        rows=len(sample),
        clean_auc=mean_roc_auc(truth, blocks[0]),
        perturbed={
            name: mean_roc_auc(truth, block) for name, block in zip(names, blocks[1:], strict=True)
        },
    )
