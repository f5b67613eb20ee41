"""One WebSocket connection's bounded queue of outgoing texts.

The hub fills a thousand of these per broadcast, so the hand-off must be
cheap. An anyio memory stream costs a checkpoint (a trip through the event
loop) on every receive and an Event per waiting receiver; here a broadcast
is a ``deque.append`` plus, only when the sender is asleep, one
``asyncio.Event.set``. The sender then drains everything queued without
yielding between items, so a burst costs it one wake-up, not one per message.

The interface mirrors the parts of anyio's streams the hub and its tests
use: ``put_nowait`` raises :class:`anyio.WouldBlock` when full and
:class:`anyio.ClosedResourceError` once closed; ``receive`` ends with
:class:`anyio.EndOfStream` once closed and drained. asyncio only: the server
runs on asyncio (uvicorn), as does the Redis subscription feeding the hub.
"""

from __future__ import annotations

import asyncio
from collections import deque

import anyio

__all__ = ["Outbox"]


class Outbox:
    """A bounded FIFO with one consumer; producers never wait unless they ask to."""

    __slots__ = ("_closed", "_items", "_readable", "_room", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._items: deque[str] = deque()
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put_nowait(self, text: str) -> None:
        """Queue ``text``; raises WouldBlock when full (nothing is queued then)."""
        if self._closed:
            raise anyio.ClosedResourceError
        items = self._items
        if len(items) >= self.size:
            raise anyio.WouldBlock
        items.append(text)
        if len(items) == 1:  # it was empty: the consumer may be asleep
            self._readable.set()

    async def put(self, text: str) -> None:
        """Queue ``text``, waiting for room: for replies, which must not be dropped."""
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            if len(self._items) < self.size:
                self.put_nowait(text)
                return
            self._room.clear()
            await self._room.wait()

    def receive_nowait(self) -> str:
        items = self._items
        if items:
            text = items.popleft()
            if len(items) == self.size - 1:
                self._room.set()  # it was full: a reply may be waiting for room
            return text
        if self._closed:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def receive(self) -> str:
        while not self._items and not self._closed:
            self._readable.clear()
            await self._readable.wait()
        return self.receive_nowait()

    def close(self) -> None:
        """No more puts; the consumer gets what is queued, then EndOfStream. Idempotent."""
        self._closed = True
        self._readable.set()
        self._room.set()

    def __aiter__(self) -> Outbox:
        return self

    async def __anext__(self) -> str:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
