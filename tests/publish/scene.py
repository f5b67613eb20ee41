"""Results carrying real object events: a person walks into a zone and leaves the
picture, tracked by :class:`~detectflow.core.objects.CameraObjects` (no hand-made
events), for the publishers' tests and bench."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from detectflow.core.models import BBox, Detection, Frame, FrameResult
from detectflow.core.object_config import ObjectsConfig
from detectflow.core.object_events import FrameObjects
from detectflow.core.objects import CameraObjects
from tests.core.scenes import Walker

__all__ = ["DOCK", "T0", "walk_into_the_dock"]

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
DT = 0.2  # 5 frames a second
DOCK = {"dock": {"polygon": [[0.6, 0.0], [1.0, 0.0], [1.0, 1.0], [0.6, 1.0]], "inertia": 3}}


def _result(
    camera: str, frame_id: str, when: datetime, dets: tuple[Detection, ...], objects: FrameObjects
) -> FrameResult:
    frame = Frame(camera_id=camera, image=b"", frame_id=frame_id, timestamp=when)
    return FrameResult(frame, dets, (), None, 1, 1, objects=objects)


def walk_into_the_dock(
    camera: str = "cam-1", frames: int = 16, walkers: int = 1
) -> list[FrameResult]:
    """``walkers`` people (one above the other) walk right at 0.2 of the frame a second,
    into the dock zone; then the camera stops, ending them. Results in frame order,
    the stop's end events on a last result of their own."""
    cam = CameraObjects(camera, ObjectsConfig.from_options({"zones": DOCK}))
    people = [Walker(0.3, 0.05 + 0.6 * i / max(walkers, 1), vx=0.2, h=0.3) for i in range(walkers)]
    out: list[FrameResult] = []
    for k in range(frames):
        t = k * DT
        when = T0 + timedelta(seconds=t)
        frame_id = f"{camera}-f{k:05d}"
        dets = tuple(
            Detection(
                id=f"{frame_id}-{i}",
                camera_id=camera,
                frame_id=frame_id,
                detection_type=w.kind,
                label=w.label,
                confidence=w.score,
                bbox=BBox(*w.xywh(t)),
            )
            for i, w in enumerate(people)
        )
        for done in cam.push(frame_id, when, dets):
            out.append(_result(camera, done.frame_id, when, dets, done))
    flushed, ended = cam.stop()
    last = out[-1].frame
    for done in flushed:
        out.append(_result(camera, done.frame_id, last.timestamp, (), done))
    stop = FrameObjects(last.frame_id, last.timestamp.timestamp(), False, (), tuple(ended))
    out.append(_result(camera, last.frame_id, last.timestamp, (), stop))
    return out
