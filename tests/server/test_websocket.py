"""The guide's WebSocket protocol through Starlette's TestClient (lifespan running)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from detectflow.core.settings import Settings
from detectflow.server import create_app
from detectflow.store import Database
from detectflow.store.memory import MemoryBus, MemoryCache
from tests.server.support import API, TestClient, add_provider, frame_body, sqlite_only

WS = f"{API}/ws"


def _detection(camera: str, confidence: float, n: int = 0) -> tuple[str, bytes]:
    message = {
        "type": "detection",
        "detection_id": f"d-{camera}-{n}",
        "camera_id": camera,
        "detection_type": "person",
        "confidence": confidence,
        "timestamp": "2025-11-05T12:34:56Z",
    }
    return f"detections:{camera}", json.dumps(message).encode()


def _event(camera: str, event_type: str) -> tuple[str, bytes]:
    message = {
        "type": "event",
        "event_id": f"e-{camera}-{event_type}",
        "event_type": event_type,
        "severity": "info",
        "message": "m",
        "camera_id": camera,
        "timestamp": "2025-11-05T12:34:56Z",
    }
    return f"events:{event_type}", json.dumps(message).encode()


@sqlite_only
def test_ping_answers_pong_with_a_timestamp(client: TestClient) -> None:
    with client.websocket_connect(f"{WS}/client-1") as ws:
        ws.send_json({"type": "ping"})
        reply = ws.receive_json()
    assert reply["type"] == "pong"
    assert datetime.fromisoformat(reply["timestamp"].replace("Z", "+00:00")).tzinfo is not None


def test_subscribe_reply_carries_the_current_detections(client: TestClient) -> None:
    add_provider(client, options={"detections": [["person", 0.9, None], ["car", 0.4, None]]})
    client.post(f"{API}/send-frame", json=frame_body("cam-1", 1))

    with client.websocket_connect(f"{WS}/client-1") as ws:
        ws.send_json({"type": "subscribe", "camera_id": "cam-1", "min_confidence": 0.7})
        reply = ws.receive_json()
    assert reply["type"] == "subscription"
    assert reply["camera_id"] == "cam-1"
    assert reply["subscribed"] is True
    assert reply["message"] == "Subscribed to camera cam-1"
    assert reply["detection_count"] == 1
    assert [d["detection_type"] for d in reply["current_detections"]] == ["person"]


def test_send_frame_is_broadcast_as_detections_then_an_event(client: TestClient) -> None:
    add_provider(client, options={"detections": [["person", 0.9, "p-1"], ["car", 0.8, None]]})
    with client.websocket_connect(f"{WS}/client-1") as ws:
        ws.send_json({"type": "subscribe", "camera_id": "cam-1"})
        assert ws.receive_json()["detection_count"] == 0
        sent = client.post(f"{API}/send-frame", json=frame_body("cam-1", 1)).json()["data"]
        messages = [ws.receive_json() for _ in range(3)]

    detections, event = messages[:2], messages[2]
    assert [m["type"] for m in detections] == ["detection", "detection"]
    assert [m["detection_id"] for m in detections] == [d["id"] for d in sent["detections"]]
    first = detections[0]
    assert {
        "detection_id",
        "camera_id",
        "detection_type",
        "confidence",
        "person_name",
        "person_id",
        "timestamp",
    } <= set(first)
    assert first["camera_id"] == "cam-1" and first["person_id"] == "p-1"
    assert event["type"] == "event"
    assert event["event_type"] == "detection_completed"
    assert event["camera_id"] == "cam-1"
    assert {"event_id", "severity", "message", "timestamp"} <= set(event)


@sqlite_only
def test_broadcasts_are_filtered_by_camera_and_min_confidence(
    client: TestClient, bus: MemoryBus
) -> None:
    with client.websocket_connect(f"{WS}/client-1") as ws:
        ws.send_json({"type": "subscribe", "camera_id": "cam-1", "min_confidence": 0.8})
        ws.receive_json()
        bus.publish_many(
            [
                _detection("cam-2", 0.99),  # other camera
                _detection("cam-1", 0.5),  # too unsure
                _detection("cam-1", 0.85, 1),
            ]
        )
        received = ws.receive_json()
    assert received["detection_id"] == "d-cam-1-1"


@sqlite_only
def test_events_are_filtered_by_event_type_and_camera(client: TestClient, bus: MemoryBus) -> None:
    with client.websocket_connect(f"{WS}/client-1") as ws:
        ws.send_json({"type": "subscribe", "event_types": ["detection_failed"]})
        assert ws.receive_json()["message"] == "Subscribed to all cameras"
        bus.publish_many(
            [_event("cam-1", "detection_completed"), _event("cam-3", "detection_failed")]
        )
        received = ws.receive_json()
    assert received["event_type"] == "detection_failed" and received["camera_id"] == "cam-3"


@sqlite_only
def test_unsubscribe_stops_one_camera(client: TestClient, bus: MemoryBus) -> None:
    with client.websocket_connect(f"{WS}/client-1") as ws:
        ws.send_json({"type": "subscribe", "camera_id": "cam-1"})
        ws.receive_json()
        ws.send_json({"type": "subscribe", "camera_id": "cam-2"})
        ws.receive_json()
        ws.send_json({"type": "unsubscribe", "camera_id": "cam-1"})
        reply = ws.receive_json()
        assert reply["type"] == "unsubscription" and reply["subscribed"] is True
        bus.publish_many([_detection("cam-1", 0.9), _detection("cam-2", 0.9)])
        assert ws.receive_json()["camera_id"] == "cam-2"

        ws.send_json({"type": "unsubscribe"})
        assert ws.receive_json()["subscribed"] is False


@sqlite_only
def test_nothing_is_broadcast_before_subscribing(client: TestClient, bus: MemoryBus) -> None:
    with client.websocket_connect(f"{WS}/client-1") as ws:
        bus.publish_many([_detection("cam-1", 0.9, 0)])
        while client.get("/api/v1/health").json()["data"]["websocket"]["received"] < 1:
            time.sleep(0.01)  # wait until the hub has seen (and not sent) it
        ws.send_json({"type": "subscribe", "camera_id": "cam-1"})
        assert ws.receive_json()["type"] == "subscription"
        bus.publish_many([_detection("cam-1", 0.9, 1)])
        assert ws.receive_json()["detection_id"] == "d-cam-1-1"


def test_get_stats_returns_queue_stats(client: TestClient) -> None:
    client.post(f"{API}/send-frame?mode=queue", json=frame_body())
    with client.websocket_connect(f"{WS}/client-1") as ws:
        ws.send_json({"type": "get_stats"})
        reply = ws.receive_json()
    assert reply["type"] == "stats"
    assert reply["queue_stats"]["pending"] == 1 and reply["queue_stats"]["total"] == 1


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "validation_error"),
        ('{"camera_id": "x"}', "validation_error"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": 5}', "validation_error"),
        ('{"type": "subscribe", "min_confidence": 2}', "validation_error"),
        ('{"type": "subscribe", "min_confidence": "high"}', "validation_error"),
        ('{"type": "subscribe", "camera_id": "a b"}', "validation_error"),
        ('{"type": "subscribe", "event_types": "detection_failed"}', "validation_error"),
        ('{"type": "subscribe", "colour": "red"}', "validation_error"),
        ('{"type": "ping", "extra": 1}', "validation_error"),
    ],
)
@sqlite_only
def test_bad_messages_get_an_error_and_the_connection_stays_open(
    client: TestClient, message: str, code: str
) -> None:
    with client.websocket_connect(f"{WS}/client-1") as ws:
        ws.send_text(message)
        error = ws.receive_json()
        ws.send_json({"type": "ping"})
        pong = ws.receive_json()
    assert error["type"] == "error" and error["code"] == code and error["message"]
    assert pong["type"] == "pong"


@sqlite_only
def test_binary_messages_get_an_error(client: TestClient) -> None:
    with client.websocket_connect(f"{WS}/client-1") as ws:
        ws.send_bytes(b'{"type": "ping"}')
        assert ws.receive_json()["type"] == "error"


@sqlite_only
def test_a_bad_client_id_is_refused(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as caught, client.websocket_connect(f"{WS}/bad$id"):
        pass
    assert caught.value.code == 1008


@sqlite_only
def test_a_slow_client_is_told_how_many_broadcasts_it_lost(
    settings: Settings, database: Database, registry: Any
) -> None:
    bus = MemoryBus()
    app = create_app(
        settings,
        database=database,
        registry=registry,
        cache=MemoryCache(),
        bus=bus,
        ws_queue_size=2,
    )
    with TestClient(app) as client, client.websocket_connect(f"{WS}/slow") as ws:
        ws.send_json({"type": "subscribe"})
        ws.receive_json()
        # One burst: the hub fans all 50 out before the sender can drain two.
        bus.publish_many([_detection("cam-1", 0.9, n) for n in range(50)])
        delivered: list[str] = []
        dropped = 0
        while len(delivered) + dropped < 50:
            message = ws.receive_json()
            if message["type"] == "lagged":
                dropped += message["dropped"]
            else:
                delivered.append(message["detection_id"])
        health = client.get("/api/v1/health").json()["data"]

    assert dropped > 0
    assert len(delivered) + dropped == 50
    assert delivered == sorted(delivered, key=lambda d: int(d.rsplit("-", 1)[1]))
    assert health["websocket"]["dropped"] == dropped


@sqlite_only
def test_disconnected_clients_leave_the_hub(client: TestClient) -> None:
    with client.websocket_connect(f"{WS}/a") as ws:
        ws.send_json({"type": "ping"})
        ws.receive_json()
        assert client.get("/api/v1/health").json()["data"]["websocket"]["clients"] == 1
    assert client.get("/api/v1/health").json()["data"]["websocket"]["clients"] == 0
