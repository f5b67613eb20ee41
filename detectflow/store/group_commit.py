"""Group commit: concurrent requests' rows written by one statement.

A request that writes its own transaction pays a commit (and on
PostgreSQL a round trip per statement) for one row; sixteen clients then
queue behind sixteen commits. :class:`GroupCommit` has one writer task per
server process: a request hands its item over and waits; the writer takes
everything handed over so far, writes it with one call in a worker thread,
and answers every request of the batch once that call has returned (so an
answer still means "durable"). While a batch is being written the next one
gathers, so batches grow exactly when the store is the bottleneck and an
idle server adds no delay at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

import anyio.to_thread

__all__ = ["GroupCommit"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Calls ``write(batch)`` (blocking, run in a thread) for items submitted concurrently.

    ``write`` returns one outcome per item, in order (or None: every item's
    outcome is None); an outcome that is an exception is raised to that
    item's caller alone.
    """

    def __init__(
        self,
        write: Callable[[Sequence[T]], Sequence[R | BaseException] | None],
        *,
        max_batch: int = 512,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._write = write
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Return ``item``'s outcome once it is written; raise what writing its batch raised."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        # Read the outcome even when the request was cancelled meanwhile, so an
        # error nobody awaits is not reported as "never retrieved".
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending.append((item, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await asyncio.shield(done)  # a client that goes away must not cancel the batch

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                outcomes = await anyio.to_thread.run_sync(self._write, [item for item, _ in batch])
            except BaseException as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            given: Sequence[object] = [None] * len(batch) if outcomes is None else outcomes
            for (_, done), outcome in zip(batch, given, strict=True):
                if done.done():
                    continue
                if isinstance(outcome, BaseException):
                    done.set_exception(outcome)
                else:
                    done.set_result(cast(R, outcome))  # None for a write that returns none

    @property
    def waiting(self) -> int:
        return len(self._pending)
