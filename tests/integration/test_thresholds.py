"""Thresholds from moderators' feedback on a real registry and store: targets met, CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_score
from typer.testing import CliRunner

from tests.integration.monitoring_support import log_traffic
from tests.integration.services import train_demo_champion
from toxiguard.cli import app
from toxiguard.errors import ToxiguardError
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.monitoring import store
from toxiguard.monitoring.feedback import FeedbackItem, store_feedback
from toxiguard.monitoring.thresholds import apply_feedback_thresholds, feedback_thresholds
from toxiguard.registry.client import load_toxicity_model
from toxiguard.registry.promotion import champion_history, promote
from toxiguard.registry.versions import champion_version
from toxiguard.settings import Settings, get_settings


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, pd.DataFrame]:
    """A champion (v1) and 900 of the demo corpus's comments served and labelled by moderators.

    600 were served by v1; 200 by v2 (their text logged, so they are scored again by v1); 100
    by v2 without their text, which cannot count.
    """
    home = tmp_path_factory.mktemp("thresholds-home")
    settings = train_demo_champion(home, versions=2)
    corpus = pd.read_csv(home / "demo.csv.gz", keep_default_na=False).sample(900, random_state=1)
    v1, _ = load_toxicity_model("models:/toxiguard/1", settings)
    v2, _ = load_toxicity_model("models:/toxiguard/2", settings)
    engine = store.make_engine(store.database_url(settings))
    store.upgrade_schema(engine)
    now = datetime.now(UTC)
    texts = corpus[TEXT_COLUMN].tolist()
    keys = []  # (request id, item index) of each comment, in order; 16 comments a request
    for model, version, first, stop, log_texts in (
        (v1, 1, 0, 600, True),
        (v2, 2, 600, 800, True),
        (v2, 2, 800, 900, False),
    ):
        ids = log_traffic(
            engine, model, texts[first:stop], version=version, created_at=now, log_texts=log_texts
        )
        keys += [(ids[i // 16], i % 16) for i in range(stop - first)]
    truth = corpus.loc[:, list(LABELS)].to_numpy()
    items = [
        FeedbackItem(request_id, index, tuple(int(v) for v in truth[row]))
        for row, (request_id, index) in enumerate(keys)
    ]
    store_feedback(engine, items, source="api")
    engine.dispose()
    return settings, corpus


def test_suggested_thresholds_meet_the_target_on_the_feedback(
    labelled: tuple[Settings, pd.DataFrame],
) -> None:
    settings, corpus = labelled
    result = feedback_thresholds(settings, target_precision=0.8, min_decisions=20)
    assert result.version == 1
    assert (result.rows, result.rescored, result.without_text) == (800, 200, 100)
    v1, _ = load_toxicity_model("models:/toxiguard/1", settings)
    scores = v1.predict_proba(corpus[TEXT_COLUMN].tolist()[:800])
    truth = corpus.loc[:, list(LABELS)].to_numpy()[:800]
    suggested = 0
    for column, suggestion in enumerate(result.suggestions):
        positives = int(truth[:, column].sum())
        assert suggestion.decisions == 800 and suggestion.positives == positives
        if min(positives, 800 - positives) < 20:
            assert suggestion.threshold is None and "too few decisions" in suggestion.note
            continue
        assert suggestion.threshold is not None
        flagged = scores[:, column] >= suggestion.threshold
        if suggestion.met_target:
            suggested += 1
            assert precision_score(truth[:, column], flagged) >= 0.8
        assert suggestion.precision is not None
        assert suggestion.precision.value == pytest.approx(
            precision_score(truth[:, column], flagged)
        )
    assert suggested >= 3, [s.note for s in result.suggestions]
    assert result.thresholds()[0] == result.suggestions[0].threshold


def test_thresholds_suggest_cli(labelled: tuple[Settings, pd.DataFrame], tmp_path: Path) -> None:
    settings, _ = labelled
    out = tmp_path / "suggestion.json"
    env = {
        "TOXIGUARD_HOME": str(settings.home),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri or "",
        "COLUMNS": "80",
    }
    runner = CliRunner()
    done = runner.invoke(
        app, ["thresholds", "suggest", "--target-recall", "0.9", "--json", str(out)], env=env
    )
    assert done.exit_code == 0, done.output
    assert max(len(line) for line in done.output.splitlines()) <= 80, done.output
    assert "Thresholds for version 1" in done.output
    saved = json.loads(out.read_text())
    assert saved["target"] == {"recall": 0.9} and saved["rows"] == 800
    assert set(saved["labels"]) == set(LABELS)
    for label in LABELS:
        entry = saved["labels"][label]
        if entry["threshold"] is not None:
            assert entry["recall"]["value"] >= 0.9
            assert np.isfinite(entry["current"])
    both = runner.invoke(
        app,
        ["thresholds", "suggest", "--target-recall", "0.9", "--target-precision", "0.9"],
        env=env,
    )
    assert both.exit_code != 0


def test_thresholds_apply_registers_the_model_with_new_thresholds_through_the_gate(
    labelled: tuple[Settings, pd.DataFrame],
) -> None:
    """Last in this module: it moves the champion (and rolls it back at the end)."""
    settings, corpus = labelled
    env = {
        "TOXIGUARD_HOME": str(settings.home),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri or "",
        "COLUMNS": "80",
    }
    runner = CliRunner()
    try:
        result = feedback_thresholds(settings, target_precision=0.8, min_decisions=20)
        applied = apply_feedback_thresholds(settings, result, "moderators' review, week 48")
        assert applied.decision.promoted and applied.base_version == 1
        assert champion_version(settings) == applied.version == 3
        new, info = load_toxicity_model("models:/toxiguard@champion", settings)
        assert info["version"] == 3
        assert new.thresholds.tolist() == pytest.approx(applied.thresholds)
        v1, _ = load_toxicity_model("models:/toxiguard/1", settings)
        texts = corpus[TEXT_COLUMN].tolist()[:800]
        scores = new.predict_proba(texts)
        np.testing.assert_array_equal(scores, v1.predict_proba(texts))
        truth = corpus.loc[:, list(LABELS)].to_numpy()[:800]
        assert applied.changed
        for label in LABELS:
            column = LABELS.index(label)
            if label in applied.changed:  # the target holds on the feedback it came from
                flagged = scores[:, column] >= new.thresholds[column]
                assert precision_score(truth[:, column], flagged) >= 0.8
            else:
                assert new.thresholds[column] == v1.thresholds[column]
        event = champion_history(settings)[-1]
        assert (event["event"], event["version"], event["previous"]) == ("promote", 3, 1)
        assert "moderators' review, week 48" in event["reason"]
        assert "800 moderators' decisions (precision 0.8)" in event["reason"]
        get_settings.cache_clear()  # read in this process above, from the test's own home
        listed = runner.invoke(app, ["models", "list"], env=env)
        assert listed.exit_code == 0, listed.output
        assert "v1's model, new" in listed.output and "demo.csv.gz DEMO" in listed.output
        assert max(len(line) for line in listed.output.splitlines()) <= 80, listed.output

        # The same suggestion for the new champion changes nothing: refused, nothing registered.
        again = runner.invoke(
            app,
            [
                "thresholds",
                "apply",
                "--target-precision",
                "0.8",
                "--min-decisions",
                "20",
                "--reason",
                "again",
            ],
            env=env,
        )
        # (CliRunner hands the error back; the entry point prints it as one line, exit 2.)
        assert isinstance(again.exception, ToxiguardError)
        assert "nothing to apply to version 3" in str(again.exception)
        # Thresholds for version 1, no longer champion: registered, but the gate refuses.
        stale = runner.invoke(
            app,
            [
                "thresholds",
                "apply",
                "--model",
                "1",
                "--target-precision",
                "0.8",
                "--min-decisions",
                "20",
                "--reason",
                "stale",
            ],
            env=env,
        )
        assert stale.exit_code == 1, stale.output
        assert "version 4" in stale.output and "not promoted" in stale.output
        assert champion_version(settings) == 3
    finally:
        promote(settings, 1, reason="test: version 1 is champion again")
