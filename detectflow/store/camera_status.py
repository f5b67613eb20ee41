"""Per-camera status: written by the process reading a camera, read by the server.

Both directions of one small protocol, so what a reader writes the server
reads by construction (like :mod:`detectflow.store.heartbeat`). A status
lives in the cache, Redis when the deployment shares one, else the
in-process twin of the one-process runner: it needs no migration, and the
report of a process that died expires by itself.

Key ``camera_status:{camera_id}`` holds one camera's latest
:class:`~detectflow.core.camera_status.CameraStatus` for ``STATUS_TTL``
seconds (the guide's camera state TTL). A report older than
``STATUS_STALE`` shows the camera ``offline`` whatever it says: its reader
stopped reporting. No report at all is a camera never seen since the TTL.

Writing: a :class:`CameraStatusBoard` per process holds a
:class:`~detectflow.core.camera_status.CameraMeter` per camera it reads.
Reader threads and the flow call its methods from any thread (one lock,
microseconds a call); :meth:`CameraStatusBoard.flush` writes every camera's
snapshot at most every ``interval`` seconds, one cache round trip for all of
them, and changes of online/offline are written at once. An unreachable
cache costs a counted miss (``camera_status`` in
``detectflow_cache_unavailable_total``), never the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from detectflow.core.camera_status import DEFAULT_WINDOW_SECONDS, CameraMeter, CameraStatus
from detectflow.core.models import utcnow
from detectflow.store.cache import Cache, CacheUnavailableError
from detectflow.store.entries import dump_entry, load_entry
from detectflow.store.outages import OUTAGES, OutageCounts

__all__ = [
    "STATUS_INTERVAL",
    "STATUS_STALE",
    "STATUS_TTL",
    "CameraStatusBoard",
    "camera_status_key",
    "is_online",
    "read_camera_statuses",
]

log = logging.getLogger(__name__)

STATUS_INTERVAL = 2.0
"""A board writes its cameras' status at most this often (seconds)."""
STATUS_STALE = 10.0
"""A report older than this shows its camera offline: five writes missed."""
STATUS_TTL = 60.0
"""How long a report is kept after its last write (the guide's camera state TTL)."""


def camera_status_key(camera_id: str) -> str:
    return f"camera_status:{camera_id}"


def is_online(status: CameraStatus | None, now: datetime, stale: float = STATUS_STALE) -> bool:
    """Online: a report says so and is fresh."""
    if status is None or not status.online:
        return False
    return (now - status.reported_at).total_seconds() <= stale


class CameraStatusBoard:
    """This process's cameras' meters, written to the cache."""

    def __init__(
        self,
        cache: Cache,
        *,
        interval: float = STATUS_INTERVAL,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
        outages: OutageCounts = OUTAGES,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self._cache = cache
        self._interval = interval
        self._window = window_seconds
        self._clock = clock
        self._wall = wall_clock
        self._outages = outages
        self._lock = threading.Lock()
        self._meters: dict[str, CameraMeter] = {}
        self._next = 0.0
        self.writes = 0
        """Cache writes made (for tests: the rate limit at work)."""

    def _meter(self, camera_id: str) -> CameraMeter:
        meter = self._meters.get(camera_id)
        if meter is None:
            meter = CameraMeter(
                camera_id, window_seconds=self._window, clock=self._clock, wall_clock=self._wall
            )
            self._meters[camera_id] = meter
        return meter

    def _record(self, camera_id: str, call: Callable[[CameraMeter], Any]) -> None:
        with self._lock:
            call(self._meter(camera_id))

    # -- what the reader reports ------------------------------------------------
    def connected(self, camera_id: str) -> None:
        self._record(camera_id, CameraMeter.connected)
        self.flush(force=True)

    def disconnected(self, camera_id: str, reason: str) -> None:
        self._record(camera_id, lambda m: m.disconnected(reason))
        self.flush(force=True)

    def decoded(self, camera_id: str, frame_time: datetime | None = None, count: int = 1) -> None:
        self._record(camera_id, lambda m: m.decoded(frame_time, count))

    def sampled(self, camera_id: str, count: int = 1) -> None:
        self._record(camera_id, lambda m: m.sampled(count))

    def skipped(self, camera_id: str, count: int = 1) -> None:
        self._record(camera_id, lambda m: m.skipped(count))

    # -- what the flow reports ------------------------------------------------------
    def submitted(self, camera_id: str, count: int = 1) -> None:
        self._record(camera_id, lambda m: m.submitted(count))

    def completed(self, camera_id: str, inference_ms: float | None = None) -> None:
        self._record(camera_id, lambda m: m.completed(inference_ms))

    # -- writing ------------------------------------------------------------------
    def snapshot(self, camera_id: str) -> CameraStatus | None:
        with self._lock:
            meter = self._meters.get(camera_id)
            return None if meter is None else meter.snapshot()

    def flush(self, *, force: bool = False) -> bool:
        """Write every camera's status if ``interval`` has passed since the last write
        (or ``force``); True when written. Call it as often as convenient."""
        now = self._clock()
        with self._lock:
            if not force and now < self._next:
                return False
            self._next = now + self._interval
            entries = {
                camera_status_key(camera_id): dump_entry(meter.snapshot().as_dict())
                for camera_id, meter in self._meters.items()
            }
        if not entries:
            return False
        try:
            self._cache.set_many(entries, STATUS_TTL)
        except CacheUnavailableError as exc:
            self._outages.failed("camera_status")
            log.debug("camera status not written: %s", exc)
            return False
        self.writes += 1
        return True

    def forget(self, camera_id: str) -> None:
        """The camera is no longer read here (removed, disabled, moved to another
        worker): drop its meter and its report, so it shows offline at once."""
        with self._lock:
            self._meters.pop(camera_id, None)
        try:
            self._cache.delete(camera_status_key(camera_id))
        except CacheUnavailableError as exc:
            self._outages.failed("camera_status")
            log.debug("camera status of %s not removed: %s", camera_id, exc)


def read_camera_statuses(cache: Cache, camera_ids: Sequence[str]) -> dict[str, CameraStatus]:
    """The reports there are for ``camera_ids`` (one round trip); a camera without
    one is missing from the result.

    Raises :class:`~detectflow.store.cache.CacheUnavailableError` when the cache
    cannot be read: the caller must not mistake that for "never seen".
    """
    if not camera_ids:
        return {}
    found: dict[str, CameraStatus] = {}
    for camera_id, raw in zip(
        camera_ids, cache.get_many([camera_status_key(c) for c in camera_ids]), strict=True
    ):
        data = load_entry(raw)
        status = CameraStatus.from_dict(data) if isinstance(data, dict) else None
        if status is not None and status.camera_id == camera_id:
            found[camera_id] = status
    return found
