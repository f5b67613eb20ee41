"""Provider type ``mqtt``: detection as MQTT 5 request/response.

``endpoint_url`` is ``mqtt://host:1883/<request topic>`` (``mqtts://`` for
TLS, ``user:password@`` for broker credentials). Each frame is published
with QoS 1 to the request topic; the payload is the JSON body of the HTTP
``detectflow`` dialect (see :mod:`detectflow.adapters.mqtt_wire`), with:

- Response Topic ``<prefix>/<client id>``, unique to this adapter and
  subscribed once per connection, before any request goes out;
- Correlation Data: 16 random bytes per request;
- Message Expiry Interval: ``ceil(timeout_seconds)``, so a broker or
  responder never works on a request its requester gave up on;
- Payload Format Indicator 1, Content Type ``application/json``;
- user property ``authorization: Bearer <api_key>`` when a key is set.

The waiter for an answer is registered before publishing, so the fastest
answer is never lost. Answers nobody waits for are dropped and counted:
:attr:`MqttAdapter.late_answers` (the request timed out or was failed
first) and :attr:`MqttAdapter.unknown_answers` (no such request). A broker
that reports "no matching subscribers" fails the request at once as
transient instead of letting it time out, and so does a lost connection
for every request waiting on it; paho reconnects with backoff meanwhile.

``config.options``: ``response_topic_prefix`` (``detectflow/responses``),
``keepalive`` (30 s), ``ca_certs`` (a CA bundle path for ``mqtts``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from detectflow.adapters.mqtt_link import MqttLink, publish_properties
from detectflow.adapters.mqtt_wire import (
    CONTENT_TYPE,
    decode_answer,
    encode_request,
    error_for_status,
    parse_mqtt_url,
)
from detectflow.core.adapter import ProviderAdapter
from detectflow.core.errors import PermanentProviderError, ProviderError, TransientProviderError
from detectflow.core.hookspecs import hookimpl
from detectflow.core.models import Frame, ProviderConfig, RawDetection

__all__ = ["MqttAdapter", "detectflow_provider_types"]

Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[mqtt.MQTTMessage]"]
Answer = tuple["asyncio.Future[mqtt.MQTTMessage]", mqtt.MQTTMessage]

_NO_SUBSCRIBERS = 0x10
# PUBACK codes worth retrying: unspecified, implementation-specific, quota exceeded.
_TRANSIENT_PUBACK = frozenset({0x80, 0x83, 0x97})
_ABANDONED_GRACE_SECONDS = 10.0
_ABANDONED_MAX = 100_000


class MqttAdapter(ProviderAdapter):
    """Request/response over one MQTT 5 client (own network thread) per adapter."""

    provider_type = "mqtt"

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        try:
            self.endpoint = parse_mqtt_url(config.endpoint_url)
        except ValueError as exc:
            raise PermanentProviderError(str(exc)) from None
        options = config.options
        try:
            keepalive = int(options.get("keepalive", 30))
        except (TypeError, ValueError):
            raise PermanentProviderError("option 'keepalive' must be whole seconds") from None
        self.client_id = f"detectflow-{uuid.uuid4().hex[:16]}"
        prefix = str(options.get("response_topic_prefix", "detectflow/responses")).rstrip("/")
        self.response_topic = f"{prefix}/{self.client_id}"
        self.late_answers = 0
        self.unknown_answers = 0
        self._expiry = max(1, math.ceil(config.timeout_seconds))
        self._auth = ("authorization", f"Bearer {config.api_key}") if config.api_key else None
        self._lock = threading.Lock()
        self._pending: dict[bytes, Waiter] = {}
        self._abandoned: OrderedDict[bytes, float] = OrderedDict()
        self._published: dict[int, bytes] = {}
        self._early_acks: dict[int, ReasonCode] = {}
        self._inbox: dict[asyncio.AbstractEventLoop, list[Answer]] = {}
        self._random = b""
        self._random_at = 0
        self._closed = False
        self._template = self._request_template()
        self._link = MqttLink(
            self.endpoint,
            client_id=self.client_id,
            subscriptions=[self.response_topic],
            on_message=self._on_message,
            on_published=self._on_published,
            on_lost=self._on_lost,
            keepalive=keepalive,
            ca_certs=options.get("ca_certs"),
        )

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def detect(self, frame: Frame) -> list[RawDetection]:
        if self._closed:
            raise PermanentProviderError("MQTT adapter is closed")
        loop = asyncio.get_running_loop()
        timeout = self.config.timeout_seconds
        deadline = loop.time() + timeout
        await self._link.wait_ready(timeout)
        payload = encode_request(frame, self.config.confidence_threshold)
        future: asyncio.Future[mqtt.MQTTMessage] = loop.create_future()
        with self._lock:
            correlation = self._new_correlation()
            self._pending[correlation] = (loop, future)
        try:
            self._publish(correlation, payload)
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                message = await future
        except TimeoutError:
            raise TransientProviderError(
                f"no answer on {self.endpoint.topic!r} within {timeout:g} s"
            ) from None
        finally:
            with self._lock:
                if self._pending.pop(correlation, None) is not None:
                    self._abandon(correlation)
        return _read_answer(message)

    def _publish(self, correlation: bytes, payload: bytes) -> None:
        # paho validates every property assignment (~0.1 ms for six); copying a
        # filled-in template and setting only the correlation data skips that.
        props = copy.copy(self._template)
        props.CorrelationData = correlation
        mid, rc = self._link.publish(self.endpoint.topic, payload, props)
        # Map the message id before looking at rc: a queued message still gets a PUBACK.
        with self._lock:
            early = self._early_acks.pop(mid, None)
            if early is None:
                self._published[mid] = correlation
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise TransientProviderError(
                f"broker unavailable: publish failed ({mqtt.error_string(rc)})"
            )
        if early is not None:
            self._check_puback(correlation, early)

    def _request_template(self) -> Properties:
        props = publish_properties()
        props.ResponseTopic = self.response_topic
        props.MessageExpiryInterval = self._expiry
        props.PayloadFormatIndicator = 1
        props.ContentType = CONTENT_TYPE
        if self._auth is not None:
            props.UserProperty = [self._auth]
        return props

    async def aclose(self) -> None:
        """Disconnect, stop the network thread and fail whoever still waits."""
        if self._closed:
            return
        self._closed = True
        await self._link.close()
        self._fail_all("MQTT adapter closed while waiting for an answer")

    # -- paho's network thread -------------------------------------------

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        props = message.properties
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        with self._lock:
            waiter = self._pending.pop(correlation, None) if correlation else None
            if waiter is None:
                if correlation and self._abandoned.pop(correlation, None) is not None:
                    self.late_answers += 1
                else:
                    self.unknown_answers += 1
                return
            loop, future = waiter
            inbox = self._inbox.get(loop)
            if inbox is not None:  # a drain is already scheduled on that loop
                inbox.append((future, message))
                return
            self._inbox[loop] = [(future, message)]
        try:
            loop.call_soon_threadsafe(self._drain, loop)
        except RuntimeError:  # the requester's loop is gone
            with self._lock:
                self.late_answers += len(self._inbox.pop(loop, ()))

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand over every answer that arrived for ``loop`` since the last drain.

        One wake-up per batch instead of one per answer: each cross-thread
        wake-up is a syscall that hands the GIL around.
        """
        with self._lock:
            answers = self._inbox.pop(loop, [])
        for future, message in answers:
            if future.done():  # timed out while the answer was on its way
                with self._lock:
                    self.late_answers += 1
            else:
                future.set_result(message)

    def _on_published(self, mid: int, reason_code: ReasonCode) -> None:
        with self._lock:
            correlation = self._published.pop(mid, None)
            if correlation is None:
                if len(self._early_acks) > 10_000:  # only ever a handful; never grow unbounded
                    self._early_acks.clear()
                self._early_acks[mid] = reason_code
                return
        self._check_puback(correlation, reason_code)

    def _check_puback(self, correlation: bytes, code: ReasonCode) -> None:
        if code.value == _NO_SUBSCRIBERS:
            error: ProviderError = TransientProviderError(
                f"no provider is subscribed to {self.endpoint.topic!r}"
            )
        elif not code.is_failure:
            return
        elif code.value in _TRANSIENT_PUBACK:
            error = TransientProviderError(f"broker did not take the request: {code}")
        else:
            error = PermanentProviderError(f"broker refused the request: {code}")
        with self._lock:
            waiter = self._pending.pop(correlation, None)
            if waiter is not None:
                self._abandon(correlation)
        if waiter is not None:
            _fail([waiter], error)

    def _on_lost(self, error: ProviderError) -> None:
        self._fail_all(error.message)

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            waiters, self._pending = list(self._pending.items()), {}
            for correlation, _ in waiters:
                self._abandon(correlation)
        _fail((w for _, w in waiters), TransientProviderError(reason))

    def _new_correlation(self) -> bytes:
        """16 bytes from ``os.urandom``, drawn 4 KiB at a time; call with the lock held."""
        if self._random_at >= len(self._random):
            self._random, self._random_at = os.urandom(4096), 0
        self._random_at += 16
        return self._random[self._random_at - 16 : self._random_at]

    def _abandon(self, correlation: bytes) -> None:
        """Remember a request nobody waits for any more; call with the lock held."""
        now = time.monotonic()
        self._abandoned[correlation] = now + self._expiry + _ABANDONED_GRACE_SECONDS
        while self._abandoned:
            oldest, forget_at = next(iter(self._abandoned.items()))
            if forget_at > now and len(self._abandoned) <= _ABANDONED_MAX:
                break
            del self._abandoned[oldest]


def _fail(waiters: Iterable[Waiter], error: ProviderError) -> None:
    for loop, future in waiters:
        exc = type(error)(error.message, status=error.status)
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
            loop.call_soon_threadsafe(_set_exception, future, exc)


def _set_exception(future: asyncio.Future[mqtt.MQTTMessage], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _read_answer(message: mqtt.MQTTMessage) -> list[RawDetection]:
    props = message.properties
    users = dict(getattr(props, "UserProperty", None) or ()) if props is not None else {}
    error = error_for_status(users.get("status"), users.get("message"))
    if error is not None:
        raise error
    return decode_answer(message.payload)


@hookimpl
def detectflow_provider_types() -> list[type[ProviderAdapter]]:
    return [MqttAdapter]
