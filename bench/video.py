"""What does reading cameras cost beyond decoding them, and how fresh are the results?

Writes ``--cameras`` (default 4) clips of 1280x720 H.264 at 25 fps,
``--seconds`` long (default 10), with PyAV, then measures:

1. **Decode cost.** The flow reads the clips as cameras (the ``cameras``
   source on an in-memory list: files played in real time, sampled at
   ``--fps``, default 5) with an in-process provider that answers at once,
   into SQLite. Its CPU seconds per camera-second stand next to PyAV
   decoding the same files bare (one thread per file, every frame decoded,
   nothing else) in the same run, and the readers alone (decode, pacing,
   sampling, JPEG) without the flow. Decoding every frame is the floor; the
   readers add a JPEG encoding per sampled frame, the flow its per-frame
   work (detect engine, SQL writes). Target: flow <= 1.2 x bare (all.py
   shows bare / flow, target >= 0.83).
2. **Capture-to-stored latency**: the same cameras at ``--fps`` with an HTTP
   provider on loopback answering after ``--latency`` (default 50 ms): from
   each frame's stream time (its ``timestamp``) to the commit of its row,
   p50 and p99. Target: p99 <= 250 ms.

    .venv/bin/python -m bench.video [--cameras 4] [--seconds 10] [--fps 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import av

from detectflow import FunctionAdapter, ProviderConfig, RawDetection, hookimpl
from detectflow.core.cameras import Camera
from detectflow.core.models import FrameResult
from detectflow.core.plugins import get_registry
from detectflow.core.settings import Settings
from detectflow.flows import FlowOptions, run_flow
from detectflow.flows.source_video import cameras_source_factory
from detectflow.store import Database, load_or_create_secret_key
from detectflow.video.clips import write_clip
from detectflow.video.reader import CameraReader

try:
    from bench._common import http_provider
except ImportError:  # run as a script: python bench/video.py
    from _common import http_provider  # type: ignore[no-redef]

__all__ = ["main"]

_ANSWER = [RawDetection("person", 0.9, (0.1, 0.1, 0.4, 0.8))]


class InstantAdapter(FunctionAdapter):
    """The zero-latency provider: answers in-process at once, so the flow's
    CPU is the video's and the flow's own, not a client library's."""

    provider_type = "bench_instant"
    in_process = True

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(lambda frame: _ANSWER, config)


class BenchPlugin:
    def __init__(self, cameras: Sequence[Camera]) -> None:
        self.cameras = list(cameras)

    @hookimpl
    def detectflow_provider_types(self) -> list[type[FunctionAdapter]]:
        return [InstantAdapter]

    @hookimpl
    def detectflow_frame_sources(self) -> dict[str, Any]:
        return {"cameras": partial(cameras_source_factory, load_cameras=lambda: self.cameras)}


class TimedDatabase:
    """The real database, noting when each result's row was committed."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self.latencies: list[float] = []
        self._lock = threading.Lock()

    def record_results(self, results: Sequence[FrameResult]) -> None:
        self._database.record_results(results)
        now = time.time()
        with self._lock:
            self.latencies += [now - r.frame.timestamp.timestamp() for r in results]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._database, name)


def _clips(folder: Path, count: int, seconds: float) -> list[Path]:
    return [
        write_clip(
            folder / f"cam-{n}.mp4",
            width=1280,
            height=720,
            fps=25,
            seconds=seconds,
            camera_id=f"cam-{n}",
        )
        for n in range(count)
    ]


def _bare_decode(paths: Sequence[Path]) -> tuple[float, int]:
    """CPU seconds to decode every frame of every file, one thread per file (as the readers)."""
    frames = [0] * len(paths)

    def decode(index: int) -> None:
        with av.open(str(paths[index])) as container:
            frames[index] = sum(1 for _ in container.decode(video=0))

    threads = [threading.Thread(target=decode, args=(i,)) for i in range(len(paths))]
    start = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.process_time() - start, sum(frames)


class _Quiet:
    def offline(self, camera: Camera, reason: str, *, first: bool) -> None:
        raise RuntimeError(f"camera {camera.id} failed: {reason}")

    def online(self, camera: Camera) -> None:
        pass


def _readers_only(cameras: Sequence[Camera]) -> tuple[float, int]:
    """CPU seconds of the readers alone (decode, pace, sample, encode), taken every 10 ms."""
    start = time.process_time()
    readers = [CameraReader(c, listener=_Quiet(), max_frame_bytes=10 << 20) for c in cameras]
    for reader in readers:
        reader.start()
    taken = 0
    while not all(r.finished for r in readers):
        taken += sum(1 for r in readers if r.take() is not None)
        time.sleep(0.01)
    return time.process_time() - start, taken


def _database(settings: Settings, provider: ProviderConfig) -> Database:
    db = Database(settings.sql_url, secret_key=load_or_create_secret_key(settings))
    db.upgrade()
    db.create_provider(provider)
    return db


def _flow(
    settings: Settings, cameras: Sequence[Camera], provider: ProviderConfig
) -> tuple[float, float, TimedDatabase, Any]:
    """Run the cameras to their end; (CPU seconds, wall seconds, timed database, metrics)."""
    registry = get_registry(settings)
    if not registry.pm.has_plugin("bench-video"):
        registry.register(BenchPlugin(cameras), "bench-video", "bench", "0")
    db = TimedDatabase(_database(settings, provider))
    start_cpu, start = time.process_time(), time.perf_counter()
    metrics = run_flow(
        settings,
        FlowOptions(source_url="cameras", until_empty=True),
        database=db,  # type: ignore[arg-type]
        registry=registry,
    )
    cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start
    db.dispose()
    return cpu, wall, db, metrics


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args(argv)
    camera_seconds = args.cameras * args.seconds

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = _clips(folder, args.cameras, args.seconds)
        cameras = [
            Camera(id=f"cam-{n}", url=f"file://{path}", fps=args.fps)
            for n, path in enumerate(paths)
        ]
        bare_cpu, decoded = _bare_decode(paths)
        readers_cpu, _ = _readers_only(cameras)

        instant = ProviderConfig(
            id="instant",
            provider_name="instant",
            provider_type="bench_instant",
            endpoint_url="",
            is_active=True,
        )
        settings = Settings(data_dir=folder / "cost", disable_plugin_autoload=True)
        flow_cpu, flow_wall, _, metrics = _flow(settings, cameras, instant)
        sampled = metrics.snapshot().completed

        with http_provider(args.latency) as url:
            slow = ProviderConfig(
                id="http",
                provider_name="http",
                provider_type="http_api",
                endpoint_url=url,
                timeout_seconds=10,
                is_active=True,
                options={"dialect": "detectflow"},
            )
            settings = Settings(data_dir=folder / "latency", disable_plugin_autoload=True)
            _, _, timed, latency_metrics = _flow(settings, cameras, slow)

    bare = bare_cpu / camera_seconds
    readers = readers_cpu / camera_seconds
    flow = flow_cpu / camera_seconds
    p50 = statistics.median(timed.latencies) * 1000
    p99 = _quantile(timed.latencies, 0.99) * 1000
    print(
        f"clips: {args.cameras} x {args.seconds:g} s of 1280x720 H.264 at 25 fps "
        f"({decoded} frames), sampled at {args.fps:g} fps"
    )
    print(f"bare PyAV decode: {bare * 1000:.1f} ms CPU per camera-second")
    print(
        f"readers alone (decode + sample + JPEG): {readers * 1000:.1f} ms CPU per "
        f"camera-second, {readers / bare:.2f} x bare"
    )
    print(
        f"flow (realtime, instant provider): {flow * 1000:.1f} ms CPU per camera-second, "
        f"{sampled} frames detected in {flow_wall:.1f} s"
    )
    print(f"flow / bare decode: {flow / bare:.2f} (target <= 1.2)")
    print(
        f"capture-to-stored at {args.fps:g} fps, {args.latency * 1000:.0f} ms provider: "
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms over {len(timed.latencies)} frames "
        f"(target p99 <= 250 ms); {latency_metrics.snapshot().failed} failed"
    )
    return {
        "bare_ms_per_camera_second": bare * 1000,
        "flow_ms_per_camera_second": flow * 1000,
        "readers_ms_per_camera_second": readers * 1000,
        "readers_vs_bare": readers / bare,
        "flow_vs_bare": flow / bare,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "frames": sampled,
    }


if __name__ == "__main__":
    main()
