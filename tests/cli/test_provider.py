"""``detectflow provider test`` against real simulators, with a real SQLite database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from detectflow.adapters.grpc.server import GrpcProviderServer
from detectflow.cli.provider import provider_test
from detectflow.core.models import ProviderConfig, TestStatus
from detectflow.core.settings import Settings
from detectflow.simulator import SimulatedHandler, Simulator, SimulatorThread, run_in_thread
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
    db = Database(env["DETECTFLOW_DATABASE_URL"], secret_key=env["DETECTFLOW_SECRET_KEY"])
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture
def simulator() -> Iterator[SimulatorThread]:
    handle = run_in_thread(Simulator())
    yield handle
    handle.stop()


def add(database: Database, url: str, **fields: Any) -> ProviderConfig:
    values: dict[str, Any] = {
        "id": f"p{len(database.list_providers()) + 1}",
        "provider_name": "sim",
        "provider_type": "http_api",
        "endpoint_url": url,
        "timeout_seconds": 5.0,
        **fields,
    }
    return database.create_provider(ProviderConfig(**values))


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(provider_test, list(args), env=env)


def test_the_active_provider_is_tested_by_default_and_success_recorded(
    env: dict[str, str], database: Database, simulator: SimulatorThread
) -> None:
    add(database, "http://127.0.0.1:1/detect")  # not active: must not be the one tested
    active = add(database, simulator.detect_url("detectflow"), is_active=True)
    result = run(env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"sim ({active.id}, http_api {active.endpoint_url}): OK in ")
    assert "Connection successful (" in result.output
    assert simulator.simulator.stats.answered == 1
    stored = database.get_provider(active.id)
    assert stored is not None and stored.test_status == TestStatus.SUCCESS


def test_a_failing_provider_exits_1_and_the_failure_is_recorded(
    env: dict[str, str], database: Database, free_port: int
) -> None:
    config = add(database, f"http://127.0.0.1:{free_port}/detect")
    result = run(env, config.id)
    assert result.exit_code == 1
    assert ": FAILED in " in result.output
    assert "Connection failed: could not reach provider" in result.output
    assert "Traceback" not in result.output
    stored = database.get_provider(config.id)
    assert stored is not None
    assert stored.test_status == TestStatus.FAILED and stored.last_error


def test_json_output_has_the_rest_answer_shape(
    env: dict[str, str], database: Database, simulator: SimulatorThread
) -> None:
    config = add(database, simulator.detect_url("deepstack"), options={"dialect": "deepstack"})
    result = run(env, config.id, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {
        "success",
        "provider_id",
        "provider_name",
        "message",
        "response_time_ms",
        "error",
    }
    assert data["success"] is True and data["provider_id"] == config.id
    assert isinstance(data["response_time_ms"], int)


def test_the_timeout_option_bounds_the_test(env: dict[str, str], database: Database) -> None:
    handle = run_in_thread(Simulator(timeout_rate=1.0, hang_seconds=30))
    try:
        config = add(database, handle.detect_url("detectflow"), timeout_seconds=30)
        result = run(env, config.id, "--timeout", "0.3")
    finally:
        handle.stop()
    assert result.exit_code == 1
    assert "no answer within 0.3 s" in result.output


def test_a_grpc_provider_is_tested_the_same_way(env: dict[str, str], database: Database) -> None:
    server = GrpcProviderServer(SimulatedHandler())
    with server.running_in_thread():
        config = add(database, server.url, provider_type="grpc")
        result = run(env, config.id)
    assert result.exit_code == 0, result.output
    assert f"(p1, grpc {server.url}): OK" in result.output


def test_a_link_local_provider_is_refused(env: dict[str, str], database: Database) -> None:
    config = add(database, "http://169.254.169.254/latest/meta-data/")
    result = run(env, config.id)
    assert result.exit_code == 1
    assert "Provider URL refused" in result.output
    assert "169.254.169.254 is a cloud metadata address" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no active provider"),
        (("nope",), "no provider with id 'nope'"),
        (("x" * 65,), "no provider with id"),
    ],
)
def test_a_missing_provider_exits_1_with_a_reason(
    env: dict[str, str], database: Database, args: tuple[str, ...], message: str
) -> None:
    result = run(env, *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_options_and_settings_are_usage_errors(env: dict[str, str]) -> None:
    assert run(env, "--timeout", "0").exit_code == 2
    bad = run({**env, "DETECTFLOW_PORT": "eighty"})
    assert bad.exit_code == 2 and "DETECTFLOW_PORT" in bad.output
    unreadable = run({**env, "DETECTFLOW_SECRET_KEY": "not-a-fernet-key"})
    assert unreadable.exit_code == 1 and "Traceback" not in unreadable.output


def test_attached_under_a_group_it_uses_the_groups_settings(
    env: dict[str, str], database: Database, simulator: SimulatorThread, tmp_path: Path
) -> None:
    """The lead attaches it under ``detectflow provider``; settings come from the root."""
    config = add(database, simulator.detect_url("detectflow"))

    class State:
        settings = Settings(
            data_dir=tmp_path,
            database_url=env["DETECTFLOW_DATABASE_URL"],
            secret_key=env["DETECTFLOW_SECRET_KEY"],
            disable_plugin_autoload=True,
        )

    @click.group()
    @click.pass_context
    def root(ctx: click.Context) -> None:
        ctx.obj = State()

    @root.group("provider")
    def provider() -> None: ...

    provider.add_command(provider_test)
    # Without the group's settings it would open ./.detectflow, where p1 does not exist.
    result = CliRunner().invoke(root, ["provider", "test", config.id], env={})
    assert result.exit_code == 0, result.output
    assert "OK in" in result.output
