"""How close does the dataflow get to the provider's latency/concurrency ceiling?

Queues ``--frames`` frames (default 2,000) in SQLite (the embedded default),
starts an HTTP provider on loopback that answers every request after
``--latency`` seconds (default 50 ms), and runs the real flow
(``run_flow(settings, FlowOptions(until_empty=True))``: SQL source -> detect engine with
``--in-flight`` calls (default 32) -> SQL + live sinks) through the real
``http_api`` adapter. The ceiling is in_flight / latency = 640 frames/s.

Then, for comparison, a plain sequential Bytewax ``op.map`` that calls the
same adapter one frame at a time, on ``--baseline`` frames (default 50).

The provider is a minimal keep-alive HTTP/1.1 server speaking the
detectflow JSON dialect (two detections per frame), in a child process so
its CPU does not compete with the flow's (the machine has 2 cores). It is
deliberately not the Simulator: the figure should measure the flow, not a
provider's own overhead.

    .venv/bin/python -m bench.flow_latency [--frames 2000] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from detectflow.core.frames import make_frame
from detectflow.core.models import Frame, FrameResult, ProviderConfig
from detectflow.core.pipeline import run_frame
from detectflow.core.plugins import get_registry
from detectflow.core.settings import Settings
from detectflow.flows import FlowMetrics, FlowOptions, run_flow
from detectflow.samples import sample_frame
from detectflow.store import Database, load_or_create_secret_key
from detectflow.store.live import LiveView
from detectflow.store.memory import MemoryBus, MemoryCache

try:
    from bench._common import http_provider
except ImportError:  # run as a script: python bench/flow_latency.py
    from _common import http_provider  # type: ignore[no-redef]

__all__ = ["main"]


def _frames(count: int, cameras: int = 8) -> list[Frame]:
    images = [sample_frame(f"cam-{c}", n) for c in range(cameras) for n in range(3)]
    return [
        make_frame(f"cam-{i % cameras}", images[i % len(images)], max_bytes=1 << 20, frame_number=i)
        for i in range(count)
    ]


def _provider(url: str) -> ProviderConfig:
    return ProviderConfig(
        id="bench",
        provider_name="bench",
        provider_type="http_api",
        endpoint_url=url,
        timeout_seconds=10,
        is_active=True,
        options={"dialect": "detectflow"},
    )


def _flow_rate(
    settings: Settings, url: str, count: int
) -> tuple[float, FlowMetrics, dict[str, int]]:
    db = Database(settings.sql_url, secret_key=load_or_create_secret_key(settings))
    db.upgrade()
    db.create_provider(_provider(url))
    for frame in _frames(count):
        db.enqueue(frame)
    live = LiveView(MemoryCache(), MemoryBus())
    # Loading the plugins imports every built-in adapter (aiohttp, grpc, redis:
    # ~0.4 s, once per process); like bench/flow_throughput.py, do it before
    # the clock starts so the figure is the flow's, not the interpreter's.
    registry = get_registry(settings)
    start = time.perf_counter()
    metrics = run_flow(
        settings, FlowOptions(until_empty=True), database=db, live=live, registry=registry
    )
    elapsed = time.perf_counter() - start
    stats = db.queue_stats()
    db.dispose()
    return count / elapsed, metrics, stats


def _baseline_rate(settings: Settings, url: str, count: int) -> float:
    """One provider call at a time from a plain ``op.map``: what not to do."""
    adapter = get_registry(settings).create_adapter(_provider(url))
    loop = asyncio.new_event_loop()
    out: list[FrameResult] = []

    def detect(frame: Frame) -> FrameResult:
        return loop.run_until_complete(run_frame(frame, adapter))

    flow = Dataflow("baseline")
    frames = op.input("frames", flow, TestingSource(_frames(count)))
    op.output("out", op.map("detect", frames, detect), TestingSink(out))
    loop.run_until_complete(run_frame(_frames(1)[0], adapter))  # warm the pool
    start = time.perf_counter()
    run_main(flow)
    elapsed = time.perf_counter() - start
    loop.run_until_complete(adapter.aclose())
    loop.close()
    assert len(out) == count and all(r.ok for r in out), "baseline frames failed"
    return count / elapsed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--baseline", type=int, default=50)
    args = parser.parse_args(argv)
    ceiling = args.in_flight / args.latency

    with http_provider(args.latency) as url, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp), max_in_flight=args.in_flight, disable_plugin_autoload=True
        )
        rate, metrics, stats = _flow_rate(settings, url, args.frames)
        base = _baseline_rate(settings, url, args.baseline)

    snap = metrics.snapshot()
    print(f"provider: {url} latency {args.latency * 1000:.0f} ms, {args.in_flight} in flight")
    print(f"ceiling: {ceiling:.1f} frames/s")
    print(f"dataflow: {args.frames} frames, {rate:.1f} frames/s")
    print(f"dataflow ratio to ceiling: {rate / ceiling:.3f}")
    print(
        f"dataflow outcome: {stats['completed']} completed, {stats['failed']} failed, "
        f"{snap.detections} detections"
    )
    print(f"sequential map baseline: {args.baseline} frames, {base:.1f} frames/s")
    print(f"sequential map ratio to ceiling: {base / ceiling:.3f}")
    return {"rate": rate, "ratio": rate / ceiling, "baseline_ratio": base / ceiling}


if __name__ == "__main__":
    main()
