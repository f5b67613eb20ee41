"""Loopback HTTP servers that fail on purpose, for adapters' fault checks.

Every HTTP-based provider adapter must be shown a provider that hangs, one
that is busy (503), one that refuses (400) and one that answers garbage; the
behaviour is the same whatever the adapter's wire format, so the kit ships
one server for all of them. It runs on its own event loop in a background
thread, so it outlives each check's ``asyncio.run`` and can be shared by a
whole session; each fault is a path prefix, and any suffix (an adapter's own
route such as ``/v1/vision/detection``) is accepted after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections import Counter
from types import TracebackType
from typing import Self

from aiohttp import web

__all__ = ["HttpFaultServer"]

_START_SECONDS = 10.0


class HttpFaultServer:
    """An HTTP server on 127.0.0.1 whose every path is a fault.

    ================================  ==========================================
    path (any method, any suffix)     answer
    ================================  ==========================================
    ``/slow/...``                     nothing for ``hold_seconds`` (then ``{}``)
    ``/status/{code}/...``            HTTP ``code`` with ``{"error": "..."}``
    ``/garbage/...``                  200, ``application/json``, not JSON
    ``/drop/...``                     closes the connection without answering
    ================================  ==========================================

    :attr:`refused_url` points at a port that is bound but never listens, so
    connecting to it is refused for as long as the server lives.
    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, *, hold_seconds: float = 60.0) -> None:
        self.hold_seconds = hold_seconds
        self.hits: Counter[str] = Counter()
        self._port = 0
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._refused = socket.socket()

    # -- addresses ----------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's base URL, ``http://127.0.0.1:{port}``."""
        if not self._port:
            raise RuntimeError("HttpFaultServer is not started")
        return f"http://127.0.0.1:{self._port}"

    def url_for(self, fault: str) -> str:
        """The base URL of one fault: ``"slow"``, ``"status/503"``, ``"garbage"``, ``"drop"``."""
        return f"{self.url}/{fault.strip('/')}"

    @property
    def slow_url(self) -> str:
        return self.url_for("slow")

    def status_url(self, code: int) -> str:
        return self.url_for(f"status/{code}")

    @property
    def garbage_url(self) -> str:
        return self.url_for("garbage")

    @property
    def drop_url(self) -> str:
        return self.url_for("drop")

    @property
    def refused_port(self) -> int:
        """A loopback port where connecting is refused, for any protocol's adapter."""
        if not self._port:
            raise RuntimeError("HttpFaultServer is not started")
        port: int = self._refused.getsockname()[1]
        return port

    @property
    def refused_url(self) -> str:
        """A loopback URL where connecting is refused (nothing listens there)."""
        return f"http://127.0.0.1:{self.refused_port}"

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("HttpFaultServer is already started")
        self._refused.bind(("127.0.0.1", 0))  # bound, never listening: connections refused
        self._thread = threading.Thread(target=self._run, name="detectflow-faults", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_SECONDS):
            raise RuntimeError(f"HttpFaultServer did not start within {_START_SECONDS:g} s")
        if self._failure is not None:
            self._thread.join()
            raise RuntimeError(f"HttpFaultServer could not start: {self._failure}")
        return self

    def stop(self) -> None:
        """Release the held requests, stop the server and join its thread. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            if self._loop is not None and self._stopping is not None:
                self._loop.call_soon_threadsafe(self._stopping.set)
            thread.join()
        self._refused.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the server thread ------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); a thread must not raise
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self._port = int(runner.addresses[0][1])
            self._ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        parts = request.match_info["path"].split("/")
        fault = parts[0]
        self.hits[fault] += 1
        if fault == "slow":
            assert self._stopping is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.hold_seconds)
            return web.json_response({})
        if fault == "status" and len(parts) > 1 and parts[1].isdigit():
            code = int(parts[1])
            body = {"error": f"simulated fault: HTTP {code}"}
            return web.Response(status=code, text=json.dumps(body), content_type="application/json")
        if fault == "garbage":
            return web.Response(text="<html>this is not JSON", content_type="application/json")
        if fault == "drop":
            if request.transport is not None:
                request.transport.abort()
            return web.Response()  # never reaches the client: the connection is gone
        return web.json_response({"error": f"unknown fault path {request.path!r}"}, status=404)
