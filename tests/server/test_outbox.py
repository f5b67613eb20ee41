"""One connection's bounded outbox (detectflow/server/outbox.py)."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.server.outbox import Outbox

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@given(size=st.integers(1, 8), texts=st.lists(st.text(max_size=3), max_size=20))
def test_put_nowait_keeps_the_first_size_texts_in_order_and_refuses_the_rest(
    size: int, texts: list[str]
) -> None:
    box = Outbox(size)
    refused = 0
    for text in texts:
        try:
            box.put_nowait(text)
        except anyio.WouldBlock:
            refused += 1
    taken = []
    while True:
        try:
            taken.append(box.receive_nowait())
        except anyio.WouldBlock:
            break
    assert taken == texts[:size]
    assert refused == max(0, len(texts) - size)


async def test_a_waiting_receiver_is_woken_by_a_put() -> None:
    box = Outbox(4)
    got: list[str] = []

    async def receive() -> None:
        got.append(await box.receive())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(receive)
            await anyio.sleep(0.01)
            assert got == []
            box.put_nowait("hello")
    assert got == ["hello"]


async def test_put_waits_for_room_instead_of_dropping() -> None:
    box = Outbox(1)
    box.put_nowait("first")
    done = anyio.Event()

    async def reply() -> None:
        await box.put("reply")
        done.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reply)
            await anyio.sleep(0.01)
            assert not done.is_set() and len(box) == 1
            assert box.receive_nowait() == "first"
            await done.wait()
    assert box.receive_nowait() == "reply"


async def test_close_ends_iteration_after_the_queued_texts_and_refuses_puts() -> None:
    box = Outbox(4)
    box.put_nowait("a")
    box.put_nowait("b")
    box.close()
    box.close()
    with pytest.raises(anyio.ClosedResourceError):
        box.put_nowait("c")
    with pytest.raises(anyio.ClosedResourceError):
        await box.put("c")
    assert box.closed
    with anyio.fail_after(5):
        assert [text async for text in box] == ["a", "b"]
    with pytest.raises(anyio.EndOfStream):
        box.receive_nowait()


async def test_close_wakes_a_waiting_receiver_and_a_waiting_put() -> None:
    box = Outbox(1)
    box.put_nowait("full")
    outcomes: list[str] = []

    async def put() -> None:
        try:
            await box.put("late")
        except anyio.ClosedResourceError:
            outcomes.append("put refused")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(put)
            await anyio.sleep(0.01)
            box.close()
    assert outcomes == ["put refused"]
    assert await box.receive() == "full"
    with pytest.raises(anyio.EndOfStream):
        await box.receive()


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="size"):
        Outbox(0)
