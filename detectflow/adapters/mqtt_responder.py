"""The provider side of the MQTT 5 request/response protocol.

:class:`MqttResponder` turns any ``handler(frame) -> list[RawDetection]``
into an MQTT detection provider: ``detectflow simulate --protocol mqtt``
runs it with the simulator's answers, and a vendor can run it with a model.
It follows the rules of RPC over MQTT (see
:mod:`detectflow.adapters.mqtt_wire` for the payloads):

- answers go to the request's Response Topic with its Correlation Data,
  QoS 1, ``status`` and ``message`` user properties;
- a request seen again while it has not expired (a QoS 1 redelivery) is
  not worked on twice: a de-duplication cache keeps correlation data for
  the request's expiry time;
- work on a request stops at its expiry and no answer is sent after it;
- with ``api_key`` set, requests without ``authorization: Bearer <key>``
  are answered ``401``;
- handler errors become statuses: a ``ProviderError`` with a ``status``
  sends that status, else transient -> ``503`` and permanent -> ``422``;
  a bad request is ``400``, any other exception ``500``.

With ``group`` set it subscribes to ``$share/<group>/<topic>`` so several
responders share the load. ``min_confidence`` from the request is honoured
by dropping weaker detections from the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hmac
import inspect
import logging
import math
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import paho.mqtt.client as mqtt

from detectflow.adapters.mqtt_link import MqttLink, publish_properties
from detectflow.adapters.mqtt_wire import (
    CONTENT_TYPE,
    decode_request,
    encode_answer,
    encode_error,
    parse_mqtt_url,
    status_for_error,
)
from detectflow.core.errors import DetectflowError, ProviderError
from detectflow.core.models import Frame, RawDetection

__all__ = ["MqttResponder", "ResponderStats", "ResponseHandler"]

log = logging.getLogger(__name__)

ResponseHandler = Callable[[Frame], list[RawDetection] | Awaitable[list[RawDetection]]]

_DEFAULT_TTL_SECONDS = 60.0
_BASE = publish_properties()
_BASE.PayloadFormatIndicator = 1
_BASE.ContentType = CONTENT_TYPE
_OK = copy.copy(_BASE)
_OK.UserProperty = [("status", "200"), ("message", "OK")]
_DEDUP_MAX = 100_000


@dataclass(slots=True)
class ResponderStats:
    """What happened to every request the responder received."""

    received: int = 0
    answered: int = 0
    errors: int = 0  # answered with a non-200 status (401, 400, 5xx...)
    duplicates: int = 0
    expired: int = 0  # not answered: past the request's expiry
    unanswerable: int = 0  # no Response Topic to answer on
    unsent: int = 0  # the broker was gone when the answer was ready


class MqttResponder:
    """Serve ``handler`` on the request topic of ``url`` until :meth:`stop`."""

    def __init__(
        self,
        handler: ResponseHandler,
        *,
        url: str,
        api_key: str | None = None,
        latency: float = 0.0,
        group: str | None = None,
        max_frame_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        self.endpoint = parse_mqtt_url(url)
        self.handler = handler
        self.api_key = api_key
        self.latency = latency
        self.max_frame_bytes = max_frame_bytes
        self.stats = ResponderStats()
        topic = self.endpoint.topic
        self.subscription = f"$share/{group}/{topic}" if group else topic
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._inbox: list[mqtt.MQTTMessage] = []
        self._inbox_lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, bytes], float] = OrderedDict()
        self._link = MqttLink(
            self.endpoint,
            client_id=f"detectflow-responder-{uuid.uuid4().hex[:12]}",
            subscriptions=[self.subscription],
            on_message=self._on_message,
        )

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; raises ``TransientProviderError`` if the broker is down."""
        self._loop = asyncio.get_running_loop()
        await self._link.wait_ready(timeout)

    async def stop(self) -> None:
        """Stop answering, cancel work in progress and disconnect; idempotent."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._link.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        """paho's thread: queue the request for the event loop, nothing more."""
        loop = self._loop
        if loop is None:
            return
        with self._inbox_lock:
            self._inbox.append(message)
            if len(self._inbox) > 1:  # a drain is already scheduled
                return
        with contextlib.suppress(RuntimeError):  # loop closed: we are stopping
            loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._inbox_lock:
            messages, self._inbox = self._inbox, []
        loop = asyncio.get_running_loop()
        for message in messages:
            task = loop.create_task(self._serve(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, message: mqtt.MQTTMessage) -> None:
        loop = asyncio.get_running_loop()
        self.stats.received += 1
        props = message.properties
        response_topic: str | None = getattr(props, "ResponseTopic", None)
        correlation: bytes = getattr(props, "CorrelationData", None) or b""
        expiry: int | None = getattr(props, "MessageExpiryInterval", None)
        users = dict(getattr(props, "UserProperty", None) or ())
        if not response_topic:
            self.stats.unanswerable += 1
            log.warning("request on %s has no Response Topic; not answered", message.topic)
            return
        ttl = float(expiry) if expiry else _DEFAULT_TTL_SECONDS
        deadline = loop.time() + ttl
        if self._is_duplicate((response_topic, correlation), deadline, loop.time()):
            self.stats.duplicates += 1
            return
        status, body, message_text = await self._answer(message.payload, users, deadline)
        remaining = deadline - loop.time()
        if remaining <= 0:
            self.stats.expired += 1
            return
        # Copy a filled-in template: paho validates each property assignment.
        props_out = copy.copy(_OK if status == 200 else _BASE)
        props_out.CorrelationData = correlation
        if expiry:
            props_out.MessageExpiryInterval = max(1, math.ceil(remaining))
        if status != 200:
            props_out.UserProperty = [("status", str(status)), ("message", message_text)]
        try:
            self._link.publish(response_topic, body, props_out)
        except ProviderError as exc:
            self.stats.unsent += 1
            log.warning("answer to %s not sent: %s", response_topic, exc.message)
            return
        if status == 200:
            self.stats.answered += 1
        else:
            self.stats.errors += 1

    async def _answer(
        self, payload: bytes | bytearray, users: dict[str, str], deadline: float
    ) -> tuple[int, bytes, str]:
        if self.api_key is not None:
            given = users.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                return (
                    401,
                    encode_error(401, "missing or wrong api key"),
                    "missing or wrong api key",
                )
        try:
            async with asyncio.timeout_at(deadline):
                frame, min_confidence = decode_request(payload, max_bytes=self.max_frame_bytes)
                if self.latency > 0:
                    await asyncio.sleep(self.latency)
                result = self.handler(frame)
                detections = await result if inspect.isawaitable(result) else result
        except TimeoutError:
            return 504, b"", "expired"  # never sent: the deadline has passed
        except Exception as exc:
            if not isinstance(exc, DetectflowError):
                log.exception("handler failed on a request")
            status = status_for_error(exc)
            text = exc.message if isinstance(exc, ProviderError) else _describe(exc)
            return status, encode_error(status, text), text
        kept = [d for d in detections if d.confidence >= min_confidence]
        return 200, encode_answer(kept), "OK"

    def _is_duplicate(self, key: tuple[str, bytes], deadline: float, now: float) -> bool:
        """Record ``key`` until ``deadline``; True when it is already recorded and alive."""
        while self._seen:
            oldest, until = next(iter(self._seen.items()))
            if until > now and len(self._seen) < _DEDUP_MAX:
                break
            del self._seen[oldest]
        if key[1] and self._seen.get(key, 0.0) > now:
            return True
        self._seen[key] = deadline
        return False


def _describe(exc: Exception) -> str:
    if isinstance(exc, DetectflowError):
        return str(exc)
    return f"handler failed: {type(exc).__name__}"
