"""Where results go: SQL first, then the live cache and bus, then plugins.

The order matters. A client that sees a detection on the live feed must be
able to fetch it over REST, so the SQL transaction commits before anything
is published; plugins (alerts) hear about a detection only once it is
stored. This module is engine-agnostic: :class:`ResultWriter` takes a batch
and :mod:`detectflow.flows.dataflow` wraps it in a Bytewax sink.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

from detectflow.core.models import FrameResult
from detectflow.core.plugins import PluginRegistry
from detectflow.flows.metrics import FlowMetrics
from detectflow.flows.recovery import retry_lost_connection
from detectflow.flows.steps import chunked, strip_image

__all__ = ["LivePublisher", "ResultStore", "ResultWriter"]

log = logging.getLogger(__name__)


class ResultStore(Protocol):
    """The part of :class:`detectflow.store.Database` the sink needs."""

    def record_results(self, results: Sequence[FrameResult]) -> None: ...


class LivePublisher(Protocol):
    """The part of :class:`detectflow.store.live.LiveView` the sink needs."""

    def publish(self, results: Sequence[FrameResult]) -> None: ...


class ResultWriter:
    """Writes one batch of results to every destination, in order.

    A lost database connection (a PostgreSQL restart) is retried with
    backoff for ``give_up_after`` seconds
    (:func:`~detectflow.flows.recovery.retry_lost_connection`); other SQL
    errors propagate (the flow stops loudly and the rows stay in
    ``processing`` until the next start releases them); the live view is
    best effort (its data expires in seconds anyway) and plugin failures
    are logged by the registry, so neither can lose a stored result.

    ``on_written`` (a source's ``acknowledge``) hears each batch once it is
    committed, so a source that must acknowledge its input (Redis Streams
    XACK, MQTT PUBACK) does so only after the results are stored. Its
    failures are logged: an input left unacknowledged is delivered again,
    and the idempotent SQL write makes the replay harmless.
    """

    def __init__(
        self,
        store: ResultStore,
        *,
        live: LivePublisher | None = None,
        registry: PluginRegistry | None = None,
        metrics: FlowMetrics | None = None,
        max_batch: int = 500,
        on_written: Callable[[Sequence[FrameResult]], None] | None = None,
        give_up_after: float = 300.0,
    ) -> None:
        self.store = store
        self.live = live
        self.registry = registry
        self.metrics = metrics
        self.max_batch = max_batch
        self.on_written = on_written
        self.give_up_after = give_up_after
        # Workers of one process share this writer; the live view updates
        # per-camera state and a camera index read-modify-write, so one
        # publish at a time keeps a worker from overwriting another's update.
        self._live_lock = threading.Lock()

    def write(self, results: Sequence[FrameResult]) -> None:
        if not results:
            return
        stripped = [strip_image(r) for r in results]
        for chunk in chunked(stripped, self.max_batch):
            retry_lost_connection(
                partial(self.store.record_results, chunk),
                what="writing results",
                give_up_after=self.give_up_after,
            )
        if self.live is not None:
            try:
                with self._live_lock:
                    self.live.publish(stripped)
            except Exception:
                log.exception("publishing %d result(s) to the live view failed", len(stripped))
        if self.registry is not None and self.registry.has_notifiers():
            for result in stripped:
                for detection in result.detections:
                    self.registry.notify_detection(detection)
                for event in result.events:
                    self.registry.notify_event(event)
        if self.on_written is not None:
            try:
                self.on_written(stripped)
            except Exception:
                log.exception("acknowledging %d result(s) to the source failed", len(stripped))
        if self.metrics is not None:
            self.metrics.record(stripped)
