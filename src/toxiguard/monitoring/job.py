"""The monitoring run: the served version's recent traffic against its reference.

`run_monitoring` reads a window of the prediction log, compares the rows of the version that
served it with that version's reference (`drift.detect_drift`), computes live quality on the
labelled part, stores everything in the monitoring store, logs the report to MLflow, raises
alerts (cool-down, webhook) and, on a drift alert, starts retraining. The CLI command
`toxiguard monitor run` and the Prefect `monitoring_flow` both call it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from sqlalchemy import Engine, insert, update

from toxiguard.errors import ModelNotFoundError
from toxiguard.features.statistics import STATISTICS_COLUMNS
from toxiguard.labels import FLAG_COLUMNS, SCORE_COLUMNS
from toxiguard.models.reference import OOV_COLUMN, TEXT_COLUMN, oov_shares
from toxiguard.monitoring import alerts as alerting
from toxiguard.monitoring import store
from toxiguard.monitoring.drift import INSUFFICIENT_DATA, OK, DriftResult, detect_drift
from toxiguard.monitoring.feedback import labelled_window, live_quality
from toxiguard.monitoring.reference import reference_for_version
from toxiguard.monitoring.tables import drift_columns, drift_runs
from toxiguard.monitoring.tables import live_quality as live_quality_table
from toxiguard.registry.client import configure_mlflow
from toxiguard.registry.versions import champion_version
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)

Retrainer = Callable[[Settings, Engine, str], dict[str, Any]]


@dataclass
class MonitoringOutcome:
    """Everything one monitoring run found and did."""

    run_id: int
    window_start: datetime
    window_end: datetime
    model_version: int | None
    result: DriftResult
    live: dict[str, Any] | None = None
    alerts: list[alerting.Alert] = field(default_factory=list)
    suppressed: list[alerting.Alert] = field(default_factory=list)
    delivery: alerting.Delivery | None = None
    redelivery: alerting.Delivery | None = None
    retraining: dict[str, Any] | None = None
    mlflow_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the outcome as JSON-ready data (what `monitor run --json` writes)."""
        result = self.result.to_dict()
        return {
            "run_id": self.run_id,
            "status": result["status"],
            "message": result["message"],
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "model_version": self.model_version,
            "rows": result["rows"],
            "reference_rows": result["reference_rows"],
            "drift_score": result["drift_score"],
            "missing_share": result["missing_share"],
            "drifted_features": result["drifted_features"],
            "columns": result["columns"],
            "flagged_rate": result["flagged_rate"],
            "report_path": result["report_path"],
            "live_quality": self.live,
            "alerts": [alert.to_dict() for alert in self.alerts],
            "suppressed_alerts": [alert.to_dict() for alert in self.suppressed],
            "webhook": None if self.delivery is None else vars(self.delivery),
            "webhook_redelivery": None if self.redelivery is None else vars(self.redelivery),
            "retraining": self.retraining,
            "mlflow_run_id": self.mlflow_run_id,
        }


def served_version(window: pd.DataFrame) -> int | None:
    """Return the model version of the window's latest prediction (the one serving now)."""
    if window.empty or window["model_version"].isna().all():
        return None
    latest = window.dropna(subset=["model_version"]).sort_values("created_at").iloc[-1]
    return int(latest["model_version"])


def window_frame(rows: pd.DataFrame, vocabulary: frozenset[str]) -> pd.DataFrame:
    """Return the monitoring columns of prediction-log rows (OOV share only with logged texts)."""
    frame = rows.loc[:, [*STATISTICS_COLUMNS, *SCORE_COLUMNS]].astype(float).reset_index(drop=True)
    for column in FLAG_COLUMNS:
        frame[column] = rows[column].astype(bool).to_numpy()
    if TEXT_COLUMN in rows.columns and rows[TEXT_COLUMN].notna().any():
        texts = rows[TEXT_COLUMN].reset_index(drop=True)
        frame[TEXT_COLUMN] = texts
        shares = oov_shares(texts.fillna("").astype(str).tolist(), vocabulary)
        frame[OOV_COLUMN] = pd.Series(shares).where(texts.notna())
    return frame


def _baseline_roc_auc(settings: Settings, version: int) -> float | None:
    """Return the version's mean test ROC-AUC recorded at registration, if any."""
    try:
        client = configure_mlflow(settings)
        tags = client.get_model_version(settings.registered_model_name, str(version)).tags
    except Exception as error:  # the baseline is optional: without it, no quality alert
        logger.warning("no test ROC-AUC for version %s: %s", version, error)
        return None
    value = tags.get("test_roc_auc_mean")
    return float(value) if value is not None else None


def _champion_version(settings: Settings) -> int | None:
    """Return the version the champion alias points at, or None."""
    try:
        return champion_version(settings)
    except Exception as error:  # no registry: nothing to compare yet
        logger.info("no champion found: %s", error)
        return None


def _log_to_mlflow(settings: Settings, outcome: MonitoringOutcome) -> str | None:
    """Log the run's numbers and HTML report to the MLflow monitoring experiment; return its id."""
    result = outcome.result
    try:
        configure_mlflow(
            settings.model_copy(update={"experiment_name": settings.monitoring_experiment_name})
        )
        name = f"drift-v{outcome.model_version}-{outcome.window_end:%Y%m%dT%H%M}"
        with mlflow.start_run(run_name=name) as run:
            mlflow.set_tags(
                {
                    "model_version": str(outcome.model_version),
                    "status": result.status,
                    "window_start": outcome.window_start.isoformat(),
                    "window_end": outcome.window_end.isoformat(),
                    "monitoring_run_id": str(outcome.run_id),
                }
            )
            metrics = {
                "rows": float(result.rows),
                "drift_score": result.drift_score,
                "missing_share": result.missing_share,
                "drifted_features": result.drifted_features,
                **{f"drift_{c.column}": c.score for c in result.columns},
            }
            if outcome.live:
                metrics["live_mean_roc_auc"] = outcome.live.get("mean_roc_auc")
                metrics["live_f1_macro"] = outcome.live.get("f1_macro")
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
            mlflow.log_dict(outcome.to_dict(), "monitoring.json")
            if result.report_path is not None:
                for path in result.report_path.parent.glob(result.report_path.stem + "*.html"):
                    mlflow.log_artifact(str(path), artifact_path="reports")
            return str(run.info.run_id)
    except Exception as error:  # the stored result is what counts; MLflow is a copy
        logger.warning("could not log the monitoring run to MLflow: %s", error)
        return None


def _store_run(engine: Engine, outcome: MonitoringOutcome, settings: Settings) -> int:
    """Insert the run, its per-column results and live quality; return the run id."""
    result = outcome.result
    live = outcome.live or {}
    row = {
        "created_at": datetime.now(UTC),
        "window_start": outcome.window_start,
        "window_end": outcome.window_end,
        "model_name": settings.registered_model_name,
        "model_version": outcome.model_version,
        "status": result.status,
        "rows": result.rows,
        "reference_rows": result.reference_rows,
        "drift_score": result.drift_score,
        "missing_share": result.missing_share,
        "drifted_features": result.drifted_features,
        "columns_compared": len(result.columns) if result.status == OK else None,
        "method": settings.drift_method,
        "threshold": settings.drift_threshold,
        "labelled_rows": live.get("rows"),
        "live_roc_auc": live.get("mean_roc_auc"),
        "live_f1_macro": live.get("f1_macro"),
        "report_path": str(result.report_path) if result.report_path else None,
        "seconds": result.seconds,
        "message": result.message,
    }
    with engine.begin() as connection:
        key = connection.execute(insert(drift_runs).values(**row)).inserted_primary_key
        assert key is not None
        run_id = int(key[0])
        if result.columns:
            connection.execute(
                insert(drift_columns),
                [
                    {
                        "run_id": run_id,
                        "column_name": c.column,
                        "kind": c.kind,
                        "method": c.method,
                        "threshold": c.threshold,
                        "score": c.score,
                        "drifted": c.drifted,
                        "reference_mean": c.reference_mean,
                        "current_mean": c.current_mean,
                    }
                    for c in result.columns
                ],
            )
        if live:
            connection.execute(
                insert(live_quality_table),
                [
                    {"run_id": run_id, "label": label, **values}
                    for label, values in live["per_label"].items()
                ],
            )
    return run_id


def _set_mlflow_run(engine: Engine, run_id: int, mlflow_run_id: str) -> None:
    """Record the MLflow run of a stored monitoring run."""
    with engine.begin() as connection:
        connection.execute(
            update(drift_runs).where(drift_runs.c.id == run_id).values(mlflow_run_id=mlflow_run_id)
        )


def run_monitoring(
    settings: Settings,
    *,
    now: datetime | None = None,
    version: int | None = None,
    retrainer: Retrainer | None = None,
) -> MonitoringOutcome:
    """Run one monitoring pass over the window ending `now`; return what it found and did.

    `version` overrides the served version (default: the version of the window's latest
    prediction, else the champion). `retrainer` starts retraining when a drift alert makes it
    due (orchestration passes `toxiguard.orchestration.flows.retrain`); without one, the due
    retraining is recorded and logged, not started.
    """
    end = now or datetime.now(UTC)
    start = end - timedelta(hours=settings.monitoring_window_hours)
    engine = store.make_engine(store.database_url(settings))
    try:
        store.upgrade_schema(engine)
        window = store.read_predictions(engine, start=start, end=end)
        version = version or served_version(window) or _champion_version(settings)
        rows = window[window["model_version"] == version] if version is not None else window[:0]
        outcome = MonitoringOutcome(
            run_id=0,
            window_start=start,
            window_end=end,
            model_version=version,
            result=DriftResult(INSUFFICIENT_DATA, len(rows), 0, settings.monitoring_min_rows),
        )
        if len(rows) >= settings.monitoring_min_rows and version is not None:
            outcome.result = _compare(settings, version, rows, end)
        else:
            outcome.result.message = (
                f"{len(rows)} predictions of version {version} in the window "
                f"({len(window)} in all), fewer than the {settings.monitoring_min_rows} required"
            )
        labelled = labelled_window(engine, start, end, version)
        if len(labelled) >= settings.feedback_min_rows:
            outcome.live = live_quality(labelled)
        outcome.run_id = _store_run(engine, outcome, settings)
        _raise_alerts(settings, engine, outcome, end, retrainer)
        outcome.mlflow_run_id = _log_to_mlflow(settings, outcome)
        if outcome.mlflow_run_id:
            _set_mlflow_run(engine, outcome.run_id, outcome.mlflow_run_id)
    finally:
        engine.dispose()
    logger.info(
        "monitoring run %d: %s; %d alert(s) raised, %d held by the cool-down",
        outcome.run_id,
        outcome.result.message,
        len(outcome.alerts),
        len(outcome.suppressed),
    )
    return outcome


def _compare(settings: Settings, version: int, rows: pd.DataFrame, end: datetime) -> DriftResult:
    """Return the drift of the version's rows against its reference, with the HTML report."""
    try:
        reference = reference_for_version(settings, version)
    except ModelNotFoundError as error:
        return DriftResult(
            "no_reference", len(rows), 0, settings.monitoring_min_rows, message=str(error)
        )
    report = settings.reports_dir / f"drift-{end:%Y%m%dT%H%M%S}-v{version}.html"
    return detect_drift(
        reference.frame,
        window_frame(rows, reference.vocabulary),
        method=settings.drift_method,
        threshold=settings.drift_threshold,
        min_rows=settings.monitoring_min_rows,
        text_drift=settings.text_drift,
        report_path=report,
        seed=settings.seed,
    )


def _raise_alerts(
    settings: Settings,
    engine: Engine,
    outcome: MonitoringOutcome,
    now: datetime,
    retrainer: Retrainer | None,
) -> None:
    """Re-send failed deliveries; evaluate the rules, hold repeats within the cool-down, deliver,
    retrain, store."""
    outcome.redelivery = alerting.redeliver(engine, settings, now)
    live_auc = (outcome.live or {}).get("mean_roc_auc")
    baseline = (
        _baseline_roc_auc(settings, outcome.model_version)
        if live_auc is not None and outcome.model_version is not None
        else None
    )
    candidates = alerting.evaluate_rules(
        outcome.result, settings, outcome.model_version, live_auc, baseline
    )
    raised, outcome.suppressed = alerting.apply_cooldown(
        engine, candidates, settings.alert_cooldown_minutes, now
    )
    outcome.alerts = raised
    if not raised:
        return
    if settings.alert_webhook_url:
        payload = alerting.slack_payload(
            raised,
            {
                "model version": outcome.model_version,
                "window": f"{outcome.window_start:%Y-%m-%d %H:%M} to "
                f"{outcome.window_end:%H:%M} UTC",
                "rows": outcome.result.rows,
                "report": str(outcome.result.report_path) if outcome.result.report_path else None,
            },
        )
        outcome.delivery = alerting.deliver(
            settings.alert_webhook_url,
            payload,
            settings.alert_webhook_timeout_seconds,
            settings.alert_webhook_retries,
        )
    retraining: dict[str, str] = {}
    retrain_alert = next((a for a in raised if a.rule in alerting.RETRAIN_RULES), None)
    if settings.retrain_on_drift and retrain_alert is not None:
        if retrainer is None:
            logger.warning(
                "retraining is due (%s), but no trigger was given", retrain_alert.message
            )
            outcome.retraining = {"mode": "due", "reason": retrain_alert.message}
        else:
            outcome.retraining = retrainer(settings, engine, retrain_alert.message)
        retraining[retrain_alert.key] = _describe(outcome.retraining)
    alerting.store_alerts(engine, raised, outcome.run_id, now, outcome.delivery, retraining)


def _describe(retraining: dict[str, Any]) -> str:
    """Return a one-line description of a retraining start for the alerts table."""
    if "error" in retraining:
        return f"{retraining.get('mode')}: failed: {retraining['error']}"[:2000]
    if retraining.get("mode") == "due":
        return "due: no retraining trigger configured"
    if retraining.get("mode") == "deployment":
        return f"deployment flow run {retraining.get('flow_run_id')}"
    return (
        f"in-process: versions {retraining.get('versions')}, promoted {retraining.get('promoted')},"
        f" champion {retraining.get('champion_version')}"
    )


def report_paths(settings: Settings) -> list[Path]:
    """Return the stored HTML reports, newest first."""
    folder = settings.reports_dir
    return sorted(folder.glob("drift-*.html"), key=lambda p: p.stat().st_mtime, reverse=True)


__all__ = [
    "MonitoringOutcome",
    "Retrainer",
    "report_paths",
    "run_monitoring",
    "served_version",
    "window_frame",
]
