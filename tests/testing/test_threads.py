"""BackgroundLoop runs coroutines on its own thread and cleans up after itself."""

from __future__ import annotations

import asyncio
import threading

import pytest

from detectflow.testing import BackgroundLoop


async def _thread_name() -> str:
    await asyncio.sleep(0)
    return threading.current_thread().name


async def _forever(started: asyncio.Event, cancelled: list[bool]) -> None:
    started.set()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        cancelled.append(True)
        raise


def test_run_executes_on_the_background_thread() -> None:
    with BackgroundLoop(name="bg-test") as background:
        assert background.run(_thread_name()) == "bg-test"


def test_stop_cancels_leftover_tasks_and_is_idempotent() -> None:
    cancelled: list[bool] = []
    background = BackgroundLoop().start()

    async def spawn() -> None:
        started = asyncio.Event()
        asyncio.get_running_loop().create_task(_forever(started, cancelled))
        await started.wait()

    background.run(spawn())
    background.stop()
    background.stop()
    assert cancelled == [True]
    with pytest.raises(RuntimeError, match="not started"):
        _ = background.loop
