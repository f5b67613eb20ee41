"""Small builders for frames, detections and results used across the store tests.

A detection's or event's created_at defaults to its frame's timestamp: the
writer's contract, since (id, created_at) is the key that makes a replay
conflict (detections and events are partitioned by created_at).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

from detectflow.core.ids import detection_id, event_id, new_id
from detectflow.core.models import (
    BBox,
    Detection,
    DetectionEvent,
    EventType,
    Frame,
    FrameResult,
    ProviderConfig,
    Severity,
    utcnow,
)
from detectflow.store import Database

__all__ = ["ago", "detection", "frame", "provider", "record_concurrently", "result"]


def frame(
    camera_id: str = "cam-1",
    *,
    priority: int = 5,
    timestamp: datetime | None = None,
    frame_id: str | None = None,
    image: bytes = b"\xff\xd8\xff fake jpeg",
) -> Frame:
    return Frame(
        camera_id=camera_id,
        image=image,
        frame_id=frame_id or new_id(),
        timestamp=timestamp or utcnow(),
        frame_number=7,
        priority=priority,
    )


def detection(
    f: Frame,
    index: int = 0,
    *,
    detection_type: str = "person",
    confidence: float = 0.9,
    person_id: str | None = None,
    created_at: datetime | None = None,
) -> Detection:
    created = created_at or f.timestamp
    return Detection(
        id=detection_id(f.frame_id, index),
        camera_id=f.camera_id,
        frame_id=f.frame_id,
        detection_type=detection_type,
        label=detection_type,
        confidence=confidence,
        bbox=BBox(0.1, 0.2, 0.3, 0.4),
        person_id=person_id,
        person_name="Ann" if person_id else None,
        frame_number=f.frame_number,
        frame_timestamp=f.timestamp,
        created_at=created,
        updated_at=created,
    )


def result(
    f: Frame,
    detections: int = 2,
    *,
    error: str | None = None,
    attempts: int = 1,
    created_at: datetime | None = None,
) -> FrameResult:
    dets = () if error else tuple(detection(f, i, created_at=created_at) for i in range(detections))
    event_type = EventType.DETECTION_FAILED if error else EventType.DETECTION_COMPLETED
    created = created_at or f.timestamp
    event = DetectionEvent(
        id=event_id(f.frame_id, event_type),
        camera_id=f.camera_id,
        event_type=event_type,
        severity=Severity.WARNING if error else Severity.INFO,
        message=error or f"Detected {len(dets)} objects",
        created_at=created,
        updated_at=created,
    )
    return FrameResult(
        frame=f,
        detections=dets,
        events=(event,),
        error=error,
        attempts=attempts,
        processing_time_ms=42,
    )


def provider(
    name: str = "acme", *, active: bool = False, api_key: str | None = "s3cret"
) -> ProviderConfig:
    return ProviderConfig(
        id=new_id(),
        provider_name=name,
        provider_type="http_api",
        endpoint_url="http://127.0.0.1:9/detect",
        api_key=api_key,
        is_active=active,
        options={"dialect": "deepstack"},
    )


def ago(seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=seconds)


def record_concurrently(db: Database, batches: Sequence[Sequence[FrameResult]]) -> None:
    """Record each batch from a thread of its own (each with its own connection),
    all at once, as several flow processes would; raise what any of them raised."""
    errors: list[BaseException] = []

    def record(batch: Sequence[FrameResult]) -> None:
        try:
            db.record_results(batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [], errors
