"""The whole flow against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Sequence

import pytest
from sqlalchemy import update

from detectflow import (
    Frame,
    PermanentProviderError,
    RawDetection,
    Settings,
    TransientProviderError,
    hookimpl,
)
from detectflow.core.models import Detection, DetectionEvent, EventType, FrameResult
from detectflow.core.pipeline import failed_result
from detectflow.core.plugins import PluginRegistry
from detectflow.flows import DetectEngine, FlowError, FlowMetrics, FlowOptions, run_flow
from detectflow.flows.dataflow import DetectLogic
from detectflow.flows.engine import NO_PROVIDER
from detectflow.store import Database
from detectflow.store.tables import detection_processing_queue
from tests.flows.conftest import (
    CallLog,
    activate,
    activate_counted,
    enqueue,
    frames,
    garbage_frame,
    person,
    running_flow,
    wait_until,
)


def run(
    settings: Settings, db: Database, registry: PluginRegistry, **kwargs: object
) -> FlowMetrics:
    options = FlowOptions(until_empty=True, **kwargs)  # type: ignore[arg-type]
    return run_flow(settings, options, database=db, registry=registry)


def test_every_queued_frame_completes_with_its_detections(
    settings: Settings, db: Database, registry: PluginRegistry
) -> None:
    activate(db, person)
    queued = enqueue(db, 30)

    metrics = run(settings, db, registry)

    stats = db.queue_stats()
    assert stats["completed"] == 30
    assert stats["pending"] == stats["processing"] == stats["failed"] == 0
    detections, total = db.list_detections(limit=1000)
    assert total == 60
    assert {d.frame_id for d in detections} == {f.frame_id for f in queued}
    assert {d.detection_type for d in detections} == {"person", "vehicle"}
    _, events_total = db.list_events(event_type=EventType.DETECTION_COMPLETED, limit=1000)
    assert events_total == 30
    snap = metrics.snapshot()
    assert (snap.completed, snap.failed, snap.detections, snap.in_flight) == (30, 0, 60, 0)
    item = db.get_queue_item(queued[0].frame_id)
    assert item is not None
    assert item.detections_count == 2
    assert item.retry_count == 0


def test_transient_failure_is_retried_and_completes(
    settings: Settings, db: Database, registry: PluginRegistry
) -> None:
    log = CallLog()

    def flaky(frame: Frame) -> list[RawDetection]:
        if log.hit(frame) <= 2:
            raise TransientProviderError("503 busy", status=503)
        return person(frame)

    activate(db, flaky, max_retries=3)
    queued = enqueue(db, 6)

    metrics = run(settings, db, registry)

    assert db.queue_stats()["completed"] == 6
    assert all(log.calls[f.frame_id] == 3 for f in queued)
    item = db.get_queue_item(queued[0].frame_id)
    assert item is not None
    assert item.retry_count == 2
    assert metrics.snapshot().retries == 12


def test_frame_that_keeps_failing_ends_failed_with_event(
    settings: Settings, db: Database, registry: PluginRegistry
) -> None:
    log = CallLog()

    def down(frame: Frame) -> list[RawDetection]:
        log.hit(frame)
        raise TransientProviderError("connection refused")

    activate(db, down, max_retries=2)
    (frame,) = enqueue(db, 1)

    run(settings, db, registry)

    item = db.get_queue_item(frame.frame_id)
    assert item is not None
    assert item.status == "failed"
    assert item.error_message is not None
    assert "connection refused" in item.error_message
    assert item.retry_count == 2
    assert log.calls[frame.frame_id] == 3
    events, total = db.list_events(event_type=EventType.DETECTION_FAILED)
    assert total == 1
    assert "connection refused" in events[0].message


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda: [RawDetection("person", math.nan, (0, 0, 1, 1))], id="nan"),
        pytest.param(lambda: [RawDetection("person", 1.7, (0, 0, 1, 1))], id="confidence>1"),
        pytest.param(lambda: (_ for _ in ()).throw(PermanentProviderError("400")), id="4xx"),
    ],
)
def test_malformed_or_refused_answer_fails_at_once(
    settings: Settings, db: Database, registry: PluginRegistry, answer: object
) -> None:
    log = CallLog()

    def bad(frame: Frame) -> list[RawDetection]:
        log.hit(frame)
        return answer()  # type: ignore[operator,no-any-return]

    activate(db, bad, max_retries=3)
    (frame,) = enqueue(db, 1)

    run(settings, db, registry)

    item = db.get_queue_item(frame.frame_id)
    assert item is not None
    assert item.status == "failed"
    assert item.retry_count == 0
    assert log.calls[frame.frame_id] == 1


def test_invalid_frame_bytes_end_failed_with_reason(
    settings: Settings, db: Database, registry: PluginRegistry
) -> None:
    log = activate_counted(db)
    db.enqueue(garbage_frame("bad-bytes"))
    good = enqueue(db, 3)

    metrics = run(settings, db, registry)

    item = db.get_queue_item("bad-bytes")
    assert item is not None
    assert item.status == "failed"
    assert item.error_message == "invalid frame: frame is not a JPEG, PNG or WebP image"
    assert "bad-bytes" not in log.calls
    assert set(log.calls) == {f.frame_id for f in good}
    assert db.list_events(event_type=EventType.DETECTION_FAILED)[1] == 1
    assert metrics.snapshot().failed == 1


def test_replay_writes_no_duplicate_detection_rows(
    settings: Settings, db: Database, registry: PluginRegistry
) -> None:
    activate(db, person)
    enqueue(db, 8)
    run(settings, db, registry)
    first, total = db.list_detections(limit=100)
    assert total == 16
    events = db.list_events(limit=100)[1]  # frames' and their objects' events
    # A crash after writing but before acknowledging: the rows come back as pending.
    with db.engine.begin() as conn:
        conn.execute(update(detection_processing_queue).values(status="pending"))

    run(settings, db, registry)

    again, total_again = db.list_detections(limit=100)
    assert total_again == 16
    assert {d.id for d in again} == {d.id for d in first}
    assert db.list_events(limit=100)[1] == events
    assert db.list_events(event_type=EventType.DETECTION_COMPLETED)[1] == 8
    assert db.queue_stats()["completed"] == 8


def test_rows_a_crashed_run_held_are_finished_once_its_lease_expires(
    settings: Settings, db: Database, registry: PluginRegistry
) -> None:
    activate(db, person)
    enqueue(db, 5)
    assert len(db.claim(3, owner="crashed-run", lease_seconds=1)) == 3  # then it died

    run(settings, db, registry)  # --until-empty waits for them

    assert db.queue_stats()["completed"] == 5
    events, _ = db.list_events(event_type=EventType.QUEUE_LEASE_EXPIRED)
    assert sum(int(e.message.split()[0]) for e in events) == 3
    assert all("crashed-run" in e.message for e in events)


def test_no_active_provider_in_finite_mode_is_a_clear_error(
    settings: Settings, db: Database, registry: PluginRegistry
) -> None:
    enqueue(db, 2)

    with pytest.raises(FlowError, match=f"{NO_PROVIDER}: 2 frame"):
        run(settings, db, registry)

    assert db.queue_stats()["pending"] == 2


def test_unknown_source_scheme_is_a_clear_error(
    settings: Settings, db: Database, registry: PluginRegistry
) -> None:
    with pytest.raises(FlowError, match=r"no frame source for 'kafka' \(known: .*sql"):
        run(settings, db, registry, source_url="kafka://broker/frames")


def test_bad_source_option_is_a_clear_error(
    settings: Settings, db: Database, registry: PluginRegistry
) -> None:
    activate(db, person)
    with pytest.raises(FlowError, match="batch_size is not a number"):
        run(settings, db, registry, source_url="sql://?batch_size=many")


def test_notifier_plugins_hear_each_stored_detection_and_event(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry
) -> None:
    heard: list[Detection | DetectionEvent] = []

    class Alerts:
        @hookimpl
        def detectflow_on_detection(self, detection: Detection) -> None:
            # Stored before notified: the detection is already readable.
            assert sqlite_db.get_detection(detection.id) is not None
            heard.append(detection)

        @hookimpl
        def detectflow_on_event(self, event: DetectionEvent) -> None:
            heard.append(event)

    registry.register(Alerts(), "alerts", "tests", "0")
    activate(sqlite_db, person)
    enqueue(sqlite_db, 4)

    run(settings, sqlite_db, registry)

    assert sum(isinstance(h, Detection) for h in heard) == 8
    assert sum(isinstance(h, DetectionEvent) for h in heard) == 4


def test_continuous_flow_runs_in_a_thread_until_stopped(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry
) -> None:
    activate(sqlite_db, person)

    with running_flow(settings, sqlite_db, registry) as flow:
        time.sleep(0.1)  # the flow is idle-polling an empty queue
        enqueue(sqlite_db, 10)
        wait_until(lambda: flow.metrics.snapshot().completed >= 10)

    assert sqlite_db.queue_stats()["completed"] == 10


@pytest.mark.postgres
def test_two_workers_process_everything_exactly_once(
    settings: Settings, postgres_url: str, secret_key: str, registry: PluginRegistry
) -> None:
    db = Database(postgres_url, secret_key=secret_key)
    db.upgrade()
    try:
        log = activate_counted(db)
        queued = enqueue(db, 60, cameras=tuple(f"cam-{i}" for i in range(6)))

        run(settings, db, registry, workers=2)

        assert db.queue_stats()["completed"] == 60
        assert set(log.calls) == {f.frame_id for f in queued}
        assert set(log.calls.values()) == {1}
        assert db.list_detections(limit=1000)[1] == 120
    finally:
        db.dispose()


@pytest.mark.postgres
def test_two_flows_sharing_one_queue_claim_each_frame_once(
    settings: Settings, postgres_url: str, secret_key: str, registry: PluginRegistry
) -> None:
    db = Database(postgres_url, secret_key=secret_key)
    db.upgrade()
    try:
        log = CallLog()

        async def slow(frame: Frame) -> list[RawDetection]:
            log.hit(frame)
            return person(frame)

        activate(db, slow)
        queued = enqueue(db, 80)
        threads = [threading.Thread(target=run, args=(settings, db, registry)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

        assert db.queue_stats()["completed"] == 80
        assert set(log.calls) == {f.frame_id for f in queued}
        assert set(log.calls.values()) == {1}
    finally:
        db.dispose()


def test_a_finite_run_that_leaves_frames_unfinished_says_how_many_and_why(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry
) -> None:
    def deactivating(frame: Frame) -> list[RawDetection]:
        """The provider is switched off while the run goes on (an operator could)."""
        config = sqlite_db.active_provider()
        if config is not None:
            sqlite_db.update_provider(config.id, {"is_active": False})
        time.sleep(0.05)
        return person(frame)

    activate(sqlite_db, deactivating)
    enqueue(sqlite_db, 60)
    one_by_one = dataclasses.replace(settings, max_in_flight=1, batch_size=1)

    with pytest.raises(FlowError, match=r"left unfinished \(\d+ pending.*no active provider"):
        run(one_by_one, sqlite_db, registry)

    stats = sqlite_db.queue_stats()
    assert stats["pending"] > 0
    assert stats["processing"] == 0  # what it took, it finished
    # (frames already claimed when the provider went away fail with that reason)
    assert stats["completed"] + stats["failed"] + stats["pending"] == 60


def test_a_plugin_sink_receives_every_result(
    settings: Settings, db: Database, registry: PluginRegistry
) -> None:
    """The detectflow_sinks hook: a vendor's sink sees each frame's result once."""
    from bytewax.testing import TestingSink

    from detectflow import hookimpl

    received: list[FrameResult] = []

    class CollectingSinks:
        @hookimpl
        def detectflow_sinks(self) -> dict[str, object]:
            return {"collect": lambda settings: TestingSink(received)}

    plugin = CollectingSinks()
    assert registry.register(plugin, "collecting-sinks", "test", "1")
    try:
        activate(db, person)
        queued = enqueue(db, 12)
        run(settings, db, registry)
    finally:
        registry.pm.unregister(plugin)

    assert sorted(r.frame.frame_id for r in received) == sorted(f.frame_id for f in queued)
    assert all(r.ok and len(r.detections) == 2 for r in received)


def test_resumed_frames_go_through_the_sources_screen_first(
    settings: Settings, engine: DetectEngine
) -> None:
    """DetectLogic resubmits what the screen keeps and emits what it answers at once."""
    kept, dropped, answered = frames(3)
    screened: list[tuple[str, ...]] = []

    def screen(resumed: Sequence[Frame]) -> tuple[list[Frame], list[FrameResult]]:
        screened.append(tuple(f.frame_id for f in resumed))
        return [kept], [failed_result(answered, "answered by the screen")]

    logic = DetectLogic(engine, (kept, dropped, answered), screen)

    assert screened == [(kept.frame_id, dropped.frame_id, answered.frame_id)]
    assert logic.notify_at() is not None
    emitted: list[FrameResult] = []
    deadline = time.monotonic() + 5
    while len(emitted) < 2 and time.monotonic() < deadline:
        results, _ = logic.on_notify()
        emitted.extend(results)
        time.sleep(0.01)
    assert [r.frame.frame_id for r in emitted] == [answered.frame_id, kept.frame_id]
    assert emitted[1].ok
