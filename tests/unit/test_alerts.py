"""Alert rules, cool-down on a real SQLite store, and the Slack payload (delivery: integration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from toxiguard.monitoring import store
from toxiguard.monitoring.alerts import (
    DRIFT_RULE,
    FLAGGED_RULE,
    MISSING_RULE,
    QUALITY_RULE,
    Alert,
    Delivery,
    apply_cooldown,
    evaluate_rules,
    slack_payload,
    store_alerts,
)
from toxiguard.monitoring.drift import INSUFFICIENT_DATA, OK, ColumnDrift, DriftResult
from toxiguard.monitoring.tables import alerts
from toxiguard.settings import Settings

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def result(drift_score: float, missing: float = 0.0, flagged: float = 0.1) -> DriftResult:
    """Return an OK drift result with 10 columns, round(drift_score * 10) of them drifted."""
    drifted = round(drift_score * 10)
    columns = [
        ColumnDrift(f"c{i}", "statistic", "ks", 0.01, 0.001 if i < drifted else 0.5, i < drifted)
        for i in range(10)
    ]
    return DriftResult(
        status=OK,
        rows=500,
        reference_rows=3000,
        min_rows=200,
        drift_score=drifted / 10,
        missing_share=missing,
        drifted_features=drifted,
        columns=columns,
        flagged_rate={"toxic": {"reference": 0.1, "current": flagged}},
    )


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    """Return a migrated SQLite monitoring store."""
    engine = store.make_engine(f"sqlite:///{tmp_path / 'monitoring.db'}")
    store.upgrade_schema(engine)
    return engine


def test_rules_fire_only_above_their_thresholds(settings: Settings) -> None:
    assert evaluate_rules(result(0.3), settings, 1) == []  # drift_score > 0.3, not >=
    fired = evaluate_rules(result(0.4, missing=0.06, flagged=0.3), settings, 7)
    assert [a.rule for a in fired] == [DRIFT_RULE, MISSING_RULE, FLAGGED_RULE]
    drift = fired[0]
    assert drift.value == pytest.approx(0.4) and drift.threshold == settings.alert_drift_score
    assert "version 7" in drift.message and "c0, c1, c2, c3" in drift.message
    assert fired[2].key == "flagged_rate:toxic" and fired[2].value == pytest.approx(0.2)


def test_no_alert_without_data(settings: Settings) -> None:
    empty = DriftResult(status=INSUFFICIENT_DATA, rows=3, reference_rows=0, min_rows=200)
    assert evaluate_rules(empty, settings, 1, live_roc_auc=0.1, baseline_roc_auc=0.9) == []


def test_quality_drop_rule(settings: Settings) -> None:
    ok = evaluate_rules(result(0.0), settings, 2, live_roc_auc=0.93, baseline_roc_auc=0.96)
    assert ok == []
    fired = evaluate_rules(result(0.0), settings, 2, live_roc_auc=0.80, baseline_roc_auc=0.96)
    assert [a.rule for a in fired] == [QUALITY_RULE]
    assert "0.800" in fired[0].message and "0.960" in fired[0].message


def test_cooldown_holds_repeats_of_the_same_key(engine: Engine, settings: Settings) -> None:
    first = evaluate_rules(result(0.5), settings, 1)
    raised, held = apply_cooldown(engine, first, 60, NOW)
    assert raised == first and held == []
    store_alerts(engine, raised, None, NOW, Delivery(True, 1))
    again = evaluate_rules(result(0.5, missing=0.2), settings, 1)
    raised, held = apply_cooldown(engine, again, 60, NOW + timedelta(minutes=59))
    assert [a.rule for a in raised] == [MISSING_RULE]  # a new key is not held
    assert [a.rule for a in held] == [DRIFT_RULE]
    raised, held = apply_cooldown(engine, again, 60, NOW + timedelta(minutes=61))
    assert [a.rule for a in raised] == [DRIFT_RULE, MISSING_RULE] and held == []


def test_stored_alerts_keep_delivery_and_retraining(engine: Engine, settings: Settings) -> None:
    raised = evaluate_rules(result(0.5), settings, 3)
    ids = store_alerts(
        engine, raised, None, NOW, Delivery(False, 4, "HTTP 500"), {DRIFT_RULE: "flow run 1"}
    )
    with engine.connect() as connection:
        row = connection.execute(select(alerts).where(alerts.c.id == ids[0])).mappings().one()
    assert row["delivered"] is False and row["delivery_error"] == "HTTP 500"
    assert row["retraining"] == "flow run 1" and row["model_version"] == 3


def alert() -> Alert:
    """Return one drift alert."""
    return Alert(DRIFT_RULE, DRIFT_RULE, "critical", "Data drift on version 1", 0.5, 0.3, 1)


def test_slack_payload_shape() -> None:
    payload = slack_payload([alert()], {"model version": 1, "report": None})
    assert payload["text"].startswith("toxiguard: 1 monitoring alert\n")
    assert "[critical] Data drift on version 1" in payload["text"]
    assert "model version: 1" in payload["text"] and "report" not in payload["text"]
    assert [block["type"] for block in payload["blocks"]] == ["header", "section", "context"]
