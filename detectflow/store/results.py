"""Writing processed frames and reading detections and events back.

``record_results`` is the hot path of every result (the recorder's store
stage): four statements per batch, whatever its size (detections, their
window tallies, events, queue rows); see :mod:`~detectflow.store.dialects`
for how each travels.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, bindparam, func, select, update

from detectflow.core.models import (
    Detection,
    DetectionEvent,
    EventType,
    FrameResult,
    QueueStatus,
)
from detectflow.core.windows import tally
from detectflow.store.dialects import insert_new, insert_values, update_values
from detectflow.store.rows import (
    DETECTION_COLUMNS,
    EVENT_COLUMNS,
    detection_from_row,
    detection_values,
    event_from_row,
    event_values,
)
from detectflow.store.stats import add_tallies
from detectflow.store.tables import detection_event_logs as events
from detectflow.store.tables import detection_processing_queue as queue
from detectflow.store.tables import detections
from detectflow.store.types import UTCDateTime

__all__ = [
    "get_detection",
    "list_detections",
    "list_events",
    "record_events",
    "record_results",
]

_finish_queue_row = (
    update(queue)
    .where(queue.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        detections_count=bindparam("b_detections_count"),
        processing_time_ms=bindparam("b_processing_time_ms"),
        error_message=bindparam("b_error_message"),
        retry_count=bindparam("b_retry_count"),
        updated_at=bindparam("b_updated_at", type_=UTCDateTime()),
    )
)


_QUEUE_COLUMNS = (
    "id",
    "status",
    "detections_count",
    "processing_time_ms",
    "error_message",
    "retry_count",
    "updated_at",
)
"""What finishing a frame sets on its queue row, in the order ``record_results`` fills it."""


def _status(result: FrameResult) -> QueueStatus:
    """A skipped frame (latest frame wins) carries a ``frame_skipped`` event."""
    if result.ok:
        return QueueStatus.COMPLETED
    if any(e.event_type == EventType.FRAME_SKIPPED for e in result.events):
        return QueueStatus.SKIPPED
    return QueueStatus.FAILED


def record_results(conn: Connection, results: Sequence[FrameResult], *, now: datetime) -> None:
    found = [d for r in results for d in r.detections]
    new_ids = insert_new(conn, detections, DETECTION_COLUMNS, [detection_values(d) for d in found])
    # A replay (some rows existed): count each new row once.
    fresh = found if new_ids is None else list({d.id: d for d in found if d.id in new_ids}.values())
    add_tallies(conn, tally(fresh), now=now)
    insert_values(conn, events, EVENT_COLUMNS, [event_values(e) for r in results for e in r.events])
    queue_rows = [
        (
            r.frame.frame_id,
            _status(r).value,
            len(r.detections),
            r.processing_time_ms,
            r.error,
            max(r.attempts - 1, 0),
            now,
        )
        for r in results
    ]
    # Frames from other sources have no queue row: their UPDATE matches nothing.
    update_values(conn, queue, _QUEUE_COLUMNS, queue_rows, fallback=_finish_queue_row)


def record_events(conn: Connection, new_events: Sequence[DetectionEvent]) -> None:
    """Events that belong to no frame (a provider's circuit breaker opening or closing)."""
    insert_values(conn, events, EVENT_COLUMNS, [event_values(e) for e in new_events])


def get_detection(conn: Connection, detection_id: str) -> Detection | None:
    row = conn.execute(select(detections).where(detections.c.id == detection_id)).mappings().first()
    return None if row is None else detection_from_row(row)


def list_detections(
    conn: Connection,
    *,
    camera_id: str | None,
    detection_type: str | None,
    min_confidence: float,
    person_id: str | None,
    since: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[Detection], int]:
    where: list[ColumnElement[bool]] = []
    if camera_id is not None:
        where.append(detections.c.camera_id == camera_id)
    if detection_type is not None:
        where.append(detections.c.detection_type == detection_type)
    if min_confidence > 0.0:
        where.append(detections.c.confidence >= min_confidence)
    if person_id is not None:
        where.append(detections.c.person_id == person_id)
    if since is not None:
        where.append(detections.c.created_at >= since)
    rows, total = _page(conn, detections, where, limit=limit, offset=offset)
    return [detection_from_row(row) for row in rows], total


def list_events(
    conn: Connection,
    *,
    camera_id: str | None,
    event_type: str | None,
    severity: str | None,
    person_id: str | None,
    limit: int,
    offset: int,
) -> tuple[list[DetectionEvent], int]:
    where: list[ColumnElement[bool]] = []
    if camera_id is not None:
        where.append(events.c.camera_id == camera_id)
    if event_type is not None:
        where.append(events.c.event_type == event_type)
    if severity is not None:
        where.append(events.c.severity == severity)
    if person_id is not None:
        where.append(events.c.person_id == person_id)
    rows, total = _page(conn, events, where, limit=limit, offset=offset)
    return [event_from_row(row) for row in rows], total


def _page(
    conn: Connection,
    table: Table,
    where: list[ColumnElement[bool]],
    *,
    limit: int,
    offset: int,
) -> tuple[list[Any], int]:
    """One page, newest first (id breaks ties so pages never overlap), and the total."""
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must be >= 0")
    total = conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
    query = (
        select(table)
        .where(*where)
        .order_by(table.c.created_at.desc(), table.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(conn.execute(query).mappings()), int(total)
