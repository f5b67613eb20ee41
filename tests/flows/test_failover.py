"""Failover in the running dataflow: two real simulators serve one camera.

The first simulator is really stopped mid-run (connections are refused) and
restarted on the same port; every frame still completes, and the breaker's
opening and closing are recorded as events, published, and cached.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from detectflow import ProviderConfig, Settings
from detectflow.core.breaker import CIRCUIT_CLOSED, CIRCUIT_OPENED
from detectflow.core.frames import make_frame
from detectflow.core.plugins import PluginRegistry
from detectflow.flows import FlowMetrics, FlowOptions, run_flow
from detectflow.samples import sample_frame
from detectflow.simulator import Simulator, SimulatorThread, run_in_thread
from detectflow.store import Database
from detectflow.store.live import LiveView
from detectflow.store.memory import MemoryBus, MemoryCache

CAMERA = "cam-1"


class RecordingBus(MemoryBus):
    """The in-process bus, keeping a copy of what was published (for assertions)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, bytes]] = []
        self._sent_lock = threading.Lock()

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        with self._sent_lock:
            self.sent.extend(messages)
        super().publish_many(messages)


def provider(db: Database, name: str, url: str, priority: int, **options: Any) -> ProviderConfig:
    return db.create_provider(
        ProviderConfig(
            id=f"provider-{name}",
            provider_name=name,
            provider_type="http_api",
            endpoint_url=url,
            timeout_seconds=5.0,
            max_retries=2,
            is_active=priority == 1,
            options={"cameras": [CAMERA], "priority": priority, **options},
        )
    )


class Feeder:
    """Enqueues frames with fresh frame numbers (ids derive from them)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.next_number = 0
        self.images = [sample_frame("cam", i, 32, 24) for i in range(4)]

    def enqueue(self, count: int) -> None:
        for _ in range(count):
            n = self.next_number
            self.next_number += 1
            frame = make_frame(CAMERA, self.images[n % 4], max_bytes=1 << 20, frame_number=n)
            self.db.enqueue(frame)


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def events_of(db: Database, event_type: str) -> int:
    return db.list_events(event_type=event_type, limit=1)[1]


@contextmanager
def _flow(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry
) -> Iterator[tuple[LiveView, RecordingBus]]:
    """The continuous flow in a thread, with a live view whose bus records messages."""
    bus = RecordingBus()
    live = LiveView(MemoryCache(), bus)
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_flow(
                settings,
                FlowOptions(),
                database=sqlite_db,
                registry=registry,
                metrics=FlowMetrics(),
                live=live,
                stop=stop,
            )
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    try:
        yield live, bus
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()
    assert errors == []


def test_stopped_provider_fails_over_and_comes_back_after_cooldown(
    settings: Settings,
    sqlite_db: Database,
    registry: PluginRegistry,
) -> None:
    first: SimulatorThread = run_in_thread(Simulator())
    second: SimulatorThread = run_in_thread(Simulator())
    restarted: SimulatorThread | None = None
    try:
        port = first.simulator.port
        a = provider(sqlite_db, "first", first.detect_url(), 1, breaker_cooldown_seconds=0.5)
        provider(sqlite_db, "second", second.detect_url(), 2)
        feeder = Feeder(sqlite_db)

        def completed() -> int:
            return sqlite_db.queue_stats()["completed"]

        with _flow(settings, sqlite_db, registry) as (live, bus):
            # 1. Both up: the first (priority 1) serves the camera.
            feeder.enqueue(10)
            wait_for(lambda: completed() == 10)
            assert first.simulator.stats.answered == 10
            assert second.simulator.stats.requests == 0

            # 2. The first goes away while frames are queued (some may still reach it),
            #    then more frames come: every one completes, through the second.
            feeder.enqueue(10)
            first.stop()
            wait_for(lambda: completed() == 20)
            feeder.enqueue(20)
            wait_for(lambda: completed() == 40)
            stats = sqlite_db.queue_stats()
            assert stats["failed"] == 0 and stats["pending"] == 0
            assert first.simulator.stats.answered + second.simulator.stats.answered == 40
            assert second.simulator.stats.answered >= 20
            wait_for(lambda: events_of(sqlite_db, CIRCUIT_OPENED) == 1)
            (opened,), _ = sqlite_db.list_events(event_type=CIRCUIT_OPENED)
            assert "'first'" in opened.message and "5 consecutive" in opened.message
            assert opened.camera_id == CAMERA and opened.severity == "warning"
            assert live.breakers([a.id])[a.id]["breaker"] in {"open", "half_open"}
            assert events_of(sqlite_db, CIRCUIT_CLOSED) == 0

            # 3. Back on the same port: after the cool-down a probe closes the breaker.
            restarted = run_in_thread(Simulator(port=port))
            time.sleep(0.6)
            before_second = second.simulator.stats.answered

            def closed_after_a_frame() -> bool:
                feeder.enqueue(1)
                time.sleep(0.05)
                return events_of(sqlite_db, CIRCUIT_CLOSED) == 1

            wait_for(closed_after_a_frame, timeout=10)
            wait_for(lambda: completed() == feeder.next_number)
            state = live.breakers([a.id])[a.id]
            assert state == {
                "id": a.id,
                "name": "first",
                "breaker": "closed",
                "failures": 0,
                "opened_at": None,
            }

            # 4. Frames flow through the first again.
            answered = restarted.simulator.stats.answered
            feeder.enqueue(10)
            wait_for(lambda: completed() == feeder.next_number)
            assert restarted.simulator.stats.answered == answered + 10
            assert second.simulator.stats.answered >= before_second
            assert sqlite_db.queue_stats()["failed"] == 0

            channels = [channel for channel, _ in bus.sent]
            assert channels.count(f"events:{CIRCUIT_OPENED}") == 1
            assert channels.count(f"events:{CIRCUIT_CLOSED}") == 1
            closing = [m for c, m in bus.sent if c == f"events:{CIRCUIT_CLOSED}"]
            assert json.loads(closing[0])["camera_id"] == CAMERA
    finally:
        first.stop()
        second.stop()
        if restarted is not None:
            restarted.stop()
