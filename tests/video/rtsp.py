"""The RTSP camera of the tests: gst-rtsp-server run by tests/video/rtsp_camera.py.

Debian's GStreamer and its gi bindings live with the system ``/usr/bin/python3``,
so the server runs there, in a process the tests kill and restart to cut the
stream. Without it the RTSP tests skip loudly (``scripts/services`` installs
it); under ``CI=true`` they fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

RTSP_SCRIPT = Path(__file__).with_name("rtsp_camera.py")
SYSTEM_PYTHON = "/usr/bin/python3"


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


@contextmanager
def rtsp_camera() -> Iterator[RtspCamera]:
    """A running RTSP camera; skips (fails under CI) when GStreamer's server is missing."""
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
