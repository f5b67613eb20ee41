"""bounded() tells an adapter's own TimeoutError from the kit's deadline, and never hangs;
open_adapter() skips network faults for an adapter that declares itself in-process."""

from __future__ import annotations

import asyncio

import pytest

from detectflow.core.adapter import FunctionAdapter
from detectflow.core.errors import PermanentProviderError, TransientProviderError
from detectflow.testing import CheckSkipped, ConformanceFailure, ConformanceTarget, checks
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


NETWORK_CHECKS = {
    "transient_fault": lambda target: checks.check_fault(
        target, "transient_fault", TransientProviderError
    ),
    "permanent_fault": lambda target: checks.check_fault(
        target, "permanent_fault", PermanentProviderError
    ),
    "malformed_answer": lambda target: checks.check_fault(
        target, "malformed_answer", PermanentProviderError
    ),
    "unreachable": lambda target: checks.check_fault(target, "unreachable", TransientProviderError),
    "unreachable health": lambda target: checks.check_health(target, "unreachable", False),
}


@pytest.mark.parametrize("check", sorted(NETWORK_CHECKS))
def test_an_in_process_adapter_skips_network_faults_with_no_factories(check: str) -> None:
    target = ConformanceTarget(healthy=lambda t: doubles.InProcessAdapter(doubles.healthy))
    with pytest.raises(CheckSkipped, match=r"InProcessAdapter runs in-process \(in_process"):
        asyncio.run(NETWORK_CHECKS[check](target))


@pytest.mark.parametrize("check", sorted(NETWORK_CHECKS))
def test_an_in_process_adapter_skips_network_faults_even_given_factories(check: str) -> None:
    """The CONTRIBUTING trap: fault URLs handed to a detector that never uses a URL."""
    local = lambda t: doubles.InProcessAdapter(doubles.healthy)  # noqa: E731
    target = ConformanceTarget(
        healthy=local,
        transient_fault=local,
        permanent_fault=local,
        malformed_answer=local,
        unreachable=local,
    )
    with pytest.raises(CheckSkipped, match="cannot happen"):
        asyncio.run(NETWORK_CHECKS[check](target))


@pytest.mark.parametrize("check", sorted(NETWORK_CHECKS))
def test_a_network_adapter_without_a_fault_factory_is_told_which(check: str) -> None:
    target = ConformanceTarget(healthy=doubles.factory(doubles.healthy))
    with pytest.raises(CheckSkipped, match=r"the conformance target gives no '\w+' factory"):
        asyncio.run(NETWORK_CHECKS[check](target))


def test_an_in_process_adapter_still_runs_the_timeout_check() -> None:
    """A local model can be slow: the timeout rule is not a network fault."""
    target = ConformanceTarget(
        healthy=lambda t: doubles.InProcessAdapter(doubles.healthy),
        slow=lambda t: doubles.InProcessAdapter(doubles.ignores_timeout),
    )
    with pytest.raises(ConformanceFailure, match="the timeout is not honoured"):
        asyncio.run(checks.check_timeout(target))
