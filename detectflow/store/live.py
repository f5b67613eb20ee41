"""The live view: what each camera sees right now, in the cache and on the bus.

The one place that knows key names, TTLs and channel names, so the dataflow
(writer) and the server (reader) cannot drift apart. The TTLs are the
guide's: live detections 3 s, camera state 60 s, statistics 300 s.

Bus messages. A frame's detections travel as ONE message on
``detections:{camera_id}``, a compact
:func:`~detectflow.core.serialize.frame_detections_message`; the server's hub
(:mod:`detectflow.server.hub`) expands it into the per-detection WebSocket
``detection`` messages clients see. Each event is one ``event`` message on
``events:{event_type}``; each object event (``object_started`` / ``_updated`` /
``_ended``) one ``object`` message with ``before`` and ``after`` on
``events:{its type}``, after the frame's events. Messages keep the order
of the frames and, within a frame, detections come before events. Every message carries the batch's
``published_at``.

Outages. Nothing here raises because the cache or bus is unreachable
(:class:`~detectflow.store.cache.CacheUnavailableError`): a read is a miss,
so the server answers from the database (``/live`` says ``cache_hit:
false``); a write is dropped, since a live view re-sent after the outage
would be stale and expires in seconds anyway. (A lost connection is first
retried once on a fresh one by the Redis client.) Each drop is counted in
:mod:`detectflow.store.outages` (Prometheus) and logged as a warning at most
every ``WARN_EVERY`` seconds per kind, so a recorder or sink that calls
:meth:`LiveView.publish` after storing its rows never fails for it.
Statistics entries whose invalidation failed are invalidated again on the
next call, so a dashboard does not keep stale numbers once Redis is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

import anyio
import anyio.to_thread

from detectflow.core.camera_status import CameraStatus
from detectflow.core.errors import DetectflowError
from detectflow.core.frames import parse_timestamp
from detectflow.core.models import Detection, DetectionEvent, FrameResult, utcnow
from detectflow.core.object_records import object_message
from detectflow.core.serialize import (
    detection_to_dict,
    event_message,
    frame_detections_message,
    isoformat,
)
from detectflow.store.cache import Bus, Cache, CacheUnavailableError
from detectflow.store.camera_status import CameraStatusBoard, read_camera_statuses
from detectflow.store.entries import dump_entry as _dumps
from detectflow.store.entries import load_entry as _loads
from detectflow.store.heartbeat import Heartbeat, WorkerBeat, read_heartbeats
from detectflow.store.memory import MemoryCache
from detectflow.store.outages import OUTAGES, OutageCounts

__all__ = [
    "BREAKER_TTL",
    "CAMERA_INDEX_KEY",
    "CAMERA_STATE_TTL",
    "LIVE_TTL",
    "SHARED_READ_SECONDS",
    "STATS_ALL_KEY",
    "STATS_TTL",
    "WARN_EVERY",
    "LiveSnapshot",
    "LiveView",
    "SharedLiveReads",
    "StatsView",
    "breaker_key",
    "camera_key",
    "detections_channel",
    "events_channel",
    "live_key",
    "stats_key",
]

LIVE_TTL = 3.0
CAMERA_STATE_TTL = 60.0
STATS_TTL = 300.0
BREAKER_TTL = 300.0
WARN_EVERY = 30.0
"""Seconds between two warnings about the same kind of dropped live update."""
SHARED_READ_SECONDS = 0.15
"""How long one read of a shared (Redis) live entry serves every reader in a
process: far inside ``LIVE_TTL``, and below what a polling client can tell."""
"""A provider's breaker state stays this long after its last change or refresh."""

CAMERA_INDEX_KEY = "live:cameras"
STATS_ALL_KEY = "stats"
"""Statistics over every camera; ``stats:{camera_id}`` holds one camera's."""


log = logging.getLogger(__name__)


def live_key(camera_id: str) -> str:
    return f"live:{camera_id}"


def breaker_key(provider_id: str) -> str:
    return f"breaker:{provider_id}"


def camera_key(camera_id: str) -> str:
    return f"camera:{camera_id}"


def stats_key(camera_id: str | None) -> str:
    return STATS_ALL_KEY if camera_id is None else f"stats:{camera_id}"


def detections_channel(camera_id: str) -> str:
    return f"detections:{camera_id}"


def events_channel(event_type: str) -> str:
    return f"events:{event_type}"


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    """The latest detections of one camera, or of every camera seen lately."""

    camera_ids: tuple[str, ...]
    detections: list[dict[str, Any]]
    last_updated: datetime | None


class _OutageLog:
    """Counts failed cache and bus calls and warns about them, at most every
    ``WARN_EVERY`` seconds per operation (an outage must not flood the log)."""

    def __init__(self, counts: OutageCounts, clock: Callable[[], float] = time.monotonic) -> None:
        self.counts = counts
        self._clock = clock
        self._lock = threading.Lock()
        self._next_warning: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def failed(self, operation: str, exc: CacheUnavailableError, what: str) -> None:
        """``operation`` failed with ``exc``; ``what`` says what was given up."""
        self.counts.failed(operation)
        now = self._clock()
        with self._lock:
            if now < self._next_warning.get(operation, 0.0):
                self._quiet[operation] = self._quiet.get(operation, 0) + 1
                return
            self._next_warning[operation] = now + WARN_EVERY
            quiet = self._quiet.pop(operation, 0)
        more = f" ({quiet} more since the last warning)" if quiet else ""
        log.warning("live view: %s failed, %s: %s%s", operation, what, exc, more)


class StatsView:
    """Cached statistics: the server fills it on a miss, the dataflow's stats sink
    invalidates a camera's entry (and the all-cameras one) when its windows change,
    so a dashboard sees new windows at once and an idle one costs no SQL for
    ``STATS_TTL``. With the cache unreachable every call degrades: ``get`` is a
    miss, ``put`` does nothing, and ``invalidate`` is retried on the next call."""

    def __init__(self, cache: Cache, outages: _OutageLog | None = None) -> None:
        self._cache = cache
        self._outages = outages or _OutageLog(OUTAGES)
        self._lock = threading.Lock()
        self._stale: set[str] = set()
        """Statistics keys whose invalidation failed: deleted on the next call."""

    def get(self, camera_id: str | None) -> dict[str, Any] | None:
        try:
            self._retry_invalidation()
            value = _loads(self._cache.get(stats_key(camera_id)))
        except CacheUnavailableError as exc:
            self._outages.failed("read_stats", exc, "the database answers")
            return None
        return value if isinstance(value, dict) else None

    def put(self, camera_id: str | None, data: dict[str, Any], ttl: float = STATS_TTL) -> None:
        try:
            self._cache.set_many({stats_key(camera_id): _dumps(data)}, min(ttl, STATS_TTL))
        except CacheUnavailableError as exc:
            self._outages.failed("write_stats", exc, "not cached")

    def invalidate(self, camera_ids: Iterable[str]) -> None:
        keys = {stats_key(camera) for camera in camera_ids}
        keys.add(STATS_ALL_KEY)
        with self._lock:
            self._stale |= keys
        self._retry_invalidation()

    def _retry_invalidation(self) -> None:
        with self._lock:
            keys, self._stale = self._stale, set()
        # The all-cameras entry goes last: a reader that refills it meanwhile reads
        # cameras already invalidated.
        for key in sorted(keys, key=lambda k: (k == STATS_ALL_KEY, k)):
            try:
                self._cache.delete(key)
            except CacheUnavailableError as exc:
                with self._lock:
                    self._stale |= keys
                self._outages.failed("invalidate_stats", exc, "retried on the next call")
                return
            keys.discard(key)


class LiveView:
    """Writes processed frames to the cache and bus; reads the live snapshot back."""

    def __init__(self, cache: Cache, bus: Bus, *, outages: OutageCounts = OUTAGES) -> None:
        self._cache = cache
        self._bus = bus
        self._outages = _OutageLog(outages)
        self.stats = StatsView(cache, self._outages)
        self.backend = "in_process" if isinstance(cache, MemoryCache) else "redis"
        """Where the live data lives: this process only, or Redis (shared)."""
        self.reads = SharedLiveReads(self, in_process=self.backend == "in_process")

    def publish(self, results: Sequence[FrameResult]) -> None:
        """Refresh each camera's live detections and state, then broadcast.

        Camera state is read-modify-write (frames_seen). The dataflow routes
        frames by camera, so one worker owns a camera and there is no race.
        Never raises for an unreachable cache or bus: what could not be
        written is dropped and counted (see the module docstring).
        """
        if not results:
            return
        now = utcnow()
        stamp = isoformat(now)
        try:
            self._write_cameras(results, now, stamp)
        except CacheUnavailableError as exc:
            self._outages.counts.dropped("frames", len(results))
            self._outages.failed("publish_live", exc, f"{len(results)} frame(s) not cached")
        messages = _messages(results, stamp)
        try:
            self._bus.publish_many(messages)
        except CacheUnavailableError as exc:
            self._outages.counts.dropped("messages", len(messages))
            self._outages.failed("publish_bus", exc, f"{len(messages)} message(s) not sent")

    def _write_cameras(self, results: Sequence[FrameResult], now: datetime, stamp: str) -> None:
        """Each camera's live detections and state, and the camera index."""
        by_camera: dict[str, list[FrameResult]] = {}
        for r in results:
            by_camera.setdefault(r.frame.camera_id, []).append(r)
        cameras = sorted(by_camera)
        previous = self._cache.get_many([CAMERA_INDEX_KEY, *map(camera_key, cameras)])
        index = _loads(previous[0])
        index = index if isinstance(index, dict) else {}
        live: dict[str, bytes] = {}
        state: dict[str, bytes] = {}
        for camera, raw in zip(cameras, previous[1:], strict=True):
            old = _loads(raw)
            update = self._camera_update(
                camera, by_camera[camera], old if isinstance(old, dict) else {}, stamp
            )
            state[camera_key(camera)] = _dumps(update.state)
            if update.live is not None:
                live[live_key(camera)] = _dumps(update.live)
            index[camera] = stamp
        cutoff = now.timestamp() - CAMERA_STATE_TTL
        index = {c: t for c, t in index.items() if _epoch(t) >= cutoff}
        if live:
            self._cache.set_many(live, LIVE_TTL)
        self._cache.set_many({**state, CAMERA_INDEX_KEY: _dumps(index)}, CAMERA_STATE_TTL)

    def publish_breakers(
        self, snapshots: Sequence[dict[str, Any]], events: Sequence[DetectionEvent] = ()
    ) -> None:
        """Store providers' breaker states (dicts with an ``id``) and broadcast their
        events, so any server process shows what the dataflow's breakers see."""
        if snapshots:
            items = {breaker_key(str(s["id"])): _dumps(s) for s in snapshots}
            try:
                self._cache.set_many(items, BREAKER_TTL)
            except CacheUnavailableError as exc:
                self._outages.failed("publish_breakers", exc, "breaker states not shared")
        if events:
            stamp = isoformat(utcnow())
            try:
                self._bus.publish_many([_event_message(e, stamp) for e in events])
            except CacheUnavailableError as exc:
                self._outages.counts.dropped("messages", len(events))
                self._outages.failed("publish_bus", exc, f"{len(events)} event(s) not sent")

    def heartbeat(self, worker_index: int, worker_count: int) -> Heartbeat:
        """A dataflow worker's heartbeat writer, on this view's cache."""
        return Heartbeat(self._cache, worker_index=worker_index, worker_count=worker_count)

    def camera_board(self) -> CameraStatusBoard:
        """A writer of per-camera status (for the video source), on this view's cache."""
        return CameraStatusBoard(self._cache)

    def camera_statuses(self, camera_ids: Sequence[str]) -> dict[str, CameraStatus]:
        """The cameras' last status reports. Like :meth:`workers` this read raises
        :class:`~detectflow.store.cache.CacheUnavailableError`: "cannot tell" must
        not read as "never seen"."""
        return read_camera_statuses(self._cache, camera_ids)

    def workers(self) -> list[WorkerBeat]:
        """The dataflow workers' last heartbeats. Unlike the other reads this one
        raises :class:`~detectflow.store.cache.CacheUnavailableError`: "cannot
        tell" must not read as "no worker runs"."""
        return read_heartbeats(self._cache)

    def ping(self) -> None:
        """Raise :class:`~detectflow.store.cache.CacheUnavailableError` unless the
        cache answers."""
        self._cache.ping()

    def ping_bus(self) -> None:
        """Raise :class:`~detectflow.store.cache.CacheUnavailableError` unless
        publishing would reach the bus."""
        self._bus.ping()

    def breakers(self, provider_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The last published breaker state of each provider that has one (none while
        the cache is unreachable: callers fall back to their own)."""
        if not provider_ids:
            return {}
        found: dict[str, dict[str, Any]] = {}
        try:
            raw = self._cache.get_many([breaker_key(p) for p in provider_ids])
        except CacheUnavailableError as exc:
            self._outages.failed("read_breakers", exc, "this process's own states shown")
            return {}
        for provider_id, value in zip(provider_ids, raw, strict=True):
            loaded = _loads(value)
            if isinstance(loaded, dict):
                found[provider_id] = loaded
        return found

    @staticmethod
    def _camera_update(
        camera: str, results: list[FrameResult], old: dict[str, Any], stamp: str
    ) -> _CameraUpdate:
        """``stamp`` is the publish time, formatted once per batch."""
        latest = max(results, key=lambda r: r.frame.timestamp)
        completed = [r for r in results if r.ok]
        newest_ok = max(completed, key=lambda r: r.frame.timestamp) if completed else None
        last_time = _time(old.get("last_frame_time"))
        newer = last_time is None or latest.frame.timestamp >= last_time
        failed = [r for r in results if not r.ok]
        last_error = (
            max(failed, key=lambda r: r.frame.timestamp).error if failed else old.get("last_error")
        )
        state = {
            "camera_id": camera,
            "last_frame_time": isoformat(latest.frame.timestamp if newer else last_time),
            "last_frame_id": latest.frame.frame_id if newer else old.get("last_frame_id"),
            "frames_seen": int(old.get("frames_seen", 0)) + len(results),
            "last_error": last_error,
            "updated_at": stamp,
        }
        live = None
        if newest_ok is not None and (last_time is None or newest_ok.frame.timestamp >= last_time):
            # An older frame arriving late must not overwrite a newer live view.
            live = {
                "camera_id": camera,
                "frame_id": newest_ok.frame.frame_id,
                "frame_timestamp": isoformat(newest_ok.frame.timestamp),
                "detections": [detection_to_dict(d) for d in newest_ok.detections],
                "last_updated": stamp,
            }
        return _CameraUpdate(state=state, live=live)

    def live(self, camera_id: str | None = None) -> LiveSnapshot | None:
        """One camera's live detections, or all cameras' when ``camera_id`` is None;
        None on a cache miss or with the cache unreachable (the caller may fall
        back to SQL)."""
        try:
            return self._read_live(camera_id)
        except CacheUnavailableError as exc:
            self._outages.failed("read_live", exc, "the database answers")
            return None

    def _read_live(self, camera_id: str | None) -> LiveSnapshot | None:
        if camera_id is not None:
            cameras = [camera_id]
        else:
            index = _loads(self._cache.get(CAMERA_INDEX_KEY))
            if not isinstance(index, dict) or not index:
                return None
            cameras = sorted(index)
        entries = self._cache.get_many([live_key(c) for c in cameras])
        found: list[tuple[str, dict[str, Any]]] = []
        for camera, raw in zip(cameras, entries, strict=True):
            value = _loads(raw)
            if isinstance(value, dict):
                found.append((camera, value))
        if not found:
            return None
        detections = [d for _, value in found for d in value.get("detections", [])]
        stamps = [t for _, v in found if (t := _time(v.get("last_updated"))) is not None]
        return LiveSnapshot(
            camera_ids=tuple(camera for camera, _ in found),
            detections=detections,
            last_updated=max(stamps) if stamps else None,
        )


class _Pending:
    """One read in flight; readers arriving meanwhile wait for it instead of reading too."""

    __slots__ = ("done", "found", "snapshot")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.found = False
        self.snapshot: LiveSnapshot | None = None


class SharedLiveReads:
    """The server's read path of the live view, for an event loop.

    An in-process cache is a dict lookup: it is read inline, since a hop to
    a worker thread would cost more than the read. A shared cache (Redis) is
    a blocking round trip: it is read in a worker thread, and the answer
    (a miss included) then serves every reader of that camera for
    ``max_age`` seconds, so a thousand requests a second cost a few reads,
    and concurrent readers of a camera share the one read in flight. The
    price is at most ``max_age`` of staleness on top of the publish delay.
    The returned snapshot is shared: callers must not mutate it.
    """

    def __init__(
        self,
        view: LiveView,
        *,
        in_process: bool,
        max_age: float = SHARED_READ_SECONDS,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age < 0 or max_entries < 1:
            raise ValueError("need max_age >= 0 and max_entries >= 1")
        self._view = view
        self._in_process = in_process
        self._max_age = max_age
        self._max_entries = max_entries
        self._clock = clock
        self._memo: dict[str | None, tuple[float, LiveSnapshot | None]] = {}
        self._pending: dict[str | None, _Pending] = {}
        self.reads = 0
        """Reads that reached the cache (for tests and operators)."""

    async def live(self, camera_id: str | None = None) -> LiveSnapshot | None:
        """Like :meth:`LiveView.live`, without blocking the event loop."""
        if self._in_process:
            self.reads += 1
            return self._view.live(camera_id)
        while True:
            entry = self._memo.get(camera_id)
            if entry is not None and entry[0] > self._clock():
                return entry[1]
            pending = self._pending.get(camera_id)
            if pending is None:
                return await self._read(camera_id)
            await pending.done.wait()
            if pending.found:
                return pending.snapshot
            # The read failed or its caller was cancelled: try again (first one reads).

    async def _read(self, camera_id: str | None) -> LiveSnapshot | None:
        pending = self._pending[camera_id] = _Pending()
        try:
            self.reads += 1
            snapshot = await anyio.to_thread.run_sync(self._view.live, camera_id)
            pending.found, pending.snapshot = True, snapshot
            self._remember(camera_id, snapshot)
            return snapshot
        finally:
            del self._pending[camera_id]
            pending.done.set()

    def _remember(self, camera_id: str | None, snapshot: LiveSnapshot | None) -> None:
        """Memoize, keeping at most ``max_entries`` (camera ids come from clients)."""
        memo = self._memo
        memo.pop(camera_id, None)
        if len(memo) >= self._max_entries:
            now = self._clock()
            for key in [k for k, (expires, _) in memo.items() if expires <= now]:
                del memo[key]
            while len(memo) >= self._max_entries:
                del memo[next(iter(memo))]  # the oldest read
        memo[camera_id] = (self._clock() + self._max_age, snapshot)

    def forget(self) -> None:
        """Drop every memoized answer: the next read of each camera goes to the cache."""
        self._memo.clear()


@dataclass(frozen=True, slots=True)
class _CameraUpdate:
    state: dict[str, Any]
    live: dict[str, Any] | None


def _time(text: object) -> datetime | None:
    """A timestamp we wrote earlier; None if missing or mangled (treated as never)."""
    if not isinstance(text, str):
        return None
    try:
        return parse_timestamp(text)
    except (DetectflowError, ValueError):
        return None


def _epoch(text: object) -> float:
    value = _time(text)
    return 0.0 if value is None else value.timestamp()


def _messages(results: Sequence[FrameResult], stamp: str) -> list[tuple[str, bytes]]:
    """Every frame's bus messages, in order (see the module docstring)."""
    messages: list[tuple[str, bytes]] = []
    for r in results:
        # A frame's detections share camera, frame and timestamp: one run, one message.
        for _, run in groupby(r.detections, _shared):
            detections = list(run)
            body = frame_detections_message(detections, published_at=stamp)
            messages.append((detections_channel(detections[0].camera_id), _dumps(body)))
        messages.extend(_event_message(e, stamp) for e in r.events)
        if r.objects is not None:
            messages.extend(
                (events_channel(e.type), _dumps(object_message(e, published_at=stamp)))
                for e in r.objects.events
            )
    return messages


def _shared(d: Detection) -> tuple[str, str, datetime]:
    return d.camera_id, d.frame_id, d.frame_timestamp or d.created_at


def _event_message(e: DetectionEvent, stamp: str) -> tuple[str, bytes]:
    return events_channel(str(e.event_type)), _dumps(event_message(e, published_at=stamp))
