"""Inline send-frame and the dataflow record a frame the same way (one recorder).

The same frames go through both paths, each into its own store, against the
same real (simulated) HTTP provider; the event log, the plugin
notifications, the live view and the statistics must come out the same.
"""

from __future__ import annotations

import base64
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from detectflow import hookimpl
from detectflow.core.models import Detection, DetectionEvent, ProviderConfig
from detectflow.core.plugins import get_registry, reset_registry
from detectflow.core.settings import Settings
from detectflow.flows import FlowOptions, run_flow
from detectflow.samples import sample_frame
from detectflow.server import create_app
from detectflow.simulator import Simulator, run_in_thread
from detectflow.store import Database
from detectflow.store.live import LiveView
from detectflow.store.memory import MemoryBus, MemoryCache
from tests.server.support import API, TestClient

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
FRAMES = [(f"cam-{i % 2}", i, T0 + timedelta(seconds=i)) for i in range(12)]


class Listener:
    def __init__(self) -> None:
        self.heard: list[tuple[str, str]] = []

    @hookimpl
    def detectflow_on_detection(self, detection: Detection) -> None:
        self.heard.append(("detection", detection.id))

    @hookimpl
    def detectflow_on_event(self, event: DetectionEvent) -> None:
        self.heard.append((str(event.event_type), event.id))


def _record(path: str, tmp_path: Path, secret_key: str, detect_url: str) -> dict[str, Any]:
    reset_registry()
    settings = Settings(data_dir=tmp_path / path, secret_key=secret_key)
    database = Database(f"sqlite:///{tmp_path / path}.db", secret_key=secret_key)
    database.upgrade()
    database.create_provider(
        ProviderConfig(
            id="sim",
            provider_name="sim",
            provider_type="http_api",
            endpoint_url=detect_url,
            is_active=True,
            confidence_threshold=0.0,
        )
    )
    listener = Listener()
    registry = get_registry(Settings(disable_plugin_autoload=True))
    registry.register(listener, "listener", "tests", "0")
    cache, bus = MemoryCache(), MemoryBus()
    if path == "inline":
        app = create_app(settings, database=database, cache=cache, bus=bus, registry=registry)
        _, key = database.create_api_key("write", "tests")
        with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
            for camera, number, when in FRAMES:
                body = {
                    "camera_id": camera,
                    "frame_id": f"{camera}-{number}",
                    "frame_number": number,
                    "timestamp": when.isoformat(),
                    "frame_data": base64.b64encode(sample_frame(camera, number)).decode(),
                }
                response = client.post(f"{API}/send-frame", json=body)
                assert response.status_code == 200, response.text
    else:
        from detectflow.core.frames import make_frame

        for camera, number, when in FRAMES:
            database.enqueue(
                make_frame(
                    camera,
                    sample_frame(camera, number),
                    max_bytes=settings.max_frame_bytes,
                    frame_id=f"{camera}-{number}",
                    frame_number=number,
                    timestamp=when.isoformat(),
                )
            )
        run_flow(
            settings,
            FlowOptions(until_empty=True),
            database=database,
            live=LiveView(cache, bus),
            registry=registry,
        )
    events, _ = database.list_events(limit=1000)
    live = LiveView(cache, bus)
    stats = database.detection_statistics()
    windows, _ = database.list_window_stats(limit=1000)
    outcome = {
        "events": sorted((e.id, str(e.event_type), e.camera_id, e.detection_id) for e in events),
        "plugins": sorted(listener.heard),
        "live": {
            camera: sorted(d["id"] for d in snapshot.detections) if snapshot else []
            for camera in ("cam-0", "cam-1")
            for snapshot in [live.live(camera)]
        },
        # when a detection was stored differs between the runs; everything else may not
        # (and float sums may differ in their last bit with the order of addition)
        "statistics": [round(v, 9) if isinstance(v, float) else v for v in astuple(stats)[:-1]],
        "windows": sorted((k, w.key, w.count, w.max_confidence) for k, w in windows),
        "queue": database.queue_stats(),
    }
    database.dispose()
    return outcome


def test_inline_and_flow_results_are_recorded_alike(tmp_path: Path, secret_key: str) -> None:
    with run_in_thread(Simulator()) as simulator:
        url = simulator.detect_url()
        inline = _record("inline", tmp_path, secret_key, url)
        flow = _record("flow", tmp_path, secret_key, url)
    assert inline["plugins"], "the provider found nothing: the comparison would prove nothing"
    assert inline["statistics"][0] > 0
    for part in ("events", "plugins", "live", "statistics", "windows"):
        assert inline[part] == flow[part], part
