"""Drift detection with Evidently on synthetic monitoring frames, and the reference's pieces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toxiguard.features.statistics import text_statistics
from toxiguard.labels import LABELS
from toxiguard.models.reference import (
    MonitoringReference,
    build_vocabulary,
    monitoring_frame,
    oov_shares,
    words_of,
)
from toxiguard.monitoring.drift import (
    INSUFFICIENT_DATA,
    NUMERIC_COLUMNS,
    OK,
    compared_columns,
    detect_drift,
)
from toxiguard.monitoring.job import served_version, window_frame

# Talk-page words, so that the text drift classifier has a vocabulary to work with.
TALK = (
    "the article edit page source talk wiki thanks please citation revert user vandal "
    "section sentence reference policy change history image"
)
WORDS = np.array(TALK.split())


def synthetic(n: int, seed: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    """Return a monitoring frame of n rows; `shift` adds a constant to some columns."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({column: rng.normal(size=n) for column in NUMERIC_COLUMNS})
    for column, delta in (shift or {}).items():
        frame[column] += delta
    for label in LABELS:
        frame[f"flag_{label}"] = rng.random(n) < 0.1
    frame["text"] = [" ".join(rng.choice(WORDS, 8)) for _ in range(n)]
    return frame


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    """Return a 2,000-row synthetic reference."""
    return synthetic(2000, seed=1)


def test_same_distribution_has_no_drift(reference: pd.DataFrame, tmp_path: Path) -> None:
    result = detect_drift(
        reference, synthetic(400, seed=2), min_rows=100, report_path=tmp_path / "r.html"
    )
    assert result.status == OK
    assert result.drift_score is not None and result.drift_score <= 0.2
    assert result.missing_share == 0.0
    assert {c.column for c in result.columns} == {*NUMERIC_COLUMNS, "text"}
    assert result.report_path == tmp_path / "r.html"
    html = result.report_path.read_text()
    assert "<html" in html.lower() and "length" in html
    assert (tmp_path / "r-text.html").is_file()


def test_a_shifted_column_is_the_one_flagged(reference: pd.DataFrame) -> None:
    result = detect_drift(
        reference, synthetic(400, seed=3, shift={"length": 1.0, "score_toxic": 1.0}), min_rows=100
    )
    drifted = {c.column for c in result.columns if c.drifted}
    assert {"length", "score_toxic"} <= drifted
    assert len(drifted) <= 3
    assert result.drifted_features == len(drifted)
    assert result.drift_score == pytest.approx(len(drifted) / len(result.columns))
    length = next(c for c in result.columns if c.column == "length")
    assert length.method == "ks" and length.threshold == 0.01
    assert length.score is not None and length.score < 0.01
    assert length.current_mean is not None and length.reference_mean is not None
    assert length.current_mean - length.reference_mean > 0.8


def test_too_few_rows_gives_insufficient_data(reference: pd.DataFrame) -> None:
    result = detect_drift(reference, synthetic(99, seed=4), min_rows=100)
    assert result.status == INSUFFICIENT_DATA
    assert result.drift_score is None and result.missing_share is None
    assert result.drifted_features is None and result.columns == []
    assert "99 rows" in result.message
    assert result.to_dict()["status"] == INSUFFICIENT_DATA


def test_missing_share_counts_missing_cells(reference: pd.DataFrame) -> None:
    current = synthetic(400, seed=5)
    current.loc[:39, "upper_share"] = np.nan
    current.loc[:19, "score_threat"] = np.nan
    result = detect_drift(reference, current, min_rows=100, text_drift=False)
    assert result.missing_share == pytest.approx(60 / (400 * len(NUMERIC_COLUMNS)))
    assert "text" not in {c.column for c in result.columns}


def test_a_window_without_texts_skips_text_and_oov(reference: pd.DataFrame) -> None:
    current = synthetic(300, seed=6).drop(columns=["text", "oov_share"])
    assert "oov_share" not in compared_columns(reference, current)
    result = detect_drift(reference, current, min_rows=100)
    assert {c.column for c in result.columns} == set(NUMERIC_COLUMNS) - {"oov_share"}


def test_wasserstein_is_a_distance_drifting_above_its_threshold(reference: pd.DataFrame) -> None:
    result = detect_drift(
        reference,
        synthetic(400, seed=7, shift={"words": 2.0}),
        method="wasserstein",
        threshold=0.1,
        min_rows=100,
        text_drift=False,
    )
    words = next(c for c in result.columns if c.column == "words")
    assert words.drifted and words.score is not None and words.score > 0.1
    assert words.method == "wasserstein"


def test_flagged_rates_are_compared(reference: pd.DataFrame) -> None:
    current = synthetic(300, seed=8)
    current["flag_insult"] = True
    result = detect_drift(reference, current, min_rows=100, text_drift=False)
    assert result.flagged_rate["insult"]["current"] == 1.0
    assert 0.05 < result.flagged_rate["insult"]["reference"] < 0.15


def test_vocabulary_and_oov_share() -> None:
    assert words_of("Hello, WORLD! x2 café") == ["hello", "world", "x", "café"]
    vocabulary = build_vocabulary(["a cat sat", "a cat ran", "the dog"], size=10, min_count=2)
    assert vocabulary == frozenset({"a", "cat"})
    shares = oov_shares(["a cat", "a dog", "", "42 !"], vocabulary)
    assert shares.tolist() == [0.0, 0.5, 0.0, 0.0]


def test_reference_round_trip(tmp_path: Path) -> None:
    texts = ["You are great", "YOU ARE AWFUL!!!", "ok"]
    probabilities = np.array([[0.1] * 6, [0.9] * 6, [0.5] * 6])
    frame = monitoring_frame(
        texts, text_statistics(texts), probabilities, np.full(6, 0.5), frozenset({"you", "are"})
    )
    assert frame["oov_share"].tolist() == pytest.approx([1 / 3, 1 / 3, 1.0])
    assert frame["flag_toxic"].tolist() == [False, True, True]
    reference = MonitoringReference(frame, frozenset({"you", "are"}))
    folder = reference.save(tmp_path / "model")
    assert folder == tmp_path / "model" / "monitoring"
    loaded = MonitoringReference.load(tmp_path / "model")
    pd.testing.assert_frame_equal(loaded.frame, frame)
    assert loaded.vocabulary == reference.vocabulary
    assert loaded.flagged_rates()["toxic"] == pytest.approx(2 / 3)


def test_a_model_without_reference_says_so(tmp_path: Path) -> None:
    from toxiguard.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="no monitoring reference"):
        MonitoringReference.load(tmp_path)


def test_window_frame_from_prediction_log_rows() -> None:
    texts = ["hello there friend", None]
    rows = pd.DataFrame(
        {
            "created_at": pd.to_datetime(["2025-01-01T00:00Z", "2025-01-01T00:01Z"]),
            "model_version": [3, 4],
            "text": texts,
            "length": [18, 5],
            "words": [3, 1],
            "upper_share": [0.0, 1.0],
            "non_letter_share": [0.0, 0.2],
            **{f"score_{label}": [0.2, 0.7] for label in LABELS},
            **{f"flag_{label}": [False, True] for label in LABELS},
        }
    )
    frame = window_frame(rows, frozenset({"hello", "there"}))
    assert frame["oov_share"].iloc[0] == pytest.approx(1 / 3)
    assert np.isnan(frame["oov_share"].iloc[1])  # text not logged: missing, not zero
    assert frame["flag_toxic"].tolist() == [False, True]
    assert served_version(rows) == 4
    assert served_version(rows.iloc[:0]) is None
