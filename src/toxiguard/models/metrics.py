"""The one per-label ROC-AUC: every report, parity check and live-quality number uses it.

It sits with the models (the lowest layer that needs it: the transformer's ONNX parity check
runs inside `fit`); training's evaluation and monitoring's live quality call it too.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score

from toxiguard.labels import LABELS


def roc_auc(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> float | None:
    """Return one label's ROC-AUC, None when its rows hold a single class."""
    y = np.asarray(y_true)
    positives = int(np.count_nonzero(y))
    if not 0 < positives < len(y):
        return None
    return float(roc_auc_score(y, np.asarray(y_prob, dtype=np.float64)))


def label_roc_aucs(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> dict[str, float | None]:
    """Return each label's ROC-AUC, None for a label whose rows hold a single class."""
    truth = np.asarray(y_true)
    prob = np.asarray(y_prob, dtype=np.float64)
    return {
        label: roc_auc(truth[:, column], prob[:, column]) for column, label in enumerate(LABELS)
    }


def mean_defined(values: dict[str, float | None]) -> float | None:
    """Return the mean of the defined values, or None when there is none."""
    defined = [value for value in values.values() if value is not None]
    return float(np.mean(defined)) if defined else None


def mean_roc_auc(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> float | None:
    """Return the mean ROC-AUC over the labels that have both classes, or None if none has."""
    return mean_defined(label_roc_aucs(y_true, y_prob))
