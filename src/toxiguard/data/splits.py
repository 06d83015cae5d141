"""Seeded train/validation/test splits stratified on the six labels, saved as parquet."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from toxiguard.data.readers import read_table
from toxiguard.data.validation import canonical_frame, fingerprint, label_matrix
from toxiguard.errors import DataValidationError, Problem, ToxiguardError
from toxiguard.labels import LABELS

logger = logging.getLogger(__name__)

SPLIT_PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class Splits:
    """A seeded train/validation/test split of one dataset, stratified on the six labels."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    seed: int
    source_fingerprint: str

    def parts(self) -> dict[str, pd.DataFrame]:
        """Return the three parts by name, in order train, validation, test."""
        return {"train": self.train, "validation": self.validation, "test": self.test}

    @property
    def fingerprint(self) -> str:
        """Return the sha256 hex digest over the three parts' fingerprints, in order."""
        lines = [f"{name}:{fingerprint(part)}\n" for name, part in self.parts().items()]
        return hashlib.sha256("".join(lines).encode("ascii")).hexdigest()

    def summary(self) -> dict[str, Any]:
        """Return rows and positives per label for each part (JSON-safe)."""
        return {
            name: {
                "rows": len(part),
                "positives": {label: int(part[label].sum()) for label in LABELS},
            }
            for name, part in self.parts().items()
        }


def split_dataset(
    frame: pd.DataFrame, *, seed: int, validation_size: float, test_size: float
) -> Splits:
    """Return a seeded split by multi-label iterative stratification on the six labels.

    Two steps: the test part is held out from all rows, then validation from the rest. Each part
    keeps the rows in their original order.
    """
    if not (0 < validation_size < 1 and 0 < test_size < 1 and validation_size + test_size < 1):
        raise ToxiguardError(
            f"split sizes must be in (0, 1) and sum below 1: validation {validation_size}, "
            f"test {test_size}"
        )
    labels = label_matrix(frame)
    if len(frame) < 3 or min(validation_size, test_size) * len(frame) < 1:
        raise ToxiguardError(f"too few rows to split: {len(frame)}")

    def hold_out(rows: npt.NDArray[np.int64], share: float) -> tuple[Any, Any]:
        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=share, random_state=seed)
        kept, held = next(splitter.split(np.zeros(len(rows)), labels[rows]))
        return np.sort(rows[kept]), np.sort(rows[held])

    rest, test = hold_out(np.arange(len(frame)), test_size)
    train, validation = hold_out(rest, validation_size / (1 - test_size))

    def part(rows: npt.NDArray[np.int64]) -> pd.DataFrame:
        return frame.iloc[rows].reset_index(drop=True)

    return Splits(
        part(train), part(validation), part(test), seed=seed, source_fingerprint=fingerprint(frame)
    )


def save_splits(splits: Splits, directory: str | Path) -> Path:
    """Return the directory after writing the three parts as parquet and splits.json."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    parts = {}
    for name, part in splits.parts().items():
        part.to_parquet(target / f"{name}.parquet", index=False)
        parts[name] = {"file": f"{name}.parquet", "fingerprint": fingerprint(part)}
    manifest = {
        "format": 1,
        "seed": splits.seed,
        "source_fingerprint": splits.source_fingerprint,
        "fingerprint": splits.fingerprint,
        "parts": parts,
        "summary": splits.summary(),
    }
    (target / "splits.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return target


def load_splits(directory: str | Path) -> Splits:
    """Return the splits saved in `directory`, or raise if a part does not match its fingerprint."""
    target = Path(directory)
    manifest_file = target / "splits.json"
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        recorded = {name: manifest["parts"][name]["fingerprint"] for name in SPLIT_PARTS}
        seed, source = int(manifest["seed"]), str(manifest["source_fingerprint"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataValidationError.single(manifest_file, f"cannot read: {error!r}") from error
    frames, problems = {}, []
    for name in SPLIT_PARTS:
        file = target / f"{name}.parquet"
        try:
            frames[name] = canonical_frame(read_table(file))
            found = fingerprint(frames[name])
        except (DataValidationError, KeyError) as error:
            problems.append(Problem(str(file), None, (), f"cannot read split: {error}"))
            continue
        if found != recorded[name]:
            message = (
                f"content does not match the fingerprint in splits.json "
                f"(expected {recorded[name][:12]}…, found {found[:12]}…); the split was changed"
            )
            problems.append(Problem(str(file), None, (), message))
    if problems:
        raise DataValidationError(problems)
    return Splits(frames["train"], frames["validation"], frames["test"], seed, source)
