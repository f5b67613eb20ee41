"""bounded() tells an adapter's own TimeoutError from the kit's deadline, and never hangs."""

from __future__ import annotations

import asyncio

import pytest

from detectflow.core.adapter import FunctionAdapter
from detectflow.testing import CheckSkipped, ConformanceFailure, ConformanceTarget
from detectflow.testing._harness import bounded, open_adapter
from tests.testing import doubles


async def _sleep_then(seconds: float, value: int) -> int:
    await asyncio.sleep(seconds)
    return value


async def _raise_timeout() -> int:
    raise TimeoutError("the adapter's own")


def test_bounded_returns_the_value_and_time() -> None:
    outcome = asyncio.run(bounded(_sleep_then(0.05, 7), 2.0))
    assert (outcome.value, outcome.error, outcome.hung) == (7, None, False)
    assert 0.04 <= outcome.elapsed < 1.0


def test_bounded_reports_the_callers_timeout_error_as_an_error_not_a_hang() -> None:
    outcome = asyncio.run(bounded(_raise_timeout(), 2.0))
    assert isinstance(outcome.error, TimeoutError)
    assert not outcome.hung


def test_bounded_cancels_a_call_past_its_limit() -> None:
    outcome = asyncio.run(bounded(_sleep_then(30, 1), 0.1))
    assert outcome.hung
    assert outcome.value is None
    assert outcome.elapsed < 1.0


def test_open_adapter_closes_the_adapter_after_use() -> None:
    made: list[FunctionAdapter] = []

    def healthy(timeout: float) -> FunctionAdapter:
        made.append(doubles.timed(doubles.healthy, timeout))
        return made[-1]

    async def use() -> None:
        async with open_adapter(ConformanceTarget(healthy=healthy), "healthy", 1.0):
            assert not made[0].closed

    asyncio.run(use())
    assert made[0].closed


def test_open_adapter_keeps_the_checks_failure_when_closing_also_fails() -> None:
    target = ConformanceTarget(healthy=lambda t: doubles.CloseOnceAdapter(doubles.healthy))

    async def use() -> None:
        async with open_adapter(target, "healthy", 1.0) as adapter:
            await adapter.aclose()
            raise ConformanceFailure("the check's own failure")

    with pytest.raises(ConformanceFailure, match="the check's own failure"):
        asyncio.run(use())


def test_open_adapter_reports_a_failing_close() -> None:
    target = ConformanceTarget(healthy=lambda t: doubles.CloseOnceAdapter(doubles.healthy))

    async def use() -> None:
        async with open_adapter(target, "healthy", 1.0) as adapter:
            await adapter.aclose()

    with pytest.raises(
        ConformanceFailure, match=r"closing the 'healthy' adapter .* already closed"
    ):
        asyncio.run(use())


def test_open_adapter_skips_a_missing_factory() -> None:
    async def use() -> None:
        async with open_adapter(
            ConformanceTarget(healthy=doubles.factory(doubles.healthy)), "slow", 1.0
        ):
            pass

    with pytest.raises(CheckSkipped, match="no 'slow' factory"):
        asyncio.run(use())
