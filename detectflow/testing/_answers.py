"""Comparing an adapter's answers: the one judgement behind every cross-talk check.

The concurrent check and the batch checks all ask the same question (did
this frame get the answer it gets alone, or another frame's?), so they ask it
here, once, with the same words in their reports.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence

from detectflow.core.adapter import ProviderAdapter
from detectflow.core.errors import ProviderError
from detectflow.core.models import Frame, RawDetection
from detectflow.testing._harness import ConformanceFailure, bounded, describe

__all__ = [
    "ANSWER_TOLERANCE",
    "answers_alone",
    "detect_all",
    "mismatch",
    "raw_list",
    "report_failed_calls",
    "report_wrong_answers",
    "require_distinct",
    "same_answer",
]

ANSWER_TOLERANCE = 1e-4
"""Relative difference allowed between two numbers of the same answer.

A model may compute an image in a batch with slightly different floating
point than the same image alone (another kernel, another summation order);
that is no cross-talk. Answers of different frames differ far more.
"""


def raw_list(value: object, what: str) -> list[RawDetection]:
    """``value`` as an answer, or a failure naming ``what`` returned it."""
    if not isinstance(value, list) or not all(isinstance(r, RawDetection) for r in value):
        raise ConformanceFailure(f"{what} must return list[RawDetection], got {value!r:.200}")
    return value


def same_answer(got: Sequence[RawDetection], want: Sequence[RawDetection]) -> bool:
    """The same detections in the same order, numbers equal within :data:`ANSWER_TOLERANCE`."""
    if len(got) != len(want):
        return False
    return all(_same_detection(a, b) for a, b in zip(got, want, strict=True))


def _same_detection(a: RawDetection, b: RawDetection) -> bool:
    if (a.label, a.box_format, a.units) != (b.label, b.box_format, b.units):
        return False
    numbers = zip((a.confidence, *a.box), (b.confidence, *b.box), strict=True)
    return all(_close(x, y) for x, y in numbers)


def _close(x: object, y: object) -> bool:
    if isinstance(x, int | float) and isinstance(y, int | float):
        return math.isclose(x, y, rel_tol=ANSWER_TOLERANCE, abs_tol=1e-9)
    return x == y


def mismatch(index: int, got: object, alone: Sequence[Sequence[RawDetection] | None]) -> str:
    """Why frame ``index``'s answer is wrong: another frame's answer, or nobody's."""
    answer = got if isinstance(got, list) else None
    owners = [
        j
        for j, own in enumerate(alone)
        if j != index and answer is not None and own is not None and same_answer(answer, own)
    ]
    if owners:
        return f"frame {index} got the answer of frame {owners[0]} (cross-talk)"
    return f"frame {index} got an answer no frame gets alone (is the provider deterministic?)"


async def answers_alone(
    adapter: ProviderAdapter, frames: Sequence[Frame], *, distinct: bool = True
) -> list[list[RawDetection]]:
    """Each frame's answer with nothing else in flight: what it must get in company too.

    ``distinct`` (the default) fails when all frames get one answer, which
    would hide answers delivered to the wrong frame.
    """
    alone: list[list[RawDetection]] = []
    for index, frame in enumerate(frames):
        try:
            alone.append(raw_list(await adapter.detect(frame), f"detect(frame {index})"))
        except ProviderError as exc:
            raise ConformanceFailure(f"healthy provider failed frame {index}: {exc}") from None
    if distinct:
        require_distinct(alone)
    return alone


def require_distinct(alone: Sequence[Sequence[RawDetection]]) -> None:
    """Fail when every frame gets one answer: then a misdelivered answer looks right."""
    if len({tuple(answer) for answer in alone}) < 2:
        raise ConformanceFailure(
            f"the healthy provider gave one answer for all {len(alone)} frames. This check "
            "sends different frames at once and compares each answer with the one its "
            "frame gets alone; when every frame gets the same answer, an answer delivered "
            "to the wrong frame (cross-talk) looks right, so a constant answer proves "
            "nothing and fails. Make the healthy provider's answers depend on the frame, "
            "as a real detector's do (a stand-in can derive its box from frame.image)"
        )


async def detect_all(
    adapter: ProviderAdapter, frames: Sequence[Frame], limit: float, what: str
) -> list[object]:
    """``detect`` on every frame at once: each answer or exception, or a failure at ``limit``."""
    outcome = await bounded(
        asyncio.gather(*(adapter.detect(f) for f in frames), return_exceptions=True), limit
    )
    if outcome.hung or outcome.value is None:
        raise ConformanceFailure(f"{what} were still running after {outcome.elapsed:.2f} s")
    return list(outcome.value)


def report_failed_calls(
    results: Sequence[object], what: str, where: Callable[[int], str] | None = None
) -> None:
    """Fail naming how many of ``results`` are exceptions, and the first of them."""
    errors = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    if errors:
        index, error = errors[0]
        place = f" ({where(index)})" if where is not None else ""
        raise ConformanceFailure(
            f"{len(errors)} of {len(results)} {what} failed; "
            f"first: frame {index}{place}: {describe(error)}"
        )


def report_wrong_answers(
    got: Sequence[object],
    alone: Sequence[Sequence[RawDetection] | None],
    what: str,
    where: Callable[[int], str] | None = None,
) -> None:
    """Fail naming the first frames whose answer in ``got`` is not their own.

    A frame whose ``alone`` is None is not judged and owns no answer (the
    failing frame of a batch). ``where`` adds to each line where the frame
    went (its batch, its position).
    """
    wrong = [
        i
        for i, answer in enumerate(got)
        if (own := alone[i]) is not None
        and (not isinstance(answer, list) or not same_answer(answer, own))
    ]
    if wrong:
        lines = [
            mismatch(i, got[i], alone) + (f", {where(i)}" if where is not None else "")
            for i in wrong[:3]
        ]
        raise ConformanceFailure(
            f"{len(wrong)} of {what} differ from the answer for the same frame alone:\n  "
            + "\n  ".join(lines)
        )
