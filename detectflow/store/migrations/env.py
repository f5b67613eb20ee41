"""Alembic environment: runs on the connection ``Database.upgrade()`` hands over.

Using the caller's connection (not a new engine from a URL) keeps the SQLite
pragmas and BEGIN handling of :mod:`detectflow.store.engine` in force.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from detectflow.store.engine import create_database_engine
from detectflow.store.tables import metadata

# Any constant works; it only has to be the same in every process that migrates.
_PG_MIGRATION_LOCK = 0x64657466  # "detf"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two processes starting at once (server and dataflow) must not both
            # create the tables; the second waits, then finds nothing to do.
            lock = text("SELECT pg_advisory_xact_lock(:key)")
            connection.execute(lock, {"key": _PG_MIGRATION_LOCK})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection in config.attributes")
    engine = create_database_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("detectflow migrations run online only (detectflow db upgrade)")
run_migrations_online()
