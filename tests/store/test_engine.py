from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from detectflow.store.engine import DatabaseURLError, create_database_engine, normalize_url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@h:5432/db",
        "postgres://u@h:5432/db",
        "postgresql+psycopg://u@h:5432/db",
        "postgresql+psycopg2://u@h:5432/db",
    ],
)
def test_postgres_urls_use_psycopg3(url: str) -> None:
    parsed = normalize_url(url)
    assert parsed.drivername == "postgresql+psycopg"
    assert (parsed.host, parsed.port, parsed.database) == ("h", 5432, "db")


@pytest.mark.parametrize("url", ["mysql://u@h/db", "nonsense", ""])
def test_unsupported_urls_are_refused_clearly(url: str) -> None:
    with pytest.raises(DatabaseURLError):
        normalize_url(url)


def test_sqlite_engine_creates_the_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "x.db"
    engine = create_database_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
        assert path.exists()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_plain_postgresql_url_connects(postgres_url: str) -> None:
    engine = create_database_engine(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
