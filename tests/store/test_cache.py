"""One suite for every Cache/Bus implementation: the in-process twins and Redis.

The tests use only the protocols, real time, and TTLs Redis can express.
Redis-only behaviour (prefixes, reconnects, several processes) is in
``tests/store/test_redis.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import anyio
import pytest
import redis

from detectflow.store.cache import Bus, Cache, Subscription
from detectflow.store.memory import MemoryBus, MemoryCache
from detectflow.store.redis_backend import RedisBus, RedisCache
from tests import services

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Backend:
    cache: Cache
    bus: Bus


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        yield Backend(MemoryCache(), MemoryBus())
        return
    # Redis db 15, a prefix of this test's own; only its keys are deleted afterwards.
    prefix = f"detectflow-test-{uuid.uuid4().hex[:12]}:"
    cache = RedisCache(services.REDIS_URL, prefix=prefix)
    bus = RedisBus(services.REDIS_URL, prefix=prefix)
    try:
        yield Backend(cache, bus)
    finally:
        bus.close()
        cache.close()
        with redis.Redis.from_url(services.REDIS_URL) as admin:
            for key in admin.scan_iter(match=f"{prefix}*"):
                admin.delete(key)


async def _next(sub: Subscription, timeout: float = 2.0) -> tuple[str, bytes]:
    iterator: AsyncIterator[tuple[str, bytes]] = aiter(sub)
    with anyio.fail_after(timeout):
        return await anext(iterator)


async def _nothing_within(sub: Subscription, seconds: float = 0.1) -> bool:
    with anyio.move_on_after(seconds):
        await _next(sub, timeout=seconds * 2)
        return False
    return True


# -- cache -------------------------------------------------------------------


async def test_get_of_a_missing_key_is_none(backend: Backend) -> None:
    assert backend.cache.get("nope") is None
    assert backend.cache.get_many(["a", "b"]) == [None, None]


async def test_set_many_then_get_many_in_key_order(backend: Backend) -> None:
    backend.cache.set_many({"k1": b"one", "k2": b"two"}, ttl_seconds=30)
    assert backend.cache.get("k1") == b"one"
    assert backend.cache.get_many(["k2", "missing", "k1"]) == [b"two", None, b"one"]
    assert backend.cache.get_many([]) == []


async def test_keys_vanish_after_their_ttl(backend: Backend) -> None:
    backend.cache.set_many({"short": b"x"}, ttl_seconds=0.1)
    backend.cache.set_many({"long": b"y"}, ttl_seconds=30)
    assert backend.cache.get("short") == b"x"
    time.sleep(0.25)
    assert backend.cache.get_many(["short", "long"]) == [None, b"y"]


async def test_setting_again_replaces_value_and_ttl(backend: Backend) -> None:
    backend.cache.set_many({"k": b"old"}, ttl_seconds=0.1)
    backend.cache.set_many({"k": b"new"}, ttl_seconds=30)
    time.sleep(0.25)
    assert backend.cache.get("k") == b"new"


async def test_delete_removes_a_key(backend: Backend) -> None:
    backend.cache.set_many({"k": b"v"}, ttl_seconds=30)
    backend.cache.delete("k")
    backend.cache.delete("never-set")
    assert backend.cache.get("k") is None


# -- bus ---------------------------------------------------------------------


async def test_subscriber_gets_only_channels_matching_its_patterns(backend: Backend) -> None:
    sub = backend.bus.subscribe(["detections:*", "events:detection_failed"])
    try:
        backend.bus.publish("stats:cam-1", b"ignored")
        backend.bus.publish("events:detection_completed", b"ignored")
        backend.bus.publish("detections:cam-1", b"d1")
        backend.bus.publish("events:detection_failed", b"e1")
        assert await _next(sub) == ("detections:cam-1", b"d1")
        assert await _next(sub) == ("events:detection_failed", b"e1")
        assert await _nothing_within(sub)
    finally:
        await sub.aclose()


async def test_messages_arrive_in_publish_order(backend: Backend) -> None:
    sub = backend.bus.subscribe(["c:*"])
    try:
        backend.bus.publish_many([(f"c:{i % 3}", str(i).encode()) for i in range(200)])
        backend.bus.publish("c:last", b"200")
        got = [await _next(sub) for _ in range(201)]
        assert [int(message) for _, message in got] == list(range(201))
        assert got[4] == ("c:1", b"4")
    finally:
        await sub.aclose()


async def test_publish_from_another_thread_reaches_the_subscriber(backend: Backend) -> None:
    sub = backend.bus.subscribe(["detections:*"])
    try:

        def produce() -> None:
            for i in range(50):
                backend.bus.publish("detections:cam-9", str(i).encode())

        thread = threading.Thread(target=produce)
        thread.start()
        got = [await _next(sub) for _ in range(50)]
        thread.join()
        assert [int(m) for _, m in got] == list(range(50))
    finally:
        await sub.aclose()


async def test_every_subscriber_gets_its_own_copy(backend: Backend) -> None:
    first = backend.bus.subscribe(["x:*"])
    second = backend.bus.subscribe(["x:1"])
    try:
        backend.bus.publish_many([("x:1", b"a"), ("x:2", b"b")])
        assert [await _next(first), await _next(first)] == [("x:1", b"a"), ("x:2", b"b")]
        assert await _next(second) == ("x:1", b"a")
        assert await _nothing_within(second)
    finally:
        await first.aclose()
        await second.aclose()


async def test_aclose_ends_iteration_and_stops_delivery(backend: Backend) -> None:
    sub = backend.bus.subscribe(["x:*"])
    received: list[tuple[str, bytes]] = []

    async def consume() -> None:
        async for item in sub:
            received.append(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        backend.bus.publish("x:1", b"before")
        await anyio.sleep(0.05)
        await sub.aclose()
        backend.bus.publish("x:1", b"after")
    assert received == [("x:1", b"before")]


# -- in-process specifics ----------------------------------------------------


def test_memory_cache_sweeps_expired_keys_nobody_reads() -> None:
    now = [0.0]
    cache = MemoryCache(clock=lambda: now[0])
    cache.set_many({f"k{i}": b"v" for i in range(100)}, ttl_seconds=1)
    assert len(cache) == 100
    now[0] = 5.0
    cache.set_many({"fresh": b"v"}, ttl_seconds=1)
    assert len(cache) == 1


def test_memory_cache_refuses_a_non_positive_ttl() -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        MemoryCache().set_many({"k": b"v"}, ttl_seconds=0)


async def test_a_slow_subscriber_drops_its_oldest_messages_and_counts_them() -> None:
    bus = MemoryBus(subscriber_queue=3)
    sub = bus.subscribe(["c"])
    try:
        bus.publish_many([("c", str(i).encode()) for i in range(5)])
        assert [await _next(sub) for _ in range(3)] == [("c", b"2"), ("c", b"3"), ("c", b"4")]
        assert sub.dropped == 2
    finally:
        await sub.aclose()


async def test_aclose_unregisters_the_subscriber() -> None:
    bus = MemoryBus()
    sub = bus.subscribe(["c"])
    assert bus.subscriber_count == 1
    await sub.aclose()
    assert bus.subscriber_count == 0


def test_subscribe_needs_a_running_loop_and_a_list_of_patterns() -> None:
    bus = MemoryBus()
    with pytest.raises(RuntimeError):
        bus.subscribe(["c"])

    async def with_string() -> None:
        bus.subscribe("detections:*")

    with pytest.raises(TypeError, match="sequence of strings"):
        asyncio.run(with_string())


def test_a_subscriber_whose_loop_closed_is_dropped_on_publish() -> None:
    bus = MemoryBus()

    async def subscribe_and_leave() -> None:
        bus.subscribe(["c"])  # never closed: its loop ends with asyncio.run

    asyncio.run(subscribe_and_leave())
    assert bus.subscriber_count == 1
    bus.publish("c", b"x")
    assert bus.subscriber_count == 0
