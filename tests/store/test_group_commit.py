"""Group commit: concurrent submissions share one write, each answered once durable."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from detectflow.store.group_commit import GroupCommit


class SlowStore:
    """Writes take ``delay`` seconds, like a commit; remembers each batch."""

    def __init__(self, delay: float = 0.05, fail_on: int | None = None) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.batches: list[list[int]] = []
        self.durable: set[int] = set()
        self.writing = threading.Event()

    def write(self, items: Sequence[int]) -> None:
        self.writing.set()
        threading.Event().wait(self.delay)
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError(f"cannot write {self.fail_on}")
        self.batches.append(list(items))
        self.durable.update(items)


def test_submissions_while_a_batch_is_written_go_together_in_the_next() -> None:
    store = SlowStore()

    async def main() -> None:
        group: GroupCommit[int, None] = GroupCommit(store.write)
        first = asyncio.create_task(group.submit(0))
        await asyncio.to_thread(store.writing.wait)  # the first write is under way
        await asyncio.gather(first, *(group.submit(i) for i in range(1, 11)))

    asyncio.run(main())
    assert store.batches == [[0], list(range(1, 11))]


def test_a_submission_returns_only_once_its_item_is_written() -> None:
    store = SlowStore(delay=0.02)

    async def submit(group: GroupCommit[int, None], item: int) -> None:
        await group.submit(item)
        assert item in store.durable

    async def main() -> None:
        group: GroupCommit[int, None] = GroupCommit(store.write, max_batch=3)
        await asyncio.gather(*(submit(group, i) for i in range(10)))

    asyncio.run(main())
    assert sorted(i for b in store.batches for i in b) == list(range(10))
    assert max(len(b) for b in store.batches) <= 3


def test_a_failed_write_fails_its_batch_and_the_next_batch_still_goes() -> None:
    store = SlowStore(delay=0.02, fail_on=3)

    async def main() -> list[BaseException | None]:
        group: GroupCommit[int, None] = GroupCommit(store.write)
        first = asyncio.create_task(group.submit(0))
        await asyncio.to_thread(store.writing.wait)
        doomed = await asyncio.gather(*(group.submit(i) for i in (1, 2, 3)), return_exceptions=True)
        await group.submit(4)
        await first
        return [d if isinstance(d, BaseException) else None for d in doomed]

    outcomes = asyncio.run(main())
    assert all(isinstance(o, RuntimeError) and "cannot write 3" in str(o) for o in outcomes)
    assert store.batches == [[0], [4]]


def test_a_cancelled_request_does_not_cancel_the_write() -> None:
    store = SlowStore(delay=0.05)

    async def main() -> None:
        group: GroupCommit[int, None] = GroupCommit(store.write)
        request = asyncio.create_task(group.submit(7))
        await asyncio.to_thread(store.writing.wait)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        await group.submit(8)

    asyncio.run(main())
    assert store.durable == {7, 8}


def test_each_item_gets_its_own_outcome_and_only_its_own_error() -> None:
    def write(items: Sequence[int]) -> list[int | BaseException]:
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    async def main() -> list[object]:
        group: GroupCommit[int, int] = GroupCommit(write)
        return await asyncio.gather(*(group.submit(i) for i in range(4)), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert outcomes[0] == 0 and outcomes[2] == 20
    assert [str(o) for o in outcomes[1::2]] == ["odd 1", "odd 3"]
