"""The Monitoring tab's panels: one query definition shared with Grafana, time axes fit to data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from sqlalchemy import Engine, insert

from toxiguard.labels import LABELS, SCORE_COLUMNS
from toxiguard.monitoring import panels, store
from toxiguard.monitoring.dashboard import (
    PANEL_TITLES,
    fit_time_axis,
    monitoring_panels,
    panel_frame,
)
from toxiguard.monitoring.tables import drift_columns, drift_runs, live_quality
from toxiguard.settings import Settings

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
NOW = datetime(2025, 3, 4, 10, 20, tzinfo=UTC)


def _grafana() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DASHBOARD / "toxiguard.json").read_text())
    return loaded


def test_grafana_dashboard_runs_the_shared_definitions() -> None:
    dashboard = _grafana()
    by_title = {panel.title: panel for panel in panels.PANELS}
    assert [p["title"] for p in dashboard["panels"]] == list(by_title)
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert target["rawSql"] == panels.grafana_sql(by_title[panel["title"]])
    # Written from the definitions, the file would not change.
    text = (DASHBOARD / "toxiguard.json").read_text()
    assert panels.dashboard_json(panels.grafana_dashboard(dashboard)) == text
    # Every panel the Gradio tab draws is one of Grafana's.
    assert set(PANEL_TITLES) <= set(by_title)


def test_writing_the_dashboard_puts_the_definitions_back(tmp_path: Path) -> None:
    dashboard = _grafana()
    dashboard["panels"][4]["targets"][0]["rawSql"] = "SELECT 1"
    path = tmp_path / "toxiguard.json"
    path.write_text(panels.dashboard_json(dashboard))
    assert panels.write_grafana_dashboard(path) is True
    assert path.read_text() == (DASHBOARD / "toxiguard.json").read_text()
    assert panels.write_grafana_dashboard(path) is False
    dashboard["panels"][0]["title"] = "Something else"
    with pytest.raises(ValueError, match="differ from the definitions"):
        panels.grafana_dashboard(dashboard)


def test_store_queries_expand_grafanas_macros_per_dialect() -> None:
    postgres = str(panels.store_query(panels.TRAFFIC, "postgresql"))
    # Grafana's own expansion of $__timeGroupAlias on PostgreSQL.
    assert postgres.startswith(
        'SELECT floor(extract(epoch from created_at)/3600)*3600 AS "time", count(*)'
    )
    assert "WHERE created_at BETWEEN :since AND :until" in postgres
    sqlite = str(panels.store_query(panels.FLAGGED, "sqlite"))
    assert "strftime('%s', created_at)" in sqlite and "$" not in sqlite
    assert panels.TRAFFIC.buckets_time and not panels.DRIFT.buckets_time
    with pytest.raises(ValueError, match="mysql"):
        panels.store_query(panels.DRIFT, "mysql")


def _prediction(created_at: datetime, index: int, toxic: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "created_at": created_at,
        "request_id": f"r{index}",
        "item_index": 0,
        "source": "api",
        "length": 10,
        "words": 2,
        "upper_share": 0.0,
        "non_letter_share": 0.0,
    }
    row.update({column: 0.9 if toxic else 0.1 for column in SCORE_COLUMNS})
    row.update({f"flag_{label}": toxic and label == "toxic" for label in LABELS})
    return row


def _run(created_at: datetime, status: str = "ok") -> dict[str, Any]:
    return {
        "created_at": created_at,
        "window_start": created_at - timedelta(hours=1),
        "window_end": created_at,
        "model_version": 3,
        "status": status,
        "rows": 400,
        "reference_rows": 1000,
        "drift_score": 0.25,
        "missing_share": 0.0,
        "drifted_features": 2,
        "columns_compared": 8,
        "method": "psi",
        "threshold": 0.1,
    }


@pytest.fixture
def home(tmp_path: Path) -> tuple[Settings, Engine]:
    settings = Settings.model_validate({"home": tmp_path / "home"})
    engine = store.make_engine(store.database_url(settings))
    store.upgrade_schema(engine)
    return settings, engine


def test_panels_read_the_sqlite_store_with_the_shared_queries(
    home: tuple[Settings, Engine],
) -> None:
    settings, engine = home
    # Three predictions in the 09:00 hour (one flagged toxic), one at 10:05.
    times = [NOW - timedelta(minutes=m) for m in (75, 70, 65)] + [NOW - timedelta(minutes=15)]
    with engine.begin() as connection:
        connection.execute(
            insert(store.predictions),
            [_prediction(t, i, toxic=i == 0) for i, t in enumerate(times)],
        )
        key = connection.execute(insert(drift_runs).values(_run(NOW))).inserted_primary_key
        assert key is not None
        run_id = key[0]
        connection.execute(
            insert(drift_columns),
            [
                {"run_id": run_id, "column_name": name, "kind": "num", "method": "psi"}
                | {"score": score, "drifted": score > 0.1}
                for name, score in (("length", 0.3), ("words", 0.05))
            ],
        )
        connection.execute(
            insert(live_quality).values(
                run_id=run_id, label="toxic", rows=100, positives=10, roc_auc=0.9
            )
        )
    since, until = NOW - timedelta(days=1), NOW
    traffic = panel_frame(engine, panels.TRAFFIC, since, until)
    assert traffic["time"].tolist() == [
        pd.Timestamp("2025-03-04 09:00", tz="UTC"),
        pd.Timestamp("2025-03-04 10:00", tz="UTC"),
    ]
    assert traffic["predictions"].tolist() == [3, 1]
    flagged = panel_frame(engine, panels.FLAGGED, since, until)
    assert flagged["toxic"].tolist() == pytest.approx([1 / 3, 0.0])
    assert flagged["insult"].tolist() == [0.0, 0.0]
    columns = panel_frame(engine, panels.COLUMNS, since, until)
    assert columns[["column", "drifted"]].values.tolist() == [["length", 1], ["words", 0]]
    # The time filter is the query's own: a range before the data holds nothing.
    assert panel_frame(engine, panels.TRAFFIC, since - timedelta(days=1), since).empty
    engine.dispose()

    shown = monitoring_panels(settings, days=100_000)
    assert len(shown.figures) == len(PANEL_TITLES)
    for figure in shown.figures:
        assert not [t for t in figure.axes[0].texts if " yet" in t.get_text()]
    assert "Latest run 2025-03-04 10:20 UTC: status **ok**, version 3" in shown.summary


def _xlim(figure: Figure) -> tuple[pd.Timestamp, pd.Timestamp]:
    # matplotlib's dates are days since its epoch, 1970-01-01 UTC.
    low, high = figure.axes[0].get_xlim()
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    return (
        (epoch + pd.to_timedelta(low, unit="D")).round("s"),
        (epoch + pd.to_timedelta(high, unit="D")).round("s"),
    )


def _labels(figure: Figure) -> list[str]:
    figure.draw_without_rendering()
    return [t.get_text() for t in figure.axes[0].get_xticklabels() if t.get_text()]


def test_one_point_shows_as_a_marker_in_an_hour_wide_axis(home: tuple[Settings, Engine]) -> None:
    settings, engine = home
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    with engine.begin() as connection:
        connection.execute(insert(store.predictions), [_prediction(moment, 0, toxic=True)])
        connection.execute(insert(drift_runs).values(_run(moment)))
    engine.dispose()
    figures = dict(zip(PANEL_TITLES, monitoring_panels(settings).figures, strict=True))
    # The flagged rate's point is its hour's; the drift run's is its own time.
    points = {
        panels.FLAGGED.title: pd.Timestamp(moment).floor("h"),
        panels.DRIFT.title: pd.Timestamp(moment),
    }
    for title, point in points.items():
        figure = figures[title]
        low, high = _xlim(figure)
        # Not matplotlib's four years around a single date: the point, half an hour each side.
        assert high - low == pd.Timedelta(hours=1)
        lines = figure.axes[0].get_lines()
        assert lines and all(line.get_marker() not in ("", "None", None) for line in lines)
        assert low + pd.Timedelta(minutes=30) == point == high - pd.Timedelta(minutes=30)
        assert any(":" in label for label in _labels(figure)), _labels(figure)
    # One hourly bar, drawn from its hour on, fits inside its axis.
    traffic = figures[panels.TRAFFIC.title].axes[0]
    (bar,) = traffic.patches
    assert isinstance(bar, Rectangle)
    low_x, high_x = traffic.get_xlim()
    assert low_x < bar.get_x() < bar.get_x() + bar.get_width() < high_x
    assert high_x - low_x < 1 / 12  # days: under two hours wide


def test_time_axis_spans_the_data_with_a_small_pad() -> None:
    times = pd.Series(pd.date_range("2025-03-01", periods=5, freq="6h", tz="UTC"))
    figure = Figure()
    axes = figure.add_subplot()
    axes.plot(times, range(5), marker="o")
    fit_time_axis(axes, times)
    low, high = _xlim(figure)
    span = times.max() - times.min()
    assert low == times.min() - span * 0.05
    assert high == times.max() + span * 0.05
    # A day's data is labelled in hours, not years.
    assert not any(label.isdigit() and len(label) == 4 for label in _labels(figure))
