"""What a camera's objects produce: events, zone entries, line crossings, per frame.

Plain frozen values, made by :class:`~detectflow.core.objects.CameraObjects`
and consumed by whatever stores and publishes them (the event log, the bus,
MQTT, webhooks), so those need not import the tracking machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "OBJECT_ENDED",
    "OBJECT_STARTED",
    "OBJECT_UPDATED",
    "FrameObjects",
    "LineCrossing",
    "ObjectEvent",
    "ZoneEntry",
]

OBJECT_STARTED = "object_started"
OBJECT_UPDATED = "object_updated"
OBJECT_ENDED = "object_ended"


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """``object_started`` / ``object_updated`` / ``object_ended`` for one object.

    ``changes`` names what an update changed (``zones``, ``label``, ``snapshot``).
    ``frame_id`` is the frame that caused it (for an end at camera stop, the
    camera's last frame).
    """

    id: str
    type: str
    object_id: str
    camera_id: str
    frame_id: str
    time: float
    before: dict[str, Any]
    after: dict[str, Any]
    changes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LineCrossing:
    line: str
    direction: str  # "in" | "out"
    label: str
    object_id: str
    frame_id: str
    time: float


@dataclass(frozen=True, slots=True)
class ZoneEntry:
    zone: str
    label: str
    object_id: str
    frame_id: str
    time: float


@dataclass(frozen=True, slots=True)
class FrameObjects:
    """One frame after tracking. ``track_ids`` lines up with the detections pushed
    (None: dropped, or a weak box no track wanted; all None when ``late``).
    ``best`` lists ``(object_id, detection_index)`` whose best detection is now in
    this frame: keep this frame's image for their snapshots."""

    frame_id: str
    time: float
    late: bool
    track_ids: tuple[str | None, ...]
    events: tuple[ObjectEvent, ...] = ()
    crossings: tuple[LineCrossing, ...] = ()
    zone_entries: tuple[ZoneEntry, ...] = ()
    best: tuple[tuple[str, int], ...] = ()
