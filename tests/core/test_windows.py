from __future__ import annotations

import json
import math
import pickle
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from detectflow.core.models import BBox, Detection
from detectflow.core.windows import (
    EPOCH,
    TooLateCount,
    WindowAggregator,
    WindowOutput,
    WindowSpec,
    WindowStats,
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


def stats_only(rows: list[WindowOutput]) -> list[WindowStats]:
    return [r for r in rows if isinstance(r, WindowStats)]


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
        ({"retention": -SEC}, "retention"),
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

    agg = WindowAggregator(spec)
    agg.add(det(at=T0 + MIN))
    rows = agg.flush()
    assert [(r.window_start, r.window_end, r.count) for r in rows] == [(T0 + MIN, T0 + 2 * MIN, 1)]


def test_sliding_event_belongs_to_length_over_step_windows_oldest_first():
    spec = WindowSpec.sliding()
    t = T0 + 2 * MIN + 30 * SEC
    expected = [(T0 + i * MIN, T0 + (i + 5) * MIN) for i in range(-2, 3)]
    assert spec.windows_containing(t) == expected
    # exactly on a step boundary: the window starting there is included, the one ending there not
    on_edge = spec.windows_containing(T0)
    assert on_edge[0] == (T0 - 4 * MIN, T0 + MIN)
    assert on_edge[-1] == (T0, T0 + 5 * MIN)

    agg = WindowAggregator(spec)
    agg.add(det(at=t))
    assert [(r.window_start, r.window_end) for r in agg.flush()] == expected


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


# --- aggregation -----------------------------------------------------------------------


def test_row_totals_mean_max_and_distinct_persons_ignore_none():
    agg = WindowAggregator(WindowSpec.tumbling())
    for i, (conf, person) in enumerate([(0.5, "p1"), (0.25, "p1"), (1.0, None), (0.75, "p2")]):
        agg.add(det(conf, person=person, at=T0 + i * SEC, n=i))
    [row] = agg.flush()
    assert (row.count, row.confidence_sum, row.max_confidence) == (4, 2.5, 1.0)
    assert row.mean_confidence == 0.625
    assert row.distinct_persons == 2
    assert (row.late_count, row.revision, row.final) == (0, 1, True)
    assert row.key == ("cam-1", "person", T0, T0 + MIN)


def test_each_detection_type_gets_its_own_row():
    agg = WindowAggregator()
    agg.add(det(0.5, kind="person", at=T0))
    agg.add(det(0.75, kind="face", at=T0 + SEC))
    agg.add(det(0.25, kind="face", at=T0 + 2 * SEC))
    rows = {r.detection_type: r for r in agg.flush()}
    assert set(rows) == {"person", "face"}
    assert (rows["face"].count, rows["face"].max_confidence) == (2, 0.75)
    assert rows["person"].count == 1


def test_window_closes_once_the_watermark_passes_its_end():
    agg = WindowAggregator(WindowSpec.tumbling(allowed_lateness=10 * SEC))
    assert agg.watermark is None
    assert agg.add(det(at=T0 + 10 * SEC)) == []
    assert agg.add(det(at=T0 + MIN + 9 * SEC)) == []  # watermark 12:00:59, window open
    assert agg.watermark == T0 + 59 * SEC
    rows = agg.advance(T0 + MIN + 10 * SEC)  # watermark reaches 12:01:00
    assert [(r.window_start, r.count, r.revision, r.final) for r in rows] == [(T0, 1, 1, True)]
    assert agg.advance(T0 + MIN) == []  # event time never goes back


def test_late_detection_revises_the_emitted_row():
    agg = WindowAggregator(WindowSpec.tumbling(allowed_lateness=timedelta(0)))
    agg.add(det(0.5, person="p1", at=T0))
    [closed] = stats_only(agg.add(det(at=T0 + MIN + SEC, n=1)))
    assert (closed.count, closed.revision, closed.late_count) == (1, 1, 0)

    [update] = agg.add(det(0.75, person="p2", at=T0 + 30 * SEC, n=2))
    assert isinstance(update, WindowStats)
    assert update.key == closed.key
    assert (update.count, update.revision, update.late_count, update.final) == (2, 2, 1, True)
    assert (update.max_confidence, update.distinct_persons) == (0.75, 2)


def test_late_detection_for_a_window_never_seen_is_emitted_at_once():
    agg = WindowAggregator(WindowSpec.tumbling(allowed_lateness=timedelta(0)))
    agg.add(det(at=T0 + 10 * MIN))
    [row] = agg.add(det(at=T0 + 3 * MIN, n=1))
    assert isinstance(row, WindowStats)
    assert (row.window_start, row.count, row.revision, row.late_count) == (T0 + 3 * MIN, 1, 1, 1)


def test_too_late_detection_is_counted_and_emitted_and_state_is_evicted():
    spec = WindowSpec.tumbling(allowed_lateness=timedelta(0), retention=5 * MIN)
    agg = WindowAggregator(spec)
    agg.add(det(at=T0))
    agg.advance(T0 + 5 * MIN + 59 * SEC)  # horizon 12:00:59: window [12:00, 12:01) still held
    assert agg.window_count == 1
    agg.advance(T0 + 6 * MIN)  # horizon 12:01:00 evicts it
    assert agg.window_count == 0

    [refused] = agg.add(det(at=T0 + 30 * SEC, n=1))
    assert refused == TooLateCount("cam-1", 1, T0 + 30 * SEC, T0 + 6 * MIN)
    [again] = agg.add(det(at=T0, n=2))
    assert isinstance(again, TooLateCount) and again.too_late == 2
    assert agg.too_late == 2
    assert agg.window_count == 0  # a refused detection creates no state


def test_sliding_detection_is_refused_whole_when_any_of_its_windows_is_gone():
    spec = WindowSpec.sliding(allowed_lateness=timedelta(0), retention=timedelta(0))
    agg = WindowAggregator(spec)
    agg.advance(T0 + 5 * MIN)  # horizon 12:05: window [12:00, 12:05) is gone
    [refused] = agg.add(det(at=T0 + 4 * MIN + 59 * SEC))
    assert isinstance(refused, TooLateCount)
    rows = stats_only(agg.add(det(at=T0 + 5 * MIN, n=1)))
    assert rows == []  # on time: all five windows are open
    assert len(agg.flush()) == 5


def test_flushed_windows_are_revised_by_data_arriving_after_eof():
    agg = WindowAggregator()
    agg.add(det(at=T0))
    assert len(agg.flush()) == 1
    assert agg.flush() == []
    [update] = agg.add(det(at=T0 + SEC, n=1))
    assert isinstance(update, WindowStats)
    assert (update.count, update.revision, update.late_count) == (2, 2, 1)


def test_open_windows_are_provisional_rows():
    agg = WindowAggregator()
    agg.add(det(0.5, at=T0))
    agg.add(det(0.25, at=T0 + 70 * SEC, n=1))
    rows = agg.open_windows()
    assert [(r.window_start, r.count, r.final, r.revision) for r in rows] == [
        (T0, 1, False, 0),
        (T0 + MIN, 1, False, 0),
    ]


def test_event_time_defaults_to_the_frame_timestamp_in_any_zone():
    plus2 = timezone(timedelta(hours=2))
    agg = WindowAggregator()
    agg.add(det(at=datetime(2025, 11, 5, 14, 0, 30, tzinfo=plus2)))
    [row] = agg.flush()
    assert (row.window_start, row.window_start.tzinfo) == (T0, UTC)


def test_naive_datetimes_are_refused():
    agg = WindowAggregator()
    naive = datetime(2025, 11, 5, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        agg.add(det(), naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        agg.add(det(at=naive))
    with pytest.raises(ValueError, match="timezone-aware"):
        agg.advance(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        WindowSpec.tumbling().windows_containing(naive)
    assert agg.window_count == 0 and agg.watermark is None


def test_missing_event_time_is_refused():
    with pytest.raises(ValueError, match="no event time"):
        WindowAggregator().add(det(at=None))


@pytest.mark.parametrize("confidence", [math.nan, -0.1, 1.5, math.inf])
def test_bad_confidence_is_refused_before_any_state_changes(confidence):
    agg = WindowAggregator()
    with pytest.raises(ValueError, match="confidence"):
        agg.add(det(confidence, at=T0))
    assert agg.window_count == 0 and agg.camera_id is None


def test_an_aggregator_holds_one_camera():
    agg = WindowAggregator()
    agg.add(det(camera="cam-1", at=T0))
    with pytest.raises(ValueError, match="key the window step by camera"):
        agg.add(det(camera="cam-2", at=T0))
    bound = WindowAggregator(camera_id="cam-9")
    with pytest.raises(ValueError, match="'cam-9'"):
        bound.add(det(camera="cam-1", at=T0))


# --- snapshot / restore ----------------------------------------------------------------


def _feed(agg: WindowAggregator, items: list[tuple[Detection, datetime]]) -> list[WindowOutput]:
    out: list[WindowOutput] = []
    for d, t in items:
        out.extend(agg.add(d, t))
    return out


def test_snapshot_restore_round_trip_continues_exactly():
    spec = WindowSpec.sliding(allowed_lateness=20 * SEC, retention=3 * MIN)
    items = [
        (det(0.5 + (i % 4) / 8, kind=("person", "face")[i % 2], person=f"p{i % 3}", n=i), t)
        for i, t in enumerate(T0 + s * SEC for s in [0, 50, 130, 40, 300, 610, 5, 299, 700])
    ]
    whole = WindowAggregator(spec)
    expected = _feed(whole, items) + whole.flush()

    first = WindowAggregator(spec)
    got = _feed(first, items[:5])
    state = first.snapshot()
    assert json.loads(json.dumps(state)) == state  # plain values only
    second = WindowAggregator.restore(pickle.loads(pickle.dumps(state)), spec)
    assert second.snapshot() == state
    assert (second.camera_id, second.watermark, second.spec) == ("cam-1", first.watermark, spec)
    got += _feed(second, items[5:]) + second.flush()
    assert got == expected
    assert second.too_late == whole.too_late == 2  # 5 s and 299 s, after 610 s
    assert any(isinstance(r, WindowStats) and r.late_count for r in got)  # 40 s after 130 s


def test_restore_refuses_state_for_another_spec():
    agg = WindowAggregator(WindowSpec.tumbling())
    agg.add(det(at=T0))
    with pytest.raises(ValueError, match="state was made for"):
        WindowAggregator.restore(agg.snapshot(), WindowSpec.sliding())


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda s: None,
        lambda s: {**s, "version": 99},
        lambda s: {k: v for k, v in s.items() if k != "open"},
        lambda s: {**s, "spec": [0, 1, 0, 0, 0]},
        lambda s: {**s, "too_late": "3"},
        lambda s: {**s, "open": [[1, "person"]]},
        lambda s: {**s, "open": [[s["open"][0][0], "person", 0, 0.0, 0.0, [], 0, 0]]},
        lambda s: {**s, "open": [[s["open"][0][0], "person", 1, 0.5, math.nan, [], 0, 0]]},
        lambda s: {**s, "camera_id": None},
        lambda s: {**s, "max_event": s["max_event"] + 10**9},  # open window behind watermark
    ],
)
def test_restore_refuses_corrupt_state_with_a_clear_error(corrupt):
    agg = WindowAggregator()
    agg.add(det(at=T0))
    with pytest.raises(ValueError, match="invalid window state"):
        WindowAggregator.restore(corrupt(agg.snapshot()))


# --- the acceptance property -------------------------------------------------------------

CAMERAS = ("cam-a", "cam-b", "cam-c")
TYPES = ("person", "face", "vehicle")


@dataclass(frozen=True)
class Item:
    """One arrival: a detection, or a frame without detections (a tick)."""

    camera: str
    event_ms: int
    arrival_ms: int
    detection: Detection | None


# provider latency + retries: mostly prompt, some very slow (minutes, past retention)
delays = st.one_of(
    st.sampled_from([0, 1_000, 20_000, 90_000, 200_000, 400_000]), st.integers(0, 400_000)
)


@st.composite
def streams(draw: st.DrawFn) -> list[Item]:
    event_ms = st.one_of(st.integers(0, 900_000), st.integers(0, 15).map(lambda m: m * 60_000))
    raw = draw(
        st.lists(
            st.tuples(
                st.sampled_from(CAMERAS),
                event_ms,
                delays,
                st.sampled_from(TYPES),
                st.sampled_from([None, "p1", "p2", "p3", "p4"]),
                st.integers(0, 1024),  # confidence in 1/1024 steps: float sums stay exact
                st.booleans(),  # a tick instead of a detection
            ),
            min_size=12,
            max_size=80,
        )
    )
    items = []
    for i, (camera, ev, delay, kind, person, conf, tick) in enumerate(raw):
        at = T0 + timedelta(milliseconds=ev)
        d = None if tick else det(conf / 1024, camera=camera, kind=kind, person=person, at=at, n=i)
        items.append(Item(camera, ev, ev + delay, d))
    return sorted(items, key=lambda it: it.arrival_ms)  # stable: ties keep their order


specs = st.one_of(
    st.builds(
        WindowSpec.tumbling,
        st.sampled_from([MIN, 2 * MIN]),
        allowed_lateness=st.sampled_from([timedelta(0), 15 * SEC, MIN]),
        retention=st.sampled_from([timedelta(0), MIN, 3 * MIN, timedelta(hours=1)]),
    ),
    st.builds(
        WindowSpec.sliding,
        st.sampled_from([3 * MIN, 5 * MIN]),
        st.just(MIN),
        allowed_lateness=st.sampled_from([timedelta(0), 30 * SEC]),
        retention=st.sampled_from([timedelta(0), 2 * MIN, timedelta(hours=1)]),
    ),
)


def oracle(items: list[Item], spec: WindowSpec):
    """Brute force: replay arrivals, judge each detection against the watermark at arrival,
    and recompute every window from the detections it kept; no window index arithmetic."""
    length, step, lateness, retention = (
        td // timedelta(milliseconds=1)
        for td in (spec.length, spec.step, spec.allowed_lateness, spec.retention)
    )
    align = ((spec.align_to - T0) // timedelta(milliseconds=1)) % step
    starts = [align + i * step for i in range(-100, 100)]  # covers every event time drawn
    windows: dict[tuple[str, str, int], list[Detection]] = defaultdict(list)
    late: dict[tuple[str, str, int], int] = defaultdict(int)
    too_late: dict[str, int] = defaultdict(int)
    newest: dict[str, int] = {}
    for it in items:
        wm = newest[it.camera] - lateness if it.camera in newest else None
        if it.detection is not None:
            mine = [s for s in starts if s <= it.event_ms < s + length]
            if wm is not None and min(mine) + length <= wm - retention:
                too_late[it.camera] += 1
            else:
                for s in mine:
                    key = (it.camera, it.detection.detection_type, s)
                    windows[key].append(it.detection)
                    late[key] += wm is not None and s + length <= wm
        newest[it.camera] = max(newest.get(it.camera, it.event_ms), it.event_ms)
    expected = {}
    for (camera, kind, s), ds in windows.items():
        start = T0 + timedelta(milliseconds=s)
        expected[(camera, kind, start, start + spec.length)] = (
            len(ds),
            math.fsum(d.confidence for d in ds),
            max(d.confidence for d in ds),
            len({d.person_id for d in ds} - {None}),
            late[(camera, kind, s)],
        )
    return expected, dict(too_late)


@settings(max_examples=400, deadline=None)
@given(items=streams(), spec=specs, cut=st.floats(0, 1))
def test_reordered_streams_end_with_exact_brute_force_windows(items, spec, cut):
    aggs: dict[str, WindowAggregator] = {}
    out: list[WindowOutput] = []
    restart_at = int(cut * len(items))
    for i, it in enumerate(items):
        if i == restart_at:  # a crash and recovery mid-stream, through pickle
            aggs = {
                c: WindowAggregator.restore(pickle.loads(pickle.dumps(a.snapshot())), spec)
                for c, a in aggs.items()
            }
        agg = aggs.setdefault(it.camera, WindowAggregator(spec))
        at = T0 + timedelta(milliseconds=it.event_ms)
        if it.detection is None:
            out.extend(agg.advance(at))
        else:
            out.extend(agg.add(it.detection, at))
    for agg in aggs.values():
        out.extend(agg.flush())

    expected, too_late = oracle(items, spec)
    event(f"some detection too late: {bool(too_late)}")
    event(f"some window revised by late data: {any(e[4] for e in expected.values())}")
    latest: dict[tuple[str, str, datetime, datetime], WindowStats] = {}
    refused: dict[str, list[int]] = defaultdict(list)
    for row in out:
        if isinstance(row, TooLateCount):
            refused[row.camera_id].append(row.too_late)
            continue
        previous = latest.get(row.key)
        assert row.revision == (previous.revision + 1 if previous else 1)  # upserts in order
        assert row.final
        latest[row.key] = row

    got = {
        key: (r.count, r.confidence_sum, r.max_confidence, r.distinct_persons, r.late_count)
        for key, r in latest.items()
    }
    assert got == expected
    for key, row in latest.items():
        on_time = expected[key][0] - row.late_count
        assert row.revision == row.late_count + (1 if on_time else 0)

    # the too_late counter is emitted as a running total, once per refused detection
    assert {c: runs[-1] for c, runs in refused.items()} == too_late
    assert all(runs == list(range(1, len(runs) + 1)) for runs in refused.values())
    assert {c: a.too_late for c, a in aggs.items() if a.too_late} == too_late

    # nothing is lost: every detection is in its windows or counted too late
    n = sum(it.detection is not None for it in items)
    kept = n - sum(too_late.values())
    assert sum(r.count for r in latest.values()) == kept * spec.windows_per_event


@settings(max_examples=300, deadline=None)
@given(items=streams(), spec=specs, peeks=st.sets(st.integers(0, 80)))
def test_provisional_peeks_end_with_the_same_windows_and_ordered_revisions(items, spec, peeks):
    aggs: dict[str, WindowAggregator] = {}
    out: list[WindowOutput] = []
    for i, it in enumerate(items):
        agg = aggs.setdefault(it.camera, WindowAggregator(spec))
        at = T0 + timedelta(milliseconds=it.event_ms)
        out.extend(agg.advance(at) if it.detection is None else agg.add(it.detection, at))
        if i in peeks:
            out.extend(row for a in aggs.values() for row in a.peek())
    for agg in aggs.values():
        out.extend(agg.flush())

    expected, _ = oracle(items, spec)
    latest: dict[tuple[str, str, datetime, datetime], WindowStats] = {}
    for row in stats_only(out):
        previous = latest.get(row.key)
        assert row.revision == (previous.revision + 1 if previous else 1)  # upserts in order
        if previous is not None:
            assert row.count >= previous.count  # totals only grow
            if not row.final:
                assert not previous.final and row.count > previous.count  # peeks only changes
        latest[row.key] = row
    event(f"some provisional row: {any(not r.final for r in stats_only(out))}")
    assert all(r.final for r in latest.values())  # after flush every window's last row is final
    got = {
        key: (r.count, r.confidence_sum, r.max_confidence, r.distinct_persons, r.late_count)
        for key, r in latest.items()
    }
    assert got == expected


def test_a_peek_shows_open_windows_that_changed_at_a_new_revision():
    agg = WindowAggregator(WindowSpec.tumbling(MIN))
    agg.add(det(0.5, at=T0 + SEC, n=1))
    (first,) = agg.peek()
    assert (first.count, first.final, first.revision) == (1, False, 1)
    assert agg.peek() == []  # nothing changed since
    agg.add(det(0.7, at=T0 + 2 * SEC, n=2))
    (second,) = agg.peek()
    assert (second.count, second.revision, second.max_confidence) == (2, 2, 0.7)
    (final,) = stats_only(agg.flush())
    assert (final.count, final.final, final.revision) == (2, True, 3)


def test_the_oracle_sees_lateness_and_refusals():
    """The oracle and the aggregator agree on a hand-checked case: at watermark 200 s and
    horizon 80 s, 90 s is late (its window ends at 120 s) and 10 s too late (ends at 60 s)."""
    spec = WindowSpec.tumbling(allowed_lateness=timedelta(0), retention=2 * MIN)

    def item(ev_s: int, n: int) -> Item:
        at = T0 + ev_s * SEC
        return Item("cam-a", ev_s * 1000, 0, det(camera="cam-a", at=at, n=n))

    items = [item(200, 0), item(90, 1), item(10, 2)]
    expected, too_late = oracle(items, spec)
    assert too_late == {"cam-a": 1}
    assert expected[("cam-a", "person", T0 + MIN, T0 + 2 * MIN)][4] == 1
    agg = WindowAggregator(spec)
    rows = _feed(
        agg, [(it.detection, T0 + it.event_ms * timedelta(milliseconds=1)) for it in items]
    )
    assert isinstance(rows[-1], TooLateCount)
    [late_row] = stats_only(rows)
    assert (late_row.window_start, late_row.late_count) == (T0 + MIN, 1)


# --- a frame's detections at once --------------------------------------------------------

frames = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 900_000), st.integers(0, 15).map(lambda m: m * 60_000)),
        st.lists(
            st.tuples(
                st.sampled_from(TYPES),
                st.sampled_from([None, "p1", "p2"]),
                st.integers(0, 1024),
            ),
            max_size=4,
        ),
        st.booleans(),  # flush before this frame (revisions of windows still ahead)
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(stream=frames, spec=specs)
def test_add_frame_gives_what_per_detection_adds_give_in_the_same_order(stream, spec):
    batched, single = WindowAggregator(spec), WindowAggregator(spec)
    n = 0
    for ev, values, flush in stream:
        if flush:
            assert batched.flush() == single.flush()
        at = T0 + timedelta(milliseconds=ev)
        dets = []
        for kind, person, conf in values:
            dets.append(det(conf / 1024, kind=kind, person=person, n=n))
            n += 1
        tagged = batched.add_frame(dets, at)
        expected = [(i, row) for i, d in enumerate(dets) for row in single.add(d, at)]
        assert tagged == expected  # the same rows, each tagged with its detection
        assert batched.snapshot() == single.snapshot()


def test_add_frame_refuses_a_bad_detection_before_counting_any():
    agg = WindowAggregator()
    agg.add(det(at=T0))
    before = agg.snapshot()
    with pytest.raises(ValueError, match="confidence"):
        agg.add_frame([det(0.5, n=1), det(math.nan, n=2)], T0 + SEC)
    with pytest.raises(ValueError, match="'cam-2'"):
        agg.add_frame([det(0.5, n=3), det(0.5, camera="cam-2", n=4)], T0 + SEC)
    with pytest.raises(ValueError, match="timezone-aware"):
        agg.add_frame([det(0.5, n=5)], datetime(2025, 11, 5, 12, 0, 1))
    assert agg.snapshot() == before
    assert agg.add_frame([], T0 + 10 * MIN) == []  # nothing to count: event time stays
    assert agg.snapshot() == before
