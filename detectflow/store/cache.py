"""The cache and bus interfaces.

The in-process twins (:mod:`detectflow.store.memory`) and the Redis
implementation (a later issue) share these protocols and one test suite
(``tests/store/test_cache.py``), so the server and the dataflow run the same
way embedded and distributed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol

__all__ = ["Bus", "Cache", "Subscription"]


class Cache(Protocol):
    """A key/value store with per-key TTL. Thread-safe, synchronous."""

    def get(self, key: str) -> bytes | None: ...

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def set_many(self, items: Mapping[str, bytes], ttl_seconds: float) -> None: ...

    def delete(self, key: str) -> None: ...


class Subscription(Protocol):
    """Messages on channels matching the subscribed glob patterns, in publish order."""

    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]: ...

    async def aclose(self) -> None: ...


class Bus(Protocol):
    """Pub/sub. ``publish`` is synchronous and thread-safe (the dataflow calls it);
    ``subscribe`` is for asyncio consumers (the server's WebSocket hub).

    Messages are opaque bytes to a bus. What they hold (a frame's detections
    in one message, each event in one) is :mod:`detectflow.store.live`'s
    business, and a subscriber's queue bound counts bus messages."""

    def publish(self, channel: str, message: bytes) -> None: ...

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None: ...

    def subscribe(self, patterns: Sequence[str]) -> Subscription: ...
