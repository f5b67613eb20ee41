"""The live counters."""

from __future__ import annotations

import threading

from detectflow.core.pipeline import failed_result
from detectflow.flows.metrics import FlowMetrics
from tests.flows.conftest import frames


def test_counts_failures_retries_and_in_flight() -> None:
    metrics = FlowMetrics()
    frame = frames(1)[0]
    metrics.record([failed_result(frame, "x", attempts=4), failed_result(frame, "y")])
    metrics.set_in_flight(3)
    snap = metrics.snapshot()
    assert (snap.frames, snap.failed, snap.retries, snap.in_flight) == (2, 2, 3, 3)
    assert snap.frames_per_second > 0
    assert "2 failed" in metrics.summary()
    assert "3 retries" in metrics.summary()
    assert "3 in flight" in metrics.summary()


def test_concurrent_updates_are_not_lost() -> None:
    metrics = FlowMetrics()
    result = failed_result(frames(1)[0], "x")

    def hammer() -> None:
        for _ in range(500):
            metrics.record([result])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert metrics.snapshot().failed == 2000
