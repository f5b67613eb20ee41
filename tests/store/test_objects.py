"""Tracked objects in SQL (detectflow/store/objects.py), on SQLite and PostgreSQL:
written by the one recorder from object events, read back with the list filters."""

from __future__ import annotations

from datetime import timedelta

from detectflow.core.models import EventType
from detectflow.core.object_config import ObjectsConfig
from detectflow.flows.objects import CameraStep
from detectflow.store import Database
from detectflow.store.snapshots import FileSnapshots, snapshot_key
from tests.object_frames import T0, ZONE_OPTIONS, scene_results

CONFIG = ObjectsConfig.from_options(ZONE_OPTIONS)


def tracked(camera_id: str = "cam-1", frames: range = range(30)):
    step = CameraStep(camera_id, CONFIG)
    return step.push(scene_results(camera_id, frames)) + step.stop()


def test_recording_stores_track_ids_objects_and_their_events(db: Database) -> None:
    results = tracked()
    db.record_results(results)
    detections, total = db.list_detections(limit=100)
    assert total == 60 and all(d.track_id is not None for d in detections)
    page = db.page_objects()
    assert page.total == 2
    by_zone = {tuple(o.zones): o for o in page.items}
    assert set(by_zone) == {("dock",), ()}
    walker_a = by_zone[("dock",)]
    assert walker_a.end_time is not None and not walker_a.in_progress
    assert walker_a.frames == 30 and walker_a.label == "person"
    assert walker_a.best_frame_id is not None and walker_a.best_box is not None
    assert walker_a.snapshot_path == snapshot_key(walker_a.id)
    assert len(walker_a.path) > 2
    kinds = [e.event_type for e in db.list_events(limit=500)[0]]
    assert kinds.count(EventType.OBJECT_STARTED) == 2
    assert kinds.count(EventType.OBJECT_ENDED) == 2


def test_a_replayed_batch_changes_nothing_and_an_old_update_never_undoes_an_end(
    db: Database,
) -> None:
    results = tracked()
    db.record_results(results)
    before = {o.id: o for o in db.page_objects().items}
    events = db.list_events(limit=500)[1]
    db.record_results(results)  # delivered again
    db.record_results(results[:10])  # an old batch, late
    after = {o.id: o for o in db.page_objects().items}
    assert after == before
    assert db.list_events(limit=500)[1] == events


def test_objects_in_progress_have_no_end_time(db: Database) -> None:
    step = CameraStep("cam-1", CONFIG)
    db.record_results(step.push(scene_results(frames=range(20))) + step.flush())
    page = db.page_objects(in_progress=True)
    assert page.total == 2 and all(o.end_time is None for o in page.items)
    assert db.page_objects(in_progress=False).total == 0


def test_the_list_filters(db: Database) -> None:
    db.record_results(tracked("cam-1"))
    db.record_results(tracked("cam-2", range(10)))
    assert db.page_objects(camera_id="cam-2").total == 2
    assert db.page_objects(label="person").total == 4
    assert db.page_objects(label="car").total == 0
    assert db.page_objects(zone="dock").total == 1  # A on cam-1 (on cam-2 it stops short)
    assert db.page_objects(zone="gate").total == 0
    assert db.page_objects(min_score=0.9).total == 2  # B scores 0.85
    assert db.page_objects(after_time=T0).total == 4
    assert db.page_objects(before_time=T0).total == 0
    assert db.page_objects(after_time=T0 + timedelta(seconds=1)).total == 0


def test_keyset_pages_never_overlap(db: Database) -> None:
    for n in range(3):
        db.record_results(tracked(f"cam-{n}", range(8)))
    first = db.page_objects(limit=4)
    assert first.last_key is not None
    second = db.page_objects(limit=4, after=first.last_key)
    ids = [o.id for o in first.items + second.items]
    assert len(ids) == len(set(ids)) == 6


def test_ended_objects_past_retention_are_deleted_with_their_keys(db: Database) -> None:
    db.record_results(tracked())
    assert db.delete_ended_objects(timedelta(days=365 * 100)) == []
    keys = db.delete_ended_objects(timedelta(0))
    assert len(keys) == 2 and db.page_objects().total == 0


def test_file_snapshots_save_load_replace_delete(tmp_path) -> None:
    store = FileSnapshots(tmp_path / "snaps")
    key = snapshot_key("3f2a6a4e-8c1b-4a55-9f0e-1234567890ab")
    assert store.load(key) is None
    store.save(key, b"one")
    store.save(key, b"two")
    assert store.load(key) == b"two"
    assert store.delete([key, key]) == 1
    assert store.load(key) is None
