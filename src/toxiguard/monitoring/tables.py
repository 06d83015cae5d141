"""The monitoring job's tables: drift runs, per-column results, live quality, alerts, feedback.

They live on the store's `metadata` (SQLAlchemy Core, like the prediction log) and are created
by the Alembic migrations from `0002_monitoring` on. Importing this module registers them.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from toxiguard.labels import LABELS
from toxiguard.monitoring.store import metadata

LABEL_COLUMNS: Final = tuple(f"label_{label}" for label in LABELS)
_ID = BigInteger().with_variant(Integer, "sqlite")

# One row per monitoring run, "insufficient_data" runs included (their numbers are NULL).
drift_runs = Table(
    "drift_runs",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("model_name", String(200), nullable=True),
    Column("model_version", Integer, nullable=True),
    Column("status", String(32), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("reference_rows", Integer, nullable=False),
    Column("drift_score", Float, nullable=True),
    Column("missing_share", Float, nullable=True),
    Column("drifted_features", Integer, nullable=True),
    Column("columns_compared", Integer, nullable=True),
    Column("method", String(64), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("labelled_rows", Integer, nullable=True),
    Column("live_roc_auc", Float, nullable=True),
    Column("live_f1_macro", Float, nullable=True),
    Column("report_path", Text, nullable=True),
    Column("mlflow_run_id", String(64), nullable=True),
    Column("seconds", Float, nullable=True),
    Column("message", Text, nullable=True),
    Index(None, "created_at"),
)

# The per-column decisions of one run (text statistics, scores and, with texts, the content).
drift_columns = Table(
    "drift_columns",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column(
        "run_id", _ID, ForeignKey("drift_runs.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("column_name", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("method", String(64), nullable=False),
    Column("threshold", Float, nullable=True),
    Column("score", Float, nullable=True),
    Column("drifted", Boolean, nullable=False),
    Column("reference_mean", Float, nullable=True),
    Column("current_mean", Float, nullable=True),
)

# Live quality per label on the labelled part of a run's window (feedback joined to predictions).
live_quality = Table(
    "live_quality",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column(
        "run_id", _ID, ForeignKey("drift_runs.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("label", String(32), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("positives", Integer, nullable=False),
    Column("roc_auc", Float, nullable=True),
    Column("f1", Float, nullable=True),
)

# Alert events that were raised (a repeat within the cool-down is not raised, so not stored).
alerts = Table(
    "alerts",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column(
        "run_id", _ID, ForeignKey("drift_runs.id", ondelete="SET NULL"), nullable=True, index=True
    ),
    Column("rule", String(64), nullable=False),
    Column("alert_key", String(200), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("value", Float, nullable=True),
    Column("threshold", Float, nullable=True),
    Column("model_version", Integer, nullable=True),
    Column("delivered", Boolean, nullable=False),
    Column("delivery_error", Text, nullable=True),
    Column("retraining", Text, nullable=True),
    Index(None, "alert_key", "created_at"),
)

# True labels of predictions, by request id and position in the request (latest answer wins);
# NULL where the feedback does not name a label (a Perspective suggestion may name one only).
# `reviewer` is the key id (never the key) of the API key that gave it, NULL when unknown.
feedback = Table(
    "feedback",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("item_index", Integer, nullable=False),
    *(Column(name, SmallInteger, nullable=True) for name in LABEL_COLUMNS),
    Column("source", String(16), nullable=False),
    Column("community_id", String(200), nullable=True),
    Column("reviewer", String(64), nullable=True),
    UniqueConstraint("request_id", "item_index"),
)

__all__ = ["LABEL_COLUMNS", "alerts", "drift_columns", "drift_runs", "feedback", "live_quality"]
