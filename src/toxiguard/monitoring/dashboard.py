"""The Grafana panels as matplotlib figures, for the Gradio UI's "Monitoring" tab.

`monitoring_panels(settings)` reads the monitoring store (SQLite or PostgreSQL, the same code)
with the queries of `monitoring.panels`, the ones `deploy/grafana/dashboards/toxiguard.json`
runs, and returns one figure per panel of PANEL_TITLES, the recent alerts as a table and the path
of the latest Evidently report. Wire it into the UI with e.g.
`gr.Button("Refresh").click(lambda: monitoring_panels(settings).as_tuple(), outputs=[...])`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import matplotlib.dates as mdates
import pandas as pd
from matplotlib.figure import Figure
from sqlalchemy import Engine, select

from toxiguard.labels import LABELS
from toxiguard.monitoring import panels, store
from toxiguard.monitoring.tables import alerts
from toxiguard.settings import Settings

#: The Grafana panels the tab draws, in its order.
DRAWN: Final = (
    panels.DRIFT,
    panels.DRIFTED,
    panels.COLUMNS,
    panels.TRAFFIC,
    panels.FLAGGED,
    panels.QUALITY,
)
PANEL_TITLES: Final = tuple(panel.title for panel in DRAWN)
# Not Grafana's "Recent alerts" query: the tab shows these columns only, so it still draws on a
# store whose alerts table lacks a later column (Grafana's panel names `retraining`).
ALERT_COLUMNS: Final = ("created_at", "severity", "rule", "message", "model_version", "delivered")
# Each side of the data on a time axis: 5% of its span, at least half an hour, so one point (or
# one hourly bar) sits in the middle of a readable hour instead of matplotlib's four years.
_PAD_SHARE: Final = 0.05
_MIN_PAD: Final = pd.Timedelta(minutes=30)
_HOUR_BAR: Final = 0.8 / 24  # matplotlib dates are in days: a bar is 80% of its hour wide


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


def _frame(engine: Engine, query: Any, **parameters: Any) -> pd.DataFrame:
    """Return a query's rows as a frame."""
    with engine.connect() as connection:
        result = connection.execute(query, parameters)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def panel_frame(
    engine: Engine, panel: panels.Panel, since: datetime, until: datetime
) -> pd.DataFrame:
    """Return a panel's rows for the time range, "time" as UTC timestamps, numbers as floats."""
    frame = _frame(engine, panels.store_query(panel, engine.dialect.name), since=since, until=until)
    if "time" in frame:
        # A bucketed query's "time" is epoch seconds; SQLite returns timestamps as text.
        frame["time"] = (
            pd.to_datetime(pd.to_numeric(frame["time"]), unit="s", utc=True)
            if panel.buckets_time
            else pd.to_datetime(frame["time"], utc=True, format="ISO8601")
        )
    for name in frame.columns:
        # PostgreSQL's avg() and extract() answer NUMERIC, which psycopg reads as Decimal.
        column = frame[name]
        if pd.api.types.is_object_dtype(column) and column.map(_is_decimal).any():
            frame[name] = frame[name].astype(float)
    return frame


def _is_decimal(value: object) -> bool:
    """Return whether a value is a Decimal."""
    return isinstance(value, Decimal)


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


def fit_time_axis(axes: Any, times: pd.Series, width: pd.Timedelta | None = None) -> None:
    """Set the x axis to the times' own span (the last one `width` wide, for bars drawn from
    their time on), padded each side, with concise date labels."""
    low, high = pd.Timestamp(times.min()), pd.Timestamp(times.max()) + (width or pd.Timedelta(0))
    pad = max((high - low) * _PAD_SHARE, _MIN_PAD)
    axes.set_xlim(low - pad, high + pad)
    # matplotlib's stubs leave the date locators' constructors untyped.
    locator = mdates.AutoDateLocator(minticks=3, maxticks=7)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def monitoring_panels(settings: Settings, days: float = 7.0) -> MonitoringPanels:
    """Return the Monitoring tab's figures, recent alerts and latest report for the last `days`."""
    until = datetime.now(UTC)
    since = until - timedelta(days=days)
    engine = store.make_engine(store.database_url(settings))
    try:
        store.upgrade_schema(engine)
        frames = {panel.title: panel_frame(engine, panel, since, until) for panel in DRAWN}
        runs = panel_frame(engine, panels.RUNS, since, until)
        recent = _frame(
            engine,
            select(*(alerts.c[name] for name in ALERT_COLUMNS))
            .order_by(alerts.c.created_at.desc())
            .limit(50),
        )
    finally:
        engine.dispose()
    figures = [
        _drift_figure(frames[panels.DRIFT.title]),
        _drifted_figure(frames[panels.DRIFTED.title]),
        _columns_figure(frames[panels.COLUMNS.title]),
        _traffic_figure(frames[panels.TRAFFIC.title]),
        _flagged_figure(frames[panels.FLAGGED.title]),
        _quality_figure(frames[panels.QUALITY.title]),
    ]
    reports = sorted(settings.reports_dir.glob("drift-*.html"), key=lambda p: p.stat().st_mtime)
    reports = [p for p in reports if not p.stem.endswith("-text")]
    summary = _summary(runs, recent)
    return MonitoringPanels(figures, recent, reports[-1] if reports else None, summary)


def _summary(runs: pd.DataFrame, recent: pd.DataFrame) -> str:
    """Return one markdown line about the latest run (the first of RUNS' rows) and alerts."""
    if runs.empty:
        return "No monitoring run yet: run `toxiguard monitor run` (or the monitoring flow)."
    last = runs.iloc[0]
    score = "n/a" if pd.isna(last["drift_score"]) else f"{last['drift_score']:.2f}"
    when = last["time"].strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Latest run {when}: status **{last['status']}**, version "
        f"{last['model_version']}, {last['rows']} rows, drift score {score}. "
        f"{len(recent)} recent alert(s)."
    )


def _drift_figure(runs: pd.DataFrame) -> Figure:
    """Return drift_score and missing_share per run over time."""
    figure, axes = _figure(PANEL_TITLES[0])
    if runs.empty:
        _empty(axes, "drift runs")
        return figure
    axes.plot(runs["time"], runs["drift_score"], marker="o", label="drift_score")
    axes.plot(runs["time"], runs["missing_share"], marker="s", label="missing_share")
    axes.set_ylim(0, 1)
    axes.legend()
    fit_time_axis(axes, runs["time"])
    return figure


def _drifted_figure(runs: pd.DataFrame) -> Figure:
    """Return the number of drifted features per run, and of columns compared, over time."""
    figure, axes = _figure(PANEL_TITLES[1])
    if runs.empty:
        _empty(axes, "drift runs")
        return figure
    axes.plot(runs["time"], runs["drifted_features"], marker="o", label="drifted_features")
    axes.plot(
        runs["time"], runs["columns_compared"], marker=".", linestyle="--", label="columns_compared"
    )
    axes.set_ylim(bottom=0)
    axes.set_ylabel("columns")
    axes.legend(fontsize=7)
    fit_time_axis(axes, runs["time"])
    return figure


def _columns_figure(columns: pd.DataFrame) -> Figure:
    """Return the latest run's per-column drift scores, drifted columns in red."""
    figure, axes = _figure(PANEL_TITLES[2])
    if columns.empty:
        _empty(axes, "per-column results")
        return figure
    colours = ["tab:red" if drifted else "tab:blue" for drifted in columns["drifted"]]
    axes.barh(columns["column"], columns["score"].fillna(0), color=colours)
    axes.set_xlabel("score (red: drifted)")
    axes.tick_params(axis="y", labelsize=7)
    return figure


def _traffic_figure(hourly: pd.DataFrame) -> Figure:
    """Return predictions per hour."""
    figure, axes = _figure(PANEL_TITLES[3])
    if hourly.empty:
        _empty(axes, "predictions")
        return figure
    # A bucket's time is its start: the bar covers the hour it counts.
    axes.bar(hourly["time"], hourly["predictions"], width=_HOUR_BAR, align="edge")
    fit_time_axis(axes, hourly["time"], width=pd.Timedelta(days=_HOUR_BAR))
    return figure


def _flagged_figure(hourly: pd.DataFrame) -> Figure:
    """Return the flagged rate per label and hour."""
    figure, axes = _figure(PANEL_TITLES[4])
    if hourly.empty:
        _empty(axes, "predictions")
        return figure
    for label in LABELS:
        axes.plot(hourly["time"], hourly[label], marker="o", markersize=4, label=label)
    axes.set_ylim(0, 1)
    axes.legend(fontsize=7, ncols=3)
    fit_time_axis(axes, hourly["time"])
    return figure


def _quality_figure(quality: pd.DataFrame) -> Figure:
    """Return live ROC-AUC per label per run (runs with labelled traffic)."""
    figure, axes = _figure(PANEL_TITLES[5])
    if quality.empty:
        _empty(axes, "labelled traffic")
        return figure
    for label, part in quality.groupby("metric"):
        axes.plot(part["time"], part["value"], marker="o", label=str(label))
    axes.set_ylim(0, 1)
    axes.legend(fontsize=7, ncols=3)
    fit_time_axis(axes, quality["time"])
    return figure


__all__ = [
    "ALERT_COLUMNS",
    "PANEL_TITLES",
    "MonitoringPanels",
    "fit_time_axis",
    "monitoring_panels",
    "panel_frame",
]
