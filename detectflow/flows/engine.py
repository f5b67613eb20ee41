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

* ``max_in_flight`` provider calls at once (a semaphore on the loop);
* ``max_in_flight + queue_limit`` (default ``3 * max_in_flight``) frames
  held by the engine in total
  (submitted and not yet polled, plus slots a source has
  :meth:`DetectEngine.acquire`-d). A source claims only what it was granted,
  which is the dataflow's backpressure; the extra ``queue_limit`` frames wait
  on the loop so the provider stays busy between worker wake-ups.

The engine owns the provider configuration: it reads the active one through
the ``provider`` callable every ``refresh_seconds`` (off the loop, in a
thread), creates adapters through the plugin registry, caches them per
config id, recreates one when its config's ``updated_at`` changes (closing
the old one once its calls finish) and closes them all on shutdown. While
there is no active provider, :attr:`DetectEngine.has_provider` is False and
the SQL source does not claim; a frame submitted anyway fails with the
reason ``"no active provider configured"`` rather than waiting forever.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Self

from detectflow.core.adapter import ProviderAdapter
from detectflow.core.models import Frame, FrameResult, ProviderConfig
from detectflow.core.pipeline import failed_result, run_frame
from detectflow.core.plugins import PluginRegistry, get_registry
from detectflow.core.settings import Settings
from detectflow.flows.metrics import FlowMetrics
from detectflow.flows.steps import retry_policy, strip_image

__all__ = ["NO_PROVIDER", "DetectEngine", "Lane"]

log = logging.getLogger(__name__)

NO_PROVIDER = "no active provider configured"

ProviderLookup = Callable[[], ProviderConfig | None]


@dataclass
class _AdapterSlot:
    adapter: ProviderAdapter
    updated_at: datetime
    users: int = 0
    retired: bool = False
    closed: bool = False


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
    ) -> None:
        self.settings = settings
        self.max_in_flight = max(1, max_in_flight or settings.max_in_flight)
        self.capacity = self.max_in_flight + max(
            0, 2 * self.max_in_flight if queue_limit is None else queue_limit
        )
        self.wake_interval = wake_interval
        self.refresh_seconds = refresh_seconds
        self.metrics = metrics
        self._provider = provider
        self._registry = registry
        self._source_system = source_system
        self._lock = threading.Lock()
        self._acquired = 0
        self._active = 0
        self._in_flight = 0
        self._config: ProviderConfig | None = None
        self._adapters: dict[str, _AdapterSlot] = {}
        self._retired: list[_AdapterSlot] = []
        self._closers: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._semaphore: asyncio.Semaphore | None = None
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
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._semaphore = asyncio.Semaphore(self.max_in_flight)
            self._refresher = loop.create_task(self._refresh_forever())
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="detectflow-engine", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Cancel what is still running, close every adapter, stop the loop.

        Frames cancelled here keep their queue rows in ``processing``; the
        source's stale-row release puts them back to pending on next start.
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
            free = self.capacity - self._acquired - self._active
            if free < max(1, minimum):
                return 0
            granted = min(wanted, free)
            self._acquired += granted
            return granted

    def release(self, count: int) -> None:
        """Give back reserved slots that were not used (fewer rows, invalid frames)."""
        with self._lock:
            self._acquired = max(0, self._acquired - count)

    @property
    def outstanding(self) -> int:
        """Reserved slots plus frames submitted and not yet polled."""
        with self._lock:
            return self._acquired + self._active

    @property
    def in_flight(self) -> int:
        """Provider calls running right now."""
        with self._lock:
            return self._in_flight

    @property
    def has_provider(self) -> bool:
        return self._config is not None

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
            used = min(len(batch), self._acquired)
            self._acquired -= used
            self._active += len(batch)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._spawn, lane, batch)

    def _retire(self, count: int) -> None:
        with self._lock:
            self._active = max(0, self._active - count)

    def _spawn(self, lane: Lane, batch: list[tuple[int, Frame]]) -> None:
        for ticket, frame in batch:
            task = asyncio.get_running_loop().create_task(self._run(lane, ticket, frame))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, lane: Lane, ticket: int, frame: Frame) -> None:
        assert self._semaphore is not None
        async with self._semaphore:
            self._count_in_flight(+1)
            try:
                result = await self._detect(frame)
            except Exception as exc:  # never lose a frame to an engine bug
                log.exception("detect engine failed on frame %s", frame.frame_id)
                result = failed_result(frame, f"engine error: {exc!r}")
            finally:
                self._count_in_flight(-1)
        lane._finish(ticket, strip_image(result))

    async def _detect(self, frame: Frame) -> FrameResult:
        config = self._config
        if config is None:
            return failed_result(frame, NO_PROVIDER, source=self._source_system)
        try:
            slot = self._adapter_for(config)
        except Exception as exc:
            reason = f"cannot create adapter for provider {config.provider_name!r}: {exc}"
            return failed_result(frame, reason, source=self._source_system)
        slot.users += 1
        try:
            return await run_frame(
                frame,
                slot.adapter,
                config=config,
                registry=self._registry,
                retry=retry_policy(config, self.settings),
                source=self._source_system,
            )
        finally:
            slot.users -= 1
            if slot.retired and slot.users == 0:
                await self._close_adapter(slot)

    def _adapter_for(self, config: ProviderConfig) -> _AdapterSlot:
        slot = self._adapters.get(config.id)
        if slot is not None and slot.updated_at == config.updated_at:
            return slot
        assert self._registry is not None
        fresh = _AdapterSlot(self._registry.create_adapter(config), config.updated_at)
        self._adapters[config.id] = fresh
        if slot is not None:
            slot.retired = True
            self._retired.append(slot)
            if slot.users == 0:
                task = asyncio.get_running_loop().create_task(self._close_adapter(slot))
                self._closers.add(task)
                task.add_done_callback(self._closers.discard)
        return fresh

    async def _close_adapter(self, slot: _AdapterSlot) -> None:
        if slot.closed:
            return
        slot.closed = True
        if slot in self._retired:
            self._retired.remove(slot)
        try:
            await slot.adapter.aclose()
        except Exception:
            log.exception("closing adapter %r failed", slot.adapter.config.provider_name)

    def _count_in_flight(self, delta: int) -> None:
        with self._lock:
            self._in_flight += delta
            count = self._in_flight
        if self.metrics is not None:
            self.metrics.set_in_flight(count)

    def _lookup(self) -> ProviderConfig | None:
        try:
            return self._provider()
        except Exception:
            log.exception("reading the active provider config failed; keeping the last one")
            return self._config

    def _set_config(self, config: ProviderConfig | None) -> None:
        previous, self._config = self._config, config
        if config is None and (previous is not None or not self._thread):
            log.warning("%s: frames wait in the queue until a provider is activated", NO_PROVIDER)
        elif config is not None and (previous is None or previous.id != config.id):
            log.info("using provider %r (%s)", config.provider_name, config.provider_type)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            self._set_config(await asyncio.to_thread(self._lookup))

    async def _shutdown(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        pending = [t for t in self._tasks if not t.done()]
        for task in pending:
            task.cancel()
        if self._refresher is not None:
            pending.append(self._refresher)
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*self._closers, return_exceptions=True)
        for slot in [*self._retired, *self._adapters.values()]:
            await self._close_adapter(slot)
        self._adapters.clear()
        await asyncio.get_running_loop().shutdown_default_executor()
