"""Fixtures for detectflow-opencv's tests.

This folder has no ``__init__.py`` on purpose: detectflow's own suite runs
these tests from the repository root, where ``tests`` is detectflow's
package; the test modules here have names of their own (``test_opencv_*``)
so both live in one pytest run without clashing.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from detectflow.core.plugins import reset_registry
from skimage import data

ASTRONAUT_SIZE = (512, 512)  # width, height of skimage's astronaut.png


@pytest.fixture(autouse=True)
def _fresh_plugin_registry() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    """scikit-image's astronaut (Eileen Collins): one frontal face, upper middle."""
    return np.ascontiguousarray(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))


def _encode(ext: str, image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return bytes(buffer.tobytes())


@pytest.fixture(scope="session")
def astronaut_png(astronaut_bgr: np.ndarray) -> bytes:
    return _encode(".png", astronaut_bgr)


@pytest.fixture(scope="session")
def astronaut_jpeg(astronaut_bgr: np.ndarray) -> bytes:
    return _encode(".jpg", astronaut_bgr)


@pytest.fixture(scope="session")
def blank_png() -> bytes:
    return _encode(".png", np.full((480, 640, 3), 128, dtype=np.uint8))


@pytest.fixture(scope="session")
def garbage_png() -> bytes:
    """PNG magic (so detectflow's frame check lets it through) and then junk."""
    return b"\x89PNG\r\n\x1a\n" + b"this is not an image at all" * 4


def _is_astronaut_face(x: float, y: float, w: float, h: float) -> bool:
    """Fractions of the frame: her face is about 18% wide, centred at (0.44, 0.22)."""
    cx, cy = x + w / 2, y + h / 2
    return 0.3 < cx < 0.6 and 0.1 < cy < 0.35 and 0.1 < w < 0.3 and 0.1 < h < 0.3


@pytest.fixture(scope="session")
def is_astronaut_face() -> object:
    """``is_astronaut_face(x, y, w, h)`` with a box in fractions of the image."""
    return _is_astronaut_face
