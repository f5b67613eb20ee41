"""The app's lifespan, health, and one run on a real uvicorn with a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import websockets

from detectflow.core.plugins import PluginRegistry
from detectflow.core.settings import Settings
from detectflow.server import create_app
from detectflow.store import Database
from tests.server.support import (
    API,
    ScriptedAdapter,
    TestClient,
    Uvicorn,
    add_provider,
    frame_b64,
    frame_body,
)


def test_lifespan_opens_and_migrates_the_configured_database(
    tmp_path: Path, database_url: str, secret_key: str
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url, secret_key=secret_key)
    with TestClient(create_app(settings)) as client:
        health = client.get("/api/v1/health")
        key = _new_key(database_url, secret_key)  # the lifespan has created the tables
        queued = client.post(
            f"{API}/send-frame?mode=queue",
            json=frame_body(),
            headers={"Authorization": f"Bearer {key}"},
        )
    assert health.status_code == 200
    data = health.json()["data"]
    assert data["parts"]["database"] == {"status": "ok", "message": None}
    assert data["provider_configured"] is False
    assert queued.status_code == 202

    # The rows are really in the configured database.
    database = Database(database_url, secret_key=secret_key)
    try:
        assert database.queue_stats()["pending"] == 1
    finally:
        database.dispose()


def _new_key(url: str, secret_key: str, scope: str = "admin") -> str:
    database = Database(url, secret_key=secret_key)
    try:
        return database.create_api_key(scope, "test")[1]
    finally:
        database.dispose()


def test_shutdown_closes_the_provider_adapters(client_factory: Any) -> None:
    with client_factory() as client:
        add_provider(client)
        assert client.post(f"{API}/send-frame", json=frame_body()).json()["data"]["success"]
        serving = ScriptedAdapter.instances[-1]
        assert not serving.closed
    assert serving.closed


# -- real uvicorn -------------------------------------------------------------------


def test_real_uvicorn_pushes_a_detection_to_a_websockets_client(
    tmp_path: Path, free_port: int, simulator: Any, registry: PluginRegistry, secret_key: str
) -> None:
    settings = Settings(data_dir=tmp_path, secret_key=secret_key)
    app = create_app(settings, registry=registry)
    base = f"127.0.0.1:{free_port}"

    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        key = _new_key(settings.sql_url, secret_key)  # uvicorn has created the tables
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=f"http://{base}", headers=headers) as http:
            created = await http.post(
                f"{API}/providers",
                json={
                    "provider_name": "simulator",
                    "provider_type": "http_api",
                    "endpoint_url": simulator.detect_url("detectflow"),
                    "confidence_threshold": 0.3,
                    "is_active": True,
                },
            )
            assert created.status_code == 201, created.text
            async with websockets.connect(f"ws://{base}{API}/ws/e2e") as ws:
                await ws.send(json.dumps({"type": "subscribe", "camera_id": "cam-e2e"}))
                reply = json.loads(await ws.recv())
                assert reply["type"] == "subscription"
                response = await http.post(
                    f"{API}/send-frame",
                    json={"camera_id": "cam-e2e", "frame_data": frame_b64("cam-e2e", 3)},
                )
                sent: dict[str, Any] = response.json()["data"]
                received = []
                for _ in range(sent["detection_count"]):
                    received.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
        return sent, received

    with Uvicorn(app, free_port):
        sent, received = asyncio.run(scenario())

    assert sent["success"] is True and sent["detection_count"] >= 1
    assert [m["type"] for m in received] == ["detection"] * sent["detection_count"]
    assert [m["detection_id"] for m in received] == [d["id"] for d in sent["detections"]]
    assert {m["camera_id"] for m in received} == {"cam-e2e"}


def test_the_server_process_never_loads_the_dataflow(tmp_path: Path) -> None:
    """A server serves REST and WebSocket from the store alone: neither Bytewax nor
    any flow module is imported by building the app and running its lifespan
    (a fresh interpreter, since this test process has imported both)."""
    script = """
import sys
from starlette.testclient import TestClient
from detectflow.core.settings import Settings
from pathlib import Path
from detectflow.server.app import create_app

with TestClient(create_app(Settings(data_dir=Path(sys.argv[1])))) as client:
    assert client.get("/api/v1/health").status_code == 200
    assert client.get("/api/v1/detections/live").status_code == 200
flows = ("bytewax", "detectflow.flows")
loaded = sorted(m for m in sys.modules if m.startswith(flows))
print(loaded)
"""
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
