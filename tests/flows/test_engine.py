"""The detect engine: never blocks, caps provider calls, owns the adapters."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator

import pytest

from detectflow import Frame, ProviderConfig, RawDetection, Settings, TransientProviderError
from detectflow.core.plugins import PluginRegistry
from detectflow.flows.engine import NO_PROVIDER, DetectEngine
from detectflow.flows.metrics import FlowMetrics
from tests.flows.conftest import HANDLERS, ScriptedAdapter, collect, frames, person


def config(endpoint: str = "scripted://engine", **changes: object) -> ProviderConfig:
    base = ProviderConfig(
        id="engine", provider_name="engine", provider_type="scripted", endpoint_url=endpoint
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


class Holder:
    """A provider lookup the test can switch, as an operator switches configs."""

    def __init__(self, value: ProviderConfig | None) -> None:
        self.value = value

    def __call__(self) -> ProviderConfig | None:
        return self.value


@pytest.fixture
def holder() -> Holder:
    return Holder(config())


@pytest.fixture
def engine(settings: Settings, registry: PluginRegistry, holder: Holder) -> Iterator[DetectEngine]:
    HANDLERS["scripted://engine"] = person
    with DetectEngine(
        settings, holder, registry=registry, max_in_flight=4, queue_limit=4, refresh_seconds=0.02
    ) as engine:
        yield engine


def test_submit_and_poll_never_block(engine: DetectEngine) -> None:
    release = threading.Event()

    async def slow(frame: Frame) -> list[RawDetection]:
        while not release.is_set():
            await asyncio.sleep(0.005)
        return person(frame)

    HANDLERS["scripted://engine"] = slow
    start = time.perf_counter()
    for frame in frames(6):
        engine.submit(frame)
    assert engine.poll() == []
    assert time.perf_counter() - start < 0.1
    release.set()

    got = collect(engine, 6)

    assert len(got) == 6
    assert all(r.ok and len(r.detections) == 2 for r in got)


def test_provider_calls_are_capped_at_max_in_flight(
    settings: Settings, registry: PluginRegistry, holder: Holder
) -> None:
    running = peak = 0

    async def tracked(frame: Frame) -> list[RawDetection]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return []

    HANDLERS["scripted://engine"] = tracked
    metrics = FlowMetrics()
    with DetectEngine(settings, holder, registry=registry, max_in_flight=3, metrics=metrics) as e:
        for frame in frames(12):
            e.submit(frame)
        assert len(collect(e, 12)) == 12
    assert peak == 3
    assert metrics.snapshot().in_flight == 0


def test_capacity_is_max_in_flight_plus_queue_and_polling_frees_it(engine: DetectEngine) -> None:
    assert engine.capacity == 8
    assert engine.acquire(5) == 5
    assert engine.acquire(5) == 3
    assert engine.acquire(1) == 0
    engine.release(6)
    assert engine.outstanding == 2
    for frame in frames(2):
        engine.submit(frame)  # uses the two reserved slots
    assert engine.outstanding == 2
    collect(engine, 2)
    assert engine.outstanding == 0


@pytest.mark.parametrize(("in_flight", "batch", "capacity"), [(32, 256, 544), (32, 8, 96)])
def test_default_capacity_leaves_room_for_two_source_batches(
    settings: Settings,
    registry: PluginRegistry,
    holder: Holder,
    in_flight: int,
    batch: int,
    capacity: int,
) -> None:
    tuned = dataclasses.replace(settings, max_in_flight=in_flight, batch_size=batch)
    engine = DetectEngine(tuned, holder, registry=registry)
    assert engine.capacity == capacity
    assert engine.acquire(capacity + 1) == capacity


def test_without_provider_frames_fail_with_the_reason(
    settings: Settings, registry: PluginRegistry
) -> None:
    with DetectEngine(settings, Holder(None), registry=registry) as engine:
        assert not engine.has_provider
        engine.submit(frames(1)[0])
        (result,) = collect(engine, 1)
    assert result.error == NO_PROVIDER
    assert result.events[0].event_type == "detection_failed"


def test_unknown_provider_type_fails_frames_with_the_reason(
    settings: Settings, registry: PluginRegistry
) -> None:
    lookup = Holder(config(provider_type="nonesuch"))
    with DetectEngine(settings, lookup, registry=registry) as engine:
        engine.submit(frames(1)[0])
        (result,) = collect(engine, 1)
    assert result.error is not None
    assert "no plugin provides provider type 'nonesuch'" in result.error


def test_results_carry_no_image_bytes(engine: DetectEngine) -> None:
    engine.submit(frames(1)[0])
    (result,) = collect(engine, 1)
    assert result.frame.image == b""
    assert result.frame.width == 32


def test_retry_backoff_runs_off_the_caller(
    settings: Settings, registry: PluginRegistry, holder: Holder
) -> None:
    calls = 0

    def flaky(frame: Frame) -> list[RawDetection]:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientProviderError("busy")
        return person(frame)

    HANDLERS["scripted://engine"] = flaky
    slow_backoff = dataclasses.replace(settings, retry_base_seconds=0.1, retry_max_seconds=0.1)
    with DetectEngine(slow_backoff, holder, registry=registry) as engine:
        start = time.perf_counter()
        engine.submit(frames(1)[0])
        assert time.perf_counter() - start < 0.05
        (result,) = collect(engine, 1)
    assert result.ok
    assert result.attempts == 3


def test_adapter_is_cached_then_recreated_when_config_changes(
    engine: DetectEngine, holder: Holder
) -> None:
    created: list[ScriptedAdapter] = []
    original = ScriptedAdapter.__init__

    def spy(self: ScriptedAdapter, cfg: ProviderConfig) -> None:
        original(self, cfg)
        created.append(self)

    ScriptedAdapter.__init__ = spy  # type: ignore[method-assign]
    try:
        for frame in frames(3):
            engine.submit(frame)
        collect(engine, 3)
        assert len(created) == 1
        # A new config object with the same connection settings keeps the adapter...
        holder.value = dataclasses.replace(
            holder.value,  # type: ignore[arg-type]
            updated_at=holder.value.updated_at.replace(year=2099),  # type: ignore[union-attr]
        )
        time.sleep(0.1)  # the engine re-reads the config every 20 ms
        engine.submit(frames(5)[4])
        collect(engine, 1)
        assert len(created) == 1
        # ...and one whose connection settings changed gets a new one.
        holder.value = dataclasses.replace(holder.value, timeout_seconds=7.0)  # type: ignore[arg-type]
        time.sleep(0.1)
        engine.submit(frames(4)[3])
        collect(engine, 1)
        time.sleep(0.05)
    finally:
        ScriptedAdapter.__init__ = original  # type: ignore[method-assign]
    assert len(created) == 2
    assert created[0].closed
    assert not created[1].closed
    engine.close()
    assert created[1].closed


def test_deactivated_provider_is_noticed(engine: DetectEngine, holder: Holder) -> None:
    assert engine.has_provider
    holder.value = None
    deadline = time.monotonic() + 2
    while engine.has_provider and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not engine.has_provider


def test_failing_lookup_keeps_the_last_config(settings: Settings, registry: PluginRegistry) -> None:
    good = config()
    answers: list[ProviderConfig | None] = [good]

    def lookup() -> ProviderConfig | None:
        if answers:
            return answers.pop()
        raise OSError("database unreachable")

    with DetectEngine(settings, lookup, registry=registry, refresh_seconds=0.01) as engine:
        time.sleep(0.05)
        assert engine.provider == good


def test_closed_engine_refuses_to_start(engine: DetectEngine) -> None:
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.start()
