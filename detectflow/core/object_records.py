"""Object events as the event log, the bus and the API show them.

One place turns an :class:`~detectflow.core.object_events.ObjectEvent` into
its event-log row (a :class:`~detectflow.core.models.DetectionEvent` of type
``object_started`` / ``object_updated`` / ``object_ended``), its WebSocket
``object`` broadcast (``before`` / ``after``, Frigate's field names), and the
``tracked_objects`` row it leaves behind, so the three cannot disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from detectflow.core.models import DetectionEvent, Severity
from detectflow.core.object_events import ObjectEvent
from detectflow.core.serialize import isoformat

__all__ = ["OBJECT_MESSAGE", "object_event_record", "object_message", "object_row"]

OBJECT_MESSAGE = "object"
"""The WebSocket message type of an object event."""

_VERBS = {"object_started": "started", "object_updated": "updated", "object_ended": "ended"}


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def object_event_record(e: ObjectEvent, source_system: str = "detectflow") -> DetectionEvent:
    """The event-log row. Its time is the frame's (a replay writes the same row: the
    log's key holds its time)."""
    after = e.after
    when = datetime.fromtimestamp(e.time, UTC)
    verb = _VERBS.get(e.type, e.type)
    changed = f" ({', '.join(e.changes)})" if e.changes else ""
    return DetectionEvent(
        id=e.id,
        camera_id=e.camera_id,
        event_type=e.type,
        severity=Severity.INFO,
        message=f"{after.get('label') or 'object'} {e.object_id} {verb}{changed}",
        person_id=after.get("person_id"),
        person_name=after.get("sub_label"),
        confidence_score=after.get("top_score"),
        source_system=source_system,
        created_at=when,
        updated_at=when,
    )


def object_message(e: ObjectEvent, published_at: datetime | str | None = None) -> dict[str, Any]:
    """The WebSocket ``object`` broadcast: the event, and the object ``before`` and
    ``after`` it (on ``object_started`` the two are the same)."""
    message: dict[str, Any] = {
        "type": OBJECT_MESSAGE,
        "event_id": e.id,
        "event_type": e.type,
        "camera_id": e.camera_id,
        "object_id": e.object_id,
        "frame_id": e.frame_id,
        "changes": list(e.changes),
        "timestamp": isoformat(_time(e.time)),
        "before": e.before,
        "after": e.after,
    }
    if published_at is not None:
        message["published_at"] = (
            published_at if isinstance(published_at, str) else isoformat(published_at)
        )
    return message


def object_row(e: ObjectEvent, snapshot_path: str | None) -> dict[str, Any]:
    """The ``tracked_objects`` row the event leaves (its ``after``)."""
    a = e.after
    best = a.get("best")
    return {
        "id": e.object_id,
        "camera_id": e.camera_id,
        "label": a["label"],
        "detection_type": a["detection_type"],
        "start_time": _time(a["start_time"]),
        "end_time": _time(a.get("end_time")),
        "frames": int(a["frames"]),
        "top_score": float(a["top_score"]),
        "score": float(a["score"]),
        "box": list(a["box"]),
        "best_box": None if best is None else list(best["box"]),
        "best_frame_id": None if best is None else best["frame_id"],
        "best_score": None if best is None else float(best["score"]),
        "best_time": None if best is None else _time(best["time"]),
        "zones": list(a.get("entered_zones", ())),
        "current_zones": list(a.get("current_zones", ())),
        "path": [list(p) for p in a.get("path", ())],
        "sub_label": a.get("sub_label"),
        "person_id": a.get("person_id"),
        "person_name": a.get("sub_label"),
        "snapshot_path": snapshot_path if best is not None else None,
        "updated_at": _time(e.time),
    }
