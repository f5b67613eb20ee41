"""Recording circuit-breaker changes (and other events that are no frame's
outcome, such as a camera going offline): the event log, the live view, the plugins.

A breaker opening or closing is not a frame's outcome, so it does not go
through the result sinks (a made-up FrameResult would touch queue rows and
frame counters). Its owner (the dataflow's engine, or the server for inline
``send-frame``) hands the changes here instead, in the sinks' order: the
SQL event log first, so a client that hears the event can fetch it; then
the live view (each provider's state in the cache, read by
``GET /api/v1/detections/summary`` in any server process, and the event on
the bus for WebSocket subscribers); then ``detectflow_on_event`` plugins.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from detectflow.core.breaker import CIRCUIT_OPENED, BreakerChange, BreakerSnapshot
from detectflow.core.models import DetectionEvent
from detectflow.core.plugins import PluginRegistry

__all__ = ["BreakerPublisher", "BreakerRecorder", "EventStore"]

log = logging.getLogger(__name__)


class EventStore(Protocol):
    """The part of :class:`detectflow.store.Database` the recorder needs."""

    def record_events(self, events: Sequence[DetectionEvent]) -> None: ...


class BreakerPublisher(Protocol):
    """The part of :class:`detectflow.store.live.LiveView` the recorder needs."""

    def publish_breakers(
        self, snapshots: Sequence[dict[str, Any]], events: Sequence[DetectionEvent] = ()
    ) -> None: ...


class BreakerRecorder:
    """Writes breaker changes to every destination; thread-safe (no state of its own)."""

    def __init__(
        self,
        events: EventStore,
        *,
        live: BreakerPublisher | None = None,
        registry: PluginRegistry | None = None,
    ) -> None:
        self.events = events
        self.live = live
        self.registry = registry

    def record(self, changes: Sequence[BreakerChange]) -> None:
        """SQL errors propagate (the caller logs them); the rest is best effort."""
        if not changes:
            return
        events = [c.event for c in changes if c.event is not None]
        for event in events:
            level = logging.WARNING if event.event_type == CIRCUIT_OPENED else logging.INFO
            log.log(level, "%s", event.message)
        self.events.record_events(events)
        latest = {c.snapshot.provider_id: c.snapshot for c in changes}
        self.refresh(list(latest.values()), events)
        self._notify(events)

    def record_events(self, events: Sequence[DetectionEvent]) -> None:
        """Events that are no frame's outcome and no breaker's (a camera going
        offline): the SQL log, the bus, then plugins, in the same order."""
        if not events:
            return
        self.events.record_events(events)
        self.refresh((), events)
        self._notify(events)

    def _notify(self, events: Sequence[DetectionEvent]) -> None:
        if self.registry is not None and events and self.registry.has_notifiers():
            for event in events:
                self.registry.notify_event(event)

    def refresh(
        self, snapshots: Sequence[BreakerSnapshot], events: Sequence[DetectionEvent] = ()
    ) -> None:
        """Publish states (again: the cache entries expire unless refreshed)."""
        if self.live is None or not (snapshots or events):
            return
        try:
            self.live.publish_breakers([s.as_dict() for s in snapshots], events)
        except Exception:
            log.exception("publishing %d breaker state(s) to the live view failed", len(snapshots))
