"""Camera status routes and series: what readers report through the cache, joined with
the cameras table; a camera never seen is offline; only configured cameras show."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from detectflow.core.models import utcnow
from detectflow.store.camera_status import STATUS_STALE, CameraStatusBoard
from detectflow.store.memory import MemoryCache
from detectflow.store.redis_backend import RedisCache
from tests.clock import Clock
from tests.server.support import TestClient, assert_error, sqlite_only

CAMERAS = "/api/v1/cameras"


def add(client: TestClient, camera_id: str, **fields: object) -> None:
    response = client.post(CAMERAS, json={"id": camera_id, **fields})
    assert response.status_code == 201, response.text


def test_a_reporting_camera_is_online_with_its_rates(
    client: TestClient, cache: MemoryCache
) -> None:
    add(client, "cam-1", url="rtsp://h/s")
    clock = Clock()
    board = CameraStatusBoard(cache, clock=clock)
    board.connected("cam-1")
    clock.now += 4.0
    board.decoded("cam-1", utcnow(), count=100)
    board.sampled("cam-1", 20)
    board.skipped("cam-1", 80)
    board.submitted("cam-1", 21)
    for ms in (40.0, 50.0, 60.0) * 5:
        board.completed("cam-1", ms)
    board.flush(force=True)

    data = client.get(f"{CAMERAS}/cam-1/status").json()["data"]
    assert data["status"] == "online" and data["seen"] is True and data["enabled"] is True
    assert (data["decode_fps"], data["sampled_fps"], data["skipped_per_second"]) == (
        25.0,
        5.0,
        20.0,
    )
    assert data["detect_fps"] == 3.75
    assert data["inference_ms"] == {"p50": 50.0, "p95": 60.0}
    assert data["in_flight"] == 6
    assert data["last_frame_time"] is not None and data["last_error"] is None
    assert client.get(f"{CAMERAS}/status").json()["data"] == [data]


def test_a_camera_never_seen_is_offline_with_its_recorded_error(
    client: TestClient, database: object
) -> None:
    add(client, "cam-1", enabled=False)
    database.set_camera_last_error("cam-1", "401 Unauthorized")  # type: ignore[attr-defined]
    data = client.get(f"{CAMERAS}/cam-1/status").json()["data"]
    assert data == {
        "camera_id": "cam-1",
        "enabled": False,
        "status": "offline",
        "seen": False,
        "reported_at": None,
        "last_frame_time": None,
        "decode_fps": 0.0,
        "sampled_fps": 0.0,
        "skipped_per_second": 0.0,
        "detect_fps": 0.0,
        "inference_ms": {"p50": None, "p95": None},
        "in_flight": 0,
        "last_error": "401 Unauthorized",
    }


def test_an_offline_or_stale_report_shows_offline_without_rates(
    client: TestClient, cache: MemoryCache
) -> None:
    add(client, "down")
    add(client, "stale")
    board = CameraStatusBoard(cache)
    board.disconnected("down", "connection refused")
    old = CameraStatusBoard(
        cache, wall_clock=lambda: utcnow() - timedelta(seconds=STATUS_STALE + 1)
    )
    old.connected("stale")
    old.decoded("stale", count=10)
    old.flush(force=True)
    by_id = {s["camera_id"]: s for s in client.get(f"{CAMERAS}/status").json()["data"]}
    assert by_id["down"]["status"] == "offline" and by_id["down"]["seen"] is True
    assert by_id["down"]["last_error"] == "connection refused"
    assert by_id["stale"]["status"] == "offline" and by_id["stale"]["decode_fps"] == 0.0
    assert by_id["stale"]["reported_at"] is not None


def test_only_configured_cameras_have_a_status(client: TestClient, cache: MemoryCache) -> None:
    CameraStatusBoard(cache).connected("not-configured")
    assert client.get(f"{CAMERAS}/status").json()["data"] == []
    assert_error(client.get(f"{CAMERAS}/not-configured/status"), 404, "not_found")


def test_series_exist_for_configured_cameras_only(client: TestClient, cache: MemoryCache) -> None:
    add(client, "cam-1")
    add(client, "cam-2")
    board = CameraStatusBoard(cache)
    board.connected("cam-1")
    board.completed("cam-1", 12.5)
    board.connected("made-up")
    board.flush(force=True)
    text = client.get("/metrics").text
    assert 'detectflow_camera_online{camera="cam-1"} 1.0' in text
    assert 'detectflow_camera_online{camera="cam-2"} 0.0' in text
    assert 'detectflow_camera_inference_milliseconds{camera="cam-1",quantile="0.5"} 12.5' in text
    assert 'detectflow_camera_detect_fps{camera="cam-1"}' in text
    assert "made-up" not in text


@sqlite_only
def test_an_unreadable_cache_shows_unknown_not_offline(
    client_factory: Callable[..., TestClient], free_port: int
) -> None:
    dead = RedisCache(f"redis://127.0.0.1:{free_port}/0")  # nothing listens there
    with dead, client_factory(cache=dead) as client:
        add(client, "cam-1")
        response = client.get(f"{CAMERAS}/cam-1/status")
        assert response.status_code == 200
        assert response.json()["data"]["status"] == "unknown"
        assert "detectflow_camera_online{" not in client.get("/metrics").text
