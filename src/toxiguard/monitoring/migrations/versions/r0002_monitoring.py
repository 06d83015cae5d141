"""Monitoring: drift runs, per-column drift, live quality, alerts and feedback.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")


def _id() -> sa.types.TypeEngine[int]:
    """Return the id type: BIGINT, INTEGER on SQLite (so that it autoincrements)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the monitoring tables and their indexes."""
    op.create_table(
        "drift_runs",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("reference_rows", sa.Integer(), nullable=False),
        sa.Column("drift_score", sa.Float(), nullable=True),
        sa.Column("missing_share", sa.Float(), nullable=True),
        sa.Column("drifted_features", sa.Integer(), nullable=True),
        sa.Column("columns_compared", sa.Integer(), nullable=True),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("labelled_rows", sa.Integer(), nullable=True),
        sa.Column("live_roc_auc", sa.Float(), nullable=True),
        sa.Column("live_f1_macro", sa.Float(), nullable=True),
        sa.Column("report_path", sa.Text(), nullable=True),
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_drift_runs"),
    )
    op.create_index("ix_drift_runs_created_at", "drift_runs", ["created_at"])

    op.create_table(
        "drift_columns",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("run_id", _id(), nullable=False),
        sa.Column("column_name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("reference_mean", sa.Float(), nullable=True),
        sa.Column("current_mean", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_drift_columns"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["drift_runs.id"],
            name="fk_drift_columns_run_id_drift_runs",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_drift_columns_run_id", "drift_columns", ["run_id"])

    op.create_table(
        "live_quality",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("run_id", _id(), nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("positives", sa.Integer(), nullable=False),
        sa.Column("roc_auc", sa.Float(), nullable=True),
        sa.Column("f1", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_live_quality"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["drift_runs.id"],
            name="fk_live_quality_run_id_drift_runs",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_live_quality_run_id", "live_quality", ["run_id"])

    op.create_table(
        "alerts",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", _id(), nullable=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("alert_key", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("delivery_error", sa.Text(), nullable=True),
        sa.Column("retraining", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["drift_runs.id"], name="fk_alerts_run_id_drift_runs", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_alerts_run_id", "alerts", ["run_id"])
    op.create_index("ix_alerts_alert_key_created_at", "alerts", ["alert_key", "created_at"])

    op.create_table(
        "feedback",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("item_index", sa.Integer(), nullable=False),
        *(sa.Column(f"label_{label}", sa.SmallInteger(), nullable=False) for label in _LABELS),
        sa.Column("source", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.UniqueConstraint("request_id", "item_index", name="uq_feedback_request_id_item_index"),
    )


def downgrade() -> None:
    """Drop the monitoring tables."""
    op.drop_table("feedback")
    op.drop_index("ix_alerts_alert_key_created_at", table_name="alerts")
    op.drop_index("ix_alerts_run_id", table_name="alerts")
    op.drop_table("alerts")
    op.drop_index("ix_live_quality_run_id", table_name="live_quality")
    op.drop_table("live_quality")
    op.drop_index("ix_drift_columns_run_id", table_name="drift_columns")
    op.drop_table("drift_columns")
    op.drop_index("ix_drift_runs_created_at", table_name="drift_runs")
    op.drop_table("drift_runs")
