"""A camera's meter: rates over a sliding window, inference percentiles, the report's
round trip through the cache entry, and credentials kept out of the reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.camera_status import (
    DEFAULT_WINDOW_SECONDS,
    MAX_SAMPLES,
    CameraMeter,
    CameraStatus,
    percentile,
)
from tests.clock import Clock

WALL = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def meter(clock: Clock, window: float = 10.0) -> CameraMeter:
    return CameraMeter("cam-1", window_seconds=window, clock=clock, wall_clock=lambda: WALL)


def test_the_defaults_are_a_ten_second_window_and_a_thousand_samples() -> None:
    assert DEFAULT_WINDOW_SECONDS == 10.0
    assert MAX_SAMPLES == 1000


def test_rates_are_counts_over_the_window_once_the_meter_is_older_than_it() -> None:
    clock = Clock()
    m = meter(clock)
    for _ in range(200):  # 25 fps decoded, 5 sampled, 20 skipped, for 8 s then 4 s more
        clock.now += 0.04
        m.decoded()
    clock.now = 1000.0 + 10.0
    m.sampled(50)
    m.skipped(150)
    status = m.snapshot()
    assert status.decode_fps == pytest.approx(20.0)  # 200 frames in the last 10 s
    assert status.sampled_fps == pytest.approx(5.0)
    assert status.skipped_per_second == pytest.approx(15.0)
    clock.now += 10.0  # everything above is now older than the window
    later = m.snapshot()
    assert (later.decode_fps, later.sampled_fps, later.skipped_per_second) == (0.0, 0.0, 0.0)


def test_a_young_meter_divides_by_its_age_not_the_whole_window() -> None:
    clock = Clock()
    m = meter(clock)
    clock.now += 2.0
    m.decoded(count=50)
    assert m.snapshot().decode_fps == pytest.approx(25.0)
    fresh = meter(Clock())  # younger than a second: one second, not a division by ~0
    fresh.decoded(count=3)
    assert fresh.snapshot().decode_fps == pytest.approx(3.0)


def test_an_event_exactly_one_window_old_has_left_it() -> None:
    clock = Clock()
    m = meter(clock)
    clock.now += 20.0
    m.sampled()
    clock.now += 9.999
    assert m.snapshot().sampled_fps == pytest.approx(0.1)
    clock.now += 0.001
    assert m.snapshot().sampled_fps == 0.0


def test_detect_rate_inference_percentiles_and_frames_in_flight() -> None:
    clock = Clock()
    m = meter(clock)
    clock.now += 10.0
    m.submitted(4)
    for ms in (10.0, 20.0, 30.0):
        m.completed(ms)
    m.completed(None)  # failed without an answer: counted, no time
    status = m.snapshot()
    assert status.detect_fps == pytest.approx(0.4)
    assert status.inference_ms_p50 == 20.0
    assert status.inference_ms_p95 == 30.0
    assert status.in_flight == 0
    m.completed(float("nan"))  # a broken timer neither counts as a time nor goes below zero
    assert m.snapshot().in_flight == 0
    assert m.snapshot().inference_ms_p95 == 30.0
    clock.now += 10.0
    assert m.snapshot().inference_ms_p50 is None


def test_online_follows_connect_and_disconnect_and_the_reason_is_redacted() -> None:
    m = meter(Clock())
    assert m.snapshot().online is False
    m.disconnected("401 from rtsp://admin:s3cret@cam/stream")
    status = m.snapshot()
    assert status.online is False
    assert status.last_error is not None and "s3cret" not in status.last_error
    assert "rtsp://***@cam/stream" in status.last_error
    m.connected()
    assert m.snapshot().online is True and m.snapshot().last_error is None


def test_the_newest_frame_time_is_reported() -> None:
    m = meter(Clock())
    m.decoded(WALL)
    m.decoded()  # a frame without a time keeps the last one
    assert m.snapshot().last_frame_time == WALL


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        CameraMeter("c", window_seconds=0)


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [([], 0.5, None), ([5.0], 0.95, 5.0), ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0), ([3.0, 1.0], 1.0, 3.0)],
)
def test_percentile_is_a_measured_value_by_nearest_rank(
    values: list[float], fraction: float, expected: float | None
) -> None:
    assert percentile(values, fraction) == expected


_RATE = st.floats(min_value=0, max_value=1000, allow_nan=False)
_TIME = st.datetimes(timezones=st.just(UTC))


@given(
    online=st.booleans(),
    reported=_TIME,
    frame=st.none() | _TIME,
    rates=st.tuples(_RATE, _RATE, _RATE, _RATE),
    p50=st.none() | _RATE,
    in_flight=st.integers(min_value=0, max_value=10_000),
    error=st.none() | st.text(max_size=50),
)
def test_a_report_reads_back_as_written(
    online: bool,
    reported: datetime,
    frame: datetime | None,
    rates: tuple[float, float, float, float],
    p50: float | None,
    in_flight: int,
    error: str | None,
) -> None:
    status = CameraStatus(
        "cam-1", online, reported, frame, *rates, p50, p50, in_flight=in_flight, last_error=error
    )
    assert CameraStatus.from_dict(status.as_dict()) == status


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"camera_id": "c", "online": True, "reported_at": "yesterday"},
        {
            "camera_id": "c",
            "online": True,
            "reported_at": "2026-12-02T12:00:00Z",
            "decode_fps": "x",
        },
    ],
)
def test_an_entry_it_cannot_read_is_no_report(data: dict[str, object]) -> None:
    assert CameraStatus.from_dict(data) is None


def test_a_fresh_meter_reports_nothing_yet_under_its_camera_and_the_wall_time() -> None:
    status = meter(Clock()).snapshot()
    assert status == CameraStatus("cam-1", False, WALL)


def test_in_flight_counts_submitted_minus_completed() -> None:
    m = meter(Clock())
    m.submitted()
    m.submitted(2)
    m.completed(5.0)
    assert m.snapshot().in_flight == 2
    m.skipped()
    assert m.snapshot().skipped_per_second == 1.0  # one, in a meter younger than a second


def test_a_zero_inference_time_counts_and_only_the_newest_samples_are_kept() -> None:
    clock = Clock()
    m = meter(clock)
    m.completed(0.0)
    assert m.snapshot().inference_ms_p50 == 0.0
    for _ in range(MAX_SAMPLES):
        m.completed(1000.0)
    for _ in range(MAX_SAMPLES):
        m.completed(0.5)
    assert m.snapshot().inference_ms_p95 == 0.5


def test_a_window_shorter_than_a_second_is_allowed_but_must_be_positive() -> None:
    assert CameraMeter("c", window_seconds=0.5).camera_id == "c"
    with pytest.raises(ValueError, match=r"^window_seconds must be > 0$"):
        CameraMeter("c", window_seconds=0)


def test_an_entry_without_counts_reads_as_zero() -> None:
    status = CameraStatus.from_dict(
        {"camera_id": "c", "online": True, "reported_at": "2026-12-02T12:00:00Z"}
    )
    assert status == CameraStatus("c", True, WALL)


@pytest.mark.parametrize("bad", [True, float("nan"), "1", None])
def test_a_rate_that_is_not_a_finite_number_is_no_report(bad: object) -> None:
    entry = CameraStatus("c", True, WALL).as_dict()
    assert CameraStatus.from_dict({**entry, "decode_fps": bad}) is None
