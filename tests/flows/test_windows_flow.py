"""Window statistics in the dataflow (detectflow/flows/windows.py and its Bytewax wiring).

The step's logic is tested alone with a fake clock; the whole flow runs on
SQLite and PostgreSQL and its window rows are checked against a recount of
the detections it stored.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from detectflow import RawDetection, Settings
from detectflow.core.frames import make_frame
from detectflow.core.models import BBox, Detection, Frame
from detectflow.core.plugins import PluginRegistry
from detectflow.core.windows import TooLateCount, WindowAggregator, WindowSpec, WindowStats
from detectflow.flows import run_flow
from detectflow.flows.windows import (
    DEFAULT_WINDOW_SPECS,
    SLIDING_SPEC,
    TUMBLING_SPEC,
    CameraWindows,
    StatsWriter,
    WindowInput,
)
from detectflow.samples import sample_frame
from detectflow.store import Database
from detectflow.store.live import LiveView, stats_key
from detectflow.store.memory import MemoryBus, MemoryCache
from detectflow.store.stats import SLIDING, TUMBLING, KindedOutput
from detectflow.store.tables import detection_processing_queue, detection_window_stats, detections
from tests.flows.conftest import activate

T0 = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def det(
    i: int, *, camera: str = "cam-1", kind: str = "person", confidence: float = 0.8
) -> Detection:
    return Detection(
        id=f"d-{i}",
        camera_id=camera,
        frame_id=f"f-{i}",
        detection_type=kind,
        label=kind,
        confidence=confidence,
        bbox=BBox(0.1, 0.1, 0.2, 0.2),
    )


def at(seconds: float, *dets: Detection) -> WindowInput:
    return WindowInput(T0 + timedelta(seconds=seconds), dets)


def only(rows: list[KindedOutput], kind: str) -> list[WindowStats]:
    return [r for k, r in rows if k == kind and isinstance(r, WindowStats)]


# -- the step's logic ----------------------------------------------------------


def test_a_window_closes_once_event_time_passes_its_end_plus_lateness() -> None:
    windows = CameraWindows(clock=Clock())
    assert windows.add([at(10, det(1)), at(20, det(2))]) == []

    rows = windows.add([at(121)])  # a frame with no detections moves event time too

    (closed,) = only(rows, TUMBLING)
    assert (closed.window_start, closed.count, closed.final) == (T0, 2, True)
    # Of the five 5-minute windows holding T0 + 10 s, only [T0 - 4 min, T0 + 1 min) has closed.
    assert [w.window_start for w in only(rows, SLIDING)] == [T0 - 4 * MINUTE]


def test_flush_closes_every_open_window_of_every_kind() -> None:
    windows = CameraWindows(clock=Clock())
    windows.add([at(10, det(1)), at(70, det(2, kind="vehicle"))])

    rows = windows.flush()

    assert len(only(rows, TUMBLING)) == 2
    assert len(only(rows, SLIDING)) == 10  # each detection is in 5 sliding windows
    assert all(r.final for _, r in rows)


def test_late_detection_revises_its_closed_window() -> None:
    windows = CameraWindows(clock=Clock())
    windows.add([at(10, det(1)), at(200)])

    rows = windows.add([at(30, det(2))])  # 170 s late, window [0, 60) closed at 120 s

    (revised,) = only(rows, TUMBLING)
    assert (revised.count, revised.revision, revised.late_count) == (2, 2, 1)


def test_idle_camera_windows_close_on_wall_clock_ticks() -> None:
    clock = Clock()
    windows = CameraWindows(clock=clock, idle_tick=timedelta(seconds=5))
    windows.add([at(10, det(1))])
    tick = windows.next_tick()
    assert tick == T0 + timedelta(seconds=5)

    clock.now = T0 + timedelta(seconds=4)
    assert windows.tick() == []  # not idle long enough
    clock.now = T0 + timedelta(seconds=115)
    rows = windows.tick()  # event time moves to 10 s + 115 s: past [0, 60) + 60 s lateness

    (closed,) = only(rows, TUMBLING)
    assert closed.count == 1


def test_no_tick_is_scheduled_without_open_windows() -> None:
    windows = CameraWindows(clock=Clock())
    assert windows.next_tick() is None
    windows.add([at(10, det(1))])
    windows.flush()
    assert windows.next_tick() is None


def test_resumed_state_continues_revisions_instead_of_restarting() -> None:
    windows = CameraWindows(clock=Clock())
    windows.add([at(10, det(1)), at(200)])

    resumed = CameraWindows.resume(windows.snapshot(), clock=Clock())
    rows = resumed.add([at(20, det(2))])

    (revised,) = only(rows, TUMBLING)
    assert (revised.count, revised.revision) == (2, 2)


def test_state_made_for_other_window_specs_is_refused() -> None:
    state = CameraWindows(clock=Clock()).snapshot()
    other = {TUMBLING: WindowSpec.tumbling(timedelta(minutes=2)), SLIDING: WindowSpec.sliding()}
    with pytest.raises(ValueError, match="state was made for"):
        CameraWindows.resume(state, other)
    with pytest.raises(ValueError, match="kinds differ"):
        CameraWindows.resume(state, {TUMBLING: WindowSpec.tumbling()})
    with pytest.raises(ValueError, match="unknown version"):
        CameraWindows.resume({"version": 99})


def test_invalid_detection_is_counted_and_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    windows = CameraWindows(clock=Clock())
    windows.add([at(10, det(1, confidence=float("nan")), det(2))])

    assert windows.rejected == 1
    assert "d-1" in caplog.text
    (row,) = only(windows.flush(), TUMBLING)
    assert row.count == 1


def test_detection_past_retention_becomes_a_too_late_count() -> None:
    windows = CameraWindows(clock=Clock())
    windows.add([at(3 * 3600, det(1))])

    rows = windows.add([at(10, det(2))])

    assert [(k, r.too_late) for k, r in rows if isinstance(r, TooLateCount)] == [
        (TUMBLING, 1),
        (SLIDING, 1),
    ]


def per_detection(aggs: dict[str, WindowAggregator], items: list[WindowInput]) -> list[Any]:
    """The windows step fed one detection at a time: the reference for its frame-at-once path."""
    out: list[Any] = []
    for item in items:
        for d in item.detections:
            with contextlib.suppress(ValueError):  # refused by the first kind, counted by none
                for kind, agg in aggs.items():
                    out.extend((kind, row) for row in agg.add(d, item.timestamp))
        with contextlib.suppress(ValueError):
            out += [
                (kind, row) for kind, agg in aggs.items() for row in agg.advance(item.timestamp)
            ]
    return out


@settings(max_examples=150, deadline=None)
@given(
    frames=st.lists(
        st.tuples(
            st.integers(0, 1200),  # event time, seconds
            st.lists(
                st.tuples(
                    st.sampled_from(["person", "face", "car"]),
                    st.sampled_from([0.25, 0.5, 1.0, float("nan")]),
                    st.sampled_from(["cam-1", "cam-1", "cam-1", "cam-2"]),
                ),
                max_size=4,
            ),
            st.booleans(),  # a naive timestamp
        ),
        max_size=30,
    ),
    batch=st.integers(1, 5),
)
def test_frames_give_the_rows_of_one_detection_at_a_time(
    frames: list[tuple[int, list[tuple[str, float, str]], bool]], batch: int
) -> None:
    specs = {
        TUMBLING: WindowSpec.tumbling(MINUTE, retention=5 * MINUTE),
        SLIDING: WindowSpec.sliding(3 * MINUTE, MINUTE, allowed_lateness=timedelta(0)),
    }
    items = []
    for n, (seconds, values, naive) in enumerate(frames):
        when = T0 + timedelta(seconds=seconds)
        dets = tuple(
            Detection(
                id=f"d-{n}-{i}",
                camera_id=camera,
                frame_id=f"f-{n}",
                detection_type=kind,
                label=kind,
                confidence=confidence,
                bbox=BBox(0.1, 0.1, 0.2, 0.2),
                person_id=f"p-{i % 2}",
            )
            for i, (kind, confidence, camera) in enumerate(values)
        )
        items.append(WindowInput(when.replace(tzinfo=None) if naive else when, dets))
    windows = CameraWindows(specs, clock=Clock())
    reference = {kind: WindowAggregator(spec) for kind, spec in specs.items()}

    got = [
        row
        for start in range(0, len(items), batch)
        for row in windows.add(items[start : start + batch])
    ]

    assert got == per_detection(reference, items)
    assert windows.snapshot()["aggregators"] == {k: a.snapshot() for k, a in reference.items()}


def test_aggregators_of_different_cameras_are_refused() -> None:
    one, other = WindowAggregator(TUMBLING_SPEC), WindowAggregator(SLIDING_SPEC)
    one.add(det(1, camera="cam-1"), T0)
    other.add(det(2, camera="cam-2"), T0)
    with pytest.raises(ValueError, match="several cameras"):
        CameraWindows(DEFAULT_WINDOW_SPECS, aggregators={TUMBLING: one, SLIDING: other})


class FailingCache:
    def invalidate(self, camera_ids: object) -> None:
        raise ConnectionError("redis is down")


def test_stats_writer_batches_sql_and_survives_a_cache_failure(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    windows = CameraWindows(clock=Clock())
    windows.add([at(i * 60, det(i)) for i in range(7)])
    rows = windows.flush()

    StatsWriter(sqlite_db, cache=FailingCache(), max_batch=4).write(rows)

    assert sqlite_db.list_window_stats(limit=1000)[1] == len(rows)
    assert "invalidating cached statistics failed" in caplog.text


def test_statistics_count_open_windows_every_peek_interval(sqlite_db: Database) -> None:
    clock = Clock()
    windows = CameraWindows(clock=clock, peek_every=timedelta(seconds=10))
    writer = StatsWriter(sqlite_db)
    writer.write(windows.add([at(1, det(1)), at(2, det(2))]))
    assert sqlite_db.detection_statistics(now=T0 + MINUTE).total_detections == 0  # no peek yet

    clock.now = T0 + timedelta(seconds=10)
    rows = windows.add([at(3, det(3))])
    (tumbling,) = only(rows, TUMBLING)
    assert (tumbling.count, tumbling.final) == (3, False)
    writer.write(rows)
    assert sqlite_db.detection_statistics(now=T0 + MINUTE).total_detections == 3

    clock.now = T0 + timedelta(seconds=15)
    assert windows.add([at(4)]) == []  # a frame with no detections, and not due yet
    clock.now = T0 + timedelta(seconds=20)
    writer.write(windows.add([at(5, det(4))]))
    assert sqlite_db.detection_statistics(now=T0 + MINUTE).total_detections == 4

    writer.write(windows.flush())  # the final rows replace the provisional ones
    assert sqlite_db.detection_statistics(now=T0 + MINUTE).total_detections == 4
    stored = sqlite_db.list_window_stats(kind=TUMBLING, limit=10)[0]
    assert [(w.count, w.final) for _, w in stored] == [(4, True)]


def test_an_idle_cameras_changes_are_peeked_on_its_ticks() -> None:
    clock = Clock()
    windows = CameraWindows(
        clock=clock, idle_tick=timedelta(seconds=5), peek_every=timedelta(seconds=10)
    )
    windows.add([at(1, det(1))])
    clock.now = T0 + timedelta(seconds=11)
    (tumbling,) = only(windows.tick(), TUMBLING)  # 11 s of silence: window still open
    assert (tumbling.count, tumbling.final) == (1, False)


# -- the whole flow --------------------------------------------------------------


def answer(frame: Frame) -> list[RawDetection]:
    """Deterministic answers by frame number: some frames have no detections."""
    n = frame.frame_number or 0
    if n % 3 == 0:
        return [RawDetection("person", 0.9, (0.1, 0.1, 0.4, 0.6), person_id=f"p-{n % 2}")]
    if n % 3 == 1:
        return [
            RawDetection("person", 0.7, (0.1, 0.1, 0.4, 0.6)),
            RawDetection("car", 0.8, (0.5, 0.5, 0.9, 0.9)),
        ]
    return []


def enqueue_timed(db: Database, count: int, *, late_tail: int = 0) -> None:
    """Frames 15 s apart on three cameras. The last ``late_tail`` frames get a
    higher priority, so they are claimed first and the earlier ones arrive
    after their windows closed (late data)."""
    images = [sample_frame("cam", i, 32, 24) for i in range(4)]
    for i in range(count):
        frame = make_frame(
            f"cam-{i % 3}",
            images[i % 4],
            max_bytes=1 << 20,
            frame_number=i,
            timestamp=T0 + timedelta(seconds=15 * i),
            priority=10 if i >= count - late_tail else 1,
        )
        db.enqueue(frame)


def recount(db: Database) -> dict[tuple[str, str, str, datetime], tuple[int, float, float, int]]:
    """Every window's totals computed from the stored detections."""
    acc: dict[tuple[str, str, str, datetime], list[Any]] = defaultdict(lambda: [0, 0.0, 0.0, set()])
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(
                detections.c.camera_id,
                detections.c.detection_type,
                detections.c.confidence,
                detections.c.person_id,
                detections.c.frame_timestamp,
            )
        ).all()
    for camera, kind, confidence, person, when in rows:
        minute = when.replace(second=0, microsecond=0)
        starts = {TUMBLING: [minute], SLIDING: [minute - k * MINUTE for k in range(5)]}
        for window_kind, window_starts in starts.items():
            for start in window_starts:
                a = acc[(window_kind, camera, kind, start)]
                a[0] += 1
                a[1] += confidence
                a[2] = max(a[2], confidence)
                if person is not None:
                    a[3].add(person)
    return {k: (n, round(s, 6), peak, len(p)) for k, (n, s, peak, p) in acc.items()}


def stored_windows(
    db: Database,
) -> dict[tuple[str, str, str, datetime], tuple[int, float, float, int]]:
    with db.engine.connect() as conn:
        rows = conn.execute(select(detection_window_stats)).mappings().all()
    assert all(r["is_final"] for r in rows)
    return {
        (r["window_kind"], r["camera_id"], r["detection_type"], r["window_start"]): (
            r["detection_count"],
            round(r["confidence_sum"], 6),
            r["max_confidence"],
            r["distinct_persons"],
        )
        for r in rows
    }


def run(settings: Settings, db: Database, registry: PluginRegistry, **kwargs: Any) -> None:
    run_flow(settings, database=db, registry=registry, until_empty=True, **kwargs)


def test_flow_window_rows_match_a_recount_of_stored_detections(
    settings: Settings, db: Database, registry: PluginRegistry
) -> None:
    activate(db, answer)
    enqueue_timed(db, 48, late_tail=12)

    run(settings, db, registry, source_url="sql://?batch_size=4")

    expected = recount(db)
    assert db.list_detections(limit=1)[1] == 48 // 3 * 3  # 16 x 1 + 16 x 2 + 16 x 0
    assert stored_windows(db) == expected
    windows, _ = db.list_window_stats(kind=TUMBLING, limit=1000)
    assert any(w.late_count > 0 for _, w in windows), "the late tail must produce revisions"
    assert {w.detection_type for _, w in windows} == {"person", "vehicle"}


def test_replayed_flow_does_not_double_count(
    settings: Settings, db: Database, registry: PluginRegistry
) -> None:
    activate(db, answer)
    enqueue_timed(db, 30)
    run(settings, db, registry)
    first = stored_windows(db)
    # A crash before the queue rows were acknowledged: everything is processed again.
    with db.engine.begin() as conn:
        conn.execute(update(detection_processing_queue).values(status="pending"))

    run(settings, db, registry)

    assert stored_windows(db) == first == recount(db)


def test_flow_drops_cached_statistics_of_the_cameras_it_updates(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry
) -> None:
    cache = MemoryCache()
    live = LiveView(cache, MemoryBus())
    for camera in ("cam-0", "cam-7", None):
        live.stats.put(camera, {"total_detections": -1})
    activate(sqlite_db, answer)
    enqueue_timed(sqlite_db, 3)

    run(settings, sqlite_db, registry, live=live)

    assert cache.get(stats_key("cam-0")) is None
    assert cache.get(stats_key(None)) is None
    assert live.stats.get("cam-7") == {"total_detections": -1}  # not touched by this flow


def test_flow_without_windows_writes_no_window_rows(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry
) -> None:
    activate(sqlite_db, answer)
    enqueue_timed(sqlite_db, 6)

    run(settings, sqlite_db, registry, windows=False)

    assert sqlite_db.list_detections(limit=1)[1] > 0
    assert sqlite_db.list_window_stats()[1] == 0
