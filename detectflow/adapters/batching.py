"""Answer many single detects with one provider call: a generic batcher.

Model servers (Triton, KServe, MLServer) run a batch of 8 images for little
more than the cost of one, so a provider that accepts batches is far cheaper
fed 8 frames at a time. Callers still ask for one frame each (the flow's
detect step, inline send-frame): :class:`Batcher` gathers their items, up to
``max_batch_size``, waiting at most ``max_batch_wait_ms`` after the first one
for the batch to fill, and keeps up to ``max_batches_in_flight`` batch calls
running at once. Each caller gets its own item's answer back; when the whole
batch call fails, every caller gets the reason (its own copy of the error, so
the retry step treats each frame as if it had been sent alone).

An adapter opts in by subclassing :class:`BatchingAdapter` and implementing
:meth:`~BatchingAdapter.detect_batch`; its ``detect`` then goes through a
batcher made from :meth:`~BatchingAdapter.batch_limits`. Vendor plugins can
do the same: nothing here knows about any wire protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from detectflow.core.adapter import ProviderAdapter
from detectflow.core.errors import PermanentProviderError, ProviderError, TransientProviderError
from detectflow.core.models import Frame, RawDetection

__all__ = [
    "DEFAULT_MAX_BATCHES_IN_FLIGHT",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_BATCH_WAIT_MS",
    "BatchLimits",
    "BatchOutcome",
    "Batcher",
    "BatchingAdapter",
    "batch_limits_from_options",
]

DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_MAX_BATCH_WAIT_MS = 5.0
DEFAULT_MAX_BATCHES_IN_FLIGHT = 4

T = TypeVar("T")
R = TypeVar("R")

BatchOutcome = list[RawDetection] | ProviderError
"""One frame's share of a batch answer: its detections, or why it failed."""


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """How big a batch may get, how long it may wait, how many run at once."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_batch_wait_ms: float = DEFAULT_MAX_BATCH_WAIT_MS
    max_batches_in_flight: int = DEFAULT_MAX_BATCHES_IN_FLIGHT

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if not self.max_batch_wait_ms >= 0:
            raise ValueError(f"max_batch_wait_ms must be >= 0, got {self.max_batch_wait_ms}")
        if self.max_batches_in_flight < 1:
            raise ValueError(
                f"max_batches_in_flight must be >= 1, got {self.max_batches_in_flight}"
            )


def batch_limits_from_options(
    options: Mapping[str, Any], *, max_batch_size: int | None = None
) -> BatchLimits:
    """Read ``max_batch_size``, ``max_batch_wait_ms`` and ``max_batches_in_flight``.

    ``max_batch_size`` given here is the caller's default (e.g. what a model
    allows); the option overrides it. Bad values are a permanent error that
    names the option.
    """
    size = _number(options, "max_batch_size", max_batch_size or DEFAULT_MAX_BATCH_SIZE, int)
    wait = _number(options, "max_batch_wait_ms", DEFAULT_MAX_BATCH_WAIT_MS, float)
    flight = _number(options, "max_batches_in_flight", DEFAULT_MAX_BATCHES_IN_FLIGHT, int)
    try:
        return BatchLimits(int(size), float(wait), int(flight))
    except ValueError as exc:
        raise PermanentProviderError(f"option {exc}") from None


def _number(options: Mapping[str, Any], key: str, default: float, kind: type) -> float:
    value = options.get(key, default)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = kind(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PermanentProviderError(f"option {key} must be a number, got {value!r}")
    if kind is int and value != int(value):
        raise PermanentProviderError(f"option {key} must be a whole number, got {value!r}")
    return value


def _one_for_each(error: BaseException) -> BaseException:
    """A fresh copy of a provider error for each frame of a failed batch.

    Raising one exception object from many tasks chains their tracebacks
    together; a copy per frame keeps each frame's failure its own.
    """
    if isinstance(error, ProviderError):
        return type(error)(error.message, status=error.status)
    return PermanentProviderError(f"batch call failed: {error!r}")


class Batcher(Generic[T, R]):
    """Feeds single items to ``run`` in batches; see the module docstring.

    ``run`` gets a non-empty sequence of items and returns one result per
    item, in order; a result that is an exception is raised to that item's
    caller alone. When ``run`` raises, or returns the wrong number of
    results, every item of that batch fails. Bound to the event loop of its
    first ``submit``.
    """

    def __init__(
        self,
        run: Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]],
        limits: BatchLimits,
    ) -> None:
        self.run = run
        self.limits = limits
        self.batch_sizes: list[int] = []  # kept short: the last 1000 sizes, for stats/tests
        self._wait = limits.max_batch_wait_ms / 1000
        self._pending: list[tuple[T, asyncio.Future[R], float]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def submit(self, item: T) -> R:
        if self._closed:
            raise PermanentProviderError("the batcher is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        entry = (item, future, loop.time())
        self._pending.append(entry)
        self._dispatch()
        try:
            return await future
        except asyncio.CancelledError:
            # A caller that gave up before its batch left takes its item back.
            with contextlib.suppress(ValueError):
                self._pending.remove(entry)
            raise

    def _dispatch(self) -> None:
        """Send every batch that is full or due while a slot is free; arm the timer."""
        loop = asyncio.get_running_loop()
        limits = self.limits
        while self._pending and len(self._tasks) < limits.max_batches_in_flight:
            full = len(self._pending) >= limits.max_batch_size
            due = loop.time() >= self._pending[0][2] + self._wait
            if not (full or due):
                break
            batch = self._pending[: limits.max_batch_size]
            del self._pending[: limits.max_batch_size]
            task = loop.create_task(self._send(batch))
            self._tasks.add(task)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending and len(self._tasks) < limits.max_batches_in_flight:
            # A batch that is neither full nor due: wake when its first item is due.
            self._timer = loop.call_at(self._pending[0][2] + self._wait, self._dispatch)

    async def _send(self, batch: list[tuple[T, asyncio.Future[R], float]]) -> None:
        try:
            live = [(item, future) for item, future, _ in batch if not future.done()]
            if not live:
                return
            self.batch_sizes.append(len(live))
            del self.batch_sizes[:-1000]
            try:
                results = await self.run([item for item, _ in live])
                if len(results) != len(live):
                    raise PermanentProviderError(
                        f"batch answer has {len(results)} results for {len(live)} items"
                    )
            except asyncio.CancelledError:
                for _, future in live:
                    if not future.done():
                        future.set_exception(TransientProviderError("the batcher was closed"))
                raise
            except Exception as exc:
                for _, future in live:
                    if not future.done():
                        future.set_exception(_one_for_each(exc))
                return
            for (_, future), result in zip(live, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)
            if not self._closed:
                self._dispatch()

    async def aclose(self) -> None:
        """Fail what is waiting, cancel what is running; safe to call twice."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        for _, future, _ in pending:
            if not future.done():
                future.set_exception(TransientProviderError("the batcher was closed"))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class BatchingAdapter(ProviderAdapter):
    """An adapter whose provider takes many frames per call.

    Implement :meth:`detect_batch` (one result per frame, in order: its
    detections, or a :class:`ProviderError` for that frame alone) and,
    when the batch size depends on the provider, :meth:`batch_limits`.
    ``detect`` then sends frames through a :class:`Batcher`; a limit of one
    frame per batch calls ``detect_batch`` directly, with no waiting.
    """

    _batcher: Batcher[Frame, list[RawDetection]] | None = None
    _unbatched: bool = False

    @abstractmethod
    async def detect_batch(self, frames: Sequence[Frame]) -> Sequence[BatchOutcome]:
        """Detect on every frame in one provider call."""

    async def batch_limits(self) -> BatchLimits:
        """How to batch; by default from the config's options (``max_batch_size``...)."""
        return batch_limits_from_options(self.config.options)

    async def detect(self, frame: Frame) -> list[RawDetection]:
        batcher = self._batcher
        if batcher is None and not self._unbatched:
            limits = await self.batch_limits()
            if limits.max_batch_size == 1:
                self._unbatched = True
            elif self._batcher is None:
                self._batcher = Batcher(self.detect_batch, limits)
            batcher = self._batcher
        if batcher is None:
            (result,) = await self.detect_batch([frame])
            if isinstance(result, BaseException):
                raise result
            return result
        return await batcher.submit(frame)

    @property
    def batch_sizes(self) -> list[int]:
        """The sizes of the last batches sent (empty when not batching)."""
        return list(self._batcher.batch_sizes) if self._batcher is not None else []

    async def aclose(self) -> None:
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            await batcher.aclose()
