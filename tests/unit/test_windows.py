"""Long-comment windows, their aggregation, length bucketing and batch scoring."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit

from toxiguard.models.transformer.windows import (
    SpecialTokens,
    aggregate_windows,
    build_windows,
    head_windows,
    length_bucketed_batches,
    pad_batch,
    score_windows,
    sorted_batches,
    special_tokens,
    split_windows,
    tokenize,
)

SPECIALS = SpecialTokens(prefix=(101,), suffix=(102,))
INSULT = 999


@given(
    length=st.integers(0, 300),
    size=st.integers(1, 40),
    overlap_share=st.floats(0, 0.95),
)
@settings(max_examples=200, deadline=None)
def test_windows_cover_every_token_in_order_and_overlap(
    length: int, size: int, overlap_share: float
) -> None:
    overlap = min(size - 1, int(overlap_share * size))
    ids = list(range(length))
    windows = split_windows(ids, size, overlap)

    assert all(0 < len(w) <= size for w in windows) or (length == 0 and windows == [[]])
    assert windows[0][:1] == ids[:1]
    assert windows[-1][-1:] == ids[-1:]  # the tail is never cut away
    covered = sorted({token for window in windows for token in window})
    assert covered == ids
    for left, right in itertools.pairwise(windows):
        assert all(b == a + 1 for a, b in itertools.pairwise(left))  # contiguous
        shared = len(set(left) & set(right))
        assert shared >= overlap
        assert right[0] > left[0]


def test_short_sequence_is_one_window_and_long_one_is_split() -> None:
    assert split_windows([1, 2, 3], 5, 2) == [[1, 2, 3]]
    assert split_windows(list(range(10)), 4, 1) == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    # The last window is moved back to end at the end of the sequence.
    assert split_windows(list(range(5)), 4, 1) == [[0, 1, 2, 3], [1, 2, 3, 4]]


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (4, 4), (4, -1)])
def test_bad_window_settings_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="window"):
        split_windows([1, 2, 3], size, overlap)


def test_build_windows_wraps_specials_and_records_owners() -> None:
    tokens = [[1, 2], list(range(10, 30)), []]
    windows = build_windows(tokens, max_length=8, overlap=2, specials=SPECIALS)

    assert windows.n_items == 3
    assert all(len(ids) <= 8 for ids in windows.ids)
    assert all(ids[0] == 101 and ids[-1] == 102 for ids in windows.ids)
    assert windows.ids[0] == [101, 1, 2, 102]
    assert windows.ids[-1] == [101, 102]  # an empty comment still gets one window
    assert windows.owner.tolist() == [0] + [1] * (len(windows.ids) - 2) + [2]
    inner = [ids[1:-1] for ids, owner in zip(windows.ids, windows.owner, strict=True) if owner == 1]
    assert inner[-1][-1] == 29
    assert head_windows(tokens, 8, SPECIALS)[1] == [101, *range(10, 16), 102]


def test_aggregate_max_and_mean_per_item_and_label() -> None:
    scores = np.array([[0.1, 0.9], [0.7, 0.2], [0.3, 0.3], [0.5, 0.1]])
    owner = np.array([0, 0, 1, 0])

    maximum = aggregate_windows(scores, owner, 2, "max")
    mean = aggregate_windows(scores, owner, 2, "mean")

    np.testing.assert_allclose(maximum, [[0.7, 0.9], [0.3, 0.3]])
    np.testing.assert_allclose(mean, [[(0.1 + 0.7 + 0.5) / 3, (0.9 + 0.2 + 0.1) / 3], [0.3, 0.3]])


def test_aggregate_refuses_items_without_windows_and_unknown_modes() -> None:
    scores = np.zeros((2, 1))
    with pytest.raises(ValueError, match="at least one window"):
        aggregate_windows(scores, np.array([0, 0]), 2)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate_windows(scores, np.array([0, 1]), 2, "median")  # type: ignore[arg-type]


def test_bucketed_batches_cover_all_items_once_with_similar_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 400, size=1000)

    batches = length_bucketed_batches(lengths, 16, seed=1, bucket_batches=10)

    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    assert all(1 <= len(b) <= 16 for b in batches)
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    random_spread = np.mean([np.ptp(lengths[b]) for b in np.array_split(rng.permutation(1000), 63)])
    assert spread < random_spread / 4


def test_bucketed_batches_are_seeded() -> None:
    lengths = np.arange(200) % 37
    first = length_bucketed_batches(lengths, 8, seed=3)
    again = length_bucketed_batches(lengths, 8, seed=3)
    other = length_bucketed_batches(lengths, 8, seed=4)

    assert [b.tolist() for b in first] == [b.tolist() for b in again]
    assert [b.tolist() for b in first] != [b.tolist() for b in other]


def test_sorted_batches_longest_first() -> None:
    batches = sorted_batches([3, 9, 1, 7, 5], 2)
    assert [b.tolist() for b in batches] == [[1, 3], [4, 0], [2]]


def test_pad_batch_pads_right_with_mask() -> None:
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == np.int64 and mask.dtype == np.int64


def test_window_probabilities_are_float64_and_stable() -> None:
    def extreme(input_ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Any:
        return np.array([[-1000.0, 0.0, 1000.0]] * len(input_ids), dtype=np.float32)

    windows = build_windows([[5, 6]], max_length=8, overlap=0, specials=SPECIALS)
    [out] = score_windows(windows, extreme, batch_size=4, pad_id=0, how="max")
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0])


def _insult_detector(input_ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Any:
    """A stand-in model: label 0 fires on the INSULT token, label 1 tracks the padded length."""
    assert input_ids.shape == mask.shape
    found = ((input_ids == INSULT) & (mask == 1)).any(axis=1)
    return np.stack([np.where(found, 8.0, -8.0), mask.sum(axis=1) / 100.0], axis=1)


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_insult_at_the_end_of_a_long_comment_is_seen_by_the_max(batch_size: int) -> None:
    benign = list(range(1000, 1300))
    tokens = [[*benign, INSULT], benign, [INSULT], [5, 6]]
    windows = build_windows(tokens, max_length=32, overlap=8, specials=SPECIALS)

    probs = score_windows(windows, _insult_detector, batch_size=batch_size, pad_id=0, how="max")
    truncated = expit(_insult_detector(*pad_batch(head_windows(tokens, 32, SPECIALS), 0)))

    assert probs.shape == (4, 2)
    assert probs[:, 0] == pytest.approx([1, 0, 1, 0], abs=1e-3)
    assert truncated[0, 0] < 0.01  # plain truncation would have missed the insult
    # Order is restored: item 3 is short, its "length" label is the smallest.
    assert probs[3, 1] < probs[0, 1]


def test_mean_aggregation_dilutes_a_single_window() -> None:
    tokens = [[*list(range(1000, 1300)), INSULT]]
    windows = build_windows(tokens, max_length=32, overlap=8, specials=SPECIALS)
    mean = score_windows(windows, _insult_detector, batch_size=8, pad_id=0, how="mean")
    maximum = score_windows(windows, _insult_detector, batch_size=8, pad_id=0, how="max")
    assert mean[0, 0] < 0.2 < 0.99 < maximum[0, 0]


def _packaged_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from toxiguard.models.transformer.model import default_backbone

    return AutoTokenizer.from_pretrained(Path(default_backbone()))


def test_special_tokens_and_untruncated_tokenization_with_a_real_tokenizer() -> None:
    tokenizer = _packaged_tokenizer()
    specials = special_tokens(tokenizer)
    assert specials.prefix == (tokenizer.cls_token_id,)
    assert specials.suffix == (tokenizer.sep_token_id,)

    long_text = "this is a perfectly calm sentence about gardening. " * 120
    ids = tokenize(tokenizer, [long_text, ""])
    assert len(ids[0]) > tokenizer.model_max_length  # not truncated
    assert ids[1] == []
    assert tokenize(tokenizer, []) == []
