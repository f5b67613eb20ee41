"""The circuit breaker state machine, stepped with a fake clock."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.breaker import (
    ALLOWED_TRANSITIONS,
    DEFAULT_COOLDOWN_SECONDS,
    DEFAULT_FAILURE_THRESHOLD,
    BreakerPolicy,
    BreakerSnapshot,
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
    assert (DEFAULT_FAILURE_THRESHOLD, DEFAULT_COOLDOWN_SECONDS) == (5, 30.0)


def test_a_closed_breaker_lets_every_call_through_and_never_waits() -> None:
    breaker, _ = make(threshold=2)
    for _ in range(3):
        assert breaker.routable()
        assert breaker.allow() == (True, None)
        assert breaker.retry_in() == 0.0
    assert breaker.record_failure() is None  # one failure short of the threshold
    assert breaker.routable() and breaker.allow() == (True, None)
    assert (breaker.state, breaker.failures, breaker.opened_at) == (BreakerState.CLOSED, 1, None)


def test_a_permanent_answer_resets_the_streak_while_closed() -> None:
    breaker, _ = make(threshold=2)
    breaker.record_failure()
    assert breaker.record_success() is None
    assert (breaker.state, breaker.failures) == (BreakerState.CLOSED, 0)


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


def test_each_failed_probe_adds_one_to_the_streak() -> None:
    """The streak keeps counting through probes: the summary shows how long it has been down."""
    breaker, clock = make(threshold=2, cooldown=1.0)
    breaker.record_failure()
    breaker.record_failure()
    for expected in (3, 4):
        clock.now += 1.0
        assert breaker.allow()[0]
        reopened = breaker.record_failure()
        assert reopened is not None and reopened.failures == expected
        assert breaker.failures == expected


def test_a_half_open_breaker_is_routable_only_while_no_probe_is_in_flight() -> None:
    breaker, clock = make(threshold=1, cooldown=5.0)
    breaker.record_failure()
    clock.now += 5.0
    assert breaker.allow()[0]
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.routable()  # the probe is out
    assert breaker.retry_in() == 0.0  # not open: nothing to wait for
    breaker.release()
    assert breaker.routable()
    assert breaker.allow() == (True, None)  # the next probe: no new transition
    assert not breaker.routable()
    assert breaker.allow() == (False, None)  # ... and it holds the slot


def test_release_outside_half_open_changes_nothing() -> None:
    breaker, _ = make(threshold=1)
    breaker.release()
    assert (breaker.state, breaker.routable()) == (BreakerState.CLOSED, True)
    breaker.record_failure()
    breaker.release()
    assert (breaker.state, breaker.routable()) == (BreakerState.OPEN, False)


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
    ("threshold", "cooldown", "message"),
    [
        (0, 1.0, r"^failure_threshold must be >= 1, got 0$"),
        (1, -1.0, r"^cooldown_seconds must be >= 0, got -1\.0$"),
        (1, math.nan, r"^cooldown_seconds must be >= 0, got nan$"),
    ],
    ids=["0", "neg", "nan"],
)
def test_bad_policy_is_refused(threshold: int, cooldown: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreakerPolicy(threshold, cooldown)


def test_the_smallest_policy_is_one_failure_and_no_cooldown() -> None:
    assert BreakerPolicy(1, 0.0) == BreakerPolicy(failure_threshold=1, cooldown_seconds=0.0)


def test_a_snapshot_renders_as_the_summary_endpoint_shows_it() -> None:
    opened = datetime(2025, 11, 5, 12, 34, 56, tzinfo=UTC)
    snapshot = BreakerSnapshot("p-1", "primary", BreakerState.HALF_OPEN, 7, opened)
    assert snapshot.as_dict() == {
        "id": "p-1",
        "name": "primary",
        "breaker": "half_open",
        "failures": 7,
        "opened_at": "2025-11-05T12:34:56Z",
    }
    closed = BreakerSnapshot("p-2", "spare", BreakerState.CLOSED, 0, None)
    assert closed.as_dict()["opened_at"] is None


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
            predicted = breaker.routable()
            allowed, transition = breaker.allow()
            assert allowed == predicted  # routable() foretells allow() in every state
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
