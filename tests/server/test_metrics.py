"""/metrics: per-app registry, latency by route template, WebSocket clients, broadcast lag."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from detectflow.server.hub import Hub
from detectflow.server.metrics import (
    OTHER_CAMERAS,
    UNMATCHED,
    CameraLabels,
    Metrics,
    MetricsMiddleware,
)
from detectflow.store.memory import MemoryBus
from tests.databases import drop_postgres, migrated_database, throwaway_postgres
from tests.server.support import API, TestClient, health_client, sqlite_only


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _count(text: str, method: str, route: str, status: str) -> float:
    labels = frozenset({("method", method), ("route", route), ("status", status)})
    return _samples(text).get(("detectflow_http_request_duration_seconds_count", labels), 0.0)


@sqlite_only
def test_latency_is_labelled_by_route_template_not_raw_path(client: TestClient) -> None:
    unknown = ("0b6c3b1e-0000-4000-8000-00000000abcd", "0b6c3b1e-0000-4000-8000-00000000def0")
    for ident in unknown:
        assert client.get(f"{API}/{ident}").status_code == 404
    assert client.get(f"{API}/by-person/p-7").status_code == 200
    assert client.get("/no/such/route").status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert _count(text, "GET", f"{API}/{{detection_id}}", "404") == 2
    assert _count(text, "GET", f"{API}/by-person/{{person_id}}", "200") == 1
    assert _count(text, "GET", UNMATCHED, "404") == 1
    for raw in (*unknown, "p-7", "no/such"):
        assert raw not in text


@sqlite_only
def test_a_request_refused_before_routing_keeps_its_route(
    client_factory: Callable[..., TestClient],
) -> None:
    with client_factory() as client:
        client.headers.pop("Authorization")
        assert client.post(f"{API}/send-frame", json={}).status_code == 401
        assert client.get(f"{API}/providers/p-1").status_code == 401
        text = client.get("/metrics").text
    assert _count(text, "POST", f"{API}/send-frame", "401") == 1
    assert _count(text, "GET", f"{API}/providers/{{provider_id}}", "401") == 1


@sqlite_only
def test_each_app_has_its_own_registry(client_factory: Callable[..., TestClient]) -> None:
    with client_factory() as one, client_factory() as two:
        one.get(f"{API}/queue-stats")
        one.get(f"{API}/queue-stats")
        two.get(f"{API}/queue-stats")
        assert _count(one.get("/metrics").text, "GET", f"{API}/queue-stats", "200") == 2
        assert _count(two.get("/metrics").text, "GET", f"{API}/queue-stats", "200") == 1
    assert not [name for name in REGISTRY._names_to_collectors if name.startswith("detectflow")]


def test_an_unhandled_error_is_counted_as_a_500() -> None:
    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    metrics = Metrics()
    routes = [Route("/boom", boom)]
    app = Starlette(routes=routes)
    app.add_middleware(
        MetricsMiddleware, metrics=metrics, routes=routes, templates={id(routes[0]): "/boom"}
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/boom").status_code == 500
    assert _count(metrics.render().decode(), "GET", "/boom", "500") == 1


def _gauge(client: TestClient, name: str) -> float:
    return _samples(client.get("/metrics").text)[(name, frozenset())]


@sqlite_only
def test_websocket_clients_gauge_follows_connections(client: TestClient) -> None:
    assert _gauge(client, "detectflow_websocket_clients") == 0
    with client.websocket_connect(f"{API}/ws/a") as a, client.websocket_connect(f"{API}/ws/b") as b:
        for ws in (a, b):
            ws.send_json({"type": "ping"})
            assert ws.receive_json()["type"] == "pong"
        assert _gauge(client, "detectflow_websocket_clients") == 2
    deadline = time.monotonic() + 5
    while _gauge(client, "detectflow_websocket_clients") != 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _lag(client: TestClient, clock: str) -> tuple[float, float]:
    samples = _samples(client.get("/metrics").text)
    labels = frozenset({("clock", clock)})
    return (
        samples.get(("detectflow_websocket_broadcast_lag_seconds_count", labels), 0.0),
        samples.get(("detectflow_websocket_broadcast_lag_seconds_sum", labels), 0.0),
    )


@sqlite_only
@pytest.mark.parametrize("stamped", [True, False], ids=["published_at", "hub-receipt"])
def test_broadcast_lag_is_measured_from_publish_to_send(
    client: TestClient, bus: MemoryBus, stamped: bool
) -> None:
    message = {"type": "detection", "detection_id": "d1", "camera_id": "cam-1", "confidence": 0.9}
    if stamped:
        published = datetime.now(UTC) - timedelta(seconds=0.5)
        message["published_at"] = published.isoformat().replace("+00:00", "Z")
    with client.websocket_connect(f"{API}/ws/lag") as ws:
        ws.send_json({"type": "subscribe", "camera_id": "cam-1"})
        assert ws.receive_json()["type"] == "subscription"
        bus.publish("detections:cam-1", json.dumps(message).encode())
        assert ws.receive_json()["detection_id"] == "d1"
        deadline = time.monotonic() + 5
        while _lag(client, "publish" if stamped else "hub")[0] < 1:
            assert time.monotonic() < deadline, "lag not recorded"
            time.sleep(0.01)
    count, total = _lag(client, "publish" if stamped else "hub")
    assert count == 1
    if stamped:
        assert 0.5 <= total < 5
    else:
        assert 0 <= total < 0.5
    assert _lag(client, "hub" if stamped else "publish") == (0.0, 0.0)


def test_dropped_broadcasts_stay_counted_after_the_client_leaves() -> None:
    async def main() -> str:
        metrics = Metrics()
        hub = Hub(MemoryBus(), queue_size=1, on_lag=metrics.observe_lag)
        metrics.watch(hub)
        client, box = hub.connect("slow")
        client.filter.subscribe(None, None, None)
        for n in range(3):
            body = {"type": "detection", "detection_id": str(n), "camera_id": "c", "confidence": 1}
            hub.dispatch("detections:c", json.dumps(body).encode())
        hub.disconnect(client)
        box.close()
        return metrics.render().decode()

    samples = _samples(anyio.run(main))
    assert samples[("detectflow_websocket_dropped_messages_total", frozenset())] == 2
    assert samples[("detectflow_websocket_received_messages_total", frozenset())] == 3
    assert samples[("detectflow_websocket_clients", frozenset())] == 0


@given(
    st.lists(st.text(alphabet="abc", min_size=1, max_size=3), max_size=60),
    st.sets(st.text(alphabet="abc", min_size=1, max_size=3), max_size=5),
    st.integers(min_value=0, max_value=8),
)
def test_camera_labels_are_bounded_and_never_change(
    seen: list[str], configured: set[str], cap: int
) -> None:
    labels = CameraLabels(cap)
    first = {camera: labels.label(camera, configured) for camera in seen}
    again = {camera: labels.label(camera, configured) for camera in seen}
    assert first == again  # a camera's series keeps its name
    named = {label for label in first.values() if label != OTHER_CAMERAS}
    assert len(named - configured) <= cap
    assert all(first[c] == c for c in seen if c in configured)
    if len(set(seen) - configured) <= cap:
        assert OTHER_CAMERAS not in first.values()


@pytest.mark.postgres
def test_metrics_answer_while_the_database_is_gone(tmp_path: Path, secret_key: str) -> None:
    """/metrics reads the configured cameras from SQL; an outage leaves them out, not a 500."""
    with (
        throwaway_postgres("detectflow_metrics") as url,
        migrated_database(url, secret_key) as database,
        health_client(database, tmp_path) as client,
    ):
        drop_postgres(url)
        response = client.get("/metrics")
    assert response.status_code == 200
    assert "detectflow_http_request_duration_seconds" in response.text
