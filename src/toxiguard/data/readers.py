"""Read CSV, .csv.zip, .csv.gz and parquet files strictly; read comments for scoring.

Row numbers in every error are 1-based *data* rows: the header is not counted.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import pandas as pd
from pyarrow import parquet

from toxiguard.errors import DataValidationError, Problem
from toxiguard.labels import TEXT_COLUMN

SUPPORTED = ".csv, .csv.zip, .csv.gz, .parquet"


def kind_of(path: Path) -> str:
    """Return 'csv', 'gz', 'zip' or 'parquet' for a path, or raise for anything else."""
    name = path.name.lower()
    for suffix, kind in ((".parquet", "parquet"), (".pq", "parquet"), (".csv", "csv")):
        if name.endswith(suffix):
            return kind
    if name.endswith(".gz"):
        return "gz"
    if name.endswith(".zip"):
        return "zip"
    raise DataValidationError.single(path, f"unsupported file format; expected one of {SUPPORTED}")


def stem_of(path: Path) -> str:
    """Return the file name without compression and format suffixes ('train.csv.gz' -> 'train')."""
    name = path.name.lower()
    for suffix in (".gz", ".zip", ".csv", ".parquet", ".pq"):
        name = name.removesuffix(suffix)
    return name


@contextmanager
def open_binary(path: Path, kind: str) -> Iterator[IO[bytes]]:
    """Yield a binary stream of the CSV inside a .csv, .csv.gz or single-member .zip file."""
    try:
        if kind == "gz":
            with gzip.open(path, "rb") as handle:
                yield cast(IO[bytes], handle)
        elif kind == "zip":
            with zipfile.ZipFile(path) as archive:
                members = [
                    m for m in archive.namelist() if not m.endswith("/") and "__MACOSX" not in m
                ]
                if len(members) != 1:
                    message = f"zip archive must hold exactly one CSV file, found {members}"
                    raise DataValidationError.single(path, message)
                with archive.open(members[0]) as handle:
                    yield handle
        else:
            with path.open("rb") as handle:
                yield handle
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise DataValidationError.single(path, f"cannot read file: {error}") from error


def raw_bytes(path: Path, kind: str) -> bytes:
    """Return the (decompressed) bytes of a CSV, CSV.gz or CSV.zip file."""
    with open_binary(path, kind) as handle:
        try:
            return handle.read()
        except (OSError, EOFError, zipfile.BadZipFile) as error:
            raise DataValidationError.single(path, f"cannot read file: {error}") from error


#: Bad bytes named one by one in a message (all their rows are listed).
SHOWN_BAD_BYTES = 5


@dataclass(frozen=True)
class DecodedText:
    """A file's text with undecodable bytes replaced (U+FFFD), and where those bytes were."""

    text: str
    bad_rows: tuple[int, ...]  # 1-based data rows holding an undecodable byte
    problem: Problem | None  # all of them in one finding; None when the file is valid UTF-8


_BAD_OFFSETS: ContextVar[list[int]] = ContextVar("toxiguard_bad_utf8_offsets")
_NOTE_BAD_BYTES = "toxiguard-note-bad-utf8"


def _note_bad_bytes(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: note where an undecodable sequence starts, replace it by U+FFFD."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    _BAD_OFFSETS.get().append(error.start)
    return "\ufffd", error.end


def _decode_noting_bad_bytes(data: bytes) -> tuple[str, list[int]]:
    """Return the bytes decoded (bad sequences as U+FFFD) and the offset of each bad sequence."""
    # An error handler sees every bad sequence in one decoding pass: 0.13 s for 20 MB holding
    # 5,000 of them, where decoding again after each error took 6.1 s (each error copies the
    # rest of the input).
    codecs.register_error(_NOTE_BAD_BYTES, _note_bad_bytes)  # idempotent; at use, not import
    offsets: list[int] = []
    token = _BAD_OFFSETS.set(offsets)
    try:
        return data.decode("utf-8", _NOTE_BAD_BYTES), offsets
    finally:
        _BAD_OFFSETS.reset(token)


def _record_of_lines(text: str) -> list[int]:
    """Return, for each physical line (0-based), the 0-based CSV record it belongs to."""
    records: list[int] = []
    reader = csv.reader(io.StringIO(text))
    for record, _ in enumerate(reader):
        records.extend([record] * (reader.line_num - len(records)))
    return records


def decode_utf8(path: Path, data: bytes) -> DecodedText:
    """Return the bytes decoded as UTF-8, naming every data row and byte offset that fail.

    Undecodable bytes become U+FFFD, so the rows that do decode can still be checked; a bad
    byte in the header raises at once (without it no column can be found).
    """
    offset = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    body = data[offset:]
    text, bad = _decode_noting_bad_bytes(body)
    if not bad:
        return DecodedText(text, (), None)
    newlines = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == ord("\n"))
    lines = np.searchsorted(newlines, bad)  # 0-based physical line of each bad byte
    record_of_line = _record_of_lines(text)
    records = [record_of_line[min(line, len(record_of_line) - 1)] for line in lines]
    where = [
        f"byte 0x{body[b]:02x} at line {line + 1}, byte offset {offset + b}"
        for b, line in zip(bad[:SHOWN_BAD_BYTES], lines, strict=False)
    ]
    more = f" (+{len(bad) - SHOWN_BAD_BYTES} more)" if len(bad) > SHOWN_BAD_BYTES else ""
    message = f"not valid UTF-8: {'; '.join(where)}{more}; save as UTF-8"
    if records[0] == 0:
        raise DataValidationError.single(path, f"header is {message}")
    rows = tuple(sorted(set(records)))  # record 1 is data row 1
    return DecodedText(text, rows, Problem(str(path), None, rows, message))


def read_table_leniently(path: Path) -> tuple[pd.DataFrame, DecodedText | None]:
    """Return a file as a frame, undecodable bytes replaced, and what was found undecodable.

    CSV cells come as str ('NA' stays text), parquet in its own types (its decoding is None).
    """
    kind = kind_of(path)
    if not path.is_file():
        raise DataValidationError.single(path, "file not found")
    if kind == "parquet":
        try:
            return pd.read_parquet(path), None
        except Exception as error:  # pyarrow raises several unrelated types for a bad file
            raise DataValidationError.single(path, f"cannot read parquet: {error}") from error
    decoded = decode_utf8(path, raw_bytes(path, kind))
    try:
        frame = pd.read_csv(
            io.StringIO(decoded.text), dtype=str, keep_default_na=False, na_filter=False
        )
    except pd.errors.EmptyDataError as error:
        raise DataValidationError.single(path, "file is empty") from error
    except (pd.errors.ParserError, ValueError) as error:
        raise DataValidationError.single(path, f"not a readable CSV: {error}") from error
    return frame.fillna(""), decoded  # fillna: cells missing from short rows


def read_table(path: Path) -> pd.DataFrame:
    """Return a file as a frame, or raise if any of it is not valid UTF-8 (all rows named)."""
    frame, decoded = read_table_leniently(path)
    if decoded is not None and decoded.problem is not None:
        raise DataValidationError([decoded.problem])
    return frame


def as_text(values: pd.Series) -> pd.Series:
    """Return values as str with missing ones as '' (for ids and label cells)."""
    if values.dtype.kind in "biu":
        return values.astype(np.int64).astype(str)
    return values.map(
        lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
    )


def _check_comments(
    frame: pd.DataFrame, file: Path, text_column: str, first_row: int
) -> pd.DataFrame:
    """Return `frame` with missing texts as '', or raise if the column is absent or not text."""
    if text_column not in frame.columns:
        found = ", ".join(f"'{c}'" for c in frame.columns) or "none"
        message = f"missing text column '{text_column}' (columns found: {found})"
        raise DataValidationError.single(file, message)
    values = frame[text_column]
    missing = values.isna().to_numpy()
    is_text = values.map(lambda v: isinstance(v, str)).to_numpy() | missing
    if not is_text.all():
        rows = np.arange(first_row, first_row + len(frame))[~is_text]
        shown = ", ".join(repr(v) for v in values[~is_text].unique()[:5])
        raise DataValidationError.single(
            file, f"values must be text, found {shown}", column=text_column, rows=rows.tolist()
        )
    if missing.any():
        frame = frame.copy()
        frame[text_column] = values.where(~missing, "")
    return frame


def read_comments(path: str | Path, text_column: str = TEXT_COLUMN) -> pd.DataFrame:
    """Return every column of a CSV/zip/gz/parquet file of comments (CSV cells as str).

    Labels are not needed and empty texts are allowed (missing parquet texts become '').
    """
    file = Path(path)
    return _check_comments(read_table(file), file, text_column, first_row=1)


def _parquet_file(file: Path) -> Any:
    """Return a pyarrow ParquetFile (pyarrow ships no type hints, hence Any)."""
    return parquet.ParquetFile(file)


def count_rows(path: str | Path) -> int:
    """Return the number of data rows of a comment file (parquet: its metadata; CSV: one pass).

    The CSV pass parses records (a quoted text may span lines) without building frames:
    0.41 s for the 41,614 shared rows (gz), about 2% of scoring them with tfidf-lr at the
    1,654 rows/s that `benchmarks/scoring.py` measured.
    """
    file = Path(path)
    kind = kind_of(file)
    if kind == "parquet":
        return int(_parquet_file(file).metadata.num_rows)
    with open_binary(file, kind) as handle:
        records = csv.reader(io.TextIOWrapper(handle, encoding="utf-8-sig", errors="replace"))
        return max(sum(1 for _ in records) - 1, 0)


def iter_comment_chunks(
    path: str | Path, chunk_size: int, text_column: str = TEXT_COLUMN
) -> Iterator[pd.DataFrame]:
    """Return an iterator over the rows of `read_comments`, in frames of at most `chunk_size` rows.

    The file, its format and the text column are checked at once; problems inside the data
    (bad UTF-8, values that are not text) are raised while iterating.
    """
    file = Path(path)
    kind = kind_of(file)
    if not file.is_file():
        raise DataValidationError.single(file, "file not found")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if kind == "parquet":
        try:
            columns = _parquet_file(file).schema_arrow.names
        except Exception as error:  # pyarrow raises several unrelated types for a bad file
            raise DataValidationError.single(file, f"cannot read parquet: {error}") from error
        _check_comments(pd.DataFrame(columns=columns), file, text_column, 1)
        return _parquet_chunks(file, chunk_size, text_column)
    with open_binary(file, kind) as handle:
        header = next(csv.reader(io.TextIOWrapper(handle, encoding="utf-8-sig")), [])
    _check_comments(pd.DataFrame(columns=header), file, text_column, 1)
    return _csv_chunks(file, kind, chunk_size, text_column)


def _parquet_chunks(file: Path, chunk_size: int, text_column: str) -> Iterator[pd.DataFrame]:
    first_row = 1
    for batch in _parquet_file(file).iter_batches(batch_size=chunk_size):
        chunk = batch.to_pandas()
        yield _check_comments(chunk, file, text_column, first_row)
        first_row += len(chunk)


def _csv_chunks(file: Path, kind: str, chunk_size: int, text_column: str) -> Iterator[pd.DataFrame]:
    first_row = 1
    options: dict[str, Any] = {"dtype": str, "keep_default_na": False, "na_filter": False}
    with open_binary(file, kind) as handle:
        try:
            with pd.read_csv(
                handle, chunksize=chunk_size, encoding="utf-8-sig", **options
            ) as reader:
                for chunk in reader:
                    yield _check_comments(chunk.fillna(""), file, text_column, first_row)
                    first_row += len(chunk)
        except UnicodeDecodeError:
            problem = decode_utf8(file, raw_bytes(file, kind)).problem  # names rows and bytes
            if problem is not None:
                raise DataValidationError([problem]) from None
            raise
        except (pd.errors.ParserError, OSError, EOFError, ValueError) as error:
            raise DataValidationError.single(file, f"cannot read CSV: {error}") from error
