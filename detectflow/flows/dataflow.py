"""The Bytewax wiring of the dataflow.

::

    source ──> validated? ──yes──> key by camera ──> detect ──> objects ──┐
                  └──no (failed result with its reason) ─────────────────────┴──> recorder
                                                                                └──> plugin sinks

``objects`` (:class:`ObjectsLogic`, keyed by camera like ``detect``, so a
camera's results never leave its worker) tracks each camera's objects and
sets ``FrameResult.objects`` and the detections' track ids; its snapshot
is the camera's tracker state, so a resumed flow keeps its tracks. Without
tracking (``FlowOptions.tracking`` False) results go straight on.

The recorder (:class:`~detectflow.store.recorder.Recorder`, the same one
inline ``send-frame`` uses) stores the results with their window tallies,
then publishes them live and notifies plugins.

``detect`` never blocks its worker: ``on_batch`` hands frames to the
:class:`~detectflow.flows.engine.DetectEngine` and returns, and results are
emitted on later wake-ups (``notify_at`` every ``wake_interval`` while frames
are in flight). Its snapshot is the frames in flight, so a flow resumed from
a recovery store resubmits them.

Bytewax ends a flow as soon as every input has ended, dropping pending
notifications, so sources must end only once their frames have come back
(the SQL source waits for the engine's ``outstanding`` count to reach zero,
and for every queue row to have its outcome).

A source object may also have ``acknowledge(results)``, called by the
recorder after each stored batch (Redis Streams and MQTT acknowledge their
input only then); ``close()``, called once when the flow has ended;
``resume(frames)``, which screens the frames a recovery snapshot would
resubmit (the SQL queue drops those whose row is already final); and
``unfinished()``, which a finite run asks at the end and reports as a
:class:`FlowError` when it names frames left undone.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, TypeVar, cast
from urllib.parse import urlsplit

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import DynamicSource, Source, StatelessSourcePartition
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition
from bytewax.run import cli_main as _cli_main
from bytewax.testing import run_main as _run_main

from detectflow.core.cameras import Camera
from detectflow.core.errors import DetectflowError
from detectflow.core.models import Frame, FrameResult, ProviderConfig
from detectflow.core.plugins import PluginRegistry, get_registry
from detectflow.core.settings import Settings
from detectflow.flows.camera_status import StatusFeed
from detectflow.flows.engine import NO_PROVIDER, DetectEngine, Lane
from detectflow.flows.metrics import FlowMetrics
from detectflow.flows.objects import CameraStep, ObjectsConfigLookup, table_objects_config
from detectflow.flows.recovery import recovery_config
from detectflow.flows.sinks import BackgroundWriter
from detectflow.flows.steps import camera_key
from detectflow.store.breakers import BreakerRecorder, EventStore
from detectflow.store.heartbeat import Heartbeat
from detectflow.store.live import LiveView
from detectflow.store.recorder import LivePublisher, Recorder, ResultStore
from detectflow.store.snapshots import snapshot_store

if TYPE_CHECKING:
    from detectflow.core.hookspecs import FrameSourceFactory
    from detectflow.store import Database

__all__ = [
    "DetectLogic",
    "FlowDatabase",
    "FlowError",
    "FlowOptions",
    "ObjectsLogic",
    "PartitionReader",
    "ReaderSource",
    "ResumeScreen",
    "WriterSink",
    "build_dataflow",
    "run_flow",
]

log = logging.getLogger(__name__)

X = TypeVar("X")

_EMPTY: tuple[FrameResult, ...] = ()

# Bytewax's runners are untyped (a Rust extension); give them their signatures.
run_main: Callable[..., None] = _run_main
cli_main: Callable[..., None] = _cli_main


class FlowError(DetectflowError):
    """The flow cannot start: unknown source, no provider in finite mode..."""

    code = "flow_error"


class FlowDatabase(ResultStore, EventStore, Protocol):
    """What :func:`run_flow` needs of :class:`detectflow.store.Database` (sources may
    need more: the SQL source's ``QueueStore``)."""

    def active_provider(self) -> ProviderConfig | None: ...

    def list_providers(self) -> list[ProviderConfig]: ...

    def queue_stats(self) -> dict[str, int]: ...

    def get_camera(self, camera_id: str) -> Camera | None: ...


ResumeScreen = Callable[[Sequence[Frame]], tuple[list[Frame], list[FrameResult]]]
"""Frames a snapshot would resubmit -> (frames to detect again, results to record now)."""


class PartitionReader(Protocol[X]):
    """An engine-agnostic source partition (the SQL source's is ``SqlQueueReader``)."""

    def next_batch(self) -> list[X]: ...

    def next_awake(self) -> datetime | None: ...

    def close(self) -> None: ...


class _ReaderPartition(StatelessSourcePartition[X]):
    def __init__(self, reader: PartitionReader[X], heartbeat: Heartbeat | None = None) -> None:
        self._reader = reader
        self._heartbeat = heartbeat

    def next_batch(self) -> Iterable[X]:
        if self._heartbeat is not None:
            self._heartbeat.beat()  # from the worker's own loop, so a stuck worker goes quiet
        return self._reader.next_batch()

    def next_awake(self) -> datetime | None:
        return self._reader.next_awake()

    def close(self) -> None:
        self._reader.close()
        if self._heartbeat is not None:
            self._heartbeat.stop()


class ReaderSource(DynamicSource[X]):
    """A Bytewax source whose partitions are built by ``build(worker_index, worker_count)``.

    ``acknowledge`` hears each batch of results once stored, ``close`` runs
    when the flow ends, ``resume`` screens resumed frames and ``unfinished``
    names what a finite run left undone (see the module docstring).
    """

    def __init__(
        self,
        build: Callable[[int, int], PartitionReader[X]],
        *,
        acknowledge: Callable[[Sequence[FrameResult]], None] | None = None,
        close: Callable[[], None] | None = None,
        resume: ResumeScreen | None = None,
        unfinished: Callable[[], str | None] | None = None,
    ) -> None:
        self._build = build
        self._acknowledge = acknowledge
        self._close = close
        self.resume = resume
        self.unfinished = unfinished
        self.heartbeats: Callable[[int, int], Heartbeat] | None = None
        """Makes each worker's heartbeat, given (worker_index, worker_count); set by run_flow."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ReaderPartition[X]:
        heartbeat = self.heartbeats(worker_index, worker_count) if self.heartbeats else None
        return _ReaderPartition(self._build(worker_index, worker_count), heartbeat)

    @property
    def acknowledges(self) -> bool:
        """Does this source acknowledge its input once the results are stored?"""
        return self._acknowledge is not None

    def acknowledge(self, results: Sequence[FrameResult]) -> None:
        if self._acknowledge is not None:
            self._acknowledge(results)

    def close(self) -> None:
        if self._close is not None:
            self._close()


class _WriterPartition(StatelessSinkPartition[FrameResult]):
    def __init__(self, writer: Recorder, background: BackgroundWriter | None) -> None:
        self._writer = writer
        self._background = background

    def write_batch(self, items: list[FrameResult]) -> None:
        if self._background is None:
            self._writer.record(items)
        else:
            self._background.submit(items)

    def close(self) -> None:
        if self._background is not None:
            self._background.close()


class WriterSink(DynamicSink[FrameResult]):
    """Every worker writes its own results through the same (thread-safe) writer.

    With ``background=True`` each worker writes from a
    :class:`~detectflow.flows.sinks.BackgroundWriter` thread of its own, so
    it never waits on the store while it has room to queue. A write error
    then surfaces on a later batch or when the flow ends, so
    :func:`run_flow` uses it only for sources that acknowledge nothing (the
    SQL queue, folders), and sources that acknowledge their input after the
    write (Redis Streams, MQTT) fail on the very batch that failed.

    Bytewax closes a partition only when a flow ends on finite input, so
    :func:`run_flow` calls :meth:`close` too: it writes what is still queued
    and stops the threads.
    """

    def __init__(self, writer: Recorder, *, background: bool = False) -> None:
        self._writer = writer
        self._background = background
        self._threads: list[BackgroundWriter] = []
        self._lock = threading.Lock()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WriterPartition:
        if not self._background:
            return _WriterPartition(self._writer, None)
        background = BackgroundWriter(self._writer, name=f"detectflow-writer-{worker_index}")
        with self._lock:
            self._threads.append(background)
        return _WriterPartition(self._writer, background)

    def close(self) -> None:
        """Write everything queued and stop every writer thread; raise the first error."""
        with self._lock:
            threads = list(self._threads)
        first: BaseException | None = None
        for background in threads:
            try:
                background.close()
            except BaseException as exc:
                first = first or exc
        if first is not None:
            raise first


class DetectLogic(op.StatefulBatchLogic[Frame, FrameResult, tuple[Frame, ...]]):
    """The detect step for one camera key: submit now, emit on later wake-ups.

    Frames resumed from a snapshot go through ``screen`` first (the source's
    ``resume``): what it returns as results is emitted on the first wake-up.
    """

    def __init__(
        self,
        engine: DetectEngine,
        resume: tuple[Frame, ...] | None = None,
        screen: ResumeScreen | None = None,
        in_flight: dict[str, int] | None = None,
    ) -> None:
        self._engine = engine
        self._lane: Lane = engine.lane()
        self._ready: list[FrameResult] = []
        self._in_flight = in_flight
        self._camera = resume[0].camera_id if resume else None
        if resume:
            frames, self._ready = screen(resume) if screen else (list(resume), [])
            if frames:
                self._lane.submit(frames)

    def on_batch(self, values: list[Frame]) -> tuple[Iterable[FrameResult], bool]:
        self._camera = values[0].camera_id
        self._lane.submit(values)
        return self._emit()

    def on_notify(self) -> tuple[Iterable[FrameResult], bool]:
        return self._emit()

    def on_eof(self) -> tuple[Iterable[FrameResult], bool]:
        return self._emit()

    def notify_at(self) -> datetime | None:
        if self._ready:
            return datetime.now(UTC)
        if self._lane.pending:
            return datetime.now(UTC) + timedelta(seconds=self._engine.wake_interval)
        return None

    def snapshot(self) -> tuple[Frame, ...]:
        return self._lane.frames_in_flight()

    def _emit(self) -> tuple[Iterable[FrameResult], bool]:
        results = self._lane.poll()
        if self._ready:
            results, self._ready = [*self._ready, *results], []
        # Discard an idle camera's logic: state must not grow with the key space.
        pending = self._lane.pending
        if self._in_flight is not None and self._camera is not None:
            self._in_flight[self._camera] = pending  # the objects step reads it
        done = pending == 0
        return (results or _EMPTY), (self.DISCARD if done else self.RETAIN)


class ObjectsLogic(op.StatefulBatchLogic[FrameResult, FrameResult, dict[str, Any]]):
    """The objects step for one camera key (:class:`~detectflow.flows.objects.CameraStep`).

    Bytewax gives a builder the state but not the key, so the camera's step is
    made from its first result (or from the snapshot, which names the camera).

    Results wait in the reorder buffer only while an older frame may still
    come: as soon as the camera has no frame left in the detect step
    (``in_flight``, kept by its :class:`DetectLogic` on the same worker),
    what waits is let out. Holding results longer would hold back their
    acknowledgement too, and a source that bounds unacknowledged input
    (MQTT's receive maximum) would then wait on the buffer. As a fallback,
    results that waited ``idle`` seconds of wall clock with none arriving are
    let out too. That decides only when frames leave the buffer; which
    objects they make is decided by frame time.
    """

    def __init__(
        self,
        configs: ObjectsConfigLookup,
        state: dict[str, Any] | None,
        idle: float,
        in_flight: dict[str, int] | None = None,
    ) -> None:
        self._configs = configs
        self._in_flight = in_flight if in_flight is not None else {}
        self._idle = timedelta(seconds=idle)
        self._last = datetime.now(UTC)
        self._step: CameraStep | None = None
        if state is not None:
            camera = str(state["objects"]["camera_id"])
            self._step = CameraStep(camera, configs(camera), state)

    def _camera(self, first: FrameResult) -> CameraStep:
        if self._step is None:
            camera = first.frame.camera_id
            self._step = CameraStep(camera, self._configs(camera))
        return self._step

    def on_batch(self, values: list[FrameResult]) -> tuple[Iterable[FrameResult], bool]:
        self._last = datetime.now(UTC)
        step = self._camera(values[0])
        out = step.push(values)
        if step.waiting and self._drained(step):
            out += step.flush()
        return out, self.RETAIN

    def on_notify(self) -> tuple[Iterable[FrameResult], bool]:
        step = self._step
        if step is None or not step.waiting:
            return _EMPTY, self.RETAIN
        if self._drained(step) or datetime.now(UTC) - self._last >= self._idle:
            return step.flush(), self.RETAIN
        return _EMPTY, self.RETAIN

    def _drained(self, step: CameraStep) -> bool:
        """No frame of this camera is left in the detect step: none older can come."""
        return self._in_flight.get(step.camera_id, 0) == 0

    def on_eof(self) -> tuple[Iterable[FrameResult], bool]:
        return (self._step.stop() if self._step else _EMPTY), self.RETAIN

    def notify_at(self) -> datetime | None:
        if self._step is None or not self._step.waiting:
            return None
        if self._drained(self._step):
            return datetime.now(UTC)
        return self._last + self._idle

    def snapshot(self) -> dict[str, Any]:
        assert self._step is not None  # a logic exists only once a result came
        return self._step.snapshot()


def build_dataflow(
    source: Source[Frame | FrameResult],
    engine: DetectEngine,
    sink: Sink[FrameResult],
    *,
    flow_id: str = "detectflow",
    extra_sinks: Iterable[tuple[str, Sink[FrameResult]]] = (),
    resume: ResumeScreen | None = None,
    objects: ObjectsConfigLookup | None = None,
    objects_idle: float = 0.5,
) -> Dataflow:
    """Wire ``source`` (frames or failed results) -> detect -> objects -> ``sink`` (and
    extras); ``resume`` screens the frames a recovery snapshot resubmits. ``objects``
    gives each camera's objects config; None leaves tracking out."""
    flow = Dataflow(flow_id)
    items = op.input("source", flow, source)
    checked = op.branch("validated", items, _is_frame)
    # What is not a frame is a failed result (the source refused the input).
    refused = cast("Stream[FrameResult]", checked.falses)
    keyed = op.key_on("by_camera", checked.trues, camera_key)
    # Each camera's frames still in the detect step (one worker owns a camera, and
    # both steps run on it), so the objects step holds no result longer than needed.
    in_flight: dict[str, int] = {}
    detected = op.stateful_batch(
        "detect", keyed, lambda state: DetectLogic(engine, state, resume, in_flight)
    )
    if objects is not None:
        configs = objects
        detected = op.stateful_batch(
            "objects",
            detected,
            lambda state: ObjectsLogic(configs, state, objects_idle, in_flight),
        )
    results = op.merge("results", op.key_rm("unkey", detected), refused)
    op.output("store", results, sink)
    for name, extra in extra_sinks:
        op.output(f"sink_{name}", results, extra)
    return flow


def _is_frame(item: Frame | FrameResult) -> TypeGuard[Frame]:
    return isinstance(item, Frame)


def _call_factory(
    factory: FrameSourceFactory, url: str, settings: Settings, **context: Any
) -> Source[Frame | FrameResult]:
    """Call a source factory with the context arguments it declares.

    A vendor's factory written as ``factory(url, settings)`` keeps working
    when we add context later, as pluggy does for hook arguments.
    """
    return factory(url, settings, **_declared(factory, context))


def _declared(factory: Callable[..., Any], context: dict[str, Any]) -> dict[str, Any]:
    """The context arguments ``factory`` declares (all of them for ``**kwargs``)."""
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return context
    names = {p.name for p in params}
    return {k: v for k, v in context.items() if k in names}


def _plugin_sinks(
    registry: PluginRegistry, settings: Settings, **context: Any
) -> list[tuple[str, Sink[FrameResult]]]:
    """Every plugin sink a factory made (None: that sink is not configured)."""
    made: list[tuple[str, Sink[FrameResult]]] = []
    for name, make in registry.sinks().items():
        try:
            sink = make(settings, **_declared(make, context))
        except ValueError as exc:  # a malformed setting, e.g. DETECTFLOW_PUBLISH_MQTT_URL
            raise FlowError(f"sink {name}: {exc}") from exc
        if sink is not None:
            made.append((name, sink))
    return made


def _close_sinks(sinks: Sequence[tuple[str, Sink[FrameResult]]]) -> None:
    """Bytewax closes partitions only when finite input ends: let each plugin sink
    with a ``close()`` finish (publish what it holds) whenever the flow ends."""
    for name, sink in sinks:
        close = getattr(sink, "close", None)
        if close is None:
            continue
        try:
            close()
        except Exception:
            log.exception("plugin sink %s failed to close", name)


@dataclass(frozen=True, slots=True)
class _ExecutionPlan:
    """How Bytewax runs the flow: one worker, threads, or a cluster; with or without recovery."""

    workers: int
    process_id: int | None
    addresses: tuple[str, ...] | None
    recovery: Any  # bytewax RecoveryConfig
    epoch: timedelta | None

    def run(self, flow: Dataflow) -> None:
        if self.workers == 1 and self.addresses is None:
            run_main(flow, epoch_interval=self.epoch, recovery_config=self.recovery)
        else:
            cli_main(
                flow,
                workers_per_process=self.workers,
                process_id=self.process_id,
                addresses=list(self.addresses) if self.addresses else None,
                epoch_interval=self.epoch,
                recovery_config=self.recovery,
            )


def _execution_plan(settings: Settings, options: FlowOptions) -> _ExecutionPlan:
    """Check the scale-out and recovery options; refuse bad ones with a clear FlowError."""
    workers, process_id = options.workers, options.process_id
    if workers < 1:
        raise FlowError("workers must be at least 1")
    if settings.frame_backlog < 1:
        raise FlowError("the frame backlog (DETECTFLOW_FRAME_BACKLOG) must be at least 1")
    if settings.store_retry_seconds < 0:
        raise FlowError("DETECTFLOW_STORE_RETRY_SECONDS may not be negative")
    cluster = tuple(a.strip() for a in options.addresses or () if a.strip()) or None
    if cluster is None and process_id is not None:
        raise FlowError("--process-id needs --addresses (every process's host:port)")
    if cluster is not None:
        if process_id is None:
            raise FlowError("--addresses needs --process-id (this process's index in them)")
        if not 0 <= process_id < len(cluster):
            raise FlowError(
                f"--process-id must be 0..{len(cluster) - 1} for {len(cluster)} address(es)"
            )
        bad = [a for a in cluster if not _is_host_port(a)]
        if bad:
            raise FlowError(f"--addresses wants host:port, got {bad[0]!r}")
    interval = (
        settings.snapshot_interval_seconds
        if options.snapshot_interval is None
        else options.snapshot_interval
    )
    if not interval > 0:
        raise FlowError("the snapshot interval must be more than 0 seconds")
    directory = options.recovery_dir or settings.recovery_dir
    recovery = None
    if directory is not None:
        processes = len(cluster) if cluster else 1
        try:
            recovery = recovery_config(Path(directory), workers * processes)
        except OSError as exc:
            raise FlowError(f"cannot use recovery directory {directory}: {exc}") from None
    return _ExecutionPlan(
        workers=workers,
        process_id=process_id,
        addresses=cluster,
        recovery=recovery,
        epoch=timedelta(seconds=interval) if directory is not None else None,
    )


def _close_quietly(sink: WriterSink) -> None:
    """The flow already failed: stop the writer threads without hiding why."""
    try:
        sink.close()
    except Exception:
        log.exception("writing the last results failed while the flow was stopping")


def _is_host_port(address: str) -> bool:
    host, _, port = address.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def _source_scheme(url: str) -> str:
    scheme = urlsplit(url).scheme
    return scheme or url.strip().rstrip(":/")


@dataclass(frozen=True, slots=True)
class FlowOptions:
    """What a flow run does; :func:`run_flow` takes the objects it does it with apart.

    ``until_empty`` ends once the source has nothing left (for the SQL
    queue: nothing pending or processing); otherwise the flow runs until
    ``stop`` is set, then finishes the frames it claimed. ``workers > 1``
    runs that many Bytewax workers (threads) in this process. A Bytewax
    cluster of several processes: start each with the same ``addresses``
    (``host:port`` of every process, in order) and its own ``process_id``;
    ``workers`` is then per process. ``recovery_dir`` (default
    ``settings.recovery_dir``) turns on Bytewax recovery, with a snapshot
    every ``snapshot_interval`` seconds (default
    ``settings.snapshot_interval_seconds``); see
    :mod:`detectflow.flows.recovery`. ``wake_interval`` is how often a busy
    detect step looks for finished results. ``tracking`` turns the objects
    step on (the default) or off (detections without track ids or objects).
    """

    source_url: str = "sql"
    workers: int = 1
    until_empty: bool = False
    wake_interval: float = 0.01
    process_id: int | None = None
    addresses: tuple[str, ...] | None = None
    recovery_dir: Path | None = None
    snapshot_interval: float | None = None
    camera_id: str | None = None
    """The camera id of a single-camera video source (``--camera-id``)."""
    tracking: bool = True


def run_flow(
    settings: Settings,
    options: FlowOptions | None = None,
    *,
    database: FlowDatabase | None = None,
    live: LivePublisher | None = None,
    metrics: FlowMetrics | None = None,
    registry: PluginRegistry | None = None,
    stop: threading.Event | None = None,
    objects_config: ObjectsConfigLookup | None = None,
) -> FlowMetrics:
    """Run the dataflow in this thread until its source ends; return its counters.

    Runs from any thread (the demo runs it beside the server); ``options``
    says what to run (:class:`FlowOptions`). PostgreSQL's ``SKIP LOCKED``
    claiming lets several processes share one queue. ``database`` defaults
    to :func:`detectflow.store.open_database` (migrated to head); ``live``
    (a :class:`~detectflow.store.live.LiveView`) is optional; its ``stats``
    view, if any, is invalidated as window statistics change. ``metrics``
    collects the counters (a new :class:`FlowMetrics` by default). The
    latest-frame-wins policy comes from ``settings.latest_frame_wins`` and
    ``settings.frame_backlog``.

    A finite run (``until_empty``) that ends with frames its source names
    unfinished (no active provider, say) raises :class:`FlowError` saying
    how many and why, after recording everything it did finish.

    ``objects_config`` gives each camera's zones, masks and filters for the
    objects step (default: the cameras table's, see
    :func:`~detectflow.flows.objects.table_objects_config`).
    """
    options = options or FlowOptions()
    plan = _execution_plan(settings, options)
    registry = registry or get_registry(settings)
    factories = registry.frame_sources()
    scheme = _source_scheme(options.source_url)
    factory = factories.get(scheme)
    if factory is None:
        known = ", ".join(sorted(factories)) or "none"
        raise FlowError(f"no frame source for {scheme!r} (known: {known})")

    own_database: Database | None = None
    if database is None:
        from detectflow.store import open_database

        database = own_database = open_database(settings)
        own_database.upgrade()
    metrics = metrics or FlowMetrics()
    # Per-camera status for the server (/api/v1/cameras/status), in the live cache.
    feed = StatusFeed(live.camera_board()) if isinstance(live, LiveView) else None
    # The flow's events that are no frame's outcome (breakers, cameras): one writer.
    events = BreakerRecorder(
        database, live=live if isinstance(live, LiveView) else None, registry=registry
    )
    engine = DetectEngine(
        settings,
        database.active_provider,
        registry=registry,
        metrics=metrics,
        wake_interval=options.wake_interval,
        providers=database.list_providers,
        breaker_sink=events,
        keep_images=options.tracking,  # the objects step keeps the best frames' images
        observer=feed,
    )
    # Zones, masks and filters from the cameras table unless the caller gives them.
    configs = objects_config or table_objects_config(database)
    try:
        engine.start()
        if options.until_empty and not engine.has_provider:
            pending = database.queue_stats().get("pending", 0)
            if pending:
                raise FlowError(f"{NO_PROVIDER}: {pending} frame(s) stay pending")
        try:
            source = _call_factory(
                factory,
                options.source_url,
                settings,
                database=database,
                engine=engine,
                until_empty=options.until_empty,
                stop=stop,
                metrics=metrics,
                events=events,
                camera_id=options.camera_id,
            )
        except ValueError as exc:
            raise FlowError(str(exc)) from exc
        if isinstance(live, LiveView) and isinstance(source, ReaderSource):
            source.heartbeats = live.heartbeat  # for /api/v1/health
        if feed is not None:
            _watch_readers(feed, source)
            feed.start()
        try:
            writer = Recorder(
                database,
                live=live,
                stats=getattr(live, "stats", None),
                registry=registry,
                observer=metrics,
                on_stored=getattr(source, "acknowledge", None),
                give_up_after=settings.store_retry_seconds,
                snapshots=snapshot_store(settings) if options.tracking else None,
            )
            # A source that acknowledges nothing loses nothing to a write
            # that fails later: write its results in the background.
            sink = WriterSink(writer, background=not getattr(source, "acknowledges", True))
            # Plugin sinks (the detectflow_sinks hook) see every result too.
            plugin_sinks = _plugin_sinks(registry, settings, database=database, metrics=metrics)
            try:
                flow = build_dataflow(
                    source,
                    engine,
                    sink,
                    extra_sinks=plugin_sinks,
                    resume=getattr(source, "resume", None),
                    objects=configs if options.tracking else None,
                )
                try:
                    plan.run(flow)
                except BaseException:
                    _close_quietly(sink)
                    raise
                sink.close()  # results written (and acknowledged) before the source closes
            finally:
                _close_sinks(plugin_sinks)
            if options.until_empty and not (stop is not None and stop.is_set()):
                _check_finished(source)
        finally:
            close_source = getattr(source, "close", None)
            if close_source is not None:
                close_source()
    finally:
        engine.close()
        if feed is not None:
            feed.close()
        if own_database is not None:
            own_database.dispose()
    return metrics


def _watch_readers(feed: StatusFeed, source: object) -> None:
    """A video source's readers report decoding and connection (any source with
    ``counts`` and ``reading``, as :class:`~detectflow.flows.source_video.VideoSource`)."""
    counts = getattr(source, "counts", None)
    reading = getattr(source, "reading", None)
    if callable(counts) and callable(reading):
        feed.watch(counts, reading)


def _check_finished(source: object) -> None:
    """A finite run must not end "successfully" with frames left undone."""
    unfinished: Callable[[], str | None] | None = getattr(source, "unfinished", None)
    problem = unfinished() if unfinished is not None else None
    if problem:
        raise FlowError(problem)
