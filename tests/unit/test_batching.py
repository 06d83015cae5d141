"""The micro-batcher: small requests scored together, big ones split and taking turns."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

from toxiguard.serving.batching import MicroBatcher
from toxiguard.serving.local_copy import PredictionResult


class FakeModel:
    """Scores "<request>:<index>:<padding>" as [request, index, 0, 0, 0, 0]; records batches."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.model: Any = SimpleNamespace(version=1)
        self.gate: threading.Event | None = None  # the first batch waits for it when set
        self.fail = False

    def __call__(self, texts: Sequence[str]) -> PredictionResult:
        if self.gate is not None and not self.batches:
            self.batches.append(list(texts))
            self.gate.wait(10)
        else:
            self.batches.append(list(texts))
        if self.fail:
            raise ValueError("model broke")
        values = np.zeros((len(texts), 6))
        for row, text in enumerate(texts):
            request, index, _ = text.split(":", 2)
            values[row, :2] = int(request), int(index)
        return PredictionResult(values, values > 0, self.model)


def request(number: int, count: int, chars: int = 10) -> list[str]:
    """Return `count` texts of `chars` characters each, named after the request."""
    return [f"{number}:{i}:".ljust(chars, "x") for i in range(count)]


@pytest.fixture
def model() -> FakeModel:
    return FakeModel()


@pytest.fixture
def batcher(model: FakeModel) -> Iterator[MicroBatcher]:
    batcher = MicroBatcher(model, max_texts=8, max_chars=100)
    batcher.start()
    yield batcher
    if model.gate is not None:
        model.gate.set()
    batcher.stop()


def assert_answers(result: PredictionResult, number: int, count: int) -> None:
    np.testing.assert_array_equal(result.probabilities[:, 0], np.full(count, number))
    np.testing.assert_array_equal(result.probabilities[:, 1], np.arange(count))


def blocked(model: FakeModel, batcher: MicroBatcher) -> threading.Event:
    """Hold the inference thread in a first batch of one text; return the event that frees it."""
    model.gate = threading.Event()
    batcher.submit(request(0, 1))
    while not model.batches:
        threading.Event().wait(0.001)
    return model.gate


def test_small_requests_waiting_together_are_one_batch(
    model: FakeModel, batcher: MicroBatcher
) -> None:
    gate = blocked(model, batcher)
    futures = [batcher.submit(request(n, 2)) for n in range(1, 4)]
    gate.set()
    for number, future in enumerate(futures, start=1):
        assert_answers(future.result(5), number, 2)
    assert [len(batch) for batch in model.batches] == [1, 6]


def test_a_big_request_is_split_by_texts_and_characters_and_answered_in_order(
    model: FakeModel, batcher: MicroBatcher
) -> None:
    assert_answers(batcher.predict_sync(request(1, 20)), 1, 20)  # 8 texts a batch
    assert [len(batch) for batch in model.batches] == [8, 8, 4]
    model.batches.clear()
    assert_answers(batcher.predict_sync(request(2, 7, chars=30)), 2, 7)  # 3 of 30 fit in 100
    assert [len(batch) for batch in model.batches] == [3, 3, 1]


def test_a_comment_longer_than_a_batch_is_scored_alone(
    model: FakeModel, batcher: MicroBatcher
) -> None:
    texts = [*request(1, 1, chars=500), *request(1, 1, chars=10)]
    texts[1] = "1:1:x"
    result = batcher.predict_sync(texts)
    np.testing.assert_array_equal(result.probabilities[:, 1], [0, 1])
    assert [len(batch) for batch in model.batches] == [1, 1]


def test_a_small_request_waits_behind_one_batch_not_behind_big_requests(
    model: FakeModel, batcher: MicroBatcher
) -> None:
    gate = blocked(model, batcher)
    big = [batcher.submit(request(n, 40, chars=20)) for n in (1, 2, 3, 4)]
    small = batcher.submit(request(5, 1))
    gate.set()
    assert_answers(small.result(5), 5, 1)
    for number, future in enumerate(big, start=1):
        assert_answers(future.result(5), number, 40)
    # The batch after the one in progress holds the small request, beside a turn of each big one.
    assert "5:0:" in "".join(model.batches[1])
    assert sorted(text.split(":")[0] for text in model.batches[1]) == ["1", "2", "3", "4", "5"]
    # Big requests take turns: each of the next batches holds texts of every one still waiting.
    assert {text.split(":")[0] for text in model.batches[2]} == {"1", "2", "3", "4"}


def test_a_request_left_out_for_room_goes_first_in_the_next_batch(model: FakeModel) -> None:
    batcher = MicroBatcher(model, max_texts=8, max_chars=50)
    batcher.start()
    try:
        gate = blocked(model, batcher)
        big = [batcher.submit(request(n, 4, chars=20)) for n in (1, 2, 3)]
        small = batcher.submit(request(4, 1, chars=20))
        gate.set()
        assert_answers(small.result(5), 4, 1)
        for future in big:
            future.result(5)
        # 50 characters hold two texts of 20: requests 1 and 2, then 3 and 4 (left out before).
        firsts = [sorted({text.split(":")[0] for text in batch}) for batch in model.batches[1:3]]
        assert firsts == [["1", "2"], ["3", "4"]]
    finally:
        batcher.stop()


def test_a_hot_swap_between_pieces_scores_the_request_again_on_the_new_model(
    model: FakeModel,
) -> None:
    old, new = model.model, SimpleNamespace(version=2)
    original = model.__call__
    calls = 0

    def swapping(texts: Sequence[str]) -> PredictionResult:
        nonlocal calls
        calls += 1
        if calls == 2:
            model.model = new
        return original(texts)

    swapping_batcher = MicroBatcher(swapping, max_texts=8, max_chars=1000)
    swapping_batcher.start()
    try:
        result = swapping_batcher.predict_sync(request(1, 20))
    finally:
        swapping_batcher.stop()
    assert result.model is cast(Any, new) and model.model is not old
    assert_answers(result, 1, 20)
    assert swapping_batcher.restarts == 1
    assert [len(batch) for batch in model.batches] == [8, 8, 8, 8, 4]  # 8 on the old model


def test_a_failing_model_fails_the_requests_of_the_batch_only(
    model: FakeModel, batcher: MicroBatcher
) -> None:
    model.fail = True
    with pytest.raises(ValueError, match="model broke"):
        batcher.predict_sync(request(1, 3))
    model.fail = False
    assert_answers(batcher.predict_sync(request(2, 3)), 2, 3)


def test_an_empty_request_and_stop_answer_everything_queued(model: FakeModel) -> None:
    batcher = MicroBatcher(model, max_texts=8, max_chars=100)
    batcher.start()
    assert batcher.predict_sync([]).probabilities.shape == (0, 6)
    gate = blocked(model, batcher)
    futures = [batcher.submit(request(n, 10)) for n in (1, 2)]
    gate.set()
    batcher.stop()
    for number, future in enumerate(futures, start=1):
        assert_answers(future.result(0), number, 10)
    with pytest.raises(RuntimeError, match="not running"):
        batcher.submit(request(3, 1))
