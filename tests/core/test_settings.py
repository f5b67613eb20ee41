from __future__ import annotations

from pathlib import Path

import pytest

from detectflow.core.settings import Settings, SettingsError


def test_defaults_are_embedded():
    s = Settings.from_env({})
    assert s.embedded
    assert s.sql_url.startswith("sqlite:///") and s.sql_url.endswith(".detectflow/detectflow.db")
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.max_frame_bytes == 10 * 1024 * 1024


def test_environment_variables_are_read_and_converted():
    s = Settings.from_env(
        {
            "DETECTFLOW_DATABASE_URL": "postgresql+psycopg://u@h/db",
            "DETECTFLOW_PORT": "9000",
            "DETECTFLOW_DATA_DIR": "/tmp/x",
            "DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD": "yes",
            "DETECTFLOW_BLOCKED_PLUGINS": "a, b,,",
            "DETECTFLOW_RETRY_BASE_SECONDS": "0.5",
        }
    )
    assert s.sql_url == "postgresql+psycopg://u@h/db"
    assert not s.embedded
    assert s.port == 9000
    assert s.data_dir == Path("/tmp/x")
    assert s.disable_plugin_autoload is True
    assert s.blocked_plugins == ("a", "b")
    assert s.retry_base_seconds == 0.5


def test_a_bad_value_names_the_variable():
    with pytest.raises(SettingsError, match="DETECTFLOW_PORT"):
        Settings.from_env({"DETECTFLOW_PORT": "eighty"})


def test_overrides_win_over_the_environment_but_none_does_not():
    s = Settings.from_env({"DETECTFLOW_PORT": "9000"}, port=9100, host=None)
    assert (s.host, s.port) == ("127.0.0.1", 9100)
