"""The one recorder: SQL (with window tallies), then the live view, then plugins."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from detectflow import FrameResult, FunctionAdapter, hookimpl
from detectflow.core.models import Detection, DetectionEvent
from detectflow.core.pipeline import failed_result, run_frame
from detectflow.core.plugins import get_registry
from detectflow.core.settings import Settings
from detectflow.flows.metrics import FlowMetrics
from detectflow.store import Database
from detectflow.store.live import LiveView
from detectflow.store.memory import MemoryBus, MemoryCache
from detectflow.store.recorder import Recorder
from tests.flows.conftest import frames, person


async def results(count: int) -> list[FrameResult]:
    adapter = FunctionAdapter(person)
    return [await run_frame(frame, adapter) for frame in frames(count)]


@pytest.fixture
def batch() -> list[FrameResult]:
    import asyncio

    return asyncio.run(results(4))


class ReadsBackWhenPublished:
    """A live view that checks, at publish time, that SQL already has the rows."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.seen: list[int] = []

    def publish(self, results: Sequence[FrameResult]) -> None:
        self.seen.append(
            sum(self.db.get_detection(d.id) is not None for r in results for d in r.detections)
        )


def test_sql_commits_before_live_publish(sqlite_db: Database, batch: list[FrameResult]) -> None:
    for result in batch:
        sqlite_db.enqueue(result.frame)
    live = ReadsBackWhenPublished(sqlite_db)

    Recorder(sqlite_db, live=live).record(batch)

    assert live.seen == [8]


def test_images_are_dropped_and_live_view_is_updated(
    sqlite_db: Database, batch: list[FrameResult]
) -> None:
    assert all(r.frame.image for r in batch)
    view = LiveView(MemoryCache(), MemoryBus())
    metrics = FlowMetrics()

    Recorder(sqlite_db, live=view, observer=metrics).record(batch)

    snapshot = view.live(batch[0].frame.camera_id)
    assert snapshot is not None
    assert {d["frame_id"] for d in snapshot.detections} <= {r.frame.frame_id for r in batch}
    assert snapshot.detections
    assert metrics.snapshot().completed == 4


class BrokenLive:
    def publish(self, results: Sequence[FrameResult]) -> None:
        # A Redis outage, which the in-process twin cannot produce for real.
        raise ConnectionError("redis down")


def test_live_failure_is_logged_not_raised_and_sql_is_kept(
    sqlite_db: Database, batch: list[FrameResult], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        Recorder(sqlite_db, live=BrokenLive()).record(batch)
    assert "live view failed" in caplog.text
    assert sqlite_db.list_detections()[1] == 8


def test_notifiers_called_per_detection_and_event(
    sqlite_db: Database, batch: list[FrameResult]
) -> None:
    registry = get_registry(Settings(disable_plugin_autoload=True))
    heard: list[object] = []

    class Alerts:
        @hookimpl
        def detectflow_on_detection(self, detection: Detection) -> None:
            heard.append(detection)

        @hookimpl
        def detectflow_on_event(self, event: DetectionEvent) -> None:
            heard.append(event)

    registry.register(Alerts(), "alerts", "tests", "0")
    failure = failed_result(frames(5)[4], "boom")

    Recorder(sqlite_db, registry=registry).record([*batch, failure])

    assert sum(isinstance(h, Detection) for h in heard) == 8
    assert sum(isinstance(h, DetectionEvent) for h in heard) == 5


def test_large_batches_are_written_in_chunks(sqlite_db: Database) -> None:
    written: list[int] = []

    class CountingStore:
        def record_results(self, results: Sequence[FrameResult]) -> None:
            written.append(len(results))
            sqlite_db.record_results(results)

    failures = [failed_result(f, "x") for f in frames(7)]
    Recorder(CountingStore(), max_batch=3).record(failures)

    assert written == [3, 3, 1]
    assert sqlite_db.list_events()[1] == 7
