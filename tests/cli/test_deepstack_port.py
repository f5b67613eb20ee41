"""``detectflow serve --deepstack-port``: one app, one lifespan, two listening ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner

from detectflow.cli import cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_deepstack_port_serves_the_same_app_as_the_main_port(tmp_path: Path) -> None:
    port, deepstack_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTFLOW_")}
    env.update(DETECTFLOW_DATA_DIR=str(tmp_path), DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD="1")
    command = [sys.executable, "-m", "detectflow.cli", "serve", "--port", str(port)]
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--deepstack-port", str(deepstack_port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                httpx.get(f"http://127.0.0.1:{deepstack_port}/v1/status/ping", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        for each in (port, deepstack_port):
            ping = httpx.get(f"http://127.0.0.1:{each}/v1/status/ping")
            assert ping.status_code == 200 and ping.json()["success"] is True
        nobody = httpx.post(
            f"http://127.0.0.1:{deepstack_port}/v1/vision/detection",
            files={"image": ("a.txt", b"text", "text/plain")},
        )
        assert nobody.status_code == 400 and nobody.json()["success"] is False
    finally:
        process.terminate()
        process.wait(15)


def test_the_deepstack_port_must_differ_from_the_main_port(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["serve", "--port", "5000", "--deepstack-port", "5000"],
        env={"DETECTFLOW_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 2
    assert "must differ from --port" in result.output
