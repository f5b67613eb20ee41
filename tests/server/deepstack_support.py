"""What the DeepStack gateway tests share: a JPEG, an app with the gateway on, providers."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from starlette.applications import Starlette

from detectflow.core.models import ProviderConfig
from detectflow.core.plugins import PluginRegistry
from detectflow.core.settings import Settings
from detectflow.server import create_app
from detectflow.store import Database
from detectflow.store.memory import MemoryBus, MemoryCache
from tests.server.support import TestClient

__all__ = [
    "gateway_app",
    "gateway_client",
    "gateway_settings",
    "jpeg",
    "live_over_http",
    "simulator_provider",
]


def jpeg(width: int = 640, height: int = 480, seed: int = 0) -> bytes:
    """A real JPEG (what Frigate and Blue Iris post); ``seed`` changes its bytes."""
    image = Image.new("RGB", (width, height), ((seed * 37) % 256, (seed * 91) % 256, 80))
    image.putpixel((seed % width, 0), (255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()


def gateway_settings(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        max_frame_bytes=4 * 1024 * 1024,
        retry_base_seconds=0.001,
        retry_max_seconds=0.01,
        disable_plugin_autoload=True,
        deepstack_api=True,
    ).with_overrides(**changes)


def simulator_provider(
    database: Database, url: str, name: str = "sim", **fields: Any
) -> ProviderConfig:
    """An ``http_api`` config for the simulator at ``url`` that keeps every box."""
    dialect = "deepstack" if url.endswith("/v1/vision/detection") else "detectflow"
    values: dict[str, Any] = {
        "is_active": True,
        "confidence_threshold": 0.0,
        "max_retries": 0,
        "timeout_seconds": 5.0,
        **fields,
        "options": {"dialect": dialect, **fields.get("options", {})},
    }
    config = ProviderConfig(
        id=f"id-{name}", provider_name=name, provider_type="http_api", endpoint_url=url, **values
    )
    return database.create_provider(config)


def gateway_app(settings: Settings, database: Database, registry: PluginRegistry) -> Starlette:
    """The app on ``database`` with the in-process cache and bus."""
    return create_app(
        settings, database=database, registry=registry, cache=MemoryCache(), bus=MemoryBus()
    )


@contextmanager
def gateway_client(
    settings: Settings, database: Database, registry: PluginRegistry, **headers: str
) -> Iterator[TestClient]:
    """A client of an app with the gateway on and no key of its own (as an NVR)."""
    with TestClient(gateway_app(settings, database, registry), headers=headers) as client:
        yield client


def live_over_http(port: int, camera: str, key: str) -> list[dict[str, Any]]:
    """``/live`` for ``camera`` from a server on ``port``, every confidence."""
    response = httpx.get(
        f"http://127.0.0.1:{port}/api/v1/detections/live",
        params={"camera_id": camera, "min_confidence": 0},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    detections: list[dict[str, Any]] = response.json()["data"]["detections"]
    return detections
