"""``detectflow up`` is crash-safe by default: it keeps recovery snapshots under the data dir.

Real ``detectflow up`` processes on loopback (SQLite in a temporary data dir).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from detectflow.cli import cli
from detectflow.cli.demo import ensure_demo_provider
from detectflow.flows.recovery import recovery_partitions
from detectflow.simulator import Simulator, run_in_thread
from detectflow.store import Database
from detectflow.video.clips import write_clip

_UP = [sys.executable, "-m", "detectflow.cli", "up"]


def _env(tmp_path: Path, secret_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTFLOW_")}
    env.update(
        DETECTFLOW_DATA_DIR=str(tmp_path / "data"),
        DETECTFLOW_SECRET_KEY=secret_key,
        DETECTFLOW_DISABLE_PLUGIN_AUTOLOAD="1",
    )
    return env


@contextmanager
def _up(env: dict[str, str], port: int, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    log = Path(env["DETECTFLOW_DATA_DIR"]).parent / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "detectflow.cli",
                "up",
                "--port",
                str(port),
                "--no-schedule",
                *args,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).is_success:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "detectflow up did not answer"
            time.sleep(0.2)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait_for_partitions(directory: Path) -> int:
    deadline = time.monotonic() + 20
    while recovery_partitions(directory) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    return recovery_partitions(directory)


@pytest.mark.slow
def test_up_keeps_recovery_snapshots_under_the_data_dir_by_default(
    tmp_path: Path, secret_key: str, free_port: int
) -> None:
    with _up(_env(tmp_path, secret_key), free_port):
        assert _wait_for_partitions(tmp_path / "data" / "recovery") == 1


@pytest.mark.slow
def test_up_without_recovery_keeps_no_snapshots(
    tmp_path: Path, secret_key: str, free_port: int
) -> None:
    env = _env(tmp_path, secret_key) | {"DETECTFLOW_RECOVERY_DIR": str(tmp_path / "elsewhere")}
    with _up(env, free_port, "--no-recovery"):
        time.sleep(1.0)  # the flow thread has started by now; nothing may appear
        assert recovery_partitions(tmp_path / "data" / "recovery") == 0
        assert recovery_partitions(tmp_path / "elsewhere") == 0


def test_up_refuses_a_recovery_dir_and_no_recovery_together(tmp_path: Path) -> None:
    outcome = CliRunner().invoke(
        cli, ["up", "--recovery-dir", str(tmp_path), "--no-recovery"], env={}
    )
    assert outcome.exit_code == 2
    assert "contradict" in outcome.output


def test_the_deepstack_port_serves_the_same_app_as_the_main_port(
    tmp_path: Path, secret_key: str, free_port: int
) -> None:
    """``--deepstack-port``: one app, one lifespan, two listening ports."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        deepstack_port = s.getsockname()[1]
    env = _env(tmp_path, secret_key)
    with _up(env, free_port, "--deepstack-port", str(deepstack_port)):
        for port in (free_port, deepstack_port):
            ping = httpx.get(f"http://127.0.0.1:{port}/v1/status/ping")
            assert ping.status_code == 200 and ping.json()["success"] is True
        refused = httpx.post(
            f"http://127.0.0.1:{deepstack_port}/v1/vision/detection",
            files={"image": ("a.txt", b"text", "text/plain")},
        )
        assert refused.status_code == 400 and refused.json()["success"] is False


def test_the_deepstack_port_must_differ_from_the_main_port(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["up", "--port", "5000", "--deepstack-port", "5000"],
        env={"DETECTFLOW_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 2
    assert "must differ from --port" in result.output


@pytest.mark.slow
def test_up_reads_a_camera_added_through_the_api_within_ten_seconds(
    tmp_path: Path, secret_key: str, free_port: int
) -> None:
    """``up`` reads the cameras table beside the queue: a camera added through REST
    is read (its status online) and detected with no restart."""
    clip = write_clip(tmp_path / "door.mp4", seconds=2.0)
    env = _env(tmp_path, secret_key)
    env["DETECTFLOW_DATABASE_URL"] = f"sqlite:///{tmp_path / 'up.db'}"
    database = Database(env["DETECTFLOW_DATABASE_URL"], secret_key=secret_key)
    database.upgrade()
    base = f"http://127.0.0.1:{free_port}/api/v1"
    with run_in_thread(Simulator(latency=0.01, seed=7)) as simulator:
        ensure_demo_provider(database, simulator.detect_url("detectflow"))
        _, key = database.create_api_key("admin", "test")
        database.dispose()
        auth = {"Authorization": f"Bearer {key}"}
        with _up(env, free_port):
            added = httpx.post(
                f"{base}/cameras",
                headers=auth,
                json={"id": "door", "url": f"file://{clip}", "fps": 5, "options": {"loop": 1}},
            )
            assert added.status_code == 201, added.text
            deadline = time.monotonic() + 10
            while True:
                data = httpx.get(f"{base}/cameras/door/status", headers=auth).json()["data"]
                if data["status"] == "online":
                    break
                assert time.monotonic() < deadline, data
                time.sleep(0.2)
            deadline = time.monotonic() + 10
            while not httpx.get(f"{base}/detections/live?camera_id=door", headers=auth).json()[
                "data"
            ]:
                assert time.monotonic() < deadline, "no detections of the camera"
                time.sleep(0.2)
            data = httpx.get(f"{base}/cameras/door/status", headers=auth).json()["data"]
            assert data["sampled_fps"] > 0 and data["detect_fps"] > 0
