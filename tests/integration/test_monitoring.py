"""Monitoring on real comments: detection rates, the stored job, alerts, feedback, retraining.

Models are trained on the shared Jigsaw data; traffic is other real comments from it, written
by the real prediction-log code (or sent to a real `toxiguard serve` process).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from tests.integration.monitoring_support import (
    DetectionSetup,
    detection_setup,
    drift_alert_count,
    log_traffic,
    webhook_receiver,
    write_csv,
)
from tests.integration.services import ServerProcessFactory
from toxiguard.errors import ToxiguardError
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.models.package import ModelPackage
from toxiguard.monitoring import store
from toxiguard.monitoring.alerts import DRIFT_RULE, QUALITY_RULE
from toxiguard.monitoring.feedback import FeedbackItem, store_feedback
from toxiguard.monitoring.job import run_monitoring
from toxiguard.monitoring.rows import PredictionBatch, batch_rows
from toxiguard.monitoring.tables import alerts, drift_columns, drift_runs, feedback, live_quality
from toxiguard.orchestration.flows import retrain
from toxiguard.orchestration.simulate import check_loopback, choose_rows, simulate
from toxiguard.registry.client import load_toxicity_model, resolve_model_uri
from toxiguard.registry.versions import list_versions
from toxiguard.settings import Settings
from toxiguard.training.pipeline import run_training

pytestmark = [pytest.mark.integration]

TRAIN_ROWS = 3000


# ---------------------------------------------------------------- detection rates
@pytest.fixture(scope="module")
def detection(shared_train: pd.DataFrame) -> DetectionSetup:
    """Return a small real model, its reference and a pool of 10,000 other real comments."""
    frame = shared_train.sample(n=25_000, random_state=11).reset_index(drop=True)
    return detection_setup(frame, train_rows=12_000, reference_rows=3_000, seed=0)


@pytest.mark.slow
def test_traffic_like_the_reference_rarely_alerts(
    detection: DetectionSetup, settings: Settings
) -> None:
    alerted, scores = drift_alert_count(detection, "none", settings, n=500)
    assert alerted <= 2, f"{alerted}/20 false drift alerts; drift scores {scores}"


@pytest.mark.slow
@pytest.mark.parametrize("shift", ["longer", "more-toxic"])
def test_shifted_traffic_alerts(detection: DetectionSetup, settings: Settings, shift: str) -> None:
    alerted, scores = drift_alert_count(detection, shift, settings, n=500)
    assert alerted >= 18, f"{shift}: drift alert in only {alerted}/20 windows; scores {scores}"


# ---------------------------------------------------------------- a registered model, traffic
@pytest.fixture(scope="module")
def parts(shared_train: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return a training sample and a disjoint pool of other real comments for traffic."""
    shuffled = shared_train.sample(frac=1.0, random_state=5).reset_index(drop=True)
    return shuffled.iloc[:TRAIN_ROWS], shuffled.iloc[TRAIN_ROWS : TRAIN_ROWS + 8000]


@pytest.fixture
def trained(
    settings: Settings, parts: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> tuple[Settings, ModelPackage]:
    """Return settings whose registry holds a champion (version 1) trained on real comments."""
    data = write_csv(parts[0], tmp_path / "train.csv")
    settings = settings.model_copy(
        update={
            "training_data": data,
            "training_models": ["complement-nb"],
            "monitoring_min_rows": 200,
            "retrain_on_drift": False,
        }
    )
    run_training(data, ["complement-nb"], settings)
    model, info = load_toxicity_model(resolve_model_uri(None, settings), settings)
    assert info["version"] == 1
    return settings, model


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """Return the (migrated) monitoring store of this test's home."""
    engine = store.make_engine(store.database_url(settings))
    store.upgrade_schema(engine)
    yield engine
    engine.dispose()


def traffic(pool: pd.DataFrame, shift: str, n: int, seed: int = 0) -> pd.DataFrame:
    """Return `n` rows of the pool drawn with the shift (as `toxiguard simulate` draws them)."""
    return pool.iloc[choose_rows(pool, shift, n, seed, Path("pool"))].reset_index(drop=True)


def count(engine: Engine, table: object) -> int:
    """Return the number of rows of a table."""
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_monitoring_run_stores_reports_and_alerts_once(
    trained: tuple[Settings, ModelPackage],
    parts: tuple[pd.DataFrame, pd.DataFrame],
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, model = trained
    now = datetime.now(UTC)
    shifted = traffic(parts[1], "more-toxic", 300)
    log_traffic(engine, model, shifted[TEXT_COLUMN].tolist(), version=1, created_at=now)
    with webhook_receiver() as receiver:
        settings = settings.model_copy(update={"alert_webhook_url": receiver.url})
        outcome = run_monitoring(settings, now=now + timedelta(seconds=1))

        data = outcome.to_dict()
        assert data["status"] == "ok" and data["model_version"] == 1 and data["rows"] == 300
        assert data["drift_score"] > settings.alert_drift_score
        assert data["drifted_features"] == sum(c["drifted"] for c in data["columns"])
        assert {c["column"] for c in data["columns"]} >= {"length", "oov_share", "score_toxic"}
        assert "text" in {c["column"] for c in data["columns"]}
        assert data["missing_share"] == 0.0
        assert DRIFT_RULE in {a["rule"] for a in data["alerts"]}
        assert Path(data["report_path"]).is_file()
        assert data["webhook"]["delivered"] is True
        assert len(receiver.received) == 1
        payload = receiver.received[0]
        assert set(payload) == {"text", "blocks"}
        assert "Data drift on version 1" in payload["text"]
        assert "drift_score" in payload["text"] and "rows: 300" in payload["text"]

        with engine.connect() as connection:
            run = connection.execute(select(drift_runs)).mappings().one()
            stored_alerts = connection.execute(select(alerts)).mappings().all()
        assert run["status"] == "ok" and run["drift_score"] == pytest.approx(data["drift_score"])
        assert run["report_path"] == data["report_path"] and run["mlflow_run_id"]
        assert count(engine, drift_columns) == len(data["columns"])
        assert {a["rule"] for a in stored_alerts} == {a["rule"] for a in data["alerts"]}
        assert all(a["delivered"] for a in stored_alerts)

        # The same drift an hour later, through the CLI: held by the cool-down, not re-sent.
        from toxiguard import cli

        monkeypatch.setenv("TOXIGUARD_ALERT_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("TOXIGUARD_TRAINING_DATA", str(settings.training_data))
        out = tmp_path / "run.json"
        result = CliRunner().invoke(cli.app, ["monitor", "run", "--json", str(out), "--no-retrain"])
        assert result.exit_code == 0, result.output
        second = json.loads(out.read_text())
        assert second["status"] == "ok" and second["alerts"] == []
        assert DRIFT_RULE in {a["rule"] for a in second["suppressed_alerts"]}
        assert len(receiver.received) == 1
    assert count(engine, drift_runs) == 2 and count(engine, alerts) == len(stored_alerts)

    import mlflow

    run_data = mlflow.MlflowClient().get_run(run["mlflow_run_id"])
    assert run_data.data.metrics["drift_score"] == pytest.approx(data["drift_score"])
    artifacts = {
        a.path for a in mlflow.MlflowClient().list_artifacts(run["mlflow_run_id"], "reports")
    }
    assert any(path.endswith(".html") for path in artifacts)


def test_webhook_down_does_not_fail_the_job_and_a_later_run_resends(
    trained: tuple[Settings, ModelPackage],
    parts: tuple[pd.DataFrame, pd.DataFrame],
    engine: Engine,
) -> None:
    settings, model = trained
    with webhook_receiver() as receiver:
        closed = receiver.url
    now = datetime.now(UTC)
    log_traffic(
        engine,
        model,
        traffic(parts[1], "longer", 250)[TEXT_COLUMN].tolist(),
        version=1,
        created_at=now,
    )
    settings = settings.model_copy(update={"alert_webhook_url": closed, "alert_webhook_retries": 1})
    outcome = run_monitoring(settings, now=now + timedelta(seconds=1))
    assert outcome.result.status == "ok" and outcome.alerts
    assert outcome.delivery is not None and not outcome.delivery.delivered
    assert outcome.delivery.attempts == 2
    with engine.connect() as connection:
        rows = connection.execute(select(alerts)).mappings().all()
    assert rows and not any(row["delivered"] for row in rows)
    assert all("Connect" in str(row["delivery_error"]) for row in rows)

    # The webhook is back: the next run (the same drift, held by the cool-down) sends the
    # undelivered alerts again, once.
    with webhook_receiver() as receiver:
        settings = settings.model_copy(update={"alert_webhook_url": receiver.url})
        later = run_monitoring(settings, now=now + timedelta(minutes=10))
        assert later.alerts == [] and later.suppressed
        assert later.redelivery is not None and later.redelivery.delivered
        assert len(receiver.received) == 1
        text = receiver.received[0]["text"]
        assert f"toxiguard: {len(rows)} monitoring alert" in text and "re-sent" in text
        assert all(row["message"] in text for row in rows)
        run_monitoring(settings, now=now + timedelta(minutes=20))
        assert len(receiver.received) == 1
    with engine.connect() as connection:
        assert all(row["delivered"] for row in connection.execute(select(alerts)).mappings())


def test_too_few_rows_is_stored_as_insufficient_data(
    trained: tuple[Settings, ModelPackage],
    parts: tuple[pd.DataFrame, pd.DataFrame],
    engine: Engine,
) -> None:
    settings, model = trained
    now = datetime.now(UTC)
    log_traffic(
        engine,
        model,
        traffic(parts[1], "more-toxic", 120)[TEXT_COLUMN].tolist(),
        version=1,
        created_at=now,
    )
    # Older traffic is outside the one-hour window and does not count.
    log_traffic(
        engine,
        model,
        traffic(parts[1], "none", 200, seed=1)[TEXT_COLUMN].tolist(),
        version=1,
        created_at=now - timedelta(hours=2),
    )
    outcome = run_monitoring(settings, now=now + timedelta(seconds=1))
    data = outcome.to_dict()
    assert data["status"] == "insufficient_data" and data["rows"] == 120
    assert data["drift_score"] is None and data["alerts"] == [] and data["columns"] == []
    assert "fewer than the 200 required" in data["message"]
    with engine.connect() as connection:
        run = connection.execute(select(drift_runs)).mappings().one()
    assert run["status"] == "insufficient_data" and run["drift_score"] is None


def test_without_logged_texts_only_statistics_and_scores_are_compared(
    trained: tuple[Settings, ModelPackage],
    parts: tuple[pd.DataFrame, pd.DataFrame],
    engine: Engine,
) -> None:
    settings, model = trained
    now = datetime.now(UTC)
    texts = traffic(parts[1], "none", 250)[TEXT_COLUMN].tolist()
    log_traffic(engine, model, texts, version=1, created_at=now, log_texts=False)
    outcome = run_monitoring(settings, now=now + timedelta(seconds=1))
    columns = {c.column for c in outcome.result.columns}
    assert outcome.result.status == "ok"
    assert "text" not in columns and "oov_share" not in columns and "length" in columns
    assert outcome.result.missing_share == 0.0


# ---------------------------------------------------------------- feedback through the API
def test_feedback_round_trip_and_quality_alert(
    trained: tuple[Settings, ModelPackage],
    parts: tuple[pd.DataFrame, pd.DataFrame],
    engine: Engine,
    serve_factory: ServerProcessFactory,
    tmp_path: Path,
) -> None:
    settings, _model = trained
    server = serve_factory(settings.resolved_home)
    pool = parts[1].iloc[:4000].reset_index(drop=True)
    data = write_csv(pool, tmp_path / "pool.csv")
    sent = simulate(server.url, data, shift="none", n=240, batch_size=16, seed=3)
    assert sent.errors == 0 and sent.comments == 240 and len(sent.request_ids) == 15
    server.wait_for_log_flush()
    chosen = pool.iloc[choose_rows(pool, "none", 240, 3, data)].reset_index(drop=True)
    truth = chosen.loc[:, list(LABELS)].to_numpy()

    with httpx.Client(base_url=server.url, timeout=30) as client:
        bad = client.post("/v1/feedback", json={"request_id": "x", "labels": ["rude"]})
        assert bad.status_code == 422 and "error" in bad.json()
        for position, labels in enumerate(truth):
            body = {
                "request_id": sent.request_ids[position // 16],
                "item_index": position % 16,
                "labels": [label for label, value in zip(LABELS, labels, strict=True) if value],
            }
            response = client.post("/v1/feedback", json=body)
            assert response.status_code == 200, response.text
            assert response.json()["prediction_logged"] is True
    assert count(engine, feedback) == 240

    outcome = run_monitoring(settings)
    live = outcome.live
    assert live is not None and live["rows"] == 240
    keys = [(sent.request_ids[i // 16], i % 16) for i in range(240)]
    from sklearn.metrics import roc_auc_score

    logged = pd.DataFrame(keys, columns=["request_id", "item_index"]).merge(
        store.read_predictions(engine), on=["request_id", "item_index"], how="left"
    )
    scores = logged["score_toxic"].to_numpy()
    assert live["per_label"]["toxic"]["roc_auc"] == pytest.approx(
        roc_auc_score(truth[:, 0], scores)
    )
    with engine.connect() as connection:
        quality = connection.execute(select(live_quality)).mappings().all()
    assert {row["label"] for row in quality} == set(LABELS)

    # Moderators now disagree with everything: labels inverted, imported from a file.
    inverted = pd.DataFrame(
        {"request_id": [k[0] for k in keys], "item_index": [k[1] for k in keys]}
        | {label: 1 - truth[:, i] for i, label in enumerate(LABELS)}
    )
    inverted.to_csv(tmp_path / "feedback.csv", index=False)
    from toxiguard import cli

    result = CliRunner().invoke(cli.app, ["feedback", "import", str(tmp_path / "feedback.csv")])
    assert result.exit_code == 0, result.output
    assert "240 predictions (240 found" in " ".join(result.output.split())
    assert count(engine, feedback) == 240  # replaced, not added
    dropped = run_monitoring(settings)
    assert dropped.live is not None
    assert dropped.live["mean_roc_auc"] == pytest.approx(1 - live["mean_roc_auc"], abs=1e-9)
    assert QUALITY_RULE in {alert.rule for alert in dropped.alerts}


def test_feedback_file_errors_name_file_column_and_rows(tmp_path: Path) -> None:
    from toxiguard.errors import DataValidationError
    from toxiguard.monitoring.feedback import read_feedback_file

    path = tmp_path / "fb.csv"
    path.write_text(
        "request_id,item_index,toxic,severe_toxic,obscene,threat,insult,identity_hate\n"
        "a,0,1,0,0,0,0,0\n,0,0,0,0,0,0,0\nb,-1,2,0,0,0,0,0\n"
    )
    with pytest.raises(DataValidationError) as caught:
        read_feedback_file(path)
    text = str(caught.value)
    assert "column 'request_id'" in text and "row 3" in text
    assert "column 'item_index'" in text and "column 'toxic'" in text and "row 4" in text
    with pytest.raises(DataValidationError, match="file not found"):
        read_feedback_file(tmp_path / "none.csv")
    (tmp_path / "short.csv").write_text("request_id,toxic\na,1\n")
    with pytest.raises(DataValidationError, match="required column missing"):
        read_feedback_file(tmp_path / "short.csv")


def test_simulate_only_talks_to_loopback() -> None:
    assert check_loopback("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert check_loopback("http://localhost:9") == "http://localhost:9"
    with pytest.raises(ToxiguardError, match="loopback"):
        check_loopback("http://10.1.2.3:8000")
    with pytest.raises(ToxiguardError, match="not an http"):
        check_loopback("file:///etc/passwd")


def test_simulate_is_bounded(tmp_path: Path, parts: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    data = write_csv(parts[1].iloc[:100], tmp_path / "pool.csv")
    with pytest.raises(ToxiguardError, match="above the limit"):
        simulate("http://127.0.0.1:9", data, n=50, max_requests=10)
    result = simulate("http://127.0.0.1:9", data, n=40, batch_size=4, max_seconds=0)
    assert result.stopped_by_time and result.requests == 0 and result.comments == 0


# ---------------------------------------------------------------- retraining
@pytest.mark.slow
def test_drift_alert_retrains_on_data_plus_feedback_and_the_gate_decides(
    trained: tuple[Settings, ModelPackage],
    parts: tuple[pd.DataFrame, pd.DataFrame],
    engine: Engine,
    prefect_home: Path,
) -> None:
    settings, model = trained
    settings = settings.model_copy(update={"retrain_on_drift": True})
    now = datetime.now(UTC)
    shifted = traffic(parts[1], "more-toxic", 300)
    request_ids = log_traffic(
        engine, model, shifted[TEXT_COLUMN].tolist(), version=1, created_at=now
    )
    labels = shifted.loc[:, list(LABELS)].to_numpy()
    items = [
        FeedbackItem(request_ids[i // 16], i % 16, tuple(int(v) for v in labels[i]))
        for i in range(100)
    ]
    store_feedback(engine, items, source="import")

    outcome = run_monitoring(settings, now=now + timedelta(seconds=1), retrainer=retrain)
    assert DRIFT_RULE in {alert.rule for alert in outcome.alerts}
    retraining = outcome.retraining
    assert retraining is not None and "error" not in retraining, retraining
    assert retraining["mode"] == "in-process" and retraining["versions"] == [2]
    assert retraining["original_rows"] == TRAIN_ROWS and retraining["feedback_rows"] == 100
    retrain_data = pd.read_parquet(retraining["data"])
    assert len(retrain_data) == TRAIN_ROWS + 100
    assert retrain_data["id"].str.startswith("fb-").sum() == 100

    versions = {item["version"]: item for item in list_versions(settings)}
    assert set(versions) == {1, 2}
    champion = 2 if retraining["promoted"] == [2] else 1
    assert retraining["champion_version"] == champion
    assert "champion" in versions[champion].get("aliases", [])
    with engine.connect() as connection:
        row = connection.execute(select(alerts).where(alerts.c.rule == DRIFT_RULE)).mappings().one()
    assert "versions [2]" in row["retraining"]

    # Still drifting: the cool-down holds the alert, so no second retraining starts.
    again = run_monitoring(settings, now=now + timedelta(minutes=5), retrainer=retrain)
    assert again.retraining is None and DRIFT_RULE in {a.rule for a in again.suppressed}
    assert {item["version"] for item in list_versions(settings)} == {1, 2}
    assert np.isfinite(float(versions[2]["test_roc_auc_mean"]))
    # The gate recorded on the new version the decision that the champion alias shows.
    assert versions[2]["decision"] == ("promoted" if champion == 2 else settings.challenger_alias)


def test_feedback_endpoint_validates_what_the_store_can_hold(
    settings: Settings, engine: Engine
) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from toxiguard.serving.feedback import FeedbackStore, feedback_router
    from toxiguard.serving.middleware import add_error_handlers

    app = FastAPI()
    add_error_handlers(app)
    answered = {"abc": 2}  # what the server would remember: request "abc" scored 2 comments
    app.include_router(feedback_router(FeedbackStore(settings, answered.get)), prefix="/v1")
    client = TestClient(app)
    for bad in (
        {"request_id": "a\ud800", "labels": []},
        {"request_id": "x" * 65, "labels": []},
        {"request_id": "abc", "item_index": 2**31, "labels": []},
        {"request_id": "abc", "item_index": -1, "labels": []},
        {"request_id": "abc", "labels": ["toxic"], "extra": 1},
    ):
        body = json.dumps(bad)  # escapes the lone surrogate, as a client may send it
        response = client.post(
            "/v1/feedback", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["message"]
    # Feedback names a prediction: a request id never answered, or a position past its end.
    unknown = client.post("/v1/feedback", json={"request_id": "nope", "labels": []})
    assert unknown.status_code == 404 and "'nope'" in unknown.json()["error"]["message"]
    past = client.post("/v1/feedback", json={"request_id": "abc", "item_index": 2, "labels": []})
    assert past.status_code == 422
    assert "scored 2 comment(s): item_index 0 to 1" in past.json()["error"]["message"]
    assert count(engine, feedback) == 0
    # A request the server does not remember (answered before a restart) is found in the log.
    store.upgrade_schema(engine)
    logged = PredictionBatch(
        request_id="logged",
        source="api",
        texts=["a", "b", "c"],
        probabilities=np.full((3, len(LABELS)), 0.5),
        flags=np.zeros((3, len(LABELS)), dtype=bool),
        model_name="toxiguard",
        model_version=1,
        model_family="tfidf-lr",
    )
    with engine.begin() as connection:
        connection.execute(store.predictions.insert(), batch_rows(logged, log_texts=True))
    found = client.post(
        "/v1/feedback", json={"request_id": "logged", "item_index": 2, "labels": []}
    )
    assert found.status_code == 200 and found.json()["prediction_logged"] is True
    beyond = client.post(
        "/v1/feedback", json={"request_id": "logged", "item_index": 3, "labels": []}
    )
    assert beyond.status_code == 422
    good = client.post("/v1/feedback", json={"request_id": "abc", "labels": ["threat", "toxic"]})
    assert good.status_code == 200
    assert good.json() == {
        "request_id": "abc",
        "item_index": 0,
        "labels": {label: int(label in {"toxic", "threat"}) for label in LABELS},
        "prediction_logged": False,
    }
    assert count(engine, feedback) == 2
