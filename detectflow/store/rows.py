"""Conversions between SQL rows and the core models, in both directions.

Kept apart from the queries so the hot path (``record_results``) and the
readers share one definition of every column.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping

from detectflow.core.cameras import Camera
from detectflow.core.models import (
    BBox,
    Detection,
    DetectionEvent,
    Frame,
    ProviderConfig,
    QueueItem,
    QueueStatus,
)
from detectflow.store.crypto import ApiKeyCipher

__all__ = [
    "CAMERA_FIELDS",
    "DETECTION_COLUMNS",
    "EVENT_COLUMNS",
    "PROVIDER_FIELDS",
    "camera_from_row",
    "camera_to_row",
    "check_changeable",
    "detection_from_row",
    "detection_to_row",
    "detection_values",
    "event_from_row",
    "event_to_row",
    "event_values",
    "provider_from_row",
    "provider_to_row",
    "queue_item_from_row",
    "queue_row_for_frame",
]

PROVIDER_FIELDS = frozenset(
    {
        "provider_name",
        "provider_type",
        "endpoint_url",
        "api_key",
        "timeout_seconds",
        "confidence_threshold",
        "max_retries",
        "is_active",
        "max_faces_per_frame",
        "enable_person_detection",
        "enable_face_detection",
        "enable_face_encoding",
        "test_status",
        "last_tested",
        "last_error",
        "options",
    }
)
"""Fields of :class:`ProviderConfig` a caller may change (not id or timestamps)."""


def check_changeable(kind: str, changes: Iterable[str], known: frozenset[str]) -> None:
    """ValueError naming every field of ``changes`` a caller may not change."""
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(
            f"cannot change {kind} field(s) {', '.join(unknown)}; "
            f"known fields: {', '.join(sorted(known))}"
        )


CAMERA_FIELDS = frozenset({"name", "url", "enabled", "fps", "provider", "options"})
"""Fields of :class:`Camera` that are configuration (not id, timestamps or last_error)."""


DETECTION_COLUMNS = (
    "id",
    "camera_id",
    "frame_id",
    "detection_type",
    "label",
    "confidence",
    "bbox_x",
    "bbox_y",
    "bbox_width",
    "bbox_height",
    "person_name",
    "person_id",
    "face_encoding",
    "is_processed",
    "processing_status",
    "frame_number",
    "frame_timestamp",
    "created_at",
    "updated_at",
    "track_id",
)
"""The columns :func:`detection_values` fills, in its order."""


def detection_values(d: Detection) -> tuple[Any, ...]:
    """A detection's row as a tuple in :data:`DETECTION_COLUMNS` order: the sink's
    COPY takes tuples, so the hot path builds no dict per row."""
    box = d.bbox
    return (
        d.id,
        d.camera_id,
        d.frame_id,
        d.detection_type,
        d.label,
        d.confidence,
        box.x,
        box.y,
        box.width,
        box.height,
        d.person_name,
        d.person_id,
        d.face_encoding,
        d.is_processed,
        d.processing_status,
        d.frame_number,
        d.frame_timestamp,
        d.created_at,
        d.updated_at,
        d.track_id,
    )


def detection_to_row(d: Detection) -> dict[str, Any]:
    return dict(zip(DETECTION_COLUMNS, detection_values(d), strict=True))


def detection_from_row(row: RowMapping) -> Detection:
    return Detection(
        id=row["id"],
        camera_id=row["camera_id"],
        frame_id=row["frame_id"],
        detection_type=row["detection_type"],
        label=row["label"],
        confidence=row["confidence"],
        bbox=BBox(row["bbox_x"], row["bbox_y"], row["bbox_width"], row["bbox_height"]),
        person_name=row["person_name"],
        person_id=row["person_id"],
        face_encoding=row["face_encoding"],
        is_processed=row["is_processed"],
        processing_status=row["processing_status"],
        frame_number=row["frame_number"],
        frame_timestamp=row["frame_timestamp"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        track_id=row["track_id"],
    )


EVENT_COLUMNS = (
    "id",
    "detection_id",
    "camera_id",
    "event_type",
    "severity",
    "message",
    "person_id",
    "person_name",
    "confidence_score",
    "action_taken",
    "source_system",
    "created_at",
    "updated_at",
)
"""The columns :func:`event_values` fills, in its order."""


def event_values(e: DetectionEvent) -> tuple[Any, ...]:
    """An event's row as a tuple in :data:`EVENT_COLUMNS` order (see :func:`detection_values`)."""
    return (
        e.id,
        e.detection_id,
        e.camera_id,
        str(e.event_type),
        str(e.severity),
        e.message,
        e.person_id,
        e.person_name,
        e.confidence_score,
        e.action_taken,
        e.source_system,
        e.created_at,
        e.updated_at,
    )


def event_to_row(e: DetectionEvent) -> dict[str, Any]:
    return dict(zip(EVENT_COLUMNS, event_values(e), strict=True))


def event_from_row(row: RowMapping) -> DetectionEvent:
    return DetectionEvent(
        id=row["id"],
        camera_id=row["camera_id"],
        event_type=row["event_type"],
        severity=row["severity"],
        message=row["message"],
        detection_id=row["detection_id"],
        person_id=row["person_id"],
        person_name=row["person_name"],
        confidence_score=row["confidence_score"],
        action_taken=row["action_taken"],
        source_system=row["source_system"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def queue_row_for_frame(frame: Frame, *, max_retries: int, now: datetime) -> dict[str, Any]:
    return {
        "id": frame.frame_id,
        "camera_id": frame.camera_id,
        "frame_data": frame.image,
        "priority": frame.priority,
        "status": str(QueueStatus.PENDING),
        "frame_number": frame.frame_number,
        "frame_timestamp": frame.timestamp,
        "retry_count": 0,
        "max_retries": max_retries,
        "detections_count": 0,
        "processing_time_ms": None,
        "error_message": None,
        "created_at": now,
        "updated_at": now,
    }


def queue_item_from_row(row: RowMapping) -> QueueItem:
    return QueueItem(
        id=row["id"],
        camera_id=row["camera_id"],
        frame_data=bytes(row["frame_data"]),
        priority=row["priority"],
        status=row["status"],
        frame_number=row["frame_number"],
        frame_timestamp=row["frame_timestamp"],
        retry_count=row["retry_count"],
        max_retries=row["max_retries"],
        detections_count=row["detections_count"],
        processing_time_ms=row["processing_time_ms"],
        error_message=row["error_message"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def provider_to_row(p: ProviderConfig, cipher: ApiKeyCipher) -> dict[str, Any]:
    return {
        "id": p.id,
        "provider_name": p.provider_name,
        "provider_type": p.provider_type,
        "endpoint_url": p.endpoint_url,
        "api_key_encrypted": cipher.encrypt(p.api_key),
        "timeout_seconds": p.timeout_seconds,
        "confidence_threshold": p.confidence_threshold,
        "max_retries": p.max_retries,
        "max_faces_per_frame": p.max_faces_per_frame,
        "enable_person_detection": p.enable_person_detection,
        "enable_face_detection": p.enable_face_detection,
        "enable_face_encoding": p.enable_face_encoding,
        "is_active": p.is_active,
        "test_status": str(p.test_status),
        "last_tested": p.last_tested,
        "last_error": p.last_error,
        "options": dict(p.options),
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def provider_from_row(row: RowMapping, cipher: ApiKeyCipher) -> ProviderConfig:
    return ProviderConfig(
        id=row["id"],
        provider_name=row["provider_name"],
        provider_type=row["provider_type"],
        endpoint_url=row["endpoint_url"],
        api_key=cipher.decrypt(row["api_key_encrypted"]),
        timeout_seconds=row["timeout_seconds"],
        confidence_threshold=row["confidence_threshold"],
        max_retries=row["max_retries"],
        is_active=row["is_active"],
        max_faces_per_frame=row["max_faces_per_frame"],
        enable_person_detection=row["enable_person_detection"],
        enable_face_detection=row["enable_face_detection"],
        enable_face_encoding=row["enable_face_encoding"],
        test_status=row["test_status"],
        last_tested=row["last_tested"],
        last_error=row["last_error"],
        options=dict(row["options"] or {}),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


_CAMERA_URL = {"what": "camera url", "fix": "the camera's url"}


def camera_to_row(c: Camera, cipher: ApiKeyCipher) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "url_encrypted": cipher.encrypt(c.url),
        "enabled": c.enabled,
        "fps": c.fps,
        "provider": c.provider,
        "options": dict(c.options),
        "last_error": c.last_error,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }


def camera_from_row(row: RowMapping, cipher: ApiKeyCipher) -> Camera:
    return Camera(
        id=row["id"],
        name=row["name"],
        url=cipher.decrypt(row["url_encrypted"], **_CAMERA_URL),
        enabled=row["enabled"],
        fps=row["fps"],
        provider=row["provider"],
        options=dict(row["options"] or {}),
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
