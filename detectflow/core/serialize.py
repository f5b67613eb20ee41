"""The JSON shapes clients see, in one place.

The dataflow writes these dicts to the live cache and the bus, and the
server returns the same dicts from REST and WebSocket, so a detection looks
the same whichever way a client reads it. Field names follow the guide:
snake_case, except the ``createdAt``/``updatedAt`` timestamps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from detectflow.core.models import Detection, DetectionEvent, ProviderConfig, QueueItem
from detectflow.core.windows import WindowStats

__all__ = [
    "detection_message",
    "detection_to_dict",
    "event_message",
    "event_to_dict",
    "isoformat",
    "provider_to_dict",
    "queue_item_to_dict",
    "window_stats_to_dict",
]


def isoformat(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``, as the guide shows (``2025-11-05T12:34:56Z``)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


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


def detection_message(d: Detection, published_at: datetime | None = None) -> dict[str, Any]:
    """The WebSocket ``detection`` broadcast (the guide's shape, plus the box).

    ``published_at`` lets the server measure broadcast lag from the moment the
    dataflow published, not from when the hub happened to read the bus.
    """
    message: dict[str, Any] = {
        "type": "detection",
        "detection_id": d.id,
        "camera_id": d.camera_id,
        "frame_id": d.frame_id,
        "detection_type": d.detection_type,
        "confidence": d.confidence,
        "bbox": d.bbox.as_dict(),
        "person_name": d.person_name,
        "person_id": d.person_id,
        "timestamp": isoformat(d.frame_timestamp or d.created_at),
    }
    if published_at is not None:
        message["published_at"] = isoformat(published_at)
    return message


def event_message(e: DetectionEvent, published_at: datetime | None = None) -> dict[str, Any]:
    """The WebSocket ``event`` broadcast."""
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
        message["published_at"] = isoformat(published_at)
    return message


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


def queue_item_to_dict(q: QueueItem) -> dict[str, Any]:
    return {
        "id": q.id,
        "camera_id": q.camera_id,
        "priority": q.priority,
        "status": q.status,
        "frame_number": q.frame_number,
        "frame_timestamp": isoformat(q.frame_timestamp),
        "retry_count": q.retry_count,
        "max_retries": q.max_retries,
        "detections_count": q.detections_count,
        "processing_time_ms": q.processing_time_ms,
        "error_message": q.error_message,
        "createdAt": isoformat(q.created_at),
        "updatedAt": isoformat(q.updated_at),
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
        "distinct_persons": w.distinct_persons,
        "late_count": w.late_count,
        "revision": w.revision,
        "final": w.final,
    }
