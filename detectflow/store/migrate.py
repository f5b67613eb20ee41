"""Running the Alembic migrations from code, with a Config built here.

No ``alembic.ini`` is needed at runtime: the script location is the
``migrations`` folder inside this package.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from detectflow.store.engine import BEGIN_MODE

__all__ = ["MIGRATIONS_DIR", "alembic_config", "upgrade"]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation treats % specially (e.g. in passwords).
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


_in_process = threading.Lock()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """``alembic upgrade head`` on ``engine``; idempotent (alembic_version records progress).

    Alembic keeps its migration context in module globals, so two threads of
    one process must take turns; across processes the database's own lock
    serializes them (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL).
    """
    with _in_process:
        _upgrade(engine, revision)


def _upgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.execution_options(**{BEGIN_MODE: "IMMEDIATE"})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        conn.commit()
