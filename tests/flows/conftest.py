"""Shared pieces for the flow tests: a scripted provider plugin and a real database.

The scripted provider is :class:`~detectflow.core.adapter.FunctionAdapter`
registered through the provider-types hook, exactly as a vendor plugin
would be, so the engine creates it from a stored provider config. Its
answers (and faults) come from a function the test sets per endpoint.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from detectflow import FunctionAdapter, ProviderConfig, RawDetection, Settings, hookimpl
from detectflow.core.adapter import Handler
from detectflow.core.frames import make_frame
from detectflow.core.models import Frame, FrameResult
from detectflow.core.plugins import PluginRegistry, get_registry
from detectflow.flows import FlowMetrics, FlowOptions, run_flow
from detectflow.flows.engine import DetectEngine
from detectflow.samples import sample_frame
from detectflow.store import Database
from detectflow.store.live import LiveView
from tests.databases import migrated_database

HANDLERS: dict[str, Handler] = {}


class ScriptedAdapter(FunctionAdapter):
    provider_type = "scripted"

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(HANDLERS[config.endpoint_url], config)


class ScriptedPlugin:
    @hookimpl
    def detectflow_provider_types(self) -> list[type[FunctionAdapter]]:
        return [ScriptedAdapter]


class CallLog:
    """Counts provider calls per frame id (the engine calls from its loop thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def hit(self, frame: Frame) -> int:
        with self._lock:
            self.calls[frame.frame_id] += 1
            return self.calls[frame.frame_id]


def person(_: Frame) -> list[RawDetection]:
    return [
        RawDetection("person", 0.9, (0.1, 0.1, 0.4, 0.6)),
        RawDetection("car", 0.8, (0.5, 0.5, 0.9, 0.9)),
    ]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        retry_base_seconds=0.005,
        retry_max_seconds=0.02,
        poll_interval_seconds=0.01,
        disable_plugin_autoload=True,
    )


@pytest.fixture
def pg(postgres_url: str, secret_key: str) -> Iterator[Database]:
    """A migrated PostgreSQL database of its own, for tests that need PostgreSQL."""
    with migrated_database(postgres_url, secret_key) as database:
        yield database


@pytest.fixture
def registry(settings: Settings) -> Iterator[PluginRegistry]:
    registry = get_registry(settings)
    registry.register(ScriptedPlugin(), "scripted", "tests", "0")
    yield registry
    HANDLERS.clear()


@pytest.fixture
def engine(
    settings: Settings, registry: PluginRegistry, sqlite_db: Database
) -> Iterator[DetectEngine]:
    """An engine on ``sqlite_db``'s active ``person`` provider with room for two calls in
    flight and one queued frame, so a reader meets backpressure after three."""
    activate(sqlite_db, person)
    with DetectEngine(
        settings, sqlite_db.active_provider, registry=registry, max_in_flight=2, queue_limit=1
    ) as engine:
        yield engine


def collect(engine: DetectEngine, count: int, timeout: float = 5.0) -> list[FrameResult]:
    """Poll until ``count`` results are back or ``timeout`` passes; the caller checks how many."""
    got: list[FrameResult] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += engine.poll()
        time.sleep(0.005)
    return got


def activate(
    db: Database, handler: Handler, *, name: str = "default", **fields: Any
) -> ProviderConfig:
    """Store an active scripted provider whose answers come from ``handler``."""
    endpoint = f"scripted://{name}"
    HANDLERS[endpoint] = handler
    config = ProviderConfig(
        id=f"provider-{name}",
        provider_name=name,
        provider_type="scripted",
        endpoint_url=endpoint,
        is_active=True,
        **fields,
    )
    return db.create_provider(config)


def activate_counted(db: Database, **fields: Any) -> CallLog:
    """Store the ``person`` provider and count its calls per frame: the log shows which
    frames reached the provider, and how often."""
    log = CallLog()
    activate(db, lambda frame: (log.hit(frame), person(frame))[1], **fields)
    return log


def frames(count: int, cameras: tuple[str, ...] = ("cam-1", "cam-2", "cam-3")) -> list[Frame]:
    images = [sample_frame("cam", i, 32, 24) for i in range(4)]
    return [
        make_frame(cameras[i % len(cameras)], images[i % 4], max_bytes=1 << 20, frame_number=i)
        for i in range(count)
    ]


def enqueue(db: Database, count: int, **kwargs: Any) -> list[Frame]:
    made = frames(count, **kwargs)
    for frame in made:
        db.enqueue(frame)
    return made


def garbage_frame(frame_id: str = "garbage", camera_id: str = "cam-1") -> Frame:
    """A frame that skipped validation, as a row written by another system could be."""
    return Frame(
        camera_id=camera_id, image=b"not an image", frame_id=frame_id, timestamp=datetime.now(UTC)
    )


Answer = Callable[[Frame], list[RawDetection]]


@dataclass
class FlowThread:
    """A flow running beside the test; ``join`` surfaces its errors."""

    thread: threading.Thread
    stop: threading.Event
    metrics: FlowMetrics
    errors: list[BaseException] = field(default_factory=list)

    def join(self, timeout: float = 15.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the flow did not end"
        assert self.errors == []


def start_flow(
    settings: Settings,
    db: Database,
    registry: PluginRegistry,
    url: str = "sql",
    live: LiveView | None = None,
    **kwargs: Any,
) -> FlowThread:
    """``run_flow`` in a thread, with a stop event and counters the test can watch."""
    stop = threading.Event()
    metrics = FlowMetrics()
    running = FlowThread(threading.Thread(target=lambda: None), stop, metrics)

    def target() -> None:
        try:
            run_flow(
                settings,
                FlowOptions(source_url=url, **kwargs),
                database=db,
                live=live,
                registry=registry,
                stop=stop,
                metrics=metrics,
            )
        except BaseException as exc:  # surfaced by FlowThread.join
            running.errors.append(exc)

    running.thread = threading.Thread(target=target)
    running.thread.start()
    return running


@contextmanager
def running_flow(
    settings: Settings,
    db: Database,
    registry: PluginRegistry,
    url: str = "sql",
    live: LiveView | None = None,
    **kwargs: Any,
) -> Iterator[FlowThread]:
    """A continuous flow for the ``with`` block; stopped and joined (errors surfaced) on exit."""
    flow = start_flow(settings, db, registry, url, live, **kwargs)
    try:
        yield flow
    finally:
        flow.stop.set()
        flow.join(10)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
