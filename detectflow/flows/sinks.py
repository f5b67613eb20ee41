"""The dataflow's result sink: the one recorder, on threads of its own.

Every result is recorded by :class:`detectflow.store.recorder.Recorder`
(store -> publish live -> notify plugins, window tallies with the store),
exactly as inline ``send-frame`` records its results. This module only
decides *where* the flow runs it: :class:`BackgroundWriter` hands batches
to two threads so the Bytewax worker never waits on the store while it has
room to queue. :mod:`detectflow.flows.dataflow` wraps it in a Bytewax sink.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from detectflow.core.models import FrameResult
from detectflow.store.recorder import Recorder

__all__ = ["BackgroundWriter"]


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
    """Runs a :class:`~detectflow.store.recorder.Recorder` on threads of its own,
    so the Bytewax worker hands a batch over and goes back to claiming and
    emitting at once.

    Measured (``bench/flow_throughput.py``): writing on the worker thread left
    it waiting on PostgreSQL and Redis for most of each cycle. Here the worker
    only waits when ``max_pending`` results are already queued (backpressure),
    and the writer takes everything queued so far in one go (up to
    ``max_take``), so batches grow exactly when the store falls behind.

    Two stages, each a thread: one commits batches
    (:meth:`Recorder.store_results`), the other announces committed ones
    (:meth:`Recorder.announce`: live view, plugins, metrics), so a
    batch's announcement overlaps the next batch's commit. With one thread
    doing both, the writer was the flow's bottleneck: busy the whole run,
    mostly waiting on PostgreSQL's answers.

    Every guarantee of :class:`Recorder` holds, because it still does the
    writing: batches in arrival order, SQL committed before the live view
    hears of it, ``on_stored`` (a source's acknowledge) only after the
    commit. An error that stops a stage (not a lost connection, which it
    retries) is raised on the worker thread by the next :meth:`submit`,
    :meth:`flush` or :meth:`close`, so the flow still stops loudly; results
    not written then keep their queue rows in ``processing`` (released at
    the next start) and their stream entries unacknowledged (delivered
    again).
    """

    def __init__(
        self,
        writer: Recorder,
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
        self._announcer.put(self.writer.store_results(batch))
