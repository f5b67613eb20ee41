"""Statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["insert_ignore"]


def insert_ignore(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """``INSERT ... ON CONFLICT (id) DO NOTHING`` for many rows in one executemany.

    Ids are deterministic, so a replayed batch conflicts on every row and
    writes nothing new; psycopg 3 pipelines the executemany.
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        stmt: Any = postgresql.insert(table).on_conflict_do_nothing(index_elements=["id"])
    else:
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=["id"])
    # No RETURNING: with it SQLAlchemy batches rows into multi-VALUES statements,
    # which measured ~2.5x slower here than psycopg 3's pipelined executemany.
    conn.execute(stmt, list(rows))
