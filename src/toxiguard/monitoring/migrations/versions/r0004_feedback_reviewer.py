"""Feedback records who gave it: the key id of the moderator's API key (NULL when unknown).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable reviewer column (batch mode: SQLite copies)."""
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("reviewer", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop the reviewer column; the feedback itself stays."""
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("reviewer")
