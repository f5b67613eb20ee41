"""Window statistics in SQL (detectflow/store/stats.py), on SQLite and PostgreSQL.

Windows are tallied by ``record_results`` in the transaction that stores the
detections, so every test here records detections and reads the windows back.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from detectflow.core.models import FrameResult
from detectflow.core.windows import SLIDING, TUMBLING, WindowStats
from detectflow.store import Database
from detectflow.store.tables import detection_window_stats as windows
from detectflow.store.tables import detections
from tests.store.builders import detection, frame, record_concurrently

T0 = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)


def stored(db: Database, **filters: object) -> list[tuple[str, WindowStats]]:
    rows, total = db.list_window_stats(limit=1000, **filters)  # type: ignore[arg-type]
    assert total == len(rows)
    return rows


def results(*rows: tuple[str, datetime, str, float, str | None]) -> list[FrameResult]:
    out = []
    for camera, when, kind, confidence, person in rows:
        f = frame(camera, timestamp=when)
        d = detection(f, detection_type=kind, confidence=confidence, person_id=person)
        out.append(FrameResult(f, (d,), (), None, 1, 5))
    return out


def tumbling(db: Database, **filters: object) -> dict[tuple[str, str, datetime], WindowStats]:
    return {
        (w.camera_id, w.detection_type, w.window_start): w
        for _, w in stored(db, kind=TUMBLING, **filters)
    }


def test_recorded_detections_are_tallied_into_their_windows(db: Database) -> None:
    db.record_results(
        results(
            ("cam-1", T0 + timedelta(seconds=5), "person", 0.9, None),
            ("cam-1", T0 + timedelta(seconds=50), "person", 0.5, None),
            ("cam-1", T0 + timedelta(seconds=70), "vehicle", 0.7, None),
        )
    )
    rows = tumbling(db)
    person = rows[("cam-1", "person", T0)]
    assert (person.count, person.max_confidence) == (2, 0.9)
    assert person.confidence_sum == pytest.approx(1.4)
    assert person.window_end == T0 + timedelta(minutes=1)
    assert rows[("cam-1", "vehicle", T0 + timedelta(minutes=1))].count == 1
    # each detection is also in five 5-minute sliding windows
    sliding = [w for _, w in stored(db, kind=SLIDING, detection_type="person")]
    assert len(sliding) == 5
    assert all(
        w.count == 2 and w.window_end - w.window_start == timedelta(minutes=5) for w in sliding
    )


def test_a_replayed_batch_adds_nothing(db: Database) -> None:
    batch = results(("cam-1", T0, "person", 0.9, None), ("cam-1", T0, "person", 0.8, None))
    db.record_results(batch)
    db.record_results(batch)  # a crash replay: the same frames, the same detection ids
    db.record_results([*batch, *results(("cam-1", T0, "person", 0.4, None))])  # partly new
    (row,) = tumbling(db).values()
    assert row.count == 3
    assert row.revision == 2  # two batches added to it


def test_batches_add_up_and_the_larger_maximum_wins(db: Database) -> None:
    db.record_results(results(("cam-1", T0, "person", 0.6, None)))
    db.record_results(results(("cam-1", T0 + timedelta(seconds=1), "person", 0.95, None)))
    db.record_results(results(("cam-1", T0 + timedelta(seconds=2), "person", 0.7, None)))
    (row,) = tumbling(db).values()
    assert (row.count, row.max_confidence) == (3, 0.95)
    assert row.mean_confidence == pytest.approx((0.6 + 0.95 + 0.7) / 3)


def test_a_detection_recorded_after_its_window_closed_still_counts_and_is_late(
    db: Database,
) -> None:
    old = T0 - timedelta(days=3)
    db.record_results(results(("cam-1", old, "person", 0.9, None)))
    (row,) = tumbling(db).values()
    assert (row.count, row.late_count, row.final) == (1, 1, True)


def test_an_open_window_is_not_final(db: Database) -> None:
    now = datetime.now(UTC)
    db.record_results(results(("cam-1", now, "person", 0.9, None)))
    (row,) = tumbling(db).values()
    assert (row.late_count, row.final) == (0, False)


def test_frames_without_detections_add_no_window(db: Database) -> None:
    f = frame("cam-1", timestamp=T0)
    db.record_results([FrameResult(f, (), (), "provider down", 3, 10)])
    assert stored(db) == []


def test_listing_filters_orders_newest_first_and_pages(db: Database) -> None:
    db.record_results(
        results(
            *[
                (cam, T0 + timedelta(minutes=m), kind, 0.8, None)
                for m in range(3)
                for cam in ("cam-1", "cam-2")
                for kind in ("person", "vehicle")
            ]
        )
    )
    page, total = db.list_window_stats(camera_id="cam-1", kind=TUMBLING, limit=2, offset=0)
    assert total == 6
    assert [(w.window_start, w.detection_type) for _, w in page] == [
        (T0 + timedelta(minutes=2), "person"),
        (T0 + timedelta(minutes=2), "vehicle"),
    ]
    since = stored(db, since=T0 + timedelta(minutes=1), detection_type="vehicle", kind=TUMBLING)
    assert len(since) == 4
    assert all(w.window_start >= T0 + timedelta(minutes=1) for _, w in since)


def test_concurrent_recorders_of_one_camera_count_exactly(db: Database) -> None:
    """Two processes (here threads, each with its own connection) adding to the
    same windows at once neither lose an update nor deadlock (rows are locked
    in key order)."""
    batches = [
        results(*[("cam-1", T0 + timedelta(seconds=s), "person", 0.5, None) for s in range(20)])
        for _ in range(8)
    ]
    record_concurrently(db, batches)
    (row,) = tumbling(db).values()
    assert row.count == 8 * 20


def test_statistics_sum_tumbling_windows_and_count_persons_from_detections(
    db: Database,
) -> None:
    now = datetime(2025, 3, 4, 10, 30, 15, tzinfo=UTC)
    db.record_results(
        results(
            *[("cam-1", now.replace(minute=29, second=0), "person", 0.9, None)] * 4,
            *[("cam-1", now.replace(minute=5, second=0), "vehicle", 0.8, None)] * 2,
            *[("cam-1", now.replace(hour=8, minute=0, second=0), "person", 0.5, None)] * 3,
            ("cam-2", now - timedelta(days=1), "person", 0.8, None),
            ("cam-1", now, "person", 0.9, "p-1"),
            ("cam-1", now, "person", 0.9, "p-2"),
            ("cam-1", now, "person", 0.9, "p-2"),
            ("cam-2", now - timedelta(days=1), "person", 0.9, "p-3"),
            ("cam-2", now - timedelta(days=1), "person", 0.9, "p-3"),
            ("cam-2", now - timedelta(days=1), "person", 0.9, "p-3"),
        )
    )

    everything = db.detection_statistics(now=now)
    assert everything.total_detections == 16
    assert everything.detections_today == 12
    assert everything.detections_this_hour == 9
    assert everything.average_confidence == pytest.approx(
        (4 * 0.9 + 2 * 0.8 + 3 * 0.5 + 0.8 + 6 * 0.9) / 16
    )
    assert everything.detection_types == {"person": 14, "vehicle": 2}
    assert everything.cameras_active == 1
    assert everything.most_detected_person == "p-3"
    assert everything.last_detection_timestamp is not None

    one = db.detection_statistics("cam-1", now=now)
    assert (one.total_detections, one.cameras_active, one.most_detected_person) == (12, 1, "p-2")
    assert db.detection_statistics("cam-2", now=now).cameras_active == 0


def test_statistics_of_an_empty_database_are_zeros(db: Database) -> None:
    s = db.detection_statistics(now=T0)
    assert dataclasses.astuple(s) == (0, 0, 0, 0.0, None, {}, 0, None)


def test_statistics_read_window_rollups_and_person_counts_never_detection_rows(
    db: Database,
) -> None:
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    db.record_results(
        results(
            *[("cam-1", midnight - timedelta(days=3, hours=-5), "person", 0.9, "p-1")] * 3,
            *[("cam-2", midnight - timedelta(days=2, hours=-7), "vehicle", 0.7, None)] * 2,
            ("cam-1", now - timedelta(seconds=1), "person", 0.8, "p-2"),
            ("cam-1", now - timedelta(seconds=1), "person", 0.8, "p-2"),
        )
    )
    before = db.detection_statistics(now=now)
    rolled = db.roll_up_windows()
    assert rolled, "the closed days were rolled up"
    # What statistics may read: day rows replace the closed days' minutes, and
    # no detection row is left to count.
    with db.engine.begin() as conn:
        conn.execute(detections.delete())
        conn.execute(
            windows.delete().where(
                windows.c.window_kind.in_((TUMBLING, SLIDING)), windows.c.window_start < midnight
            )
        )

    after = db.detection_statistics(now=now)

    assert after.total_detections == before.total_detections == 7
    assert after.detection_types == before.detection_types == {"person": 5, "vehicle": 2}
    assert after.most_detected_person == before.most_detected_person == "p-1"
    assert after.average_confidence == pytest.approx(before.average_confidence)
    assert (after.detections_today, after.detections_this_hour) == (
        before.detections_today,
        before.detections_this_hour,
    )


def test_most_detected_person_counts_a_replayed_batch_once(db: Database) -> None:
    batch = results(("cam-1", T0, "person", 0.9, "p-1"), ("cam-1", T0, "person", 0.9, "p-1"))
    other = results(
        *[("cam-1", T0 + timedelta(minutes=n), "person", 0.9, "p-2") for n in (1, 2, 3)]
    )
    db.record_results(batch + other[:1])
    db.record_results(batch)  # a replay: p-1 stays at 2
    db.record_results(other[1:])
    assert db.detection_statistics(now=T0).most_detected_person == "p-2"
