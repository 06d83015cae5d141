"""The review queue: which logged comments it lists, in what order, on a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from toxiguard.labels import LABELS
from toxiguard.monitoring import store
from toxiguard.monitoring.feedback import FeedbackItem, store_feedback
from toxiguard.monitoring.review import (
    is_uncertain,
    review_queue,
    uncertain_quota,
    uncertainty_window,
)
from toxiguard.monitoring.tables import feedback

THRESHOLDS = {label: 0.5 for label in LABELS} | {"threat": 0.1}
START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CLEAN = 0.01  # far below every threshold


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'monitoring.db'}")
    store.upgrade_schema(engine)
    return engine


def _log(
    engine: Engine,
    request_id: str,
    minute: int,
    scores: dict[str, float] | None = None,
    *,
    text: str | None = "a comment",
) -> None:
    """Log one prediction `minute` minutes after START, flagged where score >= threshold."""
    scores = {label: CLEAN for label in LABELS} | (scores or {})
    row = {
        "created_at": START + timedelta(minutes=minute),
        "request_id": request_id,
        "item_index": 0,
        "source": "api",
        "model_version": 1,
        "text": text,
        "length": 9,
        "words": 2,
        "upper_share": 0.0,
        "non_letter_share": 0.1,
        **{f"score_{label}": scores[label] for label in LABELS},
        **{f"flag_{label}": scores[label] >= THRESHOLDS[label] for label in LABELS},
    }
    with engine.begin() as connection:
        connection.execute(insert(store.predictions), [row])


def _ids(engine: Engine, **options: object) -> list[tuple[str, str]]:
    return [
        (item.request_id, item.why)
        for item in review_queue(engine, THRESHOLDS, **options)  # type: ignore[arg-type]
    ]


def test_uncertainty_is_measured_in_logits_around_each_threshold() -> None:
    low, high = uncertainty_window(0.5)
    assert low == pytest.approx(0.3775, abs=1e-4) and high == pytest.approx(0.6225, abs=1e-4)
    low, high = uncertainty_window(0.1)
    assert 0.06 < low < 0.07 and 0.15 < high < 0.16  # narrower in probability for a low one
    assert is_uncertain(0.45, 0.5) and not is_uncertain(0.3, 0.5)
    assert is_uncertain(0.12, 0.1) and not is_uncertain(0.3, 0.1)
    assert uncertainty_window(1.0)[1] <= 1.0  # a threshold of 1 stays finite
    assert uncertain_quota(20) == 5 and uncertain_quota(3) == 0


def test_queue_lists_flagged_and_uncertain_comments_newest_first(engine: Engine) -> None:
    _log(engine, "clean", 0)
    _log(engine, "flagged-old", 1, {"toxic": 0.9})
    _log(engine, "threat-just-over", 2, {"threat": 0.12})  # 0.12 vs threshold 0.1: flagged
    _log(engine, "near-insult", 3, {"insult": 0.45})
    _log(engine, "flagged-new", 4, {"toxic": 0.95, "insult": 0.8})
    _log(engine, "no-text", 5, {"toxic": 0.99}, text=None)  # text logging off: cannot review
    _log(engine, "far-insult", 6, {"insult": 0.2})
    queue = review_queue(engine, THRESHOLDS)
    assert [(item.request_id, item.why) for item in queue] == [
        ("flagged-new", "flagged"),
        ("near-insult", "uncertain"),
        ("threat-just-over", "flagged"),
        ("flagged-old", "flagged"),
    ]
    newest = queue[0]
    assert newest.flagged == ["toxic", "insult"] and newest.scores["toxic"] == 0.95
    assert newest.created_at == START + timedelta(minutes=4) and newest.text == "a comment"
    assert newest.model_version == 1


def test_uncertain_comments_take_a_quarter_of_a_full_page(engine: Engine) -> None:
    for minute in range(10):
        _log(engine, f"flagged-{minute}", minute, {"obscene": 0.9})
    for minute in range(10, 14):
        _log(engine, f"uncertain-{minute}", minute, {"obscene": 0.55 - 0.1})
    page = _ids(engine, limit=8)
    assert [why for _, why in page].count("uncertain") == 2
    # Newest first across both kinds: the uncertain ones are the newest here.
    assert page[:2] == [("uncertain-13", "uncertain"), ("uncertain-12", "uncertain")]
    assert [request for request, _ in page[2:]] == [f"flagged-{m}" for m in range(9, 3, -1)]
    # With few flagged comments, uncertain ones fill the rest of the page.
    page = _ids(engine, limit=30)
    assert len(page) == 14 and [why for _, why in page].count("uncertain") == 4


def test_label_filter_keeps_comments_flagged_or_uncertain_on_that_label(engine: Engine) -> None:
    _log(engine, "toxic", 0, {"toxic": 0.9})
    _log(engine, "threat", 1, {"threat": 0.5})
    _log(engine, "near-threat", 2, {"threat": 0.08})
    _log(engine, "near-toxic", 3, {"toxic": 0.45})
    assert _ids(engine, label="threat") == [
        ("near-threat", "uncertain"),
        ("threat", "flagged"),
    ]
    assert _ids(engine, label="toxic") == [("near-toxic", "uncertain"), ("toxic", "flagged")]
    assert _ids(engine, label="identity_hate") == []
    with pytest.raises(ValueError, match="unknown label"):
        review_queue(engine, THRESHOLDS, label="rude")


def test_reviewed_comments_leave_the_queue_and_name_their_reviewer(engine: Engine) -> None:
    _log(engine, "a", 0, {"toxic": 0.9})
    _log(engine, "b", 1, {"toxic": 0.9})
    store_feedback(
        engine, [FeedbackItem.from_names("b", 0, ["insult"])], "review", reviewer="key-abc"
    )
    assert _ids(engine) == [("a", "flagged")]
    store_feedback(engine, [FeedbackItem.from_names("a", 0, [])], "api")  # any feedback counts
    assert _ids(engine) == []
    with engine.connect() as connection:
        rows = {r.request_id: r for r in connection.execute(select(feedback))}
    assert rows["b"].reviewer == "key-abc" and rows["b"].source == "review"
    assert rows["b"].label_insult == 1 and rows["b"].label_toxic == 0
    assert rows["a"].reviewer is None


def test_the_reviewer_migration_adds_a_column_and_keeps_feedback(engine: Engine) -> None:
    store_feedback(engine, [FeedbackItem.from_names("r", 0, ["toxic"])], "review", reviewer="k")
    store.downgrade_schema(engine, "0003")
    with engine.connect() as connection:
        kept = connection.exec_driver_sql("SELECT request_id, label_toxic FROM feedback").all()
    assert [tuple(row) for row in kept] == [("r", 1)]
    store.upgrade_schema(engine)
    with engine.connect() as connection:
        assert store.schema_differences(connection, tables=["feedback"]) == []
        assert connection.execute(select(feedback.c.reviewer)).scalar_one() is None


def test_empty_limit_and_missing_thresholds(engine: Engine) -> None:
    _log(engine, "a", 0, {"toxic": 0.9})
    assert review_queue(engine, THRESHOLDS, limit=0) == []
    with pytest.raises(ValueError, match="no threshold"):
        review_queue(engine, {"toxic": 0.5})
    with pytest.raises(ValueError, match="reviewer longer"):
        store_feedback(engine, [FeedbackItem.from_names("a", 0, [])], "review", reviewer="x" * 65)
