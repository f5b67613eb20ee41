"""The cameras one worker reads, kept in step with a camera list that may change.

``load_cameras`` (the cameras table's enabled rows, or a fixed list for a
single ``--source`` URL) is polled every ``refresh_seconds``: a camera that
appears gets a reader, one that disappears or is disabled has its reader
stopped, one whose url, fps or options changed is read anew. Each camera
belongs to exactly one worker of a cluster, chosen by a hash of its id
(:func:`owner`), so adding a camera never moves the others.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from detectflow.core.cameras import Camera

if TYPE_CHECKING:  # the reader needs PyAV, loaded only once a camera is read
    from detectflow.video.counts import ReaderCounts
    from detectflow.video.reader import CameraReader

__all__ = ["REFRESH_SECONDS", "CameraFleet", "owner"]

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0
"""How often the camera list is read again: a change shows within this, plus a connect."""


def owner(camera_id: str, worker_count: int) -> int:
    """The worker index that reads ``camera_id``; stable across runs and processes."""
    return zlib.crc32(camera_id.encode()) % max(1, worker_count)


def _reading(camera: Camera) -> tuple[object, ...]:
    """What a reader depends on: a change here means reading the camera anew."""
    return (camera.url, camera.fps, sorted((camera.options or {}).items(), key=lambda kv: kv[0]))


class CameraFleet:
    """One worker's readers. Not thread-safe: its worker thread alone calls it."""

    def __init__(
        self,
        load_cameras: Callable[[], Sequence[Camera]],
        make_reader: Callable[[Camera], CameraReader],
        *,
        worker_index: int = 0,
        worker_count: int = 1,
        refresh_seconds: float = REFRESH_SECONDS,
        on_refused: Callable[[Camera, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load_cameras
        self._make = make_reader
        self.worker_index = worker_index
        self.worker_count = worker_count
        self.refresh_seconds = refresh_seconds
        self._on_refused = on_refused
        self._clock = clock
        self._readers: dict[str, CameraReader] = {}
        self._refused: dict[str, tuple[object, ...]] = {}
        self._ended: dict[str, tuple[object, ...]] = {}
        self._next_refresh: float | None = None
        self.retired: dict[str, ReaderCounts] = {}
        """Counts of readers stopped or ended, by camera (the newest per camera)."""

    def refresh(self, *, force: bool = False) -> None:
        """Read the camera list again if it is due (or ``force``)."""
        now = self._clock()
        if not force and self._next_refresh is not None and now < self._next_refresh:
            return
        self._next_refresh = now + self.refresh_seconds
        try:
            cameras = list(self._load())
        except Exception:
            log.exception("reading the camera list failed; keeping the current cameras")
            return
        wanted = {
            c.id: c
            for c in cameras
            if c.enabled and c.url and owner(c.id, self.worker_count) == self.worker_index
        }
        for camera_id in [c for c in self._readers if c not in wanted]:
            log.info("camera %s: no longer read here (removed or disabled)", camera_id)
            self._retire(camera_id)
        for camera_id, camera in wanted.items():
            current = self._readers.get(camera_id)
            if current is not None:
                if _reading(current.camera) == _reading(camera):
                    continue
                log.info("camera %s: settings changed, reading it anew", camera_id)
                self._retire(camera_id)
            elif _reading(camera) in (self._ended.get(camera_id), self._refused.get(camera_id)):
                continue  # played out, or refused: try again only once it changes
            self._start(camera)

    def _start(self, camera: Camera) -> None:
        try:
            reader = self._make(camera)
        except ValueError as exc:  # bad options: said once, until they change
            self._refused[camera.id] = _reading(camera)
            log.warning("camera %s not read: %s", camera.id, exc)
            if self._on_refused is not None:
                self._on_refused(camera, str(exc))
            return
        self._refused.pop(camera.id, None)
        self._ended.pop(camera.id, None)
        self._readers[camera.id] = reader.start()

    def _retire(self, camera_id: str) -> None:
        reader = self._readers.pop(camera_id)
        reader.stop()
        self.retired[camera_id] = reader.counts()
        self._refused.pop(camera_id, None)

    def readers(self) -> Iterator[CameraReader]:
        """The running readers; ones whose file has ended are retired on the way."""
        for camera_id, reader in list(self._readers.items()):
            if reader.finished:
                self._readers.pop(camera_id)
                self.retired[camera_id] = reader.counts()
                self._ended[camera_id] = _reading(reader.camera)
                continue
            yield reader

    def reading(self) -> set[str]:
        """The cameras read now (any thread: one copy under the GIL)."""
        return set(self._readers)

    @property
    def active(self) -> int:
        return len(self._readers)

    def counts(self) -> dict[str, ReaderCounts]:
        """Every camera's counts: running readers, else the last one retired."""
        found = dict(self.retired)
        found.update({c: r.counts() for c, r in self._readers.items()})
        return found

    def close(self, timeout: float = 5.0) -> None:
        for reader in self._readers.values():
            reader.stop()
        for camera_id in list(self._readers):
            reader = self._readers.pop(camera_id)
            reader.stop(timeout)
            self.retired[camera_id] = reader.counts()
