"""Per-person daily counts for ``most_detected_person``; window rows indexed per
camera; a camera bound to an API key; the unused too-late table goes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Written by hand, like 0001: a frozen record of the schema at this version.
The counts are filled from the detections already stored, once (a GROUP BY
over the rows with a person: seconds per million on PostgreSQL); from then
on the recorder adds to them in the transaction that stores detections.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from detectflow.store.types import UTCDateTime

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_TABLE = "detection_person_days"
_CAMERA_WINDOWS = "ix_detection_window_stats_camera_kind_start"
_CAMERA_WINDOW_COLUMNS = ["camera_id", "window_kind", "window_start"]
_DAY = {
    "postgresql": "date_trunc('day', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    # the text SQLAlchemy writes for a UTCDateTime, so the recorder's upserts match
    "sqlite": "strftime('%Y-%m-%d 00:00:00.000000', created_at)",
}


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("person_id", sa.String(128), nullable=False),
        sa.Column("day", UTCDateTime(), nullable=False),
        sa.Column("detection_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("camera_id", "person_id", "day", name=f"pk_{_TABLE}"),
    )
    op.create_index(f"ix_{_TABLE}_day", _TABLE, ["day"])
    day = _DAY[op.get_bind().dialect.name]
    op.execute(
        f"INSERT INTO {_TABLE} (camera_id, person_id, day, detection_count) "
        f"SELECT camera_id, person_id, {day}, count(*) FROM detections "
        f"WHERE person_id IS NOT NULL GROUP BY camera_id, person_id, {day}"
    )
    op.drop_table("detection_window_too_late")
    op.create_index(_CAMERA_WINDOWS, "detection_window_stats", _CAMERA_WINDOW_COLUMNS)
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("camera_id", sa.String(128), nullable=True))


def downgrade() -> None:
    op.drop_index(_CAMERA_WINDOWS, table_name="detection_window_stats")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("camera_id")
    op.create_table(
        "detection_window_too_late",
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("window_kind", sa.String(16), nullable=False),
        sa.Column("too_late", sa.BigInteger(), nullable=False),
        sa.Column("last_event_time", UTCDateTime(), nullable=False),
        sa.Column("watermark", UTCDateTime(), nullable=False),
        sa.Column(
            "updated_at", UTCDateTime(), nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")
        ),
        sa.PrimaryKeyConstraint("camera_id", "window_kind", name="pk_detection_window_too_late"),
    )
    op.drop_index(f"ix_{_TABLE}_day", table_name=_TABLE)
    op.drop_table(_TABLE)
