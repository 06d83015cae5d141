"""Feedback may name some labels only (NULL for the others), and keeps its community id.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")


def upgrade() -> None:
    """Make the label columns nullable and add community_id (batch mode: SQLite copies)."""
    with op.batch_alter_table("feedback") as batch:
        for label in _LABELS:
            batch.alter_column(f"label_{label}", existing_type=sa.SmallInteger(), nullable=True)
        batch.add_column(sa.Column("community_id", sa.String(200), nullable=True))


def downgrade() -> None:
    """Drop community_id; feedback with unknown labels is deleted (it cannot be NOT NULL)."""
    condition = " OR ".join(f"label_{label} IS NULL" for label in _LABELS)
    # The SQL is built from this file's constant column names only.
    op.execute(f"DELETE FROM feedback WHERE {condition}")  # nosec B608
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("community_id")
        for label in _LABELS:
            batch.alter_column(f"label_{label}", existing_type=sa.SmallInteger(), nullable=False)
