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
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from detectflow.adapters.mqtt_link import MqttLink, publish_properties
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
        self.published = 0
        """Messages the broker acknowledged."""
        self.failed = 0
        """Messages not sent: the broker was away."""
        self._handoff: Handoff[_Item] = Handoff(queue_size)
        self._connect_timeout = connect_timeout
        self._unacked = 0
        self._acked = threading.Condition()
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
        """Events dropped because ``queue_size`` were already waiting."""
        return self._handoff.dropped

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
        """Send at QoS 1. The lock is never held across paho's ``publish``: paho
        calls ``on_published`` holding its own lock, which would deadlock."""
        with self._acked:
            while wait and self._unacked >= _MAX_UNACKED and self._link.ready:
                self._acked.wait(0.5)
            self._unacked += 1
        try:
            self._link.publish(
                message.topic, message.payload, publish_properties(), retain=message.retain
            )
        except ProviderError:
            with self._acked:
                self._unacked -= 1
                self.failed += 1

    def _wait_acked(self, timeout: float) -> None:
        with self._acked:
            self._acked.wait_for(lambda: self._unacked <= 0 or not self._link.ready, timeout)

    # -- paho's thread ---------------------------------------------------

    def _on_ready(self) -> None:
        self._publish(self.topics.available(online=True), wait=False)  # paho's thread acks
        self._online.set()
        self._handoff.offer([_Reconnected()])

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        if message.retain:  # only what the broker held, not our own counts coming back
            self._handoff.offer([_Retained(message.topic, bytes(message.payload))])

    def _on_published(self, mid: int, reason_code: ReasonCode) -> None:
        with self._acked:
            self._unacked -= 1
            if reason_code.is_failure:
                self.failed += 1
            else:
                self.published += 1
            self._acked.notify_all()
