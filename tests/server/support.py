"""Helpers shared by the server tests: a test client, frames, a scripted provider, real uvicorn."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar

import pytest
import uvicorn
from starlette.exceptions import StarletteDeprecationWarning

from detectflow.core.adapter import ProviderAdapter
from detectflow.core.errors import PermanentProviderError
from detectflow.core.hookspecs import hookimpl
from detectflow.core.models import Frame, RawDetection
from detectflow.core.settings import Settings
from detectflow.samples import sample_frame
from detectflow.server import create_app
from detectflow.store import Database
from detectflow.store.memory import MemoryBus, MemoryCache

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient; plain httpx works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

__all__ = [
    "API",
    "ScriptedAdapter",
    "ScriptedPlugin",
    "TestClient",
    "Uvicorn",
    "add_provider",
    "assert_error",
    "frame_b64",
    "frame_body",
    "health_client",
]

API = "/api/v1/detections"

sqlite_only = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
"""For tests of input handling that never reach SQL: one database is enough."""


def frame_b64(camera_id: str = "cam-1", number: int = 0) -> str:
    return base64.b64encode(sample_frame(camera_id, number)).decode()


def frame_body(camera_id: str = "cam-1", number: int = 0, **extra: Any) -> dict[str, Any]:
    return {"camera_id": camera_id, "frame_data": frame_b64(camera_id, number), **extra}


def health_client(database: Database, data_dir: Path) -> TestClient:
    """A client of an app on ``database`` with the in-process cache and bus, for tests
    that take the database away (use it as a context manager)."""
    app = create_app(
        Settings(data_dir=data_dir), database=database, cache=MemoryCache(), bus=MemoryBus()
    )
    return TestClient(app)


def add_provider(client: TestClient, **fields: Any) -> dict[str, Any]:
    body = {
        "provider_name": "test provider",
        "provider_type": "scripted",
        "endpoint_url": "scripted://local",
        "is_active": True,
        "max_retries": 0,
        **fields,
    }
    response = client.post(f"{API}/providers", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is the error envelope with this status (and code)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) <= {"code", "message", "details"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.text
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


class ScriptedAdapter(ProviderAdapter):
    """A provider whose answers the test picks through ``options``:

    ``detections``: list of [label, confidence, person_id|null] (boxes fixed);
    ``fail``: a message to refuse every frame with (permanent);
    ``delay``: seconds to wait before answering.
    """

    provider_type = "scripted"
    instances: ClassVar[list[ScriptedAdapter]] = []

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.closed = False
        self.calls = 0
        ScriptedAdapter.instances.append(self)

    async def detect(self, frame: Frame) -> list[RawDetection]:
        self.calls += 1
        options = self.config.options
        delay = float(options.get("delay", 0))
        if delay:
            await asyncio.sleep(delay)
        if options.get("fail"):
            raise PermanentProviderError(str(options["fail"]))
        rows = options.get("detections", [["person", 0.9, None]])
        return [
            RawDetection(
                label=label,
                confidence=confidence,
                box=(0.1 + 0.05 * i, 0.1, 0.5, 0.6),
                person_id=person_id,
            )
            for i, (label, confidence, person_id) in enumerate(rows)
        ]

    async def aclose(self) -> None:
        self.closed = True


class ScriptedPlugin:
    @hookimpl
    def detectflow_provider_types(self) -> list[type[ProviderAdapter]]:
        return [ScriptedAdapter]


class Uvicorn:
    """The app under real uvicorn on loopback, in a thread, for what TestClient cannot show
    (real sockets, real WebSocket close codes, a real browser)."""

    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Uvicorn:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive()
