"""What the CLI tests share: the environment a command runs in, and its database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from detectflow.store import Database


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str, secret_key: str) -> dict[str, str]:
    return {
        "DETECTFLOW_DATA_DIR": str(tmp_path),
        "DETECTFLOW_DATABASE_URL": sqlite_url,
        "DETECTFLOW_SECRET_KEY": secret_key,
        "DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD": "1",
    }


@pytest.fixture
def database(env: dict[str, str]) -> Iterator[Database]:
    """The database the commands use, migrated, for the test to seed and check."""
    db = Database(env["DETECTFLOW_DATABASE_URL"], secret_key=env["DETECTFLOW_SECRET_KEY"])
    db.upgrade()
    yield db
    db.dispose()
