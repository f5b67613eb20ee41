"""The MQTT frame-topic source (``--source mqtt://host:1883/detectflow/frames/+``).

A frame is one PUBLISH: the payload is the raw image (JPEG, PNG or WebP),
the camera id is the topic level the ``+`` of the filter matches (the last
level when the filter has no wildcard), and the optional ``frame_id``,
``frame_number``, ``timestamp`` and ``priority`` travel as MQTT 5 user
properties. Each worker has its own MQTT 5 connection and subscribes to the
shared subscription ``$share/<group>/<filter>``, so the broker splits the
frames between all workers of all processes using the same group.

Delivery guarantee. With ``qos=1`` (the default) the client acknowledges
manually (paho ``manual_ack=True``): the PUBACK for a message is sent only
after its result is stored (the frame carries its connection and packet id
and :class:`MqttAcknowledger` runs after the
:class:`~detectflow.flows.sinks.ResultWriter`), and the connection's
Receive Maximum (``receive_max``, default the detect engine's capacity)
makes the broker hold back further messages while that many are unacked:
real backpressure. What happens to unacked messages when a client dies is
the session's business: with the default clean session they go with it
(Mosquitto may hand a shared subscription's message to another member, the
spec only says SHOULD), so frames in flight at a crash can be lost; with
``session_expiry=SECONDS`` and a fixed ``client_id`` the broker keeps the
session and resends unacked messages on reconnect: at least once, and the
idempotent sinks make the repeat harmless. ``qos=0`` is at most once.
Acknowledging needs the connection that received the message, so results
must be written in the process that read them (true for ``--workers N``,
which are threads of one process).

Invalid messages (bad camera level, not an image, too big, bad property)
become failed results with the reason and are acknowledged once recorded.

URL options: ``group`` (``detectflow``), ``qos`` (0 or 1), ``client_id``
(a prefix; each worker appends its index; default random),
``session_expiry`` (seconds, default 0), ``receive_max``, ``count`` (most
frames handed on at once), ``idle`` (seconds without a message after which
a finite ``--until-empty`` run ends; default 1).
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from detectflow.core.errors import InvalidFrameError
from detectflow.core.frames import TIME_OF_ARRIVAL, make_frame
from detectflow.core.hookspecs import hookimpl
from detectflow.core.models import Frame, FrameResult
from detectflow.core.settings import Settings
from detectflow.flows.source_common import (
    Batch,
    SourceOptions,
    SourceReader,
    SourceUnavailableError,
    SourceURLError,
    fallback_frame_id,
    invalid_result,
    optional_fields,
)

if TYPE_CHECKING:
    from detectflow.flows.engine import DetectEngine

__all__ = [
    "MqttAcknowledger",
    "MqttFrameReader",
    "MqttSourceOptions",
    "detectflow_frame_sources",
    "message_to_frame",
    "mqtt_source_factory",
    "parse_mqtt_source_url",
]

log = logging.getLogger(__name__)

CLIENT_ATTR = "mqtt_client"
CONNECTION_ATTR = "mqtt_connection"
MID_ATTR = "mqtt_mid"
_OPTIONS = {"group", "qos", "client_id", "session_expiry", "receive_max", "count", "idle"}


@dataclass(frozen=True, slots=True)
class MqttSourceOptions:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    topic: str  # the filter, without $share
    camera_level: int
    group: str
    qos: int
    client_id: str
    session_expiry: int
    receive_max: int | None
    count: int
    idle: float

    @property
    def subscription(self) -> str:
        return f"$share/{self.group}/{self.topic}"


def parse_mqtt_source_url(url: str, settings: Settings) -> MqttSourceOptions:
    """``mqtt[s]://[user:pass@]host[:port]/<filter with one +>?group=...&qos=1``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SourceURLError(f"invalid mqtt source URL {url!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise SourceURLError(f"not an mqtt source URL: {url!r}")
    if not parts.hostname:
        raise SourceURLError(f"mqtt source URL has no host: {url!r}")
    topic = unquote(parts.path.lstrip("/"))
    levels = topic.split("/")
    if not topic or topic.startswith("$") or "#" in url or "\x00" in topic:
        raise SourceURLError(
            f"mqtt source needs a topic filter like detectflow/frames/+ (no # or $): {url!r}"
        )
    wild = [i for i, level in enumerate(levels) if "+" in level]
    if len(wild) > 1 or any(levels[i] != "+" for i in wild):
        raise SourceURLError(
            f"mqtt source topic may hold one + as a whole level (the camera id): {topic!r}"
        )
    if not wild and not levels[-1]:
        raise SourceURLError(f"mqtt source topic must end in the camera level: {topic!r}")
    options = SourceOptions("mqtt", parts.query, _OPTIONS)
    group = options.text("group", "detectflow")
    if not group or any(c in group for c in "/+#"):
        raise SourceURLError(f"mqtt source option group must be a name without / + #: {group!r}")
    receive_max = options.number("receive_max", 0, int, 0, 65_535)
    tls = parts.scheme == "mqtts"
    return MqttSourceOptions(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        topic=topic,
        camera_level=wild[0] if wild else len(levels) - 1,
        group=group,
        qos=options.number("qos", 1, int, 0, 1),
        client_id=options.text("client_id", f"detectflow-src-{uuid.uuid4().hex[:12]}"),
        session_expiry=options.number("session_expiry", 0, int, 0, 2**32 - 1),
        receive_max=receive_max or None,
        count=options.number("count", settings.batch_size, int, 1, 100_000),
        idle=options.number("idle", 1.0, float, 0.0, 86_400.0),
    )


def message_to_frame(
    topic: str,
    payload: bytes,
    properties: Sequence[tuple[str, str]],
    *,
    camera_level: int,
    max_bytes: int,
    attributes: dict[str, str],
) -> Frame | FrameResult:
    """A PUBLISH as a validated frame, or a failed result saying what is wrong."""
    levels = topic.split("/")
    camera = levels[camera_level] if camera_level < len(levels) else ""
    given = dict(properties)
    if "timestamp" not in given:
        attributes = {**attributes, TIME_OF_ARRIVAL: "1"}
    try:
        return make_frame(
            camera,
            payload,
            max_bytes=max_bytes,
            attributes=attributes,
            **optional_fields(given),
        )
    except InvalidFrameError as exc:
        # The same message redelivered gets the same id; different ones do not.
        digest = hashlib.sha256(payload).hexdigest()
        return invalid_result(
            camera,
            str(exc),
            frame_id=fallback_frame_id("mqtt", topic, digest, repr(sorted(properties))),
            attributes=attributes,
        )


@dataclass(frozen=True, slots=True)
class _Message:
    connection: int
    topic: str
    payload: bytes
    properties: tuple[tuple[str, str], ...]
    mid: int
    qos: int


class _Session:
    """One worker's broker connection; paho's thread only appends to the inbox."""

    def __init__(self, options: MqttSourceOptions, client_id: str, receive_max: int) -> None:
        self.options = options
        self.client_id = client_id
        self._lock = threading.Lock()
        self._inbox: deque[_Message] = deque()
        self._connection = 0
        self._subscribe_mid: int | None = None
        self.subscribed = False  # ever: a finite run counts quiet time from then on
        self.quiet_since = time.monotonic()
        self.closed = False
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=options.qos == 1,
        )
        if options.username is not None:
            client.username_pw_set(options.username, options.password)
        if options.tls:
            client.tls_set()
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.ReceiveMaximum = receive_max
        if options.session_expiry:
            properties.SessionExpiryInterval = options.session_expiry
        self._connect_properties = properties

    def start(self) -> None:
        self.client.connect_async(
            self.options.host,
            self.options.port,
            keepalive=30,
            clean_start=self.options.session_expiry == 0,
            properties=self._connect_properties,
        )
        self.client.loop_start()

    def take(self, limit: int) -> list[_Message]:
        taken: list[_Message] = []
        with self._lock:
            while self._inbox and len(taken) < limit:
                taken.append(self._inbox.popleft())
        return taken

    @property
    def buffered(self) -> int:
        with self._lock:
            return len(self._inbox)

    def ack(self, connection: int, mid: int) -> bool:
        """PUBACK ``mid`` if it came on the current connection (ids restart per connection)."""
        with self._lock:
            if connection != self._connection or self.closed:
                return False
        self.client.ack(mid, 1)
        return True

    def unsubscribe(self) -> None:
        self.client.unsubscribe(self.options.subscription)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self.client.disconnect()
        self.client.loop_stop()

    # -- paho's thread ------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.warning(
                "mqtt source %s: broker refused the connection: %s", self.client_id, reason_code
            )
            return
        _, mid = client.subscribe(
            self.options.subscription, options=SubscribeOptions(qos=self.options.qos)
        )
        with self._lock:
            self._connection += 1
            self._subscribe_mid = mid

    def _on_subscribe(
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
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            log.error(
                "mqtt source %s: broker refused subscription %s: %s",
                self.client_id,
                self.options.subscription,
                refused[0],
            )
            return
        with self._lock:
            self.subscribed = True
            self.quiet_since = time.monotonic()
        log.info("mqtt source %s subscribed to %s", self.client_id, self.options.subscription)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            closed = self.closed
        if not closed:
            log.warning(
                "mqtt source %s lost its connection (%s); reconnecting", self.client_id, reason_code
            )

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        user = getattr(msg.properties, "UserProperty", None) or ()
        with self._lock:
            self._inbox.append(
                _Message(
                    self._connection,
                    msg.topic,
                    bytes(msg.payload),
                    tuple((str(k), str(v)) for k, v in user),
                    msg.mid,
                    msg.qos,
                )
            )
            self.quiet_since = time.monotonic()


class MqttFrameReader(SourceReader):
    """One worker's connection: frames from its inbox, as many as the engine has room for."""

    source_name = "mqtt"

    def __init__(
        self,
        session: _Session,
        engine: DetectEngine,
        settings: Settings,
        *,
        until_empty: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(
            engine,
            settings,
            batch_size=session.options.count,
            until_empty=until_empty,
            stop=stop,
        )
        self.session = session

    def _start(self) -> None:
        self.session.start()

    def _take(self, granted: int) -> Batch | None:
        batch = self._convert(self.session.take(granted))
        if batch:
            return batch
        if self.until_empty and self.session.subscribed:
            quiet = time.monotonic() - self.session.quiet_since
            if quiet >= self.session.options.idle and self.session.buffered == 0:
                return None
        return []

    def _begin_drain(self) -> None:
        self.session.unsubscribe()

    def _leftover(self, granted: int) -> Batch:
        return self._convert(self.session.take(granted))

    def _convert(self, messages: list[_Message]) -> Batch:
        batch: Batch = []
        for message in messages:
            attributes: dict[str, str] = {}
            if message.qos == 1 and self.session.options.qos == 1:
                attributes = {
                    CLIENT_ATTR: self.session.client_id,
                    CONNECTION_ATTR: str(message.connection),
                    MID_ATTR: str(message.mid),
                }
            batch.append(
                message_to_frame(
                    message.topic,
                    message.payload,
                    message.properties,
                    camera_level=self.session.options.camera_level,
                    max_bytes=self.settings.max_frame_bytes,
                    attributes=attributes,
                )
            )
        return batch


class MqttAcknowledger:
    """PUBACK the messages whose results were just stored (the sink calls this).

    Also owns the workers' connections, so they outlive the readers until
    the last result is acknowledged, and closes them when the flow ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._warned = False

    def add(self, session: _Session) -> None:
        with self._lock:
            self._sessions[session.client_id] = session

    def __call__(self, results: Sequence[FrameResult]) -> None:
        missed = 0
        for result in results:
            attrs = result.frame.attributes
            client_id = attrs.get(CLIENT_ATTR)
            if client_id is None:
                continue
            with self._lock:
                session = self._sessions.get(client_id)
            acked = session is not None and session.ack(
                int(attrs[CONNECTION_ATTR]), int(attrs[MID_ATTR])
            )
            missed += not acked
        if missed and not self._warned:
            self._warned = True
            log.warning(
                "mqtt source: %d message(s) could not be acknowledged (their connection "
                "was lost or belongs to another process); the broker's session decides "
                "whether they are delivered again",
                missed,
            )

    def close(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()


def mqtt_source_factory(
    url: str,
    settings: Settings,
    *,
    engine: DetectEngine,
    until_empty: bool = False,
    stop: threading.Event | None = None,
) -> Any:
    """Build the source for ``url``; refuses bad options and an unreachable broker clearly."""
    from detectflow.flows.dataflow import ReaderSource

    options = parse_mqtt_source_url(url, settings)
    try:
        with socket.create_connection((options.host, options.port), timeout=2.0):
            pass
    except OSError as exc:
        raise SourceUnavailableError(
            f"cannot reach the MQTT broker at {options.host}:{options.port}: {exc}"
        ) from None
    acknowledger = MqttAcknowledger()
    receive_max = options.receive_max or max(1, min(engine.capacity, 65_535))

    def build(worker_index: int, worker_count: int) -> MqttFrameReader:
        session = _Session(options, f"{options.client_id}-{worker_index}", receive_max)
        acknowledger.add(session)
        return MqttFrameReader(session, engine, settings, until_empty=until_empty, stop=stop)

    return ReaderSource(build, acknowledge=acknowledger, close=acknowledger.close)


@hookimpl
def detectflow_frame_sources() -> dict[str, Callable[..., Any]]:
    return {"mqtt": mqtt_source_factory, "mqtts": mqtt_source_factory}
