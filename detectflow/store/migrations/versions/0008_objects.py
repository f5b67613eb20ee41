"""Tracked objects: ``detections.track_id`` and the ``tracked_objects`` table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

``detections`` is partitioned by day on PostgreSQL (0005): a column added to
the parent reaches every partition, and partitions made later (``LIKE`` the
parent, :mod:`detectflow.store.partitions`) have it too. No index on it: no
query reads detections by track yet, and every index costs the hot insert.

Written by hand, like 0001: a frozen record of the schema at this version.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from detectflow.store.types import UTCDateTime

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

_IN_PROGRESS = sa.text("end_time IS NULL")


def upgrade() -> None:
    op.add_column("detections", sa.Column("track_id", sa.String(36), nullable=True))
    op.create_table(
        "tracked_objects",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("detection_type", sa.String(64), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=False),
        sa.Column("end_time", UTCDateTime(), nullable=True),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("top_score", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("box", sa.JSON(), nullable=False),
        sa.Column("best_box", sa.JSON(), nullable=True),
        sa.Column("best_frame_id", sa.String(128), nullable=True),
        sa.Column("best_score", sa.Float(), nullable=True),
        sa.Column("best_time", UTCDateTime(), nullable=True),
        sa.Column("zones", sa.JSON(), nullable=False),
        sa.Column("current_zones", sa.JSON(), nullable=False),
        sa.Column("path", sa.JSON(), nullable=False),
        sa.Column("sub_label", sa.String(255), nullable=True),
        sa.Column("person_id", sa.String(128), nullable=True),
        sa.Column("person_name", sa.String(255), nullable=True),
        sa.Column("snapshot_path", sa.Text(), nullable=True),
        sa.Column(
            "updated_at", UTCDateTime(), nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")
        ),
        sa.PrimaryKeyConstraint("id", name="pk_tracked_objects"),
    )
    op.create_index("ix_tracked_objects_camera_id", "tracked_objects", ["camera_id", "start_time"])
    op.create_index("ix_tracked_objects_start_time", "tracked_objects", ["start_time"])
    op.create_index("ix_tracked_objects_label", "tracked_objects", ["label", "start_time"])
    op.create_index("ix_tracked_objects_end_time", "tracked_objects", ["end_time"])
    op.create_index(
        "ix_tracked_objects_in_progress",
        "tracked_objects",
        ["start_time"],
        postgresql_where=_IN_PROGRESS,
        sqlite_where=_IN_PROGRESS,
    )


def downgrade() -> None:
    op.drop_table("tracked_objects")
    with op.batch_alter_table("detections") as batch:
        batch.drop_column("track_id")
