"""Frames of a scripted scene as detected results, for the objects step, store and API tests.

The scene of the acceptance criteria: A walks left to right through the dock
(upper right), B right to left below it; their boxes overlap as they cross.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from detectflow.core.ids import detection_id, event_id
from detectflow.core.models import (
    BBox,
    Detection,
    DetectionEvent,
    EventType,
    Frame,
    FrameResult,
    Severity,
)
from detectflow.samples import sample_frame
from tests.core.scenes import Walker

__all__ = ["DT", "T0", "ZONE_OPTIONS", "A", "B", "boxes_at", "scene_results"]

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DT = 0.2  # 5 frames a second
ZONE_OPTIONS = {"zones": {"dock": {"polygon": [[0.6, 0.0], [1.0, 0.0], [1.0, 0.5], [0.6, 0.5]]}}}
A = Walker(0.0, 0.15, vx=0.15, h=0.3)  # bottom at 0.45: inside the dock once x > 0.6
B = Walker(0.85, 0.25, vx=-0.15, h=0.3, score=0.85)  # bottom at 0.55: never inside


def boxes_at(k: int, walkers: tuple[Walker, ...] = (A, B)) -> list[tuple[str, float, tuple]]:
    """(label, score, xywh) of each walker in frame ``k``."""
    return [(w.label, w.score, w.xywh(k * DT)) for w in walkers]


def scene_results(
    camera_id: str = "cam-1", frames: range = range(30), walkers: tuple[Walker, ...] = (A, B)
) -> list[FrameResult]:
    """Each frame of the scene as the detect step gives it (image kept)."""
    out = []
    for k in frames:
        when = T0 + timedelta(seconds=k * DT)
        frame = Frame(camera_id, sample_frame(camera_id, k, 64, 48), f"{camera_id}-f{k:04d}", when)
        dets = tuple(
            Detection(
                id=detection_id(frame.frame_id, i),
                camera_id=camera_id,
                frame_id=frame.frame_id,
                detection_type=label,
                label=label,
                confidence=score,
                bbox=BBox(*box),
                frame_timestamp=when,
                created_at=when,
                updated_at=when,
            )
            for i, (label, score, box) in enumerate(boxes_at(k, walkers))
        )
        event = DetectionEvent(
            id=event_id(frame.frame_id, EventType.DETECTION_COMPLETED),
            camera_id=camera_id,
            event_type=EventType.DETECTION_COMPLETED,
            severity=Severity.INFO,
            message=f"Detected {len(dets)} objects",
            created_at=when,
            updated_at=when,
        )
        out.append(FrameResult(frame, dets, (event,), None, 1, 5))
    return out
