from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from detectflow.core.settings import Settings
from detectflow.store import SecretKeyError, load_or_create_secret_key, open_database


def test_the_setting_wins(tmp_path: Path, secret_key: str) -> None:
    settings = Settings(data_dir=tmp_path, secret_key=secret_key)
    assert load_or_create_secret_key(settings) == secret_key
    assert not (tmp_path / "secret.key").exists()


def test_first_run_creates_a_private_key_file_and_reuses_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    key = load_or_create_secret_key(settings)
    path = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    Fernet(key)  # a usable key
    assert load_or_create_secret_key(settings) == key


def test_a_bad_key_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_text("not a key\n")
    with pytest.raises(SecretKeyError, match="DETECTFLOW_SECRET_KEY"):
        load_or_create_secret_key(Settings(data_dir=tmp_path))


def test_a_bad_setting_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SecretKeyError, match="DETECTFLOW_SECRET_KEY"):
        load_or_create_secret_key(Settings(data_dir=tmp_path, secret_key="nope"))


def test_open_database_uses_the_data_dir_and_its_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "nested" / "dir")
    db = open_database(settings)
    try:
        db.upgrade()
        assert (tmp_path / "nested" / "dir" / "detectflow.db").exists()
        assert (tmp_path / "nested" / "dir" / "secret.key").exists()
        assert db.ping()
    finally:
        db.dispose()
