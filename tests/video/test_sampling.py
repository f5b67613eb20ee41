"""Sampling by stream time, against a brute-force model."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from detectflow.video.sampling import Sampler, StreamClock


def test_a_25_fps_stream_sampled_at_5_fps_takes_every_fifth_frame() -> None:
    sampler = Sampler(5.0)
    taken = [n for n in range(50) if sampler.take(n / 25)]
    assert taken == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]


def test_a_gap_is_not_made_up_with_a_burst() -> None:
    sampler = Sampler(5.0)
    assert sampler.take(0.0)
    assert sampler.take(3.0)  # 3 s of nothing: the next frame is taken...
    assert not sampler.take(3.04)  # ...and sampling goes on from there, not from 0.2
    assert sampler.take(3.2)


@given(
    rate=st.sampled_from([10.0, 12.5, 15.0, 24.0, 25.0, 29.97, 30.0, 50.0, 60.0]),
    fps=st.floats(0.2, 60.0),
    seconds=st.floats(1.0, 20.0),
)
def test_samples_keep_to_the_fps_schedule_without_drift(
    rate: float, fps: float, seconds: float
) -> None:
    sampler = Sampler(fps)
    times = [n / rate for n in range(int(seconds * rate))]
    taken = [t for t in times if sampler.take(t)]

    assert taken[0] == 0.0
    # The schedule keeps to multiples of 1/fps: a sample is at most a frame late.
    assert all(b - a > 1 / fps - 1 / rate - 1e-3 for a, b in itertools.pairwise(taken))
    # As many as the fps allows over the span, or every frame of a slower stream.
    span = times[-1]
    most = math.floor(span * fps + 1e-3 * fps) + 1
    assert min(len(times), most - 1) <= len(taken) <= most


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=50))
def test_stream_time_starts_at_zero_and_never_goes_back(pts: list[int]) -> None:
    clock = StreamClock()
    seen = [clock.seconds(p, 1 / 90_000, 0.0) for p in pts]
    assert seen[0] == 0.0
    assert seen == sorted(seen)


def test_frames_without_timestamps_take_the_arrival_time() -> None:
    clock = StreamClock()
    assert clock.seconds(None, 1 / 25, 0.5) == 0.5
    assert clock.seconds(7, None, 0.9) == 0.9
