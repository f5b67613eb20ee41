"""What the DeepStack gateway tests share: a JPEG, an app with the gateway on, providers."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from detectflow.core.models import ProviderConfig
from detectflow.core.plugins import PluginRegistry
from detectflow.core.settings import Settings
from detectflow.server import create_app
from detectflow.store import Database
from detectflow.store.memory import MemoryBus, MemoryCache
from tests.server.support import TestClient

__all__ = ["gateway_client", "gateway_settings", "jpeg", "simulator_provider"]


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


@contextmanager
def gateway_client(
    settings: Settings, database: Database, registry: PluginRegistry, **headers: str
) -> Iterator[TestClient]:
    """A client of an app with the gateway on and no key of its own (as an NVR)."""
    app = create_app(
        settings, database=database, registry=registry, cache=MemoryCache(), bus=MemoryBus()
    )
    with TestClient(app, headers=headers) as client:
        yield client
