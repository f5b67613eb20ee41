"""The MQTT publisher: object events and counts to a broker, off the flow's thread.

The flow hands each result's object events over (:meth:`MqttPublisher.offer`,
never blocking: past ``queue_size`` waiting they are dropped and counted);
one thread turns them into Frigate's messages
(:class:`~detectflow.publish.frigate.FrigateTopics`) and publishes them at
QoS 1 over the adapters' broker connection
(:class:`~detectflow.adapters.mqtt_link.MqttLink`), whose last will says
``offline``. After every (re)connect it says ``online`` and sends every count
again, since counts changed while the broker was away were lost with it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from detectflow.adapters.mqtt_link import MqttLink
from detectflow.adapters.mqtt_wire import MqttEndpoint, parse_mqtt_url
from detectflow.core.errors import ProviderError
from detectflow.core.models import FrameResult
from detectflow.core.object_events import FrameObjects
from detectflow.core.settings import Settings
from detectflow.publish.frigate import FrigateTopics, Message
from detectflow.publish.handoff import Handoff

__all__ = ["DEFAULT_PREFIX", "DISCOVERY_PREFIX", "MqttPublisher", "parse_publish_url"]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "detectflow"
DISCOVERY_PREFIX = "homeassistant"
_WARN_EVERY = 10.0  # seconds between warnings about dropped events
_MAX_UNACKED = 1000
"""QoS 1 messages the broker has not acknowledged yet before the thread waits: paho
queues without bound, so this is what keeps a slow broker's backlog bounded."""


def parse_publish_url(url: str) -> MqttEndpoint:
    """``mqtt[s]://[user[:password]@]host[:port][/<prefix>]``; ``topic`` is the prefix."""
    parts = urlsplit(url)
    if not parts.path.strip("/"):
        url = urlunsplit(parts._replace(path="/" + DEFAULT_PREFIX))
    endpoint = parse_mqtt_url(url)
    if "+" in endpoint.topic:
        raise ValueError(f"MQTT prefix may not contain wildcards: {endpoint.topic!r}")
    return endpoint


@dataclass(frozen=True, slots=True)
class _Retained:
    """A count the broker held when we subscribed."""

    topic: str
    payload: bytes


class _Reconnected:
    """The link came (back) up: send every count again."""


_Item = FrameObjects | _Retained | _Reconnected


class MqttPublisher:
    """Publishes the object events of the results it is offered; thread-safe."""

    def __init__(
        self,
        url: str,
        *,
        queue_size: int = 10_000,
        discovery: bool = False,
        client_id: str | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        endpoint = parse_publish_url(url)
        self.topics = FrigateTopics(
            endpoint.topic, discovery=DISCOVERY_PREFIX if discovery else None
        )
        self._handoff: Handoff[_Item] = Handoff(queue_size, on_overflow=self._overflowed)
        self._warned_at = -_WARN_EVERY
        self._connect_timeout = connect_timeout
        # Counters each advanced by one thread only, through itertools.count (whose
        # next() is atomic): no lock per message. Measured in bench/publish.py: a
        # Condition taken per publish and per acknowledgement cost a third of the rate.
        self._sent, self._last_sent = itertools.count(1), 0
        self._acks, self._last_ack = itertools.count(1), 0
        self._nacks, self._last_nack = itertools.count(1), 0
        self._unsent, self._last_unsent = itertools.count(1), 0
        self._room = threading.Event()
        self._room.set()
        prefix = self.topics.prefix
        self._link = MqttLink(
            endpoint,
            client_id=client_id or f"detectflow-publish-{uuid.uuid4().hex[:12]}",
            subscriptions=[f"{prefix}/+/+", f"{prefix}/+/+/+"],  # the counts, once retained
            on_message=self._on_message,
            on_published=self._on_published,
            on_ready=self._on_ready,
            will=(self.topics.available_topic, b"offline"),
        )
        self._online = threading.Event()
        self._thread = threading.Thread(target=self._run, name="detectflow-mqtt-publish")
        self._started = False
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> MqttPublisher | None:
        if not settings.publish_mqtt_url:
            return None
        return cls(
            settings.publish_mqtt_url,
            queue_size=settings.publish_queue_size,
            discovery=settings.publish_mqtt_discovery,
        )

    @property
    def dropped(self) -> int:
        """Frames whose events were dropped because ``queue_size`` frames' were waiting."""
        return self._handoff.dropped

    @property
    def published(self) -> int:
        """Messages the broker acknowledged."""
        return self._last_ack - self._last_nack

    @property
    def failed(self) -> int:
        """Messages not sent (the broker was away) or refused by the broker."""
        return self._last_unsent + self._last_nack

    def start(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()

    def offer(self, results: Sequence[FrameResult]) -> None:
        """Hand over the results' object events; never blocks."""
        found = [r.objects for r in results if r.objects is not None and r.objects.events]
        if found:
            self.start()
            self._handoff.offer(found)

    def close(self, timeout: float = 10.0) -> None:
        """Publish what is queued, say ``offline`` and disconnect (idempotent)."""
        self._handoff.close()
        with self._lock:
            started, self._started = self._started, True
        if started and self._thread.is_alive():
            self._thread.join(timeout)
        if self._link.ready:
            self._publish(self.topics.available(online=False))
            self._wait_acked(timeout)
        asyncio.run(self._link.close())

    def _overflowed(self, items: list[_Item]) -> None:
        """The flow's thread: say so in the log, at most every ``_WARN_EVERY`` s."""
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            log.warning(
                "MQTT publisher: %d frames' events dropped so far (%d waiting: the broker "
                "is slower than the flow, or away)",
                self._handoff.dropped,
                self._handoff.size,
            )

    # -- the publisher's thread -----------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._link.wait_ready(self._connect_timeout))
        except ProviderError as exc:  # paho keeps reconnecting; _on_ready resends the counts
            log.warning("MQTT publisher: %s; events are dropped until it connects", exc.message)
        self._online.wait(self._connect_timeout)  # "online" goes before the first event
        handoff = self._handoff
        while True:
            batch = handoff.take(timeout=0.5)
            if not batch:
                if handoff.closed:
                    return
                continue
            messages: list[Message] = []
            for item in batch:
                if isinstance(item, FrameObjects):
                    messages += self.topics.messages(item.events)
                elif isinstance(item, _Retained):
                    messages += self.topics.resync(item.topic, item.payload)
                else:
                    messages += self.topics.republish()
            for message in messages:
                self._publish(message)

    def _publish(self, message: Message, *, wait: bool = True) -> None:
        """Send at QoS 1, waiting (the publisher's thread only) while ``_MAX_UNACKED``
        are unacknowledged, until half of them are."""
        if wait and self._last_sent - self._last_ack >= _MAX_UNACKED:
            self._room.clear()
            if self._last_sent - self._last_ack >= _MAX_UNACKED:  # an ack may have come
                self._room.wait(1.0)
        try:
            self._link.publish(message.topic, message.payload, None, retain=message.retain)
        except ProviderError:
            self._last_unsent = next(self._unsent)
            return
        self._last_sent = next(self._sent)

    def _wait_acked(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._last_sent > self._last_ack and self._link.ready:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)

    # -- paho's thread ---------------------------------------------------

    def _on_ready(self) -> None:
        self._publish(self.topics.available(online=True), wait=False)  # paho's thread acks
        self._online.set()
        self._handoff.offer([_Reconnected()])

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        if message.retain:  # only what the broker held, not our own counts coming back
            self._handoff.offer([_Retained(message.topic, bytes(message.payload))])

    def _on_published(self, mid: int, reason_code: ReasonCode) -> None:
        self._last_ack = acked = next(self._acks)
        if reason_code.is_failure:
            self._last_nack = next(self._nacks)
        if not self._room.is_set() and self._last_sent - acked <= _MAX_UNACKED // 2:
            self._room.set()
