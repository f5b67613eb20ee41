"""Objects, not boxes: per-camera configuration, filters, zones, lines and the
object lifecycle, on generated scenes with known answers."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectflow.core.ids import track_id
from detectflow.core.models import BBox, Detection, ProviderConfig
from detectflow.core.object_config import LabelFilter, ObjectsConfig
from detectflow.core.object_events import (
    OBJECT_ENDED,
    OBJECT_STARTED,
    OBJECT_UPDATED,
    FrameObjects,
    ObjectEvent,
)
from detectflow.core.objects import CameraObjects
from tests.core.scenes import Walker, walkers

T0 = datetime(2025, 11, 5, 12, 0, tzinfo=UTC)
DT = 0.2  # 5 frames a second

ISSUE_OPTIONS = {
    "zones": {"dock": {"polygon": [[0.6, 0.0], [1.0, 0.0], [1.0, 1.0], [0.6, 1.0]], "inertia": 3}},
    "masks": [[[0.0, 0.0], [0.1, 0.0], [0.1, 0.1]]],
    "lines": {"gate": {"from": [0.5, 0.0], "to": [0.5, 1.0]}},
    "filters": {"person": {"min_score": 0.5, "threshold": 0.7, "min_area": 0.0, "max_area": 1.0}},
    "objects": ["person", "vehicle"],
    "required_zones": [],
}


def frame_id(k: int) -> str:
    return f"f-{k:05d}"


def detections(k: int, boxes: list[tuple[str, str, float, tuple[float, ...]]]) -> list[Detection]:
    return [
        Detection(
            id=f"{frame_id(k)}-{i}",
            camera_id="cam-1",
            frame_id=frame_id(k),
            detection_type=kind,
            label=label,
            confidence=score,
            bbox=BBox(*box),
        )
        for i, (label, kind, score, box) in enumerate(boxes)
    ]


def scene(walkers: list[Walker], frames: range, hidden=lambda k, i: False):
    """Each frame's detections, in frame order: (frame number, time, detections)."""
    out = []
    for k in frames:
        t = k * DT
        boxes = [
            (w.label, w.kind, w.score, w.xywh(t)) for i, w in enumerate(walkers) if not hidden(k, i)
        ]
        out.append((k, T0 + timedelta(seconds=t), detections(k, boxes)))
    return out


def feed(
    cam: CameraObjects, frames, *, stop: bool = True
) -> tuple[list[FrameObjects], list[ObjectEvent]]:
    done: list[FrameObjects] = []
    for k, when, dets in frames:
        done += cam.push(frame_id(k), when, dets)
    events = [e for f in done for e in f.events]
    if stop:
        flushed, ended = cam.stop()
        done += flushed
        events = [e for f in done for e in f.events] + ended
    return done, events


def of_type(events: list[ObjectEvent], kind: str) -> list[ObjectEvent]:
    return [e for e in events if e.type == kind]


# -- configuration -----------------------------------------------------------------------


def test_the_issue_example_parses_and_round_trips():
    config = ObjectsConfig.from_options(ISSUE_OPTIONS)
    assert [z.name for z in config.zones] == ["dock"] and config.zones[0].inertia == 3
    assert config.filters["person"] == LabelFilter(0.5, 0.7, 0.0, 1.0)
    assert config.objects == {"person", "vehicle"} and len(config.masks) == 1
    assert ObjectsConfig.from_options(config.as_options()) == config
    json.dumps(config.as_options())


def test_no_options_track_every_label_with_frigates_defaults():
    config = ObjectsConfig.from_options(None)
    assert config.objects is None and config.tracks("anything", "anything")
    assert config.filter_for("car", "vehicle") == LabelFilter(0.5, 0.7, 0.0, 1.0)
    assert (config.min_hits, config.max_disappeared_seconds) == (3, 5.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"zones": {"dock": {"polygon": [[0, 0], [1, 1], [1, 0], [0, 1]]}}},
            r"^zones\.dock\.polygon: the polygon intersects itself",
        ),
        (
            {"zones": {"dock": {"polygon": [[0, 0], [1, 1]]}}},
            r"^zones\.dock\.polygon: a polygon needs at least 3",
        ),
        (
            {"zones": {"dock": {"polygon": [[0, 0], [0.5, 0.5], [1, 1]]}}},
            r"^zones\.dock\.polygon: the polygon is degenerate",
        ),
        (
            {"zones": {"dock": {"polygon": [[0, 0], [1, 0], [1, 1]], "inerta": 3}}},
            r"^zones\.dock: unknown keys \['inerta'\]",
        ),
        (
            {"zones": {"dock": {"polygon": [[0, 0], [1, 0], [1, 1]], "inertia": 0}}},
            r"^zones\.dock\.inertia: must be > 0",
        ),
        ({"zones": {"dock": {"inertia": 3}}}, r"^zones\.dock: missing 'polygon'"),
        ({"zones": {"a/b": {"polygon": [[0, 0], [1, 0], [1, 1]]}}}, r"^zones: name 'a/b'"),
        ({"zones": [[0, 0], [1, 0], [1, 1]]}, r"^zones: expected an object keyed by name"),
        (
            {"masks": [[[0, 0], [2, 0], [1, 1]]]},
            r"^masks\[0\]\[1\]\[0\]: coordinates are fractions",
        ),
        ({"masks": {"tree": []}}, r"^masks: expected a list of polygons"),
        (
            {"lines": {"gate": {"from": [0.5, 0.0], "to": [0.5, 0.0]}}},
            r"^lines\.gate: 'from' and 'to' are the same",
        ),
        (
            {"filters": {"person": {"min_score": 1.5}}},
            r"^filters\.person\.min_score: must be between 0 and 1",
        ),
        (
            {"filters": {"person": {"min_area": 0.5, "max_area": 0.1}}},
            r"^filters\.person: min_area 0.5 is above max_area",
        ),
        ({"filters": {"person": {"threshhold": 0.7}}}, r"^filters\.person: unknown keys"),
        ({"objects": "person"}, r"^objects: expected a list of names"),
        ({"required_zones": ["dock"]}, r"^required_zones: no zone named 'dock'"),
        ({"tracking": {"min_hits": 0}}, r"^tracking\.min_hits: must be > 0"),
        (
            {"tracking": {"max_disappeared_seconds": "5"}},
            r"^tracking\.max_disappeared_seconds: expected a number",
        ),
        ([], r"^options: expected an object"),
    ],
)
def test_bad_options_name_the_key_at_fault(options, message):
    with pytest.raises(ValueError, match=message):
        ObjectsConfig.from_options(options)


# -- the acceptance scene ------------------------------------------------------------------

# A walks left to right across the top half and into the dock (upper right); B walks
# right to left, a little lower, below the dock. Their boxes overlap heavily at x ~ 0.45.
ZONE_OPTIONS = {"zones": {"dock": {"polygon": [[0.6, 0.0], [1.0, 0.0], [1.0, 0.5], [0.6, 0.5]]}}}
A = Walker(0.0, 0.15, vx=0.15, h=0.3)  # bottom at 0.45: inside the dock once x > 0.6
B = Walker(0.85, 0.25, vx=-0.15, h=0.3, score=0.85)  # bottom at 0.55: never inside
CROSSING = scene([A, B], range(30))


def test_two_objects_crossing_paths_are_exactly_two_objects_with_no_id_switch():
    cam = CameraObjects("cam-1", ObjectsConfig.from_options(ZONE_OPTIONS))
    frames, events = feed(cam, CROSSING)
    a_id, b_id = track_id("cam-1", frame_id(0), 0), track_id("cam-1", frame_id(0), 1)
    assert [f.track_ids for f in frames] == [(a_id, b_id)] * 30  # every frame, no switch
    assert [(e.type, e.object_id) for e in of_type(events, OBJECT_STARTED)] == [
        (OBJECT_STARTED, a_id),
        (OBJECT_STARTED, b_id),
    ]
    assert sorted(e.object_id for e in of_type(events, OBJECT_ENDED)) == sorted([a_id, b_id])
    for oid in (a_id, b_id):  # started, then updates, then ended
        kinds = [e.type for e in events if e.object_id == oid]
        assert kinds[0] == OBJECT_STARTED and kinds[-1] == OBJECT_ENDED
        assert set(kinds[1:-1]) <= {OBJECT_UPDATED}


def test_one_walks_through_the_zone_one_entered():
    cam = CameraObjects("cam-1", ObjectsConfig.from_options(ZONE_OPTIONS))
    frames, events = feed(cam, CROSSING)
    a_id = track_id("cam-1", frame_id(0), 0)
    entries = [z for f in frames for z in f.zone_entries]
    assert [(z.zone, z.label, z.object_id) for z in entries] == [("dock", "person", a_id)]
    assert cam.counts["zone_entries"] == {"dock": {"person": 1}}
    zone_updates = [e for e in of_type(events, OBJECT_UPDATED) if "zones" in e.changes]
    assert [
        (e.object_id, e.before["current_zones"], e.after["current_zones"]) for e in zone_updates
    ] == [(a_id, [], ["dock"])]
    ended = {e.object_id: e.after for e in of_type(events, OBJECT_ENDED)}
    assert ended[a_id]["entered_zones"] == ["dock"]
    assert [v["entered_zones"] for k, v in ended.items() if k != a_id] == [[]]


def test_the_payloads_use_frigates_field_names_and_the_best_box():
    cam = CameraObjects("cam-1", ObjectsConfig.from_options(ZONE_OPTIONS))
    _, events = feed(cam, CROSSING)
    started = of_type(events, OBJECT_STARTED)[0]
    ended = next(e for e in of_type(events, OBJECT_ENDED) if e.object_id == started.object_id)
    frigate = {"id", "camera", "label", "sub_label", "score", "top_score", "start_time", "end_time",
               "box", "area", "current_zones", "entered_zones", "has_snapshot"}  # fmt: skip
    assert frigate <= set(started.after) and started.before == started.after
    assert started.after["end_time"] is None
    assert started.after["start_time"] == T0.timestamp()
    assert ended.after["end_time"] == (T0 + timedelta(seconds=29 * DT)).timestamp()
    assert ended.after["frames"] == 30 and ended.after["label"] == "person"
    assert ended.after["has_snapshot"] and ended.after["best"]["frame_id"] == frame_id(0)
    assert ended.after["best"]["box"] == pytest.approx([0.0, 0.15, 0.1, 0.45])


def test_the_best_frame_of_each_object_is_pointed_out_for_its_snapshot():
    cam = CameraObjects("cam-1")
    frames, _ = feed(cam, CROSSING)
    assert frames[0].best == (
        (track_id("cam-1", frame_id(0), 0), 0),
        (track_id("cam-1", frame_id(0), 1), 1),
    )
    assert all(f.best == () for f in frames[1:])  # constant scores: the first frame stays best


def test_a_replay_gives_the_same_objects_and_events():
    config = ObjectsConfig.from_options({**ZONE_OPTIONS, "lines": ISSUE_OPTIONS["lines"]})
    first = feed(CameraObjects("cam-1", config), CROSSING)
    again = feed(CameraObjects("cam-1", config), CROSSING)
    assert first == again


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 29))
def test_snapshot_and_resume_mid_track_continue_the_same_objects(split):
    config = ObjectsConfig.from_options({**ZONE_OPTIONS, "lines": ISSUE_OPTIONS["lines"]})
    straight_frames, straight_events = feed(CameraObjects("cam-1", config), CROSSING)

    cam = CameraObjects("cam-1", config)
    before, _ = feed(cam, CROSSING[:split], stop=False)
    state = json.loads(json.dumps(cam.snapshot()))  # plain data
    resumed = CameraObjects.resume(state, config)
    after, after_events = feed(resumed, CROSSING[split:])
    events = [e for f in before for e in f.events] + after_events
    assert before + after == straight_frames and events == straight_events
    assert len(of_type(events, OBJECT_STARTED)) == 2  # no duplicate start


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False))
def test_frames_finishing_out_of_order_give_the_same_objects(rng: random.Random):
    config = ObjectsConfig.from_options(ZONE_OPTIONS)
    expected = feed(CameraObjects("cam-1", config), CROSSING)
    shuffled = list(CROSSING)
    for start in range(0, len(shuffled), 4):  # at most 4 in flight: within 1 s and 32 frames
        chunk = shuffled[start : start + 4]
        rng.shuffle(chunk)
        shuffled[start : start + 4] = chunk
    assert feed(CameraObjects("cam-1", config), shuffled) == expected


def test_a_frame_later_than_the_buffer_is_counted_late_and_still_returned():
    cam = CameraObjects("cam-1", ObjectsConfig(reorder_frames=2, reorder_seconds=10.0))
    frames = scene([A], range(6))
    late = frames.pop(1)
    done, _ = feed(cam, frames, stop=False)
    assert [f.frame_id for f in done] == [frame_id(k) for k in (0, 2, 3)]  # 2 wait in the buffer
    returned = cam.push(frame_id(late[0]), late[1], late[2])
    assert [(f.frame_id, f.late, f.track_ids) for f in returned] == [(frame_id(1), True, (None,))]
    assert cam.counts["late"] == 1


def test_flush_tracks_the_waiting_frames_and_ends_no_object():
    cam = CameraObjects("cam-1", ObjectsConfig(reorder_frames=32, reorder_seconds=10.0))
    frames = scene([A], range(6))
    done, _ = feed(cam, frames, stop=False)
    assert done == [] and cam.waiting == 6  # all within the buffer's bounds
    flushed = cam.flush()
    assert [f.frame_id for f in flushed] == [frame_id(k) for k in range(6)]
    assert cam.waiting == 0
    assert not [e for f in flushed for e in f.events if e.type == OBJECT_ENDED]
    assert len(cam.in_progress) == 1  # the object goes on
    k, when, dets = scene([A], range(6, 7))[0]
    assert cam.push(frame_id(k), when, dets) == []  # a newer frame waits as before
    returned = cam.push(frame_id(5), frames[5][1], frames[5][2])  # already flushed: late
    assert [(f.frame_id, f.late) for f in returned] == [(frame_id(5), True)]


# -- filters, masks, provider flags -------------------------------------------------------


def started_labels(config: ObjectsConfig, walkers: list[Walker], frames: int = 15) -> list[str]:
    _, events = feed(CameraObjects("cam-1", config), scene(walkers, range(frames)))
    return [e.after["label"] for e in of_type(events, OBJECT_STARTED)]


def test_a_box_inside_a_mask_never_becomes_an_object():
    config = ObjectsConfig.from_options(
        {"masks": [[[0.0, 0.5], [0.3, 0.5], [0.3, 0.9], [0.0, 0.9]]]}
    )
    tree = Walker(0.1, 0.4, h=0.3)  # stands at (0.15, 0.7): in the mask
    person = Walker(0.6, 0.4, h=0.3)
    cam = CameraObjects("cam-1", config)
    frames, events = feed(cam, scene([tree, person], range(10)))
    assert all(f.track_ids[0] is None for f in frames)
    assert {e.object_id for e in events} == {track_id("cam-1", frame_id(0), 1)}
    assert cam.counts["masked"] == 10


def test_a_label_with_max_area_01_ignores_a_box_of_02():
    config = ObjectsConfig.from_options({"filters": {"person": {"max_area": 0.1}}})
    assert started_labels(config, [Walker(0.1, 0.1, w=0.4, h=0.5)]) == []
    assert started_labels(config, [Walker(0.1, 0.1, w=0.2, h=0.4)]) == ["person"]  # 0.08


def test_the_median_score_decides_not_one_lucky_frame():
    config = ObjectsConfig.from_options(
        {"filters": {"person": {"min_score": 0.5, "threshold": 0.7}}}
    )
    cam = CameraObjects("cam-1", config)
    scores = [0.55, 0.6, 0.95, 0.6, 0.55, 0.6]  # one frame above the threshold
    for k, s in enumerate(scores):
        cam.push(
            frame_id(k),
            T0 + timedelta(seconds=k * DT),
            detections(k, [("person", "person", s, (0.1, 0.1, 0.1, 0.3))]),
        )
    frames, events = cam.stop()
    assert events == [] and all(e == () for f in frames for e in [f.events])


def test_weak_boxes_below_min_score_never_start_an_object():
    config = ObjectsConfig.from_options(
        {"filters": {"person": {"min_score": 0.5, "threshold": 0.3}}}
    )
    assert started_labels(config, [Walker(0.1, 0.1, score=0.4)]) == []


def test_objects_lists_the_labels_tracked():
    config = ObjectsConfig.from_options({"objects": ["vehicle"]})
    car = Walker(0.6, 0.5, w=0.3, h=0.2, label="car", kind="vehicle")
    assert started_labels(config, [Walker(0.1, 0.1), car]) == ["car"]


def test_provider_flags_become_filters():
    provider = ProviderConfig(
        "p", "p", "http_api", "http://x", enable_person_detection=False, max_faces_per_frame=1
    )
    config = ObjectsConfig().with_provider(provider)
    faces = [
        Walker(0.1 + 0.2 * i, 0.1, w=0.05, h=0.05, label="face", kind="face", score=0.9 - 0.01 * i)
        for i in range(3)
    ]
    cam = CameraObjects("cam-1", config)
    _, events = feed(cam, scene([Walker(0.1, 0.5), *faces], range(10)))
    assert {e.object_id for e in of_type(events, OBJECT_STARTED)} == {
        track_id("cam-1", frame_id(0), 1)
    }  # the best face only
    assert cam.counts["filtered"] == 10 * 3  # the person and two faces, every frame
    no_faces = ObjectsConfig().with_provider(
        ProviderConfig("p", "p", "http_api", "http://x", enable_face_detection=False)
    )
    assert started_labels(no_faces, [Walker(0.1, 0.5), *faces]) == ["person"]


# -- zones, inertia, required zones, lines --------------------------------------------------

DOCK = {"dock": {"polygon": [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]], "inertia": 3}}


def test_a_box_flickering_on_a_zone_edge_never_enters_it():
    cam = CameraObjects("cam-1", ObjectsConfig.from_options({"zones": DOCK}))
    frames = [
        (
            k,
            T0 + timedelta(seconds=k * DT),
            detections(k, [("person", "person", 0.9, (0.42 + 0.04 * (k % 2), 0.2, 0.1, 0.3))]),
        )
        for k in range(20)
    ]
    done, events = feed(cam, frames)
    assert [z for f in done for z in f.zone_entries] == []
    assert all(e.after["entered_zones"] == [] for e in events)


def test_inside_for_fewer_than_inertia_frames_is_not_in_the_zone():
    cam = CameraObjects("cam-1", ObjectsConfig.from_options({"zones": DOCK}))
    xs = [0.3] * 5 + [0.5] * 2 + [0.3] * 5  # bottom centre 0.55 (in) for two frames only
    frames = [
        (
            k,
            T0 + timedelta(seconds=k * DT),
            detections(k, [("person", "person", 0.9, (x, 0.2, 0.1, 0.3))]),
        )
        for k, x in enumerate(xs)
    ]
    _, events = feed(cam, frames)
    assert of_type(events, OBJECT_ENDED)[0].after["entered_zones"] == []


def test_required_zones_hold_the_start_until_the_object_enters_one():
    config = ObjectsConfig.from_options({"zones": DOCK, "required_zones": ["dock"]})
    cam = CameraObjects("cam-1", config)
    frames, events = feed(cam, scene([Walker(0.1, 0.2, vx=0.2)], range(25)))
    started = of_type(events, OBJECT_STARTED)
    assert len(started) == 1 and started[0].after["current_zones"] == ["dock"]
    # The bottom centre (x + 0.05) passes 0.5 at t = 1.75 s (frame 9); three frames of inertia.
    assert started[0].frame_id == frame_id(11)
    assert [z.frame_id for f in frames for z in f.zone_entries] == [frame_id(11)]
    assert started_labels(config, [Walker(0.1, 0.2)]) == []  # never in the dock: never starts


def test_line_crossings_are_counted_in_and_out_per_label():
    config = ObjectsConfig.from_options({"lines": ISSUE_OPTIONS["lines"]})
    cam = CameraObjects("cam-1", config)
    right = Walker(0.1, 0.2, vx=0.2)
    left = Walker(0.8, 0.6, vx=-0.2, w=0.2, h=0.2, label="car", kind="vehicle")
    frames, _ = feed(cam, scene([right, left], range(20)))
    crossings = [(c.line, c.direction, c.label) for f in frames for c in f.crossings]
    assert sorted(crossings) == [("gate", "in", "person"), ("gate", "out", "car")]
    assert cam.counts["line_crossings"] == {
        "gate": {"person": {"in": 1, "out": 0}, "car": {"in": 0, "out": 1}}
    }


def test_a_crossing_before_the_start_is_reported_at_the_start():
    config = ObjectsConfig.from_options({"lines": ISSUE_OPTIONS["lines"]})
    cam = CameraObjects("cam-1", config)
    # Stands at x = 0.47 + 0.04 k: crosses 0.5 between frames 0 and 1; confirmed at frame 2.
    frames, _ = feed(cam, scene([Walker(0.42, 0.2, vx=0.2)], range(5)))
    assert [(c.direction, c.frame_id) for f in frames for c in f.crossings] == [("in", frame_id(1))]
    assert [f.frame_id for f in frames if f.crossings] == [frame_id(2)]


# -- updates and ends ---------------------------------------------------------------------


def test_updates_come_at_most_once_a_second_of_frame_time():
    cam = CameraObjects("cam-1")
    # The score rises every frame: a new best detection each frame.
    frames = [
        (
            k,
            T0 + timedelta(seconds=k * DT),
            detections(k, [("person", "person", 0.7 + 0.01 * k, (0.1, 0.1, 0.1, 0.3))]),
        )
        for k in range(26)
    ]
    _, events = feed(cam, frames)
    updates = of_type(events, OBJECT_UPDATED)
    times = [of_type(events, OBJECT_STARTED)[0].time] + [e.time for e in updates]
    assert len(updates) >= 3 and all(b - a >= 1.0 - 1e-9 for a, b in pairwise(times))
    assert all(e.changes == ("snapshot",) for e in updates)


def test_an_object_unseen_for_max_disappeared_seconds_ends_at_its_last_sighting():
    config = ObjectsConfig.from_options({"tracking": {"max_disappeared_seconds": 2}})
    cam = CameraObjects("cam-1", config)
    seen = scene([Walker(0.1, 0.1)], range(5))
    empty = [(k, T0 + timedelta(seconds=k * DT), []) for k in range(5, 30)]
    frames, _ = feed(cam, seen + empty, stop=False)
    ended = [(f.frame_id, e) for f in frames for e in f.events if e.type == OBJECT_ENDED]
    # Last seen at frame 4 (0.8 s); 2 s later is frame 14.
    assert [fid for fid, _ in ended] == [frame_id(14)]
    assert ended[0][1].after["end_time"] == (T0 + timedelta(seconds=0.8)).timestamp()
    assert cam.stop()[1] == []


def test_stopping_the_camera_ends_objects_in_progress():
    cam = CameraObjects("cam-1")
    feed(cam, scene([Walker(0.1, 0.1), Walker(0.6, 0.1)], range(10)), stop=False)
    assert len(cam.in_progress) == 2
    _, ended = cam.stop()
    assert [e.type for e in ended] == [OBJECT_ENDED, OBJECT_ENDED]
    assert cam.in_progress == []


def test_a_naive_frame_time_is_refused():
    with pytest.raises(ValueError, match="naive timestamp"):
        CameraObjects("cam-1").push("f", datetime(2025, 1, 1), [])


def test_resume_refuses_a_state_it_cannot_read():
    with pytest.raises(ValueError, match="invalid objects state"):
        CameraObjects.resume({"version": 1, "camera_id": "cam-1"})


# -- properties over random scenes ------------------------------------------------------

random_scenes = st.tuples(
    st.lists(walkers(scores=(0.3, 1.0)), min_size=1, max_size=5),
    st.sets(st.tuples(st.integers(0, 39), st.integers(0, 4)), max_size=40),  # missed boxes
)
FULL = ObjectsConfig.from_options(
    {
        **ZONE_OPTIONS,
        "lines": ISSUE_OPTIONS["lines"],
        "masks": ISSUE_OPTIONS["masks"],
        "tracking": {"max_disappeared_seconds": 1.5},
    }
)


def random_scene(walkers, hidden):
    return scene(walkers, range(40), lambda k, i: (k, i) in hidden)


@settings(max_examples=40, deadline=None)
@given(random_scenes)
def test_every_object_starts_once_then_updates_then_ends_once(case):
    frames, events = feed(CameraObjects("cam-1", FULL), random_scene(*case))
    assert [f.frame_id for f in frames] == sorted(f.frame_id for f in frames)  # in order
    by_object: dict[str, list[str]] = {}
    for e in events:
        by_object.setdefault(e.object_id, []).append(e.type)
    for kinds in by_object.values():
        assert kinds[0] == OBJECT_STARTED and kinds[-1] == OBJECT_ENDED
        assert kinds.count(OBJECT_STARTED) == 1 and kinds.count(OBJECT_ENDED) == 1
    tracked = {tid for f in frames for tid in f.track_ids if tid is not None}
    assert set(by_object) <= tracked  # events only for tracks the detections carry
    for e in of_type(events, OBJECT_UPDATED):
        assert e.changes and e.before != e.after


@settings(max_examples=40, deadline=None)
@given(random_scenes, st.integers(1, 39))
def test_snapshot_and_resume_anywhere_in_a_random_scene_change_nothing(case, split):
    frames = random_scene(*case)
    straight = CameraObjects("cam-1", FULL)
    expected = feed(straight, frames)
    cam = CameraObjects("cam-1", FULL)
    before, _ = feed(cam, frames[:split], stop=False)
    resumed = CameraObjects.resume(json.loads(json.dumps(cam.snapshot())), FULL)
    after, after_events = feed(resumed, frames[split:])
    assert (before + after, [e for f in before for e in f.events] + after_events) == expected
    assert resumed.counts == straight.counts
