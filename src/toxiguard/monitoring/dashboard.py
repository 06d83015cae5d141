"""The Grafana panels as matplotlib figures, for the Gradio UI's "Monitoring" tab.

`monitoring_panels(settings)` reads the monitoring store (SQLite or PostgreSQL, the same code)
and returns one figure per panel of `deploy/grafana/dashboards/toxiguard.json`, the recent
alerts as a table and the path of the latest Evidently report. Wire it into the UI with e.g.
`gr.Button("Refresh").click(lambda: monitoring_panels(settings).as_tuple(), outputs=[...])`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pandas as pd
from matplotlib.figure import Figure
from sqlalchemy import Engine, select

from toxiguard.labels import LABELS
from toxiguard.monitoring import store
from toxiguard.monitoring.tables import alerts, drift_columns, drift_runs, live_quality
from toxiguard.settings import Settings

PANEL_TITLES: Final = (
    "Drift score and missing share",
    "Drifted features",
    "Per-column drift (latest run)",
    "Predictions per hour",
    "Flagged rate per label",
    "Live quality (labelled traffic)",
)
ALERT_COLUMNS: Final = ("created_at", "severity", "rule", "message", "model_version", "delivered")


@dataclass(frozen=True)
class MonitoringPanels:
    """The Monitoring tab's content: figures in PANEL_TITLES order, alerts, latest report."""

    figures: list[Figure]
    alerts: pd.DataFrame
    latest_report: Path | None
    summary: str

    def as_tuple(self) -> tuple[Any, ...]:
        """Return summary, the figures, the alerts and the report path (Gradio outputs order)."""
        report = str(self.latest_report) if self.latest_report else None
        return (self.summary, *self.figures, self.alerts, report)


def _frame(engine: Engine, query: Any) -> pd.DataFrame:
    """Return a query's rows as a frame."""
    with engine.connect() as connection:
        result = connection.execute(query)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _figure(title: str) -> tuple[Figure, Any]:
    """Return a new figure and its axes, titled."""
    figure = Figure(figsize=(7, 3.2), layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title)
    return figure, axes


def _empty(axes: Any, what: str) -> None:
    """Write a 'no data' note on empty axes."""
    axes.text(0.5, 0.5, f"no {what} yet", ha="center", va="center", transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def _hourly(frame: pd.DataFrame) -> pd.DataFrame:
    """Return prediction-log rows grouped per hour: count and flagged rate per label."""
    frame = frame.assign(hour=pd.to_datetime(frame["created_at"], utc=True).dt.floor("h"))
    grouped = frame.groupby("hour")
    out = pd.DataFrame({"predictions": grouped.size()})
    for label in LABELS:
        out[label] = grouped[f"flag_{label}"].mean()
    return out


def monitoring_panels(settings: Settings, days: float = 7.0) -> MonitoringPanels:
    """Return the Monitoring tab's figures, recent alerts and latest report for the last `days`."""
    since = datetime.now(UTC) - timedelta(days=days)
    engine = store.make_engine(store.database_url(settings))
    try:
        store.upgrade_schema(engine)
        runs = _frame(
            engine,
            select(drift_runs).where(drift_runs.c.created_at >= since).order_by(drift_runs.c.id),
        )
        predictions = _frame(
            engine,
            select(
                store.predictions.c.created_at,
                *(store.predictions.c[f"flag_{label}"] for label in LABELS),
            ).where(store.predictions.c.created_at >= since),
        )
        ok_runs = runs[runs["status"] == "ok"] if len(runs) else runs
        latest_id = int(ok_runs["id"].iloc[-1]) if len(ok_runs) else None
        columns = (
            _frame(engine, select(drift_columns).where(drift_columns.c.run_id == latest_id))
            if latest_id is not None
            else pd.DataFrame()
        )
        quality = _frame(
            engine,
            select(live_quality.c.run_id, live_quality.c.label, live_quality.c.roc_auc)
            .join(drift_runs, drift_runs.c.id == live_quality.c.run_id)
            .where(drift_runs.c.created_at >= since),
        )
        recent = _frame(
            engine,
            select(*(alerts.c[name] for name in ALERT_COLUMNS))
            .order_by(alerts.c.created_at.desc())
            .limit(50),
        )
    finally:
        engine.dispose()
    figures = [
        _drift_figure(ok_runs),
        _drifted_figure(ok_runs),
        _columns_figure(columns),
        _traffic_figure(predictions),
        _flagged_figure(predictions),
        _quality_figure(runs, quality),
    ]
    reports = sorted(settings.reports_dir.glob("drift-*.html"), key=lambda p: p.stat().st_mtime)
    reports = [p for p in reports if not p.stem.endswith("-text")]
    summary = _summary(runs, recent)
    return MonitoringPanels(figures, recent, reports[-1] if reports else None, summary)


def _summary(runs: pd.DataFrame, recent: pd.DataFrame) -> str:
    """Return one markdown line about the latest run and alerts."""
    if runs.empty:
        return "No monitoring run yet: run `toxiguard monitor run` (or the monitoring flow)."
    last = runs.iloc[-1]
    score = "n/a" if pd.isna(last["drift_score"]) else f"{last['drift_score']:.2f}"
    return (
        f"Latest run {last['created_at']}: status **{last['status']}**, version "
        f"{last['model_version']}, {last['rows']} rows, drift score {score}. "
        f"{len(recent)} recent alert(s)."
    )


def _drift_figure(runs: pd.DataFrame) -> Figure:
    """Return drift_score and missing_share over time."""
    figure, axes = _figure(PANEL_TITLES[0])
    if runs.empty:
        _empty(axes, "drift runs")
        return figure
    axes.plot(runs["created_at"], runs["drift_score"], marker="o", label="drift_score")
    axes.plot(runs["created_at"], runs["missing_share"], marker="s", label="missing_share")
    axes.set_ylim(0, 1)
    axes.legend()
    figure.autofmt_xdate()
    return figure


def _drifted_figure(runs: pd.DataFrame) -> Figure:
    """Return the number of drifted features per run."""
    figure, axes = _figure(PANEL_TITLES[1])
    if runs.empty:
        _empty(axes, "drift runs")
        return figure
    axes.bar(runs["created_at"].astype(str), runs["drifted_features"])
    axes.set_ylabel("columns")
    axes.tick_params(axis="x", labelrotation=45, labelsize=7)
    return figure


def _columns_figure(columns: pd.DataFrame) -> Figure:
    """Return the latest run's per-column drift scores, drifted columns in red."""
    figure, axes = _figure(PANEL_TITLES[2])
    if columns.empty:
        _empty(axes, "per-column results")
        return figure
    colours = ["tab:red" if drifted else "tab:blue" for drifted in columns["drifted"]]
    axes.barh(columns["column_name"], columns["score"].fillna(0), color=colours)
    axes.set_xlabel(f"score ({columns['method'].iloc[0]}; red: drifted)")
    axes.tick_params(axis="y", labelsize=7)
    return figure


def _traffic_figure(predictions: pd.DataFrame) -> Figure:
    """Return predictions per hour."""
    figure, axes = _figure(PANEL_TITLES[3])
    if predictions.empty:
        _empty(axes, "predictions")
        return figure
    hourly = _hourly(predictions)
    axes.bar(hourly.index, hourly["predictions"], width=1 / 30)
    figure.autofmt_xdate()
    return figure


def _flagged_figure(predictions: pd.DataFrame) -> Figure:
    """Return the flagged rate per label and hour."""
    figure, axes = _figure(PANEL_TITLES[4])
    if predictions.empty:
        _empty(axes, "predictions")
        return figure
    hourly = _hourly(predictions)
    for label in LABELS:
        axes.plot(hourly.index, hourly[label], marker=".", label=label)
    axes.set_ylim(0, 1)
    axes.legend(fontsize=7, ncols=3)
    figure.autofmt_xdate()
    return figure


def _quality_figure(runs: pd.DataFrame, quality: pd.DataFrame) -> Figure:
    """Return live ROC-AUC per label per run (with feedback)."""
    figure, axes = _figure(PANEL_TITLES[5])
    if quality.empty or runs.empty:
        _empty(axes, "labelled traffic")
        return figure
    merged = quality.merge(runs[["id", "created_at"]], left_on="run_id", right_on="id")
    for label, part in merged.groupby("label"):
        axes.plot(part["created_at"], part["roc_auc"], marker="o", label=str(label))
    axes.set_ylim(0, 1)
    axes.legend(fontsize=7, ncols=3)
    figure.autofmt_xdate()
    return figure


__all__ = ["ALERT_COLUMNS", "PANEL_TITLES", "MonitoringPanels", "monitoring_panels"]
