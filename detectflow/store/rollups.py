"""Day and hour totals of the window statistics, so a month of totals is ~10^4 rows.

The dataflow writes one tumbling window row per camera, detection type and
window (minutes). Summing those is exact but grows with the retention: 100
cameras x 3 types x 1,440 minutes x 30 days is 13 million rows, and even
one day is 432,000. So closed periods are summed once into coarser rows of
the same table: one ``day`` row per camera and type for each closed UTC
day, one ``hour`` row for each closed hour since the last rolled-up day
(``window_kind`` tells them apart; they are partitioned and dropped with
the minutes). A total reads day rows, then hour rows from the day
frontier, then minute rows from the hour frontier: each detection once,
and at most ~10^4 rows whatever the history.

A period is rolled up again on each of the following runs for
:data:`RECHECK` periods, so tumbling rows revised a little late (late
frames, a replay) reach its rollup. Rows revised later than that are not
summed in until the period is rolled up again (:func:`roll_up` with ``since``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    true,
)

from detectflow.store.tables import detection_window_stats as windows

__all__ = [
    "DAY",
    "HOUR",
    "RECHECK",
    "TUMBLING",
    "DetectionTotals",
    "counted_once",
    "detection_totals",
    "roll_up",
]

DAY = "day"
HOUR = "hour"
TUMBLING = "tumbling"
RECHECK = 2
"""Closed periods summed again on each run (late revisions reach their rollup)."""

_LENGTH = {DAY: timedelta(days=1), HOUR: timedelta(hours=1)}


@dataclass(frozen=True, slots=True)
class DetectionTotals:
    """Detections in the window statistics: all kept ones, and those of the last hour."""

    total: int
    last_hour: int


def _floor(moment: datetime, kind: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if kind == DAY else moment


def roll_up(conn: Connection, *, now: datetime, since: date | None = None) -> list[date]:
    """(Re)write the day rows of closed days, then the hour rows of closed hours after
    the last day; returns the days written. ``since`` rolls days up again from that day."""
    days = _roll_up_kind(
        conn, DAY, now, None if since is None else datetime(*since.timetuple()[:3], tzinfo=UTC)
    )
    _roll_up_kind(conn, HOUR, now, None)
    return [d.date() for d in days]


def _roll_up_kind(
    conn: Connection, kind: str, now: datetime, since: datetime | None
) -> list[datetime]:
    length = _LENGTH[kind]
    start = _default_since(conn, kind) if since is None else since
    if start is None:
        return []
    if kind == HOUR:
        day_frontier = _frontier(conn, DAY)
        if day_frontier is not None:
            start = max(start, day_frontier)
    done = []
    period = _floor(start, kind)
    while period + length <= now:
        _roll_up(conn, kind, period, period + length, now)
        done.append(period)
        period += length
    return done


def _frontier(conn: Connection, kind: str) -> datetime | None:
    """Where the rows of ``kind`` end: the start of the period after the last one."""
    last: datetime | None = conn.execute(
        select(func.max(windows.c.window_start)).where(windows.c.window_kind == kind)
    ).scalar()
    return None if last is None else last + _LENGTH[kind]


def _default_since(conn: Connection, kind: str) -> datetime | None:
    frontier = _frontier(conn, kind)
    if frontier is not None:
        return frontier - RECHECK * _LENGTH[kind]
    first: datetime | None = conn.execute(
        select(func.min(windows.c.window_start)).where(windows.c.window_kind == TUMBLING)
    ).scalar()
    return first


def _roll_up(conn: Connection, kind: str, start: datetime, end: datetime, now: datetime) -> None:
    conn.execute(
        delete(windows).where(
            windows.c.window_kind == kind,
            windows.c.window_start >= start,
            windows.c.window_start < end,
        )
    )
    source = (
        select(
            windows.c.camera_id,
            windows.c.detection_type,
            literal(kind),
            literal(start, windows.c.window_start.type),
            literal(end, windows.c.window_end.type),
            func.sum(windows.c.detection_count),
            func.sum(windows.c.confidence_sum),
            func.max(windows.c.max_confidence),
            # Distinct persons do not add up across windows: the busiest window's is a floor.
            func.max(windows.c.distinct_persons),
            func.sum(windows.c.late_count),
            literal(1),
            true(),
            literal(now, windows.c.updated_at.type),
        )
        .where(
            windows.c.window_kind == TUMBLING,
            windows.c.window_start >= start,
            windows.c.window_start < end,
        )
        .group_by(windows.c.camera_id, windows.c.detection_type)
    )
    columns = [
        "camera_id",
        "detection_type",
        "window_kind",
        "window_start",
        "window_end",
        "detection_count",
        "confidence_sum",
        "max_confidence",
        "distinct_persons",
        "late_count",
        "revision",
        "is_final",
        "updated_at",
    ]
    conn.execute(insert(windows).from_select(columns, source))


def counted_once(conn: Connection) -> ColumnElement[bool]:
    """The window rows that hold each detection exactly once, and few rows: day rows,
    hour rows from the day frontier, minute rows from the hour frontier.

    A row of any layer starts on a day or hour boundary, so "since midnight" and
    "since the hour began" are plain ``window_start`` bounds on these rows.
    """
    days, hours = _frontier(conn, DAY), _frontier(conn, HOUR)
    layers: list[ColumnElement[bool]] = []
    minutes_from = days
    if days is not None:
        layers.append(windows.c.window_kind == DAY)
    if hours is not None and (days is None or hours > days):
        after_days = [] if days is None else [windows.c.window_start >= days]
        layers.append(and_(windows.c.window_kind == HOUR, *after_days))
        minutes_from = hours
    after = [] if minutes_from is None else [windows.c.window_start >= minutes_from]
    layers.append(and_(windows.c.window_kind == TUMBLING, *after))
    return or_(*layers)


def detection_totals(
    conn: Connection, *, now: datetime, camera_id: str | None = None
) -> DetectionTotals:
    """Every detection the window statistics hold, and those of the last hour."""
    per_camera = [windows.c.camera_id == camera_id] if camera_id is not None else []
    count = func.coalesce(func.sum(windows.c.detection_count), 0)

    def total(*where: ColumnElement[bool]) -> int:
        return int(conn.execute(select(count).where(*where, *per_camera)).scalar_one())

    hour = total(windows.c.window_kind == TUMBLING, windows.c.window_start >= now - _LENGTH[HOUR])
    return DetectionTotals(total=total(counted_once(conn)), last_hour=hour)
