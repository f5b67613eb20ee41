"""The JSON shapes clients see, in one place.

The dataflow writes these dicts to the live cache and the bus, and the
server returns the same dicts from REST and WebSocket, so a detection looks
the same whichever way a client reads it. Field names follow the guide:
snake_case, except the ``createdAt``/``updatedAt`` timestamps.

One bus form is not a client shape: a frame's detections travel the bus as
one compact :func:`frame_detections_message`, which the server's hub expands
(:func:`detection_messages`) into the very ``detection`` broadcasts
:func:`detection_message` builds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, overload

from detectflow.core.cameras import Camera
from detectflow.core.models import Detection, DetectionEvent, ProviderConfig
from detectflow.core.windows import WindowStats

__all__ = [
    "FRAME_DETECTIONS",
    "camera_to_dict",
    "detection_message",
    "detection_messages",
    "detection_to_dict",
    "event_message",
    "event_to_dict",
    "frame_detections_message",
    "isoformat",
    "provider_to_dict",
    "window_stats_to_dict",
]

FRAME_DETECTIONS = "frame_detections"
"""The ``type`` of a :func:`frame_detections_message` (a bus message, never sent to clients)."""


@overload
def isoformat(value: datetime) -> str: ...
@overload
def isoformat(value: None) -> None: ...
@overload
def isoformat(value: datetime | None) -> str | None: ...
def isoformat(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``, as the guide shows (``2025-11-05T12:34:56Z``)."""
    if value is None:
        return None
    if value.tzinfo is not UTC:  # our own timestamps are already UTC: no conversion
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def detection_to_dict(d: Detection) -> dict[str, Any]:
    return {
        "id": d.id,
        "camera_id": d.camera_id,
        "frame_id": d.frame_id,
        "detection_type": d.detection_type,
        "label": d.label,
        "confidence": d.confidence,
        "bbox": d.bbox.as_dict(),
        "person_name": d.person_name,
        "person_id": d.person_id,
        "is_processed": d.is_processed,
        "processing_status": d.processing_status,
        "frame_number": d.frame_number,
        "frame_timestamp": isoformat(d.frame_timestamp),
        "createdAt": isoformat(d.created_at),
        "updatedAt": isoformat(d.updated_at),
    }


def event_to_dict(e: DetectionEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "detection_id": e.detection_id,
        "camera_id": e.camera_id,
        "event_type": e.event_type,
        "severity": e.severity,
        "message": e.message,
        "person_id": e.person_id,
        "person_name": e.person_name,
        "confidence_score": e.confidence_score,
        "action_taken": e.action_taken,
        "source_system": e.source_system,
        "createdAt": isoformat(e.created_at),
        "updatedAt": isoformat(e.updated_at),
    }


def detection_message(d: Detection, published_at: datetime | str | None = None) -> dict[str, Any]:
    """The WebSocket ``detection`` broadcast (the guide's shape, plus the box).

    ``published_at`` lets the server measure broadcast lag from the moment the
    dataflow published, not from when the hub happened to read the bus. It may
    be given already formatted (:func:`isoformat`), so a batch formats it once.
    """
    return _detection_message(
        d.id,
        d.camera_id,
        d.frame_id,
        d.detection_type,
        d.confidence,
        d.bbox.as_dict(),
        d.person_name,
        d.person_id,
        isoformat(d.frame_timestamp or d.created_at),
        None if published_at is None else _text(published_at),
    )


def _detection_message(
    detection_id: Any,
    camera_id: Any,
    frame_id: Any,
    detection_type: Any,
    confidence: Any,
    bbox: Any,
    person_name: Any,
    person_id: Any,
    timestamp: Any,
    published_at: Any,
) -> dict[str, Any]:
    """The one definition of the broadcast's fields and their order (clients see the text)."""
    message: dict[str, Any] = {
        "type": "detection",
        "detection_id": detection_id,
        "camera_id": camera_id,
        "frame_id": frame_id,
        "detection_type": detection_type,
        "confidence": confidence,
        "bbox": bbox,
        "person_name": person_name,
        "person_id": person_id,
        "timestamp": timestamp,
    }
    if published_at is not None:
        message["published_at"] = published_at
    return message


def frame_detections_message(
    detections: Sequence[Detection], published_at: datetime | str
) -> dict[str, Any]:
    """Detections that share camera, frame and timestamp (a frame's) as ONE bus message.

    What they share is written once, then one row per detection: id, type,
    confidence, the box's x, y, width and height, person name and person id.
    :func:`detection_messages` turns it back into exactly the
    :func:`detection_message` of each. Measured (``bench/flow_throughput.py``):
    one bus message per detection, each a dict and a ``json.dumps`` of the
    full broadcast, was the largest share of the result writer's CPU.
    """
    first = detections[0]
    return {
        "type": FRAME_DETECTIONS,
        "camera_id": first.camera_id,
        "frame_id": first.frame_id,
        "timestamp": isoformat(first.frame_timestamp or first.created_at),
        "published_at": _text(published_at),
        "detections": [
            [
                d.id,
                d.detection_type,
                d.confidence,
                d.bbox.x,
                d.bbox.y,
                d.bbox.width,
                d.bbox.height,
                d.person_name,
                d.person_id,
            ]
            for d in detections
        ],
    }


def detection_messages(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The :func:`detection_message` of each detection a :func:`frame_detections_message`
    (as decoded from JSON) carries; KeyError, TypeError or ValueError if it is mangled."""
    camera_id = message["camera_id"]
    frame_id = message["frame_id"]
    timestamp = message["timestamp"]
    published_at = message.get("published_at")
    rows = message["detections"]
    if not isinstance(rows, list):
        raise TypeError("detections is not a list")
    out: list[dict[str, Any]] = []
    for row in rows:
        if not isinstance(row, list):
            raise TypeError("a detection row is not a list")
        detection_id, detection_type, confidence, x, y, width, height, name, person = row
        bbox = {"x": x, "y": y, "width": width, "height": height}
        out.append(
            _detection_message(
                detection_id,
                camera_id,
                frame_id,
                detection_type,
                confidence,
                bbox,
                name,
                person,
                timestamp,
                published_at,
            )
        )
    return out


def event_message(e: DetectionEvent, published_at: datetime | str | None = None) -> dict[str, Any]:
    """The WebSocket ``event`` broadcast; ``published_at`` as for :func:`detection_message`."""
    message: dict[str, Any] = {
        "type": "event",
        "event_id": e.id,
        "event_type": e.event_type,
        "severity": e.severity,
        "message": e.message,
        "camera_id": e.camera_id,
        "detection_id": e.detection_id,
        "timestamp": isoformat(e.created_at),
    }
    if published_at is not None:
        message["published_at"] = _text(published_at)
    return message


def _text(stamp: datetime | str) -> str:
    return stamp if isinstance(stamp, str) else isoformat(stamp)


def camera_to_dict(c: Camera) -> dict[str, Any]:
    """A camera for the API and the CLI. The URL only as ``display_url``: its
    password is stored encrypted and never leaves."""
    return {
        "id": c.id,
        "name": c.name,
        "display_url": c.shown_url,
        "enabled": c.enabled,
        "fps": c.fps,
        "provider": c.provider,
        "options": dict(c.options),
        "last_error": c.last_error,
        "createdAt": isoformat(c.created_at),
        "updatedAt": isoformat(c.updated_at),
    }


def provider_to_dict(p: ProviderConfig) -> dict[str, Any]:
    """A provider config for the API. ``api_key`` is write-only: only whether one is set."""
    return {
        "id": p.id,
        "provider_name": p.provider_name,
        "provider_type": p.provider_type,
        "endpoint_url": p.endpoint_url,
        "has_api_key": bool(p.api_key),
        "timeout_seconds": p.timeout_seconds,
        "max_retries": p.max_retries,
        "max_faces_per_frame": p.max_faces_per_frame,
        "confidence_threshold": p.confidence_threshold,
        "enable_person_detection": p.enable_person_detection,
        "enable_face_detection": p.enable_face_detection,
        "enable_face_encoding": p.enable_face_encoding,
        "options": dict(p.options),
        "is_active": p.is_active,
        "test_status": p.test_status,
        "last_tested": isoformat(p.last_tested),
        "last_error": p.last_error,
        "createdAt": isoformat(p.created_at),
        "updatedAt": isoformat(p.updated_at),
    }


def window_stats_to_dict(w: WindowStats) -> dict[str, Any]:
    """One window's totals; ``average_confidence`` is derived so clients need not divide."""
    return {
        "camera_id": w.camera_id,
        "detection_type": w.detection_type,
        "window_start": isoformat(w.window_start),
        "window_end": isoformat(w.window_end),
        "count": w.count,
        "average_confidence": w.mean_confidence,
        "confidence_sum": w.confidence_sum,
        "max_confidence": w.max_confidence,
        "late_count": w.late_count,
        "revision": w.revision,
        "final": w.final,
    }
