"""The synthetic demo corpus: deterministic, in Kaggle's format, every label represented."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pandas as pd
import pytest

from toxiguard.data.demo import is_demo_corpus, make_demo_corpus, write_demo_corpus
from toxiguard.data.splits import split_dataset
from toxiguard.data.validation import fingerprint, load_dataset, text_hashes
from toxiguard.errors import ToxiguardError
from toxiguard.labels import ID_COLUMN, LABELS, TEXT_COLUMN
from toxiguard.settings import Settings


def test_same_seed_same_corpus_other_seed_other_corpus() -> None:
    pd.testing.assert_frame_equal(make_demo_corpus(500, seed=3), make_demo_corpus(500, seed=3))
    assert not make_demo_corpus(500, seed=3).equals(make_demo_corpus(500, seed=4))


def test_kaggle_columns_and_ids() -> None:
    frame = make_demo_corpus()
    assert list(frame.columns) == [ID_COLUMN, TEXT_COLUMN, *LABELS]
    assert len(frame) == 3000
    assert frame[ID_COLUMN].is_unique
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in frame[ID_COLUMN])
    assert frame[TEXT_COLUMN].str.strip().ne("").all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prevalences(seed: int) -> None:
    frame = make_demo_corpus(3000, seed=seed)
    prevalence = frame[list(LABELS)].mean()
    assert (prevalence >= 0.03).all(), prevalence.to_dict()
    assert 0.15 <= prevalence["toxic"] <= 0.25
    combos = frame[list(LABELS)].sum(axis=1)
    assert (combos >= 3).sum() > 50  # multi-label rows exist


def test_labels_follow_the_text_but_not_perfectly() -> None:
    frame = make_demo_corpus(3000, seed=0)
    threat_words = frame[TEXT_COLUMN].str.contains(
        "I will hurt you|I will find you|watch your back", case=False
    )
    agreement = (threat_words == frame["threat"].astype(bool)).mean()
    assert 0.9 < agreement < 1.0
    hard = frame[TEXT_COLUMN].str.contains(r"\bstupid\b|\bhurt\b|\bkill\b") & (frame["toxic"] == 0)
    assert hard.sum() > 20  # benign rows that share words with toxic ones


@pytest.mark.parametrize("name", ["train.csv", "train.csv.gz"])
def test_written_corpus_passes_validation(tmp_path: Path, name: str) -> None:
    path = write_demo_corpus(tmp_path / "demo" / name, n_rows=400, seed=1)
    dataset = load_dataset(path)
    assert dataset.fingerprint == fingerprint(make_demo_corpus(400, seed=1))
    text = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    assert text.startswith(b'"id","comment_text","toxic",')
    assert re.search(rb'^"[0-9a-f]{16}",".*",[01],[01],[01],[01],[01],[01]$', text, re.M)


def test_gzip_output_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    first = write_demo_corpus(tmp_path / "a" / "train.csv.gz", n_rows=200).read_bytes()
    assert write_demo_corpus(tmp_path / "b" / "train.csv.gz", n_rows=200).read_bytes() == first


def test_bad_arguments() -> None:
    with pytest.raises(ToxiguardError, match="at least 100 rows"):
        make_demo_corpus(10)
    with pytest.raises(ToxiguardError, match=r"\.csv or \.csv\.gz"):
        write_demo_corpus(Path("corpus.parquet"))


def test_the_gate_can_compare_models_trained_on_the_demo() -> None:
    # The gate compares a new version with the champion on test comments the champion was not
    # trained or tuned on; on the default corpus and split there must be enough of them.
    settings = Settings()
    splits = split_dataset(
        make_demo_corpus(),
        seed=settings.seed,
        validation_size=settings.validation_size,
        test_size=settings.test_size,
    )
    seen = set(text_hashes([*splits.train[TEXT_COLUMN], *splits.validation[TEXT_COLUMN]]))
    unseen = [h for h in text_hashes(list(splits.test[TEXT_COLUMN])) if h not in seen]
    assert len(unseen) >= settings.promotion_min_test_rows


def test_a_written_corpus_is_marked_as_the_demo_until_it_changes(tmp_path: Path) -> None:
    path = write_demo_corpus(tmp_path / "train.csv", n_rows=200)
    assert is_demo_corpus(path)
    copy = tmp_path / "copy.csv"
    copy.write_bytes(path.read_bytes())
    assert not is_demo_corpus(copy)  # no marker beside it: not known to be the demo
    with path.open("a") as handle:
        handle.write('"extra","a real comment",0,0,0,0,0,0\n')
    assert not is_demo_corpus(path)  # changed since it was written
    assert not is_demo_corpus(tmp_path / "missing.csv")
