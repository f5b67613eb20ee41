"""Client libraries nobody here wrote detect through detectflow's DeepStack gateway.

``deepstack-python`` (behind Home Assistant's DeepStack integrations),
``deepstack-sdk`` (DeepStack's own SDK) and ``codeproject-ai-api`` run
from .venv-nvr (``scripts/setup`` makes it) as subprocesses against the
gateway under real uvicorn, a real simulated provider behind it; each must
get back the provider's boxes in pixels of the image it uploaded. Without
.venv-nvr these tests are skipped, loudly; under ``CI=true`` they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from detectflow.core.plugins import PluginRegistry, get_registry
from detectflow.core.settings import Settings
from detectflow.simulator import Simulator, simulate_detections
from detectflow.store import Database
from tests.server.deepstack_support import (
    gateway_app,
    gateway_settings,
    jpeg,
    live_over_http,
    simulator_provider,
)
from tests.server.support import Uvicorn

ROOT = Path(__file__).resolve().parents[2]
NVR_PYTHON = ROOT / ".venv-nvr" / "bin" / "python"
CLIENTS_SCRIPT = Path(__file__).with_name("nvr_clients.py")


@pytest.fixture
def registry() -> PluginRegistry:
    return get_registry(Settings(disable_plugin_autoload=True))


def _require_clients() -> None:
    if NVR_PYTHON.exists():
        return
    message = f"the DeepStack clients are not installed at {NVR_PYTHON} (scripts/setup makes it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _run_client(client: str, port: int, image_path: Path, api_key: str) -> list[list[Any]]:
    done = subprocess.run(
        [str(NVR_PYTHON), str(CLIENTS_SCRIPT), client, str(port), str(image_path), api_key],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=image_path.parent,  # not the repo: the clients' own "tests" must not meet ours
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found: list[list[Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
@pytest.mark.parametrize("client", ["deepstack-python", "deepstack-sdk", "codeproject-ai-api"])
def test_a_third_party_client_gets_the_providers_boxes_in_its_pixels(
    client: str,
    tmp_path: Path,
    database: Database,
    registry: PluginRegistry,
    simulator: Simulator,
    free_port: int,
) -> None:
    _require_clients()
    simulator_provider(database, simulator.detect_url("deepstack"))
    # codeproject-ai-api sends no key at all: reads-open, as on a LAN without keys.
    _, key = database.create_api_key("write", client)
    api_key = "" if client == "codeproject-ai-api" else key
    settings = gateway_settings(tmp_path)
    if api_key:
        settings = settings.with_overrides(auth_mode="required")
    image = jpeg(800, 600, seed=sum(map(ord, client)))
    image_path = tmp_path / "upload.jpg"
    image_path.write_bytes(image)
    with Uvicorn(gateway_app(settings, database, registry), free_port):
        found = _run_client(client, free_port, image_path, api_key)
        live = live_over_http(free_port, "deepstack", key)
    expected = sorted(
        [d.label, d.x_min, d.y_min, d.x_max, d.y_max] for d in simulate_detections(image, 800, 600)
    )
    assert sorted(found) == expected
    assert sorted(d["label"] for d in live) == sorted(row[0] for row in expected)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_frigates_exact_request_over_real_http(
    tmp_path: Path,
    database: Database,
    registry: PluginRegistry,
    simulator: Simulator,
    free_port: int,
) -> None:
    """Frigate's deepstack detector: ``requests.post(api_url, data={"api_key": ...},
    files={"image": jpeg_bytes})`` (the field name doubles as the file name, no
    content type), reading label, confidence and the four corners."""
    simulator_provider(database, simulator.detect_url("deepstack"))
    _, key = database.create_api_key("write", "frigate")
    settings = gateway_settings(tmp_path, auth_mode="required")
    image = jpeg(320, 320, seed=42)  # Frigate sends its model-sized region
    url = f"http://127.0.0.1:{free_port}/v1/vision/detection?camera=front_door"
    with Uvicorn(gateway_app(settings, database, registry), free_port):
        response = httpx.post(url, data={"api_key": key}, files={"image": image}, timeout=10)
        assert response.status_code == 200, response.text
        live = live_over_http(free_port, "front_door", key)
    found = sorted(
        (p["label"], p["x_min"], p["y_min"], p["x_max"], p["y_max"])
        for p in response.json()["predictions"]
        if 0.0 <= p["confidence"] <= 1.0
    )
    expected = sorted(
        (d.label, d.x_min, d.y_min, d.x_max, d.y_max) for d in simulate_detections(image, 320, 320)
    )
    assert found == expected
    assert len(live) == len(expected)
