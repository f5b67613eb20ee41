"""Publishing: object events/s through the MQTT sink (QoS 1, Mosquitto on loopback)
and the webhook sink (a loopback receiver), each next to a bare client doing the
same job in the same run.

- MQTT: :class:`~detectflow.publish.mqtt.MqttPublisher` from ``offer`` to the
  broker's last PUBACK (the Frigate payloads, plus the retained counts they
  change) vs a bare paho client publishing the same event payloads at QoS 1
  (TCP_NODELAY, as ours) and waiting for the same PUBACKs.
- Webhooks: :class:`~detectflow.publish.webhooks.WebhookPublisher` from
  ``offer`` to the last delivery recorded (signing, one POST each, outcome
  rows in SQLite) vs a bare aiohttp loop making the same signed POSTs of the
  same event JSON, 100 in flight (the connection limit ours keeps too).

Target (issue 10): ours / bare >= 0.8 for each.

    .venv/bin/python -m bench.publish [--cameras 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from detectflow.core.models import BBox, Detection, Frame, FrameResult
from detectflow.core.object_config import ObjectsConfig
from detectflow.core.object_events import FrameObjects
from detectflow.core.objects import CameraObjects
from detectflow.publish.frigate import FrigateTopics
from detectflow.publish.mqtt import MqttPublisher
from detectflow.publish.signing import signature_headers
from detectflow.publish.webhooks import WebhookPublisher, webhook_events
from detectflow.store import Database
from detectflow.store.webhooks import Webhook

try:
    from bench._common import http_provider
except ImportError:  # run as python bench/publish.py
    from _common import http_provider  # type: ignore[no-redef]

__all__ = ["main"]

BROKER = ("127.0.0.1", 1883)
T0 = datetime(2026, 12, 2, tzinfo=UTC)
DOCK = {"dock": {"polygon": [[0.6, 0.0], [1.0, 0.0], [1.0, 1.0], [0.6, 1.0]], "inertia": 3}}


def scene(cameras: int, walkers: int = 4, frames: int = 16) -> list[FrameResult]:
    """Each camera: ``walkers`` people walk into the dock, then the camera stops (new,
    update, end each), tracked by CameraObjects: real events, made before timing."""
    out: list[FrameResult] = []
    for c in range(cameras):
        camera = f"cam-{c}"
        cam = CameraObjects(camera, ObjectsConfig.from_options({"zones": DOCK}))
        last: Frame | None = None
        for k in range(frames):
            when = T0 + timedelta(seconds=k * 0.2)
            frame = Frame(camera_id=camera, image=b"", frame_id=f"{camera}-{k}", timestamp=when)
            dets = [
                Detection(
                    f"{frame.frame_id}-{i}",
                    camera,
                    frame.frame_id,
                    "person",
                    "person",
                    0.9,
                    BBox(0.3 + 0.04 * k, 0.05 + 0.2 * i, 0.1, 0.15),
                )
                for i in range(walkers)
            ]
            for done in cam.push(frame.frame_id, when, dets):
                out.append(FrameResult(frame, (), (), None, 1, 1, objects=done))
            last = frame
        _, ended = cam.stop()
        assert last is not None
        stop = FrameObjects(last.frame_id, last.timestamp.timestamp(), False, (), tuple(ended))
        out.append(FrameResult(last, (), (), None, 1, 1, objects=stop))
    return out


def events_in(results: list[FrameResult]) -> int:
    return sum(len(r.objects.events) for r in results if r.objects is not None)


def _wait(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the bench did not finish in time")
        time.sleep(0.01)


# -- MQTT --------------------------------------------------------------------------


def mqtt_ours(results: list[FrameResult]) -> tuple[float, int]:
    prefix = f"detectflow-bench/{uuid.uuid4().hex[:8]}"
    publisher = MqttPublisher(f"mqtt://{BROKER[0]}:{BROKER[1]}/{prefix}", queue_size=1_000_000)
    # every event plus the counts it changed: as many as a second publisher sends
    expected = len(
        FrigateTopics(prefix).messages(
            [e for r in results if r.objects is not None for e in r.objects.events]
        )
    )
    publisher.start()
    _wait(lambda: publisher.published >= 1, 10)  # "online" acknowledged
    base = publisher.published
    started = time.perf_counter()
    for i in range(0, len(results), 256):
        publisher.offer(results[i : i + 256])
    _wait(lambda: publisher.published - base >= expected, 300)
    elapsed = time.perf_counter() - started
    messages = publisher.published - base
    _clean(publisher)
    return elapsed, messages


def _clean(publisher: MqttPublisher) -> None:
    """Leave no retained counts behind on the shared broker."""
    topics = [*publisher.topics.count_topics, publisher.topics.available_topic]
    publisher.close()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(*BROKER)
    client.loop_start()
    for topic in topics:
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def mqtt_bare(events: list[dict[str, Any]]) -> float:
    """The same Frigate payloads, encoded and published: the job with nothing around it."""
    acked = 0
    done = threading.Event()

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1
        if acked == len(events):
            done.set()

    def no_delay(client: Any, userdata: Any, sock: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_publish = on_publish
    client.on_socket_open = no_delay
    client.connect(*BROKER)
    client.loop_start()
    topic = f"detectflow-bench/{uuid.uuid4().hex[:8]}/events"
    started = time.perf_counter()
    for event in events:
        client.publish(topic, json.dumps(event, separators=(",", ":")).encode(), qos=1)
    if not done.wait(120):
        raise TimeoutError("bare paho: PUBACKs missing")
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


# -- webhooks ----------------------------------------------------------------------


class _Counting(Database):
    """The real SQLite store, counting the delivery records it is given."""

    recorded = 0

    def save_webhook_deliveries(self, records: Any) -> int:
        written = super().save_webhook_deliveries(records)
        self.recorded += sum(1 for r in records if r.status == "delivered")
        return written


def webhooks_ours(results: list[FrameResult], url: str, data_dir: Path) -> float:
    from cryptography.fernet import Fernet

    db = _Counting(f"sqlite:///{data_dir / 'bench.db'}", secret_key=Fernet.generate_key().decode())
    db.upgrade()
    now = datetime.now(UTC)
    db.create_webhook(
        Webhook(
            "bench",
            url,
            ("object_started", "object_updated", "object_ended"),
            (),
            "a-bench-secret-long-enough",
            True,
            now,
            now,
        )
    )
    publisher = WebhookPublisher(db, queue_size=1_000_000, timeout=30.0)
    publisher.start()
    expected = events_in(results)
    started = time.perf_counter()
    for i in range(0, len(results), 256):
        publisher.offer(results[i : i + 256])
    _wait(lambda: db.recorded >= expected, 300)
    elapsed = time.perf_counter() - started
    publisher.close()
    db.dispose()
    return elapsed


async def _bare_posts(url: str, results: list[FrameResult]) -> float:
    """The same signed POSTs of the same event JSON, 100 in flight, nothing around them."""
    wanted = frozenset(("object_started", "object_updated", "object_ended"))
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        events = iter([e for r in results for e in webhook_events(r, wanted)])

        async def worker() -> None:
            for event in events:
                headers = {
                    "Content-Type": "application/json",
                    **signature_headers("a-bench-secret-long-enough", event.body),
                }
                async with session.post(url, data=event.body, headers=headers) as response:
                    await response.read()

        await asyncio.gather(*(worker() for _ in range(100)))
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cameras", type=int, default=400)
    args = parser.parse_args(argv)
    results = scene(args.cameras)
    events = events_in(results)
    frigate = [
        {"type": e.type, "before": e.before, "after": e.after}
        for r in results
        if r.objects is not None
        for e in r.objects.events
    ]

    bare_mqtt = mqtt_bare(frigate)
    ours_mqtt, messages = mqtt_ours(results)
    with http_provider(0.0) as url, tempfile.TemporaryDirectory() as tmp:
        bare_http = asyncio.run(_bare_posts(url, results))
        ours_http = webhooks_ours(results, url, Path(tmp))

    figures: dict[str, Any] = {
        "events": events,
        "mqtt_events_per_s": events / ours_mqtt,
        "mqtt_messages_per_s": messages / ours_mqtt,
        "bare_paho_per_s": events / bare_mqtt,
        "mqtt_ratio": bare_mqtt / ours_mqtt,
        "webhook_events_per_s": events / ours_http,
        "bare_aiohttp_per_s": events / bare_http,
        "webhook_ratio": bare_http / ours_http,
    }
    print(f"{events} object events ({messages} MQTT messages with the counts)")
    print(
        f"MQTT     ours {figures['mqtt_events_per_s']:8.0f} events/s   "
        f"bare paho {figures['bare_paho_per_s']:8.0f}/s   ratio {figures['mqtt_ratio']:.2f}"
    )
    print(
        f"webhooks ours {figures['webhook_events_per_s']:8.0f} events/s   "
        f"bare aiohttp {figures['bare_aiohttp_per_s']:8.0f}/s   "
        f"ratio {figures['webhook_ratio']:.2f}"
    )
    return figures


if __name__ == "__main__":
    main()
