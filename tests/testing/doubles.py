"""In-process adapters for the kit's own tests: one that keeps the contract, many that don't.

Each broken target breaks exactly one rule, so a sub-session running the
suite against it must fail that rule's test and pass the others.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from detectflow.adapters.batching import BatchingAdapter, BatchOutcome
from detectflow.core.adapter import FunctionAdapter, ProviderAdapter, probe_frame
from detectflow.core.errors import PermanentProviderError, TransientProviderError
from detectflow.core.hookspecs import hookimpl
from detectflow.core.models import Frame, ProbeResult, RawDetection
from detectflow.testing import ConformanceTarget, undecodable_frame

__all__ = [
    "BROKEN",
    "BatchAdapter",
    "InProcessAdapter",
    "LocalAdapter",
    "LocalPlugin",
    "answer_for",
    "good_batch_target",
    "good_target",
]

Handler = Callable[[Frame], Awaitable[list[RawDetection]]]
LABELS = ("person", "face", "car", "truck")


def answer_for(frame: Frame) -> list[RawDetection]:
    """A deterministic answer per frame: 1-3 valid fractional boxes from the image's hash."""
    seed = hashlib.sha256(frame.image).digest()
    answer = []
    for n in range(1 + seed[0] % 3):
        x, y = seed[1 + n] / 512, seed[4 + n] / 512  # in [0, 0.5)
        w, h = 0.1 + seed[7 + n] / 1024, 0.1 + seed[10 + n] / 1024
        confidence = 0.3 + seed[13 + n] / 400
        answer.append(RawDetection(LABELS[seed[16 + n] % 4], confidence, (x, y, x + w, y + h)))
    return answer


async def healthy(frame: Frame) -> list[RawDetection]:
    await asyncio.sleep(0.001)
    return answer_for(frame)


async def hangs(frame: Frame) -> list[RawDetection]:
    await asyncio.sleep(60)
    return []


def raises(error: Exception) -> Handler:
    async def handler(frame: Frame) -> list[RawDetection]:
        raise error

    return handler


def timed(handler: Handler, timeout: float) -> FunctionAdapter:
    """A FunctionAdapter that honours ``timeout`` the way a real adapter must."""

    async def call(frame: Frame) -> list[RawDetection]:
        try:
            async with asyncio.timeout(timeout):
                return await handler(frame)
        except TimeoutError:
            raise TransientProviderError(f"no answer within {timeout:g} s") from None

    return FunctionAdapter(call)


def factory(handler: Handler) -> Callable[[float], ProviderAdapter]:
    return lambda timeout: timed(handler, timeout)


def good_target() -> ConformanceTarget:
    return ConformanceTarget(
        healthy=factory(healthy),
        slow=factory(hangs),
        transient_fault=factory(raises(TransientProviderError("HTTP 503", status=503))),
        permanent_fault=factory(raises(PermanentProviderError("HTTP 400", status=400))),
        malformed_answer=factory(raises(PermanentProviderError("answer is not JSON"))),
        unreachable=factory(raises(TransientProviderError("connection refused"))),
    )


class BatchAdapter(BatchingAdapter):
    """A batching provider that keeps the contract: one answer per frame, in order,
    and a frame it cannot decode (a PNG without pixel data) fails alone."""

    provider_type = "batch-double"

    def __init__(self) -> None:
        super().__init__(FunctionAdapter(healthy).config)

    async def detect_batch(self, frames: Sequence[Frame]) -> Sequence[BatchOutcome]:
        await asyncio.sleep(0.001)
        return [_batch_outcome(frame) for frame in frames]


def _batch_outcome(frame: Frame) -> BatchOutcome:
    if b"IDAT" not in frame.image:
        return PermanentProviderError("cannot decode the frame's image: no pixel data")
    return answer_for(frame)


def good_batch_target() -> ConformanceTarget:
    return replace(
        good_target(), healthy=lambda timeout: BatchAdapter(), failing_frame=undecodable_frame
    )


# -- adapters that break one rule each -------------------------------------------


class CrossTalkAdapter(ProviderAdapter):
    """Keeps the frame in flight on the instance: concurrent calls overwrite it."""

    provider_type = "crosstalk"

    def __init__(self) -> None:
        super().__init__(FunctionAdapter(healthy).config)
        self.current: Frame | None = None

    async def detect(self, frame: Frame) -> list[RawDetection]:
        self.current = frame
        await asyncio.sleep(0.002)
        assert self.current is not None
        return answer_for(self.current)


class CloseOnceAdapter(FunctionAdapter):
    async def aclose(self) -> None:
        if self.closed:
            raise RuntimeError("already closed")
        self.closed = True


class RaisingHealthAdapter(FunctionAdapter):
    async def health(self) -> ProbeResult:
        await self.detect(probe_frame())  # a ProviderError escapes
        return ProbeResult(True, 0.0, "ok")


class NoTypeAdapter(FunctionAdapter):
    provider_type = ""


class InProcessAdapter(FunctionAdapter):
    """A local detector: it declares in_process, so network faults cannot reach it."""

    provider_type = "local-double"
    in_process = True


class LocalAdapter(ProviderAdapter):
    """An in-process provider type for a registry (built from a config alone, as
    plugins' adapters are): its configs need no endpoint_url."""

    provider_type = "local-test"
    in_process = True

    async def detect(self, frame: Frame) -> list[RawDetection]:
        return answer_for(frame)


class LocalPlugin:
    @hookimpl
    def detectflow_provider_types(self) -> list[type[ProviderAdapter]]:
        return [LocalAdapter]


async def pixels_as_fractions(frame: Frame) -> list[RawDetection]:
    scale = frame.width or 100  # pixel coordinates, declared as fractions
    return [replace(r, box=tuple(v * scale for v in r.box)) for r in answer_for(frame)]  # type: ignore[arg-type]


async def bad_confidence(frame: Frame) -> list[RawDetection]:
    return [replace(r, confidence=r.confidence + 1.0) for r in answer_for(frame)]


async def one_answer(frame: Frame) -> list[RawDetection]:
    return [RawDetection("person", 0.9, (0.1, 0.1, 0.5, 0.5))]


async def ignores_timeout(frame: Frame) -> list[RawDetection]:
    await asyncio.sleep(3)
    return []


def _with(**changes: Any) -> ConformanceTarget:
    return replace(good_target(), **changes)


class ReversedBatchAdapter(BatchAdapter):
    """Reads the batch answer back in the wrong order."""

    async def detect_batch(self, frames: Sequence[Frame]) -> Sequence[BatchOutcome]:
        return list(reversed(await super().detect_batch(frames)))


class WholeBatchFailsAdapter(BatchAdapter):
    """Fails every frame of a batch when one of them cannot be decoded."""

    async def detect_batch(self, frames: Sequence[Frame]) -> Sequence[BatchOutcome]:
        outcomes = await super().detect_batch(frames)
        for outcome in outcomes:
            if isinstance(outcome, PermanentProviderError):
                raise outcome
        return outcomes


class DropsFailedFrameAdapter(BatchAdapter):
    """Leaves a failed frame out of the answer, so the frames after it shift."""

    async def detect_batch(self, frames: Sequence[Frame]) -> Sequence[BatchOutcome]:
        outcomes = await super().detect_batch(frames)
        return [o for o in outcomes if not isinstance(o, PermanentProviderError)]


class NeverGroupsAdapter(BatchAdapter):
    """Declares batches of 8 but sends every frame alone."""

    async def detect(self, frame: Frame) -> list[RawDetection]:
        (outcome,) = await self.detect_batch([frame])
        if isinstance(outcome, PermanentProviderError):
            raise outcome
        return outcome


def _batch_with(adapter: Callable[[], BatchAdapter]) -> ConformanceTarget:
    return replace(good_batch_target(), healthy=lambda timeout: adapter())


BROKEN: dict[str, Callable[[], ConformanceTarget]] = {
    # a 503 surfaces as a plain RuntimeError instead of TransientProviderError
    "runtime_error_for_503": lambda: _with(
        transient_fault=factory(raises(RuntimeError("HTTP 503")))
    ),
    # a refusal is classified as worth retrying
    "refusal_as_transient": lambda: _with(
        permanent_fault=factory(raises(TransientProviderError("HTTP 400")))
    ),
    # the adapter waits for the provider however long it takes
    "ignores_timeout": lambda: _with(slow=lambda timeout: FunctionAdapter(ignores_timeout)),
    # concurrent calls get each other's answers
    "cross_talk": lambda: _with(healthy=lambda timeout: CrossTalkAdapter()),
    # pixel coordinates declared as fractions
    "pixels_as_fractions": lambda: _with(healthy=factory(pixels_as_fractions)),
    # confidences outside [0, 1]
    "bad_confidence": lambda: _with(healthy=factory(bad_confidence)),
    # a second aclose() raises
    "close_once": lambda: _with(healthy=lambda timeout: CloseOnceAdapter(healthy)),
    # health() lets the provider's error escape instead of reporting ok=False
    "raising_health": lambda: _with(
        unreachable=lambda timeout: RaisingHealthAdapter(raises(TransientProviderError("refused")))
    ),
    # the same answer for every frame: cross-talk would go unseen
    "one_answer_for_all": lambda: _with(healthy=factory(one_answer)),
    # no provider_type to register the adapter under
    "no_provider_type": lambda: _with(healthy=lambda timeout: NoTypeAdapter(healthy)),
    # a batch answer read back in the wrong order
    "batch_reversed": lambda: _batch_with(ReversedBatchAdapter),
    # one undecodable frame fails its whole batch
    "batch_fails_whole": lambda: _batch_with(WholeBatchFailsAdapter),
    # a failed frame is left out of the batch answer
    "batch_drops_failed_frame": lambda: _batch_with(DropsFailedFrameAdapter),
    # declares batch support, never groups frames
    "batch_never_groups": lambda: _batch_with(NeverGroupsAdapter),
}
