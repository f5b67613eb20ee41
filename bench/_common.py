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
import functools
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

__all__ = [
    "RESPONSE",
    "Call",
    "HttpClient",
    "LoopbackProvider",
    "active_provider",
    "admin_key",
    "aiohttp_call",
    "cpu_seconds",
    "drive",
    "free_port",
    "http_provider",
    "load",
    "measure",
    "serve_http",
    "stop_processes",
    "transport_call",
    "wait_up",
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


# -- HTTP servers under load ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def admin_key(env: dict[str, str]) -> str:
    """A new admin key from ``detectflow keys create`` on the database ``env`` names."""
    done = subprocess.run(
        [sys.executable, "-m", "detectflow.cli", "keys", "create", "--scope", "admin"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()[-1]


def active_provider(base: str, key: str, **fields: Any) -> None:
    """Create the active ``http_api`` provider that keeps every box, on the server at ``base``."""
    created = httpx.post(
        f"{base}/api/v1/detections/providers",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "provider_type": "http_api",
            "is_active": True,
            "confidence_threshold": 0.0,
            **fields,
        },
    )
    assert created.status_code == 201, created.text


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate each, and kill what is still there after 10 s."""
    for process in processes:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def wait_up(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"server not up at {url}")


class HttpClient(asyncio.Protocol):
    """Keep-alive requests, one at a time, recording each latency (2xx answers only)."""

    def __init__(self, request: bytes, until: float, latencies: list[float], done: Any) -> None:
        self.request, self.until, self.latencies, self.done = request, until, latencies, done
        self.buffer = b""
        self.started = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.started = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15 :].split(b"\r\n", 1)[0])
        if len(self.buffer) < end + 4 + length:
            return
        now = time.perf_counter()
        if not head.startswith(b"http/1.1 2"):
            raise RuntimeError(f"unexpected answer: {self.buffer[:200]!r}")
        self.latencies.append(now - self.started)
        self.buffer = self.buffer[end + 4 + length :]
        if now < self.until:
            self._send()
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def load(
    port: int,
    request: bytes,
    clients: int,
    seconds: float,
    started: Callable[[], None] = lambda: None,
) -> tuple[list[float], float]:
    """``clients`` keep-alive connections sending ``request`` for ``seconds`` (after a
    warm-up second, then ``started()``): every latency, and the time it took."""
    loop = asyncio.get_running_loop()
    # Warm-up second: connections, caches, the server's first requests.
    for until, keep in ((time.perf_counter() + 1.0, False), (0.0, True)):
        latencies: list[float] = []
        if keep:
            started()
        start = time.perf_counter()
        until = until or start + seconds
        dones = [loop.create_future() for _ in range(clients)]
        transports = []
        for done in dones:
            t, _ = await loop.create_connection(
                functools.partial(HttpClient, request, until, latencies, done), "127.0.0.1", port
            )
            transports.append(t)
        await asyncio.gather(*dones)
        elapsed = time.perf_counter() - start
        for t in transports:
            t.close()
        if keep:
            return latencies, elapsed
    raise AssertionError("unreachable")


def _load_process(
    port: int, request: bytes, clients: int, seconds: float, conn: Connection
) -> None:
    conn.send(asyncio.run(load(port, request, clients, seconds, lambda: conn.send("started"))))


def measure(
    port: int, request: bytes, clients: int, seconds: float, *, server_pid: int | None = None
) -> dict[str, float]:
    """:func:`load` in a process of its own (its CPU is not the server's): req/s, p50,
    p99 (ms), and with ``server_pid`` the server's CPU ms per request over the run."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    process = ctx.Process(target=_load_process, args=(port, request, clients, seconds, theirs))
    process.start()
    assert ours.recv() == "started"
    cpu = cpu_seconds(server_pid) if server_pid else 0.0
    latencies, elapsed = ours.recv()
    if server_pid:
        cpu = cpu_seconds(server_pid) - cpu
    process.join(30)
    latencies.sort()
    figures = {
        "rps": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }
    if server_pid:
        figures["cpu_ms"] = cpu * 1000 / max(len(latencies), 1)
    return figures


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
