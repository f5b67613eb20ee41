"""``detectflow demo``: the whole product in one process, on the embedded default.

A simulated provider (synthetic answers, not a detector), registered as the
active provider config; a feeder queueing sample frames from three cameras;
a video camera playing a clip the demo makes at first run (a sample image
moving across a background, H.264, in the data dir) through the video
source; the dataflow; and the API server. It prints the URLs to try and a
live one-line summary, and stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path

import click

from detectflow.cli.runner import Stack, open_stack
from detectflow.core.cameras import Camera
from detectflow.core.frames import make_frame
from detectflow.core.ids import new_id
from detectflow.core.models import ProviderConfig
from detectflow.core.settings import Settings
from detectflow.samples import sample_frame
from detectflow.simulator import Simulator, run_in_thread
from detectflow.store import Database

__all__ = [
    "DEMO_CAMERAS",
    "DEMO_PROVIDER_NAME",
    "DEMO_VIDEO_CAMERA",
    "demo_clip",
    "ensure_demo_cameras",
    "ensure_demo_provider",
    "feed",
    "run_demo",
]

DEMO_CAMERAS = ("cam-1", "cam-2", "cam-3")
DEMO_VIDEO_CAMERA = "video-1"
DEMO_PROVIDER_NAME = "demo simulator"
_CLIP_NAME = "demo-clip-v1.mp4"  # a new name when the clip changes, so old data dirs remake it


def demo_clip(settings: Settings) -> Path | None:
    """The demo's video, made at first run into the data dir (a few seconds of CPU);
    None when PyAV is not installed (the ``video`` extra)."""
    if importlib.util.find_spec("av") is None:
        return None
    path = settings.data_dir / _CLIP_NAME
    if not path.exists():
        from detectflow.video.clips import write_clip

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part.mp4")
        write_clip(partial, width=640, height=360, fps=25, seconds=8.0, camera_id=DEMO_VIDEO_CAMERA)
        partial.replace(path)  # never a half-written clip, even if interrupted
    return path


def ensure_demo_cameras(database: Database, clip: Path | None, *, fps: float) -> None:
    """The demo's cameras as rows of the cameras table, so the live page shows their
    status and the video camera is read like any camera ``up`` reads: the queue's
    cameras without a URL (their frames come through the queue), the video camera
    playing ``clip`` in a loop. Kept in step across runs (the clip's path may move)."""
    wanted = [Camera(id=c, name=f"demo {c} (queue)") for c in DEMO_CAMERAS]
    if clip is not None:
        wanted.append(
            Camera(
                id=DEMO_VIDEO_CAMERA,
                name="demo clip",
                url=f"file://{clip.resolve()}",
                fps=min(fps, 60),
                options={"loop": "1"},
            )
        )
    for camera in wanted:
        found = database.get_camera(camera.id)
        if found is None:
            database.create_camera(camera)
        else:  # the zones and filters someone gave it stay
            options = {**found.options, **camera.options}
            changes = {"url": camera.url, "fps": camera.fps, "options": options, "enabled": True}
            database.update_camera(camera.id, changes)


def ensure_demo_provider(
    database: Database,
    endpoint_url: str,
    *,
    provider_type: str = "http_api",
    options: dict[str, str] | None = None,
) -> ProviderConfig:
    """Point the demo's provider config at this run's provider and make it active.

    Reused across runs (the simulator's port changes), so repeated demos do
    not pile up configs; one config per provider type.
    """
    name = DEMO_PROVIDER_NAME if provider_type == "http_api" else f"demo {provider_type}"
    for config in database.list_providers():
        if config.provider_name == name:
            return database.update_provider(
                config.id, {"endpoint_url": endpoint_url, "is_active": True}
            )
    return database.create_provider(
        ProviderConfig(
            id=new_id(),
            provider_name=name,
            provider_type=provider_type,
            endpoint_url=endpoint_url,
            timeout_seconds=5.0,
            confidence_threshold=0.3,
            max_retries=3,
            is_active=True,
            options=options if options is not None else {"dialect": "detectflow"},
        )
    )


def feed(
    database: Database,
    settings: Settings,
    stop: threading.Event,
    *,
    fps: float,
    cameras: tuple[str, ...] = DEMO_CAMERAS,
) -> None:
    """Queue one frame per camera every 1/fps seconds until ``stop`` is set."""
    run = new_id()[:8]  # fresh frame ids each run, so old results don't mask new ones
    number = 0
    period = 1.0 / fps
    while not stop.is_set():
        started = time.monotonic()
        for camera in cameras:
            frame = make_frame(
                camera,
                sample_frame(camera, number),
                max_bytes=settings.max_frame_bytes,
                frame_id=f"demo-{run}-{camera}-{number}",
                frame_number=number,
            )
            database.enqueue(frame)
        number += 1
        stop.wait(max(0.0, period - (time.monotonic() - started)))


def _print_status(stack: Stack) -> None:
    tty = sys.stdout.isatty()
    while not stack.stop.wait(1.0 if tty else 10.0):
        line = stack.metrics.summary()
        if tty:
            click.echo(f"\r\x1b[K{line}", nl=False)
        else:
            click.echo(line)


def run_demo(
    settings: Settings, *, fps: float = 2.0, latency: float = 0.05, provider: str = "simulator"
) -> None:
    """``provider`` is ``simulator`` or an installed in-process provider type
    (``opencv`` from plugins/detectflow-opencv), which then sees the sample frames."""
    stack = open_stack(settings)
    handle = run_in_thread(Simulator(latency=latency, seed=7)) if provider == "simulator" else None
    try:
        if handle is not None:
            ensure_demo_provider(stack.database, handle.detect_url("detectflow"))
            source = f"a SIMULATED provider (synthetic detections) on {handle.url}"
        else:
            ensure_demo_provider(stack.database, "", provider_type=provider, options={})
            source = f"the {provider} provider (real detection of synthetic frames)"
        _, admin_key = stack.database.create_api_key("admin", "demo", replace=True)
        stack.start_flow()
        clip = demo_clip(settings)
        ensure_demo_cameras(stack.database, clip, fps=fps)
        stack.start_camera_flow()  # as `up` does: every enabled camera of the table
        stack.spawn(lambda: feed(stack.database, settings, stack.stop, fps=fps), "demo-feeder")
        stack.spawn(lambda: _print_status(stack), "demo-status")
        base = f"http://{settings.host}:{settings.port}"
        click.echo(
            "\n".join(
                [
                    f"detectflow demo: {source}, "
                    f"feeding {len(DEMO_CAMERAS)} cameras at {fps:g} fps",
                    (
                        f"camera {DEMO_VIDEO_CAMERA} plays {clip} (the cameras table; "
                        f"add yours: detectflow camera add --id ... --url ...)"
                        if clip is not None
                        else "no video camera: PyAV is missing (pip install 'detectflow[video]')"
                    ),
                    f"data in {settings.data_dir.resolve()}",
                    "",
                    "try:",
                    f"  curl -s '{base}/api/v1/detections/live?min_confidence=0'",
                    f"  curl -s '{base}/api/v1/detections/live?camera_id=cam-1'",
                    f"  curl -s '{base}/api/v1/detections/live?camera_id={DEMO_VIDEO_CAMERA}'",
                    f"  curl -s '{base}/api/v1/detections/events?limit=5'",
                    f"  curl -s '{base}/api/v1/detections/queue-stats'",
                    f"  websocket: ws://{settings.host}:{settings.port}/api/v1/detections/ws/me "
                    '-> {"type": "subscribe", "camera_id": "cam-1"}',
                    f"  live page: {base}/",
                    "",
                    f"admin API key (shown once): {admin_key}",
                    f'  curl -s -H "Authorization: Bearer {admin_key}" '
                    f"{base}/api/v1/detections/providers",
                    "",
                    "Ctrl-C stops.",
                ]
            )
        )
        stack.serve(settings.host, settings.port)
    finally:
        stack.stop.set()
        if handle is not None:
            handle.stop()
    click.echo("\nstopped")
