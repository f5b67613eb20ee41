"""Queue claims are leases: holder, expiry and delivery count on each queue row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Written by hand, like 0001: a frozen record of the schema at this version.
Rows already ``processing`` when this runs have no lease; the sweep treats
them as expired once their ``updated_at`` is a lease older than now.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from detectflow.store.types import UTCDateTime

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_TABLE = "detection_processing_queue"
_SUSPECTS = "ix_detection_processing_queue_suspects"
_SUSPECT_ROWS = sa.text("status = 'pending' AND deliveries >= 2")


def upgrade() -> None:
    with op.batch_alter_table(_TABLE) as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column("deliveries", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    op.create_index(
        _SUSPECTS,
        _TABLE,
        [sa.text("priority DESC"), "created_at"],
        postgresql_where=_SUSPECT_ROWS,
        sqlite_where=_SUSPECT_ROWS,
    )


def downgrade() -> None:
    op.drop_index(_SUSPECTS, table_name=_TABLE)
    with op.batch_alter_table(_TABLE) as batch:
        batch.drop_column("deliveries")
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
