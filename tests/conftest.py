from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from detectflow.core.plugins import reset_registry
from detectflow.store import Database
from tests import services
from tests.databases import migrated_database, throwaway_postgres
from tests.redis_server import RedisServer, running_redis

# Timing is for benchmarks: no per-example deadline on a shared 2-core machine.
# CI explores the same examples every run, so a red build is reproducible.
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.register_profile("ci", deadline=None, derandomize=True)
hypothesis_settings.load_profile("ci" if os.environ.get("CI", "").lower() == "true" else "dev")

_skipped: dict[str, int] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests whose service is down, loudly; under CI=true, fail instead."""
    in_ci = os.environ.get("CI", "").lower() == "true"
    for item in items:
        for service in ("postgres", "redis", "mqtt"):
            if item.get_closest_marker(service) is None or services.available(service):
                continue
            if in_ci:
                raise pytest.UsageError(
                    f"CI=true but {service} is not reachable at {services.SERVICES[service]}"
                )
            _skipped[service] = _skipped.get(service, 0) + 1
            item.add_marker(pytest.mark.skip(reason=f"{service} is not running"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for service, count in sorted(_skipped.items()):
        terminalreporter.write_line(
            f"SKIPPED {count} test(s) needing {service}: it is not running "
            f"at {services.SERVICES[service]} (scripts/test starts it where it can)",
            red=True,
            bold=True,
        )


@pytest.fixture(autouse=True)
def _fresh_plugin_registry() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def own_redis(tmp_path: Path, free_port: int) -> Iterator[RedisServer]:
    """A redis-server of this test's own on a free port, to stop and restart mid-test
    (the shared one on 6379 stays up for everyone else)."""
    yield from running_redis(tmp_path, free_port)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'detectflow.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with throwaway_postgres("detectflow_test") as url:
        yield url


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite (the embedded default) and once on PostgreSQL."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
    else:
        url = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def secret_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


@pytest.fixture
def db(database_url: str, secret_key: str) -> Iterator[Database]:
    """A migrated database, on SQLite and on PostgreSQL (a fresh one per test)."""
    with migrated_database(database_url, secret_key) as database:
        yield database


@pytest.fixture
def sqlite_db(sqlite_url: str, secret_key: str) -> Iterator[Database]:
    """A migrated SQLite database, for tests whose subject does not differ per dialect."""
    with migrated_database(sqlite_url, secret_key) as database:
        yield database
