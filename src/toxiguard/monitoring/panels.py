"""The SQL of every monitoring dashboard panel, written once for Grafana and the Gradio tab.

Each `Panel` holds its query in Grafana's macro syntax (`$__timeFilter(column)`,
`$__timeGroupAlias(column, 1h)`). `grafana_sql` is that text, as the Grafana dashboard's
`rawSql`; `store_query` expands the macros into SQL with `:since` / `:until` parameters for the
monitoring store's own dialect (SQLite or PostgreSQL), which `monitoring.dashboard` draws from.
`write_grafana_dashboard` puts the definitions into the dashboard JSON
(`python -m toxiguard.monitoring.panels`), and a unit test checks the JSON against them.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy import DateTime, TextClause, bindparam, text

from toxiguard.labels import LABELS

DASHBOARD_PATH: Final = Path("deploy/grafana/dashboards/toxiguard.json")
_TIME_FILTER: Final = re.compile(r"\$__timeFilter\(([^)]+)\)")
_TIME_GROUP: Final = re.compile(r"\$__timeGroupAlias\(([^,]+),\s*(\d+)([smhd])\)")
_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# The epoch second at the start of a column's bucket, per dialect: what Grafana's own
# $__timeGroupAlias expands to on PostgreSQL, and SQLite's equivalent.
_BUCKET: Final = {
    "postgresql": "floor(extract(epoch from {column})/{seconds})*{seconds}",
    "sqlite": "(CAST(strftime('%s', {column}) AS INTEGER)/{seconds})*{seconds}",
}


@dataclass(frozen=True)
class Panel:
    """One dashboard panel: its title (the key in the Grafana JSON) and its query."""

    title: str
    sql: str

    @property
    def buckets_time(self) -> bool:
        """Return whether the query groups rows into time buckets (its "time" is epoch seconds)."""
        return _TIME_GROUP.search(self.sql) is not None


DRIFT = Panel(
    "Drift score and missing share",
    'SELECT created_at AS "time", drift_score, missing_share\nFROM drift_runs\n'
    "WHERE $__timeFilter(created_at) AND status = 'ok'\nORDER BY 1",
)
DRIFTED = Panel(
    "Drifted features",
    'SELECT created_at AS "time", drifted_features, columns_compared\nFROM drift_runs\n'
    "WHERE $__timeFilter(created_at) AND status = 'ok'\nORDER BY 1",
)
COLUMNS = Panel(
    "Per-column drift (latest run)",
    'SELECT c.column_name AS "column", c.score AS "score", '
    "CASE WHEN c.drifted THEN 1 ELSE 0 END AS drifted\nFROM drift_columns c\n"
    "WHERE c.run_id = (\n"
    "  SELECT max(id) FROM drift_runs WHERE status = 'ok' AND $__timeFilter(created_at)\n"
    ")\nORDER BY c.column_name",
)
COLUMN_HISTORY = Panel(
    "Per-column drift over time",
    'SELECT r.created_at AS "time", c.column_name AS metric, '
    "CASE WHEN c.drifted THEN 1 ELSE 0 END AS value\n"
    "FROM drift_columns c JOIN drift_runs r ON r.id = c.run_id\n"
    "WHERE $__timeFilter(r.created_at)\nORDER BY 1, 2",
)
TRAFFIC = Panel(
    "Predictions per hour",
    "SELECT $__timeGroupAlias(created_at, 1h), count(*) AS predictions\nFROM predictions\n"
    "WHERE $__timeFilter(created_at)\nGROUP BY 1\nORDER BY 1",
)
# The column names come from LABELS, the code's own constant; nothing from outside reaches them.
FLAGGED = Panel(
    "Flagged rate per label",
    "SELECT $__timeGroupAlias(created_at, 1h),\n"  # nosec B608
    + ",\n".join(
        f"  avg(CASE WHEN flag_{label} THEN 1.0 ELSE 0.0 END) AS {label}" for label in LABELS
    )
    + "\nFROM predictions\nWHERE $__timeFilter(created_at)\nGROUP BY 1\nORDER BY 1",
)
QUALITY = Panel(
    "Live quality (labelled traffic)",
    'SELECT r.created_at AS "time", q.label AS metric, q.roc_auc AS value\n'
    "FROM live_quality q JOIN drift_runs r ON r.id = q.run_id\n"
    "WHERE $__timeFilter(r.created_at) AND q.roc_auc IS NOT NULL\nORDER BY 1, 2",
)
LIVE_METRICS = Panel(
    "Live mean ROC-AUC and F1 macro",
    'SELECT created_at AS "time", live_roc_auc, live_f1_macro, labelled_rows\nFROM drift_runs\n'
    "WHERE $__timeFilter(created_at) AND labelled_rows IS NOT NULL\nORDER BY 1",
)
ALERTS = Panel(
    "Recent alerts",
    'SELECT created_at AS "time", severity, rule, message, model_version, delivered, retraining\n'
    "FROM alerts\nWHERE $__timeFilter(created_at)\nORDER BY created_at DESC\nLIMIT 50",
)
RUNS = Panel(
    "Monitoring runs",
    'SELECT created_at AS "time", status, model_version, "rows", drift_score, missing_share, '
    "drifted_features, message, report_path\nFROM drift_runs\nWHERE $__timeFilter(created_at)\n"
    "ORDER BY created_at DESC\nLIMIT 50",
)
#: Every panel of the Grafana dashboard, in its order.
PANELS: Final = (
    DRIFT,
    DRIFTED,
    COLUMNS,
    COLUMN_HISTORY,
    TRAFFIC,
    FLAGGED,
    QUALITY,
    LIVE_METRICS,
    ALERTS,
    RUNS,
)


def grafana_sql(panel: Panel) -> str:
    """Return the panel's query as Grafana's PostgreSQL data source takes it (its rawSql)."""
    return panel.sql


def store_query(panel: Panel, dialect: str) -> TextClause:
    """Return the panel's query for the store's dialect, the time range as `:since`/`:until`."""
    if dialect not in _BUCKET:
        raise ValueError(f"no dashboard queries for the {dialect!r} dialect")

    def bucket(match: re.Match[str]) -> str:
        seconds = int(match.group(2)) * _SECONDS[match.group(3)]
        expression = _BUCKET[dialect].format(column=match.group(1).strip(), seconds=seconds)
        return f'{expression} AS "time"'

    sql = _TIME_GROUP.sub(bucket, panel.sql)
    sql = _TIME_FILTER.sub(lambda m: f"{m.group(1).strip()} BETWEEN :since AND :until", sql)
    query = text(sql)
    if ":since" in sql:
        # Typed, so SQLite compares the same text format the store writes its timestamps in.
        query = query.bindparams(
            bindparam("since", type_=DateTime(timezone=True)),
            bindparam("until", type_=DateTime(timezone=True)),
        )
    return query


def grafana_dashboard(dashboard: dict[str, Any]) -> dict[str, Any]:
    """Return the dashboard JSON with each panel's rawSql set from its definition in PANELS.

    Layout and display options stay as they are (they are Grafana's); the titles must match.
    """
    by_title = {panel.title: panel for panel in PANELS}
    titles = [panel["title"] for panel in dashboard["panels"]]
    if sorted(titles) != sorted(by_title):
        raise ValueError(f"dashboard panels {titles} differ from the definitions {list(by_title)}")
    updated = json.loads(json.dumps(dashboard))
    for panel in updated["panels"]:
        for target in panel["targets"]:
            target["rawSql"] = grafana_sql(by_title[panel["title"]])
    result: dict[str, Any] = updated
    return result


def dashboard_json(dashboard: dict[str, Any]) -> str:
    """Return the dashboard as the text of its JSON file (2-space indent, trailing newline)."""
    return json.dumps(dashboard, indent=2) + "\n"


def write_grafana_dashboard(path: Path = DASHBOARD_PATH) -> bool:
    """Write the definitions' SQL into the Grafana dashboard JSON; return whether it changed."""
    before = path.read_text()
    after = dashboard_json(grafana_dashboard(json.loads(before)))
    if after != before:
        path.write_text(after)
    return after != before


def main(argv: list[str] | None = None) -> int:
    """Rewrite the dashboard JSON given (or the default) from the definitions; return 0."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DASHBOARD_PATH
    changed = write_grafana_dashboard(path)
    sys.stdout.write(f"{path}: {'updated' if changed else 'already up to date'}\n")
    return 0


__all__ = [
    "PANELS",
    "Panel",
    "grafana_dashboard",
    "grafana_sql",
    "store_query",
    "write_grafana_dashboard",
]


if __name__ == "__main__":
    raise SystemExit(main())
