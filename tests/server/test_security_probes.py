"""The security review's probes, replayed (issue 12, section 3, items 1-6, 8 and 9).

Each probe is sent the way the review sent it and must get the answer a
mature service gives: a 4xx envelope (never a 500, never a traceback in the
log), no credential in anything shown, a revoked key's socket closed, no
data without a key in ``required`` mode, bounded series. The NUL probes run
on PostgreSQL, which refuses NUL in text (SQLite stores it, so it would hide
the fault).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
import redis
import websockets
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from detectflow.adapters.urls import check_provider_url
from detectflow.core.plugins import PluginRegistry
from detectflow.core.settings import Settings
from detectflow.server import create_app
from detectflow.server.app import openapi_document
from detectflow.server.metrics import OTHER_CAMERAS, Metrics
from detectflow.store import Database
from tests import services
from tests.server.support import (
    API,
    TestClient,
    Uvicorn,
    add_provider,
    assert_error,
    frame_body,
)

postgres_only = pytest.mark.parametrize("database", ["postgres"], indirect=True)


@pytest.fixture
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The probes must not make the server log an error (the review saw tracebacks)."""
    with caplog.at_level(logging.WARNING):
        yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# -- 1. NUL and control characters: a 422 at the boundary, for every route -------------

NUL_PROBES_WITHOUT_A_KEY = [
    (f"{API}/events?event_type=%00", 422),
    (f"{API}/events?person_id=%00", 422),
    (f"{API}/live?detection_type=%00", 422),
    (f"{API}/by-person/a%00b", 422),
    (f"{API}/abc%00", 404),  # not a detection id (a UUID): no route
    (f"{API}/statistics/windows?detection_type=a%00", 422),
    (f"{API}/recent?camera_id=%00", 422),
    (f"{API}/events?event_type=a%01b", 422),
    (f"{API}/frames/a%00b", 422),
]


@postgres_only
@pytest.mark.usefixtures("no_error_logs")
@pytest.mark.parametrize(("url", "status"), NUL_PROBES_WITHOUT_A_KEY)
def test_nul_in_a_parameter_is_a_4xx_without_a_key(
    client: TestClient, url: str, status: int
) -> None:
    client.headers.pop("Authorization")
    error = assert_error(client.get(url), status)
    if status == 422:
        assert error["code"] == "validation_error"
        assert "control characters" in error["message"]


@postgres_only
@pytest.mark.usefixtures("no_error_logs")
def test_nul_with_an_admin_key_in_a_path_and_in_body_fields(client: TestClient) -> None:
    assert_error(client.get(f"{API}/providers/a%00b"), 422, "validation_error")
    assert_error(client.delete(f"{API}/providers/a%00b"), 422, "validation_error")
    bodies: list[tuple[str, str, dict[str, Any]]] = [
        (
            "POST",
            "/providers",
            {"provider_name": "a\u0000b", "provider_type": "scripted", "endpoint_url": "x://y"},
        ),
        ("PUT", "/provider/config", {"provider_name": "\u0000"}),
        ("POST", "/test-provider", {"provider_config_id": "a\u0000"}),
        ("POST", "/send-frame", frame_body(frame_id="\u0000")),
        (
            "POST",
            "/providers",
            {
                "provider_name": "p",
                "provider_type": "scripted",
                "endpoint_url": "x://y",
                "options": {"nested": ["ok", {"deep": "\u0000"}]},
            },
        ),
    ]
    for method, path, body in bodies:
        error = assert_error(client.request(method, f"{API}{path}", json=body), 422)
        assert "NUL" in error["message"], (path, error)
    assert client.get(f"{API}/providers").json()["data"] == []


@postgres_only
def test_a_nul_in_a_websocket_message_is_an_error_reply(client: TestClient) -> None:
    with client.websocket_connect(f"{API}/ws/c1") as ws:
        ws.send_text(json.dumps({"type": "subscribe", "event_types": ["a\u0000"]}))
        reply = ws.receive_json()
        assert (reply["type"], reply["code"]) == ("error", "validation_error")
        ws.send_json({"type": "ping"})
        assert ws.receive_json()["type"] == "pong"


# -- 2. credentials in a provider URL are never shown ---------------------------------

SECRET = "s3cret-pass"
TOKEN = "t0ken-value"


@pytest.fixture
def redis_settings(settings: Settings) -> Iterator[Settings]:
    """Settings on the real Redis, under a namespace of this test's own."""
    prefix = f"detectflow-test-{uuid.uuid4().hex}:"
    yield settings.with_overrides(redis_url=services.REDIS_URL, redis_prefix=prefix)
    client = redis.Redis.from_url(services.REDIS_URL)
    try:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _redis_values(prefix: str) -> str:
    client = redis.Redis.from_url(services.REDIS_URL)
    try:
        out = []
        for key in client.scan_iter(f"{prefix}*"):
            kind = client.type(key)
            if kind == b"string":
                out.append(repr(client.get(key)))
            elif kind == b"hash":
                out.append(repr(client.hgetall(key)))
            elif kind == b"list":
                out.append(repr(client.lrange(key, 0, -1)))
            elif kind == b"zset":
                out.append(repr(client.zrange(key, 0, -1)))
            out.append(repr(key))
        return "\n".join(out)
    finally:
        client.close()


@pytest.mark.redis
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_credentials_in_a_provider_url_are_redacted_everywhere_it_is_shown(
    redis_settings: Settings,
    database: Database,
    registry: PluginRegistry,
    free_port: int,
) -> None:
    _, admin = database.create_api_key("admin", "probe")
    url = f"http://probe-user:{SECRET}@127.0.0.1:{free_port}/detect?api_key={TOKEN}&x=1"
    app = create_app(redis_settings, database=database, registry=registry)
    with TestClient(app, headers={"Authorization": f"Bearer {admin}"}) as client:
        created = client.post(
            f"{API}/providers",
            json={
                "provider_name": "with credentials",
                "provider_type": "http_api",
                "endpoint_url": url,
                "is_active": True,
                "max_retries": 0,
                "timeout_seconds": 2,
            },
        )
        assert created.status_code == 201, created.text
        provider_id = created.json()["data"]["id"]
        with client.websocket_connect(f"{API}/ws/watcher") as ws:
            ws.send_json({"type": "subscribe"})
            assert ws.receive_json()["type"] == "subscription"
            sent = client.post(f"{API}/send-frame", json=frame_body("cam-secret"))
            broadcast = ws.receive_text()
        tested = client.post(f"{API}/test-provider", json={})
        shown = {
            "send-frame": sent.text,
            "broadcast": broadcast,
            "test-provider": tested.text,
            "events": client.get(f"{API}/events").text,
            "last_error": client.get(f"{API}/providers/{provider_id}").json()["data"]["last_error"],
            "live": client.get(f"{API}/live?camera_id=cam-secret&use_cache=true").text,
            "redis": _redis_values(redis_settings.redis_prefix),
        }
    assert sent.json()["data"]["success"] is False
    assert "127.0.0.1" in sent.json()["data"]["error"]  # the URL is still named...
    assert tested.json()["data"]["success"] is False
    for where, text in shown.items():
        assert SECRET not in text, where  # ...without its credentials
        assert TOKEN not in text, where
    assert "***@127.0.0.1" in shown["send-frame"]


# -- 3. a revoked key closes the WebSockets that use it -------------------------------


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
@pytest.mark.parametrize("mode", ["required", "reads-open"])
def test_revoking_a_key_closes_its_open_websocket_with_4401(
    settings: Settings, database: Database, free_port: int, mode: str
) -> None:
    key, token = database.create_api_key("read", "soon revoked")
    _, other = database.create_api_key("read", "stays")
    app = create_app(
        settings.with_overrides(auth_mode=mode), database=database, key_check_seconds=0.1
    )
    base = f"ws://127.0.0.1:{free_port}{API}/ws"

    async def scenario() -> tuple[dict[str, Any], int | None, str]:
        async with (
            websockets.connect(f"{base}/doomed?token={token}") as doomed,
            websockets.connect(f"{base}/kept?token={other}") as kept,
        ):
            for ws in (doomed, kept):
                await ws.send(json.dumps({"type": "ping"}))
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "pong"
            await asyncio.to_thread(database.revoke_api_key, key.id)
            # A bound so a server that never closes fails the test instead of hanging it.
            message = json.loads(await asyncio.wait_for(doomed.recv(), 10))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(doomed.recv(), 10)
            await kept.send(json.dumps({"type": "ping"}))
            still = json.loads(await asyncio.wait_for(kept.recv(), 5))["type"]
            return message, doomed.close_code, still

    with Uvicorn(app, free_port):
        message, code, still = asyncio.run(scenario())
    assert (message["type"], message["code"]) == ("error", "unauthorized")
    assert key.id in message["message"] and "revoked" in message["message"]
    assert code == 4401
    assert still == "pong"


# -- 4. required mode closes /metrics; what stays open is the documented set ----------


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_required_mode_closes_metrics_and_keeps_only_the_documented_paths_open(
    settings: Settings, database: Database
) -> None:
    _, reader = database.create_api_key("read", "prometheus")
    app = create_app(settings.with_overrides(auth_mode="required"), database=database)
    with TestClient(app) as client:
        assert_error(client.get("/metrics"), 401, "unauthorized")
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {reader}"})
        assert scraped.status_code == 200
        assert "detectflow_http_request_duration_seconds" in scraped.text
        for open_path in ("/api/v1/health", "/openapi.json", "/", "/static/app.js"):
            assert client.get(open_path).status_code == 200, open_path
        document = client.get("/openapi.json").json()
    open_in_document = {
        (method, path)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if {} in op["security"]
    }
    assert open_in_document == {
        ("get", "/api/v1/health"),
        ("get", "/openapi.json"),
        ("get", "/"),
        ("get", "/static/{path}"),
    }


# -- 5. deep nesting: a 400 for a body, close 1007 for a WebSocket message ------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("no_error_logs")
def test_a_1000_deep_body_is_a_400(client: TestClient) -> None:
    deep = '{"camera_id": "c", "frame_data": "AA==", "x": ' + _nested(1000) + "}"
    for path in ("/send-frame", "/providers", "/test-provider"):
        response = client.post(
            f"{API}{path}", content=deep, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 400, "too_deeply_nested")


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
@pytest.mark.parametrize("mode", ["required", "reads-open"])
def test_a_20000_deep_websocket_message_closes_the_socket_with_1007(
    settings: Settings, database: Database, free_port: int, mode: str
) -> None:
    app = create_app(settings.with_overrides(auth_mode=mode), database=database)

    async def scenario() -> tuple[dict[str, Any], int | None]:
        async with websockets.connect(f"ws://127.0.0.1:{free_port}{API}/ws/deep") as ws:
            await ws.send(_nested(20_000))  # first message: before auth in required mode
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return message, ws.close_code

    with Uvicorn(app, free_port):
        message, code = asyncio.run(scenario())
    assert (message["type"], message["code"]) == ("error", "too_deeply_nested")
    assert code == 1007


# -- 6. per-camera series are bounded --------------------------------------------------


class _CameraFrames(Collector):
    """Frames per camera, as the dataflow's collector reports them."""

    def __init__(self, cameras: Iterable[str]) -> None:
        self.cameras = list(cameras)

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily("probe_frames", "Frames.", labels=["camera", "outcome"])
        for camera in self.cameras:
            for outcome in ("completed", "failed", "skipped"):
                family.add_metric([camera, outcome], 1)
        yield family


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_2000_made_up_cameras_add_one_series_per_outcome(
    client_factory: Callable[..., TestClient],
) -> None:
    metrics = Metrics(max_cameras=10)
    made_up = [f"made-up-{i:04}" for i in range(2000)]
    metrics.registry.register(_CameraFrames(["lobby", *made_up]))
    with client_factory(metrics=metrics) as client:
        add_provider(client, provider_name="lobby only", options={"cameras": ["lobby"]})
        text = client.get("/metrics").text
    series = [line for line in text.splitlines() if line.startswith("probe_frames_total{")]
    cameras = {line.split('camera="')[1].split('"')[0] for line in series}
    assert "lobby" in cameras  # configured: by name
    assert OTHER_CAMERAS in cameras
    assert len(cameras) == 1 + 10 + 1  # configured + the cap + the folded rest
    assert len(series) == 3 * len(cameras)
    folded = [line for line in series if f'camera="{OTHER_CAMERAS}"' in line]
    assert all(line.endswith(" 1990.0") for line in folded), folded


# -- 8. /{detection_id} does not match the fixed paths, in the router and the document --


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_the_detection_id_parameter_matches_no_fixed_path(client: TestClient) -> None:
    import re

    document = openapi_document()
    [param] = document["paths"][f"{API}/{{detection_id}}"]["get"]["parameters"]
    pattern = re.compile(param["schema"]["pattern"])
    fixed = {
        path[len(API) + 1 :].split("/")[0]
        for path in document["paths"]
        if path.startswith(f"{API}/") and not path.endswith("{detection_id}")
    }
    assert fixed >= {"test-provider", "events", "live", "send-frame", "providers", "ws"}
    for name in fixed:
        assert not pattern.match(name), name
    assert pattern.match(str(uuid.uuid4()))
    assert_error(client.get(f"{API}/not-a-detection-id"), 404)
    assert_error(client.get(f"{API}/{uuid.uuid4()}"), 404, "not_found")
    assert_error(client.get(f"{API}/test-provider"), 405)


# -- 9. the SSRF guard sees the IPv4 inside every IPv6 form ---------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://[::169.254.169.254]/",  # IPv4-compatible: the review's probe
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped
        "http://[2002:a9fe:a9fe::1]/",  # 6to4
        "http://[64:ff9b::169.254.169.254]/",  # NAT64 well-known prefix
        "http://[2001:0:4136:e378:8000:63bf:5601:5601]/",  # Teredo, client 169.254.169.254
    ],
)
def test_ipv6_forms_embedding_a_metadata_address_are_refused(url: str) -> None:
    from detectflow.adapters.urls import UnsafeProviderUrlError

    async def check() -> None:
        await check_provider_url(url)

    with pytest.raises(UnsafeProviderUrlError, match="metadata"):
        asyncio.run(check())
