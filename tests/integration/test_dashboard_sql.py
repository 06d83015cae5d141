"""Every Grafana panel's SQL, run against a real PostgreSQL holding data from real monitoring runs.

Grafana cannot run here, so its macros are expanded the way its PostgreSQL data source expands
them, and each query must return rows. The Gradio Monitoring tab's panels are drawn from the same
store with the same queries (`monitoring.panels`), and must show the rows Grafana's would.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError

from tests.integration.monitoring_support import log_traffic, write_csv
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.monitoring import panels as definitions
from toxiguard.monitoring import store, tables
from toxiguard.monitoring.dashboard import (
    ALERT_COLUMNS,
    DRAWN,
    PANEL_TITLES,
    monitoring_panels,
    panel_frame,
)
from toxiguard.monitoring.feedback import FeedbackItem, store_feedback
from toxiguard.monitoring.job import run_monitoring
from toxiguard.orchestration.simulate import choose_rows
from toxiguard.registry.client import load_toxicity_model, resolve_model_uri
from toxiguard.settings import Settings
from toxiguard.training.pipeline import run_training

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "toxiguard.json"
MY_TABLES = [
    table.name
    for table in (
        tables.drift_runs,
        tables.drift_columns,
        tables.live_quality,
        tables.alerts,
        tables.feedback,
    )
]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def expand_macros(sql: str, start: datetime, end: datetime) -> str:
    """Return the SQL with Grafana's PostgreSQL macros expanded for the time range."""
    since, until = (f"'{moment.isoformat()}'::timestamptz" for moment in (start, end))

    def group(match: re.Match[str], alias: bool) -> str:
        column, interval = match.group(1).strip(), match.group(2).strip().strip("'\"")
        seconds = int(interval[:-1]) * _UNITS[interval[-1]]
        expanded = f"floor(extract(epoch from {column})/{seconds})*{seconds}"
        return f'{expanded} AS "time"' if alias else expanded

    sql = re.sub(r"\$__timeGroupAlias\(([^,]+),([^)]+)\)", lambda m: group(m, True), sql)
    sql = re.sub(r"\$__timeGroup\(([^,]+),([^)]+)\)", lambda m: group(m, False), sql)
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN {since} AND {until}", sql)
    sql = sql.replace("$__timeFrom()", since).replace("$__timeTo()", until)
    assert "$" not in sql, f"unexpanded Grafana macro in: {sql}"
    return sql


def panels() -> list[dict[str, Any]]:
    """Return every panel of the dashboard JSON."""
    dashboard = json.loads(DASHBOARD.read_text())
    found: list[dict[str, Any]] = dashboard["panels"]
    return found


def test_dashboard_is_provisioned_from_the_datasource() -> None:
    datasource = (GRAFANA / "provisioning" / "datasources" / "postgres.yml").read_text()
    uid_match = re.search(r"^\s*uid:\s*(\S+)", datasource, re.MULTILINE)
    assert uid_match is not None
    uid = uid_match.group(1)
    provider = (GRAFANA / "provisioning" / "dashboards" / "toxiguard.yml").read_text()
    assert "type: file" in provider and "path: /etc/grafana/dashboards" in provider
    titles = [panel["title"] for panel in panels()]
    assert len(set(titles)) == len(titles)
    for panel in panels():
        assert panel["datasource"]["uid"] == uid
        assert panel["targets"] and all(t["rawSql"].strip() for t in panel["targets"])
    for title in ("Drift score", "Drifted features", "Per-column drift", "Predictions per hour"):
        assert any(t.startswith(title) for t in titles), title
    for title in ("Flagged rate per label", "Live quality", "Recent alerts"):
        assert any(t.startswith(title) for t in titles), title
    # The JSON's SQL is the one definition's (`python -m toxiguard.monitoring.panels` writes it).
    by_title = {panel.title: panel for panel in definitions.PANELS}
    for panel in panels():
        assert [t["rawSql"] for t in panel["targets"]] == [
            definitions.grafana_sql(by_title[panel["title"]])
        ]


def test_expand_macros_like_grafana() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    sql = expand_macros(
        "SELECT $__timeGroupAlias(created_at, 1h) FROM t WHERE $__timeFilter(created_at)",
        start,
        start + timedelta(days=1),
    )
    assert sql == (
        'SELECT floor(extract(epoch from created_at)/3600)*3600 AS "time" FROM t WHERE created_at '
        "BETWEEN '2025-01-01T00:00:00+00:00'::timestamptz AND "
        "'2025-01-02T00:00:00+00:00'::timestamptz"
    )


@pytest.fixture
def monitored_postgres(
    settings: Settings,
    postgres_url: str,
    shared_train: pd.DataFrame,
    tmp_path: Path,
) -> tuple[Settings, Engine, datetime]:
    """Return settings on a PostgreSQL store holding two monitoring runs of real traffic."""
    shuffled = shared_train.sample(frac=1.0, random_state=21).reset_index(drop=True)
    data = write_csv(shuffled.iloc[:3000], tmp_path / "train.csv")
    pool = shuffled.iloc[3000:9000].reset_index(drop=True)
    settings = settings.model_copy(
        update={"database_url": postgres_url, "retrain_on_drift": False, "training_data": data}
    )
    run_training(data, ["complement-nb"], settings)
    model, _ = load_toxicity_model(resolve_model_uri(None, settings), settings)
    engine = store.make_engine(store.database_url(settings))
    store.upgrade_schema(engine)
    now = datetime.now(UTC)
    calm = pool.iloc[choose_rows(pool, "none", 250, 1, data)]
    log_traffic(
        engine, model, calm[TEXT_COLUMN].tolist(), version=1, created_at=now - timedelta(hours=2)
    )
    toxic = pool.iloc[choose_rows(pool, "more-toxic", 250, 2, data)].reset_index(drop=True)
    request_ids = log_traffic(
        engine,
        model,
        toxic[TEXT_COLUMN].tolist(),
        version=1,
        created_at=now - timedelta(minutes=30),
    )
    labels = toxic.loc[:, list(LABELS)].to_numpy()
    store_feedback(
        engine,
        [
            FeedbackItem(request_ids[i // 16], i % 16, tuple(int(v) for v in labels[i]))
            for i in range(120)
        ],
        source="import",
    )
    calm_run = run_monitoring(settings, now=now - timedelta(hours=1))
    drift_run = run_monitoring(settings, now=now)
    assert calm_run.result.status == "ok" and drift_run.result.status == "ok"
    assert drift_run.alerts and drift_run.live is not None
    return settings, engine, now


def test_every_panel_query_returns_rows(
    monitored_postgres: tuple[Settings, Engine, datetime],
) -> None:
    settings, engine, now = monitored_postgres
    assert engine.dialect.name == "postgresql"
    with engine.connect() as connection:
        assert store.schema_differences(connection, tables=MY_TABLES) == []
        for panel in panels():
            for target in panel["targets"]:
                sql = expand_macros(
                    target["rawSql"], now - timedelta(days=7), now + timedelta(minutes=5)
                )
                rows = connection.execute(text(sql)).all()
                assert rows, f"panel '{panel['title']}' returned no rows:\n{sql}"
    # The comparison does look: a column dropped from the database is named as the one to add
    # back, and the Grafana panel that reads it stops working without it.
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE alerts DROP COLUMN retraining"))
        differences = store.schema_differences(connection, tables=MY_TABLES)
    assert [(d[0], d[2], d[3].name) for d in differences] == [
        ("add_column", "alerts", "retraining")
    ]
    (recent_alerts,) = [p for p in panels() if p["title"] == "Recent alerts"]
    sql = expand_macros(
        recent_alerts["targets"][0]["rawSql"], now - timedelta(days=7), now + timedelta(minutes=5)
    )
    with engine.connect() as connection, pytest.raises(ProgrammingError, match="retraining"):
        connection.execute(text(sql))

    # The Gradio tab runs the same queries: for each panel it draws, the rows Grafana's shows.
    since, until = now - timedelta(days=7), now + timedelta(minutes=5)
    with engine.connect() as connection:
        for drawn in DRAWN:
            result = connection.execute(text(expand_macros(drawn.sql, since, until)))
            grafana = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
            tab = panel_frame(engine, drawn, since, until)
            assert list(tab.columns) == list(grafana.columns), drawn.title
            assert len(tab) == len(grafana) > 0, drawn.title
            numbers = [c for c in tab.columns if c not in ("time", "column", "metric")]
            assert tab[numbers].to_numpy(float) == pytest.approx(
                grafana[numbers].to_numpy(float), nan_ok=True
            ), drawn.title

    # The Gradio tab draws the same panels from the same store; its alerts table shows only
    # ALERT_COLUMNS, so it still draws without the dropped column.
    shown = monitoring_panels(settings)
    assert list(shown.alerts.columns) == list(ALERT_COLUMNS)
    assert len(shown.figures) == len(PANEL_TITLES)
    assert len(shown.alerts) >= 1 and shown.latest_report is not None
    assert shown.latest_report.is_file() and "drift score" in shown.summary
    for figure in shown.figures:
        assert not any(
            "no " in t.get_text() and " yet" in t.get_text() for t in figure.axes[0].texts
        )
