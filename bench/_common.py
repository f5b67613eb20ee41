"""Pieces the benches share: driving calls, bare HTTP clients, a loopback HTTP provider.

Each bench compares clients or flows against the same yardsticks; one copy
of the yardsticks keeps the comparisons between benches fair (same warm-up,
same bare-client call, same provider answer).

Benches import this as ``bench._common`` when run with ``python -m bench.x``
and as ``_common`` when run as ``python bench/x.py`` (the folder is then
``sys.path[0]``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

__all__ = [
    "RESPONSE",
    "Call",
    "LoopbackProvider",
    "aiohttp_call",
    "drive",
    "http_provider",
    "serve_http",
    "transport_call",
]

Call = Callable[[], Awaitable[None]]

_ANSWER = (
    b'{"detections":[{"label":"person","confidence":0.9,"box":[0.1,0.1,0.5,0.9]},'
    b'{"label":"car","confidence":0.7,"box":[0.5,0.5,0.9,0.8]}]}'
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_ANSWER)).encode()
    + b"\r\n\r\n"
    + _ANSWER
)
"""Two detections in the detectflow JSON dialect, as one keep-alive HTTP/1.1 response."""


# -- driving -------------------------------------------------------------------------


async def drive(
    call: Call, seconds: float, in_flight: int, warm_up: float
) -> tuple[int, float, float]:
    """Calls done, wall seconds and CPU seconds of ``in_flight`` workers for ``seconds``,
    after ``warm_up`` seconds of the same load (pools filled, pipelines refilled)."""
    done = 0
    deadline = 0.0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    deadline = time.perf_counter() + warm_up
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    done = 0
    cpu, start = time.process_time(), time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return done, time.perf_counter() - start, time.process_time() - cpu


# -- bare HTTP clients ---------------------------------------------------------------


def transport_call(
    transport: AiohttpTransport, url: str, content: bytes, headers: dict[str, str]
) -> Call:
    """A POST straight on ``AiohttpTransport``, no ``httpx.AsyncClient``: what the
    ``http_api`` adapter does, so the adapter's own overhead is the difference."""
    target = httpx.URL(url)

    async def call() -> None:
        request = httpx.Request("POST", target, content=content, headers=headers)
        response = await transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        response.json()

    return call


def aiohttp_call(
    session: aiohttp.ClientSession, url: str, content: bytes, headers: dict[str, str]
) -> Call:
    """The same POST on bare aiohttp, for reference."""

    async def call() -> None:
        async with session.post(url, data=content, headers=headers) as response:
            await response.json()

    return call


# -- a loopback HTTP provider --------------------------------------------------------


class LoopbackProvider(asyncio.Protocol):
    """Keep-alive HTTP/1.1: read headers + Content-Length body, answer after ``latency``
    (at once when it is 0) with :data:`RESPONSE`."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            if self.latency:
                asyncio.get_running_loop().call_later(self.latency, self._answer)
            else:
                self._answer()

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(RESPONSE)


def serve_http(latency: float, conn: Connection) -> None:
    """Child-process body: serve on a free loopback port, send the URL, stop on any message."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: LoopbackProvider(latency), "127.0.0.1", 0, backlog=1024
        )
        conn.send(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/detect")
        await loop.run_in_executor(None, conn.recv)
        server.close()

    asyncio.run(main())


@contextmanager
def http_provider(latency: float) -> Iterator[str]:
    """The loopback provider in a child process (its CPU does not count against the
    process measured); yields its ``/detect`` URL."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=serve_http, args=(latency, child), daemon=True)
    process.start()
    try:
        url: str = parent.recv()
        yield url
    finally:
        parent.send("stop")
        process.join(5)
        if process.is_alive():
            process.kill()
