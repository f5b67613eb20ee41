"""Dataflow workers' heartbeats: written by each worker, read by ``/api/v1/health``.

Both directions of one small protocol, so what a worker writes the server
reads by construction. A heartbeat lives in the cache (Redis when the
deployment shares one, else the in-process twin of the one-process runner),
not in SQL: it needs no migration, a crashed worker's entry expires by
itself, and the cache is where the server already reads the dataflow's
live state. The price: while the cache is unreachable the server cannot tell
whether the workers run, and says so (``degraded``) rather than guessing.

Keys: ``heartbeat:{worker}`` holds one worker's last beat, and
``heartbeat:workers`` indexes the workers seen within ``HEARTBEAT_TTL``
(cache has no key scan). The index is read-modify-written by every worker;
two workers starting in the same instant may drop one another from it, and
the loser puts itself back on its next beat, ``HEARTBEAT_INTERVAL`` later.

Who beats: every source built on :class:`~detectflow.flows.dataflow.ReaderSource`
(all the built-in ones) beats from its partition's poll. A plugin's own
Bytewax source writes no heartbeat, so its flow shows no workers.

Cost: a worker calls :meth:`Heartbeat.beat` on every poll of its source; all
but one call per ``HEARTBEAT_INTERVAL`` return after one clock read. The
write itself is two round trips every five seconds per worker.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from detectflow.core.errors import DetectflowError
from detectflow.core.frames import parse_timestamp
from detectflow.core.models import utcnow
from detectflow.core.serialize import isoformat
from detectflow.store.cache import Cache, CacheUnavailableError
from detectflow.store.entries import dump_entry as _dumps
from detectflow.store.entries import load_entry as _loads
from detectflow.store.outages import OUTAGES, OutageCounts

__all__ = [
    "HEARTBEAT_INDEX_KEY",
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_STALE",
    "HEARTBEAT_TTL",
    "Heartbeat",
    "WorkerBeat",
    "heartbeat_key",
    "read_heartbeats",
]

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 5.0
"""A worker writes its heartbeat at most this often (seconds)."""
HEARTBEAT_STALE = 3 * HEARTBEAT_INTERVAL
"""A worker silent this long is reported down: three beats missed, not one late write."""
HEARTBEAT_TTL = 120.0
"""A worker silent this long is forgotten (one that stops cleanly is forgotten at once)."""
HEARTBEAT_INDEX_KEY = "heartbeat:workers"


def heartbeat_key(worker: str) -> str:
    return f"heartbeat:{worker}"


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    """One worker's last heartbeat."""

    worker: str
    """``host/pid/w{index}``: unique per running worker, readable by an operator."""
    host: str
    pid: int
    worker_index: int
    worker_count: int
    started_at: datetime
    beat_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "host": self.host,
            "pid": self.pid,
            "worker_index": self.worker_index,
            "worker_count": self.worker_count,
            "started_at": isoformat(self.started_at),
            "beat_at": isoformat(self.beat_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkerBeat | None:
        """None for an entry this version cannot read (treated as missing)."""
        try:
            return cls(
                worker=str(data["worker"]),
                host=str(data["host"]),
                pid=int(data["pid"]),
                worker_index=int(data["worker_index"]),
                worker_count=int(data["worker_count"]),
                started_at=parse_timestamp(str(data["started_at"])),
                beat_at=parse_timestamp(str(data["beat_at"])),
            )
        except (KeyError, TypeError, ValueError, DetectflowError):
            return None


class Heartbeat:
    """One dataflow worker's heartbeat writer.

    Call :meth:`beat` from the worker's own loop (so a stuck worker stops
    beating) as often as convenient; :meth:`stop` when the worker ends
    cleanly. Neither raises for an unreachable cache: a missed beat is
    counted and the next one tries again.
    """

    def __init__(
        self,
        cache: Cache,
        *,
        worker_index: int,
        worker_count: int,
        interval: float = HEARTBEAT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        outages: OutageCounts = OUTAGES,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self._cache = cache
        self._interval = interval
        self._clock = clock
        self._outages = outages
        self._next = 0.0
        host = socket.gethostname()
        pid = os.getpid()
        self.worker = f"{host}/{pid}/w{worker_index}"
        self._beat = WorkerBeat(
            worker=self.worker,
            host=host,
            pid=pid,
            worker_index=worker_index,
            worker_count=worker_count,
            started_at=utcnow(),
            beat_at=utcnow(),
        )
        self.writes = 0
        """Heartbeats written (for tests: the rate limit at work)."""

    def beat(self) -> None:
        """Write the heartbeat if ``interval`` has passed since the last write."""
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self._interval
        try:
            self._write()
        except CacheUnavailableError as exc:
            self._outages.failed("heartbeat")
            log.debug("heartbeat of %s not written: %s", self.worker, exc)

    def stop(self) -> None:
        """Forget this worker (it ended cleanly, so it is not down)."""
        try:
            index = _index(self._cache)
            index.pop(self.worker, None)
            self._cache.set_many({HEARTBEAT_INDEX_KEY: _dumps(index)}, HEARTBEAT_TTL)
            self._cache.delete(heartbeat_key(self.worker))
        except CacheUnavailableError as exc:
            log.debug("heartbeat of %s not removed: %s", self.worker, exc)

    def _write(self) -> None:
        stamp = utcnow()
        beat = dataclasses.replace(self._beat, beat_at=stamp)
        self._beat = beat
        index = _index(self._cache)
        index[self.worker] = isoformat(stamp)
        cutoff = stamp.timestamp() - HEARTBEAT_TTL
        index = {w: t for w, t in index.items() if _epoch(t) >= cutoff}
        entries = {heartbeat_key(self.worker): beat.as_dict(), HEARTBEAT_INDEX_KEY: index}
        self._cache.set_many({k: _dumps(v) for k, v in entries.items()}, HEARTBEAT_TTL)
        self.writes += 1


def read_heartbeats(cache: Cache) -> list[WorkerBeat]:
    """Every worker that beat within ``HEARTBEAT_TTL``, by worker name.

    Raises :class:`~detectflow.store.cache.CacheUnavailableError` when the
    cache cannot be read: the caller must not mistake that for "no workers".
    """
    index = _index(cache)
    workers = sorted(index)
    beats: list[WorkerBeat] = []
    for raw in cache.get_many([heartbeat_key(w) for w in workers]) if workers else []:
        data = _loads(raw)
        beat = WorkerBeat.from_dict(data) if isinstance(data, dict) else None
        if beat is not None:
            beats.append(beat)
    return beats


def _index(cache: Cache) -> dict[str, str]:
    value = _loads(cache.get(HEARTBEAT_INDEX_KEY))
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def _epoch(text: str) -> float:
    try:
        return parse_timestamp(text).timestamp()
    except (ValueError, DetectflowError):
        return 0.0
