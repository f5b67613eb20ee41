from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import anyio
import pytest

from detectflow.core.models import utcnow
from detectflow.core.serialize import (
    FRAME_DETECTIONS,
    detection_message,
    detection_messages,
    detection_to_dict,
)
from detectflow.store.live import (
    CAMERA_INDEX_KEY,
    CAMERA_STATE_TTL,
    LIVE_TTL,
    STATS_TTL,
    LiveView,
    camera_key,
    live_key,
)
from detectflow.store.memory import MemoryBus, MemoryCache
from tests.clock import Clock
from tests.store.builders import detection, frame, result


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> MemoryCache:
    return MemoryCache(clock=clock)


@pytest.fixture
def view(cache: MemoryCache) -> LiveView:
    return LiveView(cache, MemoryBus())


def _state(cache: MemoryCache, camera: str) -> dict[str, object]:
    raw = cache.get(camera_key(camera))
    assert raw is not None
    value: dict[str, object] = json.loads(raw)
    return value


def test_ttls_are_the_guides() -> None:
    assert (LIVE_TTL, CAMERA_STATE_TTL, STATS_TTL) == (3, 60, 300)


def test_live_shows_the_latest_completed_frame_per_camera(view: LiveView) -> None:
    t0 = utcnow()
    older = result(frame("cam-1", timestamp=t0), detections=1)
    newer = result(frame("cam-1", timestamp=t0 + timedelta(seconds=1)), detections=2)
    view.publish([newer, older])
    snapshot = view.live("cam-1")
    assert snapshot is not None
    assert snapshot.camera_ids == ("cam-1",)
    assert snapshot.detections == [detection_to_dict(d) for d in newer.detections]
    assert snapshot.last_updated is not None
    assert snapshot.last_updated.tzinfo is not None


def test_a_late_older_frame_does_not_replace_newer_detections(view: LiveView) -> None:
    t0 = utcnow()
    newer = result(frame("cam-1", timestamp=t0), detections=2)
    view.publish([newer])
    view.publish([result(frame("cam-1", timestamp=t0 - timedelta(seconds=5)), detections=1)])
    snapshot = view.live("cam-1")
    assert snapshot is not None
    assert len(snapshot.detections) == 2


def test_a_failed_frame_keeps_the_detections_and_records_the_error(
    view: LiveView, cache: MemoryCache
) -> None:
    t0 = utcnow()
    ok = frame("cam-1", timestamp=t0)
    failed = frame("cam-1", timestamp=t0 + timedelta(seconds=1))
    view.publish([result(ok, detections=2)])
    view.publish([result(failed, error="provider timed out")])
    snapshot = view.live("cam-1")
    assert snapshot is not None
    assert len(snapshot.detections) == 2
    state = _state(cache, "cam-1")
    assert state["last_error"] == "provider timed out"
    assert state["last_frame_id"] == failed.frame_id
    assert state["frames_seen"] == 2


def test_live_of_all_cameras_combines_them(view: LiveView) -> None:
    view.publish([result(frame("cam-a"), detections=1), result(frame("cam-b"), detections=2)])
    snapshot = view.live(None)
    assert snapshot is not None
    assert snapshot.camera_ids == ("cam-a", "cam-b")
    assert len(snapshot.detections) == 3


def test_nothing_published_is_a_miss(view: LiveView) -> None:
    assert view.live("cam-1") is None
    assert view.live(None) is None
    view.publish([])
    assert view.live(None) is None


def test_live_detections_expire_after_three_seconds_but_camera_state_stays(
    view: LiveView, cache: MemoryCache, clock: Clock
) -> None:
    view.publish([result(frame("cam-1"))])
    clock.now += LIVE_TTL + 0.01
    assert view.live("cam-1") is None
    assert view.live(None) is None
    assert _state(cache, "cam-1")["frames_seen"] == 1
    clock.now += CAMERA_STATE_TTL
    assert cache.get(camera_key("cam-1")) is None
    assert cache.get(CAMERA_INDEX_KEY) is None


def test_a_corrupt_cache_entry_reads_as_a_miss(view: LiveView, cache: MemoryCache) -> None:
    cache.set_many({live_key("cam-1"): b"{not json", CAMERA_INDEX_KEY: b"[]"}, 3)
    assert view.live("cam-1") is None
    assert view.live(None) is None
    cache.set_many({camera_key("cam-1"): b"garbage"}, 3)
    view.publish([result(frame("cam-1"))])
    assert _state(cache, "cam-1")["frames_seen"] == 1


@pytest.mark.anyio
async def test_publish_broadcasts_each_frames_detections_in_one_message_then_its_events(
    cache: MemoryCache,
) -> None:
    bus = MemoryBus()
    view = LiveView(cache, bus)
    sub = bus.subscribe(["detections:cam-1", "events:*"])
    try:
        first, second = result(frame("cam-1"), detections=2), result(frame("cam-1"), detections=1)
        view.publish([first, second])
        got = []
        iterator: AsyncIterator[tuple[str, bytes]] = aiter(sub)
        with anyio.fail_after(2):
            for _ in range(4):
                got.append(await anext(iterator))
    finally:
        await sub.aclose()
    assert [channel for channel, _ in got] == [
        "detections:cam-1",
        "events:detection_completed",
        "detections:cam-1",
        "events:detection_completed",
    ]
    body = json.loads(got[0][1])
    assert body["type"] == FRAME_DETECTIONS
    published_at = body["published_at"]
    assert published_at.endswith("Z")
    assert detection_messages(body) == [
        detection_message(d, published_at=published_at) for d in first.detections
    ]
    assert [m["detection_id"] for m in detection_messages(json.loads(got[2][1]))] == [
        second.detections[0].id
    ]
    event = json.loads(got[1][1])
    assert (event["type"], event["camera_id"], event["event_id"], event["published_at"]) == (
        "event",
        "cam-1",
        first.events[0].id,
        published_at,
    )


@pytest.mark.anyio
async def test_detections_of_one_frame_that_differ_in_frame_travel_apart(
    cache: MemoryCache,
) -> None:
    """A result built by hand may mix frames: each run of shared fields is one message."""
    bus = MemoryBus()
    view = LiveView(cache, bus)
    sub = bus.subscribe(["detections:*"])
    try:
        a, b = frame("cam-1"), frame("cam-1")
        mixed = dataclasses.replace(
            result(a, detections=1),
            detections=(detection(a, 0), detection(b, 0), detection(b, 1)),
        )
        view.publish([mixed])
        iterator: AsyncIterator[tuple[str, bytes]] = aiter(sub)
        with anyio.fail_after(2):
            got = [json.loads((await anext(iterator))[1]) for _ in range(2)]
    finally:
        await sub.aclose()
    expanded = [detection_messages(body) for body in got]
    stamp = got[0]["published_at"]
    assert expanded == [
        [detection_message(detection(a, 0), published_at=stamp)],
        [detection_message(detection(b, i), published_at=stamp) for i in range(2)],
    ]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
