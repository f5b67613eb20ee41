from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.models import BBox, Detection
from detectflow.core.windows import (
    DEFAULT_WINDOW_SPECS,
    EPOCH,
    SLIDING,
    TUMBLING,
    Tally,
    WindowKey,
    WindowSpec,
    person_days,
    tally,
)

T0 = datetime(2025, 11, 5, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
SEC = timedelta(seconds=1)
_BOX = BBox(0.1, 0.1, 0.2, 0.2)


def det(
    confidence: float = 0.5,
    *,
    camera: str = "cam-1",
    kind: str = "person",
    person: str | None = None,
    at: datetime | None = None,
    n: int = 0,
) -> Detection:
    return Detection(
        id=f"d-{n}",
        camera_id=camera,
        frame_id=f"f-{n}",
        detection_type=kind,
        label=kind,
        confidence=confidence,
        bbox=_BOX,
        person_id=person,
        frame_timestamp=at,
    )


# --- WindowSpec ------------------------------------------------------------------------


def test_default_spec_is_one_minute_tumbling_and_sliding_default_is_five_by_one():
    assert WindowSpec() == WindowSpec.tumbling()
    assert (WindowSpec().length, WindowSpec().step) == (MIN, MIN)
    sliding = WindowSpec.sliding()
    assert (sliding.length, sliding.step, sliding.windows_per_event) == (5 * MIN, MIN, 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"length": timedelta(0)}, "positive"),
        ({"step": -SEC}, "positive"),
        ({"length": 5 * MIN, "step": 2 * MIN}, "whole multiple"),
        ({"length": MIN, "step": 2 * MIN}, "whole multiple"),
        ({"allowed_lateness": -SEC}, "allowed_lateness"),
        ({"align_to": datetime(2025, 1, 1)}, "timezone-aware"),
    ],
)
def test_bad_spec_is_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WindowSpec(**kwargs)


def test_align_to_in_another_zone_is_stored_as_utc():
    plus2 = timezone(timedelta(hours=2))
    spec = WindowSpec(align_to=datetime(2025, 1, 1, 2, 0, 30, tzinfo=plus2))
    assert spec.align_to == datetime(2025, 1, 1, 0, 0, 30, tzinfo=UTC)
    assert spec.align_to.tzinfo is UTC


def test_event_exactly_at_a_window_end_belongs_to_the_next_window():
    spec = WindowSpec.tumbling()
    assert spec.windows_containing(T0 + MIN) == [(T0 + MIN, T0 + 2 * MIN)]
    last_micro = T0 + MIN - timedelta(microseconds=1)
    assert spec.windows_containing(last_micro) == [(T0, T0 + MIN)]
    assert [
        (k.window_start, k.window_end) for k in tally([det(at=T0 + MIN)], {TUMBLING: spec})
    ] == [(T0 + MIN, T0 + 2 * MIN)]


def test_sliding_event_belongs_to_length_over_step_windows_oldest_first():
    spec = WindowSpec.sliding()
    t = T0 + 2 * MIN + 30 * SEC
    expected = [(T0 + i * MIN, T0 + (i + 5) * MIN) for i in range(-2, 3)]
    assert spec.windows_containing(t) == expected
    # exactly on a step boundary: the window starting there is included, the one ending there not
    on_edge = spec.windows_containing(T0)
    assert on_edge[0] == (T0 - 4 * MIN, T0 + MIN)
    assert on_edge[-1] == (T0, T0 + 5 * MIN)

    assert sorted((k.window_start, k.window_end) for k in tally([det(at=t)], {SLIDING: spec})) == (
        expected
    )


def test_align_to_shifts_the_boundaries():
    spec = WindowSpec.tumbling(align_to=EPOCH + 30 * SEC)
    assert spec.windows_containing(T0 + 10 * SEC) == [(T0 - 30 * SEC, T0 + 30 * SEC)]


@given(
    length_steps=st.integers(1, 6),
    step_s=st.integers(1, 120),
    align_us=st.integers(-(10**12), 10**12),
    t_us=st.integers(-(10**13), 10**13),
)
def test_windows_containing_matches_a_scan_of_all_windows(length_steps, step_s, align_us, t_us):
    step = timedelta(seconds=step_s)
    spec = WindowSpec(step * length_steps, step, EPOCH + timedelta(microseconds=align_us))
    t = EPOCH + timedelta(microseconds=t_us)
    # the oracle walks every window start near t and tests membership directly
    start = spec.align_to + ((t - spec.align_to) // step - length_steps - 1) * step
    expected = []
    while start <= t:
        if start <= t < start + spec.length:
            expected.append((start, start + spec.length))
        start += step
    assert spec.windows_containing(t) == expected
    assert len(expected) == length_steps


# --- tallies ---------------------------------------------------------------------------


def brute_force(detections: list[Detection]) -> dict[WindowKey, tuple[int, float, float]]:
    """Each detection added to each window that contains it, one at a time."""
    out: dict[WindowKey, list[float]] = defaultdict(list)
    for d in detections:
        when = d.frame_timestamp or d.created_at
        for kind, spec in DEFAULT_WINDOW_SPECS.items():
            for start, end in spec.windows_containing(when):
                out[WindowKey(d.camera_id, d.detection_type, kind, start, end)].append(d.confidence)
    return {k: (len(v), sum(v), max(v)) for k, v in out.items()}


def as_tuples(tallies: dict[WindowKey, Tally]) -> dict[WindowKey, tuple[int, float, float]]:
    return {k: (t.count, t.confidence_sum, t.max_confidence) for k, t in tallies.items()}


detections = st.lists(
    st.builds(
        det,
        st.floats(0, 1),
        camera=st.sampled_from(["cam-1", "cam-2"]),
        kind=st.sampled_from(["person", "vehicle"]),
        at=st.integers(-(10**9), 10**9).map(lambda s: T0 + timedelta(milliseconds=s)),
        n=st.integers(0, 10**6),
    ),
    max_size=40,
)


@given(detections)
def test_tally_is_each_detection_added_to_every_window_that_holds_it(found):
    got = as_tuples(tally(found))
    want = brute_force(found)
    assert got.keys() == want.keys()
    for key, (count, total, peak) in want.items():
        assert got[key][0] == count
        assert got[key][1] == pytest.approx(total)
        assert got[key][2] == peak


@given(detections, st.integers(0, 40))
def test_tallies_of_two_batches_add_up_to_the_tally_of_both(found, cut):
    """Any split into batches, recorded in any order, gives the same totals."""
    first, second = tally(found[cut:]), tally(found[:cut])
    for key, part in second.items():
        first.setdefault(key, Tally()).merge(part)
    whole = as_tuples(tally(found))
    assert {k: (c, pytest.approx(s), m) for k, (c, s, m) in as_tuples(first).items()} == whole


def test_one_detection_adds_to_one_tumbling_and_five_sliding_windows():
    keys = tally([det(0.8, at=T0 + 30 * SEC)])
    assert sorted(k.kind for k in keys) == [SLIDING] * 5 + [TUMBLING]
    assert all(t.count == 1 and t.max_confidence == 0.8 for t in keys.values())


def test_event_time_is_the_frame_time_else_the_detection_time():
    late_frame = det(at=T0)
    no_frame_time = Detection(
        "d", "cam-1", "f", "person", "person", 0.5, _BOX, created_at=T0 + 10 * MIN
    )
    starts = {k.window_start for k in tally([late_frame]) if k.kind == TUMBLING}
    assert starts == {T0}
    starts = {k.window_start for k in tally([no_frame_time]) if k.kind == TUMBLING}
    assert starts == {T0 + 10 * MIN}


def test_naive_event_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        tally([det(at=datetime(2025, 1, 1))])


def test_window_is_final_once_its_lateness_has_passed():
    spec = WindowSpec.tumbling(allowed_lateness=MIN)
    assert not spec.is_final(T0 + MIN, T0 + 2 * MIN - SEC)
    assert spec.is_final(T0 + MIN, T0 + 2 * MIN)


def test_specs_whose_steps_do_not_nest_are_refused():
    specs = {"a": WindowSpec.tumbling(MIN), "b": WindowSpec.tumbling(90 * SEC)}
    with pytest.raises(ValueError, match="multiple of the finest step"):
        tally([det(at=T0)], specs)


# --- person_days -------------------------------------------------------------------------


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["cam-1", "cam-2"]),
            st.sampled_from([None, "p-1", "p-2"]),
            st.integers(min_value=0, max_value=3 * 86_400 - 1),
            st.sampled_from([UTC, timezone(timedelta(hours=-7))]),
        ),
        max_size=60,
    )
)
def test_person_days_count_each_recognised_detection_once_on_its_utc_day(rows) -> None:
    found = [
        det(camera=camera, person=person, at=(T0 + timedelta(seconds=s)).astimezone(zone), n=i)
        for i, (camera, person, s, zone) in enumerate(rows)
    ]
    counts = person_days(found)
    expected: dict[tuple[str, str, datetime], int] = defaultdict(int)
    for camera, person, s, _ in rows:
        if person is not None:
            when = T0 + timedelta(seconds=s)
            expected[camera, person, datetime(when.year, when.month, when.day, tzinfo=UTC)] += 1
    assert counts == dict(expected)
    assert all(day.tzinfo == UTC and day.hour == 0 for _, _, day in counts)
