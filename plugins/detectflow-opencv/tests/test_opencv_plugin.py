"""detectflow_opencv.plugin: found by entry point, run through detectflow's pipeline."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from detectflow import (
    Frame,
    PermanentProviderError,
    ProviderConfig,
    Settings,
    TransientProviderError,
)
from detectflow.core.frames import make_frame
from detectflow.core.pipeline import run_frame
from detectflow.core.plugins import get_registry, reset_registry

import detectflow_opencv
from detectflow_opencv.plugin import OpenCVAdapter

pytestmark = pytest.mark.anyio

MAX_BYTES = 10 * 1024 * 1024


def config(**overrides: object) -> ProviderConfig:
    fields: dict[str, object] = {
        "id": "opencv-1",
        "provider_name": "OpenCV",
        "provider_type": "opencv",
        "endpoint_url": "local",
        "max_retries": 0,
    }
    fields.update(overrides)
    return ProviderConfig(**fields)  # type: ignore[arg-type]


def frame(image: bytes) -> Frame:
    return make_frame("cam-1", image, max_bytes=MAX_BYTES, frame_number=1)


def test_the_entry_point_registers_provider_type_opencv_from_its_package():
    reset_registry()
    registry = get_registry(Settings())
    [info] = [p for p in registry.plugins() if p.name == "opencv"]
    assert info.package == "detectflow-opencv"
    assert info.version == detectflow_opencv.__version__
    assert info.provider_types == ("opencv",)
    assert registry.provider_types()["opencv"] is OpenCVAdapter
    assert isinstance(registry.create_adapter(config()), OpenCVAdapter)
    assert not [f for f in registry.failures if f.name == "opencv"]


async def test_run_frame_yields_a_normalized_face_box(astronaut_png, is_astronaut_face):
    registry = get_registry(Settings())
    async with registry.create_adapter(config()) as adapter:
        result = await run_frame(frame(astronaut_png), adapter, registry=registry)
    assert result.ok, result.error
    [face] = [d for d in result.detections if d.detection_type == "face"]
    assert face.label == "face" and face.camera_id == "cam-1"
    box = face.bbox
    assert is_astronaut_face(box.x, box.y, box.width, box.height), box
    assert box.x >= 0.0 and box.x + box.width <= 1.0
    assert result.events[0].event_type == "detection_completed"


async def test_confidence_threshold_is_applied_by_the_adapter(astronaut_png):
    loose = {"min_neighbors": 1}
    async with OpenCVAdapter(config(confidence_threshold=0.0, options=loose)) as adapter:
        everything = await adapter.detect(frame(astronaut_png))
    async with OpenCVAdapter(config(confidence_threshold=0.5, options=loose)) as adapter:
        kept = await adapter.detect(frame(astronaut_png))
    assert any(d.confidence < 0.5 for d in everything)
    assert kept == [d for d in everything if d.confidence >= 0.5]
    assert kept


async def test_a_blank_frame_completes_with_no_detections(blank_png):
    async with OpenCVAdapter(config()) as adapter:
        result = await run_frame(frame(blank_png), adapter)
    assert result.ok and result.detections == ()


async def test_an_undecodable_frame_fails_permanently_on_the_first_attempt(garbage_png):
    async with OpenCVAdapter(config(max_retries=3)) as adapter:
        with pytest.raises(PermanentProviderError):
            await adapter.detect(frame(garbage_png))
        result = await run_frame(frame(garbage_png), adapter)
    assert not result.ok
    assert result.attempts == 1
    assert "permanent" in (result.error or "")


async def test_a_detection_past_timeout_seconds_is_a_transient_error(astronaut_png):
    # The astronaut takes ~0.2 s on this machine; 1 ms cannot be met.
    async with OpenCVAdapter(config(timeout_seconds=0.001)) as adapter:
        with pytest.raises(TransientProviderError, match=r"within 0\.001 s"):
            await adapter.detect(frame(astronaut_png))


async def test_detection_runs_off_the_event_loop(astronaut_bgr):
    ok, png = cv2.imencode(".png", cv2.resize(astronaut_bgr, (1024, 1024)))
    assert ok
    big = frame(bytes(np.asarray(png).tobytes()))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async with OpenCVAdapter(config(options={"max_side": 0})) as adapter:
        task = asyncio.create_task(ticker())
        start = time.perf_counter()
        await adapter.detect(big)
        elapsed = time.perf_counter() - start
        task.cancel()
    # A blocked loop would not tick at all while OpenCV works.
    assert elapsed > 0.1
    assert ticks >= max(3, elapsed / 0.01 * 0.2), (ticks, elapsed)


async def test_health_round_trips_the_probe_frame():
    async with OpenCVAdapter(config()) as adapter:
        probe = await adapter.health()
    assert probe.ok, probe.error
    assert probe.message.startswith("Connection successful")


async def test_a_closed_adapter_refuses_frames_and_closing_twice_is_fine(astronaut_png):
    adapter = OpenCVAdapter(config())
    await adapter.aclose()
    await adapter.aclose()
    with pytest.raises(PermanentProviderError, match="closed"):
        await adapter.detect(frame(astronaut_png))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"timeout_seconds": 0}, "timeout_seconds must be > 0"),
        ({"timeout_seconds": float("nan")}, "timeout_seconds must be > 0"),
        ({"options": {"max_workers": 0}}, "max_workers must be >= 1"),
        ({"options": {"dialect": "deepstack"}}, "unknown opencv option"),
    ],
)
def test_a_bad_config_is_refused_when_the_adapter_is_made(overrides, message):
    with pytest.raises(PermanentProviderError, match=message):
        OpenCVAdapter(config(**overrides))


def _python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, *args], env=environ, capture_output=True, text=True, check=False
    )


def test_loading_the_plugin_does_not_import_opencv():
    code = (
        "import sys\n"
        "from detectflow.core.plugins import get_registry\n"
        "assert 'opencv' in get_registry().provider_types()\n"
        "print('cv2' in sys.modules)\n"
    )
    done = _python("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_readme_command_adds_an_active_opencv_provider(tmp_path):
    env = {"DETECTFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'detectflow.db'}"}
    upgrade = _python("-m", "detectflow.cli", "db", "upgrade", env=env)
    assert upgrade.returncode == 0, upgrade.stderr
    args = ["provider", "add", "--type", "opencv", "--activate", "--option", "max_workers=3"]
    added = _python("-m", "detectflow.cli", *args, env=env)
    assert added.returncode == 0, added.stderr
    assert "[active]" in added.stdout
    shown = _python("-m", "detectflow.cli", "provider", "show", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    config = json.loads(shown.stdout)
    assert (config["provider_type"], config["endpoint_url"]) == ("opencv", "")
    assert config["options"] == {"max_workers": 3}


def test_max_workers_is_an_adapter_option_not_a_detector_option():
    config = ProviderConfig(
        id="p",
        provider_name="cv",
        provider_type="opencv",
        endpoint_url="local",
        options={"max_workers": 3, "min_neighbors": 2},
    )
    adapter = OpenCVAdapter(config)
    try:
        assert adapter._executor._max_workers == 3
        assert adapter.detector.settings.min_neighbors == 2
    finally:
        asyncio.run(adapter.aclose())
