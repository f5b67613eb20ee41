"""Window statistics in SQL (detectflow/store/stats.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectflow.core.models import FrameResult
from detectflow.core.windows import TooLateCount, WindowStats
from detectflow.store import Database
from detectflow.store.stats import SLIDING, TUMBLING
from detectflow.store.tables import detection_window_stats
from tests.store.builders import detection, frame

T0 = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)


def window(
    start: datetime = T0,
    *,
    minutes: int = 1,
    camera_id: str = "cam-1",
    detection_type: str = "person",
    count: int = 1,
    confidence: float = 0.8,
    persons: int = 0,
    late: int = 0,
    revision: int = 1,
) -> WindowStats:
    return WindowStats(
        camera_id=camera_id,
        detection_type=detection_type,
        window_start=start,
        window_end=start + timedelta(minutes=minutes),
        count=count,
        confidence_sum=confidence * count,
        max_confidence=confidence,
        distinct_persons=persons,
        late_count=late,
        revision=revision,
        final=True,
    )


def stored(db: Database, **filters: object) -> list[tuple[str, WindowStats]]:
    rows, total = db.list_window_stats(limit=1000, **filters)  # type: ignore[arg-type]
    assert total == len(rows)
    return rows


def test_rows_round_trip_with_their_kind(db: Database) -> None:
    w = window(count=3, confidence=0.5, persons=2, late=1, revision=4)
    db.record_window_stats([(TUMBLING, w)])
    assert stored(db) == [(TUMBLING, w)]


def test_a_higher_revision_replaces_the_row_and_a_stale_one_does_not(db: Database) -> None:
    db.record_window_stats([(TUMBLING, window(count=2, revision=1))])
    db.record_window_stats([(TUMBLING, window(count=5, revision=2))])
    db.record_window_stats([(TUMBLING, window(count=1, revision=1))])  # stale, e.g. a replay

    ((_, row),) = stored(db)
    assert (row.count, row.revision) == (5, 2)


def test_writing_the_same_row_again_changes_nothing(db: Database) -> None:
    w = window(count=4, revision=2)
    for _ in range(3):
        db.record_window_stats([(TUMBLING, w)])
    assert stored(db) == [(TUMBLING, w)]


def test_the_newest_revision_in_one_batch_wins_whatever_its_position(db: Database) -> None:
    db.record_window_stats(
        [
            (TUMBLING, window(count=3, revision=3)),
            (TUMBLING, window(count=1, revision=1)),
            (TUMBLING, window(count=2, revision=2)),
        ]
    )
    ((_, row),) = stored(db)
    assert (row.count, row.revision) == (3, 3)


def test_tumbling_and_sliding_rows_of_the_same_start_never_collide(db: Database) -> None:
    db.record_window_stats(
        [
            (TUMBLING, window(count=2, minutes=5)),
            (SLIDING, window(count=7, minutes=5)),
            (SLIDING, window(count=9, minutes=1)),
        ]
    )
    counts = sorted((kind, w.window_end - w.window_start, w.count) for kind, w in stored(db))
    assert counts == [
        (SLIDING, timedelta(minutes=1), 9),
        (SLIDING, timedelta(minutes=5), 7),
        (TUMBLING, timedelta(minutes=5), 2),
    ]


def test_unknown_window_kind_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="unknown window kind 'hopping'"):
        db.record_window_stats([("hopping", window())])
    assert stored(db) == []


def test_too_late_keeps_each_cameras_latest_total(db: Database) -> None:
    def late(camera: str, total: int) -> TooLateCount:
        return TooLateCount(camera, total, T0, T0 + timedelta(hours=2))

    db.record_window_stats([(TUMBLING, late("cam-1", 1)), (TUMBLING, late("cam-1", 2))])
    db.record_window_stats([(TUMBLING, late("cam-1", 3)), (SLIDING, late("cam-2", 4))])

    assert db.window_too_late() == {TUMBLING: 3, SLIDING: 4}
    assert db.window_too_late("cam-1") == {TUMBLING: 3}
    assert db.window_too_late("cam-9") == {}


def test_listing_filters_orders_newest_first_and_pages(db: Database) -> None:
    rows = [
        (TUMBLING, window(T0 + timedelta(minutes=m), camera_id=cam, detection_type=kind))
        for m in range(3)
        for cam in ("cam-1", "cam-2")
        for kind in ("person", "vehicle")
    ]
    rows.append((SLIDING, window(T0, minutes=5)))
    db.record_window_stats(rows)

    page, total = db.list_window_stats(camera_id="cam-1", kind=TUMBLING, limit=2, offset=0)
    assert total == 6
    assert [(w.window_start, w.detection_type) for _, w in page] == [
        (T0 + timedelta(minutes=2), "person"),
        (T0 + timedelta(minutes=2), "vehicle"),
    ]
    since = stored(db, since=T0 + timedelta(minutes=1), detection_type="vehicle")
    assert len(since) == 4
    assert all(w.window_start >= T0 + timedelta(minutes=1) for _, w in since)
    assert [k for k, _ in stored(db, kind=SLIDING)] == [SLIDING]


def _record_detections(db: Database, *rows: tuple[str, datetime, str, float, str | None]) -> None:
    results = []
    for camera, when, kind, confidence, person in rows:
        f = frame(camera, timestamp=when)
        d = detection(f, detection_type=kind, confidence=confidence, person_id=person)
        results.append(FrameResult(f, (d,), (), None, 1, 5))
    db.record_results(results)


def test_statistics_sum_tumbling_windows_and_count_persons_from_detections(
    db: Database,
) -> None:
    now = datetime(2025, 3, 4, 10, 30, 15, tzinfo=UTC)
    db.record_window_stats(
        [
            (TUMBLING, window(now.replace(minute=29, second=0), count=4, confidence=0.9)),
            (TUMBLING, window(now.replace(minute=5, second=0), detection_type="vehicle", count=2)),
            (TUMBLING, window(now.replace(hour=8, minute=0, second=0), count=3, confidence=0.5)),
            (TUMBLING, window(now - timedelta(days=1), camera_id="cam-2", count=1)),
            # Sliding windows overlap: they must not add to the totals.
            (SLIDING, window(now.replace(minute=25, second=0), minutes=5, count=99)),
        ]
    )
    _record_detections(
        db,
        ("cam-1", now, "person", 0.9, "p-1"),
        ("cam-1", now, "person", 0.9, "p-2"),
        ("cam-1", now, "person", 0.9, "p-2"),
        ("cam-2", now, "person", 0.9, "p-3"),
        ("cam-2", now, "person", 0.9, "p-3"),
        ("cam-2", now, "person", 0.9, "p-3"),
    )

    everything = db.detection_statistics(now=now)
    assert everything.total_detections == 10
    assert everything.detections_today == 9
    assert everything.detections_this_hour == 6
    assert everything.average_confidence == pytest.approx(
        (4 * 0.9 + 2 * 0.8 + 3 * 0.5 + 1 * 0.8) / 10
    )
    assert everything.detection_types == {"person": 8, "vehicle": 2}
    assert everything.cameras_active == 1
    assert everything.most_detected_person == "p-3"
    assert everything.last_detection_timestamp is not None

    one = db.detection_statistics("cam-1", now=now)
    assert (one.total_detections, one.cameras_active, one.most_detected_person) == (9, 1, "p-2")
    assert db.detection_statistics("cam-2", now=now).cameras_active == 0


def test_statistics_of_an_empty_database_are_zeros(db: Database) -> None:
    s = db.detection_statistics(now=T0)
    assert dataclasses.astuple(s) == (0, 0, 0, 0.0, None, {}, 0, None)


@pytest.fixture(scope="module")
def scratch_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    from cryptography.fernet import Fernet

    path: Path = tmp_path_factory.mktemp("stats") / "scratch.db"
    database = Database(f"sqlite:///{path}", secret_key=Fernet.generate_key().decode())
    database.upgrade()
    yield database
    database.dispose()


revisions = st.lists(
    st.tuples(st.integers(1, 30), st.integers(1, 1000)), min_size=1, max_size=12
).map(lambda rows: list({rev: (rev, count) for rev, count in rows}.values()))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=revisions, batch=st.integers(1, 4), data=st.randoms(use_true_random=False))
def test_any_order_of_revisions_in_any_batches_stores_the_newest(
    scratch_db: Database, rows: list[tuple[int, int]], batch: int, data: object
) -> None:
    with scratch_db.engine.begin() as conn:
        conn.execute(detection_window_stats.delete())
    shuffled = list(rows)
    data.shuffle(shuffled)  # type: ignore[attr-defined]
    items = [(TUMBLING, window(count=count, revision=rev)) for rev, count in shuffled]
    for start in range(0, len(items), batch):
        scratch_db.record_window_stats(items[start : start + batch])

    ((_, row),) = stored(scratch_db)
    newest = max(rows)
    assert (row.revision, row.count) == newest
