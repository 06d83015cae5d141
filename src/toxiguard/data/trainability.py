"""Whether a validated dataset can train a model, checked before anything is fitted or registered.

The rules (every problem found is reported, each naming the label and its counts):
- enough rows to split: validation and test each get at least `MIN_SPLIT_ROWS` rows;
- every label has both classes in the file: no positive row means the label cannot be learned,
  and a label that is 1 on every row (a broken column) would make a model that flags every
  comment;
- after splitting, every label has both classes in the training split (to fit) and in the
  validation split (to tune its threshold). The test split may lack one: that label's test
  ROC-AUC is then undefined and the gate compares the others.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import pandas as pd

from toxiguard.data.splits import Splits
from toxiguard.errors import Problem
from toxiguard.labels import LABELS

#: The fewest rows the validation and the test split may hold.
MIN_SPLIT_ROWS: Final = 5
#: The splits whose labels must each hold both classes.
CHECKED_SPLITS: Final = ("train", "validation")


def minimum_rows(validation_size: float, test_size: float) -> int:
    """Return the fewest rows that give validation and test `MIN_SPLIT_ROWS` rows each."""
    return math.ceil(MIN_SPLIT_ROWS / min(validation_size, test_size))


def dataset_problems(
    frame: pd.DataFrame, source: str, *, validation_size: float, test_size: float
) -> list[Problem]:
    """Return why a dataset cannot train a model: too few rows, or a label of one class only."""
    rows = len(frame)
    needed = minimum_rows(validation_size, test_size)
    problems = []
    if rows < needed:
        problems.append(
            Problem(
                source,
                None,
                (),
                f"{rows} rows are too few to split into training, validation and test: at least "
                f"{needed} are needed (validation_size {validation_size}, test_size {test_size})",
            )
        )
    for label in LABELS:
        positives = int(np.count_nonzero(frame[label].to_numpy()))
        if rows and positives == 0:
            message = f"no row has {label}=1 (0 of {rows:,}): a model cannot learn this label"
        elif rows and positives == rows:
            message = (
                f"every row has {label}=1 ({rows:,} of {rows:,}): a model of it would flag every "
                f"comment; check the file's {label} column"
            )
        else:
            continue
        problems.append(Problem(source, label, (), message))
    return problems


def split_problems(splits: Splits, source: str) -> list[Problem]:
    """Return the labels that lack a class in the training or validation split, with counts."""
    problems = []
    parts = splits.parts()
    for name in CHECKED_SPLITS:
        part = parts[name]
        for label in LABELS:
            positives = int(np.count_nonzero(part[label].to_numpy()))
            negatives = len(part) - positives
            if positives and negatives:
                continue
            purpose = "fit the label" if name == "train" else "tune its threshold"
            problems.append(
                Problem(
                    source,
                    label,
                    (),
                    f"the {name} split holds {positives:,} rows with {label}=1 and {negatives:,} "
                    f"without; both are needed to {purpose} (more rows, or a larger "
                    f"{'TOXIGUARD_VALIDATION_SIZE' if name == 'validation' else 'file'})",
                )
            )
    return problems


__all__ = ["MIN_SPLIT_ROWS", "dataset_problems", "minimum_rows", "split_problems"]
