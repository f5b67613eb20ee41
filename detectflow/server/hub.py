"""Fan bus messages out to WebSocket clients.

The hub subscribes to the bus ONCE (``detections:*`` and ``events:*``), not
once per client, so a thousand clients cost one Redis subscription. Each
client has a bounded outbox; a client too slow to keep up loses messages
rather than slowing everyone down, and the losses are counted and reported
to it (``{"type": "lagged", "dropped": n}``) instead of vanishing.

A bus message is one client message (a JSON object, sent on as it came: an
``event``, or an ``object`` event of a tracked object, both on ``events:*``
and filtered alike), or
a frame's detections in one compact message
(:func:`~detectflow.core.serialize.frame_detections_message`, as the dataflow
publishes them), which the hub expands into the very per-detection
broadcasts, each encoded only if some client wants it. ``received`` and
``malformed`` count client messages, not bus messages, so they read the same
whichever way the messages travelled.

When the bus connection was lost and is back (a Redis restart), what was
published meanwhile is gone: Redis pub/sub keeps nothing, so nobody can
count it. Each subscribed client is told at once with
``{"type": "lagged", "reason": "bus_reconnected", "lost_at": ...,
"reconnected_at": ...}`` (no ``dropped`` count), and can re-read
``/live`` to catch up.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.abc import TaskStatus

from detectflow.core.serialize import FRAME_DETECTIONS, detection_messages
from detectflow.server.outbox import Outbox
from detectflow.store.cache import BUS_RECONNECTED, Bus, Subscription

__all__ = [
    "DETECTION_PATTERN",
    "EVENT_PATTERN",
    "Broadcast",
    "Client",
    "ClientFilter",
    "Hub",
    "LagObserver",
]

log = logging.getLogger(__name__)

DETECTION_PATTERN = "detections:*"
EVENT_PATTERN = "events:*"

LagObserver = Callable[[float, bool], None]
"""Called with (seconds from publish to send, whether the publisher stamped the time)."""


class Broadcast(str):
    """A broadcast's text that remembers when it was published.

    The outbox stays a stream of ``str`` (replies and broadcasts alike); only
    broadcasts carry the stamp, so the sender can measure their lag. The
    stamp is the bus message's ``published_at`` when the publisher set one,
    else the hub's receipt time (which leaves out the time on the bus).
    """

    published_at: float
    stamped_by_publisher: bool


def _published_at(message: dict[str, Any]) -> float | None:
    value = message.get("published_at")
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def _broadcast(message: dict[str, Any], text: str | None, received_at: float) -> Broadcast:
    """The text clients get. An expanded detection is encoded as the dataflow encodes
    a message (compact separators), so clients get the text it would have sent."""
    out = Broadcast(text if text is not None else json.dumps(message, separators=(",", ":")))
    published_at = _published_at(message)
    out.stamped_by_publisher = published_at is not None
    out.published_at = published_at if published_at is not None else received_at
    return out


@dataclass
class ClientFilter:
    """What one client asked for. Nothing is delivered before a subscribe.

    ``event_types`` None means every event type of the subscribed cameras.
    """

    cameras: set[str] = field(default_factory=set)
    all_cameras: bool = False
    event_types: set[str] | None = None
    min_confidence: float = 0.0

    @property
    def active(self) -> bool:
        return self.all_cameras or bool(self.cameras)

    def wants_camera(self, camera_id: Any) -> bool:
        return self.all_cameras or camera_id in self.cameras

    def wants_detection(self, message: dict[str, Any]) -> bool:
        confidence = message.get("confidence")
        if not isinstance(confidence, int | float) or math.isnan(confidence):
            return False
        return self.wants_camera(message.get("camera_id")) and confidence >= self.min_confidence

    def wants_event(self, message: dict[str, Any]) -> bool:
        if not self.wants_camera(message.get("camera_id")):
            return False
        return self.event_types is None or message.get("event_type") in self.event_types

    def subscribe(
        self,
        camera_id: str | None,
        event_types: Iterable[str] | None,
        min_confidence: float | None,
    ) -> None:
        if camera_id is None:
            self.all_cameras = True
        else:
            self.cameras.add(camera_id)
        if event_types is not None:
            self.event_types = (self.event_types or set()) | set(event_types)
        if min_confidence is not None:
            self.min_confidence = min_confidence

    def unsubscribe(self, camera_id: str | None, event_types: Iterable[str] | None) -> None:
        if camera_id is None and event_types is None:
            self.cameras.clear()
            self.all_cameras = False
            self.event_types = None
            return
        if camera_id is not None:
            self.cameras.discard(camera_id)
        if event_types is not None and self.event_types is not None:
            self.event_types -= set(event_types)


@dataclass(eq=False)
class Client:
    """One connection's filter and outbox, as the hub sees it."""

    client_id: str
    outbox: Outbox
    filter: ClientFilter = field(default_factory=ClientFilter)
    dropped: int = 0
    dropped_total: int = 0
    delivered: int = 0
    on_lag: LagObserver | None = None

    def offer(self, text: str) -> None:
        """Queue a broadcast without waiting; on a full outbox drop it and count it."""
        try:
            self.outbox.put_nowait(text)
        except anyio.WouldBlock:
            self.dropped += 1
            self.dropped_total += 1
        except anyio.ClosedResourceError:
            pass  # the connection is ending; its task removes it from the hub
        else:
            self.delivered += 1

    async def reply(self, message: dict[str, Any]) -> None:
        """Queue an answer to the client's own request; waits rather than drops."""
        await self.outbox.put(json.dumps(message))

    def mark_sent(self, text: str) -> None:
        """Called after ``text`` went out: records a broadcast's publish-to-send lag."""
        if self.on_lag is not None and isinstance(text, Broadcast):
            self.on_lag(time.time() - text.published_at, text.stamped_by_publisher)

    def take_lagged(self) -> int:
        count, self.dropped = self.dropped, 0
        return count


class Hub:
    def __init__(
        self, bus: Bus, *, queue_size: int = 256, on_lag: LagObserver | None = None
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._bus = bus
        self._queue_size = queue_size
        self._on_lag = on_lag
        self._clients: set[Client] = set()
        self._dropped_by_gone = 0
        self._subscription: Subscription | None = None
        self.received = 0
        self.malformed = 0
        self.bus_gaps = 0
        """Times the bus connection was lost and came back (clients were told each time)."""

    @property
    def bus_connected(self) -> bool:
        """Is the hub's subscription receiving now? False before it starts."""
        sub = self._subscription
        return sub is not None and sub.connected

    def connect(self, client_id: str) -> tuple[Client, Outbox]:
        """Register a client; its sender drains the returned outbox."""
        outbox = Outbox(self._queue_size)
        client = Client(client_id, outbox, on_lag=self._on_lag)
        self._clients.add(client)
        return client, outbox

    def disconnect(self, client: Client) -> None:
        if client in self._clients:
            self._clients.discard(client)
            self._dropped_by_gone += client.dropped_total
        client.outbox.close()

    @property
    def clients(self) -> int:
        return len(self._clients)

    @property
    def dropped_total(self) -> int:
        """Broadcasts dropped since start, including for clients gone since (a counter)."""
        return self._dropped_by_gone + sum(c.dropped_total for c in self._clients)

    def stats(self) -> dict[str, int]:
        return {
            "clients": len(self._clients),
            "received": self.received,
            "malformed": self.malformed,
            "dropped": sum(c.dropped_total for c in self._clients),
        }

    def dispatch(self, channel: str, payload: bytes) -> None:
        """Deliver a bus message's client messages to every client whose filter wants them."""
        if channel == BUS_RECONNECTED:
            self._tell_gap(payload)
            return
        kind, _, _ = channel.partition(":")
        received_at = time.time()
        try:
            text = payload.decode()
            message = json.loads(text)
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
            items: list[tuple[dict[str, Any], str | None]] = [(message, text)]
            if message.get("type") == FRAME_DETECTIONS:
                items = [(item, None) for item in detection_messages(message)]
        except (KeyError, TypeError, ValueError) as exc:
            self._malformed(channel, exc)
            return
        for item, item_text in items:
            self._deliver(kind, item, item_text, received_at)

    def _tell_gap(self, payload: bytes) -> None:
        """Tell every subscribed client that broadcasts were lost with the bus."""
        self.bus_gaps += 1
        notice: dict[str, Any] = {"type": "lagged", "reason": "bus_reconnected"}
        try:
            window = json.loads(payload)
        except ValueError:
            window = None
        if isinstance(window, dict):
            notice.update({k: window[k] for k in ("lost_at", "reconnected_at") if k in window})
        text = json.dumps(notice)
        told = 0
        for client in self._clients:
            if client.filter.active:
                client.offer(text)
                told += 1
        log.warning(
            "bus connection was lost (%s to %s); told %d client(s) they missed broadcasts",
            notice.get("lost_at"),
            notice.get("reconnected_at"),
            told,
        )

    def _malformed(self, channel: str, reason: object) -> None:
        self.received += 1
        self.malformed += 1
        log.warning("dropping malformed bus message on %s: %s", channel, reason)

    def _deliver(
        self, kind: str, message: dict[str, Any], text: str | None, received_at: float
    ) -> None:
        """Offer one client message; ``text`` is its JSON if the bus carried it as is."""
        self.received += 1
        if kind == "detections":
            wants = ClientFilter.wants_detection
        elif kind == "events":
            wants = ClientFilter.wants_event
        else:
            return
        broadcast: Broadcast | None = None
        for client in self._clients:
            if wants(client.filter, message):
                if broadcast is None:
                    broadcast = _broadcast(message, text, received_at)
                client.offer(broadcast)

    async def run(
        self,
        *,
        retry_seconds: float = 1.0,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen until cancelled; a failed subscription is logged and re-opened."""
        started = False
        while True:
            subscription = self._bus.subscribe([DETECTION_PATTERN, EVENT_PATTERN])
            self._subscription = subscription
            try:
                if not started:
                    started = True
                    task_status.started()
                async for channel, payload in subscription:
                    self.dispatch(channel, payload)
            except Exception:
                log.exception("bus subscription failed; re-subscribing in %ss", retry_seconds)
            finally:
                self._subscription = None
                with anyio.CancelScope(shield=True):
                    await subscription.aclose()
            await anyio.sleep(retry_seconds)
