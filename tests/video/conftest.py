"""Peers of the video tests: video files written by PyAV, an MJPEG camera, an RTSP camera."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from detectflow.core.cameras import Camera
from detectflow.video.clips import write_clip
from tests.video.mjpeg_camera import MjpegCamera, mjpeg_camera

RTSP_SCRIPT = Path(__file__).with_name("rtsp_camera.py")
SYSTEM_PYTHON = "/usr/bin/python3"


class Status:
    """A reader's status listener that remembers what it heard, in order."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, str, str | None]] = []

    def offline(self, camera: Camera, reason: str, *, first: bool) -> None:
        self.heard.append(("offline" if first else "still offline", camera.id, reason))

    def online(self, camera: Camera) -> None:
        self.heard.append(("online", camera.id, None))

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.heard]


@pytest.fixture
def status() -> Status:
    return Status()


@pytest.fixture(scope="session")
def h264_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of 320x240 H.264 at 25 fps in MP4 (50 frames)."""
    return write_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=2.0)


@pytest.fixture(scope="session")
def mjpeg_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of 320x240 MJPEG at 25 fps in AVI (50 frames)."""
    return write_clip(tmp_path_factory.mktemp("clips") / "clip.avi", codec="mjpeg", seconds=2.0)


@pytest.fixture
def mjpeg() -> Iterator[MjpegCamera]:
    with mjpeg_camera() as camera:
        yield camera


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gst_rtsp_missing() -> str | None:
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing"
    check = (
        "import gi; gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import GstRtspServer"
    )
    found = subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True, check=False)
    if found.returncode != 0:
        return "GStreamer's RTSP server is not installed: run scripts/services"
    return None


class RtspCamera:
    """gst-rtsp-server in a process of its own (system python3); kill and restart it."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/stream"
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        process = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SCRIPT), str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if line != "ready":
            process.kill()
            process.wait()
            raise RuntimeError(f"the RTSP camera did not start: {line!r}")
        self._process = process

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            assert self._process.stdout is not None
            self._process.stdout.close()
            self._process = None


@pytest.fixture
def rtsp() -> Iterator[RtspCamera]:
    missing = _gst_rtsp_missing()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {missing}", pytrace=False)
        pytest.skip(f"SKIPPED RTSP test: {missing}")
    camera = RtspCamera()
    camera.start()
    try:
        yield camera
    finally:
        camera.kill()
