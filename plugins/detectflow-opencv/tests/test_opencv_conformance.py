"""detectflow's conformance kit, run against the OpenCV adapter.

An in-process detector cannot be unreachable, refuse a valid image, answer
nonsense or fail transiently: the adapter declares ``in_process`` and the
kit skips those checks by itself, saying so. What it can do wrong (bad boxes, ignored timeouts,
answers crossing between concurrent frames, a fragile ``aclose``) is checked.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import pytest
from detectflow import ProviderConfig
from detectflow.core.frames import make_frame
from detectflow.core.models import Frame
from detectflow.testing import AdapterConformance, ConformanceTarget
from skimage import data

from detectflow_opencv.plugin import OpenCVAdapter

CANVAS = 320
FACE_CROP = (slice(20, 260), slice(100, 340))  # rows, columns of astronaut.png around the face


@lru_cache(maxsize=1)
def _face() -> np.ndarray:
    bgr = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(bgr[FACE_CROP])


@lru_cache(maxsize=128)
def face_frame(index: int) -> Frame:
    """The astronaut's face at a different place on a grey canvas for each index,
    so every frame's answer differs and cross-talk would show."""
    face = _face()
    h, w = face.shape[:2]
    canvas = np.full((CANVAS, CANVAS, 3), 128, dtype=np.uint8)
    x = (index * 7) % (CANVAS - w)
    y = (index * 13) % (CANVAS - h)
    canvas[y : y + h, x : x + w] = face
    ok, png = cv2.imencode(".png", canvas)
    assert ok
    return make_frame(
        "conformance-opencv", png.tobytes(), max_bytes=1 << 22, frame_id=f"opencv-{index}"
    )


def _adapter(timeout: float, **options: object) -> OpenCVAdapter:
    return OpenCVAdapter(
        ProviderConfig(
            id="opencv",
            provider_name="opencv",
            provider_type="opencv",
            endpoint_url="local",
            timeout_seconds=timeout,
            confidence_threshold=0.0,
            enable_person_detection=False,
            options=options,
        )
    )


@pytest.fixture
def detectflow_target() -> ConformanceTarget:
    return ConformanceTarget(
        healthy=lambda timeout: _adapter(timeout, max_workers=2),
        # A real slow detection: an exhaustive cascade scan takes far longer
        # than the 20 ms the kit allows it.
        slow=lambda timeout: _adapter(timeout, scale_factor=1.01, min_face_size=8, max_workers=1),
        frame=face_frame,
        timeout_seconds=0.02,
    )


class TestOpenCVConformance(AdapterConformance):
    """The kit's suite, collected here for the OpenCV adapter."""


def test_the_conformance_frames_each_show_a_face_somewhere_else() -> None:
    """The cross-talk check is only meaningful if answers differ per frame."""
    from detectflow_opencv.detector import OpenCVDetector

    detector = OpenCVDetector()
    boxes = {tuple(d.box) for i in range(6) for d in detector.detect(face_frame(i).image)}
    assert len(boxes) >= 5
