"""The batch checks' own edges: what they skip and why, and the float noise they allow.

Which broken batch adapters each check fails is shown in test_suite.py (the
suite run in sub-sessions); here the checks are called directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import pytest

from detectflow.adapters.batching import BatchOutcome
from detectflow.core.models import Frame
from detectflow.testing import CheckSkipped, conformance_frame
from detectflow.testing.batch_checks import (
    check_batch_mixing_cameras,
    check_batch_order,
    check_batch_partial_failure,
)
from tests.testing import doubles


def test_partial_failure_is_skipped_without_a_failing_frame() -> None:
    target = dataclasses.replace(doubles.good_batch_target(), failing_frame=None)
    with pytest.raises(CheckSkipped, match="gives no 'failing_frame': the kit cannot make one"):
        asyncio.run(check_batch_partial_failure(target))


def test_mixing_is_skipped_when_every_frame_comes_from_one_camera() -> None:
    def one_camera(index: int) -> Frame:
        return dataclasses.replace(conformance_frame(index), camera_id="only")

    target = dataclasses.replace(doubles.good_batch_target(), frame=one_camera)
    with pytest.raises(CheckSkipped, match="all come from camera 'only'"):
        asyncio.run(check_batch_mixing_cameras(target))


class NoisyBatchAdapter(doubles.BatchAdapter):
    """In a batch, every confidence is off by a relative 1e-6, as a batched kernel may be."""

    async def detect_batch(self, frames: Sequence[Frame]) -> Sequence[BatchOutcome]:
        outcomes = await super().detect_batch(frames)
        if len(frames) == 1:
            return outcomes
        return [
            o
            if isinstance(o, BaseException)
            else [dataclasses.replace(r, confidence=r.confidence * (1 - 1e-6)) for r in o]
            for o in outcomes
        ]


@pytest.mark.parametrize(
    "check", [check_batch_mixing_cameras, check_batch_order, check_batch_partial_failure]
)
def test_float_noise_between_a_batch_and_a_frame_alone_is_no_cross_talk(check: object) -> None:
    target = dataclasses.replace(
        doubles.good_batch_target(), healthy=lambda timeout: NoisyBatchAdapter()
    )
    asyncio.run(check(target))  # type: ignore[operator]
