"""The video sources through run_flow: files, an MJPEG camera, the cameras source."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from detectflow import Settings, hookimpl
from detectflow.core.cameras import Camera
from detectflow.core.models import DetectionEvent, EventType, Severity
from detectflow.core.plugins import PluginRegistry
from detectflow.flows import FlowOptions, run_flow
from detectflow.flows.observe import FlowCollector
from detectflow.flows.source_common import SourceURLError
from detectflow.flows.source_video import cameras_source_factory, parse_video_url, table_cameras
from detectflow.store import Database
from detectflow.video.clips import write_clip
from detectflow.video.fleet import owner
from tests.flows.conftest import activate_counted, running_flow, wait_until
from tests.video.mjpeg_camera import MjpegCamera, mjpeg_camera
from tests.video.rtsp import rtsp_camera


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of H.264 at 25 fps: 10 samples at 5 fps."""
    return write_clip(tmp_path_factory.mktemp("video") / "door.mp4", seconds=2.0)


@pytest.fixture
def mjpeg() -> Iterator[MjpegCamera]:
    with mjpeg_camera() as camera:
        yield camera


class CameraList:
    """An in-memory stand-in for the cameras table (list_enabled, set_last_error)."""

    def __init__(self, *cameras: Camera) -> None:
        self._lock = threading.Lock()
        self.cameras = {c.id: c for c in cameras}
        self.last_error: dict[str, str | None] = {}

    def put(self, camera: Camera) -> None:
        with self._lock:
            self.cameras[camera.id] = camera

    def list_enabled(self) -> Sequence[Camera]:
        with self._lock:
            return [c for c in self.cameras.values() if c.enabled]

    def set_last_error(self, camera_id: str, reason: str | None) -> None:
        self.last_error[camera_id] = reason


class TableCameras:
    """The ``cameras`` scheme on an in-memory list, refreshed every 0.2 s."""

    def __init__(self, cameras: CameraList) -> None:
        self.cameras = cameras

    @hookimpl
    def detectflow_frame_sources(self) -> dict[str, Any]:
        return {
            "cameras": partial(
                cameras_source_factory,
                load_cameras=self.cameras.list_enabled,
                report_error=self.cameras.set_last_error,
                refresh_seconds=0.2,
            )
        }


def stream_grows(camera: MjpegCamera) -> bool:
    sent = camera.sent
    time.sleep(0.3)
    return camera.sent > sent


def with_table(registry: PluginRegistry, cameras: CameraList) -> PluginRegistry:
    registry.register(TableCameras(cameras), "test-cameras", "tests", "0")
    return registry


def run(settings: Settings, db: Database, registry: PluginRegistry, url: str, **kw: Any) -> Any:
    return run_flow(settings, FlowOptions(source_url=url, **kw), database=db, registry=registry)


def test_every_video_scheme_has_a_source(registry: PluginRegistry) -> None:
    assert {"rtsp", "rtsps", "http", "https", "cameras", "file"} <= set(registry.frame_sources())


def test_a_video_file_is_detected_sample_by_sample_and_the_run_ends(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry, clip: Path
) -> None:
    log = activate_counted(sqlite_db)

    metrics = run(
        settings, sqlite_db, registry, f"file://{clip}?realtime=0", camera_id="front-door"
    )

    assert (metrics.snapshot().completed, metrics.snapshot().failed) == (10, 0)
    assert set(log.calls.values()) == {1}
    detections, total = sqlite_db.list_detections(camera_id="front-door", limit=100)
    assert total == 20  # the scripted provider finds a person and a car in each
    numbers = sorted({d.frame_number for d in detections if d.frame_number is not None})
    assert numbers == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    stamps = sorted({(d.frame_number, d.frame_timestamp) for d in detections})
    times = [t for _, t in stamps]
    assert None not in times and times == sorted(times)  # type: ignore[type-var]
    counts = metrics.readers()["front-door"]
    assert (counts.decoded, counts.sampled, counts.skipped) == (50, 10, 40)
    series = {
        (s.name, s.labels.get("camera"), s.labels.get("stage")): s.value
        for family in FlowCollector(metrics).collect()
        for s in family.samples
    }
    assert series[("detectflow_video_frames_total", "front-door", "skipped")] == 40
    assert series[("detectflow_video_frames_total", "front-door", "sampled")] == 10


def test_the_camera_id_defaults_to_the_files_name(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry, clip: Path
) -> None:
    activate_counted(sqlite_db)
    run(settings, sqlite_db, registry, f"file://{clip}?realtime=0&fps=1")
    _, total = sqlite_db.list_detections(camera_id="door", limit=1)
    assert total == 4  # 2 s at 1 fps: frames 0 and 25, two detections each


def test_an_mjpeg_camera_feeds_the_flow_until_stopped(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry, mjpeg: MjpegCamera
) -> None:
    activate_counted(sqlite_db)
    with running_flow(
        settings, sqlite_db, registry, f"{mjpeg.url}#fps=10", camera_id="gate"
    ) as flow:
        wait_until(lambda: flow.metrics.snapshot().completed >= 10)
    _, total = sqlite_db.list_detections(camera_id="gate", limit=1)
    assert total >= 20


class HeardEvents:
    def __init__(self) -> None:
        self.events: list[DetectionEvent] = []

    @hookimpl
    def detectflow_on_event(self, event: DetectionEvent) -> None:
        self.events.append(event)


def test_a_camera_going_offline_and_back_is_in_the_event_log_and_told_to_plugins(
    settings: Settings, db: Database, registry: PluginRegistry, mjpeg: MjpegCamera
) -> None:
    activate_counted(db)
    heard = HeardEvents()
    registry.register(heard, "heard-events", "tests", "0")
    table = CameraList(Camera(id="yard", url=mjpeg.url, options={"stall_seconds": 1}))
    with running_flow(settings, db, with_table(registry, table), "cameras") as flow:
        wait_until(lambda: flow.metrics.snapshot().completed >= 2)
        mjpeg.stall()
        wait_until(lambda: table.last_error.get("yard") is not None)
        mjpeg.stall(False)
        wait_until(lambda: db.list_events(event_type=EventType.CAMERA_ONLINE)[1] == 1)

    told = [e.event_type for e in heard.events if e.camera_id == "yard"]
    assert EventType.CAMERA_OFFLINE in told and EventType.CAMERA_ONLINE in told
    offline, count = db.list_events(event_type=EventType.CAMERA_OFFLINE)
    assert count == 1
    assert (offline[0].camera_id, offline[0].severity) == ("yard", Severity.WARNING)
    assert "stalled" in offline[0].message
    assert table.last_error["yard"] is None  # cleared once frames flow again


def test_cameras_added_changed_and_disabled_while_running_are_followed(
    settings: Settings,
    sqlite_db: Database,
    registry: PluginRegistry,
    mjpeg: MjpegCamera,
    clip: Path,
) -> None:
    activate_counted(sqlite_db)
    table = CameraList()

    def stored(camera_id: str) -> int:
        return sqlite_db.list_detections(camera_id=camera_id, limit=1)[1]

    with running_flow(settings, sqlite_db, with_table(registry, table), "cameras"):
        table.put(Camera(id="cam-http", url=mjpeg.url, fps=10))
        wait_until(lambda: stored("cam-http") > 0)
        table.put(Camera(id="cam-file", url=f"file://{clip}", options={"loop": 1}))
        wait_until(lambda: stored("cam-file") > 0)
        table.put(replace(table.cameras["cam-http"], enabled=False))
        wait_until(lambda: not stream_grows(mjpeg))  # the reader hung up
        time.sleep(0.3)  # its last sample, if one was in flight, is stored
        before, files = stored("cam-http"), stored("cam-file")
        wait_until(lambda: stored("cam-file") > files + 10)
        assert stored("cam-http") == before


def test_a_camera_with_bad_options_is_reported_and_the_others_go_on(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry, clip: Path
) -> None:
    activate_counted(sqlite_db)
    table = CameraList(
        Camera(id="bad", url=f"file://{clip}", options={"transport": "pigeon"}),
        Camera(id="good", url=f"file://{clip}", options={"realtime": 0}),
    )
    metrics = run(settings, sqlite_db, with_table(registry, table), "cameras", until_empty=True)

    assert metrics.snapshot().completed == 10
    events, _ = sqlite_db.list_events(event_type=EventType.CAMERA_OFFLINE)
    assert [(e.camera_id, "transport" in e.message) for e in events] == [("bad", True)]
    assert "transport" in (table.last_error["bad"] or "")


def test_two_workers_read_each_camera_once(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry, clip: Path
) -> None:
    log = activate_counted(sqlite_db)
    ids = ["cam-a", "cam-b", "cam-c", "cam-d"]
    assert {owner(i, 2) for i in ids} == {0, 1}  # both workers have cameras
    table = CameraList(*(Camera(id=i, url=f"file://{clip}", options={"realtime": 0}) for i in ids))

    metrics = run(
        settings, sqlite_db, with_table(registry, table), "cameras", until_empty=True, workers=2
    )

    assert metrics.snapshot().completed == 40
    assert set(log.calls.values()) == {1}
    for camera_id in ids:
        assert sqlite_db.list_detections(camera_id=camera_id, limit=1)[1] == 20


def test_the_cameras_source_reads_the_table_and_records_why_a_camera_is_not_read(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry, clip: Path
) -> None:
    activate_counted(sqlite_db)
    sqlite_db.create_camera(Camera(id="good", url=f"file://{clip}", options={"realtime": 0}))
    sqlite_db.create_camera(Camera(id="bad", url=f"file://{clip}", options={"transport": "x"}))
    sqlite_db.create_camera(Camera(id="off", url=f"file://{clip}", enabled=False))

    metrics = run(settings, sqlite_db, registry, "cameras", until_empty=True)

    assert metrics.snapshot().completed == 10
    assert sqlite_db.list_detections(camera_id="off", limit=1)[1] == 0
    bad = sqlite_db.get_camera("bad")
    assert bad is not None and "transport" in (bad.last_error or "")


def test_the_cameras_source_needs_the_database() -> None:
    with pytest.raises(SourceURLError, match="cameras table"):
        table_cameras(None)


def test_stream_urls_keep_their_query_and_take_options_from_the_fragment() -> None:
    camera = parse_video_url(
        "rtsp://admin:pw@cam.local:554/live?channel=1#fps=2&transport=udp&camera_id=porch"
    )
    assert camera.id == "porch"
    assert camera.url == "rtsp://admin:pw@cam.local:554/live?channel=1"
    assert camera.fps == 2.0
    assert dict(camera.options) == {"transport": "udp"}
    assert parse_video_url("http://10.0.0.9/video.mjpg").id == "10.0.0.9"
    assert parse_video_url("file:///clips/back%20yard.mp4?loop=1").id == "back-yard"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("rtsp://admin:pw@cam/live#colour=1", "unknown video source option"),
        ("rtsp://admin:pw@cam/live#fps=0", "fps"),
        ("file:///clip.mp4?jpeg_quality=100", "jpeg_quality"),
        ("rtsp:///live", "needs a host"),
        ("rtsp://cam/live#camera_id=no%20spaces", "camera id"),
    ],
)
def test_bad_source_urls_are_refused_without_showing_passwords(url: str, message: str) -> None:
    with pytest.raises(SourceURLError, match=message) as caught:
        parse_video_url(url)
    assert "pw" not in str(caught.value).replace("pw@", "").replace(":pw", "")
    assert ":pw@" not in str(caught.value)


def test_an_rtsp_camera_killed_and_restarted_flows_again_without_restarting_the_flow(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry
) -> None:
    activate_counted(sqlite_db)
    with (
        rtsp_camera() as rtsp,
        running_flow(
            settings, sqlite_db, registry, f"{rtsp.url}#stall_seconds=2", camera_id="rtsp-cam"
        ) as flow,
    ):
        wait_until(lambda: flow.metrics.snapshot().completed >= 5)
        rtsp.kill()
        wait_until(lambda: sqlite_db.list_events(event_type=EventType.CAMERA_OFFLINE)[1] == 1)
        rtsp.start()
        wait_until(
            lambda: sqlite_db.list_events(event_type=EventType.CAMERA_ONLINE)[1] == 1, timeout=40
        )
        done = flow.metrics.snapshot().completed
        wait_until(lambda: flow.metrics.snapshot().completed >= done + 5)

    online, _ = sqlite_db.list_events(event_type=EventType.CAMERA_ONLINE)
    assert online[0].camera_id == "rtsp-cam"
    assert online[0].severity == Severity.INFO
