"""The generic batcher and the batching adapter base, on a real event loop.

The batch functions here are plain coroutines that record what they got:
the batcher's job is grouping and routing, and that needs no network to be
shown. Waits are event-driven (an asyncio.Event released by the test), never
timed assertions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from detectflow.adapters.batching import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_BATCH_WAIT_MS,
    Batcher,
    BatchingAdapter,
    BatchLimits,
    BatchOutcome,
    batch_limits_from_options,
)
from detectflow.core.errors import PermanentProviderError, ProviderError, TransientProviderError
from detectflow.core.frames import make_frame
from detectflow.core.images import encode_png
from detectflow.core.models import Frame, ProviderConfig, RawDetection

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    """A batch function that records each batch and answers ``item * 10``."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate
        self.running = 0
        self.most_running = 0

    async def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            return [item * 10 for item in items]
        finally:
            self.running -= 1


def test_defaults_are_the_documented_ones() -> None:
    limits = batch_limits_from_options({})
    assert (limits.max_batch_size, limits.max_batch_wait_ms) == (8, 5.0)
    assert (DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_BATCH_WAIT_MS) == (8, 5.0)


def test_options_override_and_bad_options_are_permanent_errors_naming_the_option() -> None:
    limits = batch_limits_from_options(
        {"max_batch_size": "4", "max_batch_wait_ms": 2.5, "max_batches_in_flight": 2},
        max_batch_size=16,
    )
    assert limits == BatchLimits(4, 2.5, 2)
    assert batch_limits_from_options({}, max_batch_size=16).max_batch_size == 16
    for bad in ({"max_batch_size": 0}, {"max_batch_size": "x"}, {"max_batch_wait_ms": -1}):
        with pytest.raises(PermanentProviderError, match=next(iter(bad))):
            batch_limits_from_options(bad)


async def test_a_full_batch_leaves_at_once_without_waiting_for_the_timer() -> None:
    run = Recorder()
    batcher = Batcher(run, BatchLimits(max_batch_size=4, max_batch_wait_ms=60_000))
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)))
    assert results == [0, 10, 20, 30]
    assert run.batches == [[0, 1, 2, 3]]


async def test_a_partial_batch_leaves_when_its_first_item_has_waited_max_wait() -> None:
    run = Recorder()
    batcher = Batcher(run, BatchLimits(max_batch_size=8, max_batch_wait_ms=1))
    assert await asyncio.gather(batcher.submit(1), batcher.submit(2)) == [10, 20]
    assert sorted(i for b in run.batches for i in b) == [1, 2]  # sent though never full


async def test_many_items_are_split_into_batches_of_at_most_max_size_in_order() -> None:
    run = Recorder()
    batcher = Batcher(run, BatchLimits(max_batch_size=3, max_batch_wait_ms=1))
    results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert results == [i * 10 for i in range(10)]
    assert all(len(b) <= 3 for b in run.batches)
    assert [i for b in run.batches for i in b] == list(range(10))


async def test_several_batches_run_at_once_up_to_max_in_flight() -> None:
    gate = asyncio.Event()
    run = Recorder(gate)
    batcher = Batcher(run, BatchLimits(max_batch_size=2, max_batches_in_flight=3))
    calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(10)]
    while len(run.batches) < 3:
        await asyncio.sleep(0)
    for _ in range(5):
        await asyncio.sleep(0)
    assert run.running == 3 and len(run.batches) == 3  # the 4th waits for a free slot
    gate.set()
    assert await asyncio.gather(*calls) == [i * 10 for i in range(10)]
    assert run.most_running == 3
    assert sorted(i for b in run.batches for i in b) == list(range(10))


async def test_a_failed_batch_fails_each_item_with_its_own_copy_of_the_reason() -> None:
    async def broken(items: Sequence[int]) -> list[int | BaseException]:
        raise TransientProviderError("model server said 503", status=503)

    batcher = Batcher(broken, BatchLimits(max_batch_size=3, max_batch_wait_ms=1))
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(o, TransientProviderError) for o in outcomes)
    assert all(o.message == "model server said 503" and o.status == 503 for o in outcomes)  # type: ignore[union-attr]
    assert len({id(o) for o in outcomes}) == 3


async def test_a_partial_failure_fails_only_its_item() -> None:
    async def half(items: Sequence[int]) -> list[int | BaseException]:
        return [PermanentProviderError(f"bad {i}") if i % 2 else i for i in items]

    batcher = Batcher(half, BatchLimits(max_batch_size=4, max_batch_wait_ms=1))
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert outcomes[0] == 0 and outcomes[2] == 2
    assert [str(outcomes[1]), str(outcomes[3])] == ["bad 1", "bad 3"]


async def test_a_wrong_number_of_results_fails_the_whole_batch_permanently() -> None:
    async def short(items: Sequence[int]) -> list[int | BaseException]:
        return [1]

    batcher = Batcher(short, BatchLimits(max_batch_size=2, max_batch_wait_ms=60_000))
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(2)), return_exceptions=True)
    assert all(isinstance(o, PermanentProviderError) for o in outcomes)
    assert "1 results for 2 items" in str(outcomes[0])


async def test_a_caller_that_gives_up_before_its_batch_leaves_takes_its_item_back() -> None:
    run = Recorder()
    batcher = Batcher(run, BatchLimits(max_batch_size=8, max_batch_wait_ms=50))
    waiting = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)
    waiting.cancel()
    assert await batcher.submit(2) == 20
    assert run.batches == [[2]]


async def test_aclose_fails_waiting_items_and_is_safe_twice() -> None:
    gate = asyncio.Event()
    batcher = Batcher(Recorder(gate), BatchLimits(max_batch_size=1, max_batches_in_flight=1))
    calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
    for _ in range(5):
        await asyncio.sleep(0)
    await batcher.aclose()
    await batcher.aclose()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, TransientProviderError) for o in outcomes)
    with pytest.raises(PermanentProviderError, match="closed"):
        await batcher.submit(9)


# -- the adapter base ---------------------------------------------------------

PNG = encode_png(4, 2, bytes(4 * 2 * 3))


def frame(camera: str, number: int) -> Frame:
    return make_frame(camera, PNG, max_bytes=1 << 20, frame_number=number)


class EchoBatchAdapter(BatchingAdapter):
    """Answers each frame with a detection naming its camera and number."""

    provider_type = "echo-batch"

    def __init__(self, options: dict[str, object]) -> None:
        super().__init__(
            ProviderConfig(
                id="echo", provider_name="echo", provider_type="echo-batch",
                endpoint_url="", options=options,
            )
        )  # fmt: skip
        self.calls: list[list[str]] = []

    async def detect_batch(self, frames: Sequence[Frame]) -> list[BatchOutcome]:
        self.calls.append([f.camera_id for f in frames])
        out: list[BatchOutcome] = []
        for f in frames:
            if f.frame_number == 13:
                out.append(PermanentProviderError("unlucky frame"))
            else:
                out.append([RawDetection(f"{f.camera_id}#{f.frame_number}", 0.9, (0, 0, 1, 1))])
        return out


async def test_a_batching_adapter_returns_each_frame_its_own_answer_across_cameras() -> None:
    # a wait far longer than the test: batches leave only because they are full
    adapter = EchoBatchAdapter({"max_batch_size": 4, "max_batch_wait_ms": 60_000})
    frames = [frame(f"cam-{i % 3}", i) for i in range(12)]
    answers = await asyncio.gather(*(adapter.detect(f) for f in frames))
    assert [a[0].label for a in answers] == [f"{f.camera_id}#{f.frame_number}" for f in frames]
    assert len(adapter.calls) == 3 and all(len(c) == 4 for c in adapter.calls)
    assert any(len(set(c)) > 1 for c in adapter.calls)  # batches mixed cameras
    assert adapter.batch_sizes == [4, 4, 4]
    await adapter.aclose()


async def test_one_bad_frame_in_a_batch_fails_alone() -> None:
    adapter = EchoBatchAdapter({"max_batch_size": 4, "max_batch_wait_ms": 1})
    outcomes = await asyncio.gather(
        *(adapter.detect(frame("cam-1", n)) for n in (12, 13, 14)), return_exceptions=True
    )
    assert isinstance(outcomes[1], ProviderError) and outcomes[1].message == "unlucky frame"
    assert [o[0].label for o in (outcomes[0], outcomes[2])] == ["cam-1#12", "cam-1#14"]  # type: ignore[index]
    await adapter.aclose()


async def test_max_batch_size_one_calls_detect_batch_directly() -> None:
    adapter = EchoBatchAdapter({"max_batch_size": 1})
    await asyncio.gather(*(adapter.detect(frame("cam-1", n)) for n in range(3)))
    assert adapter.calls == [["cam-1"]] * 3
    assert adapter.batch_sizes == []
    with pytest.raises(PermanentProviderError, match="unlucky"):
        await adapter.detect(frame("cam-1", 13))
