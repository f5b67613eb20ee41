from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from detectflow.store import Database
from detectflow.store.tables import metadata
from tests.databases import throwaway_postgres


@pytest.fixture(scope="session")
def _store_postgres_url() -> Iterator[str]:
    """One migrated PostgreSQL database for the store tests, emptied before each test.

    CREATE DATABASE per test costs ~0.5 s (more on a busy machine); DELETE of
    the few rows a test wrote costs milliseconds. Tests of migrations on a fresh database use the
    per-test ``postgres_url``/``database_url`` fixtures instead.
    """
    with throwaway_postgres("detectflow_store") as url:
        yield url


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
