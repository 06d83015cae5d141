"""Live quality from feedback that names some labels only (Perspective suggestions)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from toxiguard.labels import FLAG_COLUMNS, LABELS, SCORE_COLUMNS
from toxiguard.monitoring.feedback import live_quality
from toxiguard.monitoring.tables import LABEL_COLUMNS


def test_unknown_labels_are_left_out_of_that_labels_quality_only() -> None:
    rows = 8
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.random((rows, len(LABELS))), columns=list(SCORE_COLUMNS))
    toxic = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    frame[LABEL_COLUMNS[0]] = toxic
    frame[SCORE_COLUMNS[0]] = np.where(toxic == 1, 0.9, 0.1)  # a perfect ranking
    for flag, score in zip(FLAG_COLUMNS, SCORE_COLUMNS, strict=True):
        frame[flag] = frame[score] >= 0.5
    for column in LABEL_COLUMNS[1:]:
        frame[column] = pd.array([None] * rows, dtype="Int64")
    frame.loc[:1, LABEL_COLUMNS[3]] = [1, 0]  # threat known on two rows only
    quality = live_quality(frame)
    per_label = quality["per_label"]
    assert per_label["toxic"] == {"rows": 8, "positives": 4, "roc_auc": 1.0, "f1": 1.0}
    assert per_label["threat"]["rows"] == 2 and per_label["threat"]["positives"] == 1
    assert per_label["insult"] == {"rows": 0, "positives": 0, "roc_auc": None, "f1": None}
    assert quality["rows"] == rows
