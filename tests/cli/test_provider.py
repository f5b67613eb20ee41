"""``detectflow provider ...``: the REST CRUD from a shell, and ``provider test`` against
real simulators, with a real SQLite database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from hypothesis import assume, given
from hypothesis import strategies as st

from detectflow.adapters.grpc.server import GrpcProviderServer
from detectflow.cli import cli
from detectflow.cli.provider import parse_option, provider_test
from detectflow.core.models import ProviderConfig, TestStatus
from detectflow.core.plugins import PluginRegistry, get_registry
from detectflow.core.settings import Settings
from detectflow.simulator import SimulatedHandler, Simulator, SimulatorThread, run_in_thread
from detectflow.store import Database
from tests.testing import doubles


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


# -- add, list, show, update, remove, activate ------------------------------------

SECRET = "sk-cli-very-secret"


@pytest.fixture(autouse=True)
def registry(env: dict[str, str]) -> PluginRegistry:
    """The process's registry, with an in-process provider type of the tests' own."""
    registry = get_registry(Settings.from_env(env))
    assert registry.register(doubles.LocalPlugin(), "tests-local", "tests", "0")
    return registry


def detectflow(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, ["provider", *args], env=env)


def added_id(result: Result) -> str:
    assert result.exit_code == 0, result.output
    assert result.output.startswith("added provider ")
    return result.output.split()[2]


def test_an_in_process_type_is_added_without_a_url(env: dict[str, str], database: Database) -> None:
    provider_id = added_id(detectflow(env, "add", "--type", "local-test", "--activate"))
    stored = database.get_provider(provider_id)
    assert stored is not None
    assert (stored.provider_type, stored.endpoint_url, stored.is_active) == ("local-test", "", True)
    assert stored.provider_name == "local-test"


def test_a_network_type_still_needs_a_url(env: dict[str, str], database: Database) -> None:
    result = detectflow(env, "add", "--type", "http_api")
    assert result.exit_code == 2
    assert "--url: is required (provider_type 'http_api' does not run in-process)" in result.output
    assert database.list_providers() == []


def test_options_are_json_when_they_parse_and_text_otherwise(
    env: dict[str, str], database: Database
) -> None:
    result = detectflow(
        env,
        "add",
        "--type",
        "local-test",
        "--option",
        "max_workers=4",
        "--option",
        'cameras=["cam-1", "cam-2"]',
        "--option",
        "mode=fast",
        "--option",
        "exact=true",
        "--option",
        "label=a=b",
    )
    stored = database.get_provider(added_id(result))
    assert stored is not None
    assert dict(stored.options) == {
        "max_workers": 4,
        "cameras": ["cam-1", "cam-2"],
        "mode": "fast",
        "exact": True,
        "label": "a=b",
    }


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(), _containers, max_leaves=6
)


@given(key=st.text(min_size=1).filter(lambda k: "=" not in k and k.strip() == k), value=JSON_VALUES)
def test_parse_option_reads_back_any_json_value(key: str, value: Any) -> None:
    assert parse_option(f"{key}={json.dumps(value)}") == (key, value)


@given(text=st.text())
def test_parse_option_keeps_what_is_not_json_as_text(text: str) -> None:
    try:
        json.loads(text)
    except ValueError:
        assert parse_option(f"k={text}") == ("k", text)
    else:
        assume(False)


@pytest.mark.parametrize("bad", ["novalue", "=3", " =3"])
def test_an_option_without_key_or_value_is_a_usage_error(
    env: dict[str, str], database: Database, bad: str
) -> None:
    result = detectflow(env, "add", "--type", "local-test", "--option", bad)
    assert result.exit_code == 2
    assert "expected KEY=VALUE" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--timeout", "900"), "--timeout: must be"),
        (("--max-retries", "11"), "--max-retries: must be between 0 and 10"),
        (("--confidence-threshold", "1.5"), "--confidence-threshold: must be"),
        (("--option", "cameras=5"), "--option: "),
        (("--option", "dialect=3"), "--option: options.dialect must be a string"),
        (("--type", "telepathy"), "unknown provider_type 'telepathy'"),
        (("--dialect", "morse"), "morse"),
        (("--url", "http://169.254.169.254/"), "169.254.169.254 is a cloud metadata address"),
        (("--dialect", "deepstack", "--option", "dialect=detectflow"), "disagree"),
    ],
)
def test_add_refuses_what_the_rest_api_refuses(
    env: dict[str, str],
    database: Database,
    args: tuple[str, ...],
    message: str,
) -> None:
    base = {"--type": "http_api", "--url": "http://127.0.0.1:9/detect"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    result = detectflow(env, "add", *[part for pair in base.items() for part in pair])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert database.list_providers() == []


def test_the_api_key_is_never_printed(env: dict[str, str], database: Database) -> None:
    add_args = ["add", "--type", "http_api", "--url", "http://127.0.0.1:9/d", "--api-key", SECRET]
    added = detectflow(env, *add_args, "--json")
    assert added.exit_code == 0, added.output
    provider_id = json.loads(added.output)["id"]
    outputs = [
        added,
        detectflow(env, "list"),
        detectflow(env, "list", "--json"),
        detectflow(env, "show", provider_id),
        detectflow(env, "show", provider_id, "--json"),
        detectflow(env, "update", provider_id, "--timeout", "5", "--json"),
        detectflow(env, "update", provider_id, "--api-key", SECRET + "2"),
        detectflow(env, "activate", provider_id),
        detectflow(env, "remove", provider_id),
    ]
    for result in outputs:
        assert result.exit_code == 0, result.output
        assert SECRET not in result.output
    assert json.loads(outputs[4].output)["has_api_key"] is True


def test_show_prints_the_rest_shape_and_defaults_to_the_active_one(
    env: dict[str, str], database: Database
) -> None:
    add(database, "http://127.0.0.1:9/a")
    active = add(database, "http://127.0.0.1:9/b", is_active=True, options={"priority": 2})
    shown = detectflow(env, "show", "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["id"] == active.id and data["options"] == {"priority": 2}
    assert "api_key" not in data and data["has_api_key"] is False
    text = detectflow(env, "show", active.id)
    assert text.exit_code == 0
    lines = dict(line.split(None, 1) for line in text.output.splitlines())
    assert lines["endpoint_url"] == "http://127.0.0.1:9/b"
    assert lines["options"] == '{"priority": 2}'
    assert lines["is_active"] == "true"


@pytest.mark.parametrize("command", ["show", "update", "remove", "activate"])
def test_an_unknown_id_exits_1_with_a_reason(
    env: dict[str, str], database: Database, command: str
) -> None:
    extra = ["--timeout", "5"] if command == "update" else []
    result = detectflow(env, command, "nope", *extra)
    assert result.exit_code == 1
    assert "no provider with id 'nope'" in result.output


def test_update_changes_what_is_given_and_merges_options(
    env: dict[str, str], database: Database
) -> None:
    config = add(database, "http://127.0.0.1:9/d", api_key=SECRET, options={"a": 1, "b": 2})
    result = detectflow(
        env,
        "update",
        config.id,
        "--timeout",
        "7.5",
        "--no-face-encoding",
        "--option",
        "c=[3]",
        "--option",
        "a=10",
        "--remove-option",
        "b",
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"updated provider {config.id} (sim): ")
    stored = database.get_provider(config.id)
    assert stored is not None
    assert stored.timeout_seconds == 7.5 and stored.enable_face_encoding is False
    assert dict(stored.options) == {"a": 10, "c": [3]}
    assert stored.api_key == SECRET and stored.endpoint_url == config.endpoint_url
    assert stored.max_retries == config.max_retries

    cleared = detectflow(env, "update", config.id, "--clear-api-key")
    assert cleared.exit_code == 0, cleared.output
    after = database.get_provider(config.id)
    assert after is not None and after.api_key is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "name at least one setting to change"),
        (("--max-retries", "99"), "--max-retries: must be between 0 and 10"),
        (("--type", "local-test", "--url", "http://169.254.169.254/"), "metadata address"),
        (("--api-key", "x", "--clear-api-key"), "exclude each other"),
    ],
)
def test_update_refuses_what_the_rest_api_refuses_and_changes_nothing(
    env: dict[str, str],
    database: Database,
    args: tuple[str, ...],
    message: str,
) -> None:
    config = add(database, "http://127.0.0.1:9/d")
    result = detectflow(env, "update", config.id, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert database.get_provider(config.id) == config


def test_an_in_process_config_cannot_become_a_network_one_without_a_url(
    env: dict[str, str], database: Database
) -> None:
    provider_id = added_id(detectflow(env, "add", "--type", "local-test"))
    result = detectflow(env, "update", provider_id, "--type", "http_api")
    assert result.exit_code == 2
    assert "--url: is required" in result.output
    moved = detectflow(
        env, "update", provider_id, "--type", "http_api", "--url", "http://127.0.0.1:9/d"
    )
    assert moved.exit_code == 0, moved.output


def test_remove_deletes_the_config(env: dict[str, str], database: Database) -> None:
    config = add(database, "http://127.0.0.1:9/d")
    result = detectflow(env, "remove", config.id)
    assert result.exit_code == 0, result.output
    assert result.output == f"removed provider {config.id} (sim)\n"
    assert database.get_provider(config.id) is None


def test_activate_leaves_exactly_one_active_provider(
    env: dict[str, str], database: Database
) -> None:
    first = add(database, "http://127.0.0.1:9/a", is_active=True)
    second = add(database, "http://127.0.0.1:9/b")
    result = detectflow(env, "activate", second.id)
    assert result.exit_code == 0, result.output
    assert "is now the active provider" in result.output
    assert [p.id for p in database.list_providers() if p.is_active] == [second.id]
    again = detectflow(env, "activate", second.id)
    assert "already the active provider" in again.output
    assert first.id != second.id


def test_list_shows_whole_ids_and_a_dash_for_no_url(
    env: dict[str, str], database: Database
) -> None:
    provider_id = added_id(detectflow(env, "add", "--type", "local-test", "--name", "cam"))
    result = detectflow(env, "list")
    assert result.exit_code == 0, result.output
    assert provider_id in result.output
    row = next(line for line in result.output.splitlines() if provider_id in line)
    assert "│ -" in row


def test_update_without_an_id_changes_the_active_provider(
    env: dict[str, str], database: Database
) -> None:
    other = add(database, "http://127.0.0.1:9/a")
    active = add(database, "http://127.0.0.1:9/b", is_active=True)
    result = detectflow(env, "update", "--max-retries", "1")
    assert result.exit_code == 0, result.output
    retries = {p.id: p.max_retries for p in database.list_providers()}
    assert retries == {other.id: other.max_retries, active.id: 1}
