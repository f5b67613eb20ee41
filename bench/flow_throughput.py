"""How many frames per second does one dataflow worker push through PostgreSQL and Redis?

The provider is free: an in-process adapter (registered through the
provider-types hook, as a vendor plugin would be) that answers every frame
at once with 3 detections. So the figure measures the flow's own work:
claiming rows, per-frame Python work (validation, normalization, ids,
events), the SQL sink (``Database.record_results``), the live sink
(``LiveView.publish`` on :class:`~detectflow.store.redis_backend.RedisCache`
/ ``RedisBus``) and the window statistics.

Source: the SQL processing queue (the default ``--source sql``). ``--frames``
rows (default 20,000) are inserted in one bulk statement *before* the clock
starts, so the figure includes claiming them (``FOR UPDATE SKIP LOCKED``)
but not inserting them. One Bytewax worker, ``run_flow(settings, FlowOptions(until_empty=True))``.

Baseline, in the same run: the raw cost of writing the same rows (3
detections + 1 event per frame, every queue row set to completed) with
psycopg ``COPY`` (queue rows via ``COPY`` into a temporary table and one
``UPDATE ... FROM``), plus the same live keys and pub/sub messages through
one Redis pipeline. The baseline's rows and messages are built before its
clock starts: it is the I/O floor, with no per-frame Python work.

Each run uses a fresh PostgreSQL database (dropped afterwards) and a Redis
key prefix of its own (deleted afterwards). The machine may be shared, so
the load average is printed with the figures.

    .venv/bin/python -m bench.flow_throughput [--frames 20000] [--cameras 8]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis

from detectflow import ProviderAdapter, hookimpl
from detectflow.core.frames import make_frame
from detectflow.core.models import Frame, FrameResult, ProviderConfig, RawDetection
from detectflow.core.pipeline import run_frame
from detectflow.core.plugins import get_registry
from detectflow.core.serialize import event_message, frame_detections_message
from detectflow.core.settings import Settings
from detectflow.flows import FlowMetrics, FlowOptions, run_flow
from detectflow.samples import sample_frame
from detectflow.store import Database
from detectflow.store.dialects import insert_ignore
from detectflow.store.live import LIVE_TTL, LiveView, detections_channel, events_channel, live_key
from detectflow.store.redis_backend import RedisBus, RedisCache, escape_glob
from detectflow.store.rows import detection_to_row, event_to_row, queue_row_for_frame
from detectflow.store.tables import detection_processing_queue

__all__ = [
    "ZeroLatencyAdapter",
    "bench_frames",
    "cleanup_redis",
    "flow_rate",
    "fresh_postgres",
    "main",
]

_ANSWER = [
    RawDetection("person", 0.92, (0.10, 0.10, 0.40, 0.90)),
    RawDetection("face", 0.81, (0.20, 0.12, 0.30, 0.25)),
    RawDetection("car", 0.74, (0.50, 0.50, 0.95, 0.85)),
]

_PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


class ZeroLatencyAdapter(ProviderAdapter):
    """Answers at once with the same 3 detections: the flow, not a provider, is measured."""

    provider_type = "bench_zero"

    async def detect(self, frame: Frame) -> list[RawDetection]:
        return _ANSWER


class _BenchPlugin:
    @hookimpl
    def detectflow_provider_types(self) -> list[type[ProviderAdapter]]:
        return [ZeroLatencyAdapter]


def _provider() -> ProviderConfig:
    return ProviderConfig(
        id="bench",
        provider_name="bench",
        provider_type="bench_zero",
        endpoint_url="inprocess://zero",
        is_active=True,
    )


def bench_frames(count: int, cameras: int) -> list[Frame]:
    images = [sample_frame(f"cam-{c}", 0, 32, 24) for c in range(cameras)]
    return [
        make_frame(f"cam-{i % cameras}", images[i % cameras], max_bytes=1 << 20, frame_number=i)
        for i in range(count)
    ]


@contextmanager
def fresh_postgres() -> Iterator[str]:
    name = f"detectflow_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(_PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _open_database(url: str, secret: str, frames: list[Frame]) -> Database:
    """A migrated database with every frame queued in one bulk insert (not timed)."""
    db = Database(url, secret_key=secret)
    db.upgrade()
    now = datetime.now(UTC)
    rows = [queue_row_for_frame(f, max_retries=3, now=now) for f in frames]
    with db.engine.begin() as conn:
        insert_ignore(conn, detection_processing_queue, rows)
    return db


def flow_rate(
    settings: Settings,
    url: str,
    redis_url: str,
    prefix: str,
    frames: list[Frame],
    *,
    tracking: bool = True,
) -> tuple[float, float, FlowMetrics, dict[str, int]]:
    registry = get_registry(settings)
    if not registry.pm.has_plugin("bench"):  # the registry is shared by runs of one process
        registry.register(_BenchPlugin(), "bench", "bench", "0")
    db = _open_database(url, settings.secret_key or "", frames)
    db.create_provider(_provider())
    with RedisCache(redis_url, prefix=prefix) as cache, RedisBus(redis_url, prefix=prefix) as bus:
        live = LiveView(cache, bus)
        cpu = time.process_time()
        start = time.perf_counter()
        metrics = run_flow(
            settings,
            FlowOptions(until_empty=True, tracking=tracking),
            database=db,
            live=live,
            registry=registry,
        )
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    stats = db.queue_stats()
    db.dispose()
    return len(frames) / elapsed, cpu / len(frames), metrics, stats


def _results(frames: list[Frame]) -> list[FrameResult]:
    """The same results the flow computes, for the baseline to write."""
    import asyncio

    adapter = ZeroLatencyAdapter(_provider())

    async def run_all() -> list[FrameResult]:
        return [await run_frame(f, adapter) for f in frames]

    return asyncio.run(run_all())


def _copy_text(rows: list[tuple[Any, ...]]) -> bytes:
    """COPY text format: tab-separated, \\N for NULL (our values hold no tabs or newlines)."""
    out = io.StringIO()
    for row in rows:
        out.write("\t".join("\\N" if v is None else str(v) for v in row))
        out.write("\n")
    return out.getvalue().encode()


def _baseline_rate(
    url: str, redis_url: str, prefix: str, frames: list[Frame], secret: str
) -> float:
    """Raw COPY + one Redis pipeline for the same rows and messages."""
    results = _results(frames)
    db = _open_database(url, secret, frames)
    db.dispose()
    det_rows = [detection_to_row(d) for r in results for d in r.detections]
    ev_rows = [event_to_row(e) for r in results for e in r.events]
    det_cols = list(det_rows[0])
    ev_cols = list(ev_rows[0])
    det_data = _copy_text([tuple(row[c] for c in det_cols) for row in det_rows])
    ev_data = _copy_text([tuple(row[c] for c in ev_cols) for row in ev_rows])
    now = datetime.now(UTC)
    q_data = _copy_text(
        [(r.frame.frame_id, len(r.detections), r.processing_time_ms, now) for r in results]
    )
    latest: dict[str, bytes] = {}
    messages: list[tuple[str, bytes]] = []
    stamp = datetime.now(UTC)
    for r in results:
        payload = [detection_to_row(d) | {"frame_timestamp": None} for d in r.detections]
        for row in payload:
            row["created_at"] = row["updated_at"] = None
        latest[live_key(r.frame.camera_id)] = json.dumps(payload).encode()
        # The messages the live view publishes: one per frame's detections, one per event.
        if r.detections:
            body = frame_detections_message(r.detections, published_at=stamp)
            messages.append((detections_channel(r.frame.camera_id), json.dumps(body).encode()))
        for e in r.events:
            body = event_message(e, published_at=stamp)
            messages.append((events_channel(str(e.event_type)), json.dumps(body).encode()))
    ttl_ms = round(LIVE_TTL * 1000)
    plain_url = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain_url) as conn, redis.Redis.from_url(redis_url) as client:
        start = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"COPY detections ({', '.join(det_cols)}) FROM STDIN") as copy:
                copy.write(det_data)
            with cur.copy(f"COPY detection_event_logs ({', '.join(ev_cols)}) FROM STDIN") as copy:
                copy.write(ev_data)
            cur.execute(
                "CREATE TEMP TABLE done (id text, n int, ms int, at timestamptz) ON COMMIT DROP"
            )
            with cur.copy("COPY done FROM STDIN") as copy:
                copy.write(q_data)
            cur.execute(
                "UPDATE detection_processing_queue q SET status = 'completed', "
                "detections_count = d.n, processing_time_ms = d.ms, updated_at = d.at "
                "FROM done d WHERE q.id = d.id"
            )
        pipe = client.pipeline(transaction=False)
        for key, value in latest.items():
            pipe.set(prefix + key, value, px=ttl_ms)
        for channel, message in messages:
            pipe.publish(prefix + channel, message)
        pipe.execute()
        elapsed = time.perf_counter() - start
    return len(frames) / elapsed


def cleanup_redis(redis_url: str, prefix: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=escape_glob(prefix) + "*", count=1000))
        if keys:
            client.delete(*keys)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("DETECTFLOW_REDIS_URL", "redis://127.0.0.1:6379/15"),
    )
    parser.add_argument(
        "--batch-size", type=int, default=Settings().batch_size, help="rows per claim"
    )
    parser.add_argument(
        "--in-flight", type=int, default=Settings().max_in_flight, help="provider calls at once"
    )
    args = parser.parse_args(argv)

    from cryptography.fernet import Fernet

    secret = Fernet.generate_key().decode()
    frames = bench_frames(args.frames, args.cameras)
    prefix = f"detectflow-bench-{uuid.uuid4().hex[:8]}:"
    settings = Settings(
        secret_key=secret,
        disable_plugin_autoload=True,
        redis_url=args.redis_url,
        batch_size=args.batch_size,
        max_in_flight=args.in_flight,
    )
    load_before = os.getloadavg()
    try:
        with fresh_postgres() as url:
            rate, cpu, metrics, stats = flow_rate(settings, url, args.redis_url, prefix, frames)
        with fresh_postgres() as url:
            raw = _baseline_rate(url, args.redis_url, prefix + "raw:", frames, secret)
    finally:
        cleanup_redis(args.redis_url, prefix)
    load_after = os.getloadavg()

    snap = metrics.snapshot()
    print(f"frames: {args.frames} over {args.cameras} cameras, source: SQL queue (pre-filled)")
    defaults = Settings()
    same = (args.batch_size, args.in_flight) == (defaults.batch_size, defaults.max_in_flight)
    print(
        f"settings: batch_size {args.batch_size}, max_in_flight {args.in_flight}"
        + (" (the defaults)" if same else "")
    )
    print(f"dataflow (1 worker, PostgreSQL + Redis): {rate:,.0f} frames/s")
    print(f"  CPU per frame in this process (all threads): {cpu * 1e6:.0f} us")
    print(
        f"  outcome: {stats['completed']} completed, {stats['failed']} failed, "
        f"{snap.detections} detections"
    )
    print(f"raw COPY + Redis pipeline: {raw:,.0f} frames/s")
    print(f"ratio dataflow / raw: {rate / raw:.3f}")
    print(
        "load average (1/5/15 min) before: "
        + " ".join(f"{x:.2f}" for x in load_before)
        + ", after: "
        + " ".join(f"{x:.2f}" for x in load_after)
    )
    return {"rate": rate, "cpu": cpu, "raw": raw, "ratio": rate / raw, "load": load_after}


if __name__ == "__main__":
    main()
