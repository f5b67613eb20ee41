"""The per-camera reorder buffer, against a model: every frame comes out exactly once,
ready ones in (time, key) order, late ones counted."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.reorder import ReorderBuffer

# Frames with distinct keys and times on a 0.1 s grid, pushed in a random order.
arrivals = st.lists(
    st.tuples(st.integers(0, 200).map(lambda k: k / 10), st.integers(0, 10**6).map(str)),
    unique_by=lambda f: f[1],
    max_size=60,
).flatmap(st.permutations)


def drive(buffer: ReorderBuffer, frames) -> tuple[list, list]:
    ready, late = [], []
    for time, key in frames:
        released = buffer.push(time, key, [time, key])
        ready.extend(released.ready)
        if released.late is not None:
            late.append(released.late)
        assert len(buffer) <= buffer.capacity
    return ready, late


@given(arrivals, st.integers(0, 10), st.sampled_from([0.0, 0.3, 1.0, 100.0]))
def test_every_frame_comes_out_once_ready_in_order_or_late(frames, capacity, delay):
    buffer = ReorderBuffer(capacity, delay)
    ready, late = drive(buffer, frames)
    ready += buffer.flush()
    assert ready == sorted(ready)  # (time, key) order
    assert sorted(ready + late) == sorted([list(f) for f in frames])  # nothing lost or doubled
    assert buffer.late_count == len(late)
    for item in late:  # late means: something after it had already gone out
        assert any(r > item for r in ready)


@given(arrivals)
def test_a_buffer_as_big_as_the_input_puts_everything_in_order(frames):
    buffer = ReorderBuffer(len(frames), 1e9)
    ready, late = drive(buffer, frames)
    assert ready == [] and late == []
    assert buffer.flush() == sorted([list(f) for f in frames])


def test_the_newest_frame_holds_older_ones_only_max_delay_seconds():
    buffer = ReorderBuffer(100, 1.0)
    assert buffer.push(10.0, "a", "a").ready == ()
    assert buffer.push(10.5, "b", "b").ready == ()
    assert buffer.push(11.0, "c", "c").ready == ("a",)
    assert buffer.push(12.4, "d", "d").ready == ("b", "c")


def test_a_frame_delivered_twice_while_waiting_comes_out_once():
    buffer = ReorderBuffer(10, 5.0)
    buffer.push(1.0, "a", "first copy")
    buffer.push(1.0, "a", "second copy")
    assert buffer.flush() == ["second copy"]


def test_a_frame_delivered_again_after_it_went_out_is_late():
    buffer = ReorderBuffer(0, 0.0)
    assert buffer.push(1.0, "a", "a").ready == ("a",)
    again = buffer.push(1.0, "a", "a")
    assert (again.ready, again.late, buffer.late_count) == ((), "a", 1)


@given(arrivals, st.integers(0, 60), st.integers(0, 8))
def test_snapshot_and_resume_anywhere_change_nothing(frames, split, capacity):
    straight = ReorderBuffer(capacity, 0.5)
    expected = drive(straight, frames)
    expected = (expected[0] + straight.flush(), expected[1])

    first = ReorderBuffer(capacity, 0.5)
    ready, late = drive(first, frames[:split])
    resumed = ReorderBuffer.resume(json.loads(json.dumps(first.snapshot())))
    more_ready, more_late = drive(resumed, frames[split:])
    assert (ready + more_ready + resumed.flush(), late + more_late) == expected
    assert resumed.late_count == straight.late_count


@pytest.mark.parametrize(("capacity", "delay"), [(-1, 1.0), (2.5, 1.0), (True, 1.0), (4, -1.0)])
def test_bad_bounds_are_refused(capacity, delay):
    with pytest.raises(ValueError, match=r"capacity|max_delay"):
        ReorderBuffer(capacity, delay)
