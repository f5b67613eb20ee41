"""The one recorder of results: snapshots -> store -> publish live -> notify plugins.

Inline ``send-frame`` and every dataflow record processed frames here and
nowhere else, so the event log, the live view, plugin notifications and
the window statistics cannot drift apart between the two paths. The
window statistics are the last stage in effect but travel with the first:
:func:`detectflow.store.results.record_results` adds the batch's tallies in
the transaction that stores its detections (exactly once per detection).

The order matters. A client that sees a detection on the live feed must be
able to fetch it over REST, so the SQL transaction commits before anything
is published; plugins (alerts) hear about a detection only once it is
stored. The store stage and the announce stage (:meth:`Recorder.store` and
:meth:`Recorder.announce`) can run on different threads, as the dataflow's
background writer does, as long as each batch is announced after it is
stored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Protocol

from detectflow.core.models import FrameResult, strip_image
from detectflow.core.plugins import PluginRegistry
from detectflow.store.reconnect import retry_lost_connection
from detectflow.store.snapshots import SnapshotStore, as_jpeg, snapshot_key

__all__ = ["LivePublisher", "Recorder", "ResultObserver", "ResultStore", "StatsCache"]

log = logging.getLogger(__name__)


class ResultStore(Protocol):
    """The part of :class:`detectflow.store.Database` the recorder needs."""

    def record_results(self, results: Sequence[FrameResult]) -> None: ...


class StatsCache(Protocol):
    """The part of :class:`detectflow.store.live.StatsView` the recorder needs."""

    def invalidate(self, camera_ids: Iterable[str]) -> None: ...


class LivePublisher(Protocol):
    """The part of :class:`detectflow.store.live.LiveView` the recorder needs."""

    def publish(self, results: Sequence[FrameResult]) -> None: ...


class ResultObserver(Protocol):
    """Counts what was recorded (the flow's metrics)."""

    def record(self, results: Sequence[FrameResult]) -> None: ...


class Recorder:
    """Records batches of results in order: commit, then live view and plugins.

    A lost database connection is retried with backoff for
    ``give_up_after`` seconds (a flow rides out a PostgreSQL restart; a
    request gives up at once); other SQL errors propagate. The live view is
    best effort (its data expires in seconds) and plugin failures are
    logged by the registry, so neither can lose a stored result.

    ``on_stored`` (a source's ``acknowledge``) hears each batch once it is
    committed, so a source that must acknowledge its input (Redis Streams
    XACK, MQTT PUBACK) does so only after the results are stored. Its
    failures are logged: an input left unacknowledged is delivered again,
    and the idempotent write makes the replay harmless.
    """

    def __init__(
        self,
        store: ResultStore,
        *,
        live: LivePublisher | None = None,
        stats: StatsCache | None = None,
        registry: PluginRegistry | None = None,
        observer: ResultObserver | None = None,
        max_batch: int = 2000,
        give_up_after: float = 0.0,
        on_stored: Callable[[Sequence[FrameResult]], None] | None = None,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self.store = store
        self.snapshots = snapshots
        self.live = live
        self.stats = stats
        self.registry = registry
        self.observer = observer
        self.max_batch = max_batch
        self.give_up_after = give_up_after
        self.on_stored = on_stored
        # Threads of one process share a recorder; the live view updates
        # per-camera state with a read-modify-write, so one publish at a time.
        self._live_lock = threading.Lock()

    def record(self, results: Sequence[FrameResult]) -> None:
        self.announce(self.store_results(results))

    def store_results(self, results: Sequence[FrameResult]) -> list[FrameResult]:
        """Commit (then ``on_stored``); returns the stored results, images
        dropped, for :meth:`announce`."""
        if not results:
            return []
        if self.snapshots is not None:
            self._keep_snapshots(results)
        stripped = [strip_image(r) for r in results]
        for start in range(0, len(stripped), self.max_batch):
            chunk = stripped[start : start + self.max_batch]
            retry_lost_connection(
                partial(self.store.record_results, chunk),
                what="writing results",
                give_up_after=self.give_up_after,
            )
        if self.on_stored is not None:
            try:
                self.on_stored(stripped)
            except Exception:
                log.exception("acknowledging %d result(s) to the source failed", len(stripped))
        return stripped

    def _keep_snapshots(self, results: Sequence[FrameResult]) -> None:
        """Save the frames that became an object's best (before the commit, so a
        stored object never names a snapshot that was never written). A snapshot
        that cannot be written is logged: it must not cost the frame's results."""
        assert self.snapshots is not None
        for r in results:
            if r.objects is None or not r.objects.best or not r.frame.image:
                continue
            try:
                image = as_jpeg(r.frame.image)
                for object_id, _ in r.objects.best:
                    self.snapshots.save(snapshot_key(object_id), image)
            except Exception:
                log.exception("keeping the snapshot of frame %s failed", r.frame.frame_id)

    def announce(self, stored: Sequence[FrameResult]) -> None:
        """Tell the live view, plugins and metrics about results already stored."""
        if not stored:
            return
        if self.live is not None:
            try:
                with self._live_lock:
                    self.live.publish(stored)
            except Exception:
                log.exception("publishing %d result(s) to the live view failed", len(stored))
        if self.stats is not None:
            try:
                self.stats.invalidate({r.frame.camera_id for r in stored if r.detections})
            except Exception:
                log.exception("invalidating cached statistics failed")
        if self.registry is not None and self.registry.has_notifiers():
            for result in stored:
                for detection in result.detections:
                    self.registry.notify_detection(detection)
                for event in result.events:
                    self.registry.notify_event(event)
        if self.observer is not None:
            self.observer.record(stored)
