"""Load, validate and fingerprint the labelled Kaggle files (file formats: `readers`).

Row numbers in every error are 1-based *data* rows: the header is not counted, so row 1 is
the first record after the header (a record whose text spans several lines is still one row).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from toxiguard.data.readers import as_text, read_table, read_table_leniently, stem_of
from toxiguard.errors import DataValidationError, Problem, ToxiguardError
from toxiguard.labels import ID_COLUMN, LABELS, TEXT_COLUMN

logger = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (ID_COLUMN, TEXT_COLUMN, *LABELS)
TRAIN_NAMES = ("train.csv", "train.csv.zip", "train.csv.gz", "train.parquet")
TEST_NAMES = ("test.csv", "test.csv.zip", "test.csv.gz", "test.parquet")
TEST_LABEL_NAMES = (
    "test_labels.csv",
    "test_labels.csv.zip",
    "test_labels.csv.gz",
    "test_labels.parquet",
)
UNSCORED = "-1"
_FINGERPRINT_VERSION = b"toxiguard-fingerprint-v1\n"


@dataclass(frozen=True)
class Dataset:
    """A validated labelled dataset: id, comment_text and the six labels (int8 0/1)."""

    frame: pd.DataFrame
    source: str
    dropped: dict[str, int]
    rows_read: int

    @property
    def fingerprint(self) -> str:
        """Return the sha256 hex digest of the content (see `fingerprint`)."""
        return fingerprint(self.frame)


# --------------------------------------------------------------------------- validation


def _show(value: str) -> str:
    """Return a label value as shown in an error: bare if numeric, quoted otherwise."""
    try:
        float(value)
    except ValueError:
        return repr(value)
    return value


def _rows(mask: npt.NDArray[np.bool_], rows: npt.NDArray[np.int64]) -> tuple[int, ...]:
    return tuple(int(r) for r in rows[mask])


def _missing_columns(frame: pd.DataFrame, file: str, required: Sequence[str]) -> list[Problem]:
    missing = [c for c in required if c not in frame.columns]
    if not missing:
        return []
    names = ", ".join(f"'{c}'" for c in missing)
    found = ", ".join(f"'{c}'" for c in frame.columns) or "none"
    return [Problem(file, None, (), f"missing required columns: {names} (columns found: {found})")]


def _id_problems(ids: pd.Series, file: str, rows: npt.NDArray[np.int64]) -> list[Problem]:
    problems = []
    missing = ids.str.strip().eq("").to_numpy()
    if missing.any():
        problems.append(Problem(file, ID_COLUMN, _rows(missing, rows), "id is missing"))
    duplicated = (ids.duplicated(keep=False) & ~missing).to_numpy()
    if duplicated.any():
        shown = ", ".join(repr(v) for v in ids[duplicated].unique()[:5])
        message = f"duplicate ids: {shown}; each id must appear once"
        problems.append(Problem(file, ID_COLUMN, _rows(duplicated, rows), message))
    return problems


def _text_problems(texts: pd.Series, file: str, rows: npt.NDArray[np.int64]) -> list[Problem]:
    problems = []
    null = texts.isna().to_numpy()
    is_text = texts.map(lambda v: isinstance(v, str)).to_numpy() | null
    if null.any():
        problems.append(Problem(file, TEXT_COLUMN, _rows(null, rows), "comment_text is missing"))
    if not is_text.all():
        shown = ", ".join(repr(v) for v in texts[~is_text].unique()[:5])
        problems.append(
            Problem(file, TEXT_COLUMN, _rows(~is_text, rows), f"must be text, found {shown}")
        )
    strings = texts.where(is_text & ~null, "x").astype(str)
    empty = strings.eq("").to_numpy()
    blank = (strings.str.strip().eq("") & ~strings.eq("")).to_numpy()
    if empty.any():
        problems.append(Problem(file, TEXT_COLUMN, _rows(empty, rows), "comment_text is empty"))
    if blank.any():
        message = "comment_text is only whitespace"
        problems.append(Problem(file, TEXT_COLUMN, _rows(blank, rows), message))
    return problems


def _label_problems(labels: pd.DataFrame, file: str, rows: npt.NDArray[np.int64]) -> list[Problem]:
    problems = []
    for column in labels.columns:
        bad = ~labels[column].isin(("0", "1")).to_numpy()
        if bad.any():
            found = ", ".join(_show(v) for v in labels[column][bad].unique()[:5])
            message = f"labels must be 0 or 1, found {found}"
            problems.append(Problem(file, str(column), _rows(bad, rows), message))
    return problems


def _check(frame: pd.DataFrame, file: str, rows: npt.NDArray[np.int64]) -> list[Problem]:
    """Return the problems of the id, text and label columns present in `frame`."""
    problems = []
    if ID_COLUMN in frame:
        problems += _id_problems(frame[ID_COLUMN], file, rows)
    if TEXT_COLUMN in frame:
        problems += _text_problems(frame[TEXT_COLUMN], file, rows)
    present = [c for c in LABELS if c in frame]
    if present:
        problems += _label_problems(frame[present], file, rows)
    return problems


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the id and label columns present as str (missing as ''), the text untouched."""
    out = frame.copy()
    for column in (ID_COLUMN, *LABELS):
        if column in out:
            out[column] = as_text(out[column])
    return out


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the canonical frame: id, comment_text, six int8 labels, RangeIndex."""
    out = pd.DataFrame({ID_COLUMN: frame[ID_COLUMN].astype(str).to_numpy(dtype=object)})
    out[TEXT_COLUMN] = frame[TEXT_COLUMN].astype(str).to_numpy(dtype=object)
    for label in LABELS:
        out[label] = frame[label].eq("1").to_numpy().astype(np.int8)
    return out


def canonical_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Return a table read from a file as the canonical frame (labels checked by the caller)."""
    return _finish(_normalise(table))


# --------------------------------------------------------------------------- load_dataset


def _first_existing(directory: Path, names: Sequence[str]) -> Path | None:
    return next((directory / n for n in names if (directory / n).is_file()), None)


def find_train_file(directory: Path) -> Path | None:
    """Return the directory's Kaggle train file (first of `TRAIN_NAMES` present), or None."""
    return _first_existing(directory, TRAIN_NAMES)


def _resolve(path: Path) -> Path:
    """Return the labelled file to read for `path`, looking inside a directory."""
    if not path.is_dir():
        return path
    found = find_train_file(path) or _first_existing(path, TEST_NAMES)
    if found is None:
        wanted = "train.csv(.zip/.gz)/train.parquet or test.csv(.zip/.gz) + test_labels.csv"
        raise DataValidationError.single(path, f"directory holds no {wanted}")
    logger.info("reading %s", found)
    return found


def load_dataset(path: str | Path) -> Dataset:
    """Return the validated labelled dataset in `path` (a file or a directory), or raise.

    Reads train.csv / .csv.zip / .csv.gz / .parquet as Kaggle ships them, and the test pair:
    for test.csv (or .zip/.gz) without label columns, the sibling test_labels.csv is joined on id
    and rows whose labels are all -1 (not scored by the competition) are dropped and counted.
    Every problem found is collected into one DataValidationError; rows are 1-based data rows
    (the header is not counted). Columns other than id, comment_text and the labels are ignored.
    """
    file = _resolve(Path(path))
    table, decoded = read_table_leniently(file)
    raw = _normalise(table)
    labels_file = None
    if stem_of(file) == "test" and not set(LABELS) <= set(raw.columns):
        labels_file = _first_existing(file.parent, TEST_LABEL_NAMES)
    if labels_file is not None:
        if decoded is not None and decoded.problem is not None:
            raise DataValidationError([decoded.problem])
        return _load_test_pair(file, raw, labels_file)
    problems = _missing_columns(raw, str(file), COLUMNS)
    if problems and stem_of(file) == "test":
        message = "no test_labels.csv(.zip/.gz/.parquet) beside it to join"
        problems.append(Problem(str(file), None, (), message))
    rows = np.arange(1, len(raw) + 1)
    readable = np.ones(len(raw), dtype=bool)
    if decoded is not None and decoded.problem is not None:
        # Every undecodable row in one finding; the other checks run on the rows that decode.
        problems.append(decoded.problem)
        readable = ~np.isin(rows, decoded.bad_rows)
    problems += _check(raw[readable], str(file), rows[readable])
    if problems:
        raise DataValidationError(problems)
    return Dataset(frame=_finish(raw), source=str(file), dropped={}, rows_read=len(raw))


def _load_test_pair(text_file: Path, texts: pd.DataFrame, labels_file: Path) -> Dataset:
    """Return test.csv joined with test_labels.csv, rows labelled -1 dropped and counted."""
    labels = _normalise(read_table(labels_file))
    tf, lf = str(text_file), str(labels_file)
    problems = _missing_columns(texts, tf, (ID_COLUMN, TEXT_COLUMN))
    problems += _missing_columns(labels, lf, (ID_COLUMN, *LABELS))
    if problems:
        raise DataValidationError(problems)
    texts = texts.assign(_row=np.arange(1, len(texts) + 1))
    labels = labels.assign(_row=np.arange(1, len(labels) + 1))
    problems += _id_problems(texts[ID_COLUMN], tf, texts["_row"].to_numpy())
    problems += _id_problems(labels[ID_COLUMN], lf, labels["_row"].to_numpy())
    if problems:
        raise DataValidationError(problems)
    for file, own, other in ((tf, texts, labels), (lf, labels, texts)):
        unmatched = ~own[ID_COLUMN].isin(other[ID_COLUMN]).to_numpy()
        if unmatched.any():
            message = f"ids not found in {Path(lf if file == tf else tf).name}"
            problems.append(
                Problem(file, ID_COLUMN, _rows(unmatched, own["_row"].to_numpy()), message)
            )
    unscored = (labels[list(LABELS)] == UNSCORED).all(axis=1)
    kept = labels[~unscored]
    joined = texts[[ID_COLUMN, TEXT_COLUMN, "_row"]].merge(
        kept[[ID_COLUMN, *LABELS, "_row"]], on=ID_COLUMN, suffixes=("_text", "_labels")
    )
    problems += _text_problems(joined[TEXT_COLUMN], tf, joined["_row_text"].to_numpy())
    problems += _label_problems(kept[list(LABELS)], lf, kept["_row"].to_numpy())
    if problems:
        raise DataValidationError(problems)
    dropped = {f"{labels_file.name}: labels are -1 (not scored)": int(unscored.sum())}
    return Dataset(
        frame=_finish(joined.sort_values("_row_text")),
        source=f"{text_file} + {labels_file}",
        dropped=dropped,
        rows_read=len(texts),
    )


# --------------------------------------------------------------------------- fingerprint and labels


def label_matrix(frame: pd.DataFrame) -> npt.NDArray[np.int8]:
    """Return the (n, 6) int8 label matrix of `frame`, columns in LABELS order."""
    missing = [label for label in LABELS if label not in frame.columns]
    if missing:
        raise ToxiguardError(f"frame has no label columns {missing}")
    return frame[list(LABELS)].to_numpy(dtype=np.int8)


def text_hashes(texts: Sequence[str]) -> npt.NDArray[np.uint64]:
    """Return a 64-bit hash of each comment's exact text (which comments a model has seen)."""
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little")
            for t in texts
        ),
        dtype=np.uint64,
        count=len(texts),
    )


def fingerprint(frame: pd.DataFrame) -> str:
    """Return the sha256 hex digest of id, text and labels, row by row (order-sensitive).

    Each row is hashed as one ASCII JSON line [id, text, l1..l6], so the digest depends only on
    the values, never on pandas' or pyarrow's internal formats.
    """
    digest = hashlib.sha256(_FINGERPRINT_VERSION)
    digest.update(json.dumps(list(COLUMNS)).encode("ascii") + b"\n")
    labels = label_matrix(frame).tolist()
    for row in zip(frame[ID_COLUMN].tolist(), frame[TEXT_COLUMN].tolist(), labels, strict=True):
        digest.update(json.dumps([str(row[0]), str(row[1]), *row[2]]).encode("ascii") + b"\n")
    return digest.hexdigest()
