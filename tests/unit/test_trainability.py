"""Data that cannot train a model is refused before anything is fitted, naming label and counts."""

from __future__ import annotations

from toxiguard.data.demo import make_demo_corpus
from toxiguard.data.splits import split_dataset
from toxiguard.data.trainability import dataset_problems, minimum_rows, split_problems

SIZES = {"validation_size": 0.1, "test_size": 0.1}


def test_the_demo_corpus_can_train() -> None:
    frame = make_demo_corpus()
    assert dataset_problems(frame, "demo.csv", **SIZES) == []
    assert split_problems(split_dataset(frame, seed=42, **SIZES), "demo.csv") == []


def test_a_label_of_one_class_is_refused_with_its_counts() -> None:
    frame = make_demo_corpus(n_rows=400)
    frame["threat"] = 1
    frame["identity_hate"] = 0
    problems = {p.column: str(p) for p in dataset_problems(frame, "train.csv", **SIZES)}
    assert set(problems) == {"threat", "identity_hate"}
    assert "every row has threat=1 (400 of 400)" in problems["threat"]
    assert "would flag every comment" in problems["threat"]
    assert "no row has identity_hate=1 (0 of 400)" in problems["identity_hate"]
    assert problems["threat"].startswith("train.csv: column 'threat'")


def test_too_few_rows_to_split_names_the_minimum() -> None:
    assert minimum_rows(0.1, 0.1) == 50 and minimum_rows(0.2, 0.25) == 25
    frame = make_demo_corpus(n_rows=100).head(10)
    (problem, *_) = dataset_problems(frame, "tiny.csv", **SIZES)
    assert "10 rows are too few" in str(problem) and "at least 50" in str(problem)
    empty = dataset_problems(frame.head(0), "empty.csv", **SIZES)
    assert [p.column for p in empty] == [None]  # no label complaint on top of "0 rows"


def test_a_label_missing_from_the_validation_split_is_refused() -> None:
    frame = make_demo_corpus(n_rows=400)
    rare = frame.index[frame["identity_hate"] == 1]
    frame.loc[rare[1:], "identity_hate"] = 0  # one positive row left: it lands in one split only
    splits = split_dataset(frame, seed=42, **SIZES)
    problems = split_problems(splits, "train.csv")
    assert [p.column for p in problems] == ["identity_hate"]
    (problem,) = problems
    where = "train" if int(splits.train["identity_hate"].sum()) == 0 else "validation"
    assert f"the {where} split holds 0 rows with identity_hate=1" in str(problem)


def test_positive_counts_come_from_the_frame_not_its_dtype() -> None:
    frame = make_demo_corpus(n_rows=200)
    frame["obscene"] = frame["obscene"].astype(bool)  # booleans count as 0/1 too
    assert dataset_problems(frame, "train.csv", **SIZES) == []
