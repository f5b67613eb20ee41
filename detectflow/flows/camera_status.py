"""The flow's feed of per-camera status (what ``/api/v1/cameras/status`` shows).

Two kinds of numbers meet in one :class:`~detectflow.store.camera_status.CameraStatusBoard`:

* the detect engine's, for every frame whatever its source: submitted,
  completed and the provider's time (detect fps, inference p50/p95, in
  flight). :class:`StatusFeed` is the engine's ``observer``: one call per
  batch handed to the engine and one per batch of results polled from it,
  on the worker thread (measured: 1.4 us a frame in batches of 64, 2.8 us
  for a frame alone, beside the engine's ~50 us a frame).
* the video source's readers' counters (:meth:`VideoSource.counts`:
  decoded, sampled, skipped, online, last error), read by the feed's own
  thread every ``poll_seconds`` as differences from the last read, so the
  readers' threads pay nothing.

Frames from the other sources (queue, Redis, MQTT, folder) have no reader:
their arrival counts as decoded (that is the frame time shown as the last
frame), and a camera is online while its frames arrive, offline once none
came for ``idle_seconds``. The board writes to the flow's cache at most every
``STATUS_INTERVAL`` seconds (and at once when a camera goes on or offline).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime

from detectflow.core.models import Frame, FrameResult
from detectflow.store.camera_status import STATUS_STALE, CameraStatusBoard
from detectflow.video.counts import ReaderCounts

__all__ = ["POLL_SECONDS", "StatusFeed"]

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
"""How often the readers' counters are read: the board writes every 2 s at most,
so twice as often keeps each report at most a second behind."""


class StatusFeed:
    """One flow's camera status, fed by its engine and its video readers."""

    def __init__(
        self,
        board: CameraStatusBoard,
        *,
        idle_seconds: float = STATUS_STALE,
        poll_seconds: float = POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.board = board
        self._idle = idle_seconds
        self._poll = poll_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: Callable[[], Mapping[str, ReaderCounts]] | None = None
        self._reading: Callable[[], Collection[str]] | None = None
        self._seen: dict[str, ReaderCounts] = {}
        # Cameras no longer read: a frame of theirs still in flight must not bring
        # their report back (it would show "seen" again). Any thread reads it.
        self._gone: frozenset[str] = frozenset()
        self._arrived: dict[str, float] = {}  # cameras without a reader: last frame (clock)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def watch(
        self,
        counts: Callable[[], Mapping[str, ReaderCounts]],
        reading: Callable[[], Collection[str]],
    ) -> None:
        """This flow reads video: ``counts`` are its readers' counters, ``reading``
        the cameras it reads now (a camera no longer read is forgotten, so it
        shows offline at once)."""
        self._counts = counts
        self._reading = reading

    # -- the engine's side (worker threads) ---------------------------------------
    def submitted(self, frames: Sequence[Frame]) -> None:
        batches: dict[str, tuple[int, datetime]] = {}
        for frame in frames:
            count, newest = batches.get(frame.camera_id, (0, frame.timestamp))
            batches[frame.camera_id] = (count + 1, max(newest, frame.timestamp))
        if not batches:
            return
        for camera_id, (count, newest) in batches.items():
            if camera_id in self._gone:
                continue
            if self._counts is None:  # no reader reports these frames: their arrival does
                self._arrive(camera_id, newest, count)
            else:  # the reader counted them; the stream time of the newest is news
                self.board.decoded(camera_id, newest, 0)
            self.board.submitted(camera_id, count)

    def completed(self, results: Sequence[FrameResult]) -> None:
        gone = self._gone
        for result in results:
            if result.frame.camera_id in gone:
                continue
            # A frame skipped or refused before any call has no inference time.
            took = float(result.processing_time_ms) if result.attempts > 0 else None
            self.board.completed(result.frame.camera_id, took)

    def _arrive(self, camera_id: str, frame_time: datetime, count: int) -> None:
        with self._lock:
            new = camera_id not in self._arrived
            self._arrived[camera_id] = self._clock()
        self.board.decoded(camera_id, frame_time, count)
        if new:
            self.board.connected(camera_id)

    # -- the feed's thread ------------------------------------------------------------
    def poll(self) -> None:
        """Read the readers' counters, mark idle cameras offline, write if due."""
        try:
            self._poll_readers()
            self._expire_idle()
        except Exception:  # a status must never stop the flow
            log.exception("camera status: reading the counters failed")
        self.board.flush()

    def _poll_readers(self) -> None:
        if self._counts is None or self._reading is None:
            return
        counts = self._counts()
        reading = set(self._reading())
        stopped = [c for c in self._seen if c not in reading]
        self._gone = frozenset((self._gone - reading) | set(stopped))
        for camera_id in stopped:
            del self._seen[camera_id]
            self.board.forget(camera_id)
        for camera_id in reading:
            now = counts.get(camera_id)
            if now is None:
                continue
            before = self._seen.get(camera_id)
            if before is None or now.decoded < before.decoded:  # a new reader: counts from 0
                before = ReaderCounts()
            self._seen[camera_id] = now
            if now.decoded > before.decoded:
                self.board.decoded(camera_id, None, now.decoded - before.decoded)
            if now.sampled > before.sampled:
                self.board.sampled(camera_id, now.sampled - before.sampled)
            if now.skipped > before.skipped:
                self.board.skipped(camera_id, now.skipped - before.skipped)
            if now.online and not before.online:
                self.board.connected(camera_id)
            elif not now.online and (before.online or now.last_error != before.last_error):
                self.board.disconnected(camera_id, now.last_error or "not connected")

    def _expire_idle(self) -> None:
        limit = self._clock() - self._idle
        with self._lock:
            idle = [c for c, at in self._arrived.items() if at < limit]
            for camera_id in idle:
                del self._arrived[camera_id]
        for camera_id in idle:
            self.board.disconnected(camera_id, f"no frame for {self._idle:g} s")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="camera-status", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._poll):
            self.poll()

    def close(self) -> None:
        """Stop, and take this flow's cameras off the board: nobody reads them now."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            cameras = {*self._seen, *self._arrived}
            self._gone = frozenset(cameras)
            self._seen.clear()
            self._arrived.clear()
        for camera_id in cameras:
            self.board.forget(camera_id)
