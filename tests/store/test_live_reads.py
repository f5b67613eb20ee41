"""The server's read path of the live view (SharedLiveReads in detectflow/store/live.py).

In-process cache: every read is fresh. Shared cache (the real Redis, db 15,
a prefix per test): readers of a camera share one read in flight and its
answer for ``max_age``, the memo stays bounded, and a failed read is neither
shared as a success nor remembered.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import anyio
import pytest
import redis

from detectflow.store.live import LiveSnapshot, LiveView, SharedLiveReads
from detectflow.store.memory import MemoryBus, MemoryCache
from detectflow.store.redis_backend import RedisBus, RedisCache, escape_glob
from tests import services
from tests.clock import Clock
from tests.store.builders import frame, result

pytestmark = pytest.mark.anyio

URL = services.REDIS_URL


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def view() -> Iterator[LiveView]:
    """A LiveView on the real Redis under a prefix of its own, deleted afterwards."""
    prefix = f"detectflow-test-{uuid.uuid4().hex[:12]}:"
    with RedisCache(URL, prefix=prefix) as cache, RedisBus(URL, prefix=prefix) as bus:
        yield LiveView(cache, bus)
    with redis.Redis.from_url(URL) as admin:
        for key in admin.scan_iter(match=f"{escape_glob(prefix)}*"):
            admin.delete(key)


def _ids(snapshot: LiveSnapshot | None) -> list[str]:
    assert snapshot is not None
    return [d["id"] for d in snapshot.detections]


async def test_an_in_process_cache_is_read_fresh_every_time() -> None:
    view = LiveView(MemoryCache(), MemoryBus())
    assert await view.reads.live("cam-1") is None
    written = result(frame("cam-1"), detections=2)
    view.publish([written])
    assert _ids(await view.reads.live("cam-1")) == [d.id for d in written.detections]
    assert view.reads.reads == 2


@pytest.mark.redis
async def test_concurrent_readers_of_a_camera_share_one_redis_read(view: LiveView) -> None:
    written = result(frame("cam-1"), detections=3)
    view.publish([written])
    reads = SharedLiveReads(view, in_process=False, clock=Clock())
    got: list[list[str]] = []

    async def read() -> None:
        got.append(_ids(await reads.live("cam-1")))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(read)
    assert got == [[d.id for d in written.detections]] * 20
    assert reads.reads == 1


@pytest.mark.redis
async def test_an_answer_serves_for_max_age_then_is_read_again(view: LiveView) -> None:
    clock = Clock()
    reads = SharedLiveReads(view, in_process=False, max_age=0.15, clock=clock)
    assert await reads.live("cam-1") is None  # a miss is shared too
    first = result(frame("cam-1"), detections=1)
    view.publish([first])
    clock.now += 0.1
    assert await reads.live("cam-1") is None
    assert reads.reads == 1
    clock.now += 0.06
    assert _ids(await reads.live("cam-1")) == [first.detections[0].id]
    assert _ids(await reads.live()) == [first.detections[0].id]  # all cameras: its own entry
    assert reads.reads == 3
    reads.forget()
    await reads.live("cam-1")
    assert reads.reads == 4


@pytest.mark.redis
async def test_the_memo_keeps_at_most_max_entries_cameras(view: LiveView) -> None:
    reads = SharedLiveReads(view, in_process=False, max_entries=2, clock=Clock())
    for camera in ("a", "b", "c"):
        await reads.live(camera)
    await reads.live("c")
    await reads.live("b")
    assert reads.reads == 3
    await reads.live("a")  # the oldest, pushed out by "c"
    assert reads.reads == 4


@pytest.mark.redis
async def test_an_unreachable_cache_is_one_shared_miss_not_an_error(free_port: int) -> None:
    # A Redis that is not there: nothing listens on free_port.
    url = f"redis://127.0.0.1:{free_port}/0?socket_connect_timeout=0.5"
    with RedisCache(url) as cache, RedisBus(url) as bus:
        reads = SharedLiveReads(LiveView(cache, bus), in_process=False, clock=Clock())
        answers: list[object] = []

        async def read() -> None:
            answers.append(await reads.live("cam-1"))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(read)
    assert answers == [None, None, None]  # the caller falls back to the database
    assert reads.reads == 1  # and concurrent readers shared the one failed read


def test_bad_limits_are_refused() -> None:
    view = LiveView(MemoryCache(), MemoryBus())
    with pytest.raises(ValueError, match="max_age"):
        SharedLiveReads(view, in_process=False, max_age=-1)
    with pytest.raises(ValueError, match="max_entries"):
        SharedLiveReads(view, in_process=False, max_entries=0)
