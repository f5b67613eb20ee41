"""The live view over a Redis that goes away mid-run: nothing raises, drops are counted.

Each test runs a redis-server of its own (``own_redis``) and stops it; the
shared Redis stays up. A pause of client writes (``CLIENT PAUSE ... WRITE``)
makes writes time out while the data stays, for what a restart would wipe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import redis

from detectflow.store.live import STATS_ALL_KEY, LiveView, stats_key
from detectflow.store.outages import OutageCollector, OutageCounts
from detectflow.store.redis_backend import RedisBus, RedisCache
from tests.clock import Clock
from tests.redis_server import RedisServer
from tests.store.builders import frame, result

pytestmark = pytest.mark.redis

_FAST = (0.01, 0.05)
"""Fail-fast pauses short enough that a test sees Redis again almost at once."""


@pytest.fixture
def counts() -> OutageCounts:
    return OutageCounts()


@pytest.fixture
def view(own_redis: RedisServer, counts: OutageCounts) -> Iterator[LiveView]:
    with (
        RedisCache(own_redis.url, outage_backoff=_FAST) as cache,
        RedisBus(own_redis.url, outage_backoff=_FAST) as bus,
    ):
        yield LiveView(cache, bus, outages=counts)


def _until(condition: object, timeout: float = 5.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_publish_with_redis_down_drops_counts_and_warns_instead_of_raising(
    view: LiveView,
    own_redis: RedisServer,
    counts: OutageCounts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    own_redis.stop()
    batch = [result(frame("cam-1")), result(frame("cam-2"), detections=0)]
    with caplog.at_level(logging.WARNING, logger="detectflow.store.live"):
        view.publish(batch)
        view.publish([result(frame("cam-1"))])
    # Bus messages: one per frame's detections (cam-2 found none), one per event.
    assert counts.dropped_counts() == {"frames": 3, "messages": 3 + 2}
    assert counts.failed_counts() == {"publish_live": 2, "publish_bus": 2}
    warnings = [r.getMessage() for r in caplog.records if r.name == "detectflow.store.live"]
    # One warning per kind within WARN_EVERY, not one per batch.
    assert len(warnings) == 2, warnings
    assert "2 frame(s) not cached" in warnings[0] and "unreachable" in warnings[0]


def test_reads_with_redis_down_are_misses_so_the_database_answers(
    view: LiveView, own_redis: RedisServer, counts: OutageCounts
) -> None:
    view.publish([result(frame("cam-1"))])
    view.stats.put("cam-1", {"total_detections": 2})
    view.publish_breakers([{"id": "p1", "breaker": "open"}])
    assert view.live("cam-1") is not None and view.stats.get("cam-1") is not None
    own_redis.stop()
    assert view.live("cam-1") is None
    assert view.live() is None
    assert view.stats.get("cam-1") is None
    assert view.breakers(["p1"]) == {}
    view.stats.put("cam-1", {"total_detections": 3})  # nowhere to go: dropped
    failed = counts.failed_counts()
    assert failed["read_live"] == 2 and failed["read_stats"] == 1
    assert failed["read_breakers"] == 1 and failed["write_stats"] == 1


def test_the_live_view_works_again_once_redis_is_back(
    view: LiveView, own_redis: RedisServer
) -> None:
    own_redis.stop()
    view.publish([result(frame("cam-1"))])
    own_redis.start()  # an empty Redis, as after a crash

    def published() -> bool:
        view.publish([result(frame("cam-1"))])
        return view.live("cam-1") is not None

    _until(published)
    snapshot = view.live("cam-1")
    assert snapshot is not None and len(snapshot.detections) == 2


def test_a_failed_statistics_invalidation_is_retried_by_the_next_call(
    own_redis: RedisServer, counts: OutageCounts
) -> None:
    clock = Clock()
    url = f"{own_redis.url}?socket_timeout=0.1"
    with (
        RedisCache(url, outage_backoff=(1.0, 1.0), clock=clock) as cache,
        RedisBus(url) as bus,
        redis.Redis.from_url(own_redis.url) as admin,
    ):
        view = LiveView(cache, bus, outages=counts)
        view.stats.put("cam-1", {"total_detections": 1})
        view.stats.put(None, {"total_detections": 1})
        # A write that times out (writes paused) puts the cache in its fail-fast
        # pause while Redis keeps its data, as when only the dataflow lost Redis.
        admin.execute_command("CLIENT", "PAUSE", "5000", "WRITE")
        view.stats.put("cam-2", {"total_detections": 1})
        admin.execute_command("CLIENT", "UNPAUSE")
        view.stats.invalidate(["cam-1"])  # fails fast: nothing reaches Redis
        assert counts.failed_counts() == {"write_stats": 1, "invalidate_stats": 1}
        assert admin.exists(cache.prefix + stats_key("cam-1")) == 1
        clock.now += 1.0  # the pause is over
        assert view.stats.get(None) is None  # this call deleted both entries first
        assert admin.exists(cache.prefix + stats_key("cam-1")) == 0
        assert admin.exists(cache.prefix + STATS_ALL_KEY) == 0


def test_the_counts_are_prometheus_counters() -> None:
    counts = OutageCounts()
    counts.dropped("frames", 3)
    counts.dropped("messages", 5)
    counts.failed("publish_live")
    families = {f.name: f for f in OutageCollector(counts).collect()}
    dropped = {s.labels["what"]: s.value for s in families["detectflow_live_dropped"].samples}
    assert dropped == {"frames": 3, "messages": 5}
    failed = families["detectflow_cache_unavailable"].samples
    assert [(s.name, s.labels, s.value) for s in failed] == [
        ("detectflow_cache_unavailable_total", {"operation": "publish_live"}, 1)
    ]
