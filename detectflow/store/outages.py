"""What outages of the shared cache and bus cost this process, counted.

The live view (:mod:`detectflow.store.live`) never lets an unreachable cache
or bus fail its caller: a read becomes a miss, which the database answers,
and a write is dropped (its data would be seconds old by the time Redis is
back, and expires in seconds anyway). Dropping silently would hide an
outage, so each one is counted here and read by Prometheus at scrape time
(:class:`OutageCollector`, registered by the server's metrics and by a
flow's own exporter):

    detectflow_live_dropped_total{what}      what: frames | messages
        frames whose live entries were not written / bus messages not published
    detectflow_cache_unavailable_total{operation}
        cache and bus calls that failed, by what the live view was doing

The counts are per process, like every other Prometheus counter, whichever
live views, servers or flows in it were hit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["OUTAGES", "OutageCollector", "OutageCounts"]


class OutageCounts:
    """Thread-safe counters of what outages dropped or sent elsewhere."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dropped: dict[str, int] = {}
        self._failed: dict[str, int] = {}

    def dropped(self, what: str, count: int) -> None:
        """``count`` live items of kind ``what`` (frames, messages) were not published."""
        if count:
            with self._lock:
                self._dropped[what] = self._dropped.get(what, 0) + count

    def failed(self, operation: str) -> None:
        """One cache or bus call made for ``operation`` failed."""
        with self._lock:
            self._failed[operation] = self._failed.get(operation, 0) + 1

    def dropped_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._dropped)

    def failed_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._failed)


OUTAGES = OutageCounts()
"""This process's counts (live views report here unless given counts of their own)."""


class OutageCollector(Collector):
    """Reads :class:`OutageCounts` at scrape time; register it once per registry."""

    def __init__(self, counts: OutageCounts = OUTAGES) -> None:
        self.counts = counts

    def collect(self) -> Iterable[Metric]:
        dropped = CounterMetricFamily(
            "detectflow_live_dropped",
            "Live updates dropped because the cache or bus was unreachable: frames whose "
            "live entries were not written, bus messages not published.",
            labels=["what"],
        )
        counts = self.counts.dropped_counts()
        for what in ("frames", "messages"):
            dropped.add_metric([what], counts.get(what, 0))
        yield dropped
        failed = CounterMetricFamily(
            "detectflow_cache_unavailable",
            "Cache and bus calls that failed (Redis unreachable or refusing), by operation; "
            "reads then fell back to the database, writes were dropped.",
            labels=["operation"],
        )
        for operation, count in sorted(self.counts.failed_counts().items()):
            failed.add_metric([operation], count)
        yield failed
