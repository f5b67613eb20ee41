"""The conformance checks as pytest tests, on one class a target plugs into.

:class:`AdapterConformance` asks for one fixture, ``detectflow_target``,
returning a :class:`~detectflow.testing.target.ConformanceTarget`. The
:mod:`~detectflow.testing.plugin` collects it wherever a test module defines
that fixture; subclassing it (``class TestAcme(AdapterConformance): pass``)
collects it explicitly. There is no pytest-asyncio: each test runs its check
on a fresh event loop with :func:`asyncio.run`, so nothing leaks between them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from detectflow.core.errors import PermanentProviderError, TransientProviderError
from detectflow.testing import batch_checks, checks
from detectflow.testing._harness import CheckSkipped, ConformanceFailure
from detectflow.testing.plugin import FIXTURE_NAME
from detectflow.testing.target import ConformanceTarget

__all__ = ["FIXTURE_NAME", "AdapterConformance", "run_check"]


def run_check(check: Coroutine[Any, Any, None]) -> None:
    """Run one check; a broken rule fails the test with the check's message, once.

    The skip or failure is raised after the ``except`` block, not inside it:
    raised inside, pytest would print the message twice, as the failure and
    as the exception it happened "during the handling of".
    """
    try:
        asyncio.run(check)
    except (CheckSkipped, ConformanceFailure) as exc:
        outcome = exc
    else:
        return
    if isinstance(outcome, CheckSkipped):
        pytest.skip(str(outcome))
    pytest.fail(str(outcome), pytrace=False)


class AdapterConformance:
    """Every rule a provider adapter must keep; needs the ``detectflow_target`` fixture."""

    def test_declares_provider_type(self, detectflow_target: ConformanceTarget) -> None:
        run_check(checks.check_provider_type(detectflow_target))

    def test_valid_answers_normalize(self, detectflow_target: ConformanceTarget) -> None:
        run_check(checks.check_valid_answers(detectflow_target))

    def test_timeout_is_honoured(self, detectflow_target: ConformanceTarget) -> None:
        run_check(checks.check_timeout(detectflow_target))

    def test_transient_fault_is_transient(self, detectflow_target: ConformanceTarget) -> None:
        run_check(checks.check_fault(detectflow_target, "transient_fault", TransientProviderError))

    def test_permanent_fault_is_permanent(self, detectflow_target: ConformanceTarget) -> None:
        run_check(checks.check_fault(detectflow_target, "permanent_fault", PermanentProviderError))

    def test_malformed_answer_is_permanent(self, detectflow_target: ConformanceTarget) -> None:
        run_check(checks.check_fault(detectflow_target, "malformed_answer", PermanentProviderError))

    def test_unreachable_is_transient(self, detectflow_target: ConformanceTarget) -> None:
        run_check(checks.check_fault(detectflow_target, "unreachable", TransientProviderError))

    def test_concurrent_calls_get_own_answers(self, detectflow_target: ConformanceTarget) -> None:
        run_check(checks.check_concurrent_answers(detectflow_target))

    def test_aclose_is_idempotent(self, detectflow_target: ConformanceTarget) -> None:
        run_check(checks.check_aclose_idempotent(detectflow_target))

    def test_async_context_manager(self, detectflow_target: ConformanceTarget) -> None:
        run_check(checks.check_async_context_manager(detectflow_target))

    def test_health_ok_when_healthy(self, detectflow_target: ConformanceTarget) -> None:
        run_check(checks.check_health(detectflow_target, "healthy", expect_ok=True))

    def test_health_not_ok_when_unreachable(self, detectflow_target: ConformanceTarget) -> None:
        run_check(checks.check_health(detectflow_target, "unreachable", expect_ok=False))

    # -- adapters that declare batch support (skipped for the others) ----------

    def test_batch_mixing_cameras_answers_own_frames(
        self, detectflow_target: ConformanceTarget
    ) -> None:
        run_check(batch_checks.check_batch_mixing_cameras(detectflow_target))

    def test_batch_partial_failure_fails_alone(self, detectflow_target: ConformanceTarget) -> None:
        run_check(batch_checks.check_batch_partial_failure(detectflow_target))

    def test_detect_batch_answers_in_order(self, detectflow_target: ConformanceTarget) -> None:
        run_check(batch_checks.check_batch_order(detectflow_target))
