"""detectflow_opencv.cli: the ``detectflow-opencv`` command, in-process and as a real server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from detectflow_opencv.cli import cli


def test_detect_prints_one_deepstack_answer_per_file(tmp_path, astronaut_png, garbage_png):
    good = tmp_path / "astronaut.png"
    bad = tmp_path / "garbage.png"
    good.write_bytes(astronaut_png)
    bad.write_bytes(garbage_png)
    result = CliRunner().invoke(cli, ["detect", "--no-people", str(good), str(bad)])
    assert result.exit_code == 1  # one file failed
    first, second = (json.loads(line) for line in result.output.splitlines())
    assert first["success"] is True and first["file"] == str(good)
    assert [p["label"] for p in first["predictions"]] == ["face"]
    assert second["success"] is False and "cannot decode" in second["error"]


def test_detect_with_every_file_readable_exits_zero(tmp_path, blank_png):
    path = tmp_path / "blank.png"
    path.write_bytes(blank_png)
    result = CliRunner().invoke(cli, ["detect", str(path)])
    assert result.exit_code == 0
    assert json.loads(result.output)["predictions"] == []


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("min_neighbors", "expected KEY=VALUE"),
        ("min_neighbors=lots", "not a number"),
        ("min_neigbors=3", "unknown opencv option"),
        ("scale_factor=0.5", "scale_factor must be > 1"),
    ],
)
def test_bad_detector_options_are_usage_errors(tmp_path, blank_png, option, message):
    path = tmp_path / "blank.png"
    path.write_bytes(blank_png)
    result = CliRunner().invoke(cli, ["detect", "--option", option, str(path)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_serve_command_answers_deepstack_requests_over_loopback(free_port, astronaut_png):
    command = [sys.executable, "-m", "detectflow_opencv", "serve", "--port", str(free_port)]
    command += ["--option", "min_neighbors=4"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{free_port}"
    try:
        with httpx.Client(base_url=base, timeout=5.0) as client:
            deadline = time.monotonic() + 15.0
            while True:
                try:
                    ping = client.get("/v1/server/status/ping")
                    break
                except httpx.TransportError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            assert ping.json() == {"success": True}
            files = {"image": ("a.png", astronaut_png, "image/png")}
            answer = client.post(
                "/v1/vision/detection", files=files, data={"min_confidence": "0.9"}
            )
        assert answer.status_code == 200
        body = answer.json()
        assert body["success"] is True
        assert [p["label"] for p in body["predictions"]] == ["face"]
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=10)
    assert b"Traceback" not in stderr


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "detectflow-opencv"
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert "detectflow-opencv, version 0.1.0" in done.stdout
