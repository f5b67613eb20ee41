"""Window statistics in SQL: the dataflow's upserts and the server's reads.

Rows are absolute totals of one window at one revision, never increments,
so writing the same row twice (a replayed flow, a retried batch) changes
nothing. A row replaces the stored one only if its revision is higher
(``ON CONFLICT ... DO UPDATE ... WHERE excluded.revision > revision``, the
same statement on SQLite and PostgreSQL): a late, revised window wins, and
a stale or replayed row can never overwrite a newer total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, case, func, select
from sqlalchemy.dialects import postgresql, sqlite

from detectflow.core.windows import TooLateCount, WindowOutput, WindowStats
from detectflow.store.tables import detection_window_stats as windows
from detectflow.store.tables import detection_window_too_late as too_late_table
from detectflow.store.tables import detections

__all__ = [
    "ACTIVE_CAMERA_WINDOW",
    "SLIDING",
    "TUMBLING",
    "WINDOW_KINDS",
    "DetectionStatistics",
    "KindedOutput",
    "detection_statistics",
    "list_windows",
    "record_window_outputs",
    "too_late_totals",
]

TUMBLING = "tumbling"
SLIDING = "sliding"
WINDOW_KINDS = (TUMBLING, SLIDING)

ACTIVE_CAMERA_WINDOW = timedelta(minutes=5)
"""A camera is active if it has a window ending this recently."""

KindedOutput = tuple[str, WindowOutput]
"""A window row or too-late count and the kind of window (tumbling/sliding) it came from."""

_KEY = ["camera_id", "detection_type", "window_kind", "window_start", "window_end"]
_VALUES = [
    "detection_count",
    "confidence_sum",
    "max_confidence",
    "distinct_persons",
    "late_count",
    "revision",
    "is_final",
    "updated_at",
]


@dataclass(frozen=True, slots=True)
class DetectionStatistics:
    """The guide's ``GET /statistics`` numbers for one camera or all of them."""

    total_detections: int = 0
    detections_today: int = 0
    detections_this_hour: int = 0
    average_confidence: float = 0.0
    most_detected_person: str | None = None
    detection_types: dict[str, int] = field(default_factory=dict)
    cameras_active: int = 0
    last_detection_timestamp: datetime | None = None


def _insert(conn: Connection, table: Table) -> Any:
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def record_window_outputs(
    conn: Connection, items: Sequence[KindedOutput], *, now: datetime
) -> None:
    """Upsert window rows (revision guard) and too-late totals, in two executemany calls."""
    newest: dict[tuple[Any, ...], dict[str, Any]] = {}
    late: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, item in items:
        if kind not in WINDOW_KINDS:
            raise ValueError(f"unknown window kind {kind!r}, expected one of {WINDOW_KINDS}")
        if isinstance(item, TooLateCount):
            seen = late.get((item.camera_id, kind))
            if seen is None or item.too_late >= seen["too_late"]:
                late[(item.camera_id, kind)] = {
                    "camera_id": item.camera_id,
                    "window_kind": kind,
                    "too_late": item.too_late,
                    "last_event_time": item.event_time,
                    "watermark": item.watermark,
                    "updated_at": now,
                }
            continue
        key = (kind, *item.key)
        kept = newest.get(key)
        # One batch may hold several revisions of a window: only the newest is written.
        if kept is None or item.revision > kept["revision"]:
            newest[key] = _window_row(kind, item, now)
    if newest:
        ins = _insert(conn, windows)
        stmt = ins.on_conflict_do_update(
            index_elements=_KEY,
            set_={name: ins.excluded[name] for name in _VALUES},
            where=ins.excluded.revision > windows.c.revision,
        )
        conn.execute(stmt, list(newest.values()))
    if late:
        ins = _insert(conn, too_late_table)
        stmt = ins.on_conflict_do_update(
            index_elements=["camera_id", "window_kind"],
            set_={
                name: ins.excluded[name]
                for name in ("too_late", "last_event_time", "watermark", "updated_at")
            },
        )
        conn.execute(stmt, list(late.values()))


def _window_row(kind: str, w: WindowStats, now: datetime) -> dict[str, Any]:
    return {
        "camera_id": w.camera_id,
        "detection_type": w.detection_type,
        "window_kind": kind,
        "window_start": w.window_start,
        "window_end": w.window_end,
        "detection_count": w.count,
        "confidence_sum": w.confidence_sum,
        "max_confidence": w.max_confidence,
        "distinct_persons": w.distinct_persons,
        "late_count": w.late_count,
        "revision": w.revision,
        "is_final": w.final,
        "updated_at": now,
    }


def list_windows(
    conn: Connection,
    *,
    camera_id: str | None,
    detection_type: str | None,
    kind: str | None,
    since: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[tuple[str, WindowStats]], int]:
    """Newest windows first (by start), with their kind, and the total matching."""
    where: list[ColumnElement[bool]] = []
    if camera_id is not None:
        where.append(windows.c.camera_id == camera_id)
    if detection_type is not None:
        where.append(windows.c.detection_type == detection_type)
    if kind is not None:
        where.append(windows.c.window_kind == kind)
    if since is not None:
        where.append(windows.c.window_start >= since)
    total = conn.execute(select(func.count()).select_from(windows).where(*where)).scalar_one()
    query = (
        select(windows)
        .where(*where)
        .order_by(
            windows.c.window_start.desc(),
            windows.c.camera_id,
            windows.c.detection_type,
            windows.c.window_kind,
            windows.c.window_end,
        )
        .limit(limit)
        .offset(offset)
    )
    rows = conn.execute(query).mappings().all()
    return [(row["window_kind"], _window_from_row(row)) for row in rows], int(total)


def _window_from_row(row: Any) -> WindowStats:
    return WindowStats(
        camera_id=row["camera_id"],
        detection_type=row["detection_type"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        count=row["detection_count"],
        confidence_sum=row["confidence_sum"],
        max_confidence=row["max_confidence"],
        distinct_persons=row["distinct_persons"],
        late_count=row["late_count"],
        revision=row["revision"],
        final=bool(row["is_final"]),
    )


def too_late_totals(conn: Connection, *, camera_id: str | None) -> dict[str, int]:
    """Detections refused as too late, per window kind (summed over cameras)."""
    query = select(too_late_table.c.window_kind, func.sum(too_late_table.c.too_late)).group_by(
        too_late_table.c.window_kind
    )
    if camera_id is not None:
        query = query.where(too_late_table.c.camera_id == camera_id)
    return {kind: int(total) for kind, total in conn.execute(query).all()}


def detection_statistics(
    conn: Connection, *, camera_id: str | None, now: datetime
) -> DetectionStatistics:
    """The guide's statistics: totals from the tumbling windows, persons from detections.

    Every detection falls in exactly one tumbling window, so their sums are
    the totals; "today" and "this hour" count windows starting since
    midnight UTC and since the hour began. Windows keep only a count of
    distinct persons, so the most detected person is one GROUP BY over the
    indexed ``detections.person_id``.
    """
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    hour = now.replace(minute=0, second=0, microsecond=0)
    tumbling = windows.c.window_kind == TUMBLING
    per_camera = [windows.c.camera_id == camera_id] if camera_id is not None else []
    count = windows.c.detection_count
    per_type = conn.execute(
        select(
            windows.c.detection_type,
            func.sum(count),
            func.sum(windows.c.confidence_sum),
            func.sum(case((windows.c.window_start >= today, count), else_=0)),
            func.sum(case((windows.c.window_start >= hour, count), else_=0)),
        )
        .where(tumbling, *per_camera)
        .group_by(windows.c.detection_type)
    ).all()
    types = {kind: int(n) for kind, n, _, _, _ in per_type if n}
    total = sum(types.values())
    confidence = sum(float(c or 0.0) for _, _, c, _, _ in per_type)
    active = conn.execute(
        select(func.count(func.distinct(windows.c.camera_id))).where(
            tumbling, windows.c.window_end >= now - ACTIVE_CAMERA_WINDOW, *per_camera
        )
    ).scalar_one()
    return DetectionStatistics(
        total_detections=total,
        detections_today=sum(int(n or 0) for _, _, _, n, _ in per_type),
        detections_this_hour=sum(int(n or 0) for _, _, _, _, n in per_type),
        average_confidence=confidence / total if total else 0.0,
        most_detected_person=_most_detected_person(conn, camera_id),
        detection_types=dict(sorted(types.items())),
        cameras_active=int(active),
        last_detection_timestamp=_last_detection(conn, camera_id),
    )


def _most_detected_person(conn: Connection, camera_id: str | None) -> str | None:
    n = func.count().label("n")
    query = (
        select(detections.c.person_id, n)
        .where(detections.c.person_id.is_not(None))
        .group_by(detections.c.person_id)
        .order_by(n.desc(), detections.c.person_id)
        .limit(1)
    )
    if camera_id is not None:
        query = query.where(detections.c.camera_id == camera_id)
    row = conn.execute(query).first()
    return None if row is None else str(row[0])


def _last_detection(conn: Connection, camera_id: str | None) -> datetime | None:
    """When the newest detection was stored (``created_at`` is indexed; the window
    table knows only window bounds, not the time of a detection)."""
    query = select(func.max(detections.c.created_at))
    if camera_id is not None:
        query = query.where(detections.c.camera_id == camera_id)
    value: datetime | None = conn.execute(query).scalar_one()
    return value
