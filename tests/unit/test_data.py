"""Loading, validation, reading comments, fingerprints and splits, on small files made here."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toxiguard.data.readers import iter_comment_chunks, read_comments
from toxiguard.data.splits import load_splits, save_splits, split_dataset
from toxiguard.data.validation import fingerprint, label_matrix, load_dataset
from toxiguard.errors import DataValidationError, ToxiguardError
from toxiguard.labels import ID_COLUMN, LABELS, TEXT_COLUMN

HEADER = [ID_COLUMN, TEXT_COLUMN, *LABELS]
ROWS = [
    ["0000997932d777bf", "Explanation\nWhy the edits were reverted?", 0, 0, 0, 0, 0, 0],
    ["000103f0d9cfb60f", "You are an idiot.", 1, 0, 0, 0, 1, 0],
    ["000113f07ec002fd", "NA", 0, 0, 0, 0, 0, 0],
    ["0001b41b1c6bb37e", "I will find you, you [expletive] [slur].", 1, 1, 1, 1, 1, 1],
]


def csv_text(rows: Sequence[Sequence[object]], header: list[str] = HEADER) -> str:
    """Return rows as Kaggle-style CSV text (strings quoted, numbers bare)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write(path: Path, rows: Sequence[Sequence[object]], header: list[str] = HEADER) -> Path:
    """Write rows to `path` in the format its name says (csv, csv.gz, csv.zip, parquet)."""
    text = csv_text(rows, header)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    elif path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(path.name.removesuffix(".zip"), text)
    elif path.name.endswith(".parquet"):
        pd.read_csv(io.StringIO(text), dtype={ID_COLUMN: str}, keep_default_na=False).to_parquet(
            path, index=False
        )
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> tuple[str, DataValidationError]:
    """Return the message and error raised by load_dataset(path)."""
    with pytest.raises(DataValidationError) as caught:
        load_dataset(path)
    return str(caught.value), caught.value


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("name", ["train.csv", "train.csv.gz", "train.csv.zip", "train.parquet"])
def test_every_format_loads_the_same_frame(tmp_path: Path, name: str) -> None:
    dataset = load_dataset(write(tmp_path / name, ROWS))
    frame = dataset.frame
    assert list(frame.columns) == HEADER
    assert isinstance(frame.index, pd.RangeIndex)
    assert frame[ID_COLUMN].tolist() == [row[0] for row in ROWS]
    assert frame[TEXT_COLUMN].tolist() == [row[1] for row in ROWS]
    assert all(frame[label].dtype == np.int8 for label in LABELS)
    assert label_matrix(frame).tolist() == [row[2:] for row in ROWS]
    assert dataset.rows_read == 4
    assert dataset.dropped == {}
    assert dataset.source == str(tmp_path / name)
    reference = load_dataset(write(tmp_path / "reference.csv", ROWS))
    assert dataset.fingerprint == reference.fingerprint


def test_na_and_null_texts_stay_text(tmp_path: Path) -> None:
    rows = [["a1", "NA", 0, 0, 0, 0, 0, 0], ["a2", "null", 0, 0, 0, 0, 0, 0]]
    rows.append(["a3", "N/A", 1, 0, 0, 0, 0, 0])
    frame = load_dataset(write(tmp_path / "train.csv", rows)).frame
    assert frame[TEXT_COLUMN].tolist() == ["NA", "null", "N/A"]


def test_extra_columns_are_ignored(tmp_path: Path) -> None:
    rows = [[*row, "extra", 3.5] for row in ROWS]
    dataset = load_dataset(write(tmp_path / "train.csv", rows, [*HEADER, "note", "score"]))
    assert list(dataset.frame.columns) == HEADER
    assert dataset.fingerprint == load_dataset(write(tmp_path / "b.csv", ROWS)).fingerprint


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(b"\xef\xbb\xbf" + csv_text(ROWS).encode())
    assert len(load_dataset(path).frame) == 4


def test_parquet_with_integer_and_boolean_labels(tmp_path: Path) -> None:
    frame = pd.DataFrame({ID_COLUMN: ["a", "b"], TEXT_COLUMN: ["x", "y"]})
    for label in LABELS:
        frame[label] = [True, False] if label == "toxic" else np.array([0, 1], dtype=np.int64)
    frame.to_parquet(tmp_path / "train.parquet", index=False)
    loaded = load_dataset(tmp_path / "train.parquet").frame
    assert label_matrix(loaded).tolist() == [[1, 0, 0, 0, 0, 0], [0, 1, 1, 1, 1, 1]]


def test_zip_with_several_files_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "train.csv.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train.csv", csv_text(ROWS))
        archive.writestr("other.csv", csv_text(ROWS))
    message, _ = problems_of(path)
    assert "exactly one CSV" in message and "train.csv.zip" in message


def test_corrupt_gzip_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "train.csv.gz"
    path.write_bytes(b"this is not gzip")
    message, _ = problems_of(path)
    assert "train.csv.gz" in message and "cannot read file" in message


# --------------------------------------------------------------------------- the test pair


TEST_ROWS = [["t1", "hello there"], ["t2", "you moron"], ["t3", "   "], ["t4", "kind words"]]
TEST_LABELS = [
    ["t1", 0, 0, 0, 0, 0, 0],
    ["t2", 1, 0, 0, 0, 1, 0],
    ["t3", -1, -1, -1, -1, -1, -1],
    ["t4", -1, -1, -1, -1, -1, -1],
]


def write_pair(directory: Path, suffix: str = ".csv") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write(directory / f"test_labels{suffix}", TEST_LABELS, [ID_COLUMN, *LABELS])
    return write(directory / f"test{suffix}", TEST_ROWS, [ID_COLUMN, TEXT_COLUMN])


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".csv.zip"])
def test_test_pair_is_joined_and_unscored_rows_dropped(tmp_path: Path, suffix: str) -> None:
    dataset = load_dataset(write_pair(tmp_path, suffix))
    assert dataset.frame[ID_COLUMN].tolist() == ["t1", "t2"]
    assert dataset.frame[TEXT_COLUMN].tolist() == ["hello there", "you moron"]
    assert label_matrix(dataset.frame).tolist() == [[0] * 6, [1, 0, 0, 0, 1, 0]]
    assert dataset.rows_read == 4
    assert dataset.dropped == {f"test_labels{suffix}: labels are -1 (not scored)": 2}
    assert dataset.source == f"{tmp_path / f'test{suffix}'} + {tmp_path / f'test_labels{suffix}'}"


def test_test_pair_order_follows_test_csv(tmp_path: Path) -> None:
    write(tmp_path / "test_labels.csv", TEST_LABELS[::-1], [ID_COLUMN, *LABELS])
    path = write(tmp_path / "test.csv", TEST_ROWS, [ID_COLUMN, TEXT_COLUMN])
    assert load_dataset(path).frame[ID_COLUMN].tolist() == ["t1", "t2"]


def test_test_pair_partial_minus_one_is_an_error(tmp_path: Path) -> None:
    labels = [row[:] for row in TEST_LABELS]
    labels[1] = ["t2", 1, -1, 0, 0, 1, 0]
    write(tmp_path / "test_labels.csv", labels, [ID_COLUMN, *LABELS])
    path = write(tmp_path / "test.csv", TEST_ROWS, [ID_COLUMN, TEXT_COLUMN])
    message, _ = problems_of(path)
    assert (
        "test_labels.csv: row 2: column 'severe_toxic': labels must be 0 or 1, found -1" in message
    )


def test_test_pair_ids_must_match(tmp_path: Path) -> None:
    write(tmp_path / "test_labels.csv", TEST_LABELS[:3], [ID_COLUMN, *LABELS])
    path = write(tmp_path / "test.csv", TEST_ROWS, [ID_COLUMN, TEXT_COLUMN])
    message, _ = problems_of(path)
    assert "test.csv: row 4: column 'id': ids not found in test_labels.csv" in message


def test_test_csv_without_labels_names_the_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path / "test.csv", TEST_ROWS, [ID_COLUMN, TEXT_COLUMN])
    message, _ = problems_of(path)
    assert "missing required columns: 'toxic'" in message
    assert "no test_labels.csv" in message


def test_directory_prefers_train_then_the_test_pair(tmp_path: Path) -> None:
    write_pair(tmp_path / "raw")
    assert load_dataset(tmp_path / "raw").rows_read == 4  # the test pair
    write(tmp_path / "raw" / "train.csv.gz", ROWS)
    dataset = load_dataset(tmp_path / "raw")
    assert dataset.source == str(tmp_path / "raw" / "train.csv.gz")
    assert len(dataset.frame) == 4 and dataset.dropped == {}


def test_directory_without_data_is_an_error(tmp_path: Path) -> None:
    message, _ = problems_of(tmp_path)
    assert str(tmp_path) in message and "train.csv" in message


# --------------------------------------------------------------------------- each validation error


def test_missing_file(tmp_path: Path) -> None:
    message, _ = problems_of(tmp_path / "nowhere" / "train.csv")
    assert message == f"{tmp_path / 'nowhere' / 'train.csv'}: file not found"


@pytest.mark.parametrize("name", ["train.xlsx", "train.json", "train"])
def test_unsupported_extension(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("id\n1\n")
    message, _ = problems_of(tmp_path / name)
    assert name in message and "unsupported file format" in message and ".parquet" in message


def test_missing_columns_are_named(tmp_path: Path) -> None:
    header = [c for c in HEADER if c not in ("threat", TEXT_COLUMN)]
    rows = [[v for c, v in zip(HEADER, row, strict=True) if c in header] for row in ROWS]
    message, error = problems_of(write(tmp_path / "train.csv", rows, header))
    assert "train.csv" in message
    assert "missing required columns: 'comment_text', 'threat'" in message
    assert len(error.problems) == 1


def test_labels_not_zero_or_one(tmp_path: Path) -> None:
    rows = [row[:] for row in ROWS]
    rows[2][2] = 2
    rows[3][2] = "x"
    rows[0][5] = 1.0
    message, error = problems_of(write(tmp_path / "train.csv", rows))
    assert (
        f"{tmp_path / 'train.csv'}: rows 3, 4: column 'toxic': labels must be 0 or 1, " in message
    )
    assert "found 2, 'x'" in message
    assert "row 1: column 'threat': labels must be 0 or 1, found 1.0" in message
    assert {(p.column, p.rows) for p in error.problems} == {("toxic", (3, 4)), ("threat", (1,))}


def test_empty_label_cell(tmp_path: Path) -> None:
    text = csv_text(ROWS).replace('"You are an idiot.",1,', '"You are an idiot.",,')
    (tmp_path / "train.csv").write_text(text)
    message, _ = problems_of(tmp_path / "train.csv")
    assert "row 2: column 'toxic': labels must be 0 or 1, found ''" in message


def test_duplicate_ids(tmp_path: Path) -> None:
    rows = [row[:] for row in ROWS]
    rows[3][0] = rows[1][0]
    message, error = problems_of(write(tmp_path / "train.csv", rows))
    assert "train.csv: rows 2, 4: column 'id': duplicate ids: '000103f0d9cfb60f'" in message
    assert error.problems[0].rows == (2, 4)


def test_empty_text(tmp_path: Path) -> None:
    rows = [row[:] for row in ROWS]
    rows[1][1] = ""
    message, _ = problems_of(write(tmp_path / "train.csv", rows))
    assert (
        message == f"{tmp_path / 'train.csv'}: row 2: column 'comment_text': comment_text is empty"
    )


def test_whitespace_only_text(tmp_path: Path) -> None:
    rows = [row[:] for row in ROWS]
    rows[0][1] = " \n\t "
    rows[2][1] = "  "
    message, _ = problems_of(write(tmp_path / "train.csv", rows))
    expected = "train.csv: rows 1, 3: column 'comment_text': comment_text is only whitespace"
    assert message.endswith(expected)


def test_missing_id(tmp_path: Path) -> None:
    rows = [row[:] for row in ROWS]
    rows[2][0] = ""
    rows[3][0] = " "
    message, _ = problems_of(write(tmp_path / "train.csv", rows))
    assert message.endswith("train.csv: rows 3, 4: column 'id': id is missing")


def test_bad_utf8_names_the_data_row_not_the_line(tmp_path: Path) -> None:
    # row 1 spans two lines, so the bad byte in data row 3 sits on file line 5
    text = csv_text(ROWS).encode().replace(b"NA", b"N\xff")
    (tmp_path / "train.csv").write_bytes(text)
    message, error = problems_of(tmp_path / "train.csv")
    assert error.problems[0].rows == (3,)
    assert "train.csv: row 3: not valid UTF-8: byte 0xff" in message
    assert "line 5" in message


def test_every_bad_utf8_row_is_reported_and_the_other_rows_still_checked(tmp_path: Path) -> None:
    rows = [row[:] for row in ROWS]
    rows[3][2] = 7  # a bad label in a row that decodes
    text = csv_text(rows).encode().replace(b"NA", b"N\xff").replace(b"idiot", b"idi\xe9\xe9t")
    (tmp_path / "train.csv").write_bytes(text)
    _message, error = problems_of(tmp_path / "train.csv")
    utf8, label = error.problems
    assert utf8.rows == (2, 3)
    offsets = [text.index(b"\xe9"), text.index(b"\xe9") + 1, text.index(b"\xff")]
    for offset in offsets:
        assert f"byte offset {offset}" in utf8.message
    assert label.rows == (4,) and label.column == "toxic" and "found 7" in label.message
    # Training reads strictly: the same file is refused with the same rows named.
    with pytest.raises(DataValidationError) as caught:
        read_comments(tmp_path / "train.csv")
    assert caught.value.problems[0].rows == (2, 3)


def test_bad_utf8_in_gzip_and_in_header(tmp_path: Path) -> None:
    text = csv_text(ROWS).encode()
    (tmp_path / "train.csv.gz").write_bytes(gzip.compress(text.replace(b"idiot", b"idi\xe9t")))
    message, error = problems_of(tmp_path / "train.csv.gz")
    assert error.problems[0].rows == (2,) and "byte 0xe9" in message
    (tmp_path / "h.csv").write_bytes(text.replace(b"toxic", b"t\xf6xic", 1))
    message, error = problems_of(tmp_path / "h.csv")
    assert "header is not valid UTF-8" in message and error.problems[0].rows == ()


def test_malformed_csv(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text(csv_text(ROWS) + '"a","b",0,0,0,0,0,0,7,8\n')
    message, _ = problems_of(tmp_path / "train.csv")
    assert "train.csv: not a readable CSV" in message


def test_parquet_null_text_and_id(tmp_path: Path) -> None:
    frame = pd.DataFrame({ID_COLUMN: ["a", None, "c"], TEXT_COLUMN: ["x", "y", None]})
    for label in LABELS:
        frame[label] = np.array([0, 1, 0], dtype=np.int8)
    frame.to_parquet(tmp_path / "train.parquet", index=False)
    message, _ = problems_of(tmp_path / "train.parquet")
    assert "row 2: column 'id': id is missing" in message
    assert "row 3: column 'comment_text': comment_text is missing" in message


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    rows = [row[:] for row in ROWS]
    rows[0][1] = ""
    rows[1][6] = 5
    rows[2][0] = rows[3][0]
    message, error = problems_of(write(tmp_path / "train.csv", rows))
    columns = sorted(str(p.column) for p in error.problems)
    assert columns == ["comment_text", "id", "insult"]
    assert message.count("train.csv") == 3


# --------------------------------------------------------------------------- comments for scoring


def test_read_comments_keeps_every_column_as_text(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('"key","comment_text","score"\n"007","NA",1.50\n"008","",2\n')
    frame = read_comments(path)
    assert list(frame.columns) == ["key", "comment_text", "score"]
    assert frame.to_dict("list") == {
        "key": ["007", "008"],
        "comment_text": ["NA", ""],
        "score": ["1.50", "2"],
    }


def test_read_comments_parquet_keeps_types_and_blanks_missing_text(tmp_path: Path) -> None:
    pd.DataFrame({"n": [1, 2], "text": ["a", None]}).to_parquet(tmp_path / "c.parquet")
    frame = read_comments(tmp_path / "c.parquet", text_column="text")
    assert frame["text"].tolist() == ["a", ""]
    assert frame["n"].tolist() == [1, 2]


def test_read_comments_errors(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="file not found"):
        read_comments(tmp_path / "missing.csv")
    (tmp_path / "in.csv").write_text('"text"\n"a"\n')
    with pytest.raises(DataValidationError, match="missing text column 'comment_text'"):
        read_comments(tmp_path / "in.csv")
    pd.DataFrame({"comment_text": [1.5, 2.5]}).to_parquet(tmp_path / "n.parquet")
    with pytest.raises(DataValidationError, match=r"rows 1, 2: column 'comment_text': values"):
        read_comments(tmp_path / "n.parquet")


@pytest.mark.parametrize("name", ["c.csv", "c.csv.gz", "c.csv.zip", "c.parquet"])
def test_iter_comment_chunks_covers_every_row_in_order(tmp_path: Path, name: str) -> None:
    rows: list[list[object]] = [[f"id{i}", f"comment {i}\nline two", i % 2] for i in range(25)]
    path = write(tmp_path / name, rows, ["id", "comment_text", "flag"])
    chunks = list(iter_comment_chunks(path, chunk_size=10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    joined = pd.concat(chunks, ignore_index=True)
    assert list(joined.columns) == ["id", "comment_text", "flag"]
    assert joined["comment_text"].tolist() == [row[1] for row in rows]
    assert joined.astype(str).equals(read_comments(path).astype(str))


def test_iter_comment_chunks_checks_the_column_before_iterating(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv.gz", [["a", "b"]], ["id", "text"])
    with pytest.raises(DataValidationError, match="missing text column 'comment_text'"):
        iter_comment_chunks(path, chunk_size=5)
    with pytest.raises(DataValidationError, match="unsupported file format"):
        iter_comment_chunks(tmp_path / "c.txt", chunk_size=5)


def test_iter_comment_chunks_reports_bad_utf8_row(tmp_path: Path) -> None:
    rows: list[list[object]] = [[f"id{i}", f"comment {i}"] for i in range(3000)]
    text = csv_text(rows, ["id", "comment_text"]).encode()
    (tmp_path / "c.csv").write_bytes(text.replace(b"comment 2500", b"comment \xff2500"))
    chunks = iter_comment_chunks(tmp_path / "c.csv", chunk_size=100)
    with pytest.raises(DataValidationError) as caught:
        list(chunks)
    assert caught.value.problems[0].rows == (2501,)


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_depends_on_content_only(tmp_path: Path) -> None:
    frame = load_dataset(write(tmp_path / "train.csv", ROWS)).frame
    same = frame.copy()
    same.index = pd.RangeIndex(10, 14)
    for label in LABELS:
        same[label] = same[label].astype(np.int64)
    assert fingerprint(same) == fingerprint(frame)
    assert len(fingerprint(frame)) == 64
    changed_text = frame.copy()
    changed_text.loc[1, TEXT_COLUMN] = "You are an idiot!"
    changed_label = frame.copy()
    changed_label.loc[2, "threat"] = 1
    reordered = frame.iloc[[1, 0, 2, 3]].reset_index(drop=True)
    digests = {fingerprint(f) for f in (frame, changed_text, changed_label, reordered)}
    assert len(digests) == 4


def test_fingerprint_cannot_be_fooled_by_moving_text_between_columns() -> None:
    a = pd.DataFrame({ID_COLUMN: ["a,b"], TEXT_COLUMN: ["c"]} | {label: [0] for label in LABELS})
    b = pd.DataFrame({ID_COLUMN: ["a"], TEXT_COLUMN: ["b,c"]} | {label: [0] for label in LABELS})
    assert fingerprint(a) != fingerprint(b)


def test_label_matrix_needs_the_labels() -> None:
    with pytest.raises(ToxiguardError, match="label columns"):
        label_matrix(pd.DataFrame({"toxic": [1]}))


# --------------------------------------------------------------------------- splits


def labelled_frame(n: int = 3000, seed: int = 3) -> pd.DataFrame:
    """Return n rows with correlated multi-labels; threat and identity_hate are rare (~3%)."""
    rng = np.random.default_rng(seed)
    toxic = rng.random(n) < 0.25
    frame = pd.DataFrame({ID_COLUMN: [f"{i:016x}" for i in range(n)], TEXT_COLUMN: ["t"] * n})
    shares = {"severe_toxic": 0.15, "obscene": 0.5, "threat": 0.12, "insult": 0.5}
    shares["identity_hate"] = 0.12
    frame["toxic"] = toxic.astype(np.int8)
    for label, share in shares.items():
        frame[label] = (toxic & (rng.random(n) < share)).astype(np.int8)
    return frame[HEADER]


def test_split_is_disjoint_complete_and_sized() -> None:
    frame = labelled_frame()
    splits = split_dataset(frame, seed=1, validation_size=0.1, test_size=0.2)
    ids = [set(part[ID_COLUMN]) for part in (splits.train, splits.validation, splits.test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert ids[0] | ids[1] | ids[2] == set(frame[ID_COLUMN])
    assert abs(len(splits.test) - 600) <= 30
    assert abs(len(splits.validation) - 300) <= 30
    for part in (splits.train, splits.validation, splits.test):
        assert isinstance(part.index, pd.RangeIndex)
        assert part[ID_COLUMN].is_monotonic_increasing  # original order kept
        assert list(part.columns) == HEADER
    assert splits.source_fingerprint == fingerprint(frame)


def test_split_keeps_label_prevalence_in_every_part() -> None:
    frame = labelled_frame()
    splits = split_dataset(frame, seed=7, validation_size=0.1, test_size=0.1)
    whole = frame[list(LABELS)].sum()
    for part, share in ((splits.train, 0.8), (splits.validation, 0.1), (splits.test, 0.1)):
        positives = part[list(LABELS)].sum()
        for label in LABELS:
            # iterative stratification places positives almost exactly: within 2 rows of the share
            assert abs(positives[label] - share * whole[label]) <= 2, (label, share)


def test_split_beats_chance_on_rare_labels() -> None:
    """A plain random split of the same sizes misses the rare-label shares by far more."""
    frame = labelled_frame()
    splits = split_dataset(frame, seed=0, validation_size=0.1, test_size=0.1)
    expected = 0.1 * frame["threat"].sum()
    stratified = abs(splits.test["threat"].sum() - expected)
    rng = np.random.default_rng(0)
    random_errors = [
        abs(frame["threat"].to_numpy()[rng.permutation(len(frame))[:300]].sum() - expected)
        for _ in range(50)
    ]
    assert stratified < float(np.mean(random_errors))


def test_same_seed_reproduces_and_other_seed_differs() -> None:
    frame = labelled_frame()
    first = split_dataset(frame, seed=5, validation_size=0.1, test_size=0.1)
    again = split_dataset(frame, seed=5, validation_size=0.1, test_size=0.1)
    other = split_dataset(frame, seed=6, validation_size=0.1, test_size=0.1)
    assert first.fingerprint == again.fingerprint
    pd.testing.assert_frame_equal(first.test, again.test)
    assert other.fingerprint != first.fingerprint
    assert set(other.test[ID_COLUMN]) != set(first.test[ID_COLUMN])


@pytest.mark.parametrize(("validation", "test"), [(0.0, 0.1), (0.6, 0.5), (0.1, 1.0)])
def test_split_sizes_are_checked(validation: float, test: float) -> None:
    with pytest.raises(ToxiguardError, match="split sizes"):
        split_dataset(labelled_frame(), seed=0, validation_size=validation, test_size=test)


def test_split_refuses_too_few_rows() -> None:
    with pytest.raises(ToxiguardError, match="too few rows"):
        split_dataset(labelled_frame(5), seed=0, validation_size=0.1, test_size=0.1)


def test_summary_counts_rows_and_positives() -> None:
    splits = split_dataset(labelled_frame(), seed=0, validation_size=0.1, test_size=0.1)
    summary = json.loads(json.dumps(splits.summary()))
    assert list(summary) == ["train", "validation", "test"]
    assert summary["test"]["rows"] == len(splits.test)
    assert summary["validation"]["positives"]["threat"] == int(splits.validation["threat"].sum())


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    splits = split_dataset(labelled_frame(), seed=2, validation_size=0.1, test_size=0.1)
    directory = save_splits(splits, tmp_path / "splits" / "abc")
    assert sorted(p.name for p in directory.iterdir()) == [
        "splits.json",
        "test.parquet",
        "train.parquet",
        "validation.parquet",
    ]
    manifest = json.loads((directory / "splits.json").read_text())
    assert manifest["fingerprint"] == splits.fingerprint
    assert manifest["seed"] == 2 and manifest["summary"] == splits.summary()
    loaded = load_splits(directory)
    assert loaded.fingerprint == splits.fingerprint
    assert (loaded.seed, loaded.source_fingerprint) == (2, splits.source_fingerprint)
    for name, part in loaded.parts().items():
        pd.testing.assert_frame_equal(part, splits.parts()[name])


def test_tampered_split_is_detected(tmp_path: Path) -> None:
    splits = split_dataset(labelled_frame(), seed=2, validation_size=0.1, test_size=0.1)
    directory = save_splits(splits, tmp_path)
    tampered = pd.read_parquet(directory / "validation.parquet")
    tampered["toxic"] = tampered["toxic"].where(tampered.index != 0, 1 - tampered["toxic"])
    tampered.to_parquet(directory / "validation.parquet", index=False)
    with pytest.raises(DataValidationError) as caught:
        load_splits(directory)
    assert [Path(p.file).name for p in caught.value.problems] == ["validation.parquet"]
    assert "does not match the fingerprint" in str(caught.value)


def test_missing_split_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"splits\.json: cannot read"):
        load_splits(tmp_path)
    splits = split_dataset(labelled_frame(), seed=2, validation_size=0.1, test_size=0.1)
    directory = save_splits(splits, tmp_path)
    (directory / "test.parquet").unlink()
    with pytest.raises(DataValidationError, match=r"test\.parquet: cannot read split"):
        load_splits(directory)
