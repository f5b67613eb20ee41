"""The Bytewax wiring, and the only module that imports Bytewax.

::

    source ──> validated? ──yes──> key by camera ──> detect (stateful_batch) ──┐
                  └──no (failed result with its reason) ───────────────────────┴──> sinks

``detect`` never blocks its worker: ``on_batch`` hands frames to the
:class:`~detectflow.flows.engine.DetectEngine` and returns, and results are
emitted on later wake-ups (``notify_at`` every ``wake_interval`` while frames
are in flight). Its snapshot is the frames in flight, so a flow resumed from
a recovery store resubmits them.

Bytewax ends a flow as soon as every input has ended, dropping pending
notifications, so sources must end only once their frames have come back
(the SQL source waits for the engine's ``outstanding`` count to reach zero).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.run import cli_main as _cli_main
from bytewax.testing import run_main as _run_main

from detectflow.core.errors import DetectflowError
from detectflow.core.models import Frame, FrameResult
from detectflow.core.plugins import PluginRegistry, get_registry
from detectflow.core.settings import Settings
from detectflow.flows.engine import NO_PROVIDER, DetectEngine, Lane
from detectflow.flows.metrics import FlowMetrics
from detectflow.flows.sinks import LivePublisher, ResultWriter
from detectflow.flows.steps import camera_key

__all__ = [
    "DetectLogic",
    "FlowError",
    "PartitionReader",
    "ReaderSource",
    "WriterSink",
    "build_dataflow",
    "run_flow",
]

log = logging.getLogger(__name__)

X = TypeVar("X")

_EMPTY: tuple[FrameResult, ...] = ()

# Bytewax's runners are untyped (a Rust extension); give them their signatures.
run_main: Callable[[Dataflow], None] = _run_main
cli_main: Callable[..., None] = _cli_main


class FlowError(DetectflowError):
    """The flow cannot start: unknown source, no provider in finite mode..."""

    code = "flow_error"


class PartitionReader(Protocol[X]):
    """An engine-agnostic source partition (the SQL source's is ``SqlQueueReader``)."""

    def next_batch(self) -> list[X]: ...

    def next_awake(self) -> datetime | None: ...

    def close(self) -> None: ...


class _ReaderPartition(StatelessSourcePartition[X]):
    def __init__(self, reader: PartitionReader[X]) -> None:
        self._reader = reader

    def next_batch(self) -> Iterable[X]:
        return self._reader.next_batch()

    def next_awake(self) -> datetime | None:
        return self._reader.next_awake()

    def close(self) -> None:
        self._reader.close()


class ReaderSource(DynamicSource[X]):
    """A Bytewax source whose partitions are built by ``build(worker_index, worker_count)``."""

    def __init__(self, build: Callable[[int, int], PartitionReader[X]]) -> None:
        self._build = build

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ReaderPartition[X]:
        return _ReaderPartition(self._build(worker_index, worker_count))


class _WriterPartition(StatelessSinkPartition[FrameResult]):
    def __init__(self, writer: ResultWriter) -> None:
        self._writer = writer

    def write_batch(self, items: list[FrameResult]) -> None:
        self._writer.write(items)


class WriterSink(DynamicSink[FrameResult]):
    """Every worker writes its own results through the same (thread-safe) writer."""

    def __init__(self, writer: ResultWriter) -> None:
        self._writer = writer

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WriterPartition:
        return _WriterPartition(self._writer)


class DetectLogic(op.StatefulBatchLogic[Frame, FrameResult, tuple[Frame, ...]]):
    """The detect step for one camera key: submit now, emit on later wake-ups."""

    def __init__(self, engine: DetectEngine, resume: tuple[Frame, ...] | None = None) -> None:
        self._engine = engine
        self._lane: Lane = engine.lane()
        if resume:
            self._lane.submit(resume)

    def on_batch(self, values: list[Frame]) -> tuple[Iterable[FrameResult], bool]:
        self._lane.submit(values)
        return self._emit()

    def on_notify(self) -> tuple[Iterable[FrameResult], bool]:
        return self._emit()

    def on_eof(self) -> tuple[Iterable[FrameResult], bool]:
        return self._emit()

    def notify_at(self) -> datetime | None:
        if self._lane.pending:
            return datetime.now(UTC) + timedelta(seconds=self._engine.wake_interval)
        return None

    def snapshot(self) -> tuple[Frame, ...]:
        return self._lane.frames_in_flight()

    def _emit(self) -> tuple[Iterable[FrameResult], bool]:
        results = self._lane.poll()
        # Discard an idle camera's logic: state must not grow with the key space.
        done = self._lane.pending == 0
        return (results or _EMPTY), (self.DISCARD if done else self.RETAIN)


def build_dataflow(
    source: Any,
    engine: DetectEngine,
    sink: Any,
    *,
    flow_id: str = "detectflow",
    extra_sinks: Iterable[tuple[str, Any]] = (),
) -> Dataflow:
    """Wire ``source`` (frames or failed results) -> detect -> ``sink`` (and extras)."""
    flow = Dataflow(flow_id)
    items = op.input("source", flow, source)
    checked = op.branch("validated", items, lambda item: isinstance(item, Frame))
    keyed = op.key_on("by_camera", checked.trues, camera_key)
    detected = op.stateful_batch("detect", keyed, lambda resume: DetectLogic(engine, resume))
    results = op.merge("results", op.key_rm("unkey", detected), checked.falses)
    op.output("store", results, sink)
    for name, extra in extra_sinks:
        op.output(f"sink_{name}", results, extra)
    return flow


def _call_factory(factory: Callable[..., Any], url: str, settings: Settings, **context: Any) -> Any:
    """Call a source factory with the context arguments it declares.

    A vendor's factory written as ``factory(url, settings)`` keeps working
    when we add context later, as pluggy does for hook arguments.
    """
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return factory(url, settings, **context)
    names = {p.name for p in params}
    return factory(url, settings, **{k: v for k, v in context.items() if k in names})


def _source_scheme(url: str) -> str:
    scheme = urlsplit(url).scheme
    return scheme or url.strip().rstrip(":/")


def run_flow(
    settings: Settings,
    *,
    source_url: str = "sql",
    workers: int = 1,
    until_empty: bool = False,
    database: Any = None,
    live: LivePublisher | None = None,
    stats: FlowMetrics | None = None,
    registry: PluginRegistry | None = None,
    stop: threading.Event | None = None,
    wake_interval: float = 0.01,
) -> FlowMetrics:
    """Run the dataflow in this thread until its source ends; return its counters.

    Runs from any thread (the demo runs it beside the server). ``workers > 1``
    runs that many Bytewax workers (threads) in this process; PostgreSQL's
    ``SKIP LOCKED`` claiming also lets several processes share one queue.
    ``until_empty`` ends once the queue has nothing pending; otherwise the
    flow runs until ``stop`` is set, then finishes the frames it claimed.
    ``database`` defaults to :func:`detectflow.store.open_database` (migrated
    to head); ``live`` (a :class:`~detectflow.store.live.LiveView`) is
    optional.
    """
    if workers < 1:
        raise FlowError("workers must be at least 1")
    registry = registry or get_registry(settings)
    factories = registry.frame_sources()
    scheme = _source_scheme(source_url)
    factory = factories.get(scheme)
    if factory is None:
        known = ", ".join(sorted(factories)) or "none"
        raise FlowError(f"no frame source for {scheme!r} (known: {known})")

    own_database = database is None
    if own_database:
        from detectflow.store import open_database

        database = open_database(settings)
        database.upgrade()
    metrics = stats or FlowMetrics()
    engine = DetectEngine(
        settings,
        database.active_provider,
        registry=registry,
        metrics=metrics,
        wake_interval=wake_interval,
    )
    try:
        engine.start()
        if until_empty and not engine.has_provider:
            pending = database.queue_stats().get("pending", 0)
            if pending:
                raise FlowError(f"{NO_PROVIDER}: {pending} frame(s) stay pending")
        try:
            source = _call_factory(
                factory,
                source_url,
                settings,
                database=database,
                engine=engine,
                until_empty=until_empty,
                stop=stop,
                metrics=metrics,
            )
        except ValueError as exc:
            raise FlowError(str(exc)) from exc
        sink = WriterSink(ResultWriter(database, live=live, registry=registry, metrics=metrics))
        flow = build_dataflow(source, engine, sink)
        if workers == 1:
            run_main(flow)
        else:
            cli_main(flow, workers_per_process=workers)
    finally:
        engine.close()
        if own_database:
            database.dispose()
    return metrics
