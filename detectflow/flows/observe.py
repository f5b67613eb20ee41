"""Watching a running dataflow: Prometheus metrics and a live status line.

The numbers come from :class:`~detectflow.flows.metrics.FlowMetrics`, read at
scrape time by a custom collector (as the server's hub gauges are), so the
flow's hot path never touches a metrics library and a scrape can never
disagree with the status line. Two ways out:

* one process with the server (``detectflow up``): :func:`register_flow_metrics`
  on the app's own ``CollectorRegistry`` (:class:`detectflow.server.metrics.Metrics`),
  and the server's ``/metrics`` shows both;
* a flow on its own (``detectflow flow run --metrics-port N``):
  :func:`serve_flow_metrics` starts prometheus_client's HTTP server on a
  registry of its own.

Series (frames/s and p50/p95 are PromQL over them)::

    detectflow_flow_frames_total{camera, outcome}  outcome: completed | failed | skipped
    detectflow_flow_detections_total
    detectflow_flow_retries_total
    detectflow_flow_provider_latency_seconds       histogram (all attempts of a frame)
    detectflow_flow_in_flight                      provider calls running now
    detectflow_flow_queue_depth{status}            pending | processing (SQL source)

    rate(detectflow_flow_frames_total[1m])                     frames/s per camera
    histogram_quantile(0.95, rate(detectflow_flow_provider_latency_seconds_bucket[5m]))
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from detectflow.core.settings import Settings
from detectflow.flows.metrics import LATENCY_BUCKETS_MS, FlowMetrics, MetricsSnapshot
from detectflow.store.outages import OutageCollector

__all__ = [
    "FlowCollector",
    "FlowStatus",
    "MetricsServer",
    "QueueDepth",
    "expected_frames",
    "register_flow_metrics",
    "serve_flow_metrics",
    "sql_queue_depth",
    "status_line",
]

log = logging.getLogger(__name__)

QueueDepth = Callable[[], Mapping[str, int]]
"""Returns frames waiting by status, e.g. ``{"pending": 12, "processing": 3}``."""

_DEPTH_STATUSES = ("pending", "processing")


def sql_queue_depth(database: Any) -> QueueDepth:
    """The SQL processing queue's depth, for ``queue_depth`` (one COUNT per scrape)."""

    def depth() -> dict[str, int]:
        stats: Mapping[str, int] = database.queue_stats()
        return {status: int(stats.get(status, 0)) for status in _DEPTH_STATUSES}

    return depth


class FlowCollector(Collector):
    """Reads a :class:`FlowMetrics` (and the queue depth, if given) at scrape time."""

    def __init__(self, metrics: FlowMetrics, *, queue_depth: QueueDepth | None = None) -> None:
        self.metrics = metrics
        self.queue_depth = queue_depth

    def collect(self) -> Iterable[Metric]:
        snap = self.metrics.snapshot()
        frames = CounterMetricFamily(
            "detectflow_flow_frames",
            "Frames written by the dataflow, per camera and outcome.",
            labels=["camera", "outcome"],
        )
        for camera, counts in sorted(self.metrics.cameras().items()):
            frames.add_metric([camera, "completed"], counts.completed)
            frames.add_metric([camera, "failed"], counts.failed)
            frames.add_metric([camera, "skipped"], counts.skipped)
        yield frames
        detections = CounterMetricFamily(
            "detectflow_flow_detections", "Detections written by the dataflow."
        )
        detections.add_metric([], snap.detections)
        yield detections
        retries = CounterMetricFamily(
            "detectflow_flow_retries", "Provider calls retried after a transient error."
        )
        retries.add_metric([], snap.retries)
        yield retries
        yield self._latency()
        yield from _reader_families(self.metrics)
        in_flight = GaugeMetricFamily("detectflow_flow_in_flight", "Provider calls running now.")
        in_flight.add_metric([], snap.in_flight)
        yield in_flight
        depth = self._depth()
        if depth is not None:
            yield depth

    def _latency(self) -> Metric:
        histogram = self.metrics.latency()
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS_MS, histogram.counts, strict=False):
            cumulative += count
            buckets.append((repr(bound / 1000), cumulative))
        buckets.append(("+Inf", histogram.total))
        family = HistogramMetricFamily(
            "detectflow_flow_provider_latency_seconds",
            "Time from a frame's first provider call to its answer, all attempts and "
            "backoff included.",
        )
        family.add_metric([], buckets, sum_value=histogram.sum_ms / 1000)
        return family

    def _depth(self) -> Metric | None:
        if self.queue_depth is None:
            return None
        try:
            counts = self.queue_depth()
        except Exception as exc:  # a scrape must not fail because the database is down
            log.warning("reading the queue depth for /metrics failed: %s", exc)
            return None
        gauge = GaugeMetricFamily(
            "detectflow_flow_queue_depth", "Frames in the queue, by status.", labels=["status"]
        )
        for status, count in sorted(counts.items()):
            gauge.add_metric([status], count)
        return gauge


def _reader_families(metrics: FlowMetrics) -> Iterable[Metric]:
    """Video cameras' readers: frames decoded, sampled (sent on) and skipped, drops, online."""
    readers = sorted(metrics.readers().items())
    if not readers:
        return
    frames = CounterMetricFamily(
        "detectflow_video_frames",
        "Frames of each video camera: decoded, sampled (handed to the flow) and skipped "
        "(decoded, never sent).",
        labels=["camera", "stage"],
    )
    dropped = CounterMetricFamily(
        "detectflow_video_dropped", "Connections lost (errors, ends, stalls).", labels=["camera"]
    )
    online = GaugeMetricFamily(
        "detectflow_video_online", "1 while the camera's frames flow.", labels=["camera"]
    )
    for camera, counts in readers:
        frames.add_metric([camera, "decoded"], counts.decoded)
        frames.add_metric([camera, "sampled"], counts.sampled)
        frames.add_metric([camera, "skipped"], counts.skipped)
        dropped.add_metric([camera], counts.dropped)
        online.add_metric([camera], 1 if counts.online else 0)
    yield from (frames, dropped, online)


def register_flow_metrics(
    registry: CollectorRegistry,
    metrics: FlowMetrics,
    *,
    queue_depth: QueueDepth | None = None,
) -> FlowCollector:
    """Add the flow's series to ``registry`` (the server's, to share its /metrics).

    Returns the collector; ``registry.unregister(collector)`` removes it.
    """
    collector = FlowCollector(metrics, queue_depth=queue_depth)
    registry.register(collector)
    return collector


class MetricsServer:
    """prometheus_client's HTTP server for a flow without the API server; close() stops it."""

    def __init__(self, server: Any, thread: threading.Thread, registry: CollectorRegistry) -> None:
        self._server = server
        self._thread = thread
        self.registry = registry

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def serve_flow_metrics(
    metrics: FlowMetrics,
    port: int,
    *,
    host: str = "127.0.0.1",
    queue_depth: QueueDepth | None = None,
) -> MetricsServer:
    """Serve the flow's metrics on ``http://host:port/`` (any path) in a daemon thread.

    ``port=0`` picks a free port (see :attr:`MetricsServer.port`). An address
    in use raises ``OSError``, before the flow starts.
    """
    registry = CollectorRegistry()
    register_flow_metrics(registry, metrics, queue_depth=queue_depth)
    registry.register(OutageCollector())  # the server's registry has its own
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread, registry)


# -- the live status line -------------------------------------------------------------


def status_line(snap: MetricsSnapshot) -> str:
    """One line: rate, outcomes, retries, latency percentiles, calls in flight."""
    latency = ""
    if snap.latency_p50_ms is not None and snap.latency_p95_ms is not None:
        latency = f" | p50 {snap.latency_p50_ms:.0f} ms, p95 {snap.latency_p95_ms:.0f} ms"
    return (
        f"{snap.frames_per_second:,.1f} frames/s | {snap.completed:,} ok, "
        f"{snap.failed:,} failed, {snap.skipped:,} skipped | {snap.retries:,} retries"
        f"{latency} | {snap.in_flight} in flight"
    )


class FlowStatus:
    """A Rich progress line for ``detectflow flow run``, refreshed from the counters.

    With ``total`` (a finite source: a folder, or the queue with
    ``--until-empty``) it is a progress bar with done/total; without, the
    bar pulses. On a console that is not a terminal (a log file, CI) Rich
    draws nothing live and prints the final line once, at the end.
    """

    def __init__(
        self,
        metrics: FlowMetrics,
        *,
        total: int | None = None,
        console: Console | None = None,
        refresh_seconds: float = 0.5,
    ) -> None:
        self.metrics = metrics
        self.total = total
        self.console = console or Console(stderr=True)
        self.refresh_seconds = refresh_seconds
        self._progress = Progress(
            TextColumn("[bold]flow[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[line]}"),
            TimeElapsedColumn(),
            console=self.console,
            auto_refresh=False,
        )
        self._task = self._progress.add_task("flow", total=total, line="starting")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> MetricsSnapshot:
        """Redraw from the counters now; returns the snapshot drawn."""
        snap = self.metrics.snapshot()
        self._progress.update(self._task, completed=snap.frames, line=status_line(snap))
        self._progress.refresh()
        return snap

    def __enter__(self) -> Self:
        self._progress.start()
        self._thread = threading.Thread(target=self._run, name="detectflow-status", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.refresh()
        self._progress.stop()


def expected_frames(source_url: str, settings: Settings, database: Any = None) -> int | None:
    """How many frames a finite run will write, for the progress bar; None if unknown.

    A folder replay without ``loop=1`` has one frame per image file; the SQL
    queue with ``--until-empty`` has its pending rows (pass ``database``).
    Anything else is unbounded or unknowable in advance.
    """
    scheme = urlsplit(source_url).scheme or source_url.strip().rstrip(":/")
    if scheme == "file":
        from detectflow.flows.source_file import list_cameras, parse_file_source_url

        if Path(unquote(urlsplit(source_url).path)).is_file():
            return None  # a video: its sampled frames are not known in advance

        options = parse_file_source_url(source_url, settings)
        if options.loop:
            return None
        return sum(len(camera.files) for camera in list_cameras(options.folder))
    if scheme == "sql" and database is not None:
        return int(database.queue_stats().get("pending", 0))
    return None
