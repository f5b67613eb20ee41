"""The objects step (detectflow/flows/objects.py), without Bytewax: results in any
order in, the same results out in frame order with track ids and object events."""

from __future__ import annotations

import pickle
import random

from detectflow.core.cameras import Camera
from detectflow.core.ids import track_id
from detectflow.core.object_config import ObjectsConfig
from detectflow.core.pipeline import failed_result
from detectflow.flows.objects import CameraStep, table_objects_config
from detectflow.store import Database
from tests.object_frames import ZONE_OPTIONS, scene_results

CONFIG = ObjectsConfig.from_options(ZONE_OPTIONS)
A_ID = track_id("cam-1", "cam-1-f0000", 0)
B_ID = track_id("cam-1", "cam-1-f0000", 1)


def run(results, step=None):
    step = step or CameraStep("cam-1", CONFIG)
    return step.push(results) + step.stop()


def test_every_result_comes_back_once_in_frame_order_with_track_ids():
    results = scene_results()
    shuffled = list(results)
    rng = random.Random(7)
    for start in range(0, len(shuffled), 4):  # 4 in flight at once
        chunk = shuffled[start : start + 4]
        rng.shuffle(chunk)
        shuffled[start : start + 4] = chunk
    out = run(shuffled)
    assert [r.frame.frame_id for r in out] == [r.frame.frame_id for r in results]
    assert all(tuple(d.track_id for d in r.detections) == (A_ID, B_ID) for r in out)
    assert all(r.objects is not None and r.objects.frame_id == r.frame.frame_id for r in out)


def test_object_events_start_then_end_and_ride_on_their_frames():
    out = run(scene_results())
    events = [(r.frame.frame_id, e.type, e.object_id) for r in out for e in r.objects.events]
    starts = [e for e in events if e[1] == "object_started"]
    ends = [e for e in events if e[1] == "object_ended"]
    assert [e[2] for e in starts] == [A_ID, B_ID]
    assert starts[0][0] == "cam-1-f0002"  # min_hits 3: the third frame
    assert sorted(e[2] for e in ends) == sorted([A_ID, B_ID])
    assert {e[0] for e in ends} == {"cam-1-f0029"}  # stop: on the last frame let out


def test_only_frames_that_became_a_best_keep_their_image():
    out = run(scene_results())
    for r in out:
        assert bool(r.frame.image) == bool(r.objects.best), r.frame.frame_id
    assert any(r.objects.best for r in out)


def test_a_failed_frame_passes_straight_through_without_its_image():
    step = CameraStep("cam-1", CONFIG)
    first = scene_results(frames=range(1))[0]
    failed = failed_result(first.frame, "provider down")
    out = step.push([failed])
    assert out[0].error == "provider down" and out[0].frame.image == b""
    assert out[0].objects is None


def test_flush_lets_out_what_waits_and_ends_nothing():
    step = CameraStep("cam-1", CONFIG)
    assert step.push(scene_results(frames=range(4))) == []  # within the reorder bounds
    assert step.waiting == 4
    out = step.flush()
    assert len(out) == 4 and step.waiting == 0
    assert not [e for r in out for e in r.objects.events if e.type == "object_ended"]


def test_a_snapshot_resumes_the_same_objects_without_a_second_start():
    results = scene_results()
    whole = run(results)
    step = CameraStep("cam-1", CONFIG)
    first = step.push(results[:12])
    state = pickle.loads(pickle.dumps(step.snapshot()))  # as Bytewax stores it
    assert all(not r.frame.image for r in state["pending"])
    resumed = CameraStep("cam-1", CONFIG, state)
    rest = run(results[12:], resumed)
    ids = [r.frame.frame_id for r in first + rest]
    assert ids == [r.frame.frame_id for r in whole]
    types = [(e.type, e.object_id) for r in first + rest for e in r.objects.events]
    assert types == [(e.type, e.object_id) for r in whole for e in r.objects.events]
    assert [t for t in types if t[0] == "object_started"] == [
        ("object_started", A_ID),
        ("object_started", B_ID),
    ]


def test_the_cameras_table_gives_each_camera_its_zones(db: Database) -> None:
    db.create_camera(Camera(id="dock-cam", options=ZONE_OPTIONS))
    db.create_camera(Camera(id="plain-cam"))
    lookup = table_objects_config(db)
    assert lookup("dock-cam") == ObjectsConfig.from_options(ZONE_OPTIONS)
    assert lookup("dock-cam").zones
    assert lookup("plain-cam") == ObjectsConfig()
    assert lookup("not-in-the-table") == ObjectsConfig()
