"""Tracked objects in SQL: upserted from object events, listed, read, cleaned up.

The recorder stores a batch's object events here in the transaction that
stores its detections (:func:`record_object_events`): each object's row
becomes its latest ``after``, and each event a row of the event log. Events
are at-least-once (a replayed batch brings them again), so a row only moves
forward: an event seen with fewer frames than the row already has changes
nothing, and an end time, once set, stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, RowMapping, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from detectflow.core.models import FrameResult
from detectflow.core.object_records import object_event_record, object_row
from detectflow.store.dialects import insert_values
from detectflow.store.paging import Keyset, Page, page_rows
from detectflow.store.rows import EVENT_COLUMNS, event_values
from detectflow.store.snapshots import snapshot_key
from detectflow.store.tables import detection_event_logs as events
from detectflow.store.tables import tracked_objects as objects

__all__ = [
    "TrackedObject",
    "delete_ended_before",
    "get_object",
    "list_objects",
    "record_object_events",
]


@dataclass(frozen=True, slots=True)
class TrackedObject:
    """One object as stored; ``snapshot_path`` is its key in the snapshot store."""

    id: str
    camera_id: str
    label: str
    detection_type: str
    start_time: datetime
    end_time: datetime | None
    frames: int
    top_score: float
    score: float
    box: list[float]
    best_box: list[float] | None
    best_frame_id: str | None
    best_score: float | None
    best_time: datetime | None
    zones: list[str]
    current_zones: list[str]
    path: list[list[float]]
    sub_label: str | None
    person_id: str | None
    person_name: str | None
    snapshot_path: str | None
    updated_at: datetime

    @property
    def in_progress(self) -> bool:
        return self.end_time is None


def _from_row(row: RowMapping) -> TrackedObject:
    return TrackedObject(**{name: row[name] for name in TrackedObject.__slots__})


def record_object_events(conn: Connection, results: Sequence[FrameResult]) -> None:
    """Upsert the objects these results' events describe and log the events."""
    found = [e for r in results if r.objects is not None for e in r.objects.events]
    if not found:
        return
    insert_values(
        conn,
        events,
        EVENT_COLUMNS,
        [event_values(object_event_record(e)) for e in found],
    )
    latest: dict[str, dict[str, Any]] = {}
    for e in found:  # in frame order: the last event of an object is its newest state
        row = object_row(e, snapshot_key(e.object_id))
        kept = latest.get(e.object_id)
        if kept is None or row["frames"] >= kept["frames"]:
            if kept is not None and row["end_time"] is None:
                row["end_time"] = kept["end_time"]
            latest[e.object_id] = row
    postgres = conn.dialect.name == "postgresql"
    ins = (postgresql if postgres else sqlite).insert(objects)
    new = ins.excluded
    keep = {"id", "camera_id", "start_time"}
    changes: dict[str, Any] = {c.name: new[c.name] for c in objects.columns if c.name not in keep}
    changes["end_time"] = func.coalesce(new.end_time, objects.c.end_time)
    stmt = ins.on_conflict_do_update(
        index_elements=[objects.c.id],
        set_=changes,
        where=objects.c.frames <= new.frames,
    )
    conn.execute(stmt, [latest[k] for k in sorted(latest)])


def get_object(conn: Connection, object_id: str) -> TrackedObject | None:
    row = conn.execute(select(objects).where(objects.c.id == object_id)).mappings().first()
    return None if row is None else _from_row(row)


def list_objects(
    conn: Connection,
    *,
    camera_id: str | None = None,
    label: str | None = None,
    zone: str | None = None,
    in_progress: bool | None = None,
    after_time: datetime | None = None,
    before_time: datetime | None = None,
    min_score: float = 0.0,
    limit: int = 100,
    offset: int = 0,
    after: Keyset | None = None,
    exact_total: bool = True,
) -> Page[TrackedObject]:
    """Newest first by start time, keyset-paged like every list."""
    where: list[ColumnElement[bool]] = []
    if camera_id is not None:
        where.append(objects.c.camera_id == camera_id)
    if label is not None:
        where.append(objects.c.label == label)
    if in_progress is not None:
        ended = objects.c.end_time
        where.append(ended.is_(None) if in_progress else ended.isnot(None))
    if after_time is not None:
        where.append(objects.c.start_time >= after_time)
    if before_time is not None:
        where.append(objects.c.start_time < before_time)
    if min_score > 0.0:
        where.append(objects.c.top_score >= min_score)
    if zone is not None:
        where.append(_has_zone(conn, zone))
    return page_rows(
        conn,
        objects,
        where,
        _from_row,
        limit,
        offset,
        after,
        exact_total=exact_total,
        time_column="start_time",
    )


def _has_zone(conn: Connection, zone: str) -> ColumnElement[bool]:
    """Entered ``zone``: JSON containment on PostgreSQL, ``json_each`` on SQLite."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy import cast
        from sqlalchemy.dialects.postgresql import JSONB

        return cast(objects.c.zones, JSONB).contains([zone])
    entered = func.json_each(objects.c.zones).table_valued("value")
    return select(entered.c.value).where(entered.c.value == zone).exists()


def delete_ended_before(conn: Connection, cutoff: datetime) -> list[str]:
    """Delete objects that ended before ``cutoff``; their snapshot keys, for the store."""
    gone = conn.execute(
        delete(objects)
        .where(objects.c.end_time.isnot(None), objects.c.end_time < cutoff)
        .returning(objects.c.snapshot_path)
    ).scalars()
    return [key for key in gone if key]
