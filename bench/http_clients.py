"""Which HTTP client should the ``http_api`` adapter use? Measure, then choose.

Runs a tiny raw-asyncio HTTP/1.1 server in a child process (so its CPU does
not count against the clients), once answering at once and once after 50 ms,
and drives it with 32 requests in flight from: httpx on its default
transport, httpx on ``httpx_aiohttp.AiohttpTransport``, bare aiohttp, and
the transport alone without ``httpx.AsyncClient`` (what the adapter uses),
and the detectflow ``HttpAdapter`` itself (both transports). Every client posts
the same detectflow-dialect JSON body the adapter sends for a small PNG.

Prints req/s and client CPU per request for each, then the ratios the issue
asks about: the adapter against the 32 / 50 ms = 640 req/s ceiling, and the
adapter against its bare client at zero latency.

    .venv/bin/python -m bench.http_clients [--seconds 3] [--in-flight 32]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from detectflow.adapters.http import HttpAdapter
from detectflow.core.adapter import probe_frame
from detectflow.core.models import ProviderConfig

__all__ = ["Result", "main"]

BARE_CLIENT = "AiohttpTransport, no AsyncClient"

_ANSWER = (
    b'{"detections":[{"label":"person","confidence":0.9,"box":[0.1,0.1,0.5,0.9]},'
    b'{"label":"car","confidence":0.7,"box":[0.5,0.5,0.9,0.8]}]}'
)
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_ANSWER)).encode()
    + b"\r\n\r\n"
    + _ANSWER
)


class _Server(asyncio.Protocol):
    """Keep-alive HTTP/1.1: read headers + Content-Length body, answer after latency."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
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
            self.transport.write(_RESPONSE)


def _serve(latency: float, conn: Connection) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Server(latency), "127.0.0.1", 0, backlog=1024)
        conn.send(server.sockets[0].getsockname()[1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        server.close()

    asyncio.run(main())


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    latency: float
    rate: float
    cpu_ms: float


async def _drive(
    call: Callable[[], Awaitable[None]], seconds: float, in_flight: int
) -> tuple[float, float]:
    done = 0
    deadline = 0.0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    deadline = time.perf_counter() + min(0.5, seconds / 4)  # warm up the pool
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    done = 0
    cpu, start = time.process_time(), time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - start
    return done / elapsed, (time.process_time() - cpu) * 1000 / max(done, 1)


async def _measure(url: str, latency: float, seconds: float, in_flight: int) -> list[Result]:
    frame = probe_frame()
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    body = HttpAdapter(_config(url, "aiohttp")).encode(frame).content
    headers = {"Content-Type": "application/json"}
    results = []

    async def run(name: str, call: Callable[[], Awaitable[None]]) -> None:
        rate, cpu = await _drive(call, seconds, in_flight)
        results.append(Result(name, latency, rate, cpu))

    async with httpx.AsyncClient(limits=limits) as client:

        async def httpx_default() -> None:
            (await client.post(url, content=body, headers=headers)).json()

        await run("httpx (default transport)", httpx_default)

    async with httpx.AsyncClient(transport=AiohttpTransport(limits=limits)) as client2:

        async def httpx_aiohttp() -> None:
            (await client2.post(url, content=body, headers=headers)).json()

        await run("httpx + AiohttpTransport", httpx_aiohttp)

    transport = AiohttpTransport(limits=limits)
    target = httpx.URL(url)

    async def transport_direct() -> None:
        request = httpx.Request("POST", target, content=body, headers=headers)
        response = await transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        response.json()

    await run(BARE_CLIENT, transport_direct)
    await transport.aclose()

    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def bare() -> None:
            async with session.post(url, data=body, headers=headers) as response:
                await response.json()

        await run("aiohttp (bare)", bare)

    for name in ("aiohttp", "httpx"):
        async with HttpAdapter(_config(url, name)) as adapter:

            async def detect(adapter: HttpAdapter = adapter) -> None:
                await adapter.detect(frame)

            await run(f"HttpAdapter (transport={name})", detect)
    return results


def _config(url: str, transport: str) -> ProviderConfig:
    return ProviderConfig(
        id="bench",
        provider_name="bench",
        provider_type="http_api",
        endpoint_url=url,
        timeout_seconds=30,
        options={"transport": transport},
    )


def _with_server(latency: float, seconds: float, in_flight: int) -> list[Result]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve, args=(latency, child), daemon=True)
    process.start()
    try:
        port = parent.recv()
        url = f"http://127.0.0.1:{port}/detect"
        return asyncio.run(_measure(url, latency, seconds, in_flight))
    finally:
        parent.send("stop")
        process.join(5)
        if process.is_alive():
            process.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--in-flight", type=int, default=32)
    args = parser.parse_args(argv)
    results: list[Result] = []
    for latency in (0.0, 0.05):
        results += _with_server(latency, args.seconds, args.in_flight)

    print(f"{args.in_flight} in flight, {args.seconds:g} s per row; CPU = client process only")
    print(f"{'client':<34} {'latency':>8} {'req/s':>9} {'CPU ms/req':>11}")
    for r in results:
        print(f"{r.name:<34} {r.latency * 1000:>6.0f}ms {r.rate:>9.0f} {r.cpu_ms:>11.3f}")

    def rate(name: str, latency: float) -> float:
        return next(r.rate for r in results if r.name == name and r.latency == latency)

    ceiling = args.in_flight / 0.05
    adapter = "HttpAdapter (transport=aiohttp)"
    print()
    print(f"ceiling at 50 ms: {ceiling:.0f} req/s")
    for r in results:
        if r.latency == 0.05:
            print(f"  {r.name:<34} {r.rate / ceiling:.2f} of ceiling")
    for latency in (0.0, 0.05):
        label = f"{latency * 1000:.0f} ms"
        print(
            f"{label}: adapter / its bare client ({BARE_CLIENT}) = "
            f"{rate(adapter, latency) / rate(BARE_CLIENT, latency):.2f}; "
            "adapter / bare aiohttp = "
            f"{rate(adapter, latency) / rate('aiohttp (bare)', latency):.2f}"
        )
    print(
        "zero latency: httpx + AiohttpTransport / httpx default = "
        f"{rate('httpx + AiohttpTransport', 0.0) / rate('httpx (default transport)', 0.0):.2f}"
    )


if __name__ == "__main__":
    main()
