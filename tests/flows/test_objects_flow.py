"""Acceptance (issue 10): two objects cross, one walks through a zone, through a real flow.

Frames go through the dataflow with real services: the SQL queue on SQLite
and PostgreSQL (in-process), and Redis Streams into a ``flow run`` process
that is SIGKILLed mid-track and restarted from its recovery snapshot. The
provider answers scripted boxes (the scene of ``tests/object_frames.py``:
A walks left to right into the dock, B right to left below it, their boxes
overlapping as they cross); after frame 30 nobody is seen, so both objects
end by frame time (5 s unseen).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import delete, text, update

from detectflow.core.frames import make_frame
from detectflow.core.ids import track_id
from detectflow.core.models import EventType, Frame, RawDetection
from detectflow.core.object_config import ObjectsConfig
from detectflow.core.plugins import PluginRegistry
from detectflow.core.settings import Settings
from detectflow.flows import FlowOptions, run_flow
from detectflow.samples import sample_frame
from detectflow.simulator.answers import SimulatedDetection
from detectflow.store import Database
from detectflow.store.snapshots import snapshot_store
from detectflow.store.tables import detection_processing_queue, tracked_objects
from tests import services
from tests.flows.conftest import activate
from tests.flows.flow_processes import FlowProcess, flow_env, provider, wait_for
from tests.object_frames import DT, T0, ZONE_OPTIONS, boxes_at

SEEN = 30  # frames with A and B
FRAMES = 60  # then 6 s of nobody: both end (unseen for 5 s)
W, H = 160, 120


def _config(_: str) -> ObjectsConfig:
    return ObjectsConfig.from_options(ZONE_OPTIONS)


def _frames(camera: str) -> list[Frame]:
    return [
        make_frame(
            camera,
            sample_frame(camera, k, W, H),
            max_bytes=1 << 20,
            frame_number=k,
            timestamp=T0 + timedelta(seconds=k * DT),
        )
        for k in range(FRAMES)
    ]


def _corners(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x, y, w, h = box
    return (max(0.0, x), y, min(1.0, x + w), y + h)


def _scripted(frame: Frame) -> list[RawDetection]:
    k = frame.frame_number or 0
    if k >= SEEN:
        return []
    return [RawDetection(label, score, _corners(box)) for label, score, box in boxes_at(k)]


def _objects(db: Database) -> dict[str, list[str]]:
    return {o.id: o.zones for o in db.page_objects(limit=100).items}


def _object_events(db: Database) -> list[tuple[str, str]]:
    """(type, message) of object events in frame-time order."""
    found = []
    for kind in (EventType.OBJECT_STARTED, EventType.OBJECT_UPDATED, EventType.OBJECT_ENDED):
        found += db.list_events(event_type=kind, limit=1000)[0]
    found.sort(key=lambda e: (e.created_at, e.id))
    return [(str(e.event_type), e.message) for e in found]


def _run(settings: Settings, db: Database, registry: PluginRegistry) -> None:
    run_flow(
        settings,
        FlowOptions(until_empty=True),
        database=db,
        registry=registry,
        objects_config=_config,
    )


def test_two_crossing_objects_one_zone_entry_snapshots_and_a_replay_with_the_same_ids(
    settings: Settings, db: Database, registry: PluginRegistry
) -> None:
    activate(db, _scripted)
    frames = _frames("cam-1")
    for f in frames:
        db.enqueue(f)

    _run(settings, db, registry)

    a_id = track_id("cam-1", frames[0].frame_id, 0)
    b_id = track_id("cam-1", frames[0].frame_id, 1)
    assert _objects(db) == {a_id: ["dock"], b_id: []}  # exactly two; one entered the dock
    detections, _ = db.list_detections(limit=1000)
    assert len(detections) == 2 * SEEN
    # No id switch at the crossing: each frame's box i belongs to object i throughout.
    index = {d.id: d for d in detections}
    for f in frames[:SEEN]:
        ids = [index[i].track_id for i in index if index[i].frame_id == f.frame_id]
        assert sorted(ids) == sorted([a_id, b_id]), f.frame_number
    events = _object_events(db)
    kinds = [k for k, _ in events]
    assert kinds.count("object_started") == 2 and kinds.count("object_ended") == 2
    for oid in (a_id, b_id):
        mine = [k for k, m in events if oid in m]
        assert mine[0] == "object_started" and mine[-1] == "object_ended"
        assert set(mine[1:-1]) <= {"object_updated"}
    zone_updates = [m for k, m in events if a_id in m and "zones" in m]
    assert len(zone_updates) == 1  # entered once, never left while seen
    store = snapshot_store(settings)
    objects = {o.id: o for o in db.page_objects().items}
    for oid in (a_id, b_id):
        assert objects[oid].snapshot_path is not None
        jpeg = store.load(objects[oid].snapshot_path)
        assert jpeg is not None and jpeg.startswith(b"\xff\xd8")
        assert objects[oid].best_frame_id in {f.frame_id for f in frames[:SEEN]}
    before = {o.id: (o.frames, o.zones, o.start_time, o.end_time) for o in objects.values()}
    events_before = db.list_events(limit=1)[1]

    # The same scene again (the queue rows back to pending, the objects forgotten).
    with db.engine.begin() as conn:
        conn.execute(update(detection_processing_queue).values(status="pending"))
        conn.execute(delete(tracked_objects))
    _run(settings, db, registry)

    again = {o.id: (o.frames, o.zones, o.start_time, o.end_time) for o in db.page_objects().items}
    assert again == before
    assert db.list_events(limit=1)[1] == events_before  # the same event ids: nothing new


def _answers(images: dict[bytes, int]):
    def answer(image: bytes, width: int, height: int) -> list[SimulatedDetection]:
        k = images.get(image)
        if k is None or k >= SEEN:
            return []
        out = []
        for label, score, box in boxes_at(k):
            x0, y0, x1, y1 = _corners(box)
            out.append(
                SimulatedDetection(
                    label,
                    score,
                    round(x0 * width),
                    round(y0 * height),
                    round(x1 * width),
                    round(y1 * height),
                )
            )
        return out

    return answer


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
def test_a_sigkilled_flow_resumes_the_same_objects_without_a_second_start(
    pg: Database, postgres_url: str, secret_key: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    camera = f"cam-{tag}"
    stream, group = f"objects:{tag}", f"df-{tag}"
    frames = _frames(camera)
    images = {f.image: f.frame_number or 0 for f in frames}
    client = redis.Redis.from_url(services.REDIS_URL)
    env = flow_env(postgres_url, secret_key, tmp_path)
    zones = tmp_path / "objects.json"
    zones.write_text(json.dumps({camera: ZONE_OPTIONS}))
    flow = FlowProcess(
        "objects",
        [
            "--source",
            f"{services.REDIS_URL}?stream={stream}&group={group}&consumer=p0&claim_idle=1",
            "--recovery-dir",
            str(tmp_path / "recovery"),
            "--snapshot-interval",
            "0.2",
            "--objects-config",
            str(zones),
        ],
        env,
        tmp_path,
    )

    def send(part: list[Frame]) -> None:
        for f in part:
            fields = {
                "camera_id": f.camera_id,
                "image": f.image,
                "frame_id": f.frame_id,
                "frame_number": f.frame_number or 0,
                "timestamp": f.timestamp.isoformat(),
            }
            client.xadd(stream, fields)  # type: ignore[arg-type]

    def started() -> int:
        with pg.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM detection_event_logs WHERE event_type = :t"),
                    {"t": "object_started"},
                ).scalar_one()
            )

    a_id = track_id(camera, frames[0].frame_id, 0)
    b_id = track_id(camera, frames[0].frame_id, 1)
    try:
        with provider(pg, latency=0.0, answers=_answers(images)):  # type: ignore[arg-type]
            flow.start()
            send(frames[:15])
            wait_for(lambda: started() == 2, timeout=30, what="both starts", processes=(flow,))
            time.sleep(1.0)  # several snapshots after the starts
            assert flow.kill() == -9  # mid-track: both objects in progress
            assert pg.page_objects(in_progress=True).total == 2
            flow.start()
            send(frames[15:])
            wait_for(
                lambda: pg.page_objects(in_progress=False).total == 2,
                timeout=45,
                what="both objects to end",
                processes=(flow,),
            )
            assert flow.stop() == 0, flow.output()
        assert _objects(pg) == {a_id: ["dock"], b_id: []}, flow.output()
        assert started() == 2  # resumed, not started again
    finally:
        flow.cleanup()
        client.delete(stream)
        client.close()
