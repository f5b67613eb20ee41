"""Live counters of a running dataflow.

The demo prints them as one line while the flow runs, and the benchmark and
tests read them when it ends. Bytewax workers, the engine's event loop and
the printing thread all touch them, so every update takes one lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from detectflow.core.models import FrameResult

__all__ = ["FlowMetrics", "MetricsSnapshot"]


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

    def summary(self) -> str:
        return (
            f"{self.frames_per_second:7.1f} frames/s | {self.completed} completed, "
            f"{self.failed} failed, {self.detections} detections, {self.retries} retries, "
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
        self.detections = 0
        self.retries = 0
        self.in_flight = 0

    def record(self, results: Iterable[FrameResult]) -> None:
        """Count frames once they are written; a frame's retries are its attempts past one."""
        completed = failed = detections = retries = 0
        for result in results:
            if result.ok:
                completed += 1
            else:
                failed += 1
            detections += len(result.detections)
            retries += max(0, result.attempts - 1)
        now = time.monotonic()
        with self._lock:
            self.completed += completed
            self.failed += failed
            self.detections += detections
            self.retries += retries
            self._recent.append((now, completed + failed))
            self._trim(now)

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
            return MetricsSnapshot(
                frames=self.completed + self.failed,
                completed=self.completed,
                failed=self.failed,
                detections=self.detections,
                retries=self.retries,
                in_flight=self.in_flight,
                frames_per_second=recent / span if span > 0 else 0.0,
                elapsed_seconds=elapsed,
            )

    def summary(self) -> str:
        """The one-line live summary the demo prints."""
        return self.snapshot().summary()
