"""Tools for the MQTT tests: a raw paho client, a cuttable TCP proxy, frames.

The raw client plays the parts detectflow's own code does not: a provider
that never answers, one that answers garbage, a stranger publishing to a
response topic. The proxy sits between a client and the real Mosquitto so a
test can drop the broker connection for real without stopping the shared
broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from detectflow.adapters.mqtt_link import publish_properties
from detectflow.core.frames import make_frame
from detectflow.core.images import encode_png
from detectflow.core.models import Frame
from tests import services

__all__ = ["RawClient", "TcpProxy", "broker_url", "sample_frame", "unique_topic"]


def unique_topic(name: str = "detect") -> str:
    return f"detectflow-test/{uuid.uuid4().hex}/{name}"


def broker_url(topic: str, port: int | None = None) -> str:
    return f"mqtt://{services.MQTT_HOST}:{port or services.MQTT_PORT}/{topic}"


def sample_frame(n: int = 0, width: int = 40, height: int = 20) -> Frame:
    rgb = bytes((n + x) % 256 for _ in range(height) for x in range(width) for _ in range(3))
    return make_frame(
        "cam-1", encode_png(width, height, rgb), max_bytes=1 << 20, frame_id=f"frame-{n}"
    )


class RawClient:
    """A blocking paho client: subscribe, publish, collect what arrives."""

    def __init__(self, on_message: Callable[[RawClient, mqtt.MQTTMessage], None] | None = None):
        self.messages: list[mqtt.MQTTMessage] = []
        self._handler = on_message
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"raw-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect(services.MQTT_HOST, services.MQTT_PORT)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.append(msg)
        if self._handler is not None:
            self._handler(self, msg)

    def _on_subscribe(self, *args: Any) -> None:
        self._subscribed.set()

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe([(topic, SubscribeOptions(qos=1))])
        assert self._subscribed.wait(5), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes, props: Properties | None = None) -> None:
        info = self.client.publish(topic, payload, qos=1, properties=props)
        info.wait_for_publish(5)

    def reply(
        self, request: mqtt.MQTTMessage, payload: bytes, *, status: str | None = "200"
    ) -> None:
        """Answer ``request`` on its Response Topic (from paho's thread: no waiting)."""
        props = publish_properties()
        props.CorrelationData = request.properties.CorrelationData  # type: ignore[union-attr]
        if status is not None:
            props.UserProperty = [("status", status)]
        topic = request.properties.ResponseTopic  # type: ignore[union-attr]
        self.client.publish(topic, payload, qos=1, properties=props)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class TcpProxy:
    """Forward a loopback port to the broker until :meth:`cut` drops everything."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                services.MQTT_HOST, services.MQTT_PORT
            )
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()

    async def cut(self) -> None:
        """Stop listening and drop every connection, as a dying broker would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in list(self._writers):
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
        self._writers.clear()
