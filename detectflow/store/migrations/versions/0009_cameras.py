"""Cameras as configuration: what to read, how often, with which provider.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

``id`` is the camera_id every other table uses. The URL may carry
credentials, so it is stored Fernet-encrypted (``url_encrypted``) like
provider api keys; a camera fed through the API, Redis or MQTT has none.
``provider`` names a provider config by id, without a foreign key: deleting
a provider leaves its cameras to the routing rules instead of failing.

Written by hand, like 0001: a frozen record of the schema at this version.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from detectflow.store.types import UTCDateTime

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    now = sa.text("CURRENT_TIMESTAMP")
    op.create_table(
        "cameras",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(255), nullable=False, server_default=sa.text("''")),
        sa.Column("url_encrypted", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("fps", sa.Float(), nullable=False, server_default=sa.text("5")),
        sa.Column("provider", sa.String(64), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False, server_default=now),
        sa.Column("updated_at", UTCDateTime(), nullable=False, server_default=now),
        sa.PrimaryKeyConstraint("id", name="pk_cameras"),
    )


def downgrade() -> None:
    op.drop_table("cameras")
