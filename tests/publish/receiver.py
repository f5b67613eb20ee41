"""A real HTTP receiver on loopback whose answers a test scripts: a status per
request in order (the last one repeats), or no answer at all."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

from aiohttp import web

from detectflow.testing import BackgroundLoop

__all__ = ["Received", "Receiver"]


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    statuses: list[int] = field(default_factory=lambda: [200])
    hang: bool = False
    received: list[Received] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}  # case is not kept
        self.received.append(Received(headers, await request.read()))
        if self.hang:
            await asyncio.sleep(3600)
        status = self.statuses[min(len(self.received), len(self.statuses)) - 1]
        return web.Response(status=status, text="ok" if status < 300 else "nope")

    async def _start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.2)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        return runner

    def serve(self, loop: BackgroundLoop) -> web.AppRunner:
        return loop.run(self._start())
