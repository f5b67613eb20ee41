"""A Redis outage mid-run degrades the server; it never answers 500.

The app runs on a redis-server of the test's own (``own_redis``), which the
test stops and starts again; the shared Redis stays up. The fail-fast pauses
and re-subscribe delays are short so the tests see Redis come back quickly.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from detectflow.store.redis_backend import RedisBus, RedisCache
from tests.redis_server import RedisServer
from tests.server.support import API, TestClient, add_provider, frame_body, sqlite_only

pytestmark = [pytest.mark.redis, sqlite_only]

_FAST = (0.01, 0.05)


@pytest.fixture
def redis_client(
    client_factory: Callable[..., TestClient], own_redis: RedisServer
) -> Iterator[TestClient]:
    with (
        RedisCache(own_redis.url, outage_backoff=_FAST) as cache,
        RedisBus(
            own_redis.url,
            outage_backoff=_FAST,
            reconnect_min_seconds=0.01,
            reconnect_max_seconds=0.05,
        ) as bus,
        client_factory(cache=cache, bus=bus) as client,
    ):
        yield client


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _counter(client: TestClient, name: str, labels: str) -> float:
    text = client.get("/metrics").text
    match = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _health(client: TestClient) -> tuple[int, dict[str, Any]]:
    response = client.get("/api/v1/health")
    data: dict[str, Any] = response.json()["data"]
    return response.status_code, data


def test_with_redis_down_send_frame_live_and_statistics_answer_from_the_database(
    redis_client: TestClient, own_redis: RedisServer
) -> None:
    client = redis_client
    add_provider(client)
    dropped_before = _counter(client, "detectflow_live_dropped_total", 'what="frames"')
    own_redis.stop()

    sent = client.post(f"{API}/send-frame", json=frame_body("cam-1", 1))
    assert sent.status_code == 200, sent.text
    stored = sent.json()["data"]
    assert len(stored["detections"]) == 1

    live = client.get(f"{API}/live?camera_id=cam-1")
    assert live.status_code == 200, live.text
    assert live.json()["data"]["cache_hit"] is False
    assert [d["id"] for d in live.json()["data"]["detections"]] == [
        d["id"] for d in stored["detections"]
    ]
    for path in ("/statistics", "/statistics?camera_id=cam-1", "/live", "/summary"):
        assert client.get(f"{API}{path}").status_code == 200, path
    # The live publish was dropped, and counted where Prometheus reads it.
    after = _counter(client, "detectflow_live_dropped_total", 'what="frames"')
    assert after == dropped_before + 1


def test_health_says_what_is_down_and_stays_200_then_recovers(
    redis_client: TestClient, own_redis: RedisServer
) -> None:
    client = redis_client
    add_provider(client)
    _until(lambda: _health(client)[1]["parts"]["bus"]["status"] == "ok")
    status, data = _health(client)
    assert status == 200
    assert data["parts"]["cache"] == {"status": "ok", "message": None, "backend": "redis"}

    own_redis.stop()
    status, data = _health(client)
    assert status == 200 and data["status"] == "degraded"
    parts = data["parts"]
    assert parts["database"]["status"] == "ok"
    assert parts["cache"]["status"] == "down"
    assert f"127.0.0.1:{own_redis.port}" in parts["cache"]["message"]
    assert parts["bus"]["status"] == "down"
    assert parts["dataflow"]["status"] == "degraded"  # heartbeats cannot be read
    assert parts["providers"]["status"] == "ok"  # the breakers of this process still are

    own_redis.start()
    _until(lambda: _health(client)[1]["parts"]["cache"]["status"] == "ok")
    _until(lambda: _health(client)[1]["parts"]["bus"]["status"] == "ok")
    assert _health(client)[1]["parts"]["bus"]["reconnections"] == 1


def test_websocket_clients_are_told_what_they_missed_when_the_bus_reconnects(
    redis_client: TestClient, own_redis: RedisServer
) -> None:
    client = redis_client
    add_provider(client)
    _until(lambda: _health(client)[1]["parts"]["bus"]["subscribed"])
    with client.websocket_connect(f"{API}/ws/watcher") as ws:
        ws.send_json({"type": "subscribe", "camera_id": "cam-1"})
        assert ws.receive_json()["type"] == "subscription"
        own_redis.stop()
        # Published while the bus is down: lost, and the client must hear of it.
        assert client.post(f"{API}/send-frame", json=frame_body("cam-1", 1)).status_code == 200
        own_redis.start()
        # Wait on the hub, not on the socket (a receive has no timeout): once it
        # counts the reconnection, the notice is in this client's outbox.
        _until(lambda: _health(client)[1]["parts"]["bus"]["reconnections"] == 1)
        notice = ws.receive_json()
        assert notice["type"] == "lagged" and notice["reason"] == "bus_reconnected"
        assert notice["lost_at"] <= notice["reconnected_at"]
        assert "dropped" not in notice  # nobody can count what Redis never kept

        def broadcast() -> bool:  # the publishing side may fail fast a little longer
            assert client.post(f"{API}/send-frame", json=frame_body("cam-1", 2)).status_code == 200
            time.sleep(0.05)
            return bool(_health(client)[1]["websocket"]["received"] > 0)

        _until(broadcast)
        assert ws.receive_json()["type"] == "detection"
