"""API-key auth (detectflow/server/auth.py): REST scopes, auth modes, the WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from starlette.websockets import WebSocketDisconnect

from detectflow.core.plugins import PluginRegistry
from detectflow.core.settings import Settings, SettingsError
from detectflow.server import auth, create_app
from detectflow.server.app import ENDPOINTS, openapi_document
from detectflow.store import Database
from detectflow.store.keys import Scope
from detectflow.store.memory import MemoryBus, MemoryCache
from tests.server.support import API, TestClient, Uvicorn, assert_error, frame_body, sqlite_only

WS = f"{API}/ws"
Keys = dict[str, str]
MakeClient = Callable[..., TestClient]


@pytest.fixture
def keys(database: Database) -> Keys:
    return {s: database.create_api_key(s, f"{s} key")[1] for s in ("read", "write", "admin")}


@pytest.fixture
def make_client(
    settings: Settings,
    database: Database,
    registry: PluginRegistry,
    cache: MemoryCache,
    bus: MemoryBus,
) -> MakeClient:
    """A client that sends no key unless a test says so."""

    def make(mode: str = "reads-open") -> TestClient:
        app = create_app(
            settings.with_overrides(auth_mode=mode),
            database=database,
            registry=registry,
            cache=cache,
            bus=bus,
        )
        return TestClient(app)

    return make


@pytest.fixture
def client(make_client: MakeClient) -> Iterator[TestClient]:
    with make_client() as test_client:
        yield test_client


@pytest.fixture
def strict(make_client: MakeClient) -> Iterator[TestClient]:
    with make_client("required") as test_client:
        yield test_client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- which scope each route needs ----------------------------------------------------


def _declared() -> dict[tuple[str, str], Scope | None]:
    return {
        (op.method, endpoint.path): op.scope for endpoint in ENDPOINTS for op in endpoint.operations
    }


def test_every_operation_but_the_open_ones_needs_a_key_and_writes_need_more_than_read() -> None:
    declared = _declared()
    open_ops = {key for key, scope in declared.items() if scope is None}
    assert open_ops == {
        ("GET", "/api/v1/health"),
        ("GET", "/openapi.json"),
        ("GET", "/"),
        ("GET", "/static/{path}"),
    }
    for (method, path), scope in declared.items():
        if method != "GET":
            assert scope in (Scope.WRITE, Scope.ADMIN), (method, path)
        if "/provider" in path or path.endswith("/test-provider"):
            assert scope is Scope.ADMIN, (method, path)
    assert declared[("GET", "/metrics")] is Scope.READ


def test_the_document_states_each_operations_declared_scope() -> None:
    document = openapi_document(reads_open=False)
    for (method, path), scope in _declared().items():
        operation = document["paths"][path][method.lower()]
        assert operation.get("x-required-scope") == (scope.value if scope else None)
        assert operation["security"] == ([{}] if scope is None else [{"apiKey": []}])


@sqlite_only
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{API}/some-future-route"),
        ("DELETE", "/api/v2/anything"),
        ("POST", "/"),
        ("POST", f"{API}/live"),
    ],
)
def test_a_path_or_method_nobody_declared_runs_nothing(
    client: TestClient, method: str, path: str
) -> None:
    response = client.request(method, path)
    assert response.status_code in (404, 405), response.text


# -- REST ----------------------------------------------------------------------------


def _call(client: TestClient, what: str, headers: dict[str, str]) -> Any:
    if what == "read":
        return client.get(f"{API}/events", headers=headers)
    if what == "write":
        return client.post(f"{API}/send-frame?mode=queue", json=frame_body(), headers=headers)
    if what == "admin-read":
        return client.get(f"{API}/providers", headers=headers)
    if what == "admin-test":
        return client.post(f"{API}/test-provider", json={}, headers=headers)
    assert what == "admin-put"
    return client.put(f"{API}/provider/config", json={"max_retries": 1}, headers=headers)


# What each endpoint answers once a request gets past auth (no provider configured).
_PAST_AUTH = {
    "read": 200,
    "write": 202,
    "admin-read": 200,
    "admin-test": 409,
    "admin-put": 404,
}
_NEEDS = {"read": "read", "write": "write", "admin-read": "admin"}
_NEEDS |= {"admin-test": "admin", "admin-put": "admin"}


@pytest.mark.parametrize("held", ["read", "write", "admin"])
def test_each_scope_is_allowed_or_forbidden(client: TestClient, keys: Keys, held: str) -> None:
    for what, status in _PAST_AUTH.items():
        response = _call(client, what, bearer(keys[held]))
        if Scope(held).allows(Scope(_NEEDS[what])):
            assert response.status_code == status, (what, response.text)
        else:
            error = assert_error(response, 403, "forbidden")
            assert f"needs {_NEEDS[what]}" in error["message"]
            assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_writes_and_provider_config_need_a_key_even_with_reads_open(client: TestClient) -> None:
    assert _call(client, "read", {}).status_code == 200
    for what in ("write", "admin-read", "admin-test", "admin-put"):
        response = _call(client, what, {})
        error = assert_error(response, 401, "unauthorized")
        assert "Authorization: Bearer" in error["message"]
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert client.get(f"{API}/queue-stats").json()["data"]["total"] == 0  # nothing was queued


def test_a_revoked_key_is_refused_within_seconds(
    client: TestClient, database: Database, keys: Keys
) -> None:
    """Verified keys are remembered for two seconds (server.state.VerifiedKeys), so a
    revocation from any process takes effect within that, never later."""
    assert _call(client, "write", bearer(keys["admin"])).status_code == 202
    key_id = keys["admin"].split("_")[1]
    assert database.revoke_api_key(key_id) is not None
    revoked_at = time.monotonic()
    while (response := _call(client, "admin-read", bearer(keys["admin"]))).status_code != 401:
        assert time.monotonic() - revoked_at < 2.5, "a revoked key still works after 2.5 s"
        time.sleep(0.1)
    error = assert_error(response, 401, "unauthorized")
    assert "invalid or revoked" in error["message"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearerdfk_x",
        "Bearer two words",
        "Token abc",
    ],
)
def test_a_malformed_authorization_header_is_401(client: TestClient, header: str) -> None:
    response = client.get(f"{API}/live", headers={"Authorization": header})
    error = assert_error(response, 401, "unauthorized")
    assert "malformed Authorization header" in error["message"]


def test_an_invalid_key_is_401_even_where_reads_are_open(client: TestClient, keys: Keys) -> None:
    for token in ("nope", keys["read"][:-1] + "x", keys["read"] + "0", "dfk_" + "a" * 500):
        response = client.get(f"{API}/live", headers=bearer(token))
        assert_error(response, 401, "unauthorized")


def test_the_scheme_is_case_insensitive(client: TestClient, keys: Keys) -> None:
    response = client.get(f"{API}/providers", headers={"Authorization": f"bearer {keys['admin']}"})
    assert response.status_code == 200


def test_required_mode_needs_a_key_to_read(strict: TestClient, keys: Keys) -> None:
    for path in ("/live", "/events", "/queue-stats", "/summary", "/recent"):
        error = assert_error(strict.get(f"{API}{path}"), 401, "unauthorized")
        assert "read scope" in error["message"]
        assert strict.get(f"{API}{path}", headers=bearer(keys["read"])).status_code == 200
    assert _call(strict, "write", bearer(keys["read"])).status_code == 403


@pytest.mark.parametrize("mode", ["reads-open", "required"])
def test_health_stays_open_even_with_a_bad_header(make_client: MakeClient, mode: str) -> None:
    with make_client(mode) as test_client:
        assert test_client.get("/api/v1/health").status_code == 200
        response = test_client.get("/api/v1/health", headers={"Authorization": "Basic x"})
        assert response.status_code == 200


def test_auth_mode_is_read_from_the_environment_and_checked() -> None:
    assert Settings.from_env({}).auth_mode == "reads-open"
    assert Settings.from_env({"DETECTFLOW_AUTH_MODE": "required"}).auth_mode == "required"
    with pytest.raises(SettingsError, match="DETECTFLOW_AUTH_MODE: must be one of"):
        Settings.from_env({"DETECTFLOW_AUTH_MODE": "off"})


# -- WebSocket -----------------------------------------------------------------------


def _refused(ws: Any) -> int:
    """Read the error message and the close; return the close code."""
    message = ws.receive_json()
    assert message["type"] == "error" and message["code"] == "unauthorized", message
    assert message["message"]
    with pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    return closed.value.code


def _subscribed(ws: Any) -> None:
    ws.send_json({"type": "subscribe", "camera_id": "cam-1"})
    assert ws.receive_json()["type"] == "subscription"


def test_ws_reads_open_needs_no_key(client: TestClient) -> None:
    with client.websocket_connect(f"{WS}/anon") as ws:
        _subscribed(ws)


def test_ws_required_takes_a_token_in_the_query(strict: TestClient, keys: Keys) -> None:
    with strict.websocket_connect(f"{WS}/q?token={keys['read']}") as ws:
        _subscribed(ws)


def test_ws_required_takes_an_authorization_header(strict: TestClient, keys: Keys) -> None:
    with strict.websocket_connect(f"{WS}/h", headers=bearer(keys["write"])) as ws:
        _subscribed(ws)


def test_ws_required_takes_a_first_auth_message(strict: TestClient, keys: Keys) -> None:
    with strict.websocket_connect(f"{WS}/m") as ws:
        ws.send_json({"type": "auth", "token": keys["admin"]})
        reply = ws.receive_json()
        assert reply == {
            "type": "authenticated",
            "key_id": keys["admin"].split("_")[1],
            "scope": "admin",
        }
        _subscribed(ws)


@pytest.mark.parametrize(
    "first",
    [
        {"type": "subscribe", "camera_id": "cam-1"},
        {"type": "auth"},
        {"type": "auth", "token": 42},
        "not json",
    ],
)
def test_ws_required_without_a_key_is_closed_4401(strict: TestClient, first: Any) -> None:
    with strict.websocket_connect(f"{WS}/nokey") as ws:
        if isinstance(first, str):
            ws.send_text(first)
        else:
            ws.send_json(first)
        assert _refused(ws) == 4401


@pytest.mark.parametrize("mode", ["reads-open", "required"])
def test_ws_a_bad_or_revoked_token_is_closed_4401(
    make_client: MakeClient, database: Database, keys: Keys, mode: str
) -> None:
    database.revoke_api_key(keys["write"].split("_")[1])
    with make_client(mode) as test_client:
        for url in (f"{WS}/bad?token=nope", f"{WS}/revoked?token={keys['write']}"):
            with test_client.websocket_connect(url) as ws:
                assert _refused(ws) == 4401
        with test_client.websocket_connect(f"{WS}/hdr", headers={"Authorization": "Basic x"}) as ws:
            assert _refused(ws) == 4401
    if mode == "required":
        with make_client(mode) as test_client, test_client.websocket_connect(f"{WS}/m") as ws:
            ws.send_json({"type": "auth", "token": keys["write"]})
            assert _refused(ws) == 4401


def test_ws_required_closes_a_silent_client(
    strict: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "AUTH_TIMEOUT_SECONDS", 0.2)
    started = time.monotonic()
    with strict.websocket_connect(f"{WS}/silent") as ws:
        message = ws.receive_json()
        assert message["code"] == "unauthorized" and "no auth message within" in message["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4401
    assert time.monotonic() - started < 5


def test_ws_an_auth_message_on_an_open_socket_is_answered(client: TestClient, keys: Keys) -> None:
    with client.websocket_connect(f"{WS}/later") as ws:
        _subscribed(ws)
        ws.send_json({"type": "auth", "token": keys["read"]})
        assert ws.receive_json()["type"] == "authenticated"
        ws.send_json({"type": "auth", "token": "nope"})
        error = ws.receive_json()
        assert (error["type"], error["code"]) == ("error", "unauthorized")
        ws.send_json({"type": "ping"})  # reads are open: the socket stays
        assert ws.receive_json()["type"] == "pong"


# -- a real server: the close code reaches a real client -----------------------------


def test_real_uvicorn_closes_an_unauthenticated_websocket_with_4401(
    tmp_path: Path, free_port: int, secret_key: str
) -> None:
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    database = Database(url, secret_key=secret_key)
    database.upgrade()
    _, key = database.create_api_key("read", "e2e")
    settings = Settings(
        data_dir=tmp_path, auth_mode="required", secret_key=secret_key, disable_plugin_autoload=True
    )
    base = f"ws://127.0.0.1:{free_port}{WS}"

    async def scenario() -> tuple[dict[str, Any], int | None, str]:
        async with websockets.connect(f"{base}/anon") as ws:
            await ws.send(json.dumps({"type": "ping"}))
            refused = json.loads(await asyncio.wait_for(ws.recv(), 5))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            code = ws.close_code
        async with websockets.connect(f"{base}/ok?token={key}") as ws:
            await ws.send(json.dumps({"type": "ping"}))
            pong = json.loads(await asyncio.wait_for(ws.recv(), 5))["type"]
        return refused, code, pong

    try:
        with Uvicorn(create_app(settings, database=database), free_port):
            refused, code, pong = asyncio.run(scenario())
    finally:
        database.dispose()
    assert refused["code"] == "unauthorized"
    assert code == 4401
    assert pong == "pong"
