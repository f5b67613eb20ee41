"""Backpressure: the per-engine frame cap, and the optional latest-frame-wins policy."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator

import pytest

from detectflow import Frame, ProviderConfig, RawDetection, Settings
from detectflow.core.models import EventType, FrameResult, QueueStatus
from detectflow.core.plugins import PluginRegistry
from detectflow.flows import FlowOptions, run_flow
from detectflow.flows import engine as engine_module
from detectflow.flows.engine import SKIPPED, DetectEngine, is_skipped
from detectflow.store import Database
from tests.flows.conftest import HANDLERS, activate, collect, enqueue, frames, person

ENDPOINT = "scripted://backpressure"


class Gate:
    """A provider that holds every call until the test opens it."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.calls: list[str] = []

    async def __call__(self, frame: Frame) -> list[RawDetection]:
        self.calls.append(frame.frame_id)
        while not self.open.is_set():
            await asyncio.sleep(0.002)
        return person(frame)


def _engine(settings: Settings, registry: PluginRegistry, **kwargs: object) -> DetectEngine:
    config = ProviderConfig(
        id="bp", provider_name="bp", provider_type="scripted", endpoint_url=ENDPOINT
    )
    return DetectEngine(settings, lambda: config, registry=registry, max_in_flight=1, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    HANDLERS[ENDPOINT] = gate
    yield gate
    gate.open.set()


def test_latest_frame_wins_skips_the_oldest_waiting_frames_of_a_camera(
    settings: Settings, registry: PluginRegistry, gate: Gate
) -> None:
    sent = frames(10, cameras=("cam-1",))
    with _engine(settings, registry, latest_frame_wins=True, backlog=2) as engine:
        engine.submit(sent[0])
        deadline = time.monotonic() + 5
        while not gate.calls and time.monotonic() < deadline:
            time.sleep(0.002)
        for frame in sent[1:]:
            engine.submit(frame)
        # Skips come back at once, while the provider is still busy.
        skipped = collect(engine, 7)
        assert [r.frame.frame_id for r in skipped] == [f.frame_id for f in sent[1:8]]
        gate.open.set()
        done = collect(engine, 3)
    assert all(is_skipped(r) and r.error == SKIPPED for r in skipped)
    assert all(r.events[0].event_type == EventType.FRAME_SKIPPED for r in skipped)
    assert all(r.attempts == 0 and not r.detections for r in skipped)
    # The frame in the provider and the newest two were detected; no skip called it.
    assert sorted(r.frame.frame_id for r in done) == sorted(
        f.frame_id for f in (sent[0], sent[8], sent[9])
    )
    assert all(r.ok for r in done)
    assert sorted(gate.calls) == sorted(f.frame_id for f in (sent[0], sent[8], sent[9]))


def test_backlogs_are_per_camera(settings: Settings, registry: PluginRegistry, gate: Gate) -> None:
    with _engine(settings, registry, latest_frame_wins=True, backlog=2) as engine:
        lanes = {cam: engine.lane() for cam in ("a", "b")}
        for cam, lane in lanes.items():
            lane.submit(frames(2, cameras=(cam,)))
        time.sleep(0.05)
        gate.open.set()
        deadline = time.monotonic() + 5
        results: list[FrameResult] = []
        while len(results) < 4 and time.monotonic() < deadline:
            for lane in lanes.values():
                results += lane.poll()
            time.sleep(0.005)
    # Two cameras with two frames each: no camera passed its backlog of 2.
    assert len(results) == 4
    assert all(r.ok for r in results)


def test_without_the_policy_every_frame_waits_its_turn(
    settings: Settings, registry: PluginRegistry, gate: Gate
) -> None:
    sent = frames(10, cameras=("cam-1",))
    with _engine(settings, registry, backlog=2) as engine:
        assert not engine.latest_frame_wins  # off by default
        for frame in sent:
            engine.submit(frame)
        time.sleep(0.05)
        assert engine.poll() == []
        gate.open.set()
        done = collect(engine, 10)
    assert len(done) == 10
    assert all(r.ok for r in done)


def test_engine_holds_no_more_than_its_capacity(
    settings: Settings, registry: PluginRegistry
) -> None:
    HANDLERS[ENDPOINT] = person
    with _engine(settings, registry, queue_limit=3) as engine:
        assert engine.capacity == 4
        assert engine.acquire(10) == 4
        assert engine.acquire(1) == 0  # full: a source claims nothing more
        engine.release(4)
        assert engine.outstanding == 0


def test_unused_reservations_expire(
    settings: Settings, registry: PluginRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a cluster a frame read here may be detected in another process, so
    # its reservation is never used here; a short lease keeps the test fast.
    monkeypatch.setattr(engine_module, "RESERVATION_SECONDS", 0.05)
    HANDLERS[ENDPOINT] = person
    with _engine(settings, registry, queue_limit=3) as engine:
        assert engine.acquire(4) == 4
        assert engine.acquire(1) == 0
        time.sleep(0.1)
        assert engine.outstanding == 0
        assert engine.acquire(4) == 4


def test_skipped_frames_are_recorded_counted_and_announced(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry
) -> None:
    async def slow(frame: Frame) -> list[RawDetection]:
        await asyncio.sleep(0.01)
        return person(frame)

    activate(sqlite_db, slow)
    queued = enqueue(sqlite_db, 60, cameras=("cam-1", "cam-2"))
    policy = dataclasses.replace(settings, latest_frame_wins=True, frame_backlog=1, max_in_flight=1)

    metrics = run_flow(policy, FlowOptions(until_empty=True), database=sqlite_db, registry=registry)

    stats = sqlite_db.queue_stats()
    assert stats.get("pending", 0) == stats.get("processing", 0) == stats.get("failed", 0) == 0
    skipped = stats.get(QueueStatus.SKIPPED, 0)
    assert skipped > 0
    assert stats["completed"] + skipped == len(queued)
    _, announced = sqlite_db.list_events(event_type=EventType.FRAME_SKIPPED, limit=1)
    assert announced == skipped
    snap = metrics.snapshot()
    assert (snap.completed, snap.skipped, snap.failed) == (stats["completed"], skipped, 0)
    assert f"{skipped} skipped" in metrics.summary()
    item = next(
        i
        for f in queued
        if (i := sqlite_db.get_queue_item(f.frame_id)) and i.status == QueueStatus.SKIPPED
    )
    assert item.error_message == SKIPPED


def test_latest_frame_wins_is_off_by_default(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry
) -> None:
    activate(sqlite_db, person)
    enqueue(sqlite_db, 30, cameras=("cam-1",))
    narrow = dataclasses.replace(settings, max_in_flight=1)

    metrics = run_flow(narrow, FlowOptions(until_empty=True), database=sqlite_db, registry=registry)

    assert sqlite_db.queue_stats()["completed"] == 30
    assert metrics.snapshot().skipped == 0
