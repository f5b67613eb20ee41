"""Hosting a simulator from synchronous code: its own event loop in a background thread."""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Self

from detectflow.simulator.http import Dialect, Simulator

# -- hosting from synchronous code -----------------------------------------


class SimulatorThread:
    """A simulator serving from its own event loop in a background thread."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="detectflow-simulator", daemon=True)

    @property
    def url(self) -> str:
        return self.simulator.url

    def detect_url(self, dialect: Dialect = "detectflow") -> str:
        return self.simulator.detect_url(dialect)

    def _main(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.simulator.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.simulator.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the simulator did not start within {timeout:g} s")
        if self._error is not None:
            self._thread.join()
            raise self._error

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread. Idempotent."""
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_in_thread(simulator: Simulator, *, timeout: float = 10.0) -> SimulatorThread:
    """Start ``simulator`` in a background thread; returns once it accepts connections."""
    handle = SimulatorThread(simulator)
    handle.start(timeout)
    return handle
