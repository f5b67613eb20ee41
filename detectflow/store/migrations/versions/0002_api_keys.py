"""API keys for the server: a public id, a scope, and a SHA-256 of the key.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-01

Written by hand, like 0001: a frozen record of the schema at this version.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from detectflow.store.types import UTCDateTime

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key_sha256", sa.String(64), nullable=False),
        sa.Column(
            "created_at", UTCDateTime(), nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")
        ),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
