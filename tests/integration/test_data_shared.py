"""The data stage on the real shared Jigsaw sample (41,614 rows)."""

from __future__ import annotations

from pathlib import Path

import pytest

from toxiguard.data.splits import split_dataset
from toxiguard.data.validation import Dataset, load_dataset
from toxiguard.labels import LABELS

pytestmark = pytest.mark.integration

# positives per label as stated in ../shared/data/jigsaw/PROVENANCE.md
PROVENANCE_POSITIVES = {
    "toxic": 10_316,
    "severe_toxic": 971,
    "obscene": 5_219,
    "threat": 291,
    "insult": 4_785,
    "identity_hate": 850,
}


@pytest.fixture(scope="module")
def dataset(shared_train_path: Path) -> Dataset:
    return load_dataset(shared_train_path)


def test_shared_file_loads_and_matches_provenance(dataset: Dataset) -> None:
    assert len(dataset.frame) == dataset.rows_read == 41_614
    assert dataset.dropped == {}
    assert dataset.frame[list(LABELS)].sum().to_dict() == PROVENANCE_POSITIVES
    assert dataset.frame["id"].is_unique


@pytest.mark.slow
def test_shared_split_stratifies_rare_labels(dataset: Dataset) -> None:
    splits = split_dataset(dataset.frame, seed=42, validation_size=0.1, test_size=0.1)
    total = len(dataset.frame)
    assert len(splits.train) + len(splits.validation) + len(splits.test) == total
    shares = {"train": 0.8, "validation": 0.1, "test": 0.1}
    for name, part in splits.parts().items():
        assert abs(len(part) - shares[name] * total) <= 0.01 * total
        for label in ("threat", "identity_hate", "severe_toxic"):
            expected = shares[name] * PROVENANCE_POSITIVES[label]
            assert abs(int(part[label].sum()) - expected) <= 2, (name, label)
    again = split_dataset(dataset.frame, seed=42, validation_size=0.1, test_size=0.1)
    assert again.fingerprint == splits.fingerprint
