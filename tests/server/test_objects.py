"""/api/v1/objects (detectflow/server/objects.py): lists, one object, its snapshot."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from starlette.testclient import TestClient

from detectflow.core.object_config import ObjectsConfig
from detectflow.core.settings import Settings
from detectflow.flows.objects import CameraStep
from detectflow.store import Database
from detectflow.store.live import LiveView
from detectflow.store.memory import MemoryBus, MemoryCache
from detectflow.store.recorder import Recorder
from detectflow.store.snapshots import snapshot_store
from tests.object_frames import ZONE_OPTIONS, scene_results
from tests.server.support import sqlite_only

API = "/api/v1/objects"


@pytest.fixture
def recorded(settings: Settings, database: Database) -> dict[str, dict]:
    """The crossing scene recorded through the one recorder, snapshots kept."""
    step = CameraStep("cam-1", ObjectsConfig.from_options(ZONE_OPTIONS))
    results = step.push(scene_results()) + step.stop()
    Recorder(database, snapshots=snapshot_store(settings)).record(results)
    return {tuple(o.zones): o for o in database.page_objects().items}


def test_the_list_has_both_objects_with_the_guides_meta(client: TestClient, recorded) -> None:
    body = client.get(API).json()
    assert body["meta"]["total"] == 2 and body["meta"]["page"] == 1
    first = body["data"][0]
    assert set(first) == {
        "id", "camera_id", "label", "detection_type", "start_time", "end_time", "frames",
        "top_score", "box", "zones", "in_progress", "has_snapshot", "sub_label",
    }  # fmt: skip
    assert all(o["has_snapshot"] and not o["in_progress"] for o in body["data"])


def test_filters_and_cursor_paging(client: TestClient, recorded) -> None:
    assert client.get(API, params={"zone": "dock"}).json()["meta"]["total"] == 1
    assert client.get(API, params={"in_progress": "true"}).json()["meta"]["total"] == 0
    assert client.get(API, params={"min_score": 0.9}).json()["meta"]["total"] == 1
    after = client.get(API, params={"after": "2030-01-01T00:00:00Z"}).json()
    assert after["meta"]["total"] == 0
    page = client.get(API, params={"limit": 1}).json()
    nxt = client.get(API, params={"limit": 1, "cursor": page["meta"]["next_cursor"]}).json()
    assert nxt["meta"]["page"] == 2
    assert page["data"][0]["id"] != nxt["data"][0]["id"]


def test_bad_filters_are_422_naming_the_parameter(client: TestClient, recorded) -> None:
    for params, field in (
        ({"after": "yesterday"}, "query.after"),
        ({"in_progress": "maybe"}, "query.in_progress"),
        ({"min_score": 2}, "query.min_score"),
    ):
        answer = client.get(API, params=params)
        assert answer.status_code == 422
        assert answer.json()["error"]["details"][0]["field"] == field


def test_one_object_has_its_path_zones_and_best(client: TestClient, recorded) -> None:
    walker = recorded[("dock",)]
    data = client.get(f"{API}/{walker.id}").json()["data"]
    assert data["zones"] == ["dock"] and data["best"]["box"] == walker.best_box
    assert len(data["path"]) > 2 and {"x", "y", "time"} == set(data["path"][0])
    missing = client.get(f"{API}/3f2a6a4e-8c1b-4a55-9f0e-1234567890ab")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def _image(answer) -> Image.Image:
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    return Image.open(io.BytesIO(answer.content))


def test_the_snapshot_as_stored_boxed_cropped_and_scaled(client: TestClient, recorded) -> None:
    walker = recorded[("dock",)]
    url = f"{API}/{walker.id}/snapshot.jpg"
    plain = _image(client.get(url))
    assert plain.size == (64, 48)  # the frame's size (the scene's PNG, kept as JPEG)
    boxed = _image(client.get(url, params={"bbox": 1}))
    assert boxed.size == (64, 48)
    x0, y0, _, y1 = walker.best_box
    assert boxed.convert("RGB").getpixel((int(x0 * 64) + 1, int((y0 + y1) / 2 * 48)))[0] > 200
    cropped = _image(client.get(url, params={"crop": 1}))
    assert cropped.size[0] < 64 and cropped.size[1] < 48
    assert _image(client.get(url, params={"height": 24})).size == (32, 24)


def test_an_object_without_a_snapshot_file_is_404(
    client: TestClient, recorded, settings: Settings
) -> None:
    walker = recorded[("dock",)]
    snapshot_store(settings).delete([walker.snapshot_path])
    assert client.get(f"{API}/{walker.id}/snapshot.jpg").status_code == 404


@sqlite_only
def test_object_events_reach_websocket_clients_as_object_messages(
    client: TestClient, database: Database, cache: MemoryCache, bus: MemoryBus
) -> None:
    step = CameraStep("cam-1", ObjectsConfig.from_options(ZONE_OPTIONS))
    results = step.push(scene_results()) + step.stop()
    with client.websocket_connect("/api/v1/detections/ws/client-1") as ws:
        ws.send_json({"type": "subscribe", "event_types": ["object_started", "object_ended"]})
        ws.receive_json()
        Recorder(database, live=LiveView(cache, bus)).record(results)
        received: list[dict] = []
        for _ in range(200):  # the frames' detections come too (every camera subscribed)
            message = ws.receive_json()
            if message["type"] == "object":
                received.append(message)
                if len(received) == 4:
                    break
    assert [m["event_type"] for m in received] == ["object_started"] * 2 + ["object_ended"] * 2
    started = received[0]
    assert started["before"] == started["after"] and started["camera_id"] == "cam-1"
    assert {"id", "label", "top_score", "box", "entered_zones", "has_snapshot"} <= set(
        started["after"]
    )
    ended = next(m for m in received[2:] if m["object_id"] == started["object_id"])
    assert ended["after"]["end_time"] is not None and ended["before"]["end_time"] is None
