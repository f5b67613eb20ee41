"""A redis-server of a test's own, on a free port, that the test may stop and restart.

Outage tests stop Redis mid-run; the shared Redis on 6379 serves every other
test at the same time and must stay up, so they never touch it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

__all__ = ["RedisServer", "running_redis"]


class RedisServer:
    """One redis-server process on ``port``; :meth:`stop` and :meth:`start` as often as needed.

    Nothing is persisted (``--save ""``, no AOF): a restart is an empty Redis,
    as after a crash of a cache-only deployment.
    """

    def __init__(self, binary: str, port: int, directory: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(directory)]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        assert self._process is None, "already running"
        process = subprocess.Popen(self._cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        with redis.Redis(port=self.port) as probe:
            while True:
                try:
                    probe.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        process.kill()
                        process.wait()
                        raise
                    time.sleep(0.02)
        self._process = process

    def stop(self) -> None:
        """Stop it (SIGTERM) and wait for the process to end."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=5)
            self._process = None


def running_redis(directory: Path, port: int) -> Iterator[RedisServer]:
    """A started redis-server, stopped at the end whatever happened (the ``own_redis``
    fixture of tests/conftest.py)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":  # like every other service
            pytest.fail("CI=true but redis-server is not installed")
        pytest.skip("redis-server is not installed")
    server = RedisServer(binary, port, directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
