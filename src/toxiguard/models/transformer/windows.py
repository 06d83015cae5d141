"""Token sequences for transformers: long-comment windows, their aggregation, and batching.

Pure NumPy (plus a tokenizer passed in), so everything here is cheap to unit-test and is
shared by training (PyTorch) and inference (PyTorch or ONNX Runtime).

A comment longer than the model's maximum sequence length is cut into overlapping windows;
each window is scored on its own and the per-label scores of a comment's windows are
aggregated (maximum by default), so that an insult at the end of a long comment still counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.special import expit

Aggregation = Literal["max", "mean"]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
# Turns texts into token ids (no special tokens, no truncation).
Encoder = Callable[[Sequence[str]], list[list[int]]]
# Scores one padded batch: (input_ids, attention_mask), both (batch, length) int64 -> logits.
BatchScorer = Callable[[IntArray, IntArray], npt.NDArray[np.floating[Any]]]


@dataclass(frozen=True)
class SpecialTokens:
    """The ids a tokenizer puts before and after one sequence ([CLS] ... [SEP], <s> ... </s>)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]

    @property
    def count(self) -> int:
        """Return how many special tokens wrap one sequence."""
        return len(self.prefix) + len(self.suffix)

    def wrap(self, content: Sequence[int]) -> list[int]:
        """Return `content` with the special tokens around it."""
        return [*self.prefix, *content, *self.suffix]


@dataclass(frozen=True)
class Windows:
    """Model inputs for a list of comments: one or more windows each, and whose window is which."""

    ids: list[list[int]]
    owner: IntArray
    n_items: int


def special_tokens(tokenizer: Any) -> SpecialTokens:
    """Return the special tokens `tokenizer` adds around a single sequence, found by probing it."""
    probe = "hello"
    bare: list[int] = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full: list[int] = tokenizer(probe)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return SpecialTokens(tuple(full[:start]), tuple(full[start + len(bare) :]))
    raise ValueError(f"cannot find the content tokens {bare} inside {full}")


def tokenize(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Return each text's token ids, without special tokens and without truncation."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)
    return [list(ids) for ids in encoded["input_ids"]]


def tokenizer_file_encoder(path: Path) -> Encoder:
    """Return an encoder like `tokenize` that reads a fast tokenizer's tokenizer.json.

    It needs only the `tokenizers` library, so a served model does not import PyTorch or
    transformers just to split text into token ids.
    """
    # Optional (the 'transformer' extra): only transformer models tokenize.
    from tokenizers import Tokenizer  # noqa: PLC0415

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def encode(texts: Sequence[str]) -> list[list[int]]:
        encoded = tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [list(item.ids) for item in encoded]

    return encode


def split_windows(ids: Sequence[int], size: int, overlap: int) -> list[list[int]]:
    """Return windows of at most `size` ids covering all of `ids`, neighbours sharing >= `overlap`.

    Windows start every `size - overlap` ids; the last one is moved back to end exactly at the
    end of the sequence, so the tail is always seen with as much left context as possible.
    """
    if size < 1:
        raise ValueError(f"window size must be at least 1, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"window overlap must be in [0, {size}), got {overlap}")
    if len(ids) <= size:
        return [list(ids)]
    step = size - overlap
    starts = [*range(0, len(ids) - size, step), len(ids) - size]
    return [list(ids[start : start + size]) for start in starts]


def build_windows(
    token_ids: Sequence[Sequence[int]], max_length: int, overlap: int, specials: SpecialTokens
) -> Windows:
    """Return the windows (special tokens included, each <= max_length ids) of every comment."""
    size = max_length - specials.count
    ids: list[list[int]] = []
    owner: list[int] = []
    for item, content in enumerate(token_ids):
        for window in split_windows(content, size, overlap):
            ids.append(specials.wrap(window))
            owner.append(item)
    return Windows(ids=ids, owner=np.asarray(owner, dtype=np.int64), n_items=len(token_ids))


def head_windows(
    token_ids: Sequence[Sequence[int]], max_length: int, specials: SpecialTokens
) -> list[list[int]]:
    """Return each comment's first window only (plain truncation), special tokens included."""
    size = max_length - specials.count
    return [specials.wrap(content[:size]) for content in token_ids]


def aggregate_windows(
    scores: npt.NDArray[np.floating[Any]], owner: IntArray, n_items: int, how: Aggregation = "max"
) -> FloatArray:
    """Return (n_items, k) scores: the per-column max or mean of each item's window scores."""
    values = np.asarray(scores, dtype=np.float64)
    counts = np.bincount(owner, minlength=n_items)
    if len(counts) > n_items or (counts == 0).any():
        raise ValueError("every item needs at least one window and owners must be < n_items")
    if how == "max":
        out = np.full((n_items, values.shape[1]), -np.inf)
        np.maximum.at(out, owner, values)
        return out
    if how == "mean":
        sums = np.zeros((n_items, values.shape[1]))
        np.add.at(sums, owner, values)
        result: FloatArray = sums / counts[:, None]
        return result
    raise ValueError(f"unknown aggregation '{how}' (known: max, mean)")


def length_bucketed_batches(
    lengths: Sequence[int] | IntArray, batch_size: int, *, seed: int, bucket_batches: int = 50
) -> list[IntArray]:
    """Return shuffled batches of indices in which items have similar lengths (for training).

    The items are shuffled, cut into buckets of `bucket_batches` batches, sorted by length
    inside each bucket and cut into batches; then the batch order is shuffled. Every index
    appears exactly once; the same seed gives the same batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    sizes = np.asarray(lengths, dtype=np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sizes))
    bucket = batch_size * max(1, bucket_batches)
    batches: list[IntArray] = []
    for start in range(0, len(order), bucket):
        chunk = order[start : start + bucket]
        chunk = chunk[np.argsort(sizes[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: Sequence[int] | IntArray, batch_size: int) -> list[IntArray]:
    """Return batches of indices sorted by length, longest first (for inference)."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[IntArray, IntArray]:
    """Return (input_ids, attention_mask) padded on the right to the longest sequence."""
    width = max((len(s) for s in sequences), default=0)
    input_ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return input_ids, mask


def score_windows(
    windows: Windows, scorer: BatchScorer, *, batch_size: int, pad_id: int, how: Aggregation
) -> FloatArray:
    """Return (n_items, k) probabilities: windows scored in length-sorted batches, aggregated."""
    if windows.n_items == 0:
        raise ValueError("no windows to score")
    lengths = [len(w) for w in windows.ids]
    probabilities: FloatArray | None = None
    for batch in sorted_batches(lengths, batch_size):
        input_ids, mask = pad_batch([windows.ids[i] for i in batch], pad_id)
        probs = expit(np.asarray(scorer(input_ids, mask), dtype=np.float64))
        if probabilities is None:
            probabilities = np.empty((len(lengths), probs.shape[1]))
        probabilities[batch] = probs
    assert probabilities is not None
    return aggregate_windows(probabilities, windows.owner, windows.n_items, how)
