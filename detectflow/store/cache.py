"""The cache and bus interfaces, and how an outage of either shows.

The in-process twins (:mod:`detectflow.store.memory`) and the Redis
implementation (:mod:`detectflow.store.redis_backend`) share these protocols
and one test suite (``tests/store/test_cache.py``), so the server and the
dataflow run the same way embedded and distributed.

A shared cache or bus can be unreachable. Its methods then raise
:class:`CacheUnavailableError` (never the client library's own errors), so
callers degrade with one ``except`` and without knowing which backend is in
use: :mod:`detectflow.store.live` turns a failed read into a miss (the
database answers instead) and a failed write into a counted drop. A
subscription outlives an outage; once it is back it yields one
:data:`BUS_RECONNECTED` message, so a subscriber can tell its clients what
they missed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol

__all__ = ["BUS_RECONNECTED", "Bus", "Cache", "CacheUnavailableError", "Subscription"]

BUS_RECONNECTED = "bus:reconnected"
"""The channel of the note a subscription yields after it re-subscribed following a
lost connection. Its message is JSON ``{"lost_at": ..., "reconnected_at": ...}``
(RFC 3339): what was published between the two never arrived. No publisher's
channel has this name (theirs match a subscriber's patterns; this one is yielded
whatever the patterns)."""


class CacheUnavailableError(Exception):
    """The shared cache or bus cannot be reached (or refused the command).

    The message says why, without credentials. Raised by every cache and bus
    method except ``subscribe``, which keeps retrying in the background.
    """


class Cache(Protocol):
    """A key/value store with per-key TTL. Thread-safe, synchronous."""

    def get(self, key: str) -> bytes | None: ...

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def set_many(self, items: Mapping[str, bytes], ttl_seconds: float) -> None: ...

    def delete(self, key: str) -> None: ...

    def ping(self) -> None:
        """Return if the cache answers; raise :class:`CacheUnavailableError` if not."""
        ...


class Subscription(Protocol):
    """Messages on channels matching the subscribed glob patterns, in publish order."""

    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]: ...

    async def aclose(self) -> None: ...

    @property
    def connected(self) -> bool:
        """Is the subscription receiving now? (False while it reconnects.)"""
        ...


class Bus(Protocol):
    """Pub/sub. ``publish`` is synchronous and thread-safe (the dataflow calls it);
    ``subscribe`` is for asyncio consumers (the server's WebSocket hub).

    Messages are opaque bytes to a bus. What they hold (a frame's detections
    in one message, each event in one) is :mod:`detectflow.store.live`'s
    business, and a subscriber's queue bound counts bus messages."""

    def publish(self, channel: str, message: bytes) -> None: ...

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None: ...

    def subscribe(self, patterns: Sequence[str]) -> Subscription: ...

    def ping(self) -> None:
        """Return if publishing would reach the bus; raise :class:`CacheUnavailableError` if not."""
        ...
