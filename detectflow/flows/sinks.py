"""Where results go: SQL first, then the live cache and bus, then plugins.

The order matters. A client that sees a detection on the live feed must be
able to fetch it over REST, so the SQL transaction commits before anything
is published; plugins (alerts) hear about a detection only once it is
stored. This module is engine-agnostic: :class:`ResultWriter` takes a batch
and :mod:`detectflow.flows.dataflow` wraps it in a Bytewax sink.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from functools import partial
from types import TracebackType
from typing import Protocol, Self

from detectflow.core.models import FrameResult
from detectflow.core.plugins import PluginRegistry
from detectflow.flows.metrics import FlowMetrics
from detectflow.flows.recovery import retry_lost_connection
from detectflow.flows.steps import chunked, strip_image

__all__ = ["BackgroundWriter", "LivePublisher", "ResultStore", "ResultWriter"]

log = logging.getLogger(__name__)


class ResultStore(Protocol):
    """The part of :class:`detectflow.store.Database` the sink needs."""

    def record_results(self, results: Sequence[FrameResult]) -> None: ...


class LivePublisher(Protocol):
    """The part of :class:`detectflow.store.live.LiveView` the sink needs."""

    def publish(self, results: Sequence[FrameResult]) -> None: ...


class ResultWriter:
    """Writes one batch of results to every destination, in order.

    A lost database connection (a PostgreSQL restart) is retried with
    backoff for ``give_up_after`` seconds
    (:func:`~detectflow.flows.recovery.retry_lost_connection`); other SQL
    errors propagate (the flow stops loudly and the rows stay in
    ``processing`` until the next start releases them); the live view is
    best effort (its data expires in seconds anyway) and plugin failures
    are logged by the registry, so neither can lose a stored result.

    ``on_written`` (a source's ``acknowledge``) hears each batch once it is
    committed, so a source that must acknowledge its input (Redis Streams
    XACK, MQTT PUBACK) does so only after the results are stored. Its
    failures are logged: an input left unacknowledged is delivered again,
    and the idempotent SQL write makes the replay harmless.
    """

    def __init__(
        self,
        store: ResultStore,
        *,
        live: LivePublisher | None = None,
        registry: PluginRegistry | None = None,
        metrics: FlowMetrics | None = None,
        max_batch: int = 2000,
        on_written: Callable[[Sequence[FrameResult]], None] | None = None,
        give_up_after: float = 300.0,
    ) -> None:
        self.store = store
        self.live = live
        self.registry = registry
        self.metrics = metrics
        self.max_batch = max_batch
        self.on_written = on_written
        self.give_up_after = give_up_after
        # Workers of one process share this writer; the live view updates
        # per-camera state and a camera index read-modify-write, so one
        # publish at a time keeps a worker from overwriting another's update.
        self._live_lock = threading.Lock()

    def write(self, results: Sequence[FrameResult]) -> None:
        self.announce(self.store_batch(results))

    def store_batch(self, results: Sequence[FrameResult]) -> list[FrameResult]:
        """The part that must finish first: commit (then ``on_written``); returns
        the stored results, images dropped, for :meth:`announce`."""
        if not results:
            return []
        stripped = [strip_image(r) for r in results]
        for chunk in chunked(stripped, self.max_batch):
            retry_lost_connection(
                partial(self.store.record_results, chunk),
                what="writing results",
                give_up_after=self.give_up_after,
            )
        if self.on_written is not None:
            try:
                self.on_written(stripped)
            except Exception:
                log.exception("acknowledging %d result(s) to the source failed", len(stripped))
        return stripped

    def announce(self, stored: Sequence[FrameResult]) -> None:
        """Tell the live view, plugins and metrics about results already stored."""
        if not stored:
            return
        if self.live is not None:
            try:
                with self._live_lock:
                    self.live.publish(stored)
            except Exception:
                log.exception("publishing %d result(s) to the live view failed", len(stored))
        if self.registry is not None and self.registry.has_notifiers():
            for result in stored:
                for detection in result.detections:
                    self.registry.notify_detection(detection)
                for event in result.events:
                    self.registry.notify_event(event)
        if self.metrics is not None:
            self.metrics.record(stored)


class _Stage:
    """One thread applying ``work`` to queued results, batch after batch, in order.

    It takes everything queued so far (up to ``max_take``) in one go, so
    batches grow exactly when the work falls behind; :meth:`put` blocks
    while ``max_pending`` results wait. An error stops the stage and is
    raised by the next :meth:`put` or :meth:`flush`.
    """

    def __init__(
        self,
        work: Callable[[list[FrameResult]], None],
        *,
        max_pending: int,
        max_take: int,
        name: str,
    ) -> None:
        self._work = work
        self.max_pending = max_pending
        self.max_take = max_take
        self._name = name
        self._cond = threading.Condition()
        self._pending: list[FrameResult] = []
        self._busy = False
        self.error: BaseException | None = None
        self._closing = False
        self._thread: threading.Thread | None = None

    def put(self, results: Sequence[FrameResult]) -> None:
        with self._cond:
            if self._closing:
                raise RuntimeError("the background writer is closed")
            self._start()
            while len(self._pending) >= self.max_pending and self.error is None:
                self._cond.wait()
            self.check()
            self._pending.extend(results)
            self._cond.notify_all()

    def flush(self) -> None:
        with self._cond:
            while (self._pending or self._busy) and self.error is None:
                self._cond.wait()
            self.check()

    def stop(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def _start(self) -> None:
        """Start the thread on first use (lock held): a sink never used costs none."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                batch = self._pending[: self.max_take]
                del self._pending[: self.max_take]
                self._busy = True
                self._cond.notify_all()
            try:
                self._work(batch)
            except BaseException as exc:  # raised again on the caller's thread
                with self._cond:
                    self.error = exc
                    self._busy = False
                    self._cond.notify_all()
                return
            with self._cond:
                self._busy = False
                self._cond.notify_all()


class BackgroundWriter:
    """Runs a :class:`ResultWriter` on threads of its own, so the Bytewax worker
    hands a batch over and goes back to claiming and emitting at once.

    Measured (``bench/flow_throughput.py``): writing on the worker thread left
    it waiting on PostgreSQL and Redis for most of each cycle. Here the worker
    only waits when ``max_pending`` results are already queued (backpressure),
    and the writer takes everything queued so far in one go (up to
    ``max_take``), so batches grow exactly when the store falls behind.

    Two stages, each a thread: one commits batches
    (:meth:`ResultWriter.store_batch`), the other announces committed ones
    (:meth:`ResultWriter.announce`: live view, plugins, metrics), so a
    batch's announcement overlaps the next batch's commit. With one thread
    doing both, the writer was the flow's bottleneck: busy the whole run,
    mostly waiting on PostgreSQL's answers.

    Every guarantee of :class:`ResultWriter` holds, because it still does the
    writing: batches in arrival order, SQL committed before the live view
    hears of it, ``on_written`` (a source's acknowledge) only after the
    commit. An error that stops a stage (not a lost connection, which it
    retries) is raised on the worker thread by the next :meth:`submit`,
    :meth:`flush` or :meth:`close`, so the flow still stops loudly; results
    not written then keep their queue rows in ``processing`` (released at
    the next start) and their stream entries unacknowledged (delivered
    again).
    """

    def __init__(
        self,
        writer: ResultWriter,
        *,
        max_pending: int = 4096,
        max_take: int = 2048,
        name: str = "detectflow-writer",
    ) -> None:
        if max_pending < 1 or max_take < 1:
            raise ValueError("max_pending and max_take must be at least 1")
        self.writer = writer
        self.max_pending = max_pending
        self.max_take = max_take
        self._announcer = _Stage(
            writer.announce, max_pending=max_pending, max_take=max_take, name=f"{name}-live"
        )
        self._store = _Stage(
            self._store_then_announce, max_pending=max_pending, max_take=max_take, name=name
        )

    def submit(self, results: Sequence[FrameResult]) -> None:
        """Queue ``results`` for writing; blocks only while the queue is full."""
        self._announcer.check()
        if not results:
            self._store.check()
            return
        self._store.put(results)

    def flush(self) -> None:
        """Wait until everything submitted so far is written (or raise why it was not)."""
        self._store.flush()
        self._announcer.flush()

    def close(self) -> None:
        """Write what is queued, then stop the threads (idempotent)."""
        try:
            self.flush()
        finally:
            self._store.stop()
            self._announcer.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _store_then_announce(self, batch: list[FrameResult]) -> None:
        self._announcer.put(self.writer.store_batch(batch))
