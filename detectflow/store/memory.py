"""In-process twins of the Redis cache and bus, for the embedded single-process mode.

They keep Redis's semantics where callers can observe them: keys vanish after
their TTL, subscriptions take PSUBSCRIBE-style glob patterns, and a slow
subscriber loses its oldest messages (counted) rather than growing without
bound or slowing the publisher, which is the dataflow's worker thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from fnmatch import fnmatchcase

__all__ = ["DEFAULT_SUBSCRIBER_QUEUE", "MemoryBus", "MemoryCache", "MemorySubscription"]

DEFAULT_SUBSCRIBER_QUEUE = 10_000

_SWEEP_INTERVAL = 1.0


class MemoryCache:
    """A thread-safe dict with per-key expiry on the monotonic clock."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._items: dict[str, tuple[bytes, float]] = {}
        self._next_sweep = clock() + _SWEEP_INTERVAL

    def get(self, key: str) -> bytes | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self._clock()
        out: list[bytes | None] = []
        with self._lock:
            for key in keys:
                entry = self._items.get(key)
                if entry is not None and entry[1] <= now:
                    del self._items[key]
                    entry = None
                out.append(None if entry is None else entry[0])
        return out

    def set_many(self, items: Mapping[str, bytes], ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be > 0, got {ttl_seconds}")
        now = self._clock()
        expires = now + ttl_seconds
        with self._lock:
            for key, value in items.items():
                self._items[key] = (bytes(value), expires)
            if now >= self._next_sweep:
                # Keys nobody reads again would otherwise stay in memory forever.
                self._next_sweep = now + _SWEEP_INTERVAL
                for key in [k for k, (_, exp) in self._items.items() if exp <= now]:
                    del self._items[key]

    def delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def ping(self) -> None:
        """Always answers: it lives in this process."""

    def __len__(self) -> int:
        """Keys currently held, expired ones included until read or swept."""
        with self._lock:
            return len(self._items)


class MemorySubscription:
    """One subscriber: a bounded queue filled from any thread, drained by one event loop."""

    def __init__(
        self,
        bus: MemoryBus,
        patterns: Sequence[str],
        loop: asyncio.AbstractEventLoop,
        maxsize: int,
    ) -> None:
        self.patterns = tuple(patterns)
        self._bus = bus
        self._loop = loop
        self._lock = threading.Lock()
        self._queue: deque[tuple[str, bytes]] = deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0
        """Messages discarded because this subscriber fell ``maxsize`` behind."""

    @property
    def connected(self) -> bool:
        """Always: nothing stands between the publisher and this queue."""
        return True

    def matches(self, channel: str) -> bool:
        return any(fnmatchcase(channel, pattern) for pattern in self.patterns)

    def _offer(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Called by publishers on any thread."""
        with self._lock:
            if self._closed:
                return
            was_empty = not self._queue
            for item in items:
                if len(self._queue) >= self._maxsize:
                    self._queue.popleft()
                    self.dropped += 1
                self._queue.append(item)
        if was_empty:
            try:
                self._loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:  # the subscriber's loop is closed: nobody will read
                self._bus._remove(self)

    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        return self

    async def __anext__(self) -> tuple[str, bytes]:
        while True:
            with self._lock:
                if self._queue:
                    return self._queue.popleft()
                if self._closed:
                    raise StopAsyncIteration
                self._ready.clear()
            await self._ready.wait()

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            self._queue.clear()
        self._bus._remove(self)
        self._ready.set()


class MemoryBus:
    """Pub/sub inside one process; ``publish`` may be called from any thread."""

    def __init__(self, *, subscriber_queue: int = DEFAULT_SUBSCRIBER_QUEUE) -> None:
        if subscriber_queue < 1:
            raise ValueError("subscriber_queue must be >= 1")
        self._subscriber_queue = subscriber_queue
        self._lock = threading.Lock()
        self._subscribers: tuple[MemorySubscription, ...] = ()

    def publish(self, channel: str, message: bytes) -> None:
        self.publish_many([(channel, message)])

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        subscribers = self._subscribers  # an immutable snapshot: no lock needed to read it
        for sub in subscribers:
            wanted = [(ch, bytes(msg)) for ch, msg in messages if sub.matches(ch)]
            if wanted:
                sub._offer(wanted)

    def subscribe(self, patterns: Sequence[str]) -> MemorySubscription:
        """Subscribe the running event loop to channels matching the glob ``patterns``."""
        if isinstance(patterns, str):
            raise TypeError("patterns must be a sequence of strings, not one string")
        loop = asyncio.get_running_loop()
        sub = MemorySubscription(self, patterns, loop, self._subscriber_queue)
        with self._lock:
            self._subscribers = (*self._subscribers, sub)
        return sub

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def ping(self) -> None:
        """Always answers: it lives in this process."""

    def _remove(self, sub: MemorySubscription) -> None:
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not sub)
