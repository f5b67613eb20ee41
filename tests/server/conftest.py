"""Fixtures for the server tests.

``database`` runs a test on SQLite and on PostgreSQL. Creating and migrating
a PostgreSQL database costs ~2.5 s, so these tests share one migrated
database per session and empty its tables before each test; the lifespan
test in test_app.py still migrates a brand-new database itself. Tests of
input validation, which never reach SQL differently per dialect, are marked
``sqlite_only`` (tests/server/support.py); auth (every key is looked up in
SQL) and the listing endpoints run on both, bad parameters included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from detectflow.core.plugins import PluginRegistry, get_registry
from detectflow.core.settings import Settings
from detectflow.server import create_app
from detectflow.store import Database
from detectflow.store.memory import MemoryBus, MemoryCache
from detectflow.store.tables import metadata
from tests import services
from tests.databases import migrated_database, throwaway_postgres
from tests.server.support import ScriptedAdapter, ScriptedPlugin, TestClient

# Every table, so a table added by a migration starts empty in each test too.
_TABLES = tuple(t.name for t in metadata.sorted_tables)


@pytest.fixture(scope="session")
def shared_postgres_url() -> Iterator[str]:
    with throwaway_postgres("detectflow_server") as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        max_frame_bytes=64 * 1024,
        retry_base_seconds=0.001,
        retry_max_seconds=0.01,
        disable_plugin_autoload=True,
    )


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database(request: pytest.FixtureRequest, tmp_path: Path, secret_key: str) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'server.db'}"
    else:
        url = request.getfixturevalue("shared_postgres_url")
    with migrated_database(url, secret_key) as db:
        if request.param == "postgres":
            with psycopg.connect(
                host=services.POSTGRES_HOST,
                port=services.POSTGRES_PORT,
                user=services.POSTGRES_USER,
                dbname=url.rsplit("/", 1)[1],
                autocommit=True,
            ) as conn:
                conn.execute(f"TRUNCATE {', '.join(_TABLES)}")
        yield db


@pytest.fixture
def registry(settings: Settings) -> PluginRegistry:
    ScriptedAdapter.instances.clear()
    registry = get_registry(settings)
    assert registry.register(ScriptedPlugin(), "tests-scripted", "tests", "0")
    return registry


@pytest.fixture
def bus() -> MemoryBus:
    return MemoryBus()


@pytest.fixture
def cache() -> MemoryCache:
    return MemoryCache()


def _factory(settings: Settings, database: Database, **base: Any) -> Callable[..., TestClient]:
    """Clients send an admin key: these tests are about the API, tests/server/test_auth.py
    about who may call it."""
    _, admin_key = database.create_api_key("admin", "tests")

    def make(**overrides: Any) -> TestClient:
        kwargs = {"database": database, **base, **overrides}
        return TestClient(
            create_app(settings, **kwargs), headers={"Authorization": f"Bearer {admin_key}"}
        )

    return make


@pytest.fixture
def client_factory(
    settings: Settings,
    database: Database,
    registry: PluginRegistry,
    cache: MemoryCache,
    bus: MemoryBus,
) -> Callable[..., TestClient]:
    """A fresh app over the same database, cache and bus; use it as a context manager."""
    return _factory(settings, database, registry=registry, cache=cache, bus=bus)


@pytest.fixture
def client(client_factory: Callable[..., TestClient]) -> Iterator[TestClient]:
    with client_factory() as test_client:
        yield test_client


@pytest.fixture
def simulator() -> Iterator[Any]:
    from detectflow.simulator import Simulator, run_in_thread

    sim = Simulator()
    handle = run_in_thread(sim)
    try:
        yield sim
    finally:
        handle.stop()
