"""A summary of the prediction log over a recent window: the monitoring flow's first job.

The drift job of the monitoring issue replaces this as the flow's main step; the summary
(traffic, versions served, flagged rate and mean score per label) stays a useful health view.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from toxiguard.labels import LABELS
from toxiguard.monitoring import store
from toxiguard.settings import Settings


def prediction_log_summary(
    settings: Settings, window_hours: float = 1.0, now: datetime | None = None
) -> dict[str, Any]:
    """Return counts, versions served, flagged rate and mean score per label in the window."""
    end = now or datetime.now(UTC)
    start = end - timedelta(hours=window_hours)
    engine = store.make_engine(store.database_url(settings))
    try:
        store.upgrade_schema(engine)
        frame = store.read_predictions(engine, start=start, end=end)
    finally:
        engine.dispose()
    summary: dict[str, Any] = {
        "window_start": start.isoformat(timespec="seconds"),
        "window_end": end.isoformat(timespec="seconds"),
        "rows": len(frame),
        "requests": int(frame["request_id"].nunique()) if len(frame) else 0,
        "rows_per_version": {},
        "flagged_rate": {},
        "mean_score": {},
    }
    if frame.empty:
        return summary
    versions = frame["model_version"].fillna(-1).astype(int).value_counts().sort_index()
    summary["rows_per_version"] = {
        ("unknown" if int(version) < 0 else str(version)): int(count)
        for version, count in zip(versions.index.tolist(), versions.tolist(), strict=True)
    }
    for label in LABELS:
        summary["flagged_rate"][label] = float(frame[f"flag_{label}"].astype(bool).mean())
        summary["mean_score"][label] = float(frame[f"score_{label}"].mean())
    summary["mean_length"] = float(frame["length"].mean())
    return summary
