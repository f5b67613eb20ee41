"""Plumbing shared by the checks: open a target's adapter, time a call, report.

Kept apart from the checks so each check reads as the rule it enforces. The
kit must never hang on a broken adapter, so every call it makes is bounded
and a call still running at its deadline is cancelled and reported.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from detectflow.core.adapter import ProviderAdapter
from detectflow.testing.target import AdapterFactory, ConformanceTarget

__all__ = [
    "NETWORK_FAULTS",
    "CheckSkipped",
    "ConformanceFailure",
    "Outcome",
    "bounded",
    "describe",
    "open_adapter",
]

T = TypeVar("T")

# How long a cancelled call may take to unwind before the kit stops waiting.
_CANCEL_WAIT_SECONDS = 2.0


class ConformanceFailure(AssertionError):
    """The adapter broke a rule of the contract; the message says which and how."""


class CheckSkipped(Exception):
    """The target cannot produce the situation a check needs."""


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """How a bounded call ended: a value, an exception, or still running at its deadline."""

    elapsed: float
    value: T | None = None
    error: BaseException | None = None
    hung: bool = False


async def bounded(call: Awaitable[T], limit: float) -> Outcome[T]:
    """Await ``call`` for at most ``limit`` seconds, timing it.

    A separate task (not ``asyncio.timeout``) so that a ``TimeoutError`` the
    adapter raises itself is told apart from the kit's own deadline.
    """
    start = time.perf_counter()
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=limit)
    elapsed = time.perf_counter() - start
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=_CANCEL_WAIT_SECONDS)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved, so asyncio does not warn about it
        return Outcome(elapsed, hung=True)
    error = task.exception()
    if error is not None:
        return Outcome(elapsed, error=error)
    return Outcome(elapsed, value=task.result())


NETWORK_FAULTS = frozenset(
    {"transient_fault", "permanent_fault", "malformed_answer", "unreachable"}
)
"""Situations that need a network between detectflow and the detector to happen at all."""


@asynccontextmanager
async def open_adapter(
    target: ConformanceTarget, situation: str, timeout: float
) -> AsyncIterator[ProviderAdapter]:
    """Build the adapter for ``situation`` and close it afterwards, whatever happens.

    A network fault is skipped for an adapter that declares ``in_process``:
    the kit sees that by itself, so a vendor neither fails those checks nor
    has to explain their absence.
    """
    factory = getattr(target, situation)
    if factory is None:
        kind = await _healthy_kind(target, timeout) if situation in NETWORK_FAULTS else None
        if kind is not None and kind.in_process:
            raise CheckSkipped(_in_process_reason(kind, situation))
        raise CheckSkipped(f"the conformance target gives no {situation!r} factory")
    adapter = await _make(factory, situation, timeout)
    if adapter is None:
        raise CheckSkipped(f"the target's {situation!r} factory returned None")
    if situation in NETWORK_FAULTS and type(adapter).in_process:
        await _close_quietly(adapter)
        raise CheckSkipped(_in_process_reason(type(adapter), situation))
    try:
        yield adapter
    except BaseException:
        await _close_quietly(adapter)  # the check's own failure is the one to report
        raise
    closed = await bounded(adapter.aclose(), _CANCEL_WAIT_SECONDS)
    if closed.hung or closed.error is not None:
        why = "hung" if closed.error is None else f"raised {describe(closed.error)}"
        raise ConformanceFailure(f"closing the {situation!r} adapter after the check {why}")


async def _make(factory: AdapterFactory, situation: str, timeout: float) -> ProviderAdapter | None:
    made = factory(timeout)
    adapter = await made if inspect.isawaitable(made) else made
    if adapter is not None and not isinstance(adapter, ProviderAdapter):
        raise ConformanceFailure(
            f"the {situation!r} factory returned {type(adapter).__name__}, "
            "not a detectflow.core.adapter.ProviderAdapter"
        )
    return adapter


async def _healthy_kind(target: ConformanceTarget, timeout: float) -> type[ProviderAdapter] | None:
    """The healthy adapter's class; None when its factory is broken, which the
    healthy checks report, not this one."""
    try:
        healthy = await _make(target.healthy, "healthy", timeout)
    except Exception:
        return None
    if healthy is None:
        return None
    await _close_quietly(healthy)
    return type(healthy)


async def _close_quietly(adapter: ProviderAdapter) -> None:
    """Close, bounded, ignoring how it ends: another outcome is being reported."""
    await bounded(adapter.aclose(), _CANCEL_WAIT_SECONDS)


def _in_process_reason(kind: type[ProviderAdapter], situation: str) -> str:
    return (
        f"{kind.__name__} runs in-process (in_process = True): with no network or "
        f"service between detectflow and the detector, the {situation!r} fault cannot happen"
    )


def describe(error: BaseException) -> str:
    """One line naming an exception's class and message, for failure reports."""
    return f"{type(error).__module__}.{type(error).__qualname__}: {error}"
