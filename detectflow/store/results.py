"""Writing processed frames and reading detections and events back.

``record_results`` is the hot path of every result (the recorder's store
stage): four statements per batch, whatever its size (detections, their
window tallies, events, queue rows); see :mod:`~detectflow.store.dialects`
for how each travels.

Lists are newest first, ordered by (created_at, id) (:mod:`~detectflow.store.paging`),
and page either by offset (small ones; the server caps it) or by keyset: ``after`` is the
(created_at, id) of the last row already seen, so a page deep in a
billion-row table reads ``limit`` index entries, not everything before
them. Every filter the API offers has a composite index ending in
created_at (see :mod:`~detectflow.store.tables`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Connection,
    bindparam,
    select,
    text,
    update,
)

from detectflow.core.frames import TIME_OF_ARRIVAL
from detectflow.core.models import (
    Detection,
    DetectionEvent,
    EventType,
    FrameResult,
    QueueStatus,
)
from detectflow.core.windows import person_days, tally
from detectflow.store.dialects import insert_new, insert_values, update_values
from detectflow.store.objects import record_object_events
from detectflow.store.paging import EXACT_TOTAL_UP_TO, Keyset, Page, page_rows
from detectflow.store.queue import FINAL_STATUSES, LEASE_ATTR
from detectflow.store.rows import (
    DETECTION_COLUMNS,
    EVENT_COLUMNS,
    detection_from_row,
    detection_values,
    event_from_row,
    event_values,
)
from detectflow.store.stats import add_person_days, add_tallies
from detectflow.store.tables import detection_event_logs as events
from detectflow.store.tables import detection_processing_queue as queue
from detectflow.store.tables import detections
from detectflow.store.types import UTCDateTime

__all__ = [
    "EXACT_TOTAL_UP_TO",
    "Keyset",
    "Page",
    "get_detection",
    "list_detections",
    "list_events",
    "page_rows",
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
    """Store a batch in the caller's transaction: queue rows, detections with their
    window tallies (and track ids), events, tracked objects and their events.

    A frame claimed from the queue (it carries :data:`LEASE_ATTR`) is recorded
    only if this call is the one that finishes its row: a holder whose lease
    expired while it was slow, and the run that took the frame over, may
    both come back with a result, and a frame has exactly one final outcome
    and one final event. The guarded UPDATE takes the row's lock, so of two
    concurrent writers the second sees the row final and records nothing.
    A frame stamped on arrival (:data:`~detectflow.core.frames.TIME_OF_ARRIVAL`)
    whose events are already stored is a broker's redelivery: nothing of it
    is stored again.
    """
    claimed = _first_per_frame([r for r in results if LEASE_ATTR in r.frame.attributes])
    if claimed:
        finished = _finish_claimed(conn, claimed, now)
        chosen = {id(r) for r in claimed if r.frame.frame_id in finished}
        results = [r for r in results if LEASE_ATTR not in r.frame.attributes or id(r) in chosen]
    arrived = _first_per_frame([r for r in results if TIME_OF_ARRIVAL in r.frame.attributes])
    if arrived:
        seen = _recorded_before(conn, arrived)
        kept = {id(r) for r in arrived if r.frame.frame_id not in seen}
        results = [r for r in results if TIME_OF_ARRIVAL not in r.frame.attributes or id(r) in kept]
    found = [d for r in results for d in r.detections]
    new_ids = insert_new(conn, detections, DETECTION_COLUMNS, [detection_values(d) for d in found])
    # A replay (some rows existed): count each new row once.
    fresh = found if new_ids is None else list({d.id: d for d in found if d.id in new_ids}.values())
    add_tallies(conn, tally(fresh), now=now)
    add_person_days(conn, person_days(fresh))
    insert_values(conn, events, EVENT_COLUMNS, [event_values(e) for r in results for e in r.events])
    record_object_events(conn, results)
    # Frames from other sources have no queue row: their UPDATE matches nothing.
    # (Inline send-frame's failed frames were queued just before, to keep their bytes.)
    unclaimed = [_queue_row(r, now) for r in results if LEASE_ATTR not in r.frame.attributes]
    update_values(conn, queue, _QUEUE_COLUMNS, unclaimed, fallback=_finish_queue_row)


REDELIVERY_WINDOW = timedelta(days=1)
"""How far back a frame stamped on arrival is looked for: brokers redeliver
within a session's expiry, seconds to hours, never days."""


def _recorded_before(conn: Connection, arrived: Sequence[FrameResult]) -> set[str]:
    """Frames (ids) among ``arrived`` whose events are already stored under an earlier
    arrival time: a redelivery. One probe of the events' (id, created_at) key over the
    partitions of the window before the newest arrival."""
    by_event = {e.id: r.frame.frame_id for r in arrived for e in r.events}
    if not by_event:
        return set()
    times = [r.frame.timestamp for r in arrived]
    stored = conn.execute(
        select(events.c.id).where(
            events.c.id.in_(list(by_event)),
            events.c.created_at >= min(times) - REDELIVERY_WINDOW,
            events.c.created_at <= max(times),
        )
    ).scalars()
    return {by_event[event] for event in stored}


def _first_per_frame(results: list[FrameResult]) -> list[FrameResult]:
    """One result per frame, the first. Two copies of a frame can share a batch (two
    holders' results of a queue frame, or a resumed flow's copy beside a broker's
    redelivery), and neither the guarded UPDATE nor the lookup of stored events can
    tell them apart."""
    seen: set[str] = set()
    first = []
    for r in results:
        if r.frame.frame_id not in seen:
            seen.add(r.frame.frame_id)
            first.append(r)
    return first


def _queue_row(r: FrameResult, now: datetime) -> tuple[object, ...]:
    return (
        r.frame.frame_id,
        _status(r).value,
        len(r.detections),
        r.processing_time_ms,
        r.error,
        max(r.attempts - 1, 0),
        now,
    )


def _finish_claimed(conn: Connection, claimed: Sequence[FrameResult], now: datetime) -> set[str]:
    """Finish the queue rows of ``claimed`` that are not final yet; their ids."""
    rows = [dict(zip(_QUEUE_COLUMNS, _queue_row(r, now), strict=True)) for r in claimed]
    if conn.dialect.name == "postgresql":
        # Two writers finishing overlapping rows (a slow holder and the run that took
        # over) must lock them in one order, or each waits for the other's rows: the
        # UPDATE's join locks in whatever order its plan reads, so lock first, by id.
        conn.execute(_LOCK_IN_ORDER, {"ids": sorted({str(row["id"]) for row in rows})})
        finished = conn.execute(_FINISH_UNLESS_FINAL, {"rows": json.dumps(rows, default=str)})
        return {row[0] for row in finished}
    ids = [r["id"] for r in rows]
    already = set(
        conn.execute(
            select(queue.c.id).where(queue.c.id.in_(ids), queue.c.status.in_(FINAL_STATUSES))
        ).scalars()
    )
    todo = [row for row in rows if row["id"] not in already]
    if todo:  # SQLite holds one writer at a time: nothing can finish them meanwhile
        conn.execute(_finish_queue_row, [{f"b_{k}": v for k, v in row.items()} for row in todo])
    return {str(row["id"]) for row in todo}


_LOCK_IN_ORDER = text(
    "SELECT id FROM detection_processing_queue WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"
)

_FINISH_UNLESS_FINAL = text(
    "UPDATE detection_processing_queue AS q SET status = v.status, "
    "detections_count = v.detections_count, processing_time_ms = v.processing_time_ms, "
    "error_message = v.error_message, retry_count = v.retry_count, updated_at = v.updated_at "
    "FROM json_populate_recordset(NULL::detection_processing_queue, CAST(:rows AS json)) AS v "
    "WHERE q.id = v.id AND q.status NOT IN ('completed', 'failed', 'skipped') RETURNING q.id"
)
"""One statement for the batch; the row lock makes a concurrent second writer see it final."""


def record_events(conn: Connection, new_events: Sequence[DetectionEvent]) -> None:
    """Events that belong to no frame (a provider's circuit breaker opening or closing)."""
    insert_values(conn, events, EVENT_COLUMNS, [event_values(e) for e in new_events])


def get_detection(conn: Connection, detection_id: str) -> Detection | None:
    # No created_at to prune with: one probe of the key's index per day partition.
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
    after: Keyset | None = None,
    exact_total: bool = True,
) -> Page[Detection]:
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
    return page_rows(
        conn, detections, where, detection_from_row, limit, offset, after, exact_total=exact_total
    )


def list_events(
    conn: Connection,
    *,
    camera_id: str | None,
    event_type: str | None,
    severity: str | None,
    person_id: str | None,
    limit: int,
    offset: int,
    after: Keyset | None = None,
    exact_total: bool = True,
) -> Page[DetectionEvent]:
    where: list[ColumnElement[bool]] = []
    if camera_id is not None:
        where.append(events.c.camera_id == camera_id)
    if event_type is not None:
        where.append(events.c.event_type == event_type)
    if severity is not None:
        where.append(events.c.severity == severity)
    if person_id is not None:
        where.append(events.c.person_id == person_id)
    return page_rows(
        conn, events, where, event_from_row, limit, offset, after, exact_total=exact_total
    )
