"""The circuit breaker state machine, stepped with a fake clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.breaker import (
    ALLOWED_TRANSITIONS,
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(threshold: int = 5, cooldown: float = 30.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(BreakerPolicy(threshold, cooldown), clock=clock), clock


def test_defaults_are_five_failures_and_thirty_seconds() -> None:
    policy = CircuitBreaker().policy
    assert (policy.failure_threshold, policy.cooldown_seconds) == (5, 30.0)


def test_opens_after_threshold_consecutive_failures_only() -> None:
    breaker, _ = make(threshold=3)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # breaks the streak
    assert breaker.record_failure() is None
    assert breaker.record_failure() is None
    transition = breaker.record_failure()
    assert transition is not None
    assert (transition.before, transition.after, transition.failures) == (
        BreakerState.CLOSED,
        BreakerState.OPEN,
        3,
    )
    assert breaker.allow() == (False, None)


def test_open_breaker_lets_one_probe_through_after_cooldown_and_success_closes_it() -> None:
    breaker, clock = make(threshold=1, cooldown=30.0)
    breaker.record_failure()
    clock.now += 29.9
    assert not breaker.routable()
    assert breaker.retry_in() == pytest.approx(0.1)
    clock.now += 0.1
    assert breaker.routable()
    allowed, transition = breaker.allow()
    assert allowed and transition is not None and transition.after is BreakerState.HALF_OPEN
    assert breaker.allow() == (False, None)  # one probe at a time
    closed = breaker.record_success()
    assert closed is not None and closed.after is BreakerState.CLOSED
    assert (breaker.state, breaker.failures, breaker.opened_at) == (BreakerState.CLOSED, 0, None)


def test_failed_probe_opens_again_for_a_new_cooldown() -> None:
    breaker, clock = make(threshold=1, cooldown=10.0)
    breaker.record_failure()
    clock.now += 10
    breaker.allow()
    reopened = breaker.record_failure()
    assert reopened is not None
    assert (reopened.before, reopened.after) == (BreakerState.HALF_OPEN, BreakerState.OPEN)
    assert breaker.opened_at == clock.now
    clock.now += 9.9
    assert breaker.allow() == (False, None)


def test_released_probe_lets_another_probe_through() -> None:
    breaker, _ = make(threshold=1, cooldown=0.0)
    breaker.record_failure()
    assert breaker.allow()[0]
    assert not breaker.allow()[0]
    breaker.release()
    assert breaker.allow()[0]


def test_outcomes_arriving_while_open_are_ignored() -> None:
    breaker, _ = make(threshold=1)
    breaker.record_failure()
    assert breaker.record_success() is None
    assert breaker.record_failure() is None
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize(
    ("threshold", "cooldown"), [(0, 1.0), (1, -1.0), (1, math.nan)], ids=["0", "neg", "nan"]
)
def test_bad_policy_is_refused(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        BreakerPolicy(threshold, cooldown)


Step = st.one_of(
    st.just("allow"),
    st.just("success"),
    st.just("failure"),
    st.just("release"),
    st.floats(min_value=0.0, max_value=20.0).map(lambda dt: ("tick", dt)),
)


@given(
    threshold=st.integers(1, 4),
    cooldown=st.floats(0.0, 10.0),
    steps=st.lists(Step, max_size=60),
)
def test_only_allowed_transitions_happen_and_open_never_lets_calls_through_early(
    threshold: int, cooldown: float, steps: list[object]
) -> None:
    breaker, clock = make(threshold, cooldown)
    probes = 0
    for step in steps:
        before = breaker.state
        transition = None
        if isinstance(step, tuple):
            clock.now += step[1]
        elif step == "allow":
            cooled = breaker.opened_at is not None and clock.now - breaker.opened_at >= cooldown
            allowed, transition = breaker.allow()
            if before is BreakerState.OPEN:
                assert allowed == cooled
            if allowed and breaker.state is BreakerState.HALF_OPEN:
                probes += 1
        elif step == "success":
            transition = breaker.record_success()
            probes = 0
        elif step == "failure":
            transition = breaker.record_failure()
            probes = 0
        else:
            breaker.release()
            probes = 0
        after = breaker.state
        if transition is None:
            assert after is before
        else:
            assert (transition.before, transition.after) == (before, after)
            assert (before, after) in ALLOWED_TRANSITIONS
        assert probes <= 1  # never two probes in flight at once
        assert breaker.failures <= threshold + len(steps)
        assert (after is BreakerState.CLOSED) == (breaker.opened_at is None)
