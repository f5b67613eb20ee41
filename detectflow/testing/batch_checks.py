"""The rules a batching adapter keeps on top of every adapter's, one coroutine per rule.

An adapter declares batch support by subclassing
:class:`~detectflow.adapters.batching.BatchingAdapter`: its ``detect`` then
groups the frames in flight (from any camera) into ``detect_batch`` calls.
Grouping is where answers get lost or swapped: a batch answer read back in
the wrong order, one frame's failure failing its neighbours, or an answer
given to a frame of another camera. These checks run only for such adapters
(and only when ``batch_limits()`` allows more than one frame); for the rest
they are skipped with that reason. Like :mod:`.checks`, each raises
:class:`ConformanceFailure` naming the frame, or :class:`CheckSkipped`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from detectflow.adapters.batching import BatchingAdapter, BatchLimits, BatchOutcome
from detectflow.core.errors import ProviderError
from detectflow.core.models import Frame, RawDetection
from detectflow.testing._answers import (
    answers_alone,
    detect_all,
    mismatch,
    raw_list,
    report_failed_calls,
    report_wrong_answers,
    require_distinct,
)
from detectflow.testing._harness import (
    CheckSkipped,
    ConformanceFailure,
    bounded,
    describe,
    open_adapter,
)
from detectflow.testing.target import ConformanceTarget

__all__ = [
    "DIRECT_BATCH_SIZE",
    "check_batch_mixing_cameras",
    "check_batch_order",
    "check_batch_partial_failure",
]

DIRECT_BATCH_SIZE = 8
"""At most this many frames in the batches the kit builds itself (fewer when
``batch_limits()`` allows fewer): enough to see answers shifted or reversed."""


@asynccontextmanager
async def _batching(
    target: ConformanceTarget,
) -> AsyncIterator[tuple[BatchingAdapter, BatchLimits]]:
    """The healthy adapter and its limits, or a skip when it does not batch."""
    timeout = target.healthy_timeout_seconds
    async with open_adapter(target, "healthy", timeout) as adapter:
        if not isinstance(adapter, BatchingAdapter):
            raise CheckSkipped(
                f"{type(adapter).__name__} does not declare batch support (it does not "
                "subclass detectflow.adapters.batching.BatchingAdapter)"
            )
        outcome = await bounded(adapter.batch_limits(), timeout + target.grace_seconds)
        if outcome.hung or outcome.error is not None or outcome.value is None:
            why = "hung" if outcome.error is None else f"raised {describe(outcome.error)}"
            raise ConformanceFailure(f"batch_limits() of the healthy adapter {why}")
        limits = outcome.value
        if not isinstance(limits, BatchLimits):
            raise ConformanceFailure(
                f"batch_limits() returned {limits!r:.200}, not a detectflow BatchLimits"
            )
        if limits.max_batch_size < 2:
            raise CheckSkipped(
                f"{type(adapter).__name__}.batch_limits() allows one frame per batch "
                f"({limits}), so frames are never grouped"
            )
        yield adapter, limits


class _BatchLog:
    """The frames of every ``detect_batch`` call, seen on their way through.

    Set as an instance attribute before the adapter's first ``detect``: the
    batcher takes ``self.detect_batch`` when it is made, so it calls this, and
    this calls the adapter's own method. Nothing is faked; the kit only learns
    which frames shared a batch, to say so in its reports.
    """

    def __init__(self, adapter: BatchingAdapter) -> None:
        self.batches: list[list[Frame]] = []
        self._inner = adapter.detect_batch
        setattr(adapter, "detect_batch", self)  # noqa: B010 (mypy: a method is read-only)

    async def __call__(self, frames: Sequence[Frame]) -> Sequence[BatchOutcome]:
        self.batches.append(list(frames))
        return await self._inner(frames)

    def where(self, frame: Frame) -> str:
        for batch in self.batches:
            if any(f is frame for f in batch):
                return f"in a batch of {len(batch)} from cameras {_cameras(batch)}"
        return "in no detect_batch call"


def _cameras(frames: Sequence[Frame]) -> str:
    return ", ".join(sorted({f.camera_id for f in frames}))


async def check_batch_mixing_cameras(target: ConformanceTarget) -> None:
    """Frames of many cameras in flight share batches, and each gets its own answer."""
    count = target.concurrency
    async with _batching(target) as (adapter, limits):
        frames = [target.frame(i) for i in range(count)]
        cameras = {f.camera_id for f in frames}
        if len(cameras) < 2:
            raise CheckSkipped(
                f"the target's {count} frames all come from camera {frames[0].camera_id!r}; "
                "this check needs frames of several cameras"
            )
        log = _BatchLog(adapter)
        alone = await answers_alone(adapter, frames)
        log.batches.clear()
        limit = target.healthy_timeout_seconds + target.grace_seconds
        together = await detect_all(adapter, frames, limit, f"{count} concurrent detect calls")
    report_failed_calls(together, "batched detect calls", lambda i: log.where(frames[i]))
    sizes = [len(batch) for batch in log.batches]
    if not any(size > 1 for size in sizes):
        raise ConformanceFailure(
            f"{count} detect calls in flight at once were never grouped (detect_batch got "
            f"batches of {sorted(set(sizes)) or 'no frames'}) though batch_limits() allows "
            f"{limits.max_batch_size}; detect must send frames through the batcher"
        )
    if not any(len({f.camera_id for f in batch}) > 1 for batch in log.batches):
        raise ConformanceFailure(
            f"frames of {len(cameras)} cameras were in flight, but no batch mixed cameras; "
            "the batcher must group frames from any camera"
        )
    report_wrong_answers(
        together,
        alone,
        f"{count} answers of batches mixing cameras",
        lambda i: log.where(frames[i]),
    )


async def check_batch_partial_failure(target: ConformanceTarget) -> None:
    """The target's failing frame fails alone, with a reason; its batch's others succeed."""
    async with _batching(target) as (adapter, limits):
        if target.failing_frame is None:
            raise CheckSkipped(
                "the conformance target gives no 'failing_frame': the kit cannot make one "
                "frame of a batch fail for every provider by itself; give a frame the healthy "
                "provider fails alone (detectflow.testing.undecodable_frame suits an adapter "
                "that decodes images itself)"
            )
        size = min(limits.max_batch_size, DIRECT_BATCH_SIZE)
        goods = [target.frame(i) for i in range(max(size - 1, 1))]
        bad_at = len(goods) // 2
        frames = [*goods[:bad_at], target.failing_frame(0), *goods[bad_at:]]
        alone = await answers_alone(adapter, goods, distinct=len(goods) > 1)
        expected = [*alone[:bad_at], None, *alone[bad_at:]]  # the failing slot: judged apart
        what = f"a batch of {len(frames)} frames whose frame {bad_at} is the target's failing_frame"
        results = await _detect_batch(target, adapter, frames, what)
        _judge_partial(results, frames, expected, bad_at, "detect_batch", what)
        # The same frames through detect, as the flow sends them: the batcher
        # must hand the failure to its own frame's caller only.
        limit = target.healthy_timeout_seconds + target.grace_seconds
        results = await detect_all(adapter, frames, limit, f"detect calls for {what}")
    _judge_partial(results, frames, expected, bad_at, "detect", what)


def _judge_partial(
    results: Sequence[object],
    frames: Sequence[Frame],
    expected: Sequence[Sequence[RawDetection] | None],
    bad_at: int,
    how: str,
    what: str,
) -> None:
    failing = results[bad_at]
    if not isinstance(failing, ProviderError):
        if isinstance(failing, BaseException):
            got = f"frame {bad_at} raised {describe(failing)}"
        else:
            got = f"{mismatch(bad_at, failing, expected)} instead of failing"
        raise ConformanceFailure(
            f"{how} on {what}: {got}; it must fail with a ProviderError "
            "(TransientProviderError or PermanentProviderError) that says why"
        )
    if not str(failing.message).strip():
        raise ConformanceFailure(
            f"{how} on {what}: frame {bad_at} failed with an empty message; say what failed"
        )
    for index, result in enumerate(results):
        if index != bad_at and isinstance(result, BaseException):
            raise ConformanceFailure(
                f"{how} on {what}: frame {index} ({frames[index].camera_id}) failed too, with "
                f"{describe(result)}; one frame's failure must not fail the others"
            )
    report_wrong_answers(results, expected, f"the answers of {how} on {what}")


async def check_batch_order(target: ConformanceTarget) -> None:
    """``detect_batch`` returns one result per frame, in the frames' order."""
    async with _batching(target) as (adapter, limits):
        size = min(limits.max_batch_size, DIRECT_BATCH_SIZE)
        frames = [target.frame(i) for i in range(size)]
        alone = []
        for index, frame in enumerate(frames):
            (result,) = await _detect_batch(target, adapter, [frame], f"frame {index} alone")
            if isinstance(result, BaseException):
                raise ConformanceFailure(
                    f"detect_batch failed frame {index} alone: {describe(result)}"
                )
            alone.append(raw_list(result, f"detect_batch([frame {index}])[0]"))
        require_distinct(alone)
        results = await _detect_batch(target, adapter, frames, f"{size} frames")
    failed = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    if failed:
        index, error = failed[0]
        raise ConformanceFailure(
            f"detect_batch on {size} frames failed frame {index}, which it answers alone: "
            f"{describe(error)}"
        )
    report_wrong_answers(
        results,
        alone,
        f"{size} answers of one detect_batch call (it must answer in the frames' order)",
        lambda i: f"at position {i}",
    )


async def _detect_batch(
    target: ConformanceTarget, adapter: BatchingAdapter, frames: Sequence[Frame], what: str
) -> list[object]:
    """``detect_batch(frames)``, bounded, with one result per frame or a failure."""
    limit = target.healthy_timeout_seconds + target.grace_seconds
    outcome = await bounded(adapter.detect_batch(frames), limit)
    if outcome.hung:
        raise ConformanceFailure(
            f"detect_batch on {what} was still running after {outcome.elapsed:.2f} s"
        )
    if outcome.error is not None:
        raise ConformanceFailure(
            f"detect_batch on {what} raised {describe(outcome.error)}; it must return one "
            "result per frame (a frame that fails gets its ProviderError in its place)"
        )
    results = outcome.value
    if not isinstance(results, Sequence) or isinstance(results, str | bytes):
        raise ConformanceFailure(
            f"detect_batch on {what} returned {results!r:.200}, not a sequence of results"
        )
    if len(results) != len(frames):
        raise ConformanceFailure(
            f"detect_batch on {what} returned {len(results)} results for {len(frames)} frames; "
            "it must return one per frame, in order"
        )
    return list(results)
