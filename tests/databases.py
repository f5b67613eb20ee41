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

__all__ = ["drop_postgres", "migrated_database", "throwaway_postgres"]


_ADMIN = (
    f"host={services.POSTGRES_HOST} port={services.POSTGRES_PORT} "
    f"user={services.POSTGRES_USER} dbname={services.POSTGRES_ADMIN_DB}"
)


@contextmanager
def throwaway_postgres(prefix: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database named ``<prefix>_<random>``; dropped on exit
    with FORCE, so connections a test left open cannot keep it alive."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield services.postgres_url(name)
    finally:
        drop_postgres(services.postgres_url(name))


def drop_postgres(url: str) -> None:
    """Drop the database ``url`` names, if it exists, whoever is connected to it
    (a test can take a database away from a running app this way)."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(_ADMIN, autocommit=True) as conn:
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
