"""Window statistics in SQL: the recorder's tallies and the server's reads.

The recorder adds each batch's tallies (:func:`detectflow.core.windows.tally`)
in the transaction that stores its detections, counting only detections
stored for the first time, so the totals are exact and a replay adds
nothing. Rows are added to, never replaced: ``count = count + excluded.count``
(the same statement shape on SQLite and PostgreSQL). Rows are upserted in
key order, so two processes adding to the same windows lock them in the
same order and cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, func, select

from detectflow.core.windows import (
    DEFAULT_WINDOW_SPECS,
    WINDOW_KINDS,
    PersonDay,
    Tally,
    WindowKey,
    WindowStats,
)
from detectflow.store.dialects import add_to_rows
from detectflow.store.rollups import TUMBLING, counted_once
from detectflow.store.tables import detection_person_days as person_days
from detectflow.store.tables import detection_window_stats as windows
from detectflow.store.tables import detections

__all__ = [
    "ACTIVE_CAMERA_WINDOW",
    "WINDOW_KINDS",
    "DetectionStatistics",
    "add_person_days",
    "add_tallies",
    "detection_statistics",
    "list_windows",
]

ACTIVE_CAMERA_WINDOW = timedelta(minutes=5)
"""A camera is active if it has a window ending this recently."""

_ADD_TALLY = {
    "detection_count": "add",
    "confidence_sum": "add",
    "max_confidence": "max",
    "late_count": "add",
    "revision": "count",
    "updated_at": "given",
}
"""How a tally adds to its window's stored row."""


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


def add_tallies(conn: Connection, tallies: Mapping[WindowKey, Tally], *, now: datetime) -> None:
    """Add each tally to its window's row (created at zero), in key order."""
    if not tallies:
        return
    rows = []
    for key in sorted(tallies):
        t = tallies[key]
        late = DEFAULT_WINDOW_SPECS[key.kind].is_final(key.window_end, now)
        rows.append(
            {
                "camera_id": key.camera_id,
                "detection_type": key.detection_type,
                "window_kind": key.kind,
                "window_start": key.window_start,
                "window_end": key.window_end,
                "detection_count": t.count,
                "confidence_sum": t.confidence_sum,
                "max_confidence": t.max_confidence,
                "distinct_persons": 0,
                "late_count": t.count if late else 0,
                "revision": 1,
                "is_final": False,
                "updated_at": now,
            }
        )
    add_to_rows(conn, windows, rows, _ADD_TALLY)


def add_person_days(conn: Connection, counts: Mapping[PersonDay, int]) -> None:
    """Add each count to its person's day (created at zero), in key order."""
    if not counts:
        return
    rows = [
        {"camera_id": c, "person_id": p, "day": d, "detection_count": counts[c, p, d]}
        for c, p, d in sorted(counts)
    ]
    add_to_rows(conn, person_days, rows, {"detection_count": "add"})


def list_windows(
    conn: Connection,
    *,
    camera_id: str | None,
    detection_type: str | None,
    kind: str | None,
    since: datetime | None,
    limit: int,
    offset: int,
    now: datetime,
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
    return [(row["window_kind"], _window_from_row(row, now)) for row in rows], int(total)


def _window_from_row(row: Any, now: datetime) -> WindowStats:
    spec = DEFAULT_WINDOW_SPECS.get(row["window_kind"])
    return WindowStats(
        camera_id=row["camera_id"],
        detection_type=row["detection_type"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        count=row["detection_count"],
        confidence_sum=row["confidence_sum"],
        max_confidence=row["max_confidence"],
        late_count=row["late_count"],
        revision=row["revision"],
        final=spec is not None and spec.is_final(row["window_end"], now),
    )


def detection_statistics(
    conn: Connection, *, camera_id: str | None, now: datetime
) -> DetectionStatistics:
    """The guide's statistics, from the window rows and the person counts only.

    Totals read each detection once through the day and hour rollups
    (:func:`~detectflow.store.rollups.counted_once`): ~10^4 rows whatever
    the history. "Today" and "this hour" are the rows starting since
    midnight UTC and since the hour began.
    """
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    hour = now.replace(minute=0, second=0, microsecond=0)
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
        .where(counted_once(conn), *per_camera)
        .group_by(windows.c.detection_type)
    ).all()
    types = {kind: int(n) for kind, n, _, _, _ in per_type if n}
    total = sum(types.values())
    confidence = sum(float(c or 0.0) for _, _, c, _, _ in per_type)
    recent = now - ACTIVE_CAMERA_WINDOW
    active = conn.execute(
        select(func.count(func.distinct(windows.c.camera_id))).where(
            windows.c.window_kind == TUMBLING,
            # the start bound lets the (kind, start) index find the few recent rows
            windows.c.window_start >= recent - DEFAULT_WINDOW_SPECS[TUMBLING].length,
            windows.c.window_end >= recent,
            *per_camera,
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
    n = func.sum(person_days.c.detection_count).label("n")
    query = (
        select(person_days.c.person_id, n)
        .group_by(person_days.c.person_id)
        .order_by(n.desc(), person_days.c.person_id)
        .limit(1)
    )
    if camera_id is not None:
        query = query.where(person_days.c.camera_id == camera_id)
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
