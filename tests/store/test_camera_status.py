"""Per-camera status through the cache (in-process and Redis): what a reader's board
writes, the server reads; writes are rate-limited; an outage never fails the reader."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from detectflow.core.camera_status import CameraStatus
from detectflow.store.cache import Cache, CacheUnavailableError
from detectflow.store.camera_status import (
    STATUS_INTERVAL,
    STATUS_STALE,
    STATUS_TTL,
    CameraStatusBoard,
    camera_status_key,
    is_online,
    read_camera_statuses,
)
from detectflow.store.entries import dump_entry
from detectflow.store.live import LiveView
from detectflow.store.memory import MemoryBus, MemoryCache
from detectflow.store.outages import OutageCounts
from detectflow.store.redis_backend import RedisCache
from tests import services
from tests.clock import Clock

WALL = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    if request.param == "memory":
        yield MemoryCache()
        return
    prefix = f"detectflow-test-{uuid.uuid4().hex[:12]}:"
    with RedisCache(services.REDIS_URL, prefix=prefix) as shared:
        yield shared
    with redis.Redis.from_url(services.REDIS_URL) as admin:
        for key in admin.scan_iter(match=f"{prefix}*"):
            admin.delete(key)


def test_the_settings_are_two_second_writes_ten_second_staleness_a_minute_kept() -> None:
    assert (STATUS_INTERVAL, STATUS_STALE, STATUS_TTL) == (2.0, 10.0, 60.0)
    assert camera_status_key("cam-1") == "camera_status:cam-1"


def test_what_a_board_writes_the_server_reads(cache: Cache) -> None:
    clock = Clock()
    board = CameraStatusBoard(cache, clock=clock, wall_clock=lambda: WALL)
    board.connected("cam-1")
    clock.now += 2.0
    board.decoded("cam-1", WALL, count=50)
    board.sampled("cam-1", 10)
    board.skipped("cam-1", 40)
    board.submitted("cam-1", 2)
    board.completed("cam-1", 42.0)
    board.disconnected("cam-2", "connection refused by rtsp://u:secret@h/s")
    assert board.flush(force=True)
    found = read_camera_statuses(cache, ["cam-1", "cam-2", "cam-3"])
    assert set(found) == {"cam-1", "cam-2"}
    one = found["cam-1"]
    assert (one.online, one.decode_fps, one.sampled_fps, one.skipped_per_second) == (
        True,
        25.0,
        5.0,
        20.0,
    )
    assert (one.in_flight, one.inference_ms_p50, one.last_frame_time) == (1, 42.0, WALL)
    assert found["cam-1"] == board.snapshot("cam-1")
    two = found["cam-2"]
    assert two.online is False and two.last_error is not None and "secret" not in two.last_error


def test_writes_are_rate_limited_but_a_change_of_state_is_written_at_once() -> None:
    cache, clock = MemoryCache(), Clock()
    board = CameraStatusBoard(cache, clock=clock)
    assert board.flush() is False  # nothing to write yet
    board.connected("cam-1")
    assert board.writes == 1
    for _ in range(100):
        board.decoded("cam-1")
        board.flush()
    assert board.writes == 1
    clock.now += STATUS_INTERVAL
    board.flush()
    assert board.writes == 2
    board.disconnected("cam-1", "stalled")
    assert board.writes == 3


def test_forget_removes_the_report_at_once(cache: Cache) -> None:
    board = CameraStatusBoard(cache)
    board.connected("cam-1")
    board.forget("cam-1")
    assert read_camera_statuses(cache, ["cam-1"]) == {}
    assert board.snapshot("cam-1") is None


def test_a_stale_or_offline_report_is_not_online() -> None:
    status = CameraStatus("c", True, WALL)
    assert is_online(status, WALL + timedelta(seconds=STATUS_STALE))
    assert not is_online(status, WALL + timedelta(seconds=STATUS_STALE + 0.001))
    assert not is_online(CameraStatus("c", False, WALL), WALL)
    assert not is_online(None, WALL)


def test_entries_that_cannot_be_read_or_belong_to_another_camera_are_no_report() -> None:
    cache = MemoryCache()
    cache.set_many(
        {
            camera_status_key("a"): b"not json",
            camera_status_key("b"): dump_entry(CameraStatus("other", True, WALL).as_dict()),
        },
        60,
    )
    assert read_camera_statuses(cache, ["a", "b"]) == {}
    assert read_camera_statuses(cache, []) == {}


def test_an_unreachable_cache_never_fails_the_reader_but_cannot_be_read(free_port: int) -> None:
    outages = OutageCounts()
    with RedisCache(f"redis://127.0.0.1:{free_port}/0") as cache:  # nothing listens there
        board = CameraStatusBoard(cache, outages=outages)
        board.connected("cam-1")
        board.forget("cam-1")
        assert outages.failed_counts() == {"camera_status": 2}
        with pytest.raises(CacheUnavailableError):
            read_camera_statuses(cache, ["cam-1"])


def test_the_live_view_hands_out_a_board_on_its_cache() -> None:
    cache = MemoryCache()
    live = LiveView(cache, MemoryBus())
    live.camera_board().connected("cam-1")
    assert live.camera_statuses(["cam-1"])["cam-1"].online is True


def test_an_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval"):
        CameraStatusBoard(MemoryCache(), interval=0)
