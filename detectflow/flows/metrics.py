"""Live counters of a running dataflow.

The demo prints them as one line while the flow runs, and the benchmark and
tests read them when it ends. Bytewax workers, the engine's event loop and
the printing thread all touch them, so every update takes one lock.

Prometheus reads the same counters at scrape time
(:mod:`detectflow.flows.observe`), so this module stays free of any metrics
library. Provider latency is kept as histogram buckets
(:data:`LATENCY_BUCKETS_MS`), which is what lets Prometheus derive p50/p95
over any range; :meth:`FlowMetrics.latency_quantile` estimates the same way
for the live status line.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from detectflow.core.models import EventType, FrameResult
from detectflow.video.counts import ReaderCounts

__all__ = [
    "LATENCY_BUCKETS_MS",
    "CameraCounts",
    "FlowMetrics",
    "LatencyHistogram",
    "MetricsSnapshot",
]

LATENCY_BUCKETS_MS = (
    1.0,
    2.5,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
    30000.0,
)
"""Upper bounds of the provider latency buckets; one more bucket holds the rest."""


@dataclass(frozen=True, slots=True)
class CameraCounts:
    """One camera's frames by outcome, since the flow started."""

    completed: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class LatencyHistogram:
    """Provider latency (a frame's ``processing_time_ms``: all attempts, with backoff).

    ``counts[i]`` frames took at most ``LATENCY_BUCKETS_MS[i]`` and more than the
    bound before; the last count is everything above the last bound.
    """

    counts: tuple[int, ...]
    sum_ms: float

    @property
    def total(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """Estimated like Prometheus' ``histogram_quantile``: linear within a bucket."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        total = self.total
        if total == 0:
            return None
        rank = q * total
        seen = 0
        lower = 0.0
        for bound, count in zip(LATENCY_BUCKETS_MS, self.counts, strict=False):
            if count and seen + count >= rank:
                return lower + (bound - lower) * (rank - seen) / count
            seen += count
            lower = bound
        return LATENCY_BUCKETS_MS[-1]  # above the last bound: that bound is all we know


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """The counters at one instant; ``frames_per_second`` is over the recent window."""

    frames: int
    completed: int
    failed: int
    detections: int
    retries: int
    in_flight: int
    frames_per_second: float
    elapsed_seconds: float
    skipped: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None

    def summary(self) -> str:
        return (
            f"{self.frames_per_second:7.1f} frames/s | {self.completed} completed, "
            f"{self.failed} failed, {self.skipped} skipped, {self.detections} detections, "
            f"{self.retries} retries, "
            f"{self.in_flight} in flight"
        )


class FlowMetrics:
    """Thread-safe counters, updated by the sinks (what was written) and the engine."""

    def __init__(self, *, window_seconds: float = 5.0) -> None:
        self._lock = threading.Lock()
        self._window = window_seconds
        self._started = time.monotonic()
        self._recent: deque[tuple[float, int]] = deque()
        self.completed = 0
        self.failed = 0
        self.skipped = 0
        self.detections = 0
        self.retries = 0
        self.in_flight = 0
        self._cameras: dict[str, list[int]] = {}
        self._latency = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self._latency_sum_ms = 0.0
        self._readers: list[Callable[[], Mapping[str, ReaderCounts]]] = []

    def watch_readers(self, counts: Callable[[], Mapping[str, ReaderCounts]]) -> None:
        """Read camera readers' counters (a video source's) whenever they are asked for."""
        with self._lock:
            self._readers.append(counts)

    def readers(self) -> dict[str, ReaderCounts]:
        """Each camera reader's decoded/sampled/skipped/dropped counts, by camera."""
        with self._lock:
            sources = list(self._readers)
        found: dict[str, ReaderCounts] = {}
        for counts in sources:
            found.update(counts())
        return found

    def record(self, results: Iterable[FrameResult]) -> None:
        """Count frames once they are written; a frame's retries are its attempts past one."""
        completed = failed = skipped = detections = retries = 0
        for result in results:
            if result.ok:
                completed += 1
            elif any(e.event_type == EventType.FRAME_SKIPPED for e in result.events):
                skipped += 1
            else:
                failed += 1
            detections += len(result.detections)
            retries += max(0, result.attempts - 1)
        now = time.monotonic()
        with self._lock:
            self._count_cameras_and_latency(results)
            self.completed += completed
            self.failed += failed
            self.skipped += skipped
            self.detections += detections
            self.retries += retries
            self._recent.append((now, completed + failed + skipped))
            self._trim(now)

    def _count_cameras_and_latency(self, results: Iterable[FrameResult]) -> None:
        """Per camera and per latency bucket; the caller holds the lock."""
        for result in results:
            counts = self._cameras.get(result.frame.camera_id)
            if counts is None:
                counts = self._cameras[result.frame.camera_id] = [0, 0, 0]
            if result.ok:
                counts[0] += 1
            elif any(e.event_type == EventType.FRAME_SKIPPED for e in result.events):
                counts[2] += 1
            else:
                counts[1] += 1
            if result.attempts > 0:  # a provider was called (not skipped, not invalid)
                elapsed = float(result.processing_time_ms)
                self._latency[bisect.bisect_left(LATENCY_BUCKETS_MS, elapsed)] += 1
                self._latency_sum_ms += elapsed

    def cameras(self) -> dict[str, CameraCounts]:
        """Frames per camera by outcome (a copy)."""
        with self._lock:
            return {camera: CameraCounts(*counts) for camera, counts in self._cameras.items()}

    def latency(self) -> LatencyHistogram:
        with self._lock:
            return LatencyHistogram(tuple(self._latency), self._latency_sum_ms)

    def set_in_flight(self, count: int) -> None:
        with self._lock:
            self.in_flight = count

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - self._window:
            self._recent.popleft()

    def snapshot(self) -> MetricsSnapshot:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            elapsed = now - self._started
            span = min(self._window, elapsed)
            recent = sum(n for _, n in self._recent)
            latency = LatencyHistogram(tuple(self._latency), self._latency_sum_ms)
            return MetricsSnapshot(
                frames=self.completed + self.failed + self.skipped,
                completed=self.completed,
                failed=self.failed,
                skipped=self.skipped,
                detections=self.detections,
                retries=self.retries,
                in_flight=self.in_flight,
                frames_per_second=recent / span if span > 0 else 0.0,
                elapsed_seconds=elapsed,
                latency_p50_ms=latency.quantile(0.5),
                latency_p95_ms=latency.quantile(0.95),
            )

    def summary(self) -> str:
        """The one-line live summary the demo prints."""
        return self.snapshot().summary()
