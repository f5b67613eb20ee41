"""Prometheus metrics of the flow, the live status line and the expected frame count."""

from __future__ import annotations

import dataclasses
import io
import socket
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from detectflow import Settings
from detectflow.core.models import FrameResult
from detectflow.core.pipeline import failed_result
from detectflow.core.plugins import PluginRegistry
from detectflow.flows import FlowOptions, run_flow
from detectflow.flows.engine import skipped_result
from detectflow.flows.metrics import LATENCY_BUCKETS_MS, FlowMetrics, LatencyHistogram
from detectflow.flows.observe import (
    FlowStatus,
    expected_frames,
    register_flow_metrics,
    serve_flow_metrics,
    sql_queue_depth,
    status_line,
)
from detectflow.samples import sample_frame
from detectflow.server.metrics import Metrics
from detectflow.store import Database
from tests.flows.conftest import activate, enqueue, frames, person


def ok_result(camera: str, ms: int, number: int = 0, detections: int = 0) -> FrameResult:
    frame = dataclasses.replace(frames(1)[0], camera_id=camera, frame_id=f"{camera}-{number}")
    base = failed_result(frame, "x", attempts=1, elapsed_ms=ms)
    return dataclasses.replace(base, error=None, events=())


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_frames_are_counted_per_camera_and_outcome() -> None:
    metrics = FlowMetrics()
    frame = frames(1)[0]
    metrics.record(
        [
            ok_result("cam-a", 5, 1),
            ok_result("cam-a", 5, 2),
            ok_result("cam-b", 5, 3),
            failed_result(dataclasses.replace(frame, camera_id="cam-b"), "boom", attempts=4),
            skipped_result(dataclasses.replace(frame, camera_id="cam-a"), backlog=2),
        ]
    )
    registry = CollectorRegistry()
    register_flow_metrics(registry, metrics)
    got = samples(registry)
    frames_total = "detectflow_flow_frames_total"
    assert got[(frames_total, (("camera", "cam-a"), ("outcome", "completed")))] == 2
    assert got[(frames_total, (("camera", "cam-a"), ("outcome", "skipped")))] == 1
    assert got[(frames_total, (("camera", "cam-b"), ("outcome", "completed")))] == 1
    assert got[(frames_total, (("camera", "cam-b"), ("outcome", "failed")))] == 1
    assert got[("detectflow_flow_retries_total", ())] == 3


def test_latency_histogram_is_cumulative_in_seconds_and_skips_uncalled_frames() -> None:
    metrics = FlowMetrics()
    metrics.record([ok_result("c", ms) for ms in (1, 3, 3, 40, 7000)])
    # A skipped frame never reached a provider: it has no latency to count.
    metrics.record([skipped_result(frames(1)[0], backlog=1)])
    registry = CollectorRegistry()
    register_flow_metrics(registry, metrics)
    got = samples(registry)
    bucket = "detectflow_flow_provider_latency_seconds_bucket"
    assert got[(bucket, (("le", "0.001"),))] == 1
    assert got[(bucket, (("le", "0.005"),))] == 3
    assert got[(bucket, (("le", "0.05"),))] == 4
    assert got[(bucket, (("le", "5.0"),))] == 4
    assert got[(bucket, (("le", "10.0"),))] == 5
    assert got[(bucket, (("le", "+Inf"),))] == 5
    assert got[("detectflow_flow_provider_latency_seconds_count", ())] == 5
    assert got[("detectflow_flow_provider_latency_seconds_sum", ())] == pytest.approx(7.047)


def test_snapshot_carries_p50_and_p95_estimated_from_the_buckets() -> None:
    metrics = FlowMetrics()
    metrics.record([ok_result("c", 20, i) for i in range(95)] + [ok_result("c", 900)] * 5)
    snap = metrics.snapshot()
    assert snap.latency_p50_ms is not None and 10 < snap.latency_p50_ms <= 25
    assert snap.latency_p95_ms is not None and snap.latency_p95_ms <= 25
    assert "p50" in status_line(snap)
    assert FlowMetrics().snapshot().latency_p50_ms is None


@given(
    st.lists(
        st.integers(0, 50),
        min_size=len(LATENCY_BUCKETS_MS) + 1,
        max_size=len(LATENCY_BUCKETS_MS) + 1,
    ),
    st.floats(0, 1),
    st.floats(0, 1),
)
def test_quantiles_are_monotonic_and_within_the_buckets(
    counts: list[int], q1: float, q2: float
) -> None:
    histogram = LatencyHistogram(tuple(counts), 0.0)
    low, high = sorted((q1, q2))
    a, b = histogram.quantile(low), histogram.quantile(high)
    if sum(counts) == 0:
        assert a is None and b is None
        return
    assert a is not None and b is not None
    assert 0.0 <= a <= b <= LATENCY_BUCKETS_MS[-1]


def test_quantile_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="quantile"):
        LatencyHistogram((1,) * (len(LATENCY_BUCKETS_MS) + 1), 0.0).quantile(1.5)


def test_queue_depth_reads_the_real_queue(sqlite_db: Database) -> None:
    enqueue(sqlite_db, 4)
    sqlite_db.claim(1)
    registry = CollectorRegistry()
    register_flow_metrics(registry, FlowMetrics(), queue_depth=sql_queue_depth(sqlite_db))
    got = samples(registry)
    assert got[("detectflow_flow_queue_depth", (("status", "pending"),))] == 3
    assert got[("detectflow_flow_queue_depth", (("status", "processing"),))] == 1


def test_a_failing_queue_depth_leaves_the_rest_of_the_scrape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def down() -> dict[str, int]:
        raise ConnectionError("database is down")

    registry = CollectorRegistry()
    register_flow_metrics(registry, FlowMetrics(), queue_depth=down)
    got = samples(registry)
    assert ("detectflow_flow_in_flight", ()) in got
    assert not any(name == "detectflow_flow_queue_depth" for name, _ in got)
    assert "database is down" in caplog.text


def test_flow_series_share_the_servers_registry_without_clashing() -> None:
    app_metrics = Metrics()
    metrics = FlowMetrics()
    metrics.record([ok_result("cam-1", 3)])
    collector = register_flow_metrics(app_metrics.registry, metrics)
    text = app_metrics.render().decode()
    assert "detectflow_flow_frames_total" in text
    assert "detectflow_http_request_duration_seconds" in text
    app_metrics.registry.unregister(collector)
    assert "detectflow_flow_frames_total" not in app_metrics.render().decode()


def test_metrics_port_serves_over_http_until_closed() -> None:
    metrics = FlowMetrics()
    metrics.record([ok_result("cam-http", 12)])
    with serve_flow_metrics(metrics, 0) as server:
        port = server.port
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert response.status_code == 200
        assert 'detectflow_flow_frames_total{camera="cam-http",outcome="completed"} 1.0' in (
            response.text
        )
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_metrics_port_in_use_fails_before_the_flow_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="in use"):
            serve_flow_metrics(FlowMetrics(), taken.getsockname()[1])


def test_a_real_flow_is_counted_per_camera(
    settings: Settings, sqlite_db: Database, registry: PluginRegistry
) -> None:
    activate(sqlite_db, person)
    enqueue(sqlite_db, 9, cameras=("north", "south", "east"))
    metrics = run_flow(
        settings, FlowOptions(until_empty=True), database=sqlite_db, registry=registry
    )
    collector_registry = CollectorRegistry()
    register_flow_metrics(collector_registry, metrics, queue_depth=sql_queue_depth(sqlite_db))
    got = samples(collector_registry)
    for camera in ("north", "south", "east"):
        key = ("detectflow_flow_frames_total", (("camera", camera), ("outcome", "completed")))
        assert got[key] == 3
    assert got[("detectflow_flow_detections_total", ())] == 18
    assert got[("detectflow_flow_provider_latency_seconds_count", ())] == 9
    assert got[("detectflow_flow_queue_depth", (("status", "pending"),))] == 0


def test_status_line_shows_progress_against_the_total() -> None:
    out = io.StringIO()
    metrics = FlowMetrics()
    console = Console(file=out, force_terminal=False, width=200)
    with FlowStatus(metrics, total=4, console=console, refresh_seconds=0.01):
        metrics.record([ok_result("c", 3, i) for i in range(3)])
        time.sleep(0.05)
    text = out.getvalue()
    assert "3/4" in text
    assert "3 ok, 0 failed, 0 skipped" in text


def test_status_line_without_a_total_still_counts() -> None:
    out = io.StringIO()
    metrics = FlowMetrics()
    with FlowStatus(metrics, console=Console(file=out, force_terminal=False, width=200)):
        metrics.record([failed_result(frames(1)[0], "nope", attempts=2)])
    assert "1 failed" in out.getvalue()
    assert "1 retries" in out.getvalue()


def test_expected_frames_of_a_folder_counts_its_images(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, disable_plugin_autoload=True)
    for camera, count in (("cam-1", 2), ("cam-2", 3)):
        folder = tmp_path / "replay" / camera
        folder.mkdir(parents=True)
        for i in range(count):
            (folder / f"{i:03}.png").write_bytes(sample_frame(camera, i, 16, 12))
    url = f"file://{tmp_path / 'replay'}"
    assert expected_frames(url, settings) == 5
    assert expected_frames(url + "?loop=1", settings) is None


def test_expected_frames_of_the_queue_is_its_pending_rows(
    settings: Settings, sqlite_db: Database
) -> None:
    enqueue(sqlite_db, 7)
    assert expected_frames("sql", settings, sqlite_db) == 7
    assert expected_frames("sql", settings) is None
    assert expected_frames("redis://127.0.0.1:6379/0?stream=s", settings) is None
