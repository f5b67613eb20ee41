"""Event-time window statistics written by the dataflow, and too-late counts.

Revision ID: 0003
Revises: 0002
Create Date: 2025-12-01

Written by hand, like 0001: a frozen record of the schema at this version.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from detectflow.store.types import UTCDateTime

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "detection_window_stats",
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("detection_type", sa.String(64), nullable=False),
        sa.Column("window_kind", sa.String(16), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("window_end", UTCDateTime(), nullable=False),
        sa.Column("detection_count", sa.Integer(), nullable=False),
        sa.Column("confidence_sum", sa.Float(), nullable=False),
        sa.Column("max_confidence", sa.Float(), nullable=False),
        sa.Column("distinct_persons", sa.Integer(), nullable=False),
        sa.Column("late_count", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("is_final", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint(
            "camera_id",
            "detection_type",
            "window_kind",
            "window_start",
            "window_end",
            name="pk_detection_window_stats",
        ),
    )
    op.create_index(
        "ix_detection_window_stats_kind_start",
        "detection_window_stats",
        ["window_kind", "window_start"],
    )
    op.create_table(
        "detection_window_too_late",
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("window_kind", sa.String(16), nullable=False),
        sa.Column("too_late", sa.BigInteger(), nullable=False),
        sa.Column("last_event_time", UTCDateTime(), nullable=False),
        sa.Column("watermark", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("camera_id", "window_kind", name="pk_detection_window_too_late"),
    )


def downgrade() -> None:
    op.drop_table("detection_window_too_late")
    op.drop_index("ix_detection_window_stats_kind_start", table_name="detection_window_stats")
    op.drop_table("detection_window_stats")
