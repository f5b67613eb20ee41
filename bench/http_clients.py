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
from dataclasses import dataclass

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from detectflow.adapters.http import HttpAdapter
from detectflow.core.adapter import probe_frame
from detectflow.core.models import ProviderConfig

try:
    from bench._common import Call, aiohttp_call, drive, http_provider, transport_call
except ModuleNotFoundError:  # run as ``python bench/http_clients.py``
    from _common import Call, aiohttp_call, drive, http_provider, transport_call  # type: ignore[no-redef]

__all__ = ["Result", "main"]

BARE_CLIENT = "AiohttpTransport, no AsyncClient"


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    latency: float
    rate: float
    cpu_ms: float


async def _drive(call: Call, seconds: float, in_flight: int) -> tuple[float, float]:
    """Requests/s and client CPU ms per request, after a warm-up that fills the pool."""
    done, wall, cpu = await drive(call, seconds, in_flight, warm_up=min(0.5, seconds / 4))
    return done / wall, cpu * 1000 / max(done, 1)


async def _measure(url: str, latency: float, seconds: float, in_flight: int) -> list[Result]:
    frame = probe_frame()
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    body = HttpAdapter(_config(url, "aiohttp")).encode(frame).content
    headers = {"Content-Type": "application/json"}
    results = []

    async def run(name: str, call: Call) -> None:
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
    await run(BARE_CLIENT, transport_call(transport, url, body, headers))
    await transport.aclose()

    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        await run("aiohttp (bare)", aiohttp_call(session, url, body, headers))

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
    with http_provider(latency) as url:
        return asyncio.run(_measure(url, latency, seconds, in_flight))


def main(argv: list[str] | None = None) -> dict[str, float]:
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
    return {
        "adapter_vs_bare_0ms": rate(adapter, 0.0) / rate(BARE_CLIENT, 0.0),
        "adapter_of_ceiling_50ms": rate(adapter, 0.05) / ceiling,
    }


if __name__ == "__main__":
    main()
