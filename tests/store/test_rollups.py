"""Day rollups of the window statistics and the totals /summary reads from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from detectflow.core.models import utcnow
from detectflow.core.windows import Tally, WindowKey
from detectflow.store import Database
from detectflow.store.stats import add_tallies

Minute = tuple[WindowKey, Tally]


def _minute(camera: str, start: datetime, count: int, *, kind_type: str = "person") -> Minute:
    """A one-minute tumbling window's tally, as the recorder adds it."""
    start = start.replace(second=0, microsecond=0)
    key = WindowKey(camera, kind_type, "tumbling", start, start + timedelta(minutes=1))
    return key, Tally(count, 0.5 * count, 0.9)


def _add(db: Database, minutes: list[Minute]) -> None:
    with db.engine.begin() as conn:
        add_tallies(conn, dict(minutes), now=utcnow())


def _midnight(days_ago: int) -> datetime:
    today = utcnow().date() - timedelta(days=days_ago)
    return datetime(today.year, today.month, today.day, tzinfo=UTC)


def test_totals_add_closed_days_and_todays_minutes_once_each(db: Database) -> None:
    rows = [
        _minute("cam-1", _midnight(3) + timedelta(hours=5), 4),
        _minute("cam-2", _midnight(3) + timedelta(hours=6), 6, kind_type="vehicle"),
        _minute("cam-1", _midnight(1) + timedelta(hours=23, minutes=59), 7),
        _minute("cam-1", utcnow() - timedelta(minutes=10), 2),
        _minute("cam-2", utcnow() - timedelta(hours=3), 1),
    ]
    _add(db, rows)
    before = db.detection_totals()

    rolled = db.roll_up_windows()

    assert rolled[0] == (_midnight(3)).date() and rolled[-1] == _midnight(1).date()
    after = db.detection_totals()
    assert before.total == after.total == 20
    assert db.detection_totals(camera_id="cam-1").total == 13
    if utcnow() - timedelta(minutes=10) >= _midnight(0):  # not in the first 10 minutes of a day
        assert after.last_hour == 2
    listed, _ = db.list_window_stats(kind="tumbling", limit=100)
    assert len(listed) == 5  # the minutes stay; day rows are of their own kind


def test_late_detections_of_a_closed_day_reach_its_day_row_on_the_next_rollup(
    db: Database,
) -> None:
    start = _midnight(1) + timedelta(hours=2)
    _add(db, [_minute("cam-1", start, 3)])
    db.roll_up_windows()
    _add(db, [_minute("cam-1", start, 2)])  # late frames add to the same minute
    assert db.detection_totals().total == 3  # the day row is not summed again yet
    db.roll_up_windows()
    assert db.detection_totals().total == 5


def test_no_windows_no_totals(db: Database) -> None:
    assert db.roll_up_windows() == []
    totals = db.detection_totals()
    assert (totals.total, totals.last_hour) == (0, 0)


def test_closed_hours_after_the_last_day_are_rolled_up_and_counted_once(db: Database) -> None:
    now = utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    rows = [
        _minute("cam-1", _midnight(2) + timedelta(hours=1), 5),
        _minute("cam-1", hour - timedelta(minutes=30), 2),  # a closed hour
        _minute("cam-1", hour - timedelta(hours=3), 1),
        _minute("cam-1", now, 4),  # this hour: stays in minutes
    ]
    _add(db, rows)
    db.roll_up_windows()
    assert db.detection_totals().total == 12
    hours, _ = db.list_window_stats(kind="hour", limit=100)
    # Only hours after the last rolled-up day (yesterday) get hour rows.
    assert all(w.window_start >= _midnight(0) for _, w in hours)
    assert sum(w.count for _, w in hours) == sum(
        t.count for k, t in rows[1:3] if k.window_start >= _midnight(0)
    )
    db.roll_up_windows()  # again: the same rows, nothing counted twice
    assert db.detection_totals().total == 12
