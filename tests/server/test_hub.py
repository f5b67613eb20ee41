"""The WebSocket hub on its own: filters, fan-out, lag accounting, resubscription."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.serialize import (
    FRAME_DETECTIONS,
    detection_message,
    event_message,
    frame_detections_message,
)
from detectflow.server.hub import ClientFilter, Hub
from detectflow.server.outbox import Outbox
from detectflow.store.cache import BUS_RECONNECTED
from detectflow.store.live import LiveView
from detectflow.store.memory import MemoryBus, MemoryCache
from detectflow.store.redis_backend import RedisBus
from tests import services
from tests.store.builders import detection, frame, result

AnyBus = MemoryBus | RedisBus


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory-bus"),
        pytest.param("redis", id="redis-bus", marks=pytest.mark.redis),
    ]
)
def any_bus(request: pytest.FixtureRequest) -> Iterator[AnyBus]:
    """The hub's bus: the in-process one (one server process) and Redis (several)."""
    if request.param == "memory":
        yield MemoryBus()
        return
    prefix = f"detectflow-test-{uuid.uuid4().hex[:12]}:"  # other runs share the database
    with RedisBus(services.REDIS_URL, prefix=prefix) as bus:
        yield bus


async def _end_subscriptions_from_outside(bus: AnyBus) -> None:
    """End every subscription on ``bus`` as a lost connection or a reader that died would.

    Reaches into each bus's private list of subscriptions: neither bus offers a
    way to end a subscriber's subscription for it, and on Redis a killed
    connection is re-made inside the subscription, never reaching the hub.
    """
    subscriptions = bus._subscribers if isinstance(bus, MemoryBus) else bus._subscriptions
    for sub in list(subscriptions):
        await sub.aclose()


cameras = st.sampled_from(["cam-1", "cam-2", "cam-3"])


@given(
    subscribed=st.lists(cameras, max_size=3),
    everything=st.booleans(),
    floor=st.floats(0, 1),
    camera=cameras,
    confidence=st.floats(0, 1),
)
def test_a_detection_is_wanted_iff_its_camera_is_subscribed_and_sure_enough(
    subscribed: list[str], everything: bool, floor: float, camera: str, confidence: float
) -> None:
    f = ClientFilter()
    for c in subscribed:
        f.subscribe(c, None, floor)
    if everything:
        f.subscribe(None, None, floor)
    message = {"camera_id": camera, "confidence": confidence}
    expected = (everything or camera in subscribed) and confidence >= floor and f.active
    assert f.wants_detection(message) == expected


def test_event_types_narrow_events_and_unsubscribe_clears() -> None:
    f = ClientFilter()
    f.subscribe("cam-1", None, None)
    assert f.wants_event({"camera_id": "cam-1", "event_type": "anything"})
    f.subscribe("cam-1", ["detection_failed"], None)
    assert not f.wants_event({"camera_id": "cam-1", "event_type": "detection_completed"})
    assert f.wants_event({"camera_id": "cam-1", "event_type": "detection_failed"})
    assert not f.wants_event({"camera_id": "cam-2", "event_type": "detection_failed"})
    f.unsubscribe(None, ["detection_failed"])
    assert not f.wants_event({"camera_id": "cam-1", "event_type": "detection_failed"})
    f.unsubscribe(None, None)
    assert not f.active
    assert not f.wants_detection({"camera_id": "cam-1", "confidence": 1.0})


def test_malformed_detection_confidence_is_not_wanted() -> None:
    f = ClientFilter(all_cameras=True)
    assert not f.wants_detection({"camera_id": "c", "confidence": "high"})
    assert not f.wants_detection({"camera_id": "c", "confidence": float("nan")})


def _detection(camera: str, n: int) -> tuple[str, bytes]:
    body = {"type": "detection", "detection_id": str(n), "camera_id": camera, "confidence": 0.9}
    return f"detections:{camera}", json.dumps(body).encode()


def test_hub_subscribes_once_and_fans_out_to_each_matching_client(any_bus: AnyBus) -> None:
    async def main() -> tuple[list[str], list[str], int, dict[str, int]]:
        bus = any_bus
        hub = Hub(bus, queue_size=100)
        one, one_box = hub.connect("one")
        two, two_box = hub.connect("two")
        one.filter.subscribe("cam-1", None, None)
        two.filter.subscribe(None, None, None)
        async with anyio.create_task_group() as tg:
            await tg.start(hub.run)
            subscribers = bus.subscriber_count
            bus.publish_many([_detection("cam-1", 1), _detection("cam-2", 2)])
            bus.publish("detections:cam-1", b"{not json")
            bus.publish("events:x", b"[1]")
            with anyio.fail_after(5):
                got_two = [json.loads(await two_box.receive())["detection_id"] for _ in range(2)]
                got_one = [json.loads(await one_box.receive())["detection_id"]]
                while hub.received < 4:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        hub.disconnect(one)
        hub.disconnect(two)
        one_box.close()
        two_box.close()
        return got_one, got_two, subscribers, hub.stats()

    got_one, got_two, subscribers, stats = anyio.run(main)
    assert subscribers == 1
    assert got_one == ["1"]
    assert got_two == ["1", "2"]
    assert stats["malformed"] == 2 and stats["received"] == 4 and stats["clients"] == 0


def test_a_full_outbox_drops_and_counts_without_blocking_the_hub() -> None:
    async def main() -> tuple[int, int, int]:
        hub = Hub(MemoryBus(), queue_size=3)
        client, box = hub.connect("slow")
        client.filter.subscribe(None, None, None)
        for n in range(10):
            hub.dispatch(*_detection("cam-1", n))
        lagged = client.take_lagged()
        again = client.take_lagged()
        queued = 0
        while True:
            try:
                box.receive_nowait()
            except anyio.WouldBlock:
                break
            queued += 1
        hub.disconnect(client)
        box.close()
        return lagged, again, queued

    lagged, again, queued = anyio.run(main)
    assert (queued, lagged, again) == (3, 7, 0)


def test_hub_resubscribes_after_the_subscription_ends(any_bus: AnyBus) -> None:
    async def main() -> int:
        bus = any_bus
        hub = Hub(bus)
        client, box = hub.connect("c")
        client.filter.subscribe(None, None, None)
        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: hub.run(retry_seconds=0.01, task_status=task_status))
            await _end_subscriptions_from_outside(bus)
            with anyio.fail_after(5):
                while bus.subscriber_count == 0:
                    await anyio.sleep(0.01)
                bus.publish_many([_detection("cam-1", 7)])
                got = json.loads(await box.receive())
            tg.cancel_scope.cancel()
        hub.disconnect(client)
        box.close()
        return int(got["detection_id"])

    assert anyio.run(main) == 7


def _drain(box: Outbox) -> list[str]:
    texts = []
    while True:
        try:
            texts.append(box.receive_nowait())
        except anyio.WouldBlock:
            return texts


def test_a_frames_detections_reach_clients_as_the_per_detection_messages_they_were() -> None:
    """The dataflow publishes a frame's detections as one bus message; clients still get
    one ``detection`` message per detection, the very text publishing it alone gave."""
    f = frame("cam-1")
    detections = [detection(f, i, confidence=c) for i, c in enumerate([0.9, 0.4, 0.7])]
    stamp = "2025-11-05T12:34:56.5Z"
    alone = [
        json.dumps(detection_message(d, published_at=stamp), separators=(",", ":"))
        for d in detections
    ]
    payload = json.dumps(frame_detections_message(detections, stamp), separators=(",", ":"))

    async def main() -> tuple[list[str], list[str], list[str], dict[str, int]]:
        hub = Hub(MemoryBus(), queue_size=100)
        everything, everything_box = hub.connect("everything")
        sure, sure_box = hub.connect("sure")
        other, other_box = hub.connect("other camera")
        everything.filter.subscribe(None, None, None)
        sure.filter.subscribe("cam-1", None, 0.6)
        other.filter.subscribe("cam-2", None, None)
        hub.dispatch("detections:cam-1", payload.encode())
        got = (_drain(everything_box), _drain(sure_box), _drain(other_box))
        for client in (everything, sure, other):
            hub.disconnect(client)
        return *got, hub.stats()

    to_everything, to_sure, to_other, stats = anyio.run(main)
    assert to_everything == alone
    assert to_sure == [alone[0], alone[2]]
    assert to_other == []
    assert stats["received"] == 3 and stats["malformed"] == 0


def test_an_expanded_detection_keeps_the_publishers_stamp_for_lag() -> None:
    f = frame("cam-1")
    published = datetime.now(UTC) - timedelta(seconds=2)
    body = frame_detections_message([detection(f, 0)], published)
    lags: list[tuple[float, bool]] = []

    async def main() -> None:
        hub = Hub(MemoryBus(), on_lag=lambda lag, stamped: lags.append((lag, stamped)))
        client, box = hub.connect("c")
        client.filter.subscribe(None, None, None)
        hub.dispatch("detections:cam-1", json.dumps(body).encode())
        for text in _drain(box):
            client.mark_sent(text)
        hub.disconnect(client)

    anyio.run(main)
    assert len(lags) == 1 and lags[0][1] is True and 2 <= lags[0][0] < 10


@pytest.mark.parametrize(
    "body",
    [
        {"type": FRAME_DETECTIONS, "camera_id": "cam-1"},
        {
            "type": FRAME_DETECTIONS,
            "camera_id": "c",
            "frame_id": "f",
            "timestamp": "t",
            "detections": "nope",
        },
        {
            "type": FRAME_DETECTIONS,
            "camera_id": "c",
            "frame_id": "f",
            "timestamp": "t",
            "detections": [["too", "short"]],
        },
        {
            "type": FRAME_DETECTIONS,
            "camera_id": "c",
            "frame_id": "f",
            "timestamp": "t",
            "detections": [{"not": "a row"}],
        },
    ],
)
def test_a_mangled_frame_message_is_counted_malformed_and_delivers_nothing(
    body: dict[str, object],
) -> None:
    async def main() -> tuple[list[str], dict[str, int]]:
        hub = Hub(MemoryBus())
        client, box = hub.connect("c")
        client.filter.subscribe(None, None, None)
        hub.dispatch("detections:cam-1", json.dumps(body).encode())
        got = _drain(box)
        hub.disconnect(client)
        return got, hub.stats()

    got, stats = anyio.run(main)
    assert got == []
    assert (stats["received"], stats["malformed"]) == (1, 1)


def test_what_the_live_view_publishes_reaches_clients_unchanged(any_bus: AnyBus) -> None:
    """End to end over each bus: LiveView.publish -> hub -> a client's outbox."""
    first, second = result(frame("cam-1"), detections=3), result(frame("cam-2"), detections=2)

    async def main() -> list[dict[str, object]]:
        bus = any_bus
        hub = Hub(bus, queue_size=100)
        client, box = hub.connect("c")
        client.filter.subscribe(None, None, None)
        async with anyio.create_task_group() as tg:
            await tg.start(hub.run)
            LiveView(MemoryCache(), bus).publish([first, second])
            with anyio.fail_after(5):
                got = [json.loads(await box.receive()) for _ in range(7)]
            tg.cancel_scope.cancel()
        hub.disconnect(client)
        return got

    got = anyio.run(main)
    stamp = got[0]["published_at"]
    assert isinstance(stamp, str)
    expected = [
        *(detection_message(d, published_at=stamp) for d in first.detections),
        event_message(first.events[0], published_at=stamp),
        *(detection_message(d, published_at=stamp) for d in second.detections),
        event_message(second.events[0], published_at=stamp),
    ]
    assert got == json.loads(json.dumps(expected))


def test_only_subscribed_clients_get_the_reconnection_notice() -> None:
    hub = Hub(MemoryBus(), queue_size=4)
    subscribed, outbox = hub.connect("a")
    subscribed.filter.subscribe("cam-1", None, None)
    idle, idle_outbox = hub.connect("b")
    body = b'{"lost_at": "2026-01-01T00:00:00Z", "reconnected_at": "2026-01-01T00:00:03Z"}'
    hub.dispatch(BUS_RECONNECTED, body)
    assert hub.bus_gaps == 1 and hub.received == 0  # a note, not a broadcast
    assert outbox.receive_nowait() == (
        '{"type": "lagged", "reason": "bus_reconnected", '
        '"lost_at": "2026-01-01T00:00:00Z", "reconnected_at": "2026-01-01T00:00:03Z"}'
    )
    assert len(idle_outbox) == 0 and idle.delivered == 0
