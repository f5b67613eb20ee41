"""Real databases for tests: a throwaway PostgreSQL database and a migrated ``Database``.

Several conftests need the same two things (a database created for them and
dropped afterwards, and a store opened on a URL with the schema migrated);
one copy here keeps the create/drop and open/dispose pairs from drifting apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from detectflow.store import Database
from tests import services

__all__ = ["migrated_database", "throwaway_postgres"]


@contextmanager
def throwaway_postgres(prefix: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database named ``<prefix>_<random>``; dropped on exit
    with FORCE, so connections a test left open cannot keep it alive."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = (
        f"host={services.POSTGRES_HOST} port={services.POSTGRES_PORT} "
        f"user={services.POSTGRES_USER} dbname={services.POSTGRES_ADMIN_DB}"
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield services.postgres_url(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def migrated_database(url: str, secret_key: str) -> Iterator[Database]:
    """The store on ``url`` with every migration applied, disposed on exit."""
    database = Database(url, secret_key=secret_key)
    database.upgrade()
    try:
        yield database
    finally:
        database.dispose()
