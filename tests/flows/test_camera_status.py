"""Camera status fed by a running flow: the video readers' counts and the engine's
frames reach the cache the server reads (in-process and Redis), and a camera no
longer read shows offline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from detectflow import Settings
from detectflow.core.camera_status import CameraStatus
from detectflow.core.cameras import Camera
from detectflow.core.models import FrameResult, utcnow
from detectflow.core.plugins import PluginRegistry
from detectflow.flows.camera_status import StatusFeed
from detectflow.store import Database
from detectflow.store.camera_status import CameraStatusBoard, is_online, read_camera_statuses
from detectflow.store.live import LiveView
from detectflow.store.memory import MemoryBus, MemoryCache
from detectflow.store.redis_backend import RedisBus, RedisCache
from detectflow.video.clips import write_clip
from detectflow.video.counts import ReaderCounts
from tests.clock import Clock
from tests.flows.conftest import activate_counted, enqueue, frames, running_flow, wait_until
from tests.redis_server import RedisServer


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("video") / "door.mp4", seconds=2.0)


@pytest.fixture(params=["in_process", "redis"])
def live(request: pytest.FixtureRequest) -> Iterator[LiveView]:
    if request.param == "in_process":
        yield LiveView(MemoryCache(), MemoryBus())
        return
    server: RedisServer = request.getfixturevalue("own_redis")
    with RedisCache(server.url) as cache:
        bus = RedisBus(server.url)
        try:
            yield LiveView(cache, bus)
        finally:
            bus.close()


def status(live: LiveView, camera_id: str) -> CameraStatus | None:
    return live.camera_statuses([camera_id]).get(camera_id)


def online(live: LiveView, camera_id: str) -> bool:
    return is_online(status(live, camera_id), utcnow())


@pytest.mark.slow
def test_a_video_camera_reports_its_counts_then_goes_offline_when_disabled(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry, clip: Path, live: LiveView
) -> None:
    activate_counted(sqlite_db)
    sqlite_db.create_camera(Camera(id="door", url=f"file://{clip}", fps=5, options={"loop": 1}))

    with running_flow(settings, sqlite_db, registry, "cameras", live):
        wait_until(lambda: online(live, "door"), timeout=15)

        def moving() -> bool:
            found = status(live, "door")
            return found is not None and found.detect_fps > 0 and found.sampled_fps > 0

        wait_until(moving, timeout=15)
        report = status(live, "door")
        assert report is not None and report.online and report.last_error is None
        # 25 fps decoded, 5 sampled, the rest skipped (rates over the first seconds)
        assert report.decode_fps > report.sampled_fps > 0
        assert report.skipped_per_second > 0
        assert report.inference_ms_p50 is not None and report.inference_ms_p95 is not None
        assert report.last_frame_time is not None

        sqlite_db.set_camera_enabled("door", False)
        wait_until(lambda: not online(live, "door"), timeout=15)  # table read every 5 s
        assert status(live, "door") is None  # forgotten: nobody reads it now


@pytest.mark.slow
def test_queued_frames_report_detect_rate_inference_and_frame_time(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry, live: LiveView
) -> None:
    activate_counted(sqlite_db)
    with running_flow(settings, sqlite_db, registry, "sql", live) as flow:
        sent = enqueue(sqlite_db, 12, cameras=("cam-1", "cam-2"))
        wait_until(lambda: flow.metrics.snapshot().completed == 12)
        wait_until(lambda: online(live, "cam-1") and online(live, "cam-2"))

        def done(camera_id: str) -> bool:
            found = status(live, camera_id)
            return found is not None and found.detect_fps > 0 and found.in_flight == 0

        wait_until(lambda: done("cam-1") and done("cam-2"))  # the next write, within 2 s
        report = status(live, "cam-1")
        assert report is not None and report.inference_ms_p50 is not None
        newest = max(f.timestamp for f in sent if f.camera_id == "cam-1")
        assert report.last_frame_time is not None
        assert abs((report.last_frame_time - newest).total_seconds()) < 0.01
    # The flow ended: its cameras are off the board.
    assert status(live, "cam-1") is None and status(live, "cam-2") is None


class FakeReaders:
    """What a video source answers (counts, reading), set by hand step by step."""

    def __init__(self) -> None:
        self.counts: dict[str, ReaderCounts] = {}

    def reading(self) -> set[str]:
        return set(self.counts)


def test_reader_counts_are_fed_as_differences_with_online_changes() -> None:
    cache, clock = MemoryCache(), Clock()
    board = CameraStatusBoard(cache, clock=clock)
    feed = StatusFeed(board, clock=clock)
    readers = FakeReaders()
    feed.watch(lambda: readers.counts, readers.reading)

    readers.counts["cam"] = ReaderCounts(decoded=50, sampled=10, skipped=40, online=True)
    feed.poll()
    clock.now += 5.0
    readers.counts["cam"] = ReaderCounts(decoded=100, sampled=20, skipped=80, online=True)
    feed.poll()
    report = board.snapshot("cam")
    assert report is not None and report.online
    assert (report.decode_fps, report.sampled_fps, report.skipped_per_second) == (20, 4, 16)

    readers.counts["cam"] = ReaderCounts(decoded=100, sampled=20, skipped=80, last_error="401")
    feed.poll()
    stored = read_camera_statuses(cache, ["cam"])["cam"]  # written at once, not rate-limited
    assert not stored.online and stored.last_error == "401"

    del readers.counts["cam"]  # disabled: no longer read
    feed.poll()
    assert board.snapshot("cam") is None and read_camera_statuses(cache, ["cam"]) == {}
    # A frame of it still in flight when it stopped does not bring its report back.
    late = frames(1, cameras=("cam",))[0]
    feed.completed([FrameResult(late, (), (), None, 1, 30)])
    assert board.snapshot("cam") is None

    readers.counts["cam"] = ReaderCounts(decoded=3, online=True)  # enabled again
    feed.poll()
    feed.completed([FrameResult(late, (), (), None, 1, 30)])
    report = board.snapshot("cam")
    assert report is not None and report.online and report.inference_ms_p50 == 30.0


def test_a_camera_without_a_reader_is_online_while_frames_arrive_and_offline_when_idle() -> None:
    cache, clock = MemoryCache(), Clock()
    board = CameraStatusBoard(cache, clock=clock)
    feed = StatusFeed(board, idle_seconds=10.0, clock=clock)
    frame = frames(1, cameras=("api-cam",))[0]

    feed.submitted([frame])
    feed.completed([FrameResult(frame, (), (), None, 1, 42)])
    report = board.snapshot("api-cam")
    assert report is not None and report.online and report.in_flight == 0
    assert report.inference_ms_p50 == 42.0 and report.last_frame_time == frame.timestamp

    clock.now += 9.0
    feed.poll()
    assert read_camera_statuses(cache, ["api-cam"])["api-cam"].online
    clock.now += 2.0
    feed.poll()
    stored = read_camera_statuses(cache, ["api-cam"])["api-cam"]
    assert not stored.online and stored.last_error == "no frame for 10 s"


def test_a_skipped_frame_completes_without_an_inference_time() -> None:
    board = CameraStatusBoard(MemoryCache())
    feed = StatusFeed(board)
    frame = frames(1, cameras=("cam",))[0]
    feed.submitted([frame])
    feed.completed([FrameResult(frame, (), (), "skipped", 0, 0)])
    report = board.snapshot("cam")
    assert report is not None and report.in_flight == 0 and report.inference_ms_p50 is None
    assert report.last_frame_time is not None
    assert report.last_frame_time <= datetime.now(UTC)
