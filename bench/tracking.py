"""What do tracking, zones and the object lifecycle cost per detection?

A synthetic scene: 30 objects (people and vehicles) walking at constant
velocity and bouncing off the frame's edges, 10 fps, ``--frames`` frames
(default 10,000). Each frame, one box in 20 is missed by the "detector"
and scores wander between 0.35 and 0.95, so both of ByteTrack's passes and
the lost/found path run. The camera has 3 zones (one with a hole), 2 lines,
1 mask and per-label filters; frames finish a little out of order (up to 4
in flight), so the reorder buffer works too.

Figures, in microseconds of CPU per detection:

- ``tracker``: :class:`~detectflow.core.tracking.Tracker` alone (association);
- ``objects``: :class:`~detectflow.core.objects.CameraObjects` (reorder +
  filters + masks + tracker + zones + lines + lifecycle events), which is
  what a flow step would run per frame;
- baseline, same run and same detections: ``normalize_detections``, the
  flow's existing per-frame Python work of turning a provider's answer into
  stored detections (ids included).

The ratio objects / normalize says how much tracking adds to the per-frame
Python work already done. With ``--compare-scipy`` (needs scipy, which
detectflow does not depend on) the matching step alone is timed both ways on
the scene's real frame-to-frame IoU problems: ours (IoU gate + components +
Hungarian in pure Python) vs numpy IoU + ``scipy.optimize.linear_sum_assignment``.

With ``--flow`` it also runs the whole dataflow (bench/flow_throughput.py's
setup: PostgreSQL + Redis, an in-process provider answering 3 boxes a frame,
``--flow-frames`` frames over 8 cameras) twice in the same run, tracking off
then on (``FlowOptions.tracking``), and prints frames/s and CPU per frame of
each; the issue's target is tracking + zones + lifecycle <= 15% of the flow's
per-frame CPU.

    .venv/bin/python -m bench.tracking [--frames 10000] [--objects 30] [--compare-scipy]
                                       [--flow] [--flow-frames 5000]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from detectflow.core.geometry import Box
from detectflow.core.models import Detection, Frame, RawDetection
from detectflow.core.normalize import normalize_detections
from detectflow.core.object_config import ObjectsConfig
from detectflow.core.objects import CameraObjects
from detectflow.core.tracking import Candidate, Tracker, TrackerConfig, gated_ious

T0 = datetime(2025, 11, 5, 12, 0, tzinfo=UTC)
FPS = 10
CHUNK = 500  # frames built at a time, so 300,000 detections never sit in memory at once

OPTIONS = {
    "zones": {
        "dock": {"polygon": [[0.6, 0.0], [1.0, 0.0], [1.0, 0.5], [0.6, 0.5]]},
        "yard": {
            "polygon": [[0.0, 0.5], [0.6, 0.5], [0.6, 1.0], [0.0, 1.0]],
            "holes": [[[0.2, 0.6], [0.4, 0.6], [0.4, 0.8], [0.2, 0.8]]],
        },
        "path": {"polygon": [[0.3, 0.2], [0.7, 0.3], [0.6, 0.9], [0.25, 0.7], [0.1, 0.4]]},
    },
    "masks": [[[0.0, 0.0], [0.08, 0.0], [0.08, 0.08], [0.0, 0.08]]],
    "lines": {
        "gate": {"from": [0.5, 0.0], "to": [0.5, 1.0]},
        "door": {"from": [0.1, 0.6], "to": [0.9, 0.6]},
    },
    "filters": {"person": {"min_score": 0.5, "threshold": 0.7}, "car": {"min_area": 0.005}},
}


class Scene:
    """Deterministic walkers (seeded), bouncing inside the frame."""

    def __init__(self, objects: int, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.rng = random.Random(seed + 1)
        self.walkers = []
        for i in range(objects):
            person = i % 3 != 0
            w, h = (
                (rng.uniform(0.04, 0.08), rng.uniform(0.12, 0.25))
                if person
                else (
                    rng.uniform(0.1, 0.2),
                    rng.uniform(0.08, 0.14),
                )
            )
            self.walkers.append(
                [
                    rng.uniform(0, 1 - w),
                    rng.uniform(0, 1 - h),
                    rng.uniform(-0.15, 0.15),
                    rng.uniform(-0.08, 0.08),
                    w,
                    h,
                    "person" if person else "car",
                    rng.uniform(0.55, 0.95),
                ]
            )

    def step(self) -> list[RawDetection]:
        raws = []
        dt = 1 / FPS
        for wk in self.walkers:
            x, y, vx, vy, w, h, label, score = wk
            x, y = x + vx * dt, y + vy * dt
            if not 0 <= x <= 1 - w:
                vx, x = -vx, min(max(x, 0.0), 1 - w)
            if not 0 <= y <= 1 - h:
                vy, y = -vy, min(max(y, 0.0), 1 - h)
            wk[0], wk[1], wk[2], wk[3] = x, y, vx, vy
            if self.rng.random() < 0.05:
                continue  # missed this frame
            s = min(0.95, max(0.35, score + self.rng.uniform(-0.2, 0.1)))
            raws.append(RawDetection(label, s, (x, y, x + w, y + h)))
        return raws


def frames(scene: Scene, count: int) -> Iterator[list[tuple[Frame, list[RawDetection]]]]:
    chunk: list[tuple[Frame, list[RawDetection]]] = []
    for k in range(count):
        frame = Frame("cam-1", b"", f"frame-{k:06d}", T0 + timedelta(seconds=k / FPS), k)
        chunk.append((frame, scene.step()))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def in_flight_order(n: int, rng: random.Random) -> list[int]:
    """Indices 0..n-1 as frames finish with up to 4 in flight."""
    order = list(range(n))
    for start in range(0, n, 4):
        part = order[start : start + 4]
        rng.shuffle(part)
        order[start : start + 4] = part
    return order


def candidates(detections: tuple[Detection, ...]) -> list[Candidate]:
    return [
        Candidate(
            (d.bbox.x, d.bbox.y, d.bbox.x + d.bbox.width, d.bbox.y + d.bbox.height),
            d.detection_type,
            d.confidence >= 0.5,
            i,
        )
        for i, d in enumerate(detections)
    ]


def run(count: int, objects: int) -> dict[str, float]:
    config = ObjectsConfig.from_options(OPTIONS)
    camera = CameraObjects("cam-1", config)
    tracker = Tracker("cam-1", TrackerConfig())
    rng = random.Random(3)
    cpu = {"normalize": 0.0, "tracker": 0.0, "objects": 0.0}
    dets = events = 0
    now = T0
    clock = time.process_time
    for chunk in frames(Scene(objects), count):
        start = clock()
        normalized = [normalize_detections(f, raws, now=now).detections for f, raws in chunk]
        cpu["normalize"] += clock() - start

        cands = [candidates(d) for d in normalized]
        start = clock()
        for (f, _), c in zip(chunk, cands, strict=True):
            tracker.update(f.frame_id, f.timestamp.timestamp(), c)
        cpu["tracker"] += clock() - start

        order = in_flight_order(len(chunk), rng)
        start = clock()
        for i in order:
            for done in camera.push(chunk[i][0].frame_id, chunk[i][0].timestamp, normalized[i]):
                events += len(done.events)
        cpu["objects"] += clock() - start
        dets += sum(len(d) for d in normalized)
    start = clock()
    flushed, ended = camera.stop()
    cpu["objects"] += clock() - start
    events += sum(len(f.events) for f in flushed) + len(ended)
    counts = camera.counts
    return {
        **{k: v / dets * 1e6 for k, v in cpu.items()},
        "detections": dets,
        "events": events,
        "started": sum(counts["objects_started"].values()),
        "late": counts["late"],
        "crossings": sum(
            n for per in counts["line_crossings"].values() for d in per.values() for n in d.values()
        ),
    }


def compare_scipy(count: int, objects: int) -> None:
    try:
        import numpy as np
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        print("scipy comparison skipped: scipy is not installed")
        return
    from detectflow.core.assignment import max_weight_matching

    problems: list[tuple[list[Box], list[str], list[Candidate]]] = []
    previous: list[Candidate] = []
    for chunk in frames(Scene(objects), count):
        for f, raws in chunk:
            current = candidates(normalize_detections(f, raws, now=T0).detections)
            if previous and current:
                problems.append(([c.box for c in previous], [c.kind for c in previous], current))
            previous = current

    gate = 0.2
    start = time.process_time()
    ours = 0
    for boxes, kinds, cands in problems:
        edges = gated_ious(kinds, boxes, cands, gate)
        ours += len(max_weight_matching(len(boxes), len(cands), edges))
    ours_cpu = time.process_time() - start

    start = time.process_time()
    theirs = 0
    for boxes, kinds, cands in problems:
        a = np.asarray(boxes)
        b = np.asarray([c.box for c in cands])
        same = np.asarray(kinds)[:, None] == np.asarray([c.kind for c in cands])[None, :]
        w = np.clip(
            np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]),
            0,
            None,
        )
        h = np.clip(
            np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]),
            0,
            None,
        )
        inter = w * h
        area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        iou = np.where(same, inter / (area_a[:, None] + area_b[None, :] - inter), 0.0)
        rows, cols = linear_sum_assignment(np.where(iou >= gate, 1.0 - iou, 1e6))
        theirs += int((iou[rows, cols] >= gate).sum())
    theirs_cpu = time.process_time() - start
    per = sum(len(p[2]) for p in problems)
    print(f"matching alone, {len(problems):,} frame-to-frame problems ({per:,} boxes):")
    print(f"  ours, pure Python (gate, components, Hungarian): {ours_cpu / per * 1e6:6.2f} us/box")
    print(f"  numpy IoU + scipy linear_sum_assignment:        {theirs_cpu / per * 1e6:6.2f} us/box")
    print(f"  pairs matched: {ours:,} ours, {theirs:,} scipy")
    print(f"  ratio ours / scipy: {ours_cpu / theirs_cpu:.2f}")


def flow_comparison(count: int, cameras: int = 8) -> dict[str, float]:
    """The dataflow's frames/s and CPU per frame with tracking off, then on."""
    import uuid

    from cryptography.fernet import Fernet

    from bench.flow_throughput import bench_frames, cleanup_redis, flow_rate, fresh_postgres
    from detectflow.core.settings import Settings

    redis_url = os.environ.get("DETECTFLOW_REDIS_URL", "redis://127.0.0.1:6379/15")
    prefix = f"detectflow-bench-{uuid.uuid4().hex[:8]}:"
    settings = Settings(
        secret_key=Fernet.generate_key().decode(),
        disable_plugin_autoload=True,
        redis_url=redis_url,
    )
    out: dict[str, float] = {}
    try:
        for tracking in (False, True):
            frames = bench_frames(count, cameras)
            with fresh_postgres() as url:
                rate, cpu, _, stats = flow_rate(
                    settings, url, redis_url, f"{prefix}{tracking}:", frames, tracking=tracking
                )
            name = "on" if tracking else "off"
            out[f"rate_{name}"], out[f"cpu_{name}"] = rate, cpu
            print(
                f"flow, tracking {name:3}: {rate:7,.0f} frames/s, {cpu * 1e6:5.0f} us CPU/frame "
                f"({stats['completed']} completed)"
            )
    finally:
        cleanup_redis(redis_url, prefix)
    print(f"ratio frames/s on / off: {out['rate_on'] / out['rate_off']:.3f}")
    share = (out["cpu_on"] - out["cpu_off"]) / out["cpu_on"]
    print(f"tracking's share of the flow's CPU per frame: {share:.1%} (target <= 15%)")
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--objects", type=int, default=30)
    parser.add_argument("--compare-scipy", action="store_true")
    parser.add_argument("--flow", action="store_true", help="also: the flow, tracking off vs on")
    parser.add_argument("--flow-frames", type=int, default=5_000)
    args = parser.parse_args(argv)
    load = os.getloadavg()
    r = run(args.frames, args.objects)
    print(f"scene: {args.objects} objects, {args.frames:,} frames at {FPS} fps")
    print(
        f"  {r['detections']:,.0f} detections, {r['started']:.0f} objects started, "
        f"{r['events']:.0f} object events, {r['crossings']:.0f} line crossings"
    )
    print(f"tracker alone:           {r['tracker']:6.2f} us/detection")
    print(f"objects (all of it):     {r['objects']:6.2f} us/detection")
    print(f"  = {r['objects'] * r['detections'] / args.frames:.0f} us/frame")
    print(f"baseline, normalization: {r['normalize']:6.2f} us/detection")
    print(f"ratio objects / normalization: {r['objects'] / r['normalize']:.2f}")
    print(f"load average before: {load[0]:.2f}, after: {os.getloadavg()[0]:.2f}")
    if args.compare_scipy:
        compare_scipy(args.frames, args.objects)
    if args.flow:
        r.update(flow_comparison(args.flow_frames))
    return r


if __name__ == "__main__":
    main()
