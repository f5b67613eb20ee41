from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from detectflow.store import Database
from detectflow.store.tables import metadata
from tests import services


@pytest.fixture(scope="session")
def _store_postgres_url() -> Iterator[str]:
    """One migrated PostgreSQL database for the store tests, emptied before each test.

    CREATE DATABASE per test costs ~0.5 s (more on a busy machine); DELETE of
    the few rows a test wrote costs milliseconds. Tests of migrations on a fresh database use the
    per-test ``postgres_url``/``database_url`` fixtures instead.
    """
    name = f"detectflow_store_{uuid.uuid4().hex[:12]}"
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


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db(request: pytest.FixtureRequest, tmp_path: Path, secret_key: str) -> Iterator[Database]:
    """A migrated, empty database, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'store.db'}", secret_key=secret_key)
        database.upgrade()
    else:
        database = Database(request.getfixturevalue("_store_postgres_url"), secret_key=secret_key)
        database.upgrade()
        with database.engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
    try:
        yield database
    finally:
        database.dispose()
