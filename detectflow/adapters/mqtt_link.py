"""One paho MQTT 5 client on its own network thread, bridged to asyncio.

Requester and responder both need the same things from a broker
connection: connect lazily, (re)subscribe after every connect, reconnect
with backoff when the broker goes away, and tell callers *at once* that the
broker is unavailable instead of letting them wait for a timeout. paho
calls back on its network thread; :class:`MqttLink` keeps its state under a
lock and wakes asyncio waiters with ``loop.call_soon_threadsafe`` only, so
no event loop is ever blocked on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from detectflow.adapters.mqtt_wire import MqttEndpoint
from detectflow.core.errors import PermanentProviderError, ProviderError, TransientProviderError

__all__ = ["MqttLink", "publish_properties"]

log = logging.getLogger(__name__)

State = Literal["idle", "connecting", "ready", "down", "closed"]
# CONNACK codes that no amount of retrying fixes: the configuration is wrong.
_PERMANENT_CONNACK = frozenset({0x84, 0x85, 0x86, 0x87, 0x8C})


class MqttLink:
    """A broker connection that is either ready, on its way, or failing fast.

    ``on_message`` and ``on_published(mid, reason_code)`` run on paho's
    thread and must only hand work over; ``on_lost(error)`` runs there too
    when an established connection drops, and ``on_ready()`` after every
    (re)connect. ``will`` is a ``(topic, payload)`` the broker publishes,
    retained, when the connection dies without a goodbye (a killed process).
    """

    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        client_id: str,
        subscriptions: Sequence[str],
        on_message: Callable[[mqtt.MQTTMessage], None],
        on_published: Callable[[int, ReasonCode], None] | None = None,
        on_lost: Callable[[ProviderError], None] | None = None,
        on_ready: Callable[[], None] | None = None,
        will: tuple[str, bytes] | None = None,
        keepalive: int = 30,
        reconnect_delay: tuple[int, int] = (1, 30),
        ca_certs: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self._subscriptions = tuple(subscriptions)
        self._on_message = on_message
        self._on_published = on_published
        self._on_lost = on_lost
        self._on_ready = on_ready
        self._will = will
        self._keepalive = keepalive
        self._lock = threading.Lock()
        self._state: State = "idle"
        self._error: ProviderError | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._subscribe_mid: int | None = None
        self._thread_started = False
        self._client = self._make_client(reconnect_delay, ca_certs)

    @property
    def where(self) -> str:
        return f"{self.endpoint.host}:{self.endpoint.port}"

    @property
    def ready(self) -> bool:
        return self._state == "ready"

    def _make_client(self, reconnect_delay: tuple[int, int], ca_certs: str | None) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        if self.endpoint.username is not None:
            client.username_pw_set(self.endpoint.username, self.endpoint.password)
        if self.endpoint.tls:
            client.tls_set(ca_certs=ca_certs)
        client.reconnect_delay_set(*reconnect_delay)
        if self._will is not None:
            client.will_set(self._will[0], self._will[1], qos=1, retain=True)
        client.on_connect = self._handle_connect
        client.on_connect_fail = self._handle_connect_fail
        client.on_subscribe = self._handle_subscribe
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        client.on_socket_open = _no_delay
        return client

    # -- asyncio side ------------------------------------------------------

    async def wait_ready(self, timeout: float) -> None:
        """Connect on first use; fail at once while the broker is known to be down."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._state == "ready":
                return
            if self._state in ("down", "closed"):
                assert self._error is not None
                raise self._error
            start = self._state == "idle"
            self._state = "connecting"
            self._waiters.append((loop, future))
        if start:
            self._start()
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            raise TransientProviderError(
                f"broker unavailable: no connection to {self.where} within {timeout:g} s"
            ) from None
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove((loop, future))
        error = self._failure()
        if error is not None:
            raise error

    def _failure(self) -> ProviderError | None:
        """The reason the link is not ready, or None when it is."""
        with self._lock:
            if self._state == "ready":
                return None
            return self._error or TransientProviderError(
                f"broker unavailable: not connected to {self.where}"
            )

    def _start(self) -> None:
        self._client.connect_async(
            self.endpoint.host, self.endpoint.port, keepalive=self._keepalive, clean_start=True
        )
        self._client.loop_start()
        self._thread_started = True

    def publish(
        self, topic: str, payload: bytes, properties: Properties | None, *, retain: bool = False
    ) -> tuple[int, int]:
        """Queue a QoS 1 publish; return paho's message id and result code.

        Raises at once when not connected. A non-zero result code can still
        mean paho queued the message, which is why the id is returned too.
        """
        error = self._failure()
        if error is not None:
            raise error
        info = self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        return info.mid, info.rc

    async def close(self) -> None:
        """Disconnect and stop the network thread; safe to call more than once."""
        with self._lock:
            if self._state == "closed":
                return
            self._set_state("closed", PermanentProviderError("MQTT client is closed"))
        self._client.disconnect()
        if self._thread_started:
            # loop_stop joins paho's thread (up to ~1 s in a reconnect wait).
            await asyncio.to_thread(self._client.loop_stop)

    # -- paho's thread -----------------------------------------------------

    def _set_state(self, state: State, error: ProviderError | None) -> None:
        """Move to ``state`` and wake every waiter; call with the lock held."""
        if self._state == "closed":
            return
        self._state, self._error = state, error
        waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_wake, future)

    def _handle_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            kind = (
                PermanentProviderError
                if reason_code.value in _PERMANENT_CONNACK
                else TransientProviderError
            )
            error = kind(f"broker {self.where} refused the connection: {reason_code}")
            log.warning("MQTT client %s: %s", self.client_id, error.message)
            with self._lock:
                self._set_state("down", error)
            return
        topics = [(topic, SubscribeOptions(qos=1)) for topic in self._subscriptions]
        if not topics:
            log.info("MQTT client %s connected to %s", self.client_id, self.where)
            with self._lock:
                self._set_state("ready", None)
            if self._on_ready is not None:
                self._on_ready()
            return
        _, mid = client.subscribe(topics)
        with self._lock:
            self._subscribe_mid = mid

    def _handle_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._lock:
            if mid != self._subscribe_mid:
                return
            refused = [
                f"{topic} ({code})"
                for topic, code in zip(self._subscriptions, reason_codes, strict=False)
                if code.is_failure
            ]
            if refused:
                error = PermanentProviderError(
                    f"broker {self.where} refused subscription to {', '.join(refused)}"
                )
                self._set_state("down", error)
            else:
                log.info("MQTT client %s connected to %s", self.client_id, self.where)
                self._set_state("ready", None)
        if not refused and self._on_ready is not None:
            self._on_ready()

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        error = TransientProviderError(f"broker unavailable: cannot connect to {self.where}")
        log.warning("MQTT client %s: %s; retrying with backoff", self.client_id, error.message)
        with self._lock:
            self._set_state("down", error)

    def _handle_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        error = TransientProviderError(
            f"broker unavailable: connection to {self.where} lost ({reason_code})"
        )
        with self._lock:
            was_up = self._state in ("ready", "connecting")
            self._set_state("down", error)
        if was_up:
            log.warning("MQTT client %s: %s; reconnecting", self.client_id, error.message)
        if was_up and self._on_lost is not None:
            self._on_lost(error)

    def _handle_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_message(msg)

    def _handle_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        if self._on_published is not None:
            self._on_published(mid, reason_code)


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Turn Nagle off: paho leaves it on, and small QoS 1 packets then wait
    for delayed ACKs (measured: 516 -> several thousand round trips/s)."""
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def publish_properties() -> Properties:
    """Empty PUBLISH properties (paho's constructor is untyped)."""
    return Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
