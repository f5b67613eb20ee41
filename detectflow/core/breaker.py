"""A circuit breaker per provider: stop sending frames to a provider that is down.

Without it, every frame of a camera whose first provider is down pays a
refused connection (or a full timeout) and its retries before it reaches the
next provider. The breaker remembers the outage instead:

* ``closed``: calls go through; ``failure_threshold`` consecutive transient
  failures (default 5) open it.
* ``open``: no calls for ``cooldown_seconds`` (default 30) after it opened;
  the next :meth:`CircuitBreaker.allow` after that lets one probe through
  and moves to ``half_open``.
* ``half_open``: exactly one probe in flight; its success closes the breaker,
  its failure opens it again for another cool-down.

The only transitions are closed->open, open->half_open, half_open->closed and
half_open->open; :data:`ALLOWED_TRANSITIONS` lists them and the property tests
check them. A permanent error (a 4xx, a malformed answer) counts as an answer:
the provider is reachable, so it resets the failure streak. Outcomes that
arrive while the breaker is open come from calls started before it opened and
are ignored (they say nothing about the provider *now*).

Pure: the time comes from an injected ``clock`` (monotonic seconds), so tests
step through cool-downs without sleeping. Not thread-safe; the runtime
(:mod:`detectflow.adapters.failover`) serializes access.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from detectflow.core.models import DetectionEvent, EventType
from detectflow.core.serialize import isoformat

__all__ = [
    "ALLOWED_TRANSITIONS",
    "CIRCUIT_CLOSED",
    "CIRCUIT_OPENED",
    "DEFAULT_COOLDOWN_SECONDS",
    "DEFAULT_FAILURE_THRESHOLD",
    "BreakerChange",
    "BreakerPolicy",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "Clock",
    "Transition",
]

DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_COOLDOWN_SECONDS = 30.0

CIRCUIT_OPENED = EventType.PROVIDER_CIRCUIT_OPENED
"""Event type written to the event log (and published) when a breaker opens."""
CIRCUIT_CLOSED = EventType.PROVIDER_CIRCUIT_CLOSED
"""Event type written when a half-open probe succeeds and the breaker closes."""

Clock = Callable[[], float]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


ALLOWED_TRANSITIONS = frozenset(
    {
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
        (BreakerState.HALF_OPEN, BreakerState.OPEN),
    }
)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {self.failure_threshold!r}")
        if not self.cooldown_seconds >= 0.0:  # also refuses NaN
            raise ValueError(f"cooldown_seconds must be >= 0, got {self.cooldown_seconds!r}")


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change, for the caller to log and record as an event."""

    before: BreakerState
    after: BreakerState
    failures: int
    """Consecutive transient failures when it happened (0 after closing)."""


class CircuitBreaker:
    """One provider's breaker. Call :meth:`allow` before a call, then exactly one
    of :meth:`record_success`, :meth:`record_failure` or :meth:`release`."""

    def __init__(self, policy: BreakerPolicy | None = None, *, clock: Clock = time.monotonic):
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive transient failures counted in the current streak."""
        return self._failures

    @property
    def opened_at(self) -> float | None:
        """Clock time the breaker last opened; None while closed."""
        return self._opened_at

    def routable(self) -> bool:
        """Would :meth:`allow` let a call through now? (Does not change state.)"""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.HALF_OPEN:
            return not self._probing
        return self._cooled_down()

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self._state is not BreakerState.OPEN or self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.policy.cooldown_seconds - self._clock())

    def allow(self) -> tuple[bool, Transition | None]:
        """May a call go to the provider now? Reserves the probe when half-open."""
        if self._state is BreakerState.CLOSED:
            return True, None
        if self._state is BreakerState.OPEN:
            if not self._cooled_down():
                return False, None
            self._probing = True
            return True, self._move(BreakerState.HALF_OPEN)
        if self._probing:
            return False, None
        self._probing = True
        return True, None

    def record_success(self) -> Transition | None:
        """The provider answered (detections, or a permanent refusal)."""
        if self._state is BreakerState.CLOSED:
            self._failures = 0
            return None
        if self._state is BreakerState.HALF_OPEN:
            self._probing = False
            self._failures = 0
            self._opened_at = None
            return self._move(BreakerState.CLOSED)
        return None  # a call that started before the breaker opened

    def record_failure(self) -> Transition | None:
        """The call failed transiently (refused, timeout, 5xx)."""
        if self._state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.policy.failure_threshold:
                self._opened_at = self._clock()
                return self._move(BreakerState.OPEN)
            return None
        if self._state is BreakerState.HALF_OPEN:
            self._probing = False
            self._failures += 1
            self._opened_at = self._clock()
            return self._move(BreakerState.OPEN)
        return None  # a call that started before the breaker opened

    def release(self) -> None:
        """The call ended with no verdict (cancelled, adapter bug): free the probe slot."""
        if self._state is BreakerState.HALF_OPEN:
            self._probing = False

    def _cooled_down(self) -> bool:
        assert self._opened_at is not None
        return self._clock() - self._opened_at >= self.policy.cooldown_seconds

    def _move(self, after: BreakerState) -> Transition:
        before, self._state = self._state, after
        return Transition(before, after, self._failures)


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """One provider's breaker as the summary endpoint shows it."""

    provider_id: str
    provider_name: str
    state: BreakerState
    failures: int
    opened_at: datetime | None
    """Wall-clock time it last opened; None while closed."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.provider_id,
            "name": self.provider_name,
            "breaker": str(self.state),
            "failures": self.failures,
            "opened_at": isoformat(self.opened_at),
        }


@dataclass(frozen=True, slots=True)
class BreakerChange:
    """A breaker's new snapshot and, for opening and closing, the event to record."""

    snapshot: BreakerSnapshot
    event: DetectionEvent | None = None
