"""``detectflow camera ...`` on a real SQLite database: the commands, the API's
refusals by option name, and the fleet file (import diff, idempotence, prune,
credentials from the environment or kept when masked, export round trip)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectflow.cli import cli
from detectflow.core.camera_toml import dump_cameras
from detectflow.core.cameras import Camera
from detectflow.core.models import ProviderConfig
from detectflow.store import Database

PASSWORD = "Sup3r-s3cret-pw"
URL = f"rtsp://admin:{PASSWORD}@10.0.0.5:554/stream1"
SHOWN = "rtsp://admin:***@10.0.0.5:554/stream1"


def run(env: dict[str, str], *args: str, extra_env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["camera", *args], env={**env, **(extra_env or {})})


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def test_add_show_list_update_enable_disable_remove(
    env: dict[str, str], database: Database
) -> None:
    out = ok(
        run(
            env,
            "add",
            "--id",
            "cam-1",
            "--url",
            URL,
            "--fps",
            "2",
            "--name",
            "Door",
            "--option",
            "transport=tcp",
        )
    )
    assert out == f"added camera cam-1 ({SHOWN})\n"
    stored = database.get_camera("cam-1")
    assert stored is not None
    assert (stored.url, stored.fps, stored.name, stored.options) == (
        URL,
        2.0,
        "Door",
        {"transport": "tcp"},
    )
    shown = json.loads(ok(run(env, "show", "cam-1", "--json")))
    assert shown["display_url"] == SHOWN and shown["options"] == {"transport": "tcp"}
    assert "display_url  " + SHOWN in ok(run(env, "show", "cam-1"))
    listed = json.loads(ok(run(env, "list", "--json")))
    assert [c["id"] for c in listed] == ["cam-1"]
    assert "cam-1" in ok(run(env, "list"))

    out = ok(
        run(
            env,
            "update",
            "cam-1",
            "--fps",
            "3",
            "--option",
            "loop=1",
            "--remove-option",
            "transport",
        )
    )
    assert out.startswith("updated camera cam-1") and "fps, options" in out
    stored = database.get_camera("cam-1")
    assert stored is not None and stored.fps == 3.0 and stored.options == {"loop": 1}
    assert ok(run(env, "disable", "cam-1")) == "camera cam-1 is disabled\n"
    assert database.list_enabled_cameras() == []
    assert ok(run(env, "enable", "cam-1")) == "camera cam-1 is enabled\n"
    ok(run(env, "update", "cam-1", "--clear-url"))
    stored = database.get_camera("cam-1")
    assert stored is not None and stored.url is None
    assert ok(run(env, "remove", "cam-1")) == "removed camera cam-1 (no url)\n"
    assert database.list_cameras() == []


def test_refusals_name_the_options(env: dict[str, str], database: Database) -> None:
    result = run(
        env,
        "add",
        "--id",
        "bad id",
        "--url",
        "ftp://h/x",
        "--fps",
        "0",
        "--option",
        'zones={"d": {"polygon": [[0, 0]]}}',
    )
    assert result.exit_code == 2
    for expected in (
        "--id: camera id",
        "--url: camera url scheme",
        "--fps: fps",
        "--option zones.d.polygon:",
    ):
        assert expected in result.output
    result = run(env, "add", "--id", "c", "--provider", "nope")
    assert (
        result.exit_code == 2 and "--provider: no provider config with id 'nope'" in result.output
    )
    ok(run(env, "add", "--id", "c"))
    result = run(env, "add", "--id", "c")
    assert result.exit_code == 1 and "already exists" in result.output
    assert run(env, "show", "nope").exit_code == 1
    assert run(env, "update", "c").exit_code == 2  # nothing to change
    result = run(env, "update", "c", "--url", SHOWN)
    assert result.exit_code == 2 and "--url: holds ***" in result.output
    assert [c.id for c in database.list_cameras()] == ["c"]


def test_a_provider_that_exists_may_be_named(env: dict[str, str], database: Database) -> None:
    database.create_provider(
        ProviderConfig(id="p1", provider_name="p", provider_type="http_api", endpoint_url="x")
    )
    ok(run(env, "add", "--id", "c", "--provider", "p1"))
    ok(run(env, "update", "c", "--clear-provider"))
    camera = database.get_camera("c")
    assert camera is not None and camera.provider is None


FLEET = """
[[cameras]]
id = "front"
name = "Front door"
url = "rtsp://viewer:${FRONT_PW}@10.0.0.5:554/stream1"
fps = 2

[cameras.options]
transport = "tcp"

[cameras.options.zones.dock]
polygon = [[0.6, 0.0], [1.0, 0.0], [1.0, 1.0], [0.6, 1.0]]

[[cameras]]
id = "yard"
url = "file:///clips/yard.mp4"
enabled = false
"""


def test_import_prints_a_diff_applies_it_and_is_idempotent(
    env: dict[str, str], database: Database, tmp_path: Path
) -> None:
    ok(run(env, "add", "--id", "old"))
    fleet = tmp_path / "cameras.toml"
    fleet.write_text(FLEET)
    secret = {"FRONT_PW": PASSWORD}
    out = ok(run(env, "import", str(fleet), extra_env=secret))
    assert out.splitlines() == [
        "+ front: added",
        "+ yard: added",
        "  old: not in the file, kept (--prune removes it)",
        "2 added, 0 changed, 0 removed, 0 unchanged",
    ]
    front = database.get_camera("front")
    assert front is not None and front.url == f"rtsp://viewer:{PASSWORD}@10.0.0.5:554/stream1"
    assert front.options["zones"]["dock"]["polygon"][0] == [0.6, 0.0]
    version = database.cameras_version()
    out = ok(run(env, "import", str(fleet), extra_env=secret))
    assert "0 added, 0 changed, 0 removed, 2 unchanged" in out
    assert database.cameras_version() == version  # the same file twice changes nothing

    fleet.write_text(FLEET.replace("fps = 2", "fps = 4"))
    out = ok(run(env, "import", str(fleet), "--prune", "--dry-run", extra_env=secret))
    assert "~ front: fps changed" in out and "- old: removed" in out
    assert out.endswith("dry run: nothing changed\n")
    assert database.cameras_version() == version
    out = ok(run(env, "import", str(fleet), "--prune", extra_env=secret))
    assert "1 changed, 1 removed" in out
    assert [c.id for c in database.list_cameras()] == ["front", "yard"]
    assert PASSWORD not in out


def test_a_refused_file_imports_nothing_and_names_each_camera(
    env: dict[str, str], database: Database, tmp_path: Path
) -> None:
    fleet = tmp_path / "cameras.toml"
    fleet.write_text(FLEET + '\n[[cameras]]\nid = "bad"\nfps = 0\nurl = "rtsp://u:***@h/s"\n')
    result = run(env, "import", str(fleet))
    assert result.exit_code == 1
    assert "nothing imported" in result.output
    assert "cameras[0] (front).url: environment variable(s) not set: FRONT_PW" in result.output
    assert "cameras[2] (bad).url: camera url has *** for a credential" in result.output
    assert database.list_cameras() == []
    fleet.write_text('[[cameras]]\nid = "a"\n[[cameras]]\nid = "a"\n')
    result = run(env, "import", str(fleet))
    assert result.exit_code == 1 and "'a' is described twice" in result.output
    fleet.write_text("not toml [")
    assert run(env, "import", str(fleet)).exit_code == 1
    fleet.write_text('[[cameras]]\nid = "a"\nfps = 0\n')
    result = run(env, "import", str(fleet))
    assert "cameras[0] (a).fps: fps must be" in result.output


def test_export_masks_credentials_and_imports_back_unchanged(
    env: dict[str, str], database: Database, tmp_path: Path
) -> None:
    ok(run(env, "add", "--id", "cam-1", "--url", URL, "--option", "transport=udp"))
    ok(run(env, "add", "--id", "cam-2", "--url", "http://cam/v.mjpg?user=a&password=pw123"))
    text = ok(run(env, "export"))
    assert PASSWORD not in text and "pw123" not in text and SHOWN in text
    out = ok(run(env, "export", "-o", str(tmp_path / "fleet.toml")))
    assert out == f"wrote {tmp_path / 'fleet.toml'}\n"
    version = database.cameras_version()
    out = ok(run(env, "import", str(tmp_path / "fleet.toml")))
    assert "2 unchanged" in out and database.cameras_version() == version
    camera = database.get_camera("cam-1")
    assert camera is not None and camera.url == URL

    secret = tmp_path / "backup.toml"
    ok(run(env, "export", "--with-secrets", "-o", str(secret)))
    assert URL in secret.read_text()
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600


def _camera(camera_id: str, url: str | None, fps: float, enabled: bool, loop: int) -> Camera:
    return Camera(
        camera_id, url=url, fps=fps, enabled=enabled, options={"loop": loop} if loop else {}
    )


_FLEETS = st.lists(
    st.builds(
        _camera,
        camera_id=st.sampled_from(["a", "b.1", "c:2", "d-3"]),
        url=st.sampled_from([None, URL, "http://h/v.mjpg?token=t0k", "file:///c/a.mp4"]),
        fps=st.sampled_from([0.5, 5.0, 25.0]),
        enabled=st.booleans(),
        loop=st.integers(min_value=0, max_value=1),
    ),
    max_size=4,
    unique_by=lambda c: c.id,
)


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fleet=_FLEETS)
def test_any_fleet_imported_exports_and_reimports_to_the_same_table(
    env: dict[str, str], database: Database, tmp_path: Path, fleet: list[Camera]
) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(dump_cameras(fleet, with_secrets=True))
    ok(run(env, "import", str(path), "--prune"))

    def table() -> list[tuple[Any, ...]]:
        return [(c.id, c.url, c.fps, c.enabled, dict(c.options)) for c in database.list_cameras()]

    expected = sorted((c.id, c.url, c.fps, c.enabled, dict(c.options)) for c in fleet)
    assert table() == expected
    path.write_text(ok(run(env, "export")))  # masked
    out = ok(run(env, "import", str(path), "--prune"))
    assert f"0 added, 0 changed, 0 removed, {len(fleet)} unchanged" in out
    assert table() == expected
