"""Peers of the video tests: video files written by PyAV, an MJPEG camera, an RTSP camera."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from detectflow.core.cameras import Camera
from detectflow.video.clips import write_clip
from tests.video.mjpeg_camera import MjpegCamera, mjpeg_camera
from tests.video.rtsp import RtspCamera, rtsp_camera


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


@pytest.fixture
def rtsp() -> Iterator[RtspCamera]:
    with rtsp_camera() as camera:
        yield camera
