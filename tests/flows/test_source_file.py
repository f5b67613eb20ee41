"""The image-folder source: whole replays through run_flow, pacing, loops, bad files."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow import Frame, RawDetection, Settings
from detectflow.core.models import EventType
from detectflow.core.plugins import PluginRegistry
from detectflow.flows import FlowError, FlowMetrics, FlowOptions, run_flow, source_file
from detectflow.flows.source_common import SourceURLError
from detectflow.flows.source_file import list_cameras, parse_file_source_url
from detectflow.samples import sample_frame
from detectflow.store import Database
from tests.flows.conftest import activate, activate_counted, person, running_flow, wait_until


@pytest.fixture
def flow_registry(registry: PluginRegistry) -> PluginRegistry:
    if "file" not in registry.frame_sources():
        registry.register(source_file, "detectflow.flows.source_file", "detectflow", "0")
    return registry


def make_folder(root: Path, cameras: dict[str, int], suffix: str = ".png") -> Path:
    for camera, count in cameras.items():
        (root / camera).mkdir(parents=True)
        for n in range(count):
            (root / camera / f"{n:04d}{suffix}").write_bytes(sample_frame(camera, n, 32, 24))
    return root


def replay(
    settings: Settings, db: Database, registry: PluginRegistry, url: str, **kwargs: object
) -> FlowMetrics:
    options = FlowOptions(source_url=url, **kwargs)  # type: ignore[arg-type]
    return run_flow(settings, options, database=db, registry=registry)


def test_a_replay_processes_every_file_once_and_ends(
    settings: Settings, sqlite_db: Database, flow_registry: PluginRegistry, tmp_path: Path
) -> None:
    log = activate_counted(sqlite_db)
    folder = make_folder(tmp_path / "replay", {"cam-a": 4, "cam-b": 3, "cam-c": 2})

    metrics = replay(settings, sqlite_db, flow_registry, f"file://{folder}?loop=0", workers=2)

    assert (metrics.snapshot().completed, metrics.snapshot().failed) == (9, 0)
    assert len(log.calls) == 9
    assert set(log.calls.values()) == {1}
    detections, total = sqlite_db.list_detections(limit=100)
    assert total == 18
    by_camera = {(d.camera_id, d.frame_number) for d in detections}
    assert by_camera == {
        *(("cam-a", n) for n in range(4)),
        *(("cam-b", n) for n in range(3)),
        *(("cam-c", n) for n in range(2)),
    }


def test_invalid_files_end_failed_with_their_reason(
    settings: Settings, sqlite_db: Database, flow_registry: PluginRegistry, tmp_path: Path
) -> None:
    log = activate_counted(sqlite_db)
    folder = make_folder(tmp_path / "replay", {"cam-a": 2})
    (folder / "cam-a" / "0009.jpg").write_bytes(b"this is no jpeg")
    (folder / "cam-a" / "0010.png").write_bytes(sample_frame("cam-a", 10, 64, 64))  # too big
    (folder / "cam-a" / "notes.txt").write_text("not a frame, not counted")
    (folder / "bad camera!").mkdir()
    (folder / "bad camera!" / "0.png").write_bytes(sample_frame("x", 0, 32, 24))
    small = replace(settings, max_frame_bytes=len(sample_frame("cam-a", 0, 32, 24)) + 100)

    metrics = replay(small, sqlite_db, flow_registry, f"file://{folder}")

    assert (metrics.snapshot().completed, metrics.snapshot().failed) == (2, 3)
    assert len(log.calls) == 2
    events, total = sqlite_db.list_events(event_type=EventType.DETECTION_FAILED, limit=10)
    assert total == 3
    messages = sorted(e.message for e in events)
    assert any("0009.jpg: frame is not a JPEG, PNG or WebP image" in m for m in messages)
    assert any("0010.png: frame is" in m and "the limit is" in m for m in messages)
    assert any("0.png: camera_id must be" in m for m in messages)


def test_fps_paces_each_camera(
    settings: Settings, sqlite_db: Database, flow_registry: PluginRegistry, tmp_path: Path
) -> None:
    lock = threading.Lock()
    calls: dict[str, list[float]] = {}

    def timed(frame: Frame) -> list[RawDetection]:
        with lock:
            calls.setdefault(frame.camera_id, []).append(time.monotonic())
        return person(frame)

    activate(sqlite_db, timed)
    folder = make_folder(tmp_path / "replay", {"cam-a": 8, "cam-b": 8})

    replay(settings, sqlite_db, flow_registry, f"file://{folder}?fps=20")

    expected = 7 / 20  # 8 frames, 7 intervals at 20 frames/s
    for camera, times in calls.items():
        span = max(times) - min(times)
        assert expected / 2 <= span <= expected * 2, (camera, span)


def test_fps_zero_goes_as_fast_as_the_provider(
    settings: Settings, sqlite_db: Database, flow_registry: PluginRegistry, tmp_path: Path
) -> None:
    activate(sqlite_db, person)
    folder = make_folder(tmp_path / "replay", {"cam-a": 30})

    start = time.monotonic()
    metrics = replay(settings, sqlite_db, flow_registry, f"file://{folder}?fps=0")

    assert metrics.snapshot().completed == 30
    assert time.monotonic() - start < 30 / 20  # far quicker than even 20 frames/s


def test_loop_repeats_with_fresh_frame_ids_until_stopped(
    settings: Settings, sqlite_db: Database, flow_registry: PluginRegistry, tmp_path: Path
) -> None:
    log = activate_counted(sqlite_db)
    folder = make_folder(tmp_path / "replay", {"cam-a": 2})
    url = f"file://{folder}?loop=1&fps=100"

    with running_flow(settings, sqlite_db, flow_registry, url) as flow:
        wait_until(lambda: flow.metrics.snapshot().completed >= 7)

    completed = flow.metrics.snapshot().completed
    assert completed >= 7  # three passes over two files, and more
    assert set(log.calls.values()) == {1}  # every pass has its own frame ids
    detections, total = sqlite_db.list_detections(limit=1000)
    assert total == 2 * completed
    assert {d.frame_number for d in detections} >= set(range(7))


def test_files_at_the_top_belong_to_a_camera_named_after_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "front-door"
    folder.mkdir()
    (folder / "b.JPG").write_bytes(b"")
    (folder / "a.png").write_bytes(b"")
    (folder / "readme.md").write_bytes(b"")

    (camera,) = list_cameras(folder)

    assert camera.camera_id == "front-door"
    assert [p.name for p in camera.files] == ["a.png", "b.JPG"]


def test_a_missing_folder_is_a_clear_flow_error(
    settings: Settings, sqlite_db: Database, flow_registry: PluginRegistry, tmp_path: Path
) -> None:
    activate(sqlite_db, person)
    with pytest.raises(FlowError, match="folder does not exist"):
        replay(settings, sqlite_db, flow_registry, f"file://{tmp_path / 'nope'}")


def test_file_source_is_registered_through_the_hook(flow_registry: PluginRegistry) -> None:
    assert flow_registry.frame_sources()["file"] is source_file.file_source_factory


def test_url_forms_and_defaults() -> None:
    settings = Settings()
    options = parse_file_source_url("file:///data/replay", settings)
    assert (options.folder, options.fps, options.loop) == (Path("/data/replay"), 0.0, False)
    assert options.count == settings.batch_size
    relative = parse_file_source_url("file:replays/x?fps=2.5&loop=1", settings)
    assert (relative.folder, relative.fps, relative.loop) == (Path("replays/x"), 2.5, True)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://x", "not a file source URL"),
        ("file://server/share", "must name a local folder"),
        ("file://", "has no folder"),
        ("file:///x?speed=2", "unknown file source option"),
        ("file:///x?fps=-1", "out of range"),
        ("file:///x?fps=fast", "not a number"),
        ("file:///x?fps=nan", "out of range"),
        ("file:///x?loop=yes", "loop must be 0 or 1"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(SourceURLError, match=message):
        parse_file_source_url(url, Settings())


@given(name=st.sampled_from(["fps", "loop", "count"]), text=st.text(max_size=30))
def test_any_option_value_parses_or_is_refused_clearly(name: str, text: str) -> None:
    message = ""
    try:
        parse_file_source_url(f"file:///x?{name}={text}", Settings())
    except SourceURLError as exc:
        message = str(exc)
    assert message == "" or "file source" in message
