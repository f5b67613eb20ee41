"""API keys in the store (detectflow/store/keys.py) and the `detectflow keys` commands
that are a thin shell over them."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, select

from detectflow.cli import cli
from detectflow.store import Database
from detectflow.store.keys import KEY_PATTERN, ApiKey, Scope, generate_key, key_id_of
from detectflow.store.migrate import alembic_config
from detectflow.store.tables import api_keys

# -- the key format and scopes -------------------------------------------------------


def test_generated_keys_have_the_documented_format_and_are_unique() -> None:
    pairs = [generate_key() for _ in range(200)]
    for key_id, key in pairs:
        match = KEY_PATTERN.fullmatch(key)
        assert match is not None and match.group(1) == key_id
        assert len(match.group(2)) == 64  # 32 random bytes
    assert len({key for _, key in pairs}) == 200


@pytest.mark.parametrize(
    ("held", "needed", "allowed"),
    [
        (Scope.READ, Scope.READ, True),
        (Scope.READ, Scope.WRITE, False),
        (Scope.READ, Scope.ADMIN, False),
        (Scope.WRITE, Scope.READ, True),
        (Scope.WRITE, Scope.WRITE, True),
        (Scope.WRITE, Scope.ADMIN, False),
        (Scope.ADMIN, Scope.READ, True),
        (Scope.ADMIN, Scope.WRITE, True),
        (Scope.ADMIN, Scope.ADMIN, True),
    ],
)
def test_admin_implies_write_implies_read(held: Scope, needed: Scope, allowed: bool) -> None:
    assert held.allows(needed) is allowed


def test_an_unknown_scope_is_a_clear_error() -> None:
    with pytest.raises(
        ValueError, match="unknown scope 'root'; expected one of read, write, admin"
    ):
        Scope.parse("root")
    assert Scope.parse("write") is Scope.WRITE


def test_key_id_of_takes_a_whole_key_or_a_bare_id() -> None:
    key_id, key = generate_key()
    assert key_id_of(key) == key_id
    assert key_id_of(key_id) == key_id
    assert key_id_of("dfk_nothex") is None
    assert key_id_of(key_id.upper()) is None


@given(st.text(max_size=120))
def test_key_id_of_never_raises_and_only_accepts_the_format(text: str) -> None:
    result = key_id_of(text)
    assert result is None or (len(result) == 12 and result in text)


# -- the repository ------------------------------------------------------------------


def test_a_created_key_verifies_and_lists_without_its_secret(db: Database) -> None:
    created, plaintext = db.create_api_key("write", "  camera gateway  ")
    assert KEY_PATTERN.fullmatch(plaintext)
    assert created.scope is Scope.WRITE and created.name == "camera gateway"
    assert not created.revoked
    assert db.verify_api_key(plaintext) == created
    assert db.list_api_keys() == [created]
    assert plaintext not in repr(created)


def test_keys_are_stored_hashed(db: Database) -> None:
    created, plaintext = db.create_api_key("admin")
    secret = plaintext.rsplit("_", 1)[1]
    with db.engine.connect() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.id == created.id)).mappings().one()
    stored = [str(value) for value in row.values()]
    assert all(plaintext not in value and secret not in value for value in stored)
    assert row["key_sha256"] == hashlib.sha256(plaintext.encode()).hexdigest()
    assert row["key_sha256"] != plaintext


def test_a_wrong_secret_an_unknown_id_or_a_malformed_key_does_not_verify(db: Database) -> None:
    created, plaintext = db.create_api_key("read")
    wrong_secret = plaintext[:-1] + ("0" if plaintext[-1] != "0" else "1")
    _, unknown = generate_key()
    for candidate in (wrong_secret, unknown, plaintext + "0", plaintext.upper(), "", "dfk__"):
        assert db.verify_api_key(candidate) is None, candidate
    assert db.verify_api_key(plaintext) == created


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(candidate=st.text(max_size=100) | st.from_regex(KEY_PATTERN, fullmatch=True))
def test_verify_never_raises_and_never_accepts_an_unissued_key(
    db: Database, candidate: str
) -> None:
    assert db.verify_api_key(candidate) is None


def test_a_revoked_key_stops_verifying_and_revoking_again_keeps_the_first_time(
    db: Database,
) -> None:
    created, plaintext = db.create_api_key("admin", "ops")
    first = db.revoke_api_key(created.id)
    assert first is not None and first.revoked
    assert db.verify_api_key(plaintext) is None
    time.sleep(0.01)
    again = db.revoke_api_key(created.id)
    assert again is not None and again.revoked_at == first.revoked_at
    assert db.list_api_keys() == [first]
    assert db.get_api_key(created.id) == first


def test_revoking_an_unknown_key_returns_none(db: Database) -> None:
    assert db.revoke_api_key("0123456789ab") is None
    assert db.get_api_key("0123456789ab") is None


def test_replace_revokes_only_the_live_keys_of_the_same_name(db: Database) -> None:
    old, old_key = db.create_api_key("admin", "demo")
    other, other_key = db.create_api_key("admin", "ops")
    new, new_key = db.create_api_key("admin", "demo", replace=True)
    assert db.verify_api_key(old_key) is None
    assert db.verify_api_key(other_key) == other
    assert db.verify_api_key(new_key) == new
    listed = {k.id: k for k in db.list_api_keys()}
    assert listed[old.id].revoked and not listed[new.id].revoked


def test_keys_list_oldest_first(db: Database) -> None:
    made = []
    for scope in ("read", "write", "admin"):
        made.append(db.create_api_key(scope)[0])
        time.sleep(0.01)
    assert [k.id for k in db.list_api_keys()] == [k.id for k in made]


@pytest.mark.parametrize(
    ("scope", "name", "message"),
    [
        ("superuser", None, "unknown scope"),
        ("read", "x" * 256, "longer than 255"),
        ("read", "bad\x00name", "control characters"),
    ],
)
def test_bad_scope_or_name_is_refused_and_nothing_is_stored(
    db: Database, scope: str, name: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        db.create_api_key(scope, name)
    assert db.list_api_keys() == []


def test_a_blank_name_is_stored_as_no_name(db: Database) -> None:
    created, _ = db.create_api_key("read", "   ")
    assert created.name is None
    assert db.list_api_keys()[0].name is None


def test_the_api_keys_migration_downgrades_and_upgrades_again(
    database_url: str, secret_key: str
) -> None:
    db = Database(database_url, secret_key=secret_key)
    try:
        db.upgrade()
        assert "api_keys" in inspect(db.engine).get_table_names()
        with db.engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "0001")
        tables = inspect(db.engine).get_table_names()
        assert "api_keys" not in tables and "detections" in tables
        db.upgrade()
        assert isinstance(db.create_api_key("read")[0], ApiKey)
    finally:
        db.dispose()


# -- `detectflow keys ...` -----------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, database_url: str, secret_key: str) -> dict[str, str]:
    return {
        "DETECTFLOW_DATA_DIR": str(tmp_path),
        "DETECTFLOW_DATABASE_URL": database_url,
        "DETECTFLOW_SECRET_KEY": secret_key,
        "DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD": "1",
    }


def _open(env: dict[str, str]) -> Database:
    return Database(env["DETECTFLOW_DATABASE_URL"], secret_key=env["DETECTFLOW_SECRET_KEY"])


def test_cli_keys_create_list_revoke(cli_env: dict[str, str]) -> None:
    runner = CliRunner()
    created = runner.invoke(
        cli, ["keys", "create", "--scope", "admin", "--name", "ops"], env=cli_env
    )
    assert created.exit_code == 0, created.output
    plaintext = created.stdout.strip()
    assert KEY_PATTERN.fullmatch(plaintext), created.stdout  # stdout is the key alone
    assert "cannot be shown again" in created.stderr
    key_id = key_id_of(plaintext)
    assert key_id is not None

    listed = runner.invoke(cli, ["keys", "list", "--json"], env=cli_env)
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["name"], r["scope"], r["camera_id"], r["revoked_at"]) for r in rows] == [
        (key_id, "ops", "admin", None, None)
    ]
    assert plaintext.rsplit("_", 1)[1] not in listed.stdout
    table = runner.invoke(cli, ["keys", "list"], env=cli_env)
    assert table.exit_code == 0 and key_id in table.stdout

    database = _open(cli_env)
    try:
        assert database.verify_api_key(plaintext) is not None
        revoked = runner.invoke(cli, ["keys", "revoke", key_id], env=cli_env)
        assert revoked.exit_code == 0 and f"revoked key {key_id}" in revoked.stdout
        assert database.verify_api_key(plaintext) is None
    finally:
        database.dispose()
    again = runner.invoke(cli, ["keys", "revoke", plaintext], env=cli_env)  # a whole key works too
    assert again.exit_code == 0 and "already revoked" in again.stdout
    rows = json.loads(runner.invoke(cli, ["keys", "list", "--json"], env=cli_env).stdout)
    assert rows[0]["revoked_at"] is not None


def test_cli_keys_create_binds_a_camera(cli_env: dict[str, str]) -> None:
    runner = CliRunner()
    created = runner.invoke(
        cli, ["keys", "create", "--scope", "write", "--camera", "driveway"], env=cli_env
    )
    assert created.exit_code == 0, created.output
    assert "for camera driveway" in created.stderr
    rows = json.loads(runner.invoke(cli, ["keys", "list", "--json"], env=cli_env).stdout)
    assert [r["camera_id"] for r in rows] == ["driveway"]
    database = _open(cli_env)
    try:
        verified = database.verify_api_key(created.stdout.strip())
        assert verified is not None and verified.camera_id == "driveway"
    finally:
        database.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cli_keys_refuses_bad_input_without_a_traceback(cli_env: dict[str, str]) -> None:
    runner = CliRunner()
    cases = [
        (["keys", "create", "--scope", "root"], 2, "Invalid value for '--scope'"),
        (["keys", "create"], 2, "Missing option '--scope'"),
        (["keys", "create", "--scope", "read", "--name", "x" * 300], 2, "longer than 255"),
        (["keys", "create", "--scope", "write", "--camera", "a/b"], 2, "--camera: camera id"),
        (["keys", "revoke", "not-an-id"], 2, "expected a key id"),
        (["keys", "revoke", "0123456789ab"], 1, "no API key with id '0123456789ab'"),
    ]
    for args, code, message in cases:
        result = runner.invoke(cli, args, env=cli_env)
        assert result.exit_code == code, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
        assert not isinstance(result.exception, ValueError)
    database = _open(cli_env)
    try:
        assert database.list_api_keys() == []
    finally:
        database.dispose()
