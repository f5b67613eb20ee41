"""The non-blocking detect engine: many provider calls in flight per process.

Bytewax callbacks are synchronous and run on the worker thread; a provider
call is I/O that takes tens of milliseconds. Calling it from the callback
would leave one frame in flight per worker (a plain ``op.map`` reaches about
3% of the ceiling). Instead every call runs on one asyncio event loop in a
background thread: the worker hands frames over with :meth:`Lane.submit` and
picks finished results up with :meth:`Lane.poll`, and neither ever waits.
Retry backoff (inside :func:`~detectflow.core.pipeline.run_frame`) sleeps on
the loop too, never on the worker.

Two limits keep memory and the provider safe:

* ``max_in_flight`` provider calls at once (that many worker tasks at most on
  the loop, each taking queued frames one after another);
* ``max_in_flight + queue_limit`` frames held by the engine in total
  (submitted and not yet polled, plus slots a source has
  :meth:`DetectEngine.acquire`-d, for at most :data:`RESERVATION_SECONDS`).
  A source claims only what it was granted, which is the dataflow's
  backpressure; the extra ``queue_limit`` frames (default: twice the larger
  of ``max_in_flight`` and ``batch_size``, room for two claims) wait on the
  loop so the provider stays busy between worker wake-ups.

The engine owns the provider configuration: it reads the active one through
the ``provider`` callable every ``refresh_seconds`` (off the loop, in a
thread) and detects through a :class:`~detectflow.adapters.detector.Detector`,
the same path inline ``send-frame`` takes (its pool recreates an adapter
when its config changes, closes the old one once its calls finish, and
closes them all on shutdown). While
there is no active provider, :attr:`DetectEngine.has_provider` is False and
the SQL source does not claim; a frame submitted anyway fails with the
reason ``"no active provider configured"`` rather than waiting forever.

Latest frame wins (``latest_frame_wins``, off by default). Live video is
worth detecting only while it is fresh: when a provider falls behind, a
camera's frames queue up and each waits longer than the last. With this
policy, once more than ``backlog`` frames of one lane (one camera) wait for
a provider call, the oldest waiting ones are skipped: their result says so
(:data:`SKIPPED` reason, a ``frame_skipped`` event, queue status
``skipped``) and goes to the sinks like any other, so a skipped frame is
recorded, counted and acknowledged, never silently lost. Skipping frees
engine slots at once, so the source drains its backlog quickly and the
provider only sees the newest frames.

Several providers (``providers``, e.g. ``Database.list_providers``): every
config is read, each camera gets its ordered provider group
(:class:`~detectflow.core.routing.RouteTable`; assignments live in the
configs' ``options``), and a camera with more than one provider is served
through a :class:`~detectflow.adapters.failover.FailoverAdapter` sharing
the engine's :class:`~detectflow.adapters.failover.BreakerBoard`. Breaker
changes go to ``breaker_sink`` from one writer task on the loop (in order,
off the loop in a thread), and its states are republished every
``BREAKER_REFRESH_SECONDS`` so the cache entries the summary reads stay.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from detectflow.adapters.detector import Detector
from detectflow.adapters.failover import BreakerBoard
from detectflow.core.breaker import BreakerChange, BreakerSnapshot
from detectflow.core.ids import event_id
from detectflow.core.models import (
    DetectionEvent,
    EventType,
    Frame,
    FrameResult,
    ProviderConfig,
    Severity,
    strip_image,
)
from detectflow.core.pipeline import failed_result
from detectflow.core.plugins import PluginRegistry, get_registry
from detectflow.core.routing import RouteTable
from detectflow.core.settings import Settings
from detectflow.flows.metrics import FlowMetrics

__all__ = [
    "BREAKER_REFRESH_SECONDS",
    "NO_PROVIDER",
    "SKIPPED",
    "BreakerSink",
    "DetectEngine",
    "FrameObserver",
    "Lane",
    "is_skipped",
    "skipped_result",
]

log = logging.getLogger(__name__)

NO_PROVIDER = "no active provider configured"
RESERVATION_SECONDS = 1.0
"""How long slots reserved by :meth:`DetectEngine.acquire` wait to be used.

In a Bytewax cluster a frame read here may be detected in another process
(the detect step is routed by camera), whose engine never hears of this
reservation; expiring it keeps this process's capacity from leaking."""
SKIPPED = "skipped: a newer frame of this camera is waiting (latest frame wins)"

BREAKER_REFRESH_SECONDS = 60.0
"""How often the engine republishes its breaker states (their cache entries expire)."""

ProviderLookup = Callable[[], ProviderConfig | None]
ProvidersLookup = Callable[[], Sequence[ProviderConfig]]


class BreakerSink(Protocol):
    """Where breaker changes go (:class:`detectflow.store.breakers.BreakerRecorder`)."""

    def record(self, changes: Sequence[BreakerChange]) -> None: ...

    def refresh(self, snapshots: Sequence[BreakerSnapshot]) -> None: ...


class FrameObserver(Protocol):
    """Hears of frames going into the engine and results coming out
    (:class:`detectflow.flows.camera_status.StatusFeed`), on the caller's thread."""

    def submitted(self, frames: Sequence[Frame]) -> None: ...

    def completed(self, results: Sequence[FrameResult]) -> None: ...


def skipped_result(frame: Frame, backlog: int, *, source: str = "detectflow") -> FrameResult:
    """The record of a frame skipped by the latest-frame-wins policy."""
    event = DetectionEvent(
        id=event_id(frame.frame_id, EventType.FRAME_SKIPPED),
        camera_id=frame.camera_id,
        event_type=EventType.FRAME_SKIPPED,
        severity=Severity.INFO,
        message=f"frame {frame.frame_id} skipped: more than {backlog} newer frame(s) waiting",
        source_system=source,
        created_at=frame.timestamp,  # the key's time must come back with a replay, as the id
        updated_at=frame.timestamp,
    )
    return FrameResult(frame, (), (event,), SKIPPED, 0, 0)


def is_skipped(result: FrameResult) -> bool:
    """Whether ``result`` is a skip (not a failure) of the latest-frame-wins policy."""
    return result.error is not None and any(
        e.event_type == EventType.FRAME_SKIPPED for e in result.events
    )


class Lane:
    """One caller's view of the engine: the frames it submitted and their results.

    Each detect step (one per camera key on a Bytewax worker) has its own lane,
    so it emits exactly the results of the frames it was given.
    """

    def __init__(self, engine: DetectEngine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._running: dict[int, Frame] = {}
        self._done: deque[FrameResult] = deque()
        self._next_ticket = 0
        # Loop-thread only: tickets not yet calling the provider, oldest first.
        self._waiting: deque[int] = deque()

    def submit(self, frames: Iterable[Frame]) -> None:
        """Hand frames to the engine; returns at once."""
        batch: list[tuple[int, Frame]] = []
        with self._lock:
            for frame in frames:
                ticket = self._next_ticket
                self._next_ticket += 1
                self._running[ticket] = frame
                batch.append((ticket, frame))
        if batch:
            self._engine._schedule(self, batch)
            if self._engine.observer is not None:
                self._engine.observer.submitted([frame for _, frame in batch])

    def poll(self) -> list[FrameResult]:
        """The results finished since the last poll (image bytes already dropped)."""
        results: list[FrameResult] = []
        while True:
            try:
                results.append(self._done.popleft())
            except IndexError:
                break
        if results:
            self._engine._retire(len(results))
            if self._engine.observer is not None:
                self._engine.observer.completed(results)
        return results

    @property
    def pending(self) -> int:
        """Frames submitted here whose results were not polled yet."""
        with self._lock:
            return len(self._running) + len(self._done)

    def frames_in_flight(self) -> tuple[Frame, ...]:
        """The frames still being detected (a snapshot resubmits them on restart)."""
        with self._lock:
            return tuple(self._running.values())

    def _frame(self, ticket: int) -> Frame | None:
        with self._lock:
            return self._running.get(ticket)

    def _finish(self, ticket: int, result: FrameResult) -> None:
        with self._lock:
            self._running.pop(ticket, None)
            self._done.append(result)


class DetectEngine:
    """One asyncio loop thread running provider calls for every worker of a process."""

    def __init__(
        self,
        settings: Settings,
        provider: ProviderLookup,
        *,
        registry: PluginRegistry | None = None,
        metrics: FlowMetrics | None = None,
        max_in_flight: int | None = None,
        queue_limit: int | None = None,
        wake_interval: float = 0.01,
        refresh_seconds: float = 1.0,
        source_system: str = "detectflow",
        providers: ProvidersLookup | None = None,
        breakers: BreakerBoard | None = None,
        breaker_sink: BreakerSink | None = None,
        latest_frame_wins: bool | None = None,
        backlog: int | None = None,
        keep_images: bool = False,
        observer: FrameObserver | None = None,
    ) -> None:
        self.settings = settings
        self.observer = observer
        """Told of each batch submitted and each batch of results polled (camera status)."""
        # The objects step needs a detected frame's image until it knows whether the
        # frame became an object's best (its snapshot); it strips the rest itself.
        self.keep_images = keep_images
        self.max_in_flight = max(1, max_in_flight or settings.max_in_flight)
        if queue_limit is None:
            # Room for two claims of a source beyond the calls in flight: a
            # batch is claimed while the previous one still waits on the loop.
            queue_limit = 2 * max(self.max_in_flight, settings.batch_size)
        self.capacity = self.max_in_flight + max(0, queue_limit)
        self.wake_interval = wake_interval
        self.refresh_seconds = refresh_seconds
        self.metrics = metrics
        self._provider = provider
        self._providers = providers
        self._routes = RouteTable.build(())
        self._reported_invalid: set[tuple[str, datetime]] = set()
        self.breakers = breakers or BreakerBoard(source_system=source_system)
        self._breaker_sink = breaker_sink
        self._breaker_wake: asyncio.Event | None = None
        self._breaker_writer: asyncio.Task[None] | None = None
        self._registry = registry
        self._source_system = source_system
        self.latest_frame_wins = (
            settings.latest_frame_wins if latest_frame_wins is None else latest_frame_wins
        )
        self.backlog = max(1, settings.frame_backlog if backlog is None else backlog)
        self._lock = threading.Lock()
        self._acquired = 0
        self._reservations: deque[list[float]] = deque()  # [expires (monotonic), count]
        self._active = 0
        self._config: ProviderConfig | None = None
        self._detector: Detector | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Loop-thread only: frames waiting for a call slot (all lanes, oldest
        # first) and the worker tasks taking them, at most max_in_flight.
        self._queue: deque[tuple[Lane, int, Frame]] = deque()
        self._workers = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._default_lane: Lane | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------

    def start(self) -> Self:
        """Read the provider config and start the loop thread (idempotent)."""
        if self._closed:
            raise RuntimeError("the detect engine is closed")
        if self._thread is not None:
            return self
        self._set_config(self._lookup())
        if self._registry is None:
            self._registry = get_registry(self.settings)
        self._detector = Detector(
            self._registry,
            self.settings,
            breakers=self.breakers,
            source_system=self._source_system,
            on_failover=self._wake_breaker_writer,
        )
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._refresher = loop.create_task(self._refresh_forever())
            self._breaker_wake = asyncio.Event()
            self._breaker_writer = loop.create_task(self._write_breakers_forever())
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="detectflow-engine", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Cancel what is still running, close every adapter, stop the loop.

        Frames cancelled here keep their queue rows in ``processing`` until
        their lease lapses; then any running flow puts them back to pending.
        """
        if self._closed:
            return
        self._closed = True
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            future.result(timeout)
        except TimeoutError:
            log.warning("detect engine did not shut down within %.1f s", timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- capacity (backpressure) -----------------------------------------

    def acquire(self, wanted: int, minimum: int = 1) -> int:
        """Reserve up to ``wanted`` slots for frames a source is about to claim.

        Returns how many it may claim: 0 while fewer than ``minimum`` are
        free, so a source claims in batches worth a database round trip.
        Each frame later submitted uses one reserved slot; give back the
        rest with :meth:`release`.
        """
        with self._lock:
            self._expire()
            free = self.capacity - self._acquired - self._active
            if free < max(1, minimum):
                return 0
            granted = min(wanted, free)
            self._acquired += granted
            self._reservations.append([time.monotonic() + RESERVATION_SECONDS, granted])
            return granted

    def release(self, count: int) -> None:
        """Give back reserved slots that were not used (fewer rows, invalid frames)."""
        with self._lock:
            self._consume(count, newest=True)

    @property
    def outstanding(self) -> int:
        """Reserved slots plus frames submitted and not yet polled."""
        with self._lock:
            self._expire()
            return self._acquired + self._active

    @property
    def in_flight(self) -> int:
        """Provider calls running right now (workers alive: each makes one call at a time)."""
        return self._workers

    @property
    def has_provider(self) -> bool:
        """Does any camera have a provider (with assignments, maybe not the active one)?"""
        return self._routes.serves_any

    @property
    def routes(self) -> RouteTable:
        return self._routes

    @property
    def provider(self) -> ProviderConfig | None:
        return self._config

    # -- the simple single-caller API ------------------------------------

    def lane(self) -> Lane:
        return Lane(self)

    def submit(self, frame: Frame) -> None:
        """Submit one frame on the engine's own lane (see :meth:`poll`)."""
        if self._default_lane is None:
            self._default_lane = Lane(self)
        self._default_lane.submit((frame,))

    def poll(self) -> list[FrameResult]:
        """Results of frames given to :meth:`submit`, as they finish; never blocks."""
        return self._default_lane.poll() if self._default_lane else []

    # -- internals --------------------------------------------------------

    def _schedule(self, lane: Lane, batch: list[tuple[int, Frame]]) -> None:
        self.start()
        with self._lock:
            self._consume(len(batch), newest=False)
            self._active += len(batch)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._spawn, lane, batch)

    def _consume(self, count: int, *, newest: bool) -> None:
        """Use up ``count`` reserved slots (lock held): returned ones newest first."""
        reservations = self._reservations
        while count > 0 and reservations:
            entry = reservations[-1] if newest else reservations[0]
            used = min(count, int(entry[1]))
            entry[1] -= used
            count -= used
            self._acquired -= used
            if entry[1] == 0:
                if newest:
                    reservations.pop()
                else:
                    reservations.popleft()

    def _expire(self) -> None:
        """Drop reservations never used: their frames went to another process (lock held)."""
        now = time.monotonic()
        while self._reservations and self._reservations[0][0] <= now:
            self._acquired -= int(self._reservations.popleft()[1])

    def _retire(self, count: int) -> None:
        with self._lock:
            self._active = max(0, self._active - count)

    def _spawn(self, lane: Lane, batch: list[tuple[int, Frame]]) -> None:
        """Queue a lane's frames for the workers (loop thread)."""
        for ticket, frame in batch:
            lane._waiting.append(ticket)
            self._queue.append((lane, ticket, frame))
        if self.latest_frame_wins:
            self._skip_stale(lane)
        self._top_up()

    def _top_up(self) -> None:
        """Start one more worker if frames wait and the cap allows; look again once it ran.

        A worker takes frames until none wait, so a provider that answers
        without suspending is served by one worker and no task per frame
        (measured: a task per frame cost ~12 us of the loop's ~50 us per
        frame). While workers suspend on provider calls, each look starts
        another one, up to ``max_in_flight``.
        """
        if self._workers < min(self.max_in_flight, len(self._queue)):
            self._workers += 1  # counted here, uncounted by the worker as it returns
            loop = asyncio.get_running_loop()
            task = loop.create_task(self._work())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            loop.call_soon(self._top_up)

    def _skip_stale(self, lane: Lane) -> None:
        """Skip the lane's oldest waiting frames beyond ``backlog`` (loop thread).

        Their entries stay in the engine's queue; a worker reaching one sees it
        is no longer at the head of its lane's waiting line and passes over it.
        """
        skipped = 0
        while len(lane._waiting) > self.backlog:
            ticket = lane._waiting.popleft()
            frame = lane._frame(ticket)
            if frame is not None:
                lane._finish(ticket, strip_image(skipped_result(frame, self.backlog)))
                skipped += 1
        if skipped:
            log.debug("latest frame wins: skipped %d stale frame(s)", skipped)

    async def _work(self) -> None:
        """Call the provider for queued frames, oldest first, until none wait."""
        queue = self._queue
        self._set_in_flight()
        try:
            while queue:
                lane, ticket, frame = queue.popleft()
                # Each lane's frames are queued and skipped oldest first, so a
                # frame still waiting is at the head of its lane's line.
                if not lane._waiting or lane._waiting[0] != ticket:
                    continue  # skipped while it waited (latest frame wins)
                lane._waiting.popleft()
                try:
                    result = await self._detect(frame)
                except Exception as exc:  # never lose a frame to an engine bug
                    log.exception("detect engine failed on frame %s", frame.frame_id)
                    result = failed_result(frame, f"engine error: {exc!r}")
                lane._finish(ticket, result if self.keep_images else strip_image(result))
        finally:
            self._workers -= 1
            self._set_in_flight()

    async def _detect(self, frame: Frame) -> FrameResult:
        assert self._detector is not None
        result = await self._detector.detect(frame, self._routes)
        if result is None:
            return failed_result(frame, NO_PROVIDER, source=self._source_system)
        return result

    def _wake_breaker_writer(self) -> None:
        if self._breaker_wake is not None:
            self._breaker_wake.set()

    def _set_in_flight(self) -> None:
        """Publish the worker count: a worker is alive only while it has calls to make."""
        if self.metrics is not None:
            self.metrics.set_in_flight(self._workers)

    def _lookup(self) -> RouteTable | None:
        """Every camera's providers (None when reading failed: keep the last ones)."""
        try:
            if self._providers is not None:
                return RouteTable.build(self._providers())
            return RouteTable.single(self._provider())
        except Exception:
            log.exception("reading the provider configs failed; keeping the last ones")
            return None

    def _set_config(self, routes: RouteTable | None) -> None:
        if routes is None:
            return
        for bad, reason in routes.invalid:
            if (bad.id, bad.updated_at) not in self._reported_invalid:
                self._reported_invalid.add((bad.id, bad.updated_at))
                log.warning("provider %r serves no camera: %s", bad.provider_name, reason)
        self._routes = routes
        self.breakers.forget(set(routes.assignments))
        config = routes.default[0] if routes.default else None
        previous, self._config = self._config, config
        if config is None and (previous is not None or not self._thread):
            log.warning("%s: frames wait in the queue until a provider is activated", NO_PROVIDER)
        elif config is not None and (previous is None or previous.id != config.id):
            log.info("using provider %r (%s)", config.provider_name, config.provider_type)

    async def _refresh_forever(self) -> None:
        last_publish = time.monotonic()
        while True:
            await asyncio.sleep(self.refresh_seconds)
            self._set_config(await asyncio.to_thread(self._lookup))
            if (
                self._breaker_sink is not None
                and time.monotonic() - last_publish >= BREAKER_REFRESH_SECONDS
            ):
                last_publish = time.monotonic()
                snapshots = self.breakers.snapshot()
                if snapshots:
                    await asyncio.to_thread(self._breaker_sink.refresh, snapshots)

    async def _write_breakers_forever(self) -> None:
        assert self._breaker_wake is not None
        while True:
            await self._breaker_wake.wait()
            self._breaker_wake.clear()
            await self._write_breakers()

    async def _write_breakers(self) -> None:
        changes = self.breakers.take_changes()
        if not changes or self._breaker_sink is None:
            return
        try:
            await asyncio.to_thread(self._breaker_sink.record, changes)
        except Exception:
            log.exception("recording %d circuit breaker change(s) failed", len(changes))

    async def _shutdown(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        pending = [t for t in self._tasks if not t.done()]
        for task in pending:
            task.cancel()
        if self._refresher is not None:
            pending.append(self._refresher)
        await asyncio.gather(*pending, return_exceptions=True)
        if self._breaker_writer is not None:
            self._breaker_writer.cancel()
            await asyncio.gather(self._breaker_writer, return_exceptions=True)
        await self._write_breakers()  # what the last frames changed
        if self._detector is not None:
            await self._detector.aclose()
        await asyncio.get_running_loop().shutdown_default_executor()
