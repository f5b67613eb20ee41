"""Dataflow workers' heartbeats: written at most every interval, read back by the server."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import pytest

from detectflow.core.models import utcnow
from detectflow.store.cache import CacheUnavailableError
from detectflow.store.entries import dump_entry
from detectflow.store.heartbeat import (
    HEARTBEAT_INDEX_KEY,
    HEARTBEAT_INTERVAL,
    HEARTBEAT_TTL,
    Heartbeat,
    heartbeat_key,
    read_heartbeats,
)
from detectflow.store.live import LiveView
from detectflow.store.memory import MemoryBus, MemoryCache
from detectflow.store.outages import OutageCounts
from detectflow.store.redis_backend import RedisCache
from tests.clock import Clock


def test_a_worker_writes_at_most_once_per_interval_however_often_it_beats() -> None:
    cache, clock = MemoryCache(), Clock()
    beat = Heartbeat(cache, worker_index=0, worker_count=1, clock=clock)
    for _ in range(1000):  # a busy worker polls its source this often
        beat.beat()
    assert beat.writes == 1
    clock.now += HEARTBEAT_INTERVAL - 0.01
    beat.beat()
    assert beat.writes == 1
    clock.now += 0.01
    beat.beat()
    assert beat.writes == 2


def test_the_server_reads_every_worker_with_who_and_where() -> None:
    cache = MemoryCache()
    view = LiveView(cache, MemoryBus())
    beats = [view.heartbeat(i, 2) for i in range(2)]
    for beat in beats:
        beat.beat()
    workers = view.workers()
    assert [w.worker for w in workers] == sorted(b.worker for b in beats)
    host, pid = socket.gethostname(), os.getpid()
    assert [(w.host, w.pid, w.worker_index, w.worker_count) for w in workers] == [
        (host, pid, 0, 2),
        (host, pid, 1, 2),
    ]
    assert all(utcnow() - w.beat_at < timedelta(seconds=5) for w in workers)
    assert all(w.started_at <= w.beat_at for w in workers)


def test_a_worker_that_stops_cleanly_is_forgotten_at_once() -> None:
    cache = MemoryCache()
    first = Heartbeat(cache, worker_index=0, worker_count=2)
    second = Heartbeat(cache, worker_index=1, worker_count=2)
    first.beat()
    second.beat()
    first.stop()
    assert [w.worker for w in read_heartbeats(cache)] == [second.worker]
    assert cache.get(heartbeat_key(first.worker)) is None


def test_entries_older_than_the_ttl_leave_the_index_and_mangled_ones_are_skipped() -> None:
    cache = MemoryCache()
    old = (utcnow() - timedelta(seconds=HEARTBEAT_TTL + 1)).isoformat()
    index = {"gone/1/w0": old, "mangled/2/w0": utcnow().isoformat()}
    cache.set_many({HEARTBEAT_INDEX_KEY: dump_entry(index)}, 60)
    cache.set_many({heartbeat_key("mangled/2/w0"): b"{not json"}, 60)
    beat = Heartbeat(cache, worker_index=0, worker_count=1)
    beat.beat()
    assert [w.worker for w in read_heartbeats(cache)] == [beat.worker]
    raw = cache.get(HEARTBEAT_INDEX_KEY)
    assert raw is not None and b"gone/1/w0" not in raw


@pytest.mark.redis
def test_an_unreachable_cache_never_fails_a_beat_but_cannot_be_read(free_port: int) -> None:
    counts = OutageCounts()
    with RedisCache(f"redis://127.0.0.1:{free_port}/0") as cache:  # nothing listens there
        beat = Heartbeat(cache, worker_index=0, worker_count=1, outages=counts)
        beat.beat()
        beat.stop()
        assert beat.writes == 0
        assert counts.failed_counts() == {"heartbeat": 1}
        # "Cannot tell" must not read as "no worker runs".
        with pytest.raises(CacheUnavailableError):
            read_heartbeats(cache)
