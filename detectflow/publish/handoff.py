"""A bounded hand-off from the flow's worker thread to one publisher thread.

The flow must never wait on a broker or a webhook receiver, so
:meth:`Handoff.offer` never blocks: what does not fit is handed to
``on_overflow`` (counted, and recorded by whoever owns the queue) instead.
The consumer takes everything queued in one go, so batches grow exactly
when it falls behind, as the recorder's writer does.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Handoff"]

T = TypeVar("T")


class Handoff(Generic[T]):
    """At most ``size`` items waiting; producers on any thread, one consumer."""

    def __init__(self, size: int, *, on_overflow: Callable[[list[T]], None] | None = None) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.dropped = 0
        self._on_overflow = on_overflow
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, items: Sequence[T]) -> int:
        """Queue what fits; return how many were taken (the rest overflowed)."""
        if not items:
            return 0
        with self._cond:
            if self._closed:
                taken = 0
            else:
                taken = min(len(items), self.size - len(self._items))
                self._items.extend(items[:taken])
                if taken:
                    self._cond.notify()
            self.dropped += len(items) - taken
        if taken < len(items) and self._on_overflow is not None:
            self._on_overflow(list(items[taken:]))
        return taken

    def take(self, timeout: float | None = None, limit: int | None = None) -> list[T]:
        """Everything queued (up to ``limit``), waiting up to ``timeout`` s for the
        first item; empty on timeout or once closed and drained."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            count = len(self._items) if limit is None else min(limit, len(self._items))
            return [self._items.popleft() for _ in range(count)]

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Take no more; the consumer drains what is queued, then gets empty batches."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
